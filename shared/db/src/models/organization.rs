//! Tenants (table `organizations`, owned by tenant-admin): the row, its status and tier
//! vocabularies, the tier → limits table, and the queries tenant-admin runs.
//!
//! Other crates read tenants through [`find`] / [`find_by_slug`] inside a transaction whose
//! [`crate::Scope`] is set; every write goes through tenant-admin's RPCs. Usage counters are
//! changed only by conditional `UPDATE`s (see [`add_users`] and `models::usage`), never by a
//! read-modify-write.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::prepared::{Cached, Shapes, shape_of};
use crate::schema::organizations;

/// Lifecycle status of a tenant (column `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// In good standing.
    Active,
    /// Suspended by an operator, by deprovisioning or because its trial ended.
    Suspended,
    /// In its trial period.
    Trial,
    /// Created, not yet provisioned.
    Pending,
    /// Cancelled or soft-deleted.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Active,
        Self::Suspended,
        Self::Trial,
        Self::Pending,
        Self::Cancelled,
    ];

    /// Returns the column value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Trial => "trial",
            Self::Pending => "pending",
            Self::Cancelled => "cancelled",
        }
    }

    /// Tells whether the tenant's members may use it (not suspended, not cancelled).
    #[must_use]
    pub fn is_usable(self) -> bool {
        !matches!(self, Self::Suspended | Self::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

/// Subscription tier of a tenant (column `subscription_tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Free.
    Free,
    /// Basic.
    Basic,
    /// Professional.
    Professional,
    /// Enterprise.
    Enterprise,
    /// Education.
    Education,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Self; 5] = [
        Self::Free,
        Self::Basic,
        Self::Professional,
        Self::Enterprise,
        Self::Education,
    ];

    /// Returns the column value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Basic => "basic",
            Self::Professional => "professional",
            Self::Enterprise => "enterprise",
            Self::Education => "education",
        }
    }

    /// Returns the tier's limits: table (A) of seed-analysis §3.3, the one DESIGN.md adopts.
    #[must_use]
    pub fn limits(self) -> Limits {
        let (max_users, max_classes, max_storage_gb, max_api_calls_per_month, max_roblox_sessions) =
            match self {
                Self::Free => (10, 5, 1.0, 1_000, 5),
                Self::Basic => (50, 20, 10.0, 10_000, 25),
                Self::Professional => (200, 100, 50.0, 100_000, 100),
                Self::Enterprise => (10_000, 1_000, 1_000.0, 1_000_000, 1_000),
                Self::Education => (500, 200, 100.0, 500_000, 200),
            };
        Limits {
            max_users,
            max_classes,
            max_storage_gb,
            max_api_calls_per_month,
            max_roblox_sessions,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

/// The five limits of a tenant, as stored.
#[derive(Debug, Clone, Copy, PartialEq, AsChangeset)]
#[diesel(table_name = organizations)]
pub struct Limits {
    /// Maximum users.
    pub max_users: i32,
    /// Maximum classes.
    pub max_classes: i32,
    /// Maximum storage in gigabytes.
    pub max_storage_gb: f64,
    /// Maximum API calls per calendar month (UTC).
    pub max_api_calls_per_month: i32,
    /// Maximum concurrent Roblox sessions.
    pub max_roblox_sessions: i32,
}

impl Limits {
    /// Names the limits that are below the tenant's current usage (`max_users`, ...), so a
    /// caller can refuse a downgrade with FAILED_PRECONDITION or require `force`.
    #[must_use]
    pub fn below_usage(&self, org: &Organization) -> Vec<&'static str> {
        let mut below = Vec::new();
        if self.max_users < org.current_users {
            below.push("max_users");
        }
        if self.max_classes < org.current_classes {
            below.push("max_classes");
        }
        if self.max_storage_gb < org.current_storage_gb {
            below.push("max_storage_gb");
        }
        if self.max_api_calls_per_month < org.current_api_calls_this_month {
            below.push("max_api_calls_per_month");
        }
        if self.max_roblox_sessions < org.current_roblox_sessions {
            below.push("max_roblox_sessions");
        }
        below
    }
}

/// A tenant row: every column of `organizations`, in table order.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct Organization {
    /// Tenant id.
    pub id: Uuid,
    /// Name (1–200 characters).
    pub name: String,
    /// Globally unique URL identifier.
    pub slug: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Postal address (JSON object).
    pub address: serde_json::Value,
    /// `education`, `corporate` or `nonprofit`.
    pub organization_type: String,
    /// Industry.
    pub industry: Option<String>,
    /// `small`, `medium`, `large` or `enterprise`.
    pub size_category: Option<String>,
    /// Tier (see [`Tier`]); use [`Organization::tier`].
    pub subscription_tier: String,
    /// Status (see [`Status`]); use [`Organization::status`].
    pub status: String,
    /// Whether the subscription renews.
    pub auto_renew: bool,
    /// Trial length requested at creation (0–90).
    pub trial_days: i32,
    /// Start of the trial; NULL without a trial.
    pub trial_started_at: Option<DateTime<Utc>>,
    /// End of the trial; NULL without a trial.
    pub trial_expires_at: Option<DateTime<Utc>>,
    /// Start of the paid subscription.
    pub subscription_started_at: Option<DateTime<Utc>>,
    /// End of the current subscription period.
    pub subscription_expires_at: Option<DateTime<Utc>>,
    /// Billing e-mail.
    pub billing_email: Option<String>,
    /// Billing address (JSON object).
    pub billing_address: serde_json::Value,
    /// Tax id.
    pub tax_id: Option<String>,
    /// Last billing date.
    pub last_billing_date: Option<DateTime<Utc>>,
    /// Next billing date.
    pub next_billing_date: Option<DateTime<Utc>>,
    /// Limit: users.
    pub max_users: i32,
    /// Limit: classes.
    pub max_classes: i32,
    /// Limit: storage (GB).
    pub max_storage_gb: f64,
    /// Limit: API calls per month.
    pub max_api_calls_per_month: i32,
    /// Limit: Roblox sessions.
    pub max_roblox_sessions: i32,
    /// Usage: users.
    pub current_users: i32,
    /// Usage: classes.
    pub current_classes: i32,
    /// Usage: storage (GB).
    pub current_storage_gb: f64,
    /// Usage: API calls in the month starting at `api_calls_month_start`.
    pub current_api_calls_this_month: i32,
    /// Usage: Roblox sessions.
    pub current_roblox_sessions: i32,
    /// First day of the month the API-call counter counts.
    pub api_calls_month_start: NaiveDate,
    /// False once suspended, cancelled or soft-deleted.
    pub is_active: bool,
    /// True once provisioned.
    pub is_verified: bool,
    /// Demo tenant.
    pub is_demo: bool,
    /// When the tenant was suspended.
    pub suspended_at: Option<DateTime<Utc>>,
    /// Why the tenant was suspended (`trial_expired` for an ended trial).
    pub suspension_reason: Option<String>,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who soft-deleted it.
    pub deleted_by: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update (maintained by a trigger).
    pub updated_at: DateTime<Utc>,
    /// Creator (a user id, when the creator's subject is a uuid).
    pub created_by: Option<Uuid>,
    /// Last updater.
    pub updated_by: Option<Uuid>,
}

