//! The shared Tenantry database: one schema for the three services.
//!
//! - [`MIGRATIONS`] is the whole schema, embedded; [`migrate`] bootstraps the roles and runs the
//!   pending migrations once, as the owner role, under a Postgres advisory lock.
//! - [`Pool`] is the services' bb8 pool; the services connect as `tenantry_app`, a role that
//!   owns nothing and cannot bypass row-level security.
//! - [`Scope`] and [`set_scope`] set the tenant of a transaction (`set_config(.., true)`) from the
//!   verified token, so RLS is the second wall behind each query's own filter.
//! - [`prepared::Cached`] keeps writes prepared that diesel would parse and plan on every call.
//! - [`cluster`] starts a private Postgres cluster when none is configured (`tenantctl up`,
//!   tests on a fresh machine).

pub mod cluster;
mod migrate;
pub mod models;
mod pool;
pub mod prepared;
pub mod schema;
mod scope;
pub mod urls;

pub use migrate::{APP_ROLE, MIGRATIONS, MigrateError, OWNER_ROLE, ensure_database, migrate};
pub use pool::{
    Bb8Conn, PlatformPool, Pool, PoolConfig, PoolError, PooledConn, SHARED_READS_APPLICATION_NAME,
    connect, connect_platform, platform_url, session_url,
};
pub use scope::{Scope, set_scope};

/// A hash of the migration files, to tell a stale test template from a current one.
pub const SCHEMA_FINGERPRINT: &str = env!("TENANTRY_SCHEMA_FINGERPRINT");

pub use diesel;
pub use diesel_async;
