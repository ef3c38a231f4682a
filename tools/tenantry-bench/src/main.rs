//! `tenantry-bench`: the Tenantry load generator (first version).
//!
//! Starts the three services in-process on a fresh test database (`tenantry_testing::Suite`),
//! seeds tenants with SQL, and runs closed-loop load (N calls in flight over M HTTP/2
//! connections, a warm-up, then a measured window) into an HDR histogram. Every scenario runs
//! next to its baseline in the same process and the same run, and is reported as a ratio,
//! because the machines are shared and noisy.
//!
//! Scenarios: cached CheckFeatures vs a bare tonic Health/Check echo; ListTenants page 1 vs a
//! page at depth; Login at bcrypt cost 12 vs bare `bcrypt::verify` on the blocking pool, with
//! CheckFeatures measured from a second client meanwhile.
//!
//! `--smoke` proves the harness works (short runs, asserts non-zero calls and no errors, prints
//! statements per call); it never passes or fails on a timing.

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use hdrhistogram::Histogram;
use tenantry_proto::admin::v1 as admin_pb;
use tenantry_proto::settings::v1 as settings_pb;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

type AdminClient = admin_pb::tenant_admin_service_client::TenantAdminServiceClient<Channel>;
type AuthClient = admin_pb::auth_service_client::AuthServiceClient<Channel>;
type SettingsClient =
    settings_pb::tenant_settings_service_client::TenantSettingsServiceClient<Channel>;

/// The password of the login benchmark's user.
const LOGIN_PASSWORD: &str = "bench-password-0123";
/// The slug of the tenant every single-tenant scenario uses.
const BENCH_SLUG: &str = "bench-1";

#[derive(Parser, Debug, Clone)]
#[command(about = "Tenantry load generator: scenarios vs same-run baselines")]
struct Args {
    /// Calls in flight (closed loop: each finished call starts the next).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Warm-up seconds (load runs, nothing is recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Tenants seeded for the listing scenario.
    #[arg(long, default_value_t = 10_000)]
    tenants: i64,
    /// Depth (in tenants) of the deep ListTenants page.
    #[arg(long, default_value_t = 9_000)]
    depth: i64,
    /// bcrypt cost of the login user's hash and of the bare baseline (default 12; 4 in
    /// `--smoke`, which proves the harness, not the hashing rate).
    #[arg(long)]
    bcrypt_cost: Option<u32>,
    /// Logins in flight (default: 2 × the number of CPUs, so the hashing semaphore is full).
    #[arg(long)]
    login_in_flight: Option<usize>,
    /// Tokio worker threads of the load generator (the services get their own runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Short runs that prove the harness works; asserts completion, never a timing.
    #[arg(long)]
    smoke: bool,
    /// Write the markdown report to this file.
    #[arg(long)]
    write: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Statement counting
// ---------------------------------------------------------------------------------------------

/// Statements sent by every diesel connection in this process (the services run in-process).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct CountStatements;

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn statements() -> u64 {
    AtomicU64::load(&STATEMENTS, Ordering::Relaxed)
}

fn counting_instrumentation() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(CountStatements))
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How the database side counts statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbCounter {
    /// `sum(calls)` of `pg_stat_statements` for this database.
    PgStatStatements,
    /// `sum(xact_commit)` of `pg_stat_database` (a proxy: transactions, not statements; and
    /// PG 15 flushes backend stats lazily, up to ~10 s late after a busy second).
    XactCommit,
}

impl DbCounter {
    fn describe(self) -> &'static str {
        match self {
            Self::PgStatStatements => "pg_stat_statements (sum of calls for the test database)",
            Self::XactCommit => {
                "pg_stat_database.xact_commit delta (a proxy: committed transactions, not \
                 statements; pg_stat_statements is not in shared_preload_libraries)"
            }
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::PgStatStatements => {
                "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            }
            Self::XactCommit => {
                "SELECT coalesce(sum(xact_commit), 0)::bigint AS n FROM pg_stat_database \
                 WHERE datname = current_database()"
            }
        }
    }

