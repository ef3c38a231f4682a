//! Settings, feature flags and integrations of a tenant (tables owned by tenant-settings), and
//! the organization columns tenant-settings shows (tier, status, limits and usage).
//!
//! Every function runs inside a transaction whose [`crate::Scope`] is already set.

use std::fmt;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::prepared::{Cached, Shapes, shape_of};
use crate::schema::{
    idempotency_keys, integrations, organizations, tenant_features, tenant_settings,
};

/// The organization columns tenant-settings reads: identity, tier, status, limits and usage.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct TenantView {
    /// Tenant id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tier (`free`, `basic`, ...).
    pub subscription_tier: String,
    /// Status (`active`, `suspended`, ...).
    pub status: String,
    /// Set when soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Limit of users.
    pub max_users: i32,
    /// Limit of classes.
    pub max_classes: i32,
    /// Limit of storage, GB.
    pub max_storage_gb: f64,
    /// Limit of API calls a month.
    pub max_api_calls_per_month: i32,
    /// Limit of concurrent Roblox sessions.
    pub max_roblox_sessions: i32,
    /// Users now.
    pub current_users: i32,
    /// Classes now.
    pub current_classes: i32,
    /// Storage used, GB.
    pub current_storage_gb: f64,
    /// API calls this month.
    pub current_api_calls_this_month: i32,
    /// Roblox sessions now.
    pub current_roblox_sessions: i32,
    /// Last change of the organization row.
    pub updated_at: DateTime<Utc>,
}

/// Finds a tenant (organization) visible in the current scope.
///
/// # Errors
///
/// The database error.
pub async fn find_tenant(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<TenantView>> {
    organizations::table
        .find(id)
        .select(TenantView::as_select())
        .first(conn)
        .await
        .optional()
}

/// Changes the profile fields of an organization that tenant-settings edits through
/// UpdateSettings (`display_name`, `description`). `None` keeps a field, `Some(None)` clears it.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = organizations)]
pub struct TenantProfileChangeset<'a> {
    /// New display name.
    pub display_name: Option<Option<&'a str>>,
    /// New description.
    pub description: Option<Option<&'a str>>,
}

impl TenantProfileChangeset<'_> {
    /// Tells whether nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.description.is_none()
    }
}

/// Updates the profile fields of an organization.
///
/// # Errors
///
/// The database error (`NotFound` when the tenant is not visible).
pub async fn update_tenant_profile(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &TenantProfileChangeset<'_>,
) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let n = diesel::update(organizations::table.find(id))
        .set(changes)
        .execute(conn)
        .await?;
    if n == 0 {
        return Err(diesel::result::Error::NotFound);
    }
    Ok(())
}

/// A row of `tenant_settings`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = tenant_settings, check_for_backend(diesel::pg::Pg))]
pub struct SettingsRow {
    /// Tenant id.
    pub organization_id: Uuid,
    /// IANA time zone.
    pub timezone: String,
    /// BCP 47 locale.
    pub locale: String,
    /// Logo URL.
    pub logo_url: Option<String>,
    /// Primary colour.
    pub primary_color: Option<String>,
    /// Secondary colour.
    pub secondary_color: Option<String>,
    /// Custom domain (stored lowercase).
    pub custom_domain: Option<String>,
    /// Security settings (JSON object).
    pub security: Value,
    /// Compliance settings (JSON object).
    pub compliance: Value,
    /// Free-form settings (JSON object).
    pub custom_settings: Value,
    /// Configuration version.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Custom CSS (at most 64 KiB).
    pub custom_css: Option<String>,
    /// Default UI theme; `None` reads as the default.
    pub default_theme: Option<String>,
}

