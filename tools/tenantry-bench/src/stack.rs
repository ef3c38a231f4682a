//! The system under test: a private Postgres (with `pg_stat_statements`), one migrated
//! database, and each service — plus the echo baseline — in a process of its own, so that CPU
//! time and resident memory are read per process from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use tenantry_db::cluster::Cluster;
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The password of the seeded users.
pub(crate) const PASSWORD: &str = "bench-password-0123";
/// The database of the bench.
const DB: &str = "tenantry_bench";

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// What an interrupted run would leave behind: the served processes (each in a session of its
/// own, so a terminal's Ctrl-C does not reach them) and the private Postgres (which starts a
/// session of its own too). Registered as they start; [`clean_up_on_signals`] ends them.
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    pids: Vec::new(),
    clusters: Vec::new(),
});

struct Leftovers {
    pids: Vec<i32>,
    clusters: Vec<(Cluster, PathBuf)>,
}

fn leftovers() -> std::sync::MutexGuard<'static, Leftovers> {
    LEFTOVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// On SIGINT, SIGTERM or SIGHUP: ends the served processes, stops and removes the private
/// Postgres, and exits with 128 + the signal's number. Call first thing in `main`, before any
/// other thread starts, so that every thread leaves those signals to the one waiting for them
/// (a child's signal mask is reset when it is spawned).
///
/// # Errors
///
/// When the signals cannot be blocked or the waiting thread cannot start.
pub(crate) fn clean_up_on_signals() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set.thread_block().context("blocking the stop signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(sig) = set.wait() else { return };
            eprintln!("tenantry-bench: {sig}: stopping the services and the private Postgres");
            let left = leftovers();
            for &pid in &left.pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            for (cluster, base) in &left.clusters {
                let _ = cluster.stop();
                let _ = std::fs::remove_dir_all(base);
            }
            std::process::exit(128 + sig as i32);
        })?;
    Ok(())
}

/// The private Postgres cluster; stopped and removed when dropped.
pub(crate) struct Db {
    cluster: Cluster,
    base: PathBuf,
    /// Superuser URL of the bench database.
    pub(crate) admin_url: String,
    /// Superuser URL of the `postgres` database (statement counting runs there, so it does not
    /// count itself).
    pub(crate) server_url: String,
    /// URL of the services' role.
    pub(crate) app_url: String,
}

