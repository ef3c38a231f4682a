//! Usage counters of a tenant (the `current_*` columns of `organizations`), the ledger of
//! changes (table `usage_events`) and the periodic snapshots (table `usage_logs`).
//!
//! [`apply_delta`] is the only way a counter changes: one conditional `UPDATE .. WHERE
//! current + delta <= max RETURNING`, so concurrent callers can never pass a limit together.

use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Double, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::usage_events;

/// A metered resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `current_users` / `max_users`.
    Users,
    /// `current_classes` / `max_classes`.
    Classes,
    /// `current_storage_gb` / `max_storage_gb` (gigabytes).
    StorageGb,
    /// `current_api_calls_this_month` / `max_api_calls_per_month`, reset each calendar month (UTC).
    ApiCalls,
    /// `current_roblox_sessions` / `max_roblox_sessions`.
    RobloxSessions,
}

impl Metric {
    /// The `usage_events.metric` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Classes => "classes",
            Self::StorageGb => "storage_gb",
            Self::ApiCalls => "api_calls",
            Self::RobloxSessions => "roblox_sessions",
        }
    }

    /// The (counter, limit) columns of `organizations`.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            Self::Users => ("current_users", "max_users"),
            Self::Classes => ("current_classes", "max_classes"),
            Self::StorageGb => ("current_storage_gb", "max_storage_gb"),
            Self::ApiCalls => ("current_api_calls_this_month", "max_api_calls_per_month"),
            Self::RobloxSessions => ("current_roblox_sessions", "max_roblox_sessions"),
        }
    }

    /// The counter and limit of `org` as `f64` (the API-call counter reads 0 when its month has
    /// passed, as the next [`apply_delta`] would reset it).
    #[must_use]
    pub fn read(self, org: &crate::models::organization::Organization) -> (f64, f64) {
        match self {
            Self::Users => (f64::from(org.current_users), f64::from(org.max_users)),
            Self::Classes => (f64::from(org.current_classes), f64::from(org.max_classes)),
            Self::StorageGb => (org.current_storage_gb, org.max_storage_gb),
            Self::ApiCalls => {
                let today = Utc::now().date_naive();
                let first = today.with_day(1).unwrap_or(today);
                let current = if org.api_calls_month_start < first {
                    0.0
                } else {
                    f64::from(org.current_api_calls_this_month)
                };
                (current, f64::from(org.max_api_calls_per_month))
            }
            Self::RobloxSessions => (
                f64::from(org.current_roblox_sessions),
                f64::from(org.max_roblox_sessions),
            ),
        }
    }
}

#[derive(QueryableByName)]
struct CounterRow {
    #[diesel(sql_type = Double)]
    current: f64,
    #[diesel(sql_type = Double)]
    maximum: f64,
}

/// Adds `delta` to a counter of tenant `id` atomically. A positive delta must keep the counter
/// at or under its limit; any delta must keep it at or above zero. The API-call counter starts
/// again from zero when the calendar month (UTC) has changed since `api_calls_month_start`.
///
/// Returns the new `(current, limit)`, or `None` when the change was refused (nothing changed;
/// compare with [`Metric::read`] to tell "over the limit" from "below zero").
///
/// # Errors
///
/// The database error.
pub async fn apply_delta(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    metric: Metric,
    delta: f64,
) -> QueryResult<Option<(f64, f64)>> {
    let (cur, max) = metric.columns();
    let month = "(date_trunc('month', now() AT TIME ZONE 'UTC'))::date";
    let (base, extra_set) = if metric == Metric::ApiCalls {
        (
            format!("(CASE WHEN api_calls_month_start < {month} THEN 0 ELSE {cur} END)"),
            format!(", api_calls_month_start = GREATEST(api_calls_month_start, {month})"),
        )
    } else {
        (cur.to_owned(), String::new())
    };
    // Column names come from the fixed table above, never from input.
    let sql = format!(
        "UPDATE organizations SET {cur} = {base} + $2{extra_set} \
         WHERE id = $1 AND {base} + $2 >= 0 AND ($2 <= 0 OR {base} + $2 <= {max}) \
         RETURNING {cur}::float8 AS current, {max}::float8 AS maximum"
    );
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(id)
        .bind::<Double, _>(delta)
        .get_result::<CounterRow>(conn)
        .await
        .optional()
        .map(|r| r.map(|r| (r.current, r.maximum)))
}

/// A ledger entry of a counter change.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = usage_events, check_for_backend(diesel::pg::Pg))]
pub struct UsageEvent {
    /// Event id.
    pub id: Uuid,
    /// Tenant.
    pub organization_id: Uuid,
    /// [`Metric::as_str`].
    pub metric: String,
    /// The change applied (gigabytes for storage).
    pub delta: f64,
    /// Counter value after the change.
    pub value_after: f64,
    /// The request's idempotency key.
    pub request_id: Option<String>,
    /// Who reported it.
    pub actor_id: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A ledger entry to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = usage_events)]
pub struct NewUsageEvent<'a> {
    /// Tenant.
    pub organization_id: Uuid,
    /// [`Metric::as_str`].
    pub metric: &'a str,
    /// The change applied.
    pub delta: f64,
    /// Counter value after the change.
    pub value_after: f64,
    /// Idempotency key.
    pub request_id: Option<&'a str>,
    /// Who reported it.
    pub actor_id: Option<&'a str>,
}

/// Inserts a ledger entry.
///
/// # Errors
///
/// A unique violation when the request id was used for this tenant, or the database error.
pub async fn insert_event(
    conn: &mut AsyncPgConnection,
    new: &NewUsageEvent<'_>,
) -> QueryResult<UsageEvent> {
    diesel::insert_into(usage_events::table)
        .values(new)
        .returning(UsageEvent::as_returning())
        .get_result(conn)
        .await
}

/// Finds the ledger entry of a request id for a tenant; `None` if absent.
///
/// # Errors
///
/// The database error.
pub async fn find_event(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    request_id: &str,
) -> QueryResult<Option<UsageEvent>> {
    usage_events::table
        .filter(usage_events::organization_id.eq(tenant))
        .filter(usage_events::request_id.eq(request_id))
        .select(UsageEvent::as_select())
        .first(conn)
        .await
        .optional()
}
