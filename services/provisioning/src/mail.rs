//! The outbox relay: sends queued e-mails at least once, over SMTP or as `.eml` files.
//!
//! It claims one due `email_outbox` row at a time (`FOR UPDATE SKIP LOCKED`, pushing
//! `next_attempt_at` forward while it works, so a relay that dies mid-send is replaced by the
//! next). For a welcome e-mail it mints the single-use set-password token in the same
//! transaction (only its SHA-256 is stored; an earlier unused token of the user is revoked) and
//! fills the link into the body; the token exists in memory and in the e-mail only. The
//! `Message-ID` header is the outbox row's `message_id`, so a duplicate after a crash between
//! the send and the commit is recognisable downstream. Failed sends are retried with
//! exponential backoff (with jitter) until they succeed; only a permanent SMTP rejection
//! (5xx) or a malformed address marks a row `failed`.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tenantry_db::models::outbox::{self, OutboxMessage};
use tenantry_db::{Scope, set_scope};
use tenantry_runtime::{ApiError, ApiResult};
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::State;
use crate::worker::LINK_PLACEHOLDER;
use crate::{SmtpConfig, SmtpTls};

/// How long a set-password link works.
const TOKEN_TTL_HOURS: i64 = 72;

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files,
}

/// Why a send failed.
enum SendError {
    /// Try again later.
    Transient(String),
    /// Will never work.
    Permanent(String),
}

fn smtp_transport(c: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match c.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
            .map_err(|e| e.to_string())?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| e.to_string())?
        }
    };
    let mut builder = builder.port(c.port).timeout(Some(c.timeout));
    if let (Some(user), Some(password)) = (&c.username, &c.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// Runs the relay until `stop` turns true.
pub(crate) async fn run(state: State, mut stop: watch::Receiver<bool>) {
    let transport = match &state.workflow.smtp {
        Some(c) => match smtp_transport(c) {
            Ok(t) => Transport::Smtp(t),
            Err(e) => {
                tracing::error!(error = %e, "bad SMTP settings: e-mails stay queued");
                return;
            }
        },
        None => Transport::Files,
    };
    loop {
        if *stop.borrow() {
            return;
        }
        match relay_one(&state, &transport).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "mail relay"),
        }
        tokio::select! {
            () = state.mail_wake.notified() => {}
            () = tokio::time::sleep(state.workflow.poll_interval) => {}
            _ = stop.changed() => {}
        }
    }
}

fn backoff(state: &State, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = state.workflow.mail_retry_base;
    let delay = base.saturating_mul(2_u32.saturating_pow(exp));
    let delay = delay.min(state.workflow.mail_retry_max);
    let jitter = Duration::from_millis(rand::random::<u64>() % (delay.as_millis() as u64 / 10 + 1));
    delay + jitter
}

/// Sends one due message, if any. Returns whether one was handled.
async fn relay_one(state: &State, transport: &Transport) -> ApiResult<bool> {
    let claim_secs = match &state.workflow.smtp {
        Some(c) => i64::try_from(c.timeout.as_secs()).unwrap_or(10) * 3 + 30,
        None => 60,
    };
    let link_base = state.workflow.public_url.trim_end_matches('/').to_owned();
    let mut conn = state.pool.get().await?;
    let claimed = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let Some(msg) = outbox::claim_due(conn, claim_secs).await? else {
                return Ok::<_, ApiError>(None);
            };
            let body = if msg.body_text.contains(LINK_PLACEHOLDER) {
                let user = msg
                    .payload
                    .get("user_id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok());
                let exists = match user {
                    Some(u) => {
                        use tenantry_db::schema::users;
                        diesel::select(diesel::dsl::exists(
                            users::table
                                .filter(users::organization_id.eq(msg.organization_id))
                                .filter(users::id.eq(u)),
                        ))
                        .get_result::<bool>(conn)
                        .await?
                    }
                    None => false,
                };
                let Some(user) = user.filter(|_| exists) else {
                    outbox::mark_failed(conn, msg.id, "the user no longer exists").await?;
                    return Ok(Some((msg, None)));
                };
                let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(rand::random::<[u8; 32]>());
                let hash = Sha256::digest(token.as_bytes());
                let purpose = if msg.kind == "password_reset" {
                    "reset"
                } else {
                    "welcome"
                };
                outbox::mint_password_token(
                    conn,
                    msg.organization_id,
                    user,
                    &hash,
                    purpose,
                    chrono::Utc::now() + chrono::Duration::hours(TOKEN_TTL_HOURS),
                )
                .await?;
                msg.body_text.replace(
                    LINK_PLACEHOLDER,
                    &format!("{link_base}/set-password?token={token}"),
                )
            } else {
                msg.body_text.clone()
            };
            Ok(Some((msg, Some(body))))
        })
        .await?;
    drop(conn);
    let Some((msg, body)) = claimed else {
        return Ok(false);
    };
    let Some(body) = body else {
        return Ok(true);
    };
    let outcome = send(state, transport, &msg, body).await;
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        match &outcome {
            Ok(()) => outbox::mark_sent(conn, msg.id).await?,
            Err(SendError::Permanent(e)) => {
                tracing::warn!(mail.message_id = %msg.message_id, error = %e, "e-mail rejected");
                outbox::mark_failed(conn, msg.id, e).await?;
            }
            Err(SendError::Transient(e)) => {
                let delay = backoff(state, msg.attempts);
                tracing::warn!(
                    mail.message_id = %msg.message_id,
                    mail.attempts = msg.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "e-mail not sent; will retry"
                );
                outbox::mark_retry(
                    conn,
                    msg.id,
                    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                    e,
                )
                .await?;
            }
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    if outcome.is_ok() {
        tracing::info!(mail.message_id = %msg.message_id, "e-mail sent");
    }
    Ok(true)
}

fn build(state: &State, msg: &OutboxMessage, body: String) -> Result<Message, SendError> {
    let from = state
        .workflow
        .mail_from
        .parse()
        .map_err(|_| SendError::Permanent("the sender address is malformed".into()))?;
    let to = msg
        .to_address
        .parse()
        .map_err(|_| SendError::Permanent("the recipient address is malformed".into()))?;
    Message::builder()
        .message_id(Some(format!("<{}>", msg.message_id)))
        .from(from)
        .to(to)
        .subject(msg.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| SendError::Permanent(format!("cannot build the e-mail: {e}")))
}

async fn send(
    state: &State,
    transport: &Transport,
    msg: &OutboxMessage,
    body: String,
) -> Result<(), SendError> {
    let email = build(state, msg, body)?;
    match transport {
        Transport::Smtp(t) => t.send(email).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                SendError::Permanent(format!("smtp: {e}"))
            } else {
                SendError::Transient(format!("smtp: {e}"))
            }
        }),
        Transport::Files => write_eml(
            &state.workflow.mail_dir,
            &msg.message_id,
            &email.formatted(),
        )
        .await
        .map_err(|e| SendError::Transient(format!("mail folder: {e}"))),
    }
}

/// Writes `<dir>/<message id>.eml` atomically (same Message-ID, same file).
async fn write_eml(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let name: String = message_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(format!("{name}.eml"))).await
}