    async fn detect(admin_url: &str) -> Self {
        let Ok(mut conn) = AsyncPgConnection::establish(admin_url).await else {
            return Self::XactCommit;
        };
        let created = diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .is_ok();
        if created
            && diesel::sql_query(Self::PgStatStatements.sql())
                .get_result::<Count>(&mut conn)
                .await
                .is_ok()
        {
            Self::PgStatStatements
        } else {
            Self::XactCommit
        }
    }

    async fn read(self, admin_url: &str) -> Result<i64> {
        let mut conn = AsyncPgConnection::establish(admin_url).await?;
        let c: Count = diesel::sql_query(self.sql()).get_result(&mut conn).await?;
        Ok(c.n)
    }
}

// ---------------------------------------------------------------------------------------------
// Closed-loop runner
// ---------------------------------------------------------------------------------------------

/// One measured run.
struct Run {
    label: String,
    /// Calls started inside the measured window that succeeded.
    calls: u64,
    /// Calls started inside the measured window that failed.
    errors: u64,
    first_error: Option<String>,
    /// Every call issued, warm-up included (the denominator of statements per call).
    issued: u64,
    window: Duration,
    /// Latencies in microseconds.
    hist: Histogram<u64>,
    /// Diesel statements per issued call (in-process count).
    stmts_per_call: Option<f64>,
    /// Database-side count per issued call.
    db_per_call: Option<f64>,
}

impl Run {
    #[expect(clippy::cast_precision_loss, reason = "call counts are far below 2^52")]
    fn rps(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    fn pct_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    fn max_us(&self) -> u64 {
        self.hist.max()
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant digits: the bounds are valid constants.
    Histogram::new_with_bounds(1, 100_000_000, 3).unwrap_or_else(|_| unreachable!())
}

#[derive(Debug, Clone, Copy)]
struct Load {
    in_flight: usize,
    warmup: Duration,
    duration: Duration,
}

/// Runs `call(i)` from `in_flight` tasks in a closed loop; records calls that start after the
/// warm-up and before the end (a call that ends after the window still counts, so a slow call
/// such as a bcrypt login is not dropped at the edge).
async fn closed_loop<F, Fut>(label: &str, load: Load, call: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(load.in_flight);
    for i in 0..load.in_flight {
        let call = Arc::clone(&call);
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut errors, mut issued) = (0u64, 0u64);
            let mut first_error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = call(i).await;
                issued += 1;
                if t0 < measure_from {
                    continue;
                }
                match r {
                    Ok(()) => {
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        hist.saturating_record(us.max(1));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (hist, errors, issued, first_error)
        }));
    }
    let mut run = Run {
        label: label.to_owned(),
        calls: 0,
        errors: 0,
        first_error: None,
        issued: 0,
        window: load.duration,
        hist: new_hist(),
        stmts_per_call: None,
        db_per_call: None,
    };
    for t in tasks {
        match t.await {
            Ok((h, errors, issued, first_error)) => {
                let _ = run.hist.add(&h);
                run.errors += errors;
                run.issued += issued;
                if run.first_error.is_none() {
                    run.first_error = first_error;
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!("task: {e}"));
            }
        }
    }
    run.calls = run.hist.len();
    run
}

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

/// The echo baseline: a bare tonic server with the services' `Server::builder()` settings
/// (HTTP/1 accepted for grpc-web, the same per-call trace span), serving only Health/Check.
async fn start_echo() -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (health, service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    tokio::spawn(async move {
        let r = Server::builder()
            .accept_http1(true)
            .trace_fn(|req: &http::Request<()>| {
                tracing::info_span!("rpc", rpc.method = %req.uri().path())
            })
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
        if let Err(e) = r {
            eprintln!("echo server failed: {e}");
        }
    });
    Ok(addr)
}

async fn channels(addr: std::net::SocketAddr, n: usize) -> Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        // One `connect()` per channel: a separate HTTP/2 connection each.
        out.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(out)
}