impl Db {
    /// initdb (durable: fsync and synchronous commit on, so writes cost what they cost),
    /// `pg_stat_statements` preloaded; creates and migrates the bench database.
    pub(crate) async fn start(pool_size: u32) -> Result<Self> {
        let base = std::env::temp_dir().join(format!("tenantry-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let conf = format!(
            "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = top\n\
             pg_stat_statements.track_utility = on\nmax_connections = {}\n",
            200 + pool_size * 3
        );
        let cluster = tokio::task::spawn_blocking({
            let base = base.clone();
            move || Cluster::start_with(&base, true, &conf)
        })
        .await?
        .context("starting the private Postgres (initdb, pg_ctl)")?;
        leftovers().clusters.push((cluster.clone(), base.clone()));
        let server_url = cluster.admin_url("postgres");
        let admin_url = cluster.admin_url(DB);
        tenantry_db::ensure_database(&server_url, DB).await?;
        tenantry_db::migrate(&admin_url, tenantry_testing::TEST_APP_PASSWORD)
            .await
            .context("migrating")?;
        // The view lives where it is read: the `postgres` database (its counts cover every
        // database).
        let mut conn = AsyncPgConnection::establish(&server_url).await?;
        diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("pg_stat_statements")?;
        let app_url = tenantry_db::urls::with_user(
            &admin_url,
            tenantry_db::APP_ROLE,
            tenantry_testing::TEST_APP_PASSWORD,
        )?;
        Ok(Self {
            cluster,
            base,
            admin_url,
            server_url,
            app_url,
        })
    }

    /// Top-level statements executed in the bench database so far (`BEGIN`, `SET`, `COMMIT`
    /// and pool pings included).
    pub(crate) async fn statements(&self) -> Result<i64> {
        let mut conn = AsyncPgConnection::establish(&self.server_url).await?;
        let n: N = diesel::sql_query(
            "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)",
        )
        .bind::<Text, _>(DB)
        .get_result(&mut conn)
        .await?;
        Ok(n.n)
    }

    /// Backends of the services' role right now.
    pub(crate) async fn app_backends(&self) -> Result<i64> {
        let mut conn = AsyncPgConnection::establish(&self.server_url).await?;
        let n: N =
            diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1")
                .bind::<Text, _>(tenantry_db::APP_ROLE)
                .get_result(&mut conn)
                .await?;
        Ok(n.n)
    }

    /// CPU time (utime + stime, in clock ticks) the private Postgres has spent so far: its
    /// postmaster, every live child (backends, WAL writer, checkpointer, ...) and, through the
    /// postmaster's `cutime`/`cstime`, every child that has already exited.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let Some(postmaster) =
            std::fs::read_to_string(self.cluster.data_dir().join("postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return 0;
        };
        // utime, stime, cutime, cstime of the postmaster: fields 14–17.
        let own = || stat_fields(postmaster).map(|f| (11..=14).map(|i| field(&f, i)).sum::<u64>());
        // A child reaped while its siblings are read would be counted nowhere (or twice): the
        // backends of a run's connections exit just as it ends. Read again until the
        // postmaster's count is the same before and after the children.
        let mut ticks = 0;
        for _ in 0..20 {
            let Some(before) = own() else { return 0 };
            let mut children = 0;
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(f) = stat_fields(pid)
                    && field(&f, 1) == u64::from(postmaster)
                {
                    children += field(&f, 11) + field(&f, 12);
                }
            }
            ticks = before + children;
            if own() == Some(before) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ticks
    }

    pub(crate) async fn admin_conn(&self) -> Result<AsyncPgConnection> {
        Ok(AsyncPgConnection::establish(&self.admin_url).await?)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.base);
        leftovers().clusters.retain(|(_, base)| *base != self.base);
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces): index 0 is
/// field 3 (state), 1 the parent's pid, 11 and 12 utime and stime, 13 and 14 cutime and cstime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn field(f: &[String], i: usize) -> u64 {
    f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A serving child process.
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    child: Child,
}

/// CPU ticks and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStat {
    /// utime + stime, in clock ticks.
    pub(crate) ticks: u64,
    /// Resident set, kB.
    pub(crate) rss_kb: u64,
    /// Peak resident set, kB.
    pub(crate) hwm_kb: u64,
}

pub(crate) fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100)
}

impl Proc {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn stat(&self) -> ProcStat {
        let Some(pid) = self.pid() else {
            return ProcStat::default();
        };
        let mut s = ProcStat::default();
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name (which may hold spaces) start at `)`.
            if let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // rest[0] is field 3 (state): utime is field 14, stime 15.
                let utime = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                let stime = f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                s.ticks = utime + stime;
            }
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in text.lines() {
                let kb = || {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if line.starts_with("VmRSS:") {
                    s.rss_kb = kb();
                } else if line.starts_with("VmHWM:") {
                    s.hwm_kb = kb();
                }
            }
        }
        s
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            leftovers().pids.retain(|&p| p != pid);
        }
    }
}

/// Binds and releases a port on 127.0.0.1.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// The addresses of the three services and the echo server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) admin: SocketAddr,
    pub(crate) settings: SocketAddr,
    pub(crate) provisioning: SocketAddr,
    pub(crate) echo: SocketAddr,
}

impl Addrs {
    pub(crate) fn pick() -> Result<Self> {
        Ok(Self {
            admin: free_addr()?,
            settings: free_addr()?,
            provisioning: free_addr()?,
            echo: free_addr()?,
        })
    }
}

/// The environment variable that names the core a served process pins itself to (the pinned
/// layout).
pub(crate) const PIN_ENV: &str = "TENANTRY_BENCH_CPU";

