use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::define_sql_function! {
    /// Postgres' `set_config(name, value, is_local)`.
    fn set_config(name: Text, value: Text, is_local: Bool) -> Text;
}

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
    // A query-builder statement, not `sql_query`: it is prepared once per connection and
    // cached, where a raw query would be parsed and planned again in every transaction.
    diesel::select((
        set_config("tenantry.tenant_id", tenant, true),
        set_config("tenantry.platform", platform, true),
    ))
    .execute(conn)
    .await?;
    Ok(())
}
