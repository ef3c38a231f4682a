//! Daily usage snapshots (`usage_logs`, `log_type = 'daily'`) that ListUsageHistory and GetUsage
//! read. [`write_today`] snapshots every tenant; [`run`] calls it at start-up and then every
//! `interval` (an upsert: a day keeps one row, refreshed on each run, so the last run of a UTC
//! day wins and replicas running it concurrently are harmless).

use std::time::Duration;

use diesel_async::AsyncConnection as _;
use tenantry_db::models::billing as billing_model;
use tenantry_db::{Pool, Scope, set_scope};
use tenantry_runtime::{ApiError, ApiResult};

/// How often the snapshot task runs (each run refreshes the current UTC day's row).
pub(crate) const INTERVAL: Duration = Duration::from_secs(3600);

/// Writes (or refreshes) today's snapshot (UTC) of every tenant that is not deleted; returns
/// how many tenants were snapshotted.
///
/// # Errors
///
/// UNAVAILABLE when the database is down; the database error.
pub(crate) async fn write_today(pool: &Pool) -> ApiResult<usize> {
    let mut conn = pool.get().await?;
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        Ok::<_, ApiError>(billing_model::write_daily_snapshots(conn).await?)
    })
    .await
}

/// Snapshots every tenant now and then every `interval`, forever (abort the task to stop it).
/// Failures are logged and retried at the next tick.
pub(crate) async fn run(pool: Pool, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match write_today(&pool).await {
            Ok(n) => tracing::debug!(tenants = n, "daily usage snapshot written"),
            Err(e) => tracing::warn!(error = %e, "daily usage snapshot failed"),
        }
    }
}