impl Organization {
    /// The parsed status; an unknown value (impossible under the CHECK constraint) reads as
    /// [`Status::Suspended`], the safe side.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status.parse().unwrap_or(Status::Suspended)
    }

    /// The parsed tier; an unknown value (impossible under the CHECK constraint) reads as
    /// [`Tier::Free`].
    #[must_use]
    pub fn tier(&self) -> Tier {
        self.subscription_tier.parse().unwrap_or(Tier::Free)
    }

    /// The current limits.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            max_users: self.max_users,
            max_classes: self.max_classes,
            max_storage_gb: self.max_storage_gb,
            max_api_calls_per_month: self.max_api_calls_per_month,
            max_roblox_sessions: self.max_roblox_sessions,
        }
    }

    /// Tells whether the trial is still running at `now`.
    #[must_use]
    pub fn trial_running(&self, now: DateTime<Utc>) -> bool {
        self.trial_days > 0 && self.trial_expires_at.is_some_and(|end| end > now)
    }

    /// The status a tenant returns to when it is reactivated or restored: TRIAL while its
    /// trial runs, else ACTIVE.
    #[must_use]
    pub fn resumed_status(&self, now: DateTime<Utc>) -> Status {
        if self.trial_running(now) {
            Status::Trial
        } else {
            Status::Active
        }
    }
}

