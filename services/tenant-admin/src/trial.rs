//! Trial expiry: a background task suspends every tenant whose trial has ended, with reason
//! `trial_expired`, and records an audit event for each (`system/TrialExpired`). Choosing a
//! subscription (organizations) or `ReactivateTenant` makes such a tenant active again.
//!
//! The sweep is one `UPDATE .. WHERE status = 'trial' AND trial_expires_at <= now() RETURNING`,
//! so replicas may run it concurrently: each tenant is suspended (and audited) once.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tenantry_db::models::{audit, organization};
use tenantry_db::{Pool, Scope, set_scope};
use uuid::Uuid;

use crate::audit_trail::Actor;

/// Audit action of an expired trial.
pub const TRIAL_EXPIRED_ACTION: &str = "system/TrialExpired";

/// Suspends every tenant whose trial has ended, in one transaction (platform scope), and
/// returns their ids.
///
/// # Errors
///
/// The database error (nothing is changed then).
pub async fn sweep_expired_trials(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<Uuid>, diesel::result::Error> {
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        let expired = organization::expire_trials(conn, Utc::now()).await?;
        let actor = Actor::system();
        for org in &expired {
            let event = actor.event(
                Some(org.id),
                TRIAL_EXPIRED_ACTION,
                "tenant",
                org.id,
                serde_json::json!({
                    "reason": organization::TRIAL_EXPIRED,
                    "changed_fields": ["status", "is_active", "suspension_reason"],
                    "trial_expires_at": org.trial_expires_at,
                }),
                None,
            );
            audit::record_audit(conn, &event).await?;
        }
        Ok(expired.iter().map(|o| o.id).collect())
    })
    .await
}

/// Runs [`sweep_expired_trials`] every `interval` until the task is aborted (on shutdown).
pub(crate) async fn run(pool: Pool, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let mut conn = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "trial sweep: no database connection");
                continue;
            }
        };
        match sweep_expired_trials(&mut conn).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "trial sweep: suspended expired trials");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "trial sweep failed"),
        }
    }
}
