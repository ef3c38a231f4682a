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