/// A tenant to insert. Columns left out take their database defaults.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrganization<'a> {
    /// Name.
    pub name: &'a str,
    /// Slug.
    pub slug: &'a str,
    /// Display name.
    pub display_name: Option<&'a str>,
    /// Description.
    pub description: Option<&'a str>,
    /// Website.
    pub website: Option<&'a str>,
    /// Contact e-mail.
    pub email: Option<&'a str>,
    /// Phone.
    pub phone: Option<&'a str>,
    /// Address (JSON object).
    pub address: serde_json::Value,
    /// Organization type.
    pub organization_type: &'a str,
    /// Industry.
    pub industry: Option<&'a str>,
    /// Size category.
    pub size_category: Option<&'a str>,
    /// Tier column value.
    pub subscription_tier: &'a str,
    /// Status column value.
    pub status: &'a str,
    /// Trial length.
    pub trial_days: i32,
    /// Trial start.
    pub trial_started_at: Option<DateTime<Utc>>,
    /// Trial end.
    pub trial_expires_at: Option<DateTime<Utc>>,
    /// Limit: users.
    pub max_users: i32,
    /// Limit: classes.
    pub max_classes: i32,
    /// Limit: storage.
    pub max_storage_gb: f64,
    /// Limit: API calls per month.
    pub max_api_calls_per_month: i32,
    /// Limit: Roblox sessions.
    pub max_roblox_sessions: i32,
    /// Creator.
    pub created_by: Option<Uuid>,
}

/// Profile fields of an update. `None` keeps a column; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = organizations)]
pub struct OrganizationChangeset<'a> {
    /// Name.
    pub name: Option<&'a str>,
    /// Display name.
    pub display_name: Option<Option<&'a str>>,
    /// Description.
    pub description: Option<Option<&'a str>>,
    /// Website.
    pub website: Option<Option<&'a str>>,
    /// Contact e-mail.
    pub email: Option<Option<&'a str>>,
    /// Phone.
    pub phone: Option<Option<&'a str>>,
    /// Address.
    pub address: Option<serde_json::Value>,
    /// Organization type.
    pub organization_type: Option<&'a str>,
    /// Industry.
    pub industry: Option<Option<&'a str>>,
    /// Size category.
    pub size_category: Option<Option<&'a str>>,
    /// Tier.
    pub subscription_tier: Option<&'a str>,
    /// Billing e-mail.
    pub billing_email: Option<Option<&'a str>>,
    /// Billing address.
    pub billing_address: Option<serde_json::Value>,
    /// Tax id.
    pub tax_id: Option<Option<&'a str>>,
    /// Who made the change.
    pub updated_by: Option<Option<Uuid>>,
}

impl OrganizationChangeset<'_> {
    /// A bit per column the changeset sets: the UPDATE's text is the same for the same bits.
    #[must_use]
    pub fn shape(&self) -> u64 {
        shape_of(&[
            self.name.is_some(),
            self.display_name.is_some(),
            self.description.is_some(),
            self.website.is_some(),
            self.email.is_some(),
            self.phone.is_some(),
            self.address.is_some(),
            self.organization_type.is_some(),
            self.industry.is_some(),
            self.size_category.is_some(),
            self.subscription_tier.is_some(),
            self.billing_email.is_some(),
            self.billing_address.is_some(),
            self.tax_id.is_some(),
            self.updated_by.is_some(),
        ])
    }
}

