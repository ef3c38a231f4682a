use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Whose rows a transaction may see, decided from the verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's rows (a member's call, or a platform call narrowed to one tenant).
    Tenant(Uuid),
    /// Every tenant's rows: only for super admins and services, after their own checks.
    Platform,
    /// No tenant rows at all (public RPCs before they resolve a tenant).
    Nobody,
}

/// Sets the scope for the rest of the current transaction. Call it first inside
/// `conn.transaction(async |conn| { set_scope(conn, scope).await?; .. })`.
///
/// The setting is transaction-local (`set_config(.., true)`), so a pooled connection never
/// carries it into the next checkout.
///
/// # Errors
///
/// The database error.
pub async fn set_scope(conn: &mut AsyncPgConnection, scope: Scope) -> diesel::QueryResult<()> {
    let (tenant, platform) = match scope {
        Scope::Tenant(id) => (id.to_string(), "off"),
        Scope::Platform => (String::new(), "on"),
        Scope::Nobody => (String::new(), "off"),
    };
    diesel::sql_query(
        "SELECT set_config('tenantry.tenant_id', $1, true), set_config('tenantry.platform', $2, true)",
    )
    .bind::<Text, _>(tenant)
    .bind::<Text, _>(platform)
    .execute(conn)
    .await?;
    Ok(())
}