/// Finds a tenant's settings row.
///
/// # Errors
///
/// The database error.
pub async fn find_settings(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> QueryResult<Option<SettingsRow>> {
    tenant_settings::table
        .find(tenant)
        .select(SettingsRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Creates the tenant's settings row with the column defaults when it is missing, then locks it
/// (`FOR UPDATE`) for the rest of the transaction, so writers of one tenant run one at a time.
///
/// # Errors
///
/// The database error (a foreign-key violation when the tenant does not exist).
pub async fn lock_settings(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<SettingsRow> {
    Cached::always(
        diesel::insert_into(tenant_settings::table)
            .values(tenant_settings::organization_id.eq(tenant))
            .on_conflict_do_nothing(),
    )
    .execute(conn)
    .await?;
    tenant_settings::table
        .find(tenant)
        .select(SettingsRow::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Creates the tenant's settings row with the given security and compliance objects when it is
/// missing. Returns whether it was created.
///
/// # Errors
///
/// The database error.
pub async fn create_settings_if_missing(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    security: &Value,
    compliance: &Value,
) -> QueryResult<bool> {
    let n = Cached::always(
        diesel::insert_into(tenant_settings::table)
            .values((
                tenant_settings::organization_id.eq(tenant),
                tenant_settings::security.eq(security),
                tenant_settings::compliance.eq(compliance),
            ))
            .on_conflict_do_nothing(),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Changes to a settings row. `None` keeps a field; for nullable columns `Some(None)` clears it.
#[derive(Debug, Default, Clone, AsChangeset)]
#[diesel(table_name = tenant_settings)]
pub struct SettingsChangeset<'a> {
    /// New time zone.
    pub timezone: Option<&'a str>,
    /// New locale.
    pub locale: Option<&'a str>,
    /// New logo URL.
    pub logo_url: Option<Option<&'a str>>,
    /// New primary colour.
    pub primary_color: Option<Option<&'a str>>,
    /// New secondary colour.
    pub secondary_color: Option<Option<&'a str>>,
    /// New custom domain (lowercase).
    pub custom_domain: Option<Option<&'a str>>,
    /// New custom CSS.
    pub custom_css: Option<Option<&'a str>>,
    /// New default theme.
    pub default_theme: Option<Option<&'a str>>,
    /// New security object.
    pub security: Option<&'a Value>,
    /// New compliance object.
    pub compliance: Option<&'a Value>,
    /// New custom settings object.
    pub custom_settings: Option<&'a Value>,
}

/// Applies `changes` and increments the configuration version, returning the new row.
///
/// # Errors
///
/// The database error (a check violation for a value the constraints refuse).
pub async fn update_settings(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    changes: &SettingsChangeset<'_>,
) -> QueryResult<SettingsRow> {
    // One text per set of columns changed: kept prepared for the first 64 of them.
    static SHAPES: Shapes = Shapes::new(64);
    Cached::within(
        diesel::update(tenant_settings::table.find(tenant))
            .set((
                changes,
                tenant_settings::version.eq(tenant_settings::version + 1),
            ))
            .returning(SettingsRow::as_returning()),
        &SHAPES,
        changes.shape(),
    )
    .get_result(conn)
    .await
}

impl SettingsChangeset<'_> {
    /// A bit per column the changeset sets: the UPDATE's text is the same for the same bits.
    #[must_use]
    pub fn shape(&self) -> u64 {
        shape_of(&[
            self.timezone.is_some(),
            self.locale.is_some(),
            self.logo_url.is_some(),
            self.primary_color.is_some(),
            self.secondary_color.is_some(),
            self.custom_domain.is_some(),
            self.custom_css.is_some(),
            self.default_theme.is_some(),
            self.security.is_some(),
            self.compliance.is_some(),
            self.custom_settings.is_some(),
        ])
    }
}

/// Increments the configuration version (for a change stored in another table) and returns it.
///
/// # Errors
///
/// The database error (`NotFound` when the settings row is missing: call [`lock_settings`]
/// first).
pub async fn bump_version(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<i64> {
    Cached::always(
        diesel::update(tenant_settings::table.find(tenant))
            .set(tenant_settings::version.eq(tenant_settings::version + 1))
            .returning(tenant_settings::version),
    )
    .get_result(conn)
    .await
}

/// Takes a transaction-scoped advisory lock on a custom domain, so two tenants claiming the same
/// domain at once are serialized and the second sees the first's row.
///
/// # Errors
///
/// The database error.
pub async fn lock_custom_domain(conn: &mut AsyncPgConnection, domain: &str) -> QueryResult<()> {
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(hashtext('tenantry.custom_domain:' || $1)::bigint)",
    )
    .bind::<Text, _>(domain)
    .execute(conn)
    .await?;
    Ok(())
}

/// Name of the unique index on `lower(custom_domain)`: a unique violation naming it means
/// another tenant claimed the domain.
pub const CUSTOM_DOMAIN_UNIQUE: &str = "tenant_settings_custom_domain_unique";

/// Tells whether a tenant other than `except` uses `domain` (lowercase). Needs the platform
/// scope to see other tenants' rows.
///
/// # Errors
///
/// The database error.
pub async fn custom_domain_taken(
    conn: &mut AsyncPgConnection,
    domain: &str,
    except: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        tenant_settings::table
            .filter(tenant_settings::custom_domain.eq(domain))
            .filter(tenant_settings::organization_id.ne(except)),
    ))
    .get_result(conn)
    .await
}

/// A stored feature decision (`tenant_features`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = tenant_features, check_for_backend(diesel::pg::Pg))]
pub struct FeatureRow {
    /// Feature name (`ai_chat`, ...).
    pub feature: String,
    /// Whether it is on.
    pub enabled: bool,
    /// Who decided: `tier_default`, `org_admin` or `operator_override`.
    pub source: String,
    /// Who changed it last, when a user.
    pub updated_by: Option<Uuid>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Lists a tenant's stored feature decisions, by name.
///
/// # Errors
///
/// The database error.
pub async fn list_features(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> QueryResult<Vec<FeatureRow>> {
    tenant_features::table
        .filter(tenant_features::organization_id.eq(tenant))
        .order(tenant_features::feature)
        .select(FeatureRow::as_select())
        .load(conn)
        .await
}

/// Stores (inserts or replaces) one feature decision.
///
/// # Errors
///
/// The database error.
pub async fn upsert_feature(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    feature: &str,
    enabled: bool,
    source: &str,
    updated_by: Option<Uuid>,
) -> QueryResult<()> {
    Cached::always(
        diesel::insert_into(tenant_features::table)
            .values((
                tenant_features::organization_id.eq(tenant),
                tenant_features::feature.eq(feature),
                tenant_features::enabled.eq(enabled),
                tenant_features::source.eq(source),
                tenant_features::updated_by.eq(updated_by),
            ))
            .on_conflict((tenant_features::organization_id, tenant_features::feature))
            .do_update()
            .set((
                tenant_features::enabled.eq(excluded(tenant_features::enabled)),
                tenant_features::source.eq(excluded(tenant_features::source)),
                tenant_features::updated_by.eq(excluded(tenant_features::updated_by)),
            )),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes one feature decision; returns whether a row was deleted.
///
/// # Errors
///
/// The database error.
pub async fn delete_feature(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    feature: &str,
) -> QueryResult<bool> {
    let n = diesel::delete(
        tenant_features::table
            .filter(tenant_features::organization_id.eq(tenant))
            .filter(tenant_features::feature.eq(feature)),
    )
    .execute(conn)
    .await?;
    Ok(n > 0)
}

/// An integration of a tenant. Its `Debug` shows the names of the secrets, never their values.
#[derive(Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = integrations, check_for_backend(diesel::pg::Pg))]
pub struct IntegrationRow {
    /// Name.
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Non-secret configuration (JSON object).
    pub config: Value,
    /// Secrets by name (JSON object of strings); write-only at the API.
    pub secrets: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl IntegrationRow {
    /// Names of the stored secrets, sorted.
    #[must_use]
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .secrets
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for IntegrationRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntegrationRow")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("config", &self.config)
            .field("secrets", &self.secret_names())
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Lists a tenant's integrations, by name.
///
/// # Errors
///
/// The database error.
pub async fn list_integrations(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> QueryResult<Vec<IntegrationRow>> {
    integrations::table
        .filter(integrations::organization_id.eq(tenant))
        .order(integrations::name)
        .select(IntegrationRow::as_select())
        .load(conn)
        .await
}

/// Finds one integration and locks it for the rest of the transaction.
///
/// # Errors
///
/// The database error.
pub async fn find_integration_for_update(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    name: &str,
) -> QueryResult<Option<IntegrationRow>> {
    integrations::table
        .filter(integrations::organization_id.eq(tenant))
        .filter(integrations::name.eq(name))
        .select(IntegrationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Stores (inserts or replaces) an integration and returns it.
///
/// # Errors
///
/// The database error.
pub async fn upsert_integration(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    name: &str,
    enabled: bool,
    config: &Value,
    secrets: &Value,
) -> QueryResult<IntegrationRow> {
    Cached::always(
        diesel::insert_into(integrations::table)
            .values((
                integrations::organization_id.eq(tenant),
                integrations::name.eq(name),
                integrations::enabled.eq(enabled),
                integrations::config.eq(config),
                integrations::secrets.eq(secrets),
            ))
            .on_conflict((integrations::organization_id, integrations::name))
            .do_update()
            .set((
                integrations::enabled.eq(excluded(integrations::enabled)),
                integrations::config.eq(excluded(integrations::config)),
                integrations::secrets.eq(excluded(integrations::secrets)),
            ))
            .returning(IntegrationRow::as_returning()),
    )
    .get_result(conn)
    .await
}

/// Deletes an integration; returns whether it existed.
///
/// # Errors
///
/// The database error.
pub async fn delete_integration(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    name: &str,
) -> QueryResult<bool> {
    let n = diesel::delete(
        integrations::table
            .filter(integrations::organization_id.eq(tenant))
            .filter(integrations::name.eq(name)),
    )
    .execute(conn)
    .await?;
    Ok(n > 0)
}

/// A stored idempotent request (AIP-155): the hash of its payload and the encoded response.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct StoredRequest {
    /// Hash of the first request's payload.
    pub request_hash: Vec<u8>,
    /// The encoded first response.
    pub response: Option<Vec<u8>>,
}

/// Finds a stored request by method and request id.
///
/// # Errors
///
/// The database error.
pub async fn find_request(
    conn: &mut AsyncPgConnection,
    method: &str,
    key: &str,
) -> QueryResult<Option<StoredRequest>> {
    idempotency_keys::table
        .find((method, key))
        .select((idempotency_keys::request_hash, idempotency_keys::response))
        .first(conn)
        .await
        .optional()
}

/// Stores the response of an idempotent request.
///
/// # Errors
///
/// The database error (a unique violation when the id was taken concurrently).
pub async fn save_request(
    conn: &mut AsyncPgConnection,
    method: &str,
    key: &str,
    tenant: Option<Uuid>,
    request_hash: &[u8],
    response: &[u8],
) -> QueryResult<()> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::method.eq(method),
            idempotency_keys::key.eq(key),
            idempotency_keys::organization_id.eq(tenant),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::response.eq(Some(response)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores (inserts or replaces) several feature decisions at once: `(feature, enabled, source)`.
///
/// # Errors
///
/// The database error.
pub async fn upsert_features(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    decisions: &[(&str, bool, &str)],
    updated_by: Option<Uuid>,
) -> QueryResult<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = decisions
        .iter()
        .map(|(feature, enabled, source)| {
            (
                tenant_features::organization_id.eq(tenant),
                tenant_features::feature.eq(*feature),
                tenant_features::enabled.eq(*enabled),
                tenant_features::source.eq(*source),
                tenant_features::updated_by.eq(updated_by),
            )
        })
        .collect();
    diesel::insert_into(tenant_features::table)
        .values(rows)
        .on_conflict((tenant_features::organization_id, tenant_features::feature))
        .do_update()
        .set((
            tenant_features::enabled.eq(excluded(tenant_features::enabled)),
            tenant_features::source.eq(excluded(tenant_features::source)),
            tenant_features::updated_by.eq(excluded(tenant_features::updated_by)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