/// Lifecycle columns changed together by suspend, reactivate, delete, restore and verify.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = organizations)]
pub struct LifecycleChangeset<'a> {
    /// New status.
    pub status: Option<&'a str>,
    /// New `is_active`.
    pub is_active: Option<bool>,
    /// New `is_verified`.
    pub is_verified: Option<bool>,
    /// Suspension time (`Some(None)` clears it).
    pub suspended_at: Option<Option<DateTime<Utc>>>,
    /// Suspension reason (`Some(None)` clears it).
    pub suspension_reason: Option<Option<&'a str>>,
    /// Soft-delete time (`Some(None)` clears it).
    pub deleted_at: Option<Option<DateTime<Utc>>>,
    /// Who soft-deleted (`Some(None)` clears it).
    pub deleted_by: Option<Option<Uuid>>,
    /// Trial start (set when a pending tenant starts its trial).
    pub trial_started_at: Option<Option<DateTime<Utc>>>,
    /// Trial end.
    pub trial_expires_at: Option<Option<DateTime<Utc>>>,
    /// Who made the change.
    pub updated_by: Option<Option<Uuid>>,
}

/// Filters of [`list_page`] and [`count`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this tier.
    pub tier: Option<Tier>,
    /// Only `is_active` tenants.
    pub active_only: bool,
    /// Case-insensitive substring of name, slug or e-mail.
    pub query: Option<&'a str>,
}

type BoxedOrgs<'a> = organizations::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered<'a>(filter: &ListFilter<'a>) -> BoxedOrgs<'a> {
    use crate::schema::organizations::dsl as o;
    let mut q = o::organizations.into_boxed();
    if let Some(s) = filter.status {
        q = q.filter(o::status.eq(s.as_str()));
    }
    if let Some(t) = filter.tier {
        q = q.filter(o::subscription_tier.eq(t.as_str()));
    }
    if filter.active_only {
        q = q.filter(o::is_active.eq(true));
    }
    if let Some(text) = filter.query {
        let pattern = format!("%{}%", escape_like(text));
        q = q.filter(
            o::name
                .ilike(pattern.clone())
                .or(o::slug.ilike(pattern.clone()))
                .or(o::email.ilike(pattern)),
        );
    }
    q
}

/// Escapes `%`, `_` and `\` for a LIKE pattern (backslash is Postgres' default escape).
#[must_use]
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Loads a tenant by id.
///
/// # Errors
///
/// `NotFound` when no visible tenant has this id; the database error otherwise.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Organization> {
    organizations::table
        .find(id)
        .select(Organization::as_select())
        .first(conn)
        .await
}

/// Loads a tenant by id with its locale settings (time zone, locale), in one statement: what
/// GetTenant reads (and the benchmark's pool baseline, so both run the same statement).
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find_with_locale<C>(
    conn: &mut C,
    id: Uuid,
) -> QueryResult<(Organization, Option<(String, String)>)>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send,
{
    WithLocale { id }.get_result(conn).await
}

/// The SQL text of [`find_with_locale`]'s statement (`$1`: the tenant id), for a bare driver
/// to prepare: the benchmark's bare-driver baseline runs exactly the statement GetTenant runs.
///
/// # Errors
///
/// Only if diesel cannot render the statement (it renders a fixed text and one bind).
pub fn find_with_locale_sql() -> QueryResult<String> {
    use diesel::query_builder::{QueryBuilder, QueryFragment};
    let mut sql = diesel::pg::PgQueryBuilder::default();
    WithLocale { id: Uuid::nil() }.to_sql(&mut sql, &diesel::pg::Pg)?;
    Ok(sql.finish())
}

/// GetTenant's statement: the columns of [`Organization`] and the tenant's locale settings,
/// for the tenant `id`, `LIMIT 1`.
///
/// Its SQL text is built by diesel once per process ([`with_locale_select`]) instead of on
/// every call: walking the 46 selected columns was a sixth of tenant-admin's CPU per
/// GetTenant. The statement is the same, so Postgres runs the same prepared statement.
#[derive(Debug, Clone, Copy)]
struct WithLocale {
    id: Uuid,
}