fn bearer(token: &str) -> Result<AsciiMetadataValue> {
    MetadataValue::try_from(format!("Bearer {token}")).context("token is not ASCII")
}

fn with_auth<T>(message: T, auth: &AsciiMetadataValue) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

/// Seeds `n` active tenants with settings rows in one statement each, plus the login user.
async fn seed(admin_url: &str, n: i64, cost: u32) -> Result<String> {
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    diesel::sql_query(
        "INSERT INTO organizations (name, slug, status, trial_days, created_at) \
         SELECT 'Bench tenant ' || g, 'bench-' || g, 'active', 0, \
                now() - make_interval(secs => g) \
         FROM generate_series(1, $1) AS g",
    )
    .bind::<BigInt, _>(n)
    .execute(&mut conn)
    .await
    .context("seeding organizations")?;
    diesel::sql_query(
        "INSERT INTO tenant_settings (organization_id) \
         SELECT id FROM organizations WHERE slug LIKE 'bench-%' ON CONFLICT DO NOTHING",
    )
    .execute(&mut conn)
    .await
    .context("seeding tenant_settings")?;
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(LOGIN_PASSWORD, cost)).await??;
    diesel::sql_query(
        "INSERT INTO users (organization_id, email, username, password_hash, org_role, status, \
                            email_verified) \
         SELECT id, 'bench@example.test', 'bench_user', $1, 'admin', 'active', true \
         FROM organizations WHERE slug = $2",
    )
    .bind::<Text, _>(&hash)
    .bind::<Text, _>(BENCH_SLUG)
    .execute(&mut conn)
    .await
    .context("seeding the login user")?;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let id: Id = diesel::sql_query("SELECT id::text AS id FROM organizations WHERE slug = $1")
        .bind::<Text, _>(BENCH_SLUG)
        .get_result(&mut conn)
        .await?;
    Ok(id.id)
}

// ---------------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------------

struct Bench {
    args: Args,
    server: Runtime,
    client: Runtime,
    admin_url: String,
    db_counter: DbCounter,
    runs: Vec<Run>,
}

impl Bench {
    fn main_load(&self) -> Load {
        if self.args.smoke {
            Load {
                in_flight: self.args.in_flight,
                warmup: Duration::from_millis(200),
                duration: Duration::from_millis(1000),
            }
        } else {
            Load {
                in_flight: self.args.in_flight,
                warmup: Duration::from_secs_f64(self.args.warmup),
                duration: Duration::from_secs_f64(self.args.duration),
            }
        }
    }

    fn login_load(&self) -> Load {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let in_flight = self.args.login_in_flight.unwrap_or(2 * cpus);
        if self.args.smoke {
            Load {
                in_flight,
                warmup: Duration::from_millis(300),
                duration: Duration::from_millis(1500),
            }
        } else {
            Load {
                in_flight,
                ..self.main_load()
            }
        }
    }

    /// Runs `fut` on the client runtime and attaches statements per call.
    fn measure(&mut self, fut: impl Future<Output = Run>) -> Result<usize> {
        let first = self.measure_many(async move { vec![fut.await] })?;
        Ok(first)
    }

    /// Runs concurrent runs; statements per call are over every call of every run. Returns
    /// the index of the first run (the others follow it).
    fn measure_many(&mut self, fut: impl Future<Output = Vec<Run>>) -> Result<usize> {
        let db_before = self
            .server
            .block_on(self.db_counter.read(&self.admin_url))?;
        let before = statements();
        let mut runs = self.client.block_on(fut);
        let after = statements();
        // Let backends flush their statistics (PG 15 flushes at most once a second).
        std::thread::sleep(Duration::from_millis(1100));
        let db_after = self
            .server
            .block_on(self.db_counter.read(&self.admin_url))?;
        let issued: u64 = runs.iter().map(|r| r.issued).sum();
        let first = self.runs.len();
        for run in &mut runs {
            if issued > 0 {
                #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
                {
                    run.stmts_per_call = Some((after - before) as f64 / issued as f64);
                    run.db_per_call = Some((db_after - db_before) as f64 / issued as f64);
                }
            }
            print_run(run);
        }
        self.runs.extend(runs);
        Ok(first)
    }
}

