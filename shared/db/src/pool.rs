use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

/// The services' connection pool.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
/// A connection checked out of [`Pool`].
pub type PooledConn<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;
/// The error of a checkout: a pool timeout or a failed connect (maps to UNAVAILABLE).
pub type PoolError = bb8::RunError<diesel_async::pooled_connection::PoolError>;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connection string of the `tenantry_app` role.
    pub url: String,
    /// Most connections held (default 8: on 2 cores more connections lower throughput).
    pub max_size: u32,
    /// How long a checkout waits before answering UNAVAILABLE.
    pub connect_timeout: Duration,
}

impl PoolConfig {
    /// Settings with the defaults for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_size: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds the pool. Connections are opened lazily; none is tested on checkout, since a ping per
/// checkout halves throughput (a broken connection is dropped when a query fails on it).
///
/// # Errors
///
/// Never in practice: bb8 only fails here for a `min_idle` it cannot reach.
pub async fn connect(config: &PoolConfig) -> Result<Pool, PoolError> {
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        &config.url,
        manager_config,
    );
    let pool = bb8::Pool::builder()
        .max_size(config.max_size)
        .connection_timeout(config.connect_timeout)
        .test_on_check_out(false)
        .build_unchecked(manager);
    Ok(pool)
}

/// A pool whose connections run in platform mode for their whole session
/// (`tenantry.platform = on`, set in the connection's startup packet).
///
/// For the reads of super admins and services, which see every tenant anyway: such a read
/// needs no transaction and no scope statement, so it is one statement and one round trip
/// instead of four (`BEGIN`, scope, query, `COMMIT`). A transaction on it may still narrow its
/// scope with [`crate::set_scope`], which overrides the session's setting until it ends. Only a
/// handler whose authorization rule admits nothing but platform callers may take a connection
/// from it.
#[derive(Clone)]
pub struct PlatformPool(Pool);

impl std::fmt::Debug for PlatformPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformPool")
            .field("state", &self.0.state())
            .finish()
    }
}

impl PlatformPool {
    /// Checks a platform-mode connection out.
    ///
    /// # Errors
    ///
    /// [`PoolError`] on a checkout timeout or a failed connect.
    pub async fn get(&self) -> Result<PooledConn<'_>, PoolError> {
        self.0.get().await
    }
}

/// The connection string `url` with `tenantry.platform = on` in its startup options.
#[must_use]
pub fn platform_url(url: &str) -> String {
    const OPTION: &str = "-c tenantry.platform=on";
    match url::Url::parse(url) {
        // Spaces as %20: libpq-style URL parsers (tokio-postgres among them) do not read `+`.
        Ok(u) => {
            let sep = if u.query().is_some_and(|q| !q.is_empty()) {
                '&'
            } else {
                '?'
            };
            format!("{u}{sep}options=-c%20tenantry.platform%3Don")
        }
        // A key=value connection string.
        Err(_) => format!("{url} options='{OPTION}'"),
    }
}

/// Builds a [`PlatformPool`] with `config`'s settings.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_platform(config: &PoolConfig) -> Result<PlatformPool, PoolError> {
    let config = PoolConfig {
        url: platform_url(&config.url),
        ..config.clone()
    };
    Ok(PlatformPool(connect(&config).await?))
}

#[cfg(test)]
mod tests {
    use super::platform_url;

    #[test]
    fn platform_url_adds_the_startup_option() {
        assert_eq!(
            platform_url("postgres://app:pw@127.0.0.1:5432/db"),
            "postgres://app:pw@127.0.0.1:5432/db?options=-c%20tenantry.platform%3Don"
        );
        assert_eq!(
            platform_url("postgres://app@h/db?sslmode=disable"),
            "postgres://app@h/db?sslmode=disable&options=-c%20tenantry.platform%3Don"
        );
        assert_eq!(
            platform_url("host=h user=app dbname=db"),
            "host=h user=app dbname=db options='-c tenantry.platform=on'"
        );
    }
}
