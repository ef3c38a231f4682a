use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The whole schema, embedded in every binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The role that owns every table and runs the migrations. It cannot log in.
pub const OWNER_ROLE: &str = "tenantry_owner";
/// The role the services connect as: it owns nothing and cannot bypass row-level security.
pub const APP_ROLE: &str = "tenantry_app";

/// Key of the advisory lock that serializes migration runs on one database.
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e74_7279;

/// A failure to bootstrap or migrate.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Could not connect with the admin URL.
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A bootstrap statement failed.
    #[error("database bootstrap failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Creates database `name` through the maintenance connection `admin_url` unless it exists.
///
/// # Errors
///
/// [`MigrateError`] when the connection or the statement fails.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), MigrateError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    let found: Found =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .get_result(&mut conn)
            .await?;
    if found.n == 0 {
        let created = diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(name)))
            .execute(&mut conn)
            .await;
        // Another process may have created it in between.
        if let Err(e) = created
            && !e.to_string().contains("already exists")
        {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Bootstraps the roles and runs every pending migration on the database of `admin_url`.
///
/// `admin_url` must name a superuser (or a role with CREATEROLE that may grant itself the owner
/// role). The roles `tenantry_owner` and `tenantry_app` are created when missing, the app role
/// gets `app_password` (when not empty), and the migrations run as `tenantry_owner` while a
/// session advisory lock keeps other services and `tenantctl migrate` waiting. Needs a
/// multi-threaded Tokio runtime.
///
/// # Errors
///
/// [`MigrateError`] when a statement or a migration fails.
pub async fn migrate(admin_url: &str, app_password: &str) -> Result<Vec<String>, MigrateError> {
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await?;

    // Roles are cluster-wide while the advisory lock is per database: tolerate a concurrent
    // creator of the same role.
    let bootstrap = format!(
        r#"DO $$
BEGIN
  BEGIN
    CREATE ROLE {OWNER_ROLE} NOLOGIN;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}', current_database());
  EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO {OWNER_ROLE}', current_database());
  BEGIN
    EXECUTE 'GRANT {OWNER_ROLE} TO ' || quote_ident(session_user);
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
END $$"#
    );
    diesel::sql_query(bootstrap).execute(&mut conn).await?;
    diesel::sql_query(format!(
        "ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    ))
    .execute(&mut conn)
    .await?;
    if !app_password.is_empty() {
        diesel::sql_query(format!(
            "ALTER ROLE {APP_ROLE} PASSWORD {}",
            quote_literal(app_password)
        ))
        .execute(&mut conn)
        .await?;
    }
    diesel::sql_query(format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {OWNER_ROLE}"
    ))
    .execute(&mut conn)
    .await?;
    diesel::sql_query(format!("SET ROLE {OWNER_ROLE}"))
        .execute(&mut conn)
        .await?;

    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| MigrateError::Migration(e.to_string()))?
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>();
    let mut conn = harness.into_inner();
    diesel::sql_query("RESET ROLE").execute(&mut conn).await?;
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    Ok(applied)
}