fn print_run(r: &Run) {
    println!(
        "{:<44} {:>9.0} req/s  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  max {:>8} µs  \
         calls {:>8}  errors {:>4}  stmts/call {}  db/call {}",
        r.label,
        r.rps(),
        r.pct_us(0.50),
        r.pct_us(0.99),
        r.pct_us(0.999),
        r.max_us(),
        r.calls,
        r.errors,
        r.stmts_per_call.map_or("-".into(), |s| format!("{s:.3}")),
        r.db_per_call.map_or("-".into(), |s| format!("{s:.3}")),
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}

/// A row of the results table.
struct Row {
    scenario: &'static str,
    figure: String,
    baseline: String,
    ratio: Option<f64>,
    target: &'static str,
    pass: Option<bool>,
}

#[expect(clippy::too_many_lines, reason = "the scenarios read top to bottom")]
fn run_all(args: Args) -> Result<(Vec<Row>, Bench, String)> {
    diesel::connection::set_default_instrumentation(counting_instrumentation)
        .map_err(|e| anyhow::anyhow!("instrumentation: {e}"))?;
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .thread_name("bench-client")
        .build()?;

    println!("starting the suite (database, three services) and the echo server...");
    let suite = server.block_on(tenantry_testing::Suite::start());
    let echo_addr = server.block_on(start_echo())?;
    let admin_url = suite.db.admin_url.clone();
    let db_counter = server.block_on(DbCounter::detect(&admin_url));
    println!("database statements counted with {}", db_counter.describe());

    let t_seed = Instant::now();
    let tenant_id = server.block_on(seed(
        &admin_url,
        args.tenants,
        args.bcrypt_cost.unwrap_or(12),
    ))?;
    println!(
        "seeded {} tenants and a cost-{} login user in {:.1} s",
        args.tenants,
        args.bcrypt_cost.unwrap_or(12),
        t_seed.elapsed().as_secs_f64()
    );

    let service = bearer(&tenantry_testing::service_token())?;
    let operator = bearer(&tenantry_testing::super_admin_token())?;
    let conns = args.connections;
    let (settings_addr, admin_addr) = (suite.settings.addr, suite.admin.addr);

    let mut bench = Bench {
        args,
        server,
        client,
        admin_url,
        db_counter,
        runs: Vec::new(),
    };
    let load = bench.main_load();

    // Clients live on the client runtime.
    let (echo_ch, settings_ch, settings_ch2, admin_ch) = bench.client.block_on(async {
        Ok::<_, anyhow::Error>((
            channels(echo_addr, conns).await?,
            channels(settings_addr, conns).await?,
            channels(settings_addr, conns).await?,
            channels(admin_addr, conns).await?,
        ))
    })?;

    // Warm the cache with one call (a miss loads the tenant), and check it answers.
    let check_req = settings_pb::CheckFeaturesRequest {
        tenant_id: tenant_id.clone(),
        features: Vec::new(),
    };
    bench.client.block_on({
        let mut c = SettingsClient::new(settings_ch[0].clone());
        let req = with_auth(check_req.clone(), &service);
        async move { c.check_features(req).await }
    })?;

    // --- S1: cached CheckFeatures vs echo ---------------------------------------------------
    let echo = bench.measure(closed_loop("B1 echo Health/Check", load, {
        let chs = echo_ch.clone();
        move |i| {
            let mut c = HealthClient::new(chs[i % chs.len()].clone());
            async move {
                c.check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(drop)
                .map_err(|e| e.to_string())
            }
        }
    }))?;
    let check_call = {
        let chs = settings_ch.clone();
        let service = service.clone();
        let req = check_req.clone();
        move |i: usize| {
            let mut c = SettingsClient::new(chs[i % chs.len()].clone());
            let r = with_auth(req.clone(), &service);
            async move {
                c.check_features(r)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    };
    let cached = bench.measure(closed_loop(
        "S1 CheckFeatures (cached)",
        load,
        check_call.clone(),
    ))?;

    // --- S4: ListTenants page 1 vs page at depth ---------------------------------------------
    let page_size = 50;
    let deep_token = bench.client.block_on({
        let mut c = AdminClient::new(admin_ch[0].clone());
        let operator = operator.clone();
        let pages = bench.args.depth / i64::from(page_size);
        async move {
            let mut token = String::new();
            for p in 0..pages {
                let resp = c
                    .list_tenants(with_auth(
                        admin_pb::ListTenantsRequest {
                            page_size,
                            page_token: token.clone(),
                            ..Default::default()
                        },
                        &operator,
                    ))
                    .await?
                    .into_inner();
                if resp.next_page_token.is_empty() {
                    bail!("the tenant list ended after {} pages", p + 1);
                }
                token = resp.next_page_token;
            }
            Ok(token)
        }
    })?;
    let list_call = |token: String| {
        let chs = admin_ch.clone();
        let operator = operator.clone();
        move |i: usize| {
            let mut c = AdminClient::new(chs[i % chs.len()].clone());
            let r = with_auth(
                admin_pb::ListTenantsRequest {
                    page_size,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &operator,
            );
            async move {
                let resp = c.list_tenants(r).await.map_err(|e| e.to_string())?;
                if resp.get_ref().tenants.len() == page_size as usize {
                    Ok(())
                } else {
                    Err(format!("short page: {}", resp.get_ref().tenants.len()))
                }
            }
        }
    };
    let page1 = bench.measure(closed_loop(
        "S4 ListTenants page 1",
        load,
        list_call(String::new()),
    ))?;
    let deep_label = format!("S4 ListTenants page at depth {}", bench.args.depth);
    let deep = bench.measure(closed_loop(&deep_label, load, list_call(deep_token)))?;

    // --- S6-style: Login at cost 12 vs bare bcrypt verify ------------------------------------
    let login_load = bench.login_load();
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let hash = bcrypt::hash(LOGIN_PASSWORD, bench.args.bcrypt_cost.unwrap_or(12))?;
    let bare = bench.measure(closed_loop(
        &format!(
            "B4 bare bcrypt::verify cost {}",
            bench.args.bcrypt_cost.unwrap_or(12)
        ),
        login_load,
        {
            // The service's hashing: a semaphore of one permit per CPU, spawn_blocking on the
            // services' runtime.
            let permits = Arc::new(Semaphore::new(cpus));
            let handle = bench.server.handle().clone();
            move |_| {
                let permits = Arc::clone(&permits);
                let handle = handle.clone();
                let hash = hash.clone();
                async move {
                    let permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                    let ok = handle
                        .spawn_blocking(move || {
                            let ok = bcrypt::verify(LOGIN_PASSWORD, &hash).unwrap_or(false);
                            drop(permit);
                            ok
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    if ok {
                        Ok(())
                    } else {
                        Err("verify failed".into())
                    }
                }
            }
        },
    ))?;
    let login_call = {
        let chs = admin_ch.clone();
        move |i: usize| {
            let mut c = AuthClient::new(chs[i % chs.len()].clone());
            let r = tonic::Request::new(admin_pb::LoginRequest {
                tenant_slug: BENCH_SLUG.into(),
                identifier: Some(admin_pb::login_request::Identifier::Email(
                    "bench@example.test".into(),
                )),
                password: LOGIN_PASSWORD.into(),
            });
            async move { c.login(r).await.map(drop).map_err(|e| e.to_string()) }
        }
    };
    let login_label = format!("S6 Login cost {}", bench.args.bcrypt_cost.unwrap_or(12));
    let login_only = bench.measure(closed_loop(&login_label, login_load, login_call.clone()))?;
    // Login load and CheckFeatures (second client, its own connections) at the same time.
    let check_call2 = {
        let chs = settings_ch2.clone();
        let service = service.clone();
        let req = check_req.clone();
        move |i: usize| {
            let mut c = SettingsClient::new(chs[i % chs.len()].clone());
            let r = with_auth(req.clone(), &service);
            async move {
                c.check_features(r)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }
    };
    let both_idx = bench.measure_many({
        let login_label = format!("{login_label} (with CheckFeatures load)");
        async move {
            let (login, check) = tokio::join!(
                closed_loop(&login_label, login_load, login_call),
                closed_loop("S6 CheckFeatures during Login load", load, check_call2),
            );
            vec![login, check]
        }
    })?;
    let during = both_idx + 1;

    let r = &bench.runs;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    #[expect(
        clippy::cast_precision_loss,
        reason = "latencies in µs are far below 2^52"
    )]
    let us = |v: u64| v as f64;
    let mut rows = Vec::new();
    let s1 = ratio(r[cached].rps(), r[echo].rps());
    rows.push(Row {
        scenario: "S1 cached CheckFeatures vs echo: req/s",
        figure: format!("{:.0}/s", r[cached].rps()),
        baseline: format!("{:.0}/s", r[echo].rps()),
        ratio: Some(s1),
        target: "≥ 0.80",
        pass: Some(s1 >= 0.8),
    });
    let s1p = ratio(us(r[cached].pct_us(0.99)), us(r[echo].pct_us(0.99)));
    rows.push(Row {
        scenario: "S1 cached CheckFeatures vs echo: p99",
        figure: fmt_us(r[cached].pct_us(0.99)),
        baseline: fmt_us(r[echo].pct_us(0.99)),
        ratio: Some(s1p),
        target: "≤ 1.3",
        pass: Some(s1p <= 1.3),
    });
    let stm = r[cached].stmts_per_call.unwrap_or(f64::NAN);
    rows.push(Row {
        scenario: "S1 cached CheckFeatures: DB statements per call",
        figure: format!("{stm:.4}"),
        baseline: format!("echo: {:.4}", r[echo].stmts_per_call.unwrap_or(f64::NAN)),
        ratio: None,
        target: "0",
        pass: Some(stm < 0.001),
    });
    let s4 = ratio(us(r[deep].pct_us(0.5)), us(r[page1].pct_us(0.5)));
    rows.push(Row {
        scenario: "S4 ListTenants depth 9,000 of 10,000 vs page 1: p50",
        figure: fmt_us(r[deep].pct_us(0.5)),
        baseline: fmt_us(r[page1].pct_us(0.5)),
        ratio: Some(s4),
        target: "≤ 1.3",
        pass: Some(s4 <= 1.3),
    });
    let s4t = ratio(r[page1].rps(), r[deep].rps());
    rows.push(Row {
        scenario: "S4 ListTenants depth vs page 1: cost by throughput (page1 req/s ÷ deep req/s)",
        figure: format!("{:.0}/s", r[deep].rps()),
        baseline: format!("{:.0}/s", r[page1].rps()),
        ratio: Some(s4t),
        target: "≤ 1.3",
        pass: Some(s4t <= 1.3),
    });
    let s6 = ratio(r[login_only].rps(), r[bare].rps());
    rows.push(Row {
        scenario: "S6 Login (bcrypt 12) vs bare bcrypt::verify: req/s",
        figure: format!("{:.2}/s", r[login_only].rps()),
        baseline: format!("{:.2}/s", r[bare].rps()),
        ratio: Some(s6),
        target: "≥ 0.90",
        pass: Some(s6 >= 0.9),
    });
    let iso = ratio(r[during].rps(), r[cached].rps());
    rows.push(Row {
        scenario: "S6 CheckFeatures during Login load vs idle: req/s",
        figure: format!("{:.0}/s", r[during].rps()),
        baseline: format!("{:.0}/s", r[cached].rps()),
        ratio: Some(iso),
        target: "≥ 0.45",
        pass: Some(iso >= 0.45),
    });
    let isop = ratio(us(r[during].pct_us(0.99)), us(r[cached].pct_us(0.99)));
    rows.push(Row {
        scenario: "S6 CheckFeatures during Login load vs idle: p99",
        figure: fmt_us(r[during].pct_us(0.99)),
        baseline: fmt_us(r[cached].pct_us(0.99)),
        ratio: Some(isop),
        target: "≤ 2.0",
        pass: Some(isop <= 2.0),
    });
    let max = r[during].max_us();
    rows.push(Row {
        scenario: "S6 CheckFeatures during Login load: slowest call",
        figure: fmt_us(max),
        baseline: format!("idle max {}", fmt_us(r[cached].max_us())),
        ratio: None,
        target: "no call ≥ 100 ms",
        pass: Some(max < 100_000),
    });
    let s6b = ratio(r[both_idx].rps(), r[bare].rps());
    rows.push(Row {
        scenario: "S6 Login while CheckFeatures runs vs bare bcrypt: req/s",
        figure: format!("{:.2}/s", r[both_idx].rps()),
        baseline: format!("{:.2}/s", r[bare].rps()),
        ratio: Some(s6b),
        target: "(info)",
        pass: None,
    });

    drop(suite);
    Ok((rows, bench, tenant_id))
}

fn fmt_us(v: u64) -> String {
    if v >= 10_000 {
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let ms = v as f64 / 1000.0;
        format!("{ms:.1} ms")
    } else {
        format!("{v} µs")
    }
}

fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cpus, model)
}

fn report(rows: &[Row], bench: &Bench) -> String {
    let (cpus, model) = machine();
    let load = bench.main_load();
    let login = bench.login_load();
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Produced by `cargo run --release -p tenantry-bench -- --write docs/benchmarks.md` \
         (one run of the full suite; `--smoke` is the short harness check).\n"
    );
    let _ = writeln!(
        s,
        "- Date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(s, "- Machine: {cpus} CPUs (nproc), `{model}`");
    let _ = writeln!(
        s,
        "- Load: closed loop, {} calls in flight over {} HTTP/2 connections, {:.1} s warm-up + \
         {:.1} s measured per run; logins {} in flight; load generator on {} tokio worker(s), the \
         services on their own multi-thread runtime in the same process.",
        load.in_flight,
        bench.args.connections,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
        login.in_flight,
        bench.args.client_threads,
    );
    let _ = writeln!(
        s,
        "- **The machine was shared with other builds during this run**, so absolute numbers \
         are ballparks only; the bars are ratios to baselines measured in the same run on the \
         same cores.\n"
    );
    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(
        s,
        "| Scenario | Figure | Baseline | Ratio | Target | Pass/fail |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.figure,
            r.baseline,
            r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
            r.target,
            match r.pass {
                Some(true) => "pass",
                Some(false) => "**fail**",
                None => "—",
            }
        );
    }
    let _ = writeln!(s, "\n## Every run\n");
    let _ = writeln!(
        s,
        "| Run | req/s | p50 | p99 | p99.9 | max | calls | errors | diesel statements/call | \
         DB counter/call |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &bench.runs {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.rps(),
            fmt_us(r.pct_us(0.5)),
            fmt_us(r.pct_us(0.99)),
            fmt_us(r.pct_us(0.999)),
            fmt_us(r.max_us()),
            r.calls,
            r.errors,
            r.stmts_per_call.map_or("—".into(), |x| format!("{x:.3}")),
            r.db_per_call.map_or("—".into(), |x| format!("{x:.3}")),
        );
    }
    let _ = writeln!(s, "\n## What is measured, and how\n");
    let _ = writeln!(
        s,
        "- The three services run in-process (`tenantry_testing::Suite::start`: a fresh \
         database cloned from the migrated template, pool size 4 per service). Tenants are \
         seeded with one `INSERT … SELECT generate_series` through the superuser connection.\n\
         - Closed loop: every task starts its next call when the previous one ends. A call is \
         recorded when it *starts* inside the measured window; req/s = recorded calls ÷ window. \
         Latencies go into an HDR histogram (µs, 3 significant digits).\n\
         - **B1 echo**: a bare tonic server in the same process with the services' \
         `Server::builder()` settings (`accept_http1(true)`, the same per-call trace span), no \
         middleware, serving only `grpc.health.v1.Health/Check`, called the same way. Its \
         messages are smaller than CheckFeatures' (15 features, limits).\n\
         - **S1**: `TenantSettingsService.CheckFeatures` (all 15 features) for one seeded \
         tenant with a `service` token, after one call has filled the cache.\n\
         - **S4**: `ListTenants` (page size 50, super-admin token) page 1 vs the page at depth \
         {depth} of {tenants}, reached once by walking `next_page_token`, then fetched with \
         that token repeatedly. Cost is compared by p50 (and by throughput).\n\
         - **S6**: `Login` of a user whose hash was made at cost {cost} directly in SQL (the \
         suite's tenant-admin hashes new passwords at cost 4, but verifies at the hash's cost), \
         vs bare `bcrypt::verify` at cost {cost} on the services' runtime's blocking pool \
         behind a semaphore of one permit per CPU (the service's hashing set-up), at the same \
         concurrency. Then Login load again, with CheckFeatures load from a second client on \
         its own connections at the same time.\n\
         - **Statements per call**: every diesel connection in the process (the services' pools \
         included) carries an instrumentation that counts `StartQuery` events — `BEGIN`, \
         `COMMIT`, `SET`, pool pings and queries alike — divided by every call issued in the \
         run (warm-up included). The *DB counter* column is the database's own view: {db}. \
         Both include background work of the services (sweeps, workers) during the run; the \
         echo run shows that noise floor.",
        depth = bench.args.depth,
        tenants = bench.args.tenants,
        cost = bench.args.bcrypt_cost.unwrap_or(12),
        db = bench.db_counter.describe(),
    );
    let _ = writeln!(s, "\n## Not measured yet\n");
    let _ = writeln!(
        s,
        "- ABAB interleaving and 3 repetitions (median, min–max): every figure is one run.\n\
         - Server CPU time per call (`/proc/<pid>/stat`): the services share the load \
         generator's process, so per-thread CPU accounting is still to do.\n\
         - Open-loop mode, 1-in-flight latency (S9), uncached reads (S2, baselines B2/B3), \
         writes (S5, B5), the realistic mix (S3), overload (S8), grpc-web (S7), resident \
         memory per service, and the PNG plot.\n\
         - Provisioning throughput (issue 5) is measured here through its bcrypt-bound half, \
         Login; the ProvisionTenant workflow itself is not driven yet.\n\
         - Pinned 1+1 layout: the runs use the shared layout (everything on every core)."
    );
    s
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.bcrypt_cost.is_none() {
        args.bcrypt_cost = Some(if args.smoke { 4 } else { 12 });
    }
    let smoke = args.smoke;
    let write = args.write.clone();
    let started = Instant::now();
    let (rows, bench, _) = match run_all(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tenantry-bench: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!();
    for r in &rows {
        println!(
            "{:<80} {:>12} vs {:>12}  ratio {:>6}  target {:<16} {}",
            r.scenario,
            r.figure,
            r.baseline,
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.target,
            if smoke {
                "(smoke: not judged)"
            } else {
                match r.pass {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "",
                }
            }
        );
    }
    let mut ok = true;
    if smoke {
        for r in &bench.runs {
            if r.calls == 0 || r.errors > 0 {
                eprintln!(
                    "smoke: run {:?} completed {} calls with {} errors ({})",
                    r.label,
                    r.calls,
                    r.errors,
                    r.first_error.as_deref().unwrap_or("no error")
                );
                ok = false;
            }
        }
        println!(
            "smoke: {} runs, {} in {:.1} s",
            bench.runs.len(),
            if ok { "all completed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = write {
        let text = report(&rows, &bench);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("tenantry-bench: writing {}: {e}", path.display());
            ok = false;
        } else {
            println!("wrote {}", path.display());
        }
    }
    // Dropping the runtimes stops the services; the test database is dropped with the suite.
    drop(bench);
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
