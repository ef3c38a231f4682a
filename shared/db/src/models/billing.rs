//! Billing: invoices, payment methods (stored processor references only) and the daily usage
//! snapshots (`usage_logs`) that usage history and usage reports read.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Double, Integer, Nullable, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{billing_invoices, payment_methods, usage_logs};

/// An invoice row. Amounts are minor units (cents).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = billing_invoices, check_for_backend(diesel::pg::Pg))]
pub struct Invoice {
    /// Invoice id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Human-readable number, unique per tenant.
    pub invoice_number: String,
    /// Total in cents.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Stored status: `paid`, `unpaid`, `overdue` or `pending`.
    pub status: String,
    /// Description.
    pub description: Option<String>,
    /// `[{description, quantity, unit_amount_cents, amount_cents}]`.
    pub line_items: serde_json::Value,
    /// Start of the billed period.
    pub period_start: Option<DateTime<Utc>>,
    /// End of the billed period.
    pub period_end: Option<DateTime<Utc>>,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// Due time.
    pub due_at: Option<DateTime<Utc>>,
    /// Payment time.
    pub paid_at: Option<DateTime<Utc>>,
}

impl Invoice {
    /// The status as of `now`: an unpaid invoice past its due date is `overdue`.
    #[must_use]
    pub fn effective_status(&self, now: DateTime<Utc>) -> &str {
        match (self.status.as_str(), self.due_at) {
            ("unpaid", Some(due)) if due < now => "overdue",
            (s, _) => s,
        }
    }
}

/// A new invoice.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = billing_invoices)]
pub struct NewInvoice<'a> {
    /// Tenant id.
    pub organization_id: Uuid,
    /// Human-readable number.
    pub invoice_number: &'a str,
    /// Total in cents.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// Status.
    pub status: &'a str,
    /// Description.
    pub description: Option<&'a str>,
    /// Lines.
    pub line_items: serde_json::Value,
    /// Start of the billed period.
    pub period_start: DateTime<Utc>,
    /// End of the billed period.
    pub period_end: DateTime<Utc>,
    /// Issue time.
    pub issued_at: DateTime<Utc>,
    /// Due time.
    pub due_at: DateTime<Utc>,
    /// Payment time (free invoices are paid on issue).
    pub paid_at: Option<DateTime<Utc>>,
}

/// Inserts an invoice.
///
/// # Errors
///
/// The database error.
pub async fn insert_invoice(
    conn: &mut AsyncPgConnection,
    new: &NewInvoice<'_>,
) -> QueryResult<Invoice> {
    diesel::insert_into(billing_invoices::table)
        .values(new)
        .returning(Invoice::as_returning())
        .get_result(conn)
        .await
}

/// Counts the tenant's invoices (to number the next one).
///
/// # Errors
///
/// The database error.
pub async fn count_all_invoices(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<i64> {
    billing_invoices::table
        .filter(billing_invoices::organization_id.eq(org))
        .count()
        .get_result(conn)
        .await
}

fn invoices_filtered(
    org: Uuid,
    status: Option<&str>,
) -> billing_invoices::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = billing_invoices::table
        .filter(billing_invoices::organization_id.eq(org))
        .into_boxed();
    match status {
        None => {}
        Some("overdue") => {
            q = q.filter(
                billing_invoices::status
                    .eq("overdue")
                    .or(billing_invoices::status
                        .eq("unpaid")
                        .and(billing_invoices::due_at.lt(diesel::dsl::now))),
            );
        }
        Some("unpaid") => {
            q = q.filter(billing_invoices::status.eq("unpaid")).filter(
                billing_invoices::due_at
                    .is_null()
                    .or(billing_invoices::due_at.ge(diesel::dsl::now)),
            );
        }
        Some(other) => q = q.filter(billing_invoices::status.eq(other.to_owned())),
    }
    q
}

