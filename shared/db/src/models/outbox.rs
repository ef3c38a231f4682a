//! The transactional e-mail outbox (`email_outbox`) and the single-use set-password tokens the
//! relay mints when it sends (`password_tokens`).
//!
//! An outbox row is written in the same transaction as the change that causes the e-mail; the
//! relay claims due rows with `FOR UPDATE SKIP LOCKED`, sends them at least once and marks them
//! sent. No secret is ever stored here: the token that goes into a set-password link is minted
//! at send time and only its SHA-256 is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::prepared::Cached;
use crate::schema::{email_outbox, password_tokens};

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = email_outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxMessage {
    /// Row id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// RFC 5322 Message-ID (without angle brackets).
    pub message_id: String,
    /// `welcome`, `invitation`, `password_reset` or `notification`.
    pub kind: String,
    /// Recipient.
    pub to_address: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body; may hold placeholders the relay fills at send time.
    pub body_text: String,
    /// Non-secret template data.
    pub payload: serde_json::Value,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Send attempts so far.
    pub attempts: i32,
    /// When the relay may try next.
    pub next_attempt_at: DateTime<Utc>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// A message to queue.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = email_outbox)]
pub struct NewOutboxMessage<'a> {
    /// Tenant id.
    pub organization_id: Uuid,
    /// Message-ID (without angle brackets); deterministic, so a replay inserts nothing.
    pub message_id: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Recipient.
    pub to_address: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Body.
    pub body_text: &'a str,
    /// Non-secret template data.
    pub payload: serde_json::Value,
}

/// Queues a message unless one with the same Message-ID exists. Returns whether it was queued.
///
/// # Errors
///
/// The database error.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    msg: &NewOutboxMessage<'_>,
) -> QueryResult<bool> {
    let n = Cached::always(
        diesel::insert_into(email_outbox::table)
            .values(msg)
            .on_conflict(email_outbox::message_id)
            .do_nothing(),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Finds a message by Message-ID.
///
/// # Errors
///
/// The database error.
pub async fn find_by_message_id(
    conn: &mut AsyncPgConnection,
    message_id: &str,
) -> QueryResult<Option<OutboxMessage>> {
    email_outbox::table
        .filter(email_outbox::message_id.eq(message_id))
        .select(OutboxMessage::as_select())
        .first(conn)
        .await
        .optional()
}

/// Claims the next due pending message: counts an attempt and pushes `next_attempt_at` by
/// `claim_secs`, so another relay skips it while this one sends (and retries it after that if
/// this one dies).
///
/// # Errors
///
/// The database error.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    claim_secs: i64,
) -> QueryResult<Option<OutboxMessage>> {
    diesel::sql_query(
        "UPDATE email_outbox SET attempts = attempts + 1, \
             next_attempt_at = now() + make_interval(secs => $1) \
         WHERE id = (SELECT id FROM email_outbox \
                     WHERE status = 'pending' AND next_attempt_at <= now() \
                     ORDER BY next_attempt_at FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING *",
    )
    .bind::<BigInt, _>(claim_secs)
    .get_result(conn)
    .await
    .optional()
}

/// Marks a message sent.
///
/// # Errors
///
/// The database error.
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    Cached::always(diesel::update(email_outbox::table.find(id)).set((
        email_outbox::status.eq("sent"),
        email_outbox::sent_at.eq(diesel::dsl::now),
        email_outbox::last_error.eq(None::<String>),
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// Schedules another attempt after `delay_ms` milliseconds.
///
/// # Errors
///
/// The database error.
pub async fn mark_retry(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    delay_ms: i64,
    error: &str,
) -> QueryResult<()> {
    Cached::always(diesel::sql_query(
        "UPDATE email_outbox SET next_attempt_at = now() + make_interval(secs => $2::double precision / 1000), \
             last_error = $3 WHERE id = $1 AND status = 'pending'",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(delay_ms)
    .bind::<diesel::sql_types::Text, _>(error))
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up on a message (a permanent failure).
///
/// # Errors
///
/// The database error.
pub async fn mark_failed(conn: &mut AsyncPgConnection, id: Uuid, error: &str) -> QueryResult<()> {
    Cached::always(diesel::update(email_outbox::table.find(id)).set((
        email_outbox::status.eq("failed"),
        email_outbox::last_error.eq(Some(error)),
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// Mints a set-password token row (only the hash is stored), revoking the user's earlier unused
/// tokens of the same purpose, so only the newest link works.
///
/// # Errors
///
/// The database error (a foreign-key violation when the user no longer exists).
pub async fn mint_password_token(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    user: Uuid,
    token_hash: &[u8],
    purpose: &str,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::delete(
        password_tokens::table
            .filter(password_tokens::organization_id.eq(tenant))
            .filter(password_tokens::user_id.eq(user))
            .filter(password_tokens::purpose.eq(purpose))
            .filter(password_tokens::used_at.is_null()),
    )
    .execute(conn)
    .await?;
    Cached::always(diesel::insert_into(password_tokens::table).values((
        password_tokens::organization_id.eq(tenant),
        password_tokens::user_id.eq(user),
        password_tokens::token_hash.eq(token_hash),
        password_tokens::purpose.eq(purpose),
        password_tokens::expires_at.eq(expires_at),
    )))
    .execute(conn)
    .await?;
    Ok(())
}