/// The first and the last core this process may run on, when they differ.
pub(crate) fn two_cores() -> Result<(usize, usize)> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    match (<[usize]>::first(&cpus), <[usize]>::last(&cpus)) {
        (Some(&a), Some(&b)) if a != b => Ok((a, b)),
        _ => bail!("the pinned layout needs two cores; this process may use {cpus:?}"),
    }
}

/// Pins thread `tid` (0: the calling thread) to core `cpu`.
pub(crate) fn pin_thread(tid: i32, cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set)?;
    Ok(())
}

/// Pins every thread of this process to core `cpu`; threads started later inherit it from the
/// thread that starts them. Processes started before (the private Postgres) keep every core.
pub(crate) fn pin_process(cpu: usize) -> Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            pin_thread(tid, cpu).with_context(|| format!("pinning thread {tid}"))?;
        }
    }
    Ok(())
}

/// What every child is started with.
pub(crate) struct Spawn<'a> {
    pub(crate) db: &'a Db,
    pub(crate) addrs: Addrs,
    pub(crate) pool_size: u32,
    pub(crate) bcrypt_cost: u32,
    pub(crate) data_dir: &'a Path,
    /// `TENANTRY_WORKER_THREADS` of every served process, the echo's included.
    pub(crate) worker_threads: u16,
    /// The core every served process pins itself to (the pinned layout).
    pub(crate) cpu: Option<usize>,
}

impl Spawn<'_> {
    /// Starts `tenantry-bench __serve <name>` (this binary) with the service's configuration
    /// in its environment, exactly as a deployment sets it, and waits until it reports SERVING.
    pub(crate) async fn start(&self, name: &'static str, args: &[String]) -> Result<Proc> {
        let exe = std::env::current_exe()?;
        let a = self.addrs;
        let addr = match name {
            "tenant-admin" => a.admin,
            "tenant-settings" => a.settings,
            "provisioning" => a.provisioning,
            "echo" => a.echo,
            _ => bail!("unknown service {name}"),
        };
        let mut cmd = Command::new(exe);
        cmd.arg("__serve")
            .arg(name)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", &self.db.app_url)
            .env("DATABASE_POOL_SIZE", self.pool_size.to_string())
            .env("TENANTRY_WORKER_THREADS", self.worker_threads.to_string())
            .env("TENANTRY_JWT_SECRET", tenantry_testing::TEST_JWT_SECRET)
            .env("TENANTRY_SECRETS_KEY", tenantry_testing::TEST_SECRETS_KEY)
            .env("TENANTRY_BCRYPT_COST", self.bcrypt_cost.to_string())
            .env("TENANTRY_DATA_DIR", self.data_dir)
            .env("TENANT_ADMIN_ADDR", a.admin.to_string())
            .env("TENANT_SETTINGS_ADDR", a.settings.to_string())
            .env("PROVISIONING_ADDR", a.provisioning.to_string())
            .env("TENANT_ADMIN_URL", format!("http://{}", a.admin))
            .env("TENANT_SETTINGS_URL", format!("http://{}", a.settings))
            .env("PROVISIONING_URL", format!("http://{}", a.provisioning))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(cpu) = self.cpu {
            cmd.env(PIN_ENV, cpu.to_string());
        }
        cmd.args(args);
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            leftovers().pids.push(pid);
        }
        let mut p = Proc { name, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !p.alive() {
                bail!("{name} exited during start-up");
            }
            if serving(addr).await {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("{name} did not report SERVING within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(ch) = Channel::from_shared(format!("http://{addr}"))
        .map(|e| e.connect_timeout(Duration::from_millis(200)))
    else {
        return false;
    };
    let Ok(ch) = ch.connect().await else {
        return false;
    };
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32)
}

/// One HTTP/2 connection of the load generator: hyper's connection handle, used by tonic's
/// generated clients directly.
///
/// tonic's `Channel` puts a `tower::buffer::Buffer` in front of the connection: every call is
/// handed through a channel to a worker task, which sends it and hands the answer back, two more
/// task wake-ups per call in the load generator's one thread. The load generator shares the two
/// cores with the system under test, and the in-process baselines (B2–B6) pay no such client, so
/// its CPU per call is taken from the services' share: this handle sends each call from the
/// calling task (the connection's own task still does the socket work, as in `Channel`).
#[derive(Clone)]
pub(crate) struct Conn {
    send: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    authority: http::uri::Authority,
}

impl Conn {
    /// Opens one connection to `addr`, with tonic's `Channel` defaults (`TCP_NODELAY`, hyper's
    /// HTTP/2 window sizes).
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a load-generator connection ended");
            }
        });
        Ok(Self {
            send,
            authority: addr.to_string().parse()?,
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        // tonic's generated client sends the path alone; HTTP/2 wants scheme and authority.
        let mut uri = std::mem::take(req.uri_mut()).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        if let Ok(uri) = http::Uri::from_parts(uri) {
            *req.uri_mut() = uri;
        }
        Box::pin(self.send.send_request(req))
    }
}

