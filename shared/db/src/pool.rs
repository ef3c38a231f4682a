use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diesel::result::QueryResult;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::PoolError as ConnectError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use futures::future::BoxFuture;

type Manager = AsyncDieselConnectionManager<AsyncPgConnection>;
/// A bb8 connection, what a [`PooledConn`] dereferences to.
pub type Bb8Conn<'a> = bb8::PooledConnection<'a, Manager>;
/// The error of a checkout: a pool timeout or a failed connect (maps to UNAVAILABLE).
pub type PoolError = bb8::RunError<diesel_async::pooled_connection::PoolError>;

/// The services' connection pool: bb8, with checkouts served first come, first served.
///
/// bb8 alone is unfair when more tasks want a connection than it holds: a task that returns
/// its connection and asks again at once takes it back before the task bb8 woke for it runs,
/// so a few tasks keep the connections while others wait out the whole checkout timeout and
/// fail (the benchmark's pool baseline, 64 tasks on 8 connections, lost 56 calls per 10 s run
/// that way). A FIFO semaphore with one permit per connection queues every checkout, the
/// returning task's too, behind those already waiting.
#[derive(Clone)]
pub struct Pool {
    inner: bb8::Pool<Manager>,
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

/// A connection checked out of [`Pool`]; it goes back when dropped, then its turn passes to the
/// longest-waiting checkout.
pub struct PooledConn<'a> {
    // Dropped first: the connection is back in the pool before the next checkout's turn.
    conn: Bb8Conn<'a>,
    _turn: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> std::ops::Deref for PooledConn<'a> {
    type Target = Bb8Conn<'a>;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("state", &self.inner.state())
            .field("free_turns", &self.permits.available_permits())
            .finish()
    }
}

impl Pool {
    /// Checks a connection out, after the checkouts already waiting; [`PoolError`] (a timeout)
    /// when none is free within the pool's connect timeout.
    ///
    /// # Errors
    ///
    /// [`PoolError`] on a checkout timeout or a failed connect.
    pub async fn get(&self) -> Result<PooledConn<'_>, PoolError> {
        let started = tokio::time::Instant::now();
        let turn = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| bb8::RunError::TimedOut)?
            // The semaphore is never closed.
            .map_err(|_| bb8::RunError::TimedOut)?;
        let left = self.timeout.saturating_sub(started.elapsed());
        let conn = tokio::time::timeout(left, self.inner.get())
            .await
            .map_err(|_| bb8::RunError::TimedOut)??;
        Ok(PooledConn { conn, _turn: turn })
    }

    /// The pool's connections and how many are idle.
    #[must_use]
    pub fn state(&self) -> bb8::State {
        self.inner.state()
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connection string of the `tenantry_app` role.
    pub url: String,
    /// Most connections held (default 8: on 2 cores more connections lower throughput).
    pub max_size: u32,
    /// How long a checkout waits before answering UNAVAILABLE.
    pub connect_timeout: Duration,
    /// Connections of a [`PlatformPool`] shared by its pipelined single-statement reads
    /// ([`PlatformPool::read`]), on top of `max_size` (default 2; 0 sends those reads through
    /// the pool).
    pub shared_readers: usize,
}

impl PoolConfig {
    /// Settings with the defaults for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_size: 8,
            connect_timeout: Duration::from_secs(5),
            shared_readers: 2,
        }
    }
}

/// Builds the pool; its sessions use generic plans ([`session_url`]). Connections are opened
/// lazily; none is tested on checkout, since a ping per checkout halves throughput (a broken
/// connection is dropped when a query fails on it).
///
/// # Errors
///
/// Never in practice: bb8 only fails here for a `min_idle` it cannot reach.
pub async fn connect(config: &PoolConfig) -> Result<Pool, PoolError> {
    build(&session_url(&config.url), config)
}

/// The pool of [`connect`] on the connection string `url` as it is.
fn build(url: &str, config: &PoolConfig) -> Result<Pool, PoolError> {
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    let inner = bb8::Pool::builder()
        .max_size(config.max_size)
        .connection_timeout(config.connect_timeout)
        .test_on_check_out(false)
        .build_unchecked(manager);
    Ok(Pool {
        inner,
        permits: Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(config.max_size).unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        timeout: config.connect_timeout,
    })
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
///
/// Besides the pool it holds a few connections shared by concurrent single-statement reads
/// ([`PlatformPool::read`]): their statements are *pipelined* (many in flight on one
/// connection, written and answered in batches), which costs Postgres and this process far
/// fewer system calls and wake-ups per statement than a checkout per read.
#[derive(Clone)]
pub struct PlatformPool {
    pool: Pool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PlatformPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformPool")
            .field("pool", &self.pool)
            .field("shared_readers", &self.shared.slots.len())
            .finish()
    }
}