/// Returns up to `limit` invoices, newest first (`issued_at DESC, id DESC`), after `before`.
/// `status` is matched as of now (see [`Invoice::effective_status`]).
///
/// # Errors
///
/// The database error.
pub async fn list_invoices(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    status: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Invoice>> {
    let mut q = invoices_filtered(org, status);
    if let Some((at, id)) = before {
        q = q.filter(
            billing_invoices::issued_at
                .lt(at)
                .or(billing_invoices::issued_at
                    .eq(at)
                    .and(billing_invoices::id.lt(id))),
        );
    }
    q.order((
        billing_invoices::issued_at.desc(),
        billing_invoices::id.desc(),
    ))
    .limit(limit)
    .select(Invoice::as_select())
    .load(conn)
    .await
}

/// Counts the invoices matching `status`.
///
/// # Errors
///
/// The database error.
pub async fn count_invoices(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    status: Option<&str>,
) -> QueryResult<i64> {
    invoices_filtered(org, status)
        .count()
        .get_result(conn)
        .await
}

/// A payment method: a processor reference with display details, never a card number.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = payment_methods, check_for_backend(diesel::pg::Pg))]
pub struct PaymentMethod {
    /// Method id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// `card`, `bank_account` or `paypal`.
    pub type_: String,
    /// Card brand.
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Expiry month.
    pub exp_month: Option<i32>,
    /// Expiry year.
    pub exp_year: Option<i32>,
    /// Whether it is the default.
    pub is_default: bool,
    /// `<processor>:<processor reference>` (the schema has one column for both).
    pub external_ref: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// A new payment method.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = payment_methods)]
pub struct NewPaymentMethod<'a> {
    /// Tenant id.
    pub organization_id: Uuid,
    /// Kind.
    pub type_: &'a str,
    /// Card brand.
    pub brand: Option<&'a str>,
    /// Last four digits.
    pub last4: Option<&'a str>,
    /// Expiry month.
    pub exp_month: Option<i32>,
    /// Expiry year.
    pub exp_year: Option<i32>,
    /// Whether it is the default.
    pub is_default: bool,
    /// `<processor>:<processor reference>`.
    pub external_ref: &'a str,
}

/// Inserts a payment method.
///
/// # Errors
///
/// The database error.
pub async fn insert_payment_method(
    conn: &mut AsyncPgConnection,
    new: &NewPaymentMethod<'_>,
) -> QueryResult<PaymentMethod> {
    diesel::insert_into(payment_methods::table)
        .values(new)
        .returning(PaymentMethod::as_returning())
        .get_result(conn)
        .await
}

/// Lists payment methods, the default first, then oldest first; `offset` rows skipped.
/// (A tenant holds a handful of methods; the page token is a position.)
///
/// # Errors
///
/// The database error.
pub async fn list_payment_methods(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<PaymentMethod>> {
    payment_methods::table
        .filter(payment_methods::organization_id.eq(org))
        .order((
            payment_methods::is_default.desc(),
            payment_methods::created_at.asc(),
            payment_methods::id.asc(),
        ))
        .offset(offset)
        .limit(limit)
        .select(PaymentMethod::as_select())
        .load(conn)
        .await
}

/// Counts the tenant's payment methods.
///
/// # Errors
///
/// The database error.
pub async fn count_payment_methods(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<i64> {
    payment_methods::table
        .filter(payment_methods::organization_id.eq(org))
        .count()
        .get_result(conn)
        .await
}

/// Finds a payment method of `org` and locks it.
///
/// # Errors
///
/// The database error.
pub async fn find_payment_method(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
) -> QueryResult<Option<PaymentMethod>> {
    payment_methods::table
        .filter(payment_methods::organization_id.eq(org))
        .filter(payment_methods::id.eq(id))
        .select(PaymentMethod::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Tells whether the tenant already holds this processor reference.
///
/// # Errors
///
/// The database error.
pub async fn payment_ref_exists(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    external_ref: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payment_methods::table
            .filter(payment_methods::organization_id.eq(org))
            .filter(payment_methods::external_ref.eq(external_ref)),
    ))
    .get_result(conn)
    .await
}

/// Clears the tenant's default payment method (before setting another).
///
/// # Errors
///
/// The database error.
pub async fn clear_default_payment_method(
    conn: &mut AsyncPgConnection,
    org: Uuid,
) -> QueryResult<usize> {
    diesel::update(
        payment_methods::table
            .filter(payment_methods::organization_id.eq(org))
            .filter(payment_methods::is_default.eq(true)),
    )
    .set(payment_methods::is_default.eq(false))
    .execute(conn)
    .await
}

/// Makes a payment method the default (clear the old one first).
///
/// # Errors
///
/// The database error.
pub async fn make_default_payment_method(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<PaymentMethod> {
    diesel::update(payment_methods::table.find(id))
        .set(payment_methods::is_default.eq(true))
        .returning(PaymentMethod::as_returning())
        .get_result(conn)
        .await
}

/// Deletes a payment method.
///
/// # Errors
///
/// The database error.
pub async fn delete_payment_method(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(payment_methods::table.find(id))
        .execute(conn)
        .await
}

/// One daily usage snapshot.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = usage_logs, check_for_backend(diesel::pg::Pg))]
pub struct UsageLog {
    /// Snapshot id.
    pub id: Uuid,
    /// The day.
    pub period: NaiveDate,
    /// Users.
    pub users_count: i32,
    /// Classes.
    pub classes_count: i32,
    /// Storage (GB).
    pub storage_gb: f64,
    /// API calls in the month up to the snapshot.
    pub api_calls_count: i32,
    /// Roblox sessions.
    pub roblox_sessions_count: i32,
    /// When the snapshot was written.
    pub created_at: DateTime<Utc>,
}

/// Returns up to `limit` daily snapshots from `since` on, newest first, before the day `before`.
///
/// # Errors
///
/// The database error.
pub async fn list_daily_snapshots(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    since: NaiveDate,
    before: Option<NaiveDate>,
    limit: i64,
) -> QueryResult<Vec<UsageLog>> {
    let mut q = usage_logs::table
        .filter(usage_logs::organization_id.eq(org))
        .filter(usage_logs::log_type.eq("daily"))
        .filter(usage_logs::period.ge(since))
        .into_boxed();
    if let Some(day) = before {
        q = q.filter(usage_logs::period.lt(day));
    }
    q.order(usage_logs::period.desc())
        .limit(limit)
        .select(UsageLog::as_select())
        .load(conn)
        .await
}

/// Counts the daily snapshots from `since` on.
///
/// # Errors
///
/// The database error.
pub async fn count_daily_snapshots(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    since: NaiveDate,
) -> QueryResult<i64> {
    usage_logs::table
        .filter(usage_logs::organization_id.eq(org))
        .filter(usage_logs::log_type.eq("daily"))
        .filter(usage_logs::period.ge(since))
        .count()
        .get_result(conn)
        .await
}

/// Usage over a range of days, from the daily snapshots: peaks of the gauges and the total of
/// API calls (the last, i.e. largest, value of each calendar month, summed).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct UsageSummary {
    /// Number of snapshots in the range (0: no data).
    #[diesel(sql_type = BigInt)]
    pub snapshots: i64,
    /// Peak users.
    #[diesel(sql_type = Nullable<Integer>)]
    pub users: Option<i32>,
    /// Peak classes.
    #[diesel(sql_type = Nullable<Integer>)]
    pub classes: Option<i32>,
    /// Peak storage (GB).
    #[diesel(sql_type = Nullable<Double>)]
    pub storage_gb: Option<f64>,
    /// Total API calls.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub api_calls: Option<i64>,
    /// Peak Roblox sessions.
    #[diesel(sql_type = Nullable<Integer>)]
    pub roblox_sessions: Option<i32>,
}

/// Summarizes the daily snapshots with `from <= period < to`.
///
/// # Errors
///
/// The database error.
pub async fn usage_summary(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<UsageSummary> {
    diesel::sql_query(
        "SELECT count(*) AS snapshots, max(users_count) AS users, max(classes_count) AS classes, \
                max(storage_gb) AS storage_gb, max(roblox_sessions_count) AS roblox_sessions, \
                (SELECT sum(m)::bigint FROM (SELECT max(api_calls_count) AS m FROM usage_logs \
                   WHERE organization_id = $1 AND log_type = 'daily' \
                     AND period >= $2 AND period < $3 \
                   GROUP BY date_trunc('month', period)) AS months) AS api_calls \
         FROM usage_logs \
         WHERE organization_id = $1 AND log_type = 'daily' AND period >= $2 AND period < $3",
    )
    .bind::<SqlUuid, _>(org)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .get_result(conn)
    .await
}

/// Writes (or refreshes) today's daily snapshot (UTC) of every tenant that is not deleted, from
/// the live counters; returns how many tenants were snapshotted. Run it in platform scope. An API
/// counter of an earlier month counts as 0.
///
/// # Errors
///
/// The database error.
pub async fn write_daily_snapshots(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO usage_logs (organization_id, log_type, period, users_count, classes_count, \
                                 storage_gb, api_calls_count, roblox_sessions_count) \
         SELECT id, 'daily', (now() AT TIME ZONE 'UTC')::date, current_users, current_classes, \
                current_storage_gb, \
                CASE WHEN api_calls_month_start = \
                          date_trunc('month', now() AT TIME ZONE 'UTC')::date \
                     THEN current_api_calls_this_month ELSE 0 END, \
                current_roblox_sessions \
         FROM organizations WHERE deleted_at IS NULL \
         ON CONFLICT (organization_id, log_type, period) DO UPDATE SET \
             users_count = EXCLUDED.users_count, classes_count = EXCLUDED.classes_count, \
             storage_gb = EXCLUDED.storage_gb, api_calls_count = EXCLUDED.api_calls_count, \
             roblox_sessions_count = EXCLUDED.roblox_sessions_count, created_at = now()",
    )
    .execute(conn)
    .await
}