/// `n` HTTP/2 connections to `addr` for the load generator.
pub(crate) async fn channels(addr: SocketAddr, n: usize) -> Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(Conn::connect(addr).await?);
    }
    Ok(out)
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    id: String,
}

/// Seeds `n` active tenants (slugs `bench-1`..) with settings rows, `pending` tenants for the
/// provisioning runs, and a login user on `bench-1` whose hash is made at `cost`. Returns the
/// ids of the active tenants (in slug order) and of the pending ones.
pub(crate) async fn seed(
    db: &Db,
    n: i64,
    pending: i64,
    cost: u32,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut conn = db.admin_conn().await?;
    diesel::sql_query(
        "INSERT INTO organizations (name, slug, email, status, trial_days, created_at) \
         SELECT 'Bench tenant ' || g, 'bench-' || g, 'owner' || g || '@bench.test', 'active', 0, \
                now() - make_interval(secs => g) \
         FROM generate_series(1, $1) AS g",
    )
    .bind::<BigInt, _>(n)
    .execute(&mut conn)
    .await
    .context("seeding organizations")?;
    diesel::sql_query(
        "INSERT INTO organizations (name, slug, email, status, created_at) \
         SELECT 'Pending tenant ' || g, 'pending-' || g, 'owner' || g || '@pending.test', \
                'pending', now() - interval '1 year' - make_interval(secs => g) \
         FROM generate_series(1, $1) AS g",
    )
    .bind::<BigInt, _>(pending)
    .execute(&mut conn)
    .await
    .context("seeding pending organizations")?;
    diesel::sql_query(
        "INSERT INTO tenant_settings (organization_id) \
         SELECT id FROM organizations WHERE slug LIKE 'bench-%' ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await
    .context("seeding tenant_settings")?;
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(PASSWORD, cost)).await??;
    diesel::sql_query(
        "INSERT INTO users (organization_id, email, username, password_hash, org_role, status, \
                            email_verified) \
         SELECT id, 'bench@example.test', 'bench_user', $1, 'admin', 'active', true \
         FROM organizations WHERE slug = 'bench-1'",
    )
    .bind::<Text, _>(&hash)
    .execute(&mut conn)
    .await
    .context("seeding the login user")?;
    diesel::sql_query("ANALYZE")
        .execute(&mut conn)
        .await
        .context("ANALYZE")?;
    let active: Vec<Id> = diesel::sql_query(
        "SELECT id::text AS id FROM organizations WHERE slug LIKE 'bench-%' \
         ORDER BY substr(slug, 7)::int",
    )
    .load(&mut conn)
    .await?;
    let pending: Vec<Id> = diesel::sql_query(
        "SELECT id::text AS id FROM organizations WHERE slug LIKE 'pending-%' ORDER BY slug",
    )
    .load(&mut conn)
    .await?;
    Ok((
        active.into_iter().map(|i| i.id).collect(),
        pending.into_iter().map(|i| i.id).collect(),
    ))
}