/// The shared connections of a [`PlatformPool`], opened on first use and replaced after one
/// breaks.
struct Shared {
    url: String,
    connect_timeout: Duration,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

/// The `application_name` of a [`PlatformPool`]'s shared connections (unless the connection
/// string names one), to tell them apart in `pg_stat_activity`.
pub const SHARED_READS_APPLICATION_NAME: &str = "tenantry-platform-reads";

/// A shared connection, and whether its socket has closed.
struct SharedConn {
    conn: AsyncPgConnection,
    /// Set by the task driving the connection when it ends, before the requests still
    /// waiting on it fail.
    closed: Arc<AtomicBool>,
}

impl SharedConn {
    async fn open(url: &str) -> Result<Self, diesel::ConnectionError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                diesel::ConnectionError::BadConnection(e.to_string())
            })?;
        if config.get_application_name().is_none() {
            config.application_name(SHARED_READS_APPLICATION_NAME);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            if let Err(e) = connection.as_mut().await {
                tracing::warn!(error = %e, "a shared platform-mode connection closed");
            }
            flag.store(true, Ordering::Release);
            // The connection (and with it the senders of the requests in flight) is dropped
            // only now, so a read failing because it closed finds the flag set.
        });
        let conn = AsyncPgConnection::try_from(client).await?;
        Ok(Self { conn, closed })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Slot {
    conn: std::sync::Mutex<Option<Arc<SharedConn>>>,
    /// Held while the slot's connection is opened, so that one caller opens it.
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The slot's connection, unless it has none or it has closed.
    fn current(&self) -> Option<Arc<SharedConn>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|c| !c.is_closed())
    }

    /// Forgets `broken` if it is still this slot's connection.
    fn forget(&self, broken: &Arc<SharedConn>) {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *conn = None;
        }
    }
}

impl Shared {
    async fn conn(&self, slot: &Slot) -> Result<Arc<SharedConn>, PoolError> {
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let _opening = slot.opening.lock().await;
        if let Some(conn) = slot.current() {
            return Ok(conn);
        }
        let conn =
            match tokio::time::timeout(self.connect_timeout, SharedConn::open(&self.url)).await {
                Ok(Ok(conn)) => Arc::new(conn),
                Ok(Err(e)) => return Err(bb8::RunError::User(ConnectError::ConnectionError(e))),
                Err(_) => return Err(bb8::RunError::TimedOut),
            };
        *slot
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

impl PlatformPool {
    /// Checks a platform-mode connection out.
    ///
    /// # Errors
    ///
    /// [`PoolError`] on a checkout timeout or a failed connect.
    pub async fn get(&self) -> Result<PooledConn<'_>, PoolError> {
        self.pool.get().await
    }

    /// Runs one read-only statement on a shared platform-mode connection, pipelined with the
    /// other reads in flight on it.
    ///
    /// `query` gets a shared reference, so it cannot open a transaction: build one statement
    /// with `RunQueryDsl` on `&mut &*conn`. A connection found gone (the server restarted, the
    /// backend was terminated) is replaced and the read runs once more on the new one, since a
    /// read can be repeated; a statement's own error is returned as is. With no shared
    /// connections configured the read runs on a pooled connection.
    ///
    /// # Errors
    ///
    /// The outer [`PoolError`] when no connection could be opened in time; the inner error is
    /// the statement's.
    pub async fn read<R: Send>(
        &self,
        query: impl for<'c> Fn(&'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<R>>,
    ) -> Result<QueryResult<R>, PoolError> {
        let shared = &self.shared;
        if shared.slots.is_empty() {
            let conn = self.pool.get().await?;
            return Ok(query(&conn).await);
        }
        let slot = &shared.slots[shared.next.fetch_add(1, Ordering::Relaxed) % shared.slots.len()];
        let mut retried = false;
        loop {
            let conn = shared.conn(slot).await?;
            match query(&conn.conn).await {
                Err(e) if conn.is_closed() => {
                    slot.forget(&conn);
                    if retried {
                        return Ok(Err(e));
                    }
                    retried = true;
                }
                answer => return Ok(answer),
            }
        }
    }
}

/// The startup option of every pooled session: plans built once per prepared statement.
const GENERIC_PLANS: &str = "-c plan_cache_mode=force_generic_plan";
/// The startup option of a platform-mode session.
const PLATFORM_MODE: &str = "-c tenantry.platform=on";

/// The connection string `url` with `options` (space-separated `-c name=value` pairs) added to
/// its startup options, ahead of any it already has.
fn with_options(url: &str, options: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            // Spaces as %20: libpq-style URL parsers (tokio-postgres among them) do not read `+`.
            let encoded = options.replace(' ', "%20").replace('=', "%3D");
            let query = u.query().unwrap_or_default();
            let pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            let mut merged = false;
            let mut out: Vec<String> = pairs
                .iter()
                .map(|p| match p.strip_prefix("options=") {
                    Some(theirs) if !merged => {
                        merged = true;
                        format!("options={encoded}%20{theirs}")
                    }
                    _ => (*p).to_owned(),
                })
                .collect();
            if !merged {
                out.push(format!("options={encoded}"));
            }
            let mut u = u;
            u.set_query(None);
            format!("{u}?{}", out.join("&"))
        }
        // A key=value connection string (its own `options`, if any, is replaced).
        Err(_) => format!("{url} options='{options}'"),
    }
}