/// The `SELECT … FROM organizations LEFT OUTER JOIN tenant_settings …` of [`WithLocale`],
/// without its `WHERE`: the query the SQL text is taken from.
fn with_locale_select() -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> {
    use crate::schema::tenant_settings;
    organizations::table
        .left_join(
            tenant_settings::table.on(tenant_settings::organization_id.eq(organizations::id)),
        )
        .select((
            Organization::as_select(),
            (tenant_settings::timezone, tenant_settings::locale).nullable(),
        ))
}

static WITH_LOCALE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use diesel::query_builder::{QueryBuilder, QueryFragment};
    let mut sql = diesel::pg::PgQueryBuilder::default();
    // Only an unknown identifier can fail, and these come from the schema.
    with_locale_select()
        .to_sql(&mut sql, &diesel::pg::Pg)
        .expect("GetTenant's SELECT has SQL");
    sql.finish()
});

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for WithLocale {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(&WITH_LOCALE_SQL);
        out.push_sql(" WHERE \"organizations\".\"id\" = ");
        out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.id)?;
        out.push_sql(" LIMIT 1");
        Ok(())
    }
}

impl diesel::query_builder::QueryId for WithLocale {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for WithLocale {
    type SqlType = (
        <diesel::dsl::AsSelect<Organization, diesel::pg::Pg> as diesel::Expression>::SqlType,
        diesel::sql_types::Nullable<(diesel::sql_types::Text, diesel::sql_types::Text)>,
    );
}

/// Loads a tenant by id and locks its row until the transaction ends.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Organization> {
    organizations::table
        .find(id)
        .select(Organization::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Loads a tenant by slug (exact match).
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find_by_slug(conn: &mut AsyncPgConnection, slug: &str) -> QueryResult<Organization> {
    organizations::table
        .filter(organizations::slug.eq(slug))
        .select(Organization::as_select())
        .first(conn)
        .await
}

/// Inserts a tenant.
///
/// # Errors
///
/// A unique violation on `organizations_slug_key` when the slug is taken (by any tenant,
/// soft-deleted ones included), a check violation, or the database error.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewOrganization<'_>,
) -> QueryResult<Organization> {
    diesel::insert_into(organizations::table)
        .values(new)
        .returning(Organization::as_returning())
        .get_result(conn)
        .await
}

/// One page of tenants, newest first (`created_at DESC, id DESC`), strictly after the keyset
/// cursor `after` when given.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Organization>> {
    use crate::schema::organizations::dsl as o;
    let mut q = filtered(filter);
    if let Some((created, id)) = after {
        // A row comparison, not `a < x OR (a = x AND b < y)`: Postgres turns it into one
        // range scan of `organizations_created_at_id_idx` starting at the cursor, so a deep
        // page costs what the first page costs.
        q = q.filter(Before { created, id });
    }
    q.order((o::created_at.desc(), o::id.desc()))
        .limit(limit)
        .select(Organization::as_select())
        .load(conn)
        .await
}

/// `(organizations.created_at, organizations.id) < ($1, $2)`, as an expression of its own
/// rather than an SQL literal, so that the listing's statement stays cacheable (a literal makes
/// diesel prepare, and Postgres plan, the statement again on every call).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct Before {
    created: DateTime<Utc>,
    id: Uuid,
}

impl diesel::expression::Expression for Before {
    type SqlType = diesel::sql_types::Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for Before {}
impl<QS> diesel::expression::SelectableExpression<QS> for Before {}

impl diesel::expression::ValidGrouping<()> for Before {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Before {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("(\"organizations\".\"created_at\", \"organizations\".\"id\") < (");
        out.push_bind_param::<diesel::sql_types::Timestamptz, _>(&self.created)?;
        out.push_sql(", ");
        out.push_bind_param::<diesel::sql_types::Uuid, _>(&self.id)?;
        out.push_sql(")");
        Ok(())
    }
}

/// Counts the tenants matching `filter`.
///
/// # Errors
///
/// The database error.
pub async fn count(conn: &mut AsyncPgConnection, filter: &ListFilter<'_>) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// Applies a profile changeset.
///
/// # Errors
///
/// `NotFound`, a check violation, or the database error.
pub async fn update_profile<C>(
    conn: &mut C,
    id: Uuid,
    changes: &OrganizationChangeset<'_>,
) -> QueryResult<Organization>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send,
{
    // One text per set of columns changed: kept prepared for the first 64 of them.
    static SHAPES: Shapes = Shapes::new(64);
    Cached::within(
        diesel::update(organizations::table.find(id))
            .set(changes)
            .returning(Organization::as_returning()),
        &SHAPES,
        changes.shape(),
    )
    .get_result(conn)
    .await
}

/// UpdateTenant's change when it touches neither the tier nor the locale settings, as one
/// statement: the UPDATE, its audit row and the read of the tenant with its locale settings,
/// committed together (`WITH "organizations" AS (UPDATE … RETURNING …), "audit" AS (INSERT …
/// SELECT … FROM "organizations")` followed by [`find_with_locale`]'s SELECT, which then reads
/// the updated row). One round trip and no transaction statements, where a transaction would
/// take five statements and three round trips. The audit row is written only when the row
/// was updated, with `event.organization_id` taken from it.
///
/// # Errors
///
/// `NotFound` when no tenant has the id (nothing is written), a check violation, or the
/// database error.
pub async fn update_profile_audited<C>(
    conn: &mut C,
    id: Uuid,
    changes: &OrganizationChangeset<'_>,
    event: &crate::models::audit::NewAuditEvent<'_>,
) -> QueryResult<(Organization, Option<(String, String)>)>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send,
{
    // One text per set of columns changed: kept prepared for the first 64 of them.
    static SHAPES: Shapes = Shapes::new(64);
    let update = diesel::update(organizations::table.find(id))
        .set(changes)
        .returning(Organization::as_returning());
    Cached::within(UpdateAudited { update, event }, &SHAPES, changes.shape())
        .get_result(conn)
        .await
}

/// The statement of [`update_profile_audited`].
struct UpdateAudited<'a, U> {
    update: U,
    event: &'a crate::models::audit::NewAuditEvent<'a>,
}

impl<U> diesel::query_builder::QueryFragment<diesel::pg::Pg> for UpdateAudited<'_, U>
where
    U: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Jsonb, Nullable, Text};
        // Named like the table, the CTE stands for it in the statements after it: the audit
        // row's SELECT and GetTenant's SELECT read the updated row. (Inside its own definition
        // the name is still the table's.)
        out.push_sql("WITH \"organizations\" AS (");
        self.update.walk_ast(out.reborrow())?;
        out.push_sql(
            "), \"audit\" AS (INSERT INTO \"audit_events\" (\"organization_id\", \"actor_id\", \
             \"actor_role\", \"action\", \"target_type\", \"target_id\", \"metadata\", \
             \"request_id\") SELECT \"organizations\".\"id\", ",
        );
        out.push_bind_param::<Nullable<Text>, _>(&self.event.actor_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.actor_role)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.event.action)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.target_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.target_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Jsonb, _>(&self.event.metadata)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.request_id)?;
        out.push_sql(" FROM \"organizations\") ");
        out.push_sql(&WITH_LOCALE_SQL);
        Ok(())
    }
}

impl<U> diesel::query_builder::QueryId for UpdateAudited<'_, U> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<U> diesel::query_builder::Query for UpdateAudited<'_, U> {
    type SqlType = <WithLocale as diesel::query_builder::Query>::SqlType;
}

/// Replaces the limits.
///
/// # Errors
///
/// `NotFound`, a check violation, or the database error.
pub async fn update_limits(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    limits: &Limits,
) -> QueryResult<Organization> {
    Cached::always(
        diesel::update(organizations::table.find(id))
            .set(limits)
            .returning(Organization::as_returning()),
    )
    .get_result(conn)
    .await
}