/// The connection string `url` with `plan_cache_mode = force_generic_plan` in its startup
/// options: what every pool of [`connect`] opens.
///
/// Generic plans: the listings' keyset pages end in `LIMIT $n`, and for a parameter limit
/// Postgres costs the generic plan as if a tenth of the table came back, so it kept building a
/// custom plan on every execution of the prepared statement (a quarter of Postgres' CPU per
/// ListTenants call, in a profile of its backends; a tenant's pages of members, invitations or
/// audit events pay the same once a big tenant makes their generic plan look dear). The generic
/// plan is the same index scan. The services' statements are
/// point reads, keyset pages and single-row writes, whose plans do not depend on the values
/// bound.
#[must_use]
pub fn session_url(url: &str) -> String {
    with_options(url, GENERIC_PLANS)
}

/// The connection string `url` with `tenantry.platform = on` and
/// `plan_cache_mode = force_generic_plan` (see [`session_url`]) in its startup options.
#[must_use]
pub fn platform_url(url: &str) -> String {
    with_options(url, &format!("{PLATFORM_MODE} {GENERIC_PLANS}"))
}

/// Builds a [`PlatformPool`] with `config`'s settings.
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_platform(config: &PoolConfig) -> Result<PlatformPool, PoolError> {
    let url = platform_url(&config.url);
    Ok(PlatformPool {
        pool: build(&url, config)?,
        shared: Arc::new(Shared {
            slots: (0..config.shared_readers)
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            url,
            connect_timeout: config.connect_timeout,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::{platform_url, session_url};

    #[test]
    fn platform_url_adds_the_startup_option() {
        assert_eq!(
            platform_url("postgres://app:pw@127.0.0.1:5432/db"),
            "postgres://app:pw@127.0.0.1:5432/db?options=-c%20tenantry.platform%3Don\
             %20-c%20plan_cache_mode%3Dforce_generic_plan"
        );
        assert_eq!(
            platform_url("postgres://app@h/db?sslmode=disable"),
            "postgres://app@h/db?sslmode=disable&options=-c%20tenantry.platform%3Don\
             %20-c%20plan_cache_mode%3Dforce_generic_plan"
        );
        assert_eq!(
            platform_url("host=h user=app dbname=db"),
            "host=h user=app dbname=db \
             options='-c tenantry.platform=on -c plan_cache_mode=force_generic_plan'"
        );
    }

    #[test]
    fn session_url_adds_generic_plans_and_keeps_the_options_a_url_has() {
        assert_eq!(
            session_url("postgres://app@h/db"),
            "postgres://app@h/db?options=-c%20plan_cache_mode%3Dforce_generic_plan"
        );
        // A deployment's own options stay, after ours (a later `-c` wins in Postgres).
        assert_eq!(
            session_url("postgres://app@h/db?options=-c%20statement_timeout%3D5s&sslmode=disable"),
            "postgres://app@h/db?options=-c%20plan_cache_mode%3Dforce_generic_plan\
             %20-c%20statement_timeout%3D5s&sslmode=disable"
        );
    }
}