/// Applies a lifecycle change (status, activity, suspension, soft delete, verification).
///
/// # Errors
///
/// `NotFound`, a check violation, or the database error.
pub async fn update_lifecycle(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &LifecycleChangeset<'_>,
) -> QueryResult<Organization> {
    // Each caller (suspend, reactivate, delete, restore, verify) sets its own fixed columns.
    Cached::always(
        diesel::update(organizations::table.find(id))
            .set(changes)
            .returning(Organization::as_returning()),
    )
    .get_result(conn)
    .await
}

/// Suspends every tenant whose trial ended at or before `now` (status TRIAL), with reason
/// `trial_expired`, and returns them. Safe to run from several replicas at once: each row is
/// updated by one of them only.
///
/// # Errors
///
/// The database error.
pub async fn expire_trials(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Organization>> {
    use crate::schema::organizations::dsl as o;
    diesel::update(
        o::organizations
            .filter(o::status.eq(Status::Trial.as_str()))
            .filter(o::trial_expires_at.le(now))
            .filter(o::deleted_at.is_null()),
    )
    .set((
        o::status.eq(Status::Suspended.as_str()),
        o::is_active.eq(false),
        o::suspended_at.eq(now),
        o::suspension_reason.eq(TRIAL_EXPIRED),
    ))
    .returning(Organization::as_returning())
    .get_results(conn)
    .await
}

/// The suspension reason of a tenant whose trial ended.
pub const TRIAL_EXPIRED: &str = "trial_expired";

/// Adds `delta` (±) to `current_users`, refusing to pass `max_users` when adding (a removal is
/// always allowed down to 0). Call it in the same transaction as the member insert or delete.
///
/// Returns the new `(current_users, max_users)`, or `None` when the change would pass the
/// limit or go below zero (nothing changed; the caller answers RESOURCE_EXHAUSTED or
/// FAILED_PRECONDITION).
///
/// # Errors
///
/// The database error.
pub async fn add_users(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    delta: i32,
) -> QueryResult<Option<(i32, i32)>> {
    use crate::schema::organizations::dsl as o;
    let target = o::organizations.find(id);
    let set = o::current_users.eq(o::current_users + delta);
    let returning = (o::current_users, o::max_users);
    if delta > 0 {
        diesel::update(target.filter((o::current_users + delta).le(o::max_users)))
            .set(set)
            .returning(returning)
            .get_result(conn)
            .await
            .optional()
    } else {
        diesel::update(target.filter((o::current_users + delta).ge(0)))
            .set(set)
            .returning(returning)
            .get_result(conn)
            .await
            .optional()
    }
}

#[cfg(test)]
mod tests {
    use diesel::pg::Pg;
    use diesel::prelude::*;

    use super::{Organization, WithLocale};
    use crate::schema::{organizations, tenant_settings};

    /// The statement built from the cached text is the one diesel builds from the query DSL
    /// (but for `LIMIT 1` written out instead of bound), with the tenant id as its only bind.
    #[test]
    fn getting_a_tenant_with_its_locale_runs_the_dsl_statement() {
        let id = uuid::Uuid::from_u128(7);
        let dsl = organizations::table
            .left_join(
                tenant_settings::table.on(tenant_settings::organization_id.eq(organizations::id)),
            )
            .filter(organizations::id.eq(id))
            .select((
                Organization::as_select(),
                (tenant_settings::timezone, tenant_settings::locale).nullable(),
            ))
            .limit(1);
        let want = diesel::debug_query::<Pg, _>(&dsl)
            .to_string()
            .replace(
                "WHERE (\"organizations\".\"id\" = $1) LIMIT $2",
                "WHERE \"organizations\".\"id\" = $1 LIMIT 1",
            )
            .replace(", 1]", "]");
        let got = diesel::debug_query::<Pg, _>(&WithLocale { id }).to_string();
        assert_eq!(got, want);
        assert!(
            got.starts_with("SELECT \"organizations\".\"id\", "),
            "{got}"
        );
        assert!(got.ends_with(&format!("LIMIT 1 -- binds: [{id}]")), "{got}");
        // The text a bare driver prepares is that statement without its binds.
        let text = super::find_with_locale_sql().expect("renders");
        assert_eq!(format!("{text} -- binds: [{id}]"), got);
    }
}
