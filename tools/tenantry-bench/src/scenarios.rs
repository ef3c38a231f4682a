//! The scenarios of `docs/benchmarks.md`, each next to its baseline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use diesel::sql_types::Text;
use prost::Message as _;
use tenantry_auth::PlatformRole;
use tenantry_proto::admin::v1 as admin_pb;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as prov_pb;
use tenantry_proto::settings::v1 as settings_pb;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use uuid::Uuid;

use crate::Args;
use crate::baselines;
use crate::load::{Load, Run, Zipf, closed_loop, open_loop};
use crate::stack::{self, Addrs, Db, Proc, ProcStat, Spawn};

type AdminClient = admin_pb::tenant_admin_service_client::TenantAdminServiceClient<stack::Conn>;
type SettingsClient =
    settings_pb::tenant_settings_service_client::TenantSettingsServiceClient<stack::Conn>;
type ProvClient = prov_pb::provisioning_service_client::ProvisioningServiceClient<stack::Conn>;

/// A row of the results table.
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) figure: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: &'static str,
    pub(crate) pass: Option<bool>,
    /// A count, not a timing: judged in `--smoke` too.
    pub(crate) structural: bool,
}

/// Resident memory of one service.
pub(crate) struct Memory {
    pub(crate) name: &'static str,
    pub(crate) idle_kb: u64,
    pub(crate) peak_kb: u64,
}

/// Everything one run of the suite produced.
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) runs: Vec<Run>,
    pub(crate) memory: Vec<Memory>,
    pub(crate) started: chrono::DateTime<chrono::Utc>,
    pub(crate) elapsed: Duration,
}

fn bearer(token: &str) -> Result<AsciiMetadataValue> {
    MetadataValue::try_from(format!("Bearer {token}")).context("token is not ASCII")
}

fn with_auth<T>(message: T, auth: &AsciiMetadataValue) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "latencies in µs are far below 2^52"
)]
fn us(v: u64) -> f64 {
    v as f64
}

pub(crate) fn fmt_us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}/s")
    } else {
        format!("{v:.2}/s")
    }
}

struct Bench<'a> {
    args: &'a Args,
    /// The load generator's runtime (`--client-threads` workers).
    client: Runtime,
    /// The runtime of the in-process baselines (B2–B6): as many workers as the services have
    /// (`--worker-threads`) and a blocking pool, like a service.
    base: Runtime,
    db: Db,
    procs: Vec<Proc>,
    runs: Vec<Run>,
    peak: Vec<(&'static str, u64)>,
    /// The group of scenarios being run is not among `--only`: measure nothing.
    skip: bool,
}

impl Bench<'_> {
    /// Starts a group of scenarios; with `--only`, the runs of a group not listed are skipped.
    fn group(&mut self, name: &str) {
        self.skip = !self.args.only.is_empty() && !self.args.only.iter().any(|o| o == name);
    }

    fn base_load(&self) -> Load {
        Load {
            in_flight: self.args.in_flight,
            warmup: Duration::from_secs_f64(self.args.warmup),
            duration: Duration::from_secs_f64(self.args.duration),
        }
    }

    fn proc_stat(&self, name: &str) -> ProcStat {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(Proc::stat)
            .unwrap_or_default()
    }

    /// Runs `fut` on the load generator's runtime; attaches database statements per issued
    /// call and the CPU time per call of `cpu_of` (a child process, or `bench` for this one).
    fn measure(&mut self, cpu_of: &'static str, fut: impl Future<Output = Run>) -> Result<usize> {
        let idx = self.measure_many(cpu_of, async move { vec![fut.await] })?;
        Ok(idx)
    }

    fn measure_many(
        &mut self,
        cpu_of: &'static str,
        fut: impl Future<Output = Vec<Run>>,
    ) -> Result<usize> {
        if self.skip {
            drop(fut);
            self.runs.push(Run {
                label: "skipped".into(),
                calls: 0,
                errors: 0,
                first_error: None,
                issued: 0,
                window: Duration::from_secs(1),
                hist: crate::load::new_hist(),
                stmts_per_call: None,
                cpu_us_per_call: None,
                cpu_of: None,
                client_cpu_us_per_call: None,
                db_cpu_us_per_call: None,
            });
            return Ok(self.runs.len() - 1);
        }
        let s0 = self.client.block_on(self.db.statements())?;
        let c0 = self.cpu_ticks(cpu_of);
        let me0 = self.cpu_ticks("bench");
        let pg0 = self.db.cpu_ticks();
        let mut runs = self.client.block_on(fut);
        let c1 = self.cpu_ticks(cpu_of);
        let me1 = self.cpu_ticks("bench");
        let pg1 = self.db.cpu_ticks();
        let s1 = self.client.block_on(self.db.statements())?;
        let issued: u64 = runs.iter().map(|r| r.issued).sum();
        let first = self.runs.len();
        let tick_us = 1_000_000.0 / {
            #[expect(clippy::cast_precision_loss, reason = "small")]
            let t = stack::clock_ticks() as f64;
            t
        };
        for run in &mut runs {
            if issued > 0 {
                #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
                {
                    run.stmts_per_call = Some((s1 - s0) as f64 / issued as f64);
                    run.cpu_us_per_call = Some((c1 - c0) as f64 * tick_us / issued as f64);
                    run.client_cpu_us_per_call = Some((me1 - me0) as f64 * tick_us / issued as f64);
                    run.db_cpu_us_per_call =
                        Some(pg1.saturating_sub(pg0) as f64 * tick_us / issued as f64);
                }
                run.cpu_of = Some(cpu_of);
            }
            print_run(run);
        }
        for p in &self.procs {
            let hwm = p.stat().hwm_kb;
            if let Some(e) = self.peak.iter_mut().find(|e| e.0 == p.name) {
                e.1 = e.1.max(hwm);
            } else {
                self.peak.push((p.name, hwm));
            }
        }
        self.runs.extend(runs);
        Ok(first)
    }

    fn cpu_ticks(&self, name: &str) -> u64 {
        if name == "bench" {
            let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let f: Vec<&str> = me
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            let p = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            p(11) + p(12)
        } else {
            self.proc_stat(name).ticks
        }
    }

    /// Runs `a` then `b`, `reps` times (A B A B ...); returns the indices of the runs.
    fn pairs<FA, FB, A, B>(
        &mut self,
        reps: usize,
        (cpu_a, a): (&'static str, FA),
        (cpu_b, b): (&'static str, FB),
    ) -> Result<(Vec<usize>, Vec<usize>)>
    where
        FA: Fn() -> A,
        FB: Fn() -> B,
        A: Future<Output = Run>,
        B: Future<Output = Run>,
    {
        let (mut ia, mut ib) = (Vec::new(), Vec::new());
        for _ in 0..reps.max(1) {
            ia.push(self.measure(cpu_a, a())?);
            ib.push(self.measure(cpu_b, b())?);
        }
        Ok((ia, ib))
    }

    fn med(&self, idx: &[usize], f: impl Fn(&Run) -> f64) -> f64 {
        median(idx.iter().map(|&i| f(&self.runs[i])).collect())
    }

    /// Median over repetitions of `f(a_i) / f(b_i)`, and the min–max.
    fn ratio(&self, a: &[usize], b: &[usize], f: impl Fn(&Run) -> f64) -> (f64, f64, f64) {
        let rs: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| ratio(f(&self.runs[x]), f(&self.runs[y])))
            .collect();
        let lo = rs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(rs), lo, hi)
    }
}

fn print_run(r: &Run) {
    println!(
        "{:<52} {:>9.1} req/s  p50 {:>8} µs  p99 {:>8} µs  p99.9 {:>8} µs  max {:>9} µs  \
         calls {:>7}  errors {:>3}  stmts/call {}  cpu µs/call {}  client {}  postgres {}",
        r.label,
        r.rps(),
        r.pct_us(0.50),
        r.pct_us(0.99),
        r.pct_us(0.999),
        r.max_us(),
        r.calls,
        r.errors,
        r.stmts_per_call.map_or("-".into(), |s| format!("{s:.3}")),
        r.cpu_us_per_call.map_or("-".into(), |s| format!(
            "{s:.1} ({})",
            r.cpu_of.unwrap_or("?")
        )),
        r.client_cpu_us_per_call
            .map_or("-".into(), |s| format!("{s:.1}")),
        r.db_cpu_us_per_call
            .map_or("-".into(), |s| format!("{s:.1}")),
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}

fn range(lo: f64, hi: f64, reps: usize) -> String {
    if reps > 1 && lo.is_finite() && hi.is_finite() {
        format!(" ({lo:.2}–{hi:.2})")
    } else {
        String::new()
    }
}

/// Runs the whole suite.
#[expect(clippy::too_many_lines, reason = "the scenarios read top to bottom")]
pub(crate) fn run_all(args: &Args) -> Result<Outcome> {
    let started = chrono::Utc::now();
    let t0 = Instant::now();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let base = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads.max(1)))
        .enable_all()
        .thread_name("bench-baseline")
        .build()?;
    let cost = args.bcrypt_cost.unwrap_or(12);
    let pool = args.pool_size;

    println!("starting a private Postgres (pg_stat_statements) and migrating...");
    let db = client.block_on(Db::start(pool))?;
    let pending_n = 3_000;
    let t_seed = Instant::now();
    let (tenants, pending) = client.block_on(stack::seed(&db, args.tenants, pending_n, cost))?;
    println!(
        "seeded {} tenants, {pending_n} pending tenants and a cost-{cost} login user in {:.1} s",
        tenants.len(),
        t_seed.elapsed().as_secs_f64()
    );
    // The pinned layout (reference §7.1): the served processes on the first core, this
    // process (the load generator and the in-process baselines) on the last, Postgres (started
    // above, so it keeps every core, as do the backends it forks) wherever it lands.
    let served_cpu = if args.layout == crate::Layout::Pinned {
        let (first, last) = stack::two_cores()?;
        stack::pin_process(last)?;
        println!("pinned layout: services on cpu {first}, load generator on cpu {last}");
        Some(first)
    } else {
        None
    };
    let data_dir = std::env::temp_dir().join(format!("tenantry-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let addrs = Addrs::pick()?;
    let mut procs = Vec::new();
    {
        let spawn = Spawn {
            db: &db,
            addrs,
            pool_size: pool,
            bcrypt_cost: cost,
            data_dir: &data_dir,
            worker_threads: args.worker_threads,
            cpu: served_cpu,
        };
        for name in ["tenant-settings", "tenant-admin", "provisioning"] {
            procs.push(client.block_on(spawn.start(name, &[]))?);
        }
    }
    let signer = tenantry_testing::signer();
    let ttl = 6 * 3600;
    let service = bearer(&signer.mint("bench-service", Some(PlatformRole::Service), None, ttl)?)?;
    let operator =
        bearer(&signer.mint("bench-operator", Some(PlatformRole::SuperAdmin), None, ttl)?)?;

    // One real answer, for the echo server to send back.
    let first_check = client.block_on(async {
        let ch = stack::channels(addrs.settings, 1).await?;
        let r = SettingsClient::new(ch[0].clone())
            .check_features(with_auth(
                settings_pb::CheckFeaturesRequest {
                    tenant_id: tenants[0].clone(),
                    features: Vec::new(),
                },
                &service,
            ))
            .await?
            .into_inner();
        Ok::<_, anyhow::Error>(r)
    })?;
    if first_check.features.len() != 15 {
        bail!(
            "CheckFeatures answered {} features, not 15",
            first_check.features.len()
        );
    }
    let echo_answer = base64::engine::general_purpose::STANDARD.encode(first_check.encode_to_vec());
    {
        let spawn = Spawn {
            db: &db,
            addrs,
            pool_size: pool,
            bcrypt_cost: cost,
            data_dir: &data_dir,
            worker_threads: args.worker_threads,
            cpu: served_cpu,
        };
        procs.push(client.block_on(spawn.start("echo", &[addrs.echo.to_string(), echo_answer]))?);
    }
    // Idle memory: every service started, nothing served yet but one call.
    std::thread::sleep(Duration::from_millis(500));
    let idle: Vec<(&'static str, u64)> = procs.iter().map(|p| (p.name, p.stat().rss_kb)).collect();

    let mut b = Bench {
        args,
        client,
        base,
        db,
        procs,
        runs: Vec::new(),
        peak: Vec::new(),
        skip: false,
    };
    let load = b.base_load();
    let reps = args.reps;
    let conns = args.connections;
    let (echo_ch, settings_ch, settings_ch2, admin_ch, prov_ch, settings_64, echo_64) =
        b.client.block_on(async {
            Ok::<_, anyhow::Error>((
                stack::channels(addrs.echo, conns).await?,
                stack::channels(addrs.settings, conns).await?,
                stack::channels(addrs.settings, conns).await?,
                stack::channels(addrs.admin, conns).await?,
                stack::channels(addrs.provisioning, conns).await?,
                stack::channels(addrs.settings, 64).await?,
                stack::channels(addrs.echo, 64).await?,
            ))
        })?;
    let hot: Arc<Vec<String>> = Arc::new(tenants.iter().take(args.hot_tenants).cloned().collect());
    let all: Arc<Vec<String>> = Arc::new(tenants.clone());
    let zipf = Zipf::new(hot.len());
    let zipf_all = Zipf::new(all.len());

    // Warm the cache: every hot tenant once.
    b.client.block_on({
        let chs = settings_ch.clone();
        let hot = Arc::clone(&hot);
        let service = service.clone();
        async move {
            let sem = Arc::new(Semaphore::new(32));
            let mut tasks = Vec::new();
            for (i, t) in hot.iter().enumerate() {
                let mut c = SettingsClient::new(chs[i % chs.len()].clone());
                let r = with_auth(
                    settings_pb::CheckFeaturesRequest {
                        tenant_id: t.clone(),
                        features: Vec::new(),
                    },
                    &service,
                );
                let permit = Arc::clone(&sem).acquire_owned().await?;
                tasks.push(tokio::spawn(async move {
                    let r = c.check_features(r).await;
                    drop(permit);
                    r.map(drop)
                }));
            }
            for t in tasks {
                t.await??;
            }
            Ok::<_, anyhow::Error>(())
        }
    })?;

    // The calls.
    let check_call = |chs: Vec<stack::Conn>| {
        let hot = Arc::clone(&hot);
        let zipf = zipf.clone();
        let service = service.clone();
        move |i: usize, _n: u64| {
            let mut c = SettingsClient::new(chs[i % chs.len()].clone());
            let r = with_auth(
                settings_pb::CheckFeaturesRequest {
                    tenant_id: hot[zipf.sample()].clone(),
                    features: Vec::new(),
                },
                &service,
            );
            async move {
                let resp = c.check_features(r).await.map_err(err)?;
                if resp.get_ref().features.len() == 15 {
                    Ok(())
                } else {
                    Err(format!("{} features", resp.get_ref().features.len()))
                }
            }
        }
    };
    let get_tenant_call = |chs: Vec<stack::Conn>| {
        let all = Arc::clone(&all);
        let zipf_all = zipf_all.clone();
        let operator = operator.clone();
        move |i: usize, _n: u64| {
            let mut c = AdminClient::new(chs[i % chs.len()].clone());
            let id = all[zipf_all.sample()].clone();
            let r = with_auth(
                admin_pb::GetTenantRequest {
                    tenant_id: id.clone(),
                    view: admin_pb::TenantView::Basic.into(),
                },
                &operator,
            );
            async move {
                let t = c.get_tenant(r).await.map_err(err)?.into_inner();
                if t.tenant.is_some_and(|t| t.tenant_id == id) {
                    Ok(())
                } else {
                    Err("wrong tenant".into())
                }
            }
        }
    };

    // --- B1 / S1: cached CheckFeatures vs echo ------------------------------------------------
    println!(
        "\n== S1 cached read vs B1 echo ({} in flight over {conns} connections)",
        load.in_flight
    );
    b.group("s1");
    let (b1, s1) = b.pairs(
        reps,
        ("echo", || {
            closed_loop(
                "B1 echo (CheckFeatures-sized answer)",
                load,
                check_call(echo_ch.clone()),
            )
        }),
        ("tenant-settings", || {
            closed_loop(
                "S1 CheckFeatures, cached, Zipf",
                load,
                check_call(settings_ch.clone()),
            )
        }),
    )?;

    // --- S7: grpc-web vs native, 64 connections, one call each --------------------------------
    b.group("s7");
    println!("\n== S7 grpc-web (HTTP/1.1) vs native gRPC, 64 connections");
    let web = {
        let hot = Arc::clone(&hot);
        let zipf = zipf.clone();
        let service = service.clone();
        let settings = addrs.settings;
        move || {
            let hot = Arc::clone(&hot);
            let zipf = zipf.clone();
            let service = service.clone();
            let http =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            let svc = tower::ServiceBuilder::new()
                .layer(tonic_web::GrpcWebClientLayer::new())
                .service(http);
            let uri: http::Uri = format!("http://{settings}").parse().unwrap_or_default();
            let c = settings_pb::tenant_settings_service_client::TenantSettingsServiceClient::with_origin(svc, uri);
            closed_loop(
                "S7 CheckFeatures over grpc-web/HTTP1.1, 64 conns",
                load,
                move |_i, _n| {
                    let mut c = c.clone();
                    let r = with_auth(
                        settings_pb::CheckFeaturesRequest {
                            tenant_id: hot[zipf.sample()].clone(),
                            features: Vec::new(),
                        },
                        &service,
                    );
                    async move {
                        let resp = c.check_features(r).await.map_err(err)?;
                        if resp.get_ref().features.len() == 15 {
                            Ok(())
                        } else {
                            Err("short answer".into())
                        }
                    }
                },
            )
        }
    };
    let (s7_native, s7_web) = b.pairs(
        reps,
        ("tenant-settings", || {
            closed_loop(
                "S7 CheckFeatures native gRPC, 64 conns",
                load,
                check_call(settings_64.clone()),
            )
        }),
        ("tenant-settings", &web),
    )?;

    // --- S9: one call at a time ---------------------------------------------------------------
    b.group("s9");
    println!("\n== S9 one call in flight");
    let one = load.with_in_flight(1);
    let (b1_seq, s1_seq) = b.pairs(
        reps,
        ("echo", || {
            closed_loop("S9 B1 echo, 1 in flight", one, check_call(echo_64.clone()))
        }),
        ("tenant-settings", || {
            closed_loop(
                "S9 CheckFeatures cached, 1 in flight",
                one,
                check_call(settings_ch.clone()),
            )
        }),
    )?;

    // --- B2 / B3 / S2 / S8: uncached point reads ---------------------------------------------
    println!(
        "\n== S2 uncached point read (GetTenant) vs B2 tokio-postgres and B3 the pool; S8 overload"
    );
    let in_pool = load.with_in_flight(pool as usize);
    // B2 is GetTenant's read on the bare driver: its exact statement, prepared on as many held
    // tokio-postgres connections as the pool (same role, platform-mode session); B2′ is the
    // textbook `SELECT * … WHERE pk = $1` on one table as superuser, for scale.
    let get_tenant_sql = tenantry_db::models::organization::find_with_locale_sql()
        .map_err(|e| anyhow::anyhow!("GetTenant's SQL: {e}"))?;
    let point_read = |url: String, sql: String| {
        let all = Arc::clone(&all);
        let zipf_all = zipf_all.clone();
        let n = pool as usize;
        let handle = b.base.handle().clone();
        move |label: &'static str, load: Load| {
            let (url, sql) = (url.clone(), sql.clone());
            let all = Arc::clone(&all);
            let zipf_all = zipf_all.clone();
            let handle = handle.clone();
            async move {
                let mut clients = Vec::new();
                for _ in 0..n {
                    match baselines::pg_client(&url).await {
                        Ok(c) => match c.prepare(&sql).await {
                            Ok(st) => clients.push(Arc::new((c, st))),
                            Err(e) => panic!("{label}: prepare: {e}"),
                        },
                        Err(e) => panic!("{label}: connect: {e}"),
                    }
                }
                let clients = Arc::new(clients);
                let run = handle
                    .spawn(closed_loop(label, load, move |i, _n| {
                        let c = Arc::clone(&clients[i % clients.len()]);
                        let id: Uuid = all[zipf_all.sample()].parse().unwrap_or_default();
                        async move {
                            let rows = c.0.query(&c.1, &[&id]).await.map_err(err)?;
                            if rows.len() == 1 {
                                Ok(())
                            } else {
                                Err("no row".into())
                            }
                        }
                    }))
                    .await;
                run.unwrap_or_else(|e| panic!("{label} task: {e}"))
            }
        }
    };
    let b2_call = point_read(tenantry_db::platform_url(&b.db.app_url), get_tenant_sql);
    let b2x_call = point_read(b.db.admin_url.clone(), baselines::POINT_READ.to_owned());
    // B3 runs GetTenant's own statement (the row and its locale settings) on a pool built
    // like tenant-admin's platform pool: same role, same session settings, same pool config.
    let b3_call = {
        let url = b.db.app_url.clone();
        let all = Arc::clone(&all);
        let zipf_all = zipf_all.clone();
        let handle = b.base.handle().clone();
        move |label: &'static str, load: Load| {
            let url = url.clone();
            let all = Arc::clone(&all);
            let zipf_all = zipf_all.clone();
            let handle = handle.clone();
            async move {
                let mut cfg = tenantry_db::PoolConfig::new(url);
                cfg.max_size = pool;
                let p = tenantry_db::connect_platform(&cfg)
                    .await
                    .unwrap_or_else(|e| panic!("pool: {e}"));
                handle
                    .spawn(closed_loop(label, load, move |_i, _n| {
                        let p = p.clone();
                        let id: Uuid = all[zipf_all.sample()].parse().unwrap_or_default();
                        async move {
                            let mut conn = p.get().await.map_err(err)?;
                            tenantry_db::models::organization::find_with_locale(&mut *conn, id)
                                .await
                                .map(drop)
                                .map_err(err)
                        }
                    }))
                    .await
                    .unwrap_or_else(|e| panic!("B3 task: {e}"))
            }
        }
    };
    b.group("s2");
    let mut b2 = Vec::new();
    let mut b2x = Vec::new();
    let mut b3 = Vec::new();
    let mut s2 = Vec::new();
    for _ in 0..reps.max(1) {
        b2.push(b.measure(
            "bench",
            b2_call("B2 GetTenant's statement, tokio-postgres prepared", load),
        )?);
        b2x.push(b.measure(
            "bench",
            b2x_call(
                "B2′ SELECT * by primary key, superuser, tokio-postgres",
                load,
            ),
        )?);
        b3.push(b.measure(
            "bench",
            b3_call("B3 GetTenant's statement through the services' pool", load),
        )?);
        s2.push(b.measure(
            "tenant-admin",
            closed_loop(
                "S2 GetTenant (uncached point read)",
                load,
                get_tenant_call(admin_ch.clone()),
            ),
        )?);
    }
    let (b2_seq, s2_seq) = b.pairs(
        reps,
        ("bench", || {
            b2_call("S9 B2 GetTenant's statement, 1 in flight", one)
        }),
        ("tenant-admin", || {
            closed_loop(
                "S9 GetTenant, 1 in flight",
                one,
                get_tenant_call(admin_ch.clone()),
            )
        }),
    )?;
    // Overload: 4× the pool (§7.3), and at least twice S2's calls in flight, since a
    // pipelined read is not bounded by the pool and 4× the pool can be less than S2's load.
    let over_n = (4 * pool as usize).max(2 * load.in_flight);
    let over = load.with_in_flight(over_n);
    let mut s8 = Vec::new();
    let mut backends_max = 0;
    for _ in 0..reps.max(1) {
        s8.push(b.measure(
            "tenant-admin",
            closed_loop(
                "S8 GetTenant overload (4× the pool, ≥ 2× S2's in flight)",
                over,
                get_tenant_call(admin_ch.clone()),
            ),
        )?);
    }
    let admin_64 = b.client.block_on(stack::channels(addrs.admin, 64))?;
    let s8_64 = {
        let run_fut = closed_loop(
            "S8 GetTenant, 64 connections × 1",
            load.with_in_flight(64),
            get_tenant_call(admin_64.clone()),
        );
        // Sample the backends the services hold while the run goes on.
        let db_server = b.db.server_url.clone();
        let watch = async move {
            use diesel_async::RunQueryDsl as _;
            let mut most = 0i64;
            let end = Instant::now() + load.warmup + load.duration;
            while Instant::now() < end {
                if let Ok(mut c) =
                    <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
                        &db_server,
                    )
                    .await
                {
                    #[derive(diesel::QueryableByName)]
                    struct N {
                        #[diesel(sql_type = diesel::sql_types::BigInt)]
                        n: i64,
                    }
                    if let Ok(n) = diesel::sql_query(
                        "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1",
                    )
                    .bind::<Text, _>(tenantry_db::APP_ROLE)
                    .get_result::<N>(&mut c)
                    .await
                    {
                        most = most.max(n.n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            most
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let idx = b.measure("tenant-admin", async move {
            let (run, most) = tokio::join!(run_fut, watch);
            let _ = tx.send(most);
            run
        })?;
        backends_max = rx.recv().unwrap_or(backends_max);
        idx
    };
    let backends_after = b.client.block_on(b.db.app_backends()).unwrap_or(-1);

    // --- S4: paged listing --------------------------------------------------------------------
    let depth = (args.page - 1) * 50;
    println!(
        "\n== S4 ListTenants page 1 vs page {} (depth {depth}) vs B6 keyset range read",
        args.page
    );
    let page_size = 50;
    let deep_token = b.client.block_on({
        let mut c = AdminClient::new(admin_ch[0].clone());
        let operator = operator.clone();
        let pages = args.page - 1;
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
    let (cursor_at, cursor_id) = b.client.block_on({
        let url = b.db.admin_url.clone();
        async move {
            let c = baselines::pg_client(&url).await?;
            let row = c
                .query_one(
                    "SELECT created_at::text, id::text FROM organizations WHERE is_active \
                     ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
                    &[&(depth - 1)],
                )
                .await?;
            Ok::<_, anyhow::Error>((row.get::<_, String>(0), row.get::<_, String>(1)))
        }
    })?;
    let list_call = |token: String| {
        let chs = admin_ch.clone();
        let operator = operator.clone();
        move |i: usize, _n: u64| {
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
                let resp = c.list_tenants(r).await.map_err(err)?;
                if resp.get_ref().tenants.len() == page_size as usize {
                    Ok(())
                } else {
                    Err(format!("short page: {}", resp.get_ref().tenants.len()))
                }
            }
        }
    };
    let b6_call = {
        let url = b.db.admin_url.clone();
        let handle = b.base.handle().clone();
        move |label: &'static str,
              cursor: Option<(String, String)>,
              with_count: bool,
              load: Load| {
            let url = url.clone();
            let handle = handle.clone();
            async move {
                let mut clients = Vec::new();
                for _ in 0..pool {
                    if let Ok(c) = baselines::pg_client(&url).await {
                        let sql = if cursor.is_some() {
                            baselines::RANGE_READ
                        } else {
                            baselines::RANGE_READ_FIRST
                        };
                        if let (Ok(st), Ok(count)) =
                            (c.prepare(sql).await, c.prepare(baselines::COUNT).await)
                        {
                            clients.push(Arc::new((c, st, count)));
                        }
                    }
                }
                let clients = Arc::new(clients);
                let cursor = Arc::new(cursor);
                handle
                    .spawn(closed_loop(label, load, move |i, _n| {
                        let c = Arc::clone(&clients[i % clients.len()]);
                        let cursor = Arc::clone(&cursor);
                        async move {
                            let rows = match cursor.as_ref() {
                                Some((at, id)) => c.0.query(&c.1, &[at, id]).await,
                                None => c.0.query(&c.1, &[]).await,
                            }
                            .map_err(err)?;
                            if with_count {
                                c.0.query_one(&c.2, &[]).await.map_err(err)?;
                            }
                            if rows.len() == 50 {
                                Ok(())
                            } else {
                                Err(format!("{} rows", rows.len()))
                            }
                        }
                    }))
                    .await
                    .unwrap_or_else(|e| panic!("B6 task: {e}"))
            }
        }
    };
    b.group("s4");
    let mut s4_first = Vec::new();
    let mut s4_deep = Vec::new();
    let mut b6 = Vec::new();
    let mut b6c = Vec::new();
    let list_load = in_pool;
    for _ in 0..reps.max(1) {
        s4_first.push(b.measure(
            "tenant-admin",
            closed_loop("S4 ListTenants page 1", list_load, list_call(String::new())),
        )?);
        s4_deep.push(b.measure(
            "tenant-admin",
            closed_loop(
                "S4 ListTenants deep page",
                list_load,
                list_call(deep_token.clone()),
            ),
        )?);
        b6.push(b.measure(
            "bench",
            b6_call(
                "B6 keyset range read, same deep page",
                Some((cursor_at.clone(), cursor_id.clone())),
                false,
                list_load,
            ),
        )?);
        b6c.push(b.measure(
            "bench",
            b6_call(
                "B6 + count(*): same deep page and its total",
                Some((cursor_at.clone(), cursor_id.clone())),
                true,
                list_load,
            ),
        )?);
    }

    // --- S5: writes ---------------------------------------------------------------------------
    println!("\n== S5 writes (UpdateTenant) vs B5 bare single-row UPDATE");
    let b5_call = {
        let url = b.db.admin_url.clone();
        let all = Arc::clone(&all);
        let handle = b.base.handle().clone();
        move |label: &'static str, load: Load| {
            let url = url.clone();
            let all = Arc::clone(&all);
            let handle = handle.clone();
            async move {
                let mut clients = Vec::new();
                for _ in 0..load.in_flight {
                    if let Ok(c) = baselines::pg_client(&url).await
                        && let Ok(st) = c.prepare(baselines::WRITE).await
                    {
                        clients.push(Arc::new((c, st)));
                    }
                }
                let clients = Arc::new(clients);
                handle
                    .spawn(closed_loop(label, load, move |i, n| {
                        let c = Arc::clone(&clients[i % clients.len()]);
                        // Each task writes its own stripe of tenants: no two writers wait on
                        // one row lock.
                        let k = (n as usize * load.in_flight + i) % all.len();
                        let id = all[k].clone();
                        async move {
                            let name = format!("Bench {n}");
                            let done = c.0.execute(&c.1, &[&name, &id]).await.map_err(err)?;
                            if done == 1 {
                                Ok(())
                            } else {
                                Err("no row".into())
                            }
                        }
                    }))
                    .await
                    .unwrap_or_else(|e| panic!("B5 task: {e}"))
            }
        }
    };
    let update_call = {
        let chs = admin_ch.clone();
        let all = Arc::clone(&all);
        let operator = operator.clone();
        move |i: usize, n: u64| {
            let mut c = AdminClient::new(chs[i % chs.len()].clone());
            let k = (n as usize * pool as usize + i) % all.len();
            let r = with_auth(
                admin_pb::UpdateTenantRequest {
                    tenant_id: all[k].clone(),
                    tenant: Some(admin_pb::Tenant {
                        display_name: format!("Bench {n}"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                },
                &operator,
            );
            async move { c.update_tenant(r).await.map(drop).map_err(err) }
        }
    };
    b.group("s5");
    let (b5, s5) = b.pairs(
        reps,
        ("bench", || {
            b5_call("B5 bare single-row UPDATE (autocommit)", in_pool)
        }),
        ("tenant-admin", || {
            closed_loop(
                "S5 UpdateTenant (display_name)",
                in_pool,
                update_call.clone(),
            )
        }),
    )?;

    // --- S3: realistic mix with invalidations ---------------------------------------------------
    println!(
        "\n== S3 mix: 95% CheckFeatures, 3% GetTenant, 1% ListTenants, 1% feature override (invalidates)"
    );
    let mix_call = {
        let check = check_call(settings_ch.clone());
        let get = get_tenant_call(admin_ch.clone());
        let list = list_call(String::new());
        let settings = settings_ch.clone();
        let hot = Arc::clone(&hot);
        let operator = operator.clone();
        move |i: usize, n: u64| {
            let roll = (n * 7919 + i as u64 * 104_729) % 100;
            let check = check.clone();
            let get = get.clone();
            let list = list.clone();
            let mut c = SettingsClient::new(settings[i % settings.len()].clone());
            let tenant = hot[(n as usize + i) % hot.len()].clone();
            let operator = operator.clone();
            async move {
                match roll {
                    0..95 => check(i, n).await,
                    95..98 => get(i, n).await,
                    98 => list(i, n).await,
                    _ => {
                        let r = with_auth(
                            settings_pb::GrantFeatureOverrideRequest {
                                tenant_id: tenant,
                                feature: common_pb::Feature::LiveClasses as i32,
                                enabled: n.is_multiple_of(2),
                                reason: "bench".into(),
                            },
                            &operator,
                        );
                        c.grant_feature_override(r).await.map(drop).map_err(err)
                    }
                }
            }
        }
    };
    // Propagation: flip a feature, then ask another connection until it answers the new value.
    let probe = {
        let settings = settings_ch2.clone();
        let hot = Arc::clone(&hot);
        let operator = operator.clone();
        let service = service.clone();
        let rounds = if args.smoke { 3 } else { 25 };
        move || {
            let settings = settings.clone();
            let hot = Arc::clone(&hot);
            let operator = operator.clone();
            let service = service.clone();
            async move {
                let mut h = crate::load::new_hist();
                let mut errors = Vec::new();
                tokio::time::sleep(load.warmup).await;
                for k in 0..rounds {
                    let tenant = hot[(k * 37 + 1) % hot.len()].clone();
                    let mut w = SettingsClient::new(settings[0].clone());
                    let mut r = SettingsClient::new(settings[1 % settings.len()].clone());
                    let want = k % 2 == 0;
                    if let Err(e) = w
                        .grant_feature_override(with_auth(
                            settings_pb::GrantFeatureOverrideRequest {
                                tenant_id: tenant.clone(),
                                feature: common_pb::Feature::VideoConferencing as i32,
                                enabled: want,
                                reason: "bench probe".into(),
                            },
                            &operator,
                        ))
                        .await
                    {
                        errors.push(e.to_string());
                        continue;
                    }
                    // From the write's answer (committed) to the first read that sees it.
                    let t0 = Instant::now();
                    loop {
                        let got = r
                            .check_features(with_auth(
                                settings_pb::CheckFeaturesRequest {
                                    tenant_id: tenant.clone(),
                                    features: vec![common_pb::Feature::VideoConferencing as i32],
                                },
                                &service,
                            ))
                            .await
                            .map(|x| x.get_ref().features.first().is_some_and(|f| f.enabled));
                        if got.as_ref().is_ok_and(|&g| g == want) {
                            break;
                        }
                        if t0.elapsed() > Duration::from_secs(5) {
                            errors.push(format!("tenant {tenant}: not propagated in 5 s"));
                            break;
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                    h.saturating_record(
                        u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                (h, errors)
            }
        }
    };
    b.group("s3");
    let mut s3 = Vec::new();
    let mut propagation = crate::load::new_hist();
    let mut probe_errors = Vec::new();
    for _ in 0..reps.max(1) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mix = closed_loop("S3 realistic mix", load, mix_call.clone());
        let p = probe();
        s3.push(b.measure("tenant-settings", async move {
            let (run, probed) = tokio::join!(mix, p);
            let _ = tx.send(probed);
            run
        })?);
        if let Ok((h, e)) = rx.recv() {
            let _ = propagation.add(&h);
            probe_errors.extend(e);
        }
    }

    // --- S6: provisioning under bcrypt, and reads while it runs --------------------------------
    let k = tenant_admin::hash_concurrency();
    println!(
        "\n== S6 provisioning (bcrypt {cost}, {k} hash(es) at once) vs B4 bare bcrypt; S1 while it runs"
    );
    let next_pending = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(pending);
    let b4_call = {
        let handle = b.base.handle().clone();
        move |label: String, load: Load| {
            let permits = Arc::new(Semaphore::new(k));
            let handle = handle.clone();
            async move {
                closed_loop(&label, load, move |_i, _n| {
                    let permits = Arc::clone(&permits);
                    let handle = handle.clone();
                    async move {
                        let permit = permits.acquire_owned().await.map_err(err)?;
                        handle
                            .spawn_blocking(move || {
                                let r = bcrypt::hash(stack::PASSWORD, cost);
                                drop(permit);
                                r
                            })
                            .await
                            .map_err(err)?
                            .map(drop)
                            .map_err(err)
                    }
                })
                .await
            }
        }
    };
    let provision_call = {
        let chs = prov_ch.clone();
        let operator = operator.clone();
        let next = Arc::clone(&next_pending);
        let pending = Arc::clone(&pending);
        move |i: usize, _n: u64| {
            let mut c = ProvClient::new(chs[i % chs.len()].clone());
            let k = next.fetch_add(1, Ordering::Relaxed);
            let tenant = pending.get(k).cloned();
            let operator = operator.clone();
            async move {
                let Some(tenant) = tenant else {
                    return Err("no pending tenant left".into());
                };
                let r = with_auth(
                    prov_pb::ProvisionTenantRequest {
                        tenant_id: tenant,
                        request_id: Uuid::new_v4().to_string(),
                        ..Default::default()
                    },
                    &operator,
                );
                let resp = c.provision_tenant(r).await.map_err(err)?.into_inner();
                if resp.status == common_pb::ProvisioningStatus::Success as i32 {
                    Ok(())
                } else {
                    Err(format!("status {} errors {:?}", resp.status, resp.errors))
                }
            }
        }
    };
    let sat = load.with_in_flight(2 * k);
    let at_k = load.with_in_flight(k);
    b.group("s6");
    let (b4, s6) = b.pairs(
        reps,
        ("bench", || {
            b4_call(
                format!("B4 bare bcrypt::hash cost {cost}, {} in flight", 2 * k),
                sat,
            )
        }),
        ("tenant-admin", || {
            closed_loop(
                "S6 ProvisionTenant, 2× the hashing slots",
                sat,
                provision_call.clone(),
            )
        }),
    )?;
    let (b4_k, s6_k) = b.pairs(
        1,
        ("bench", || {
            b4_call(
                format!("B4 bare bcrypt::hash cost {cost}, {k} in flight"),
                at_k,
            )
        }),
        ("tenant-admin", || {
            closed_loop(
                "S6 ProvisionTenant, one per hashing slot",
                at_k,
                provision_call.clone(),
            )
        }),
    )?;
    let mut iso = Vec::new();
    let mut iso_solo = Vec::new();
    for _ in 0..reps.max(1) {
        iso_solo.push(b.measure(
            "tenant-settings",
            closed_loop(
                "S6 CheckFeatures alone",
                load,
                check_call(settings_ch2.clone()),
            ),
        )?);
        let prov = closed_loop("S6 ProvisionTenant with reads", sat, provision_call.clone());
        let reads = closed_loop(
            "S6 CheckFeatures during provisioning",
            load,
            check_call(settings_ch2.clone()),
        );
        let first = b.measure_many("tenant-settings", async move {
            let (p, r) = tokio::join!(prov, reads);
            vec![p, r]
        })?;
        iso.push(first + 1);
    }

    // --- Login (bcrypt verify at the hash's cost) vs bare bcrypt::verify; reads meanwhile -------
    println!("\n== Login (bcrypt {cost} verify) vs B4 bare bcrypt::verify; S1 while logins run");
    let hash = bcrypt::hash(stack::PASSWORD, cost)?;
    let verify_call = {
        let handle = b.base.handle().clone();
        move |label: String, load: Load| {
            let permits = Arc::new(Semaphore::new(k));
            let handle = handle.clone();
            let hash = hash.clone();
            async move {
                closed_loop(&label, load, move |_i, _n| {
                    let permits = Arc::clone(&permits);
                    let handle = handle.clone();
                    let hash = hash.clone();
                    async move {
                        let permit = permits.acquire_owned().await.map_err(err)?;
                        let ok = handle
                            .spawn_blocking(move || {
                                let ok = bcrypt::verify(stack::PASSWORD, &hash).unwrap_or(false);
                                drop(permit);
                                ok
                            })
                            .await
                            .map_err(err)?;
                        if ok {
                            Ok(())
                        } else {
                            Err("verify failed".into())
                        }
                    }
                })
                .await
            }
        }
    };
    let login_call = {
        let chs = admin_ch.clone();
        move |i: usize, _n: u64| {
            let mut c =
                admin_pb::auth_service_client::AuthServiceClient::new(chs[i % chs.len()].clone());
            let r = tonic::Request::new(admin_pb::LoginRequest {
                tenant_slug: "bench-1".into(),
                identifier: Some(admin_pb::login_request::Identifier::Email(
                    "bench@example.test".into(),
                )),
                password: stack::PASSWORD.into(),
            });
            async move {
                let t = c.login(r).await.map_err(err)?.into_inner();
                if t.access_token.is_empty() {
                    Err("no token".into())
                } else {
                    Ok(())
                }
            }
        }
    };
    b.group("login");
    let (b4v, login) = b.pairs(
        reps,
        ("bench", || {
            verify_call(
                format!("B4 bare bcrypt::verify cost {cost}, {} in flight", 2 * k),
                sat,
            )
        }),
        ("tenant-admin", || {
            closed_loop("S6 Login, 2× the hashing slots", sat, login_call.clone())
        }),
    )?;
    let mut login_iso = Vec::new();
    for _ in 0..reps.max(1) {
        let logins = closed_loop("S6 Login with reads", sat, login_call.clone());
        let reads = closed_loop(
            "S6 CheckFeatures during logins",
            load,
            check_call(settings_ch2.clone()),
        );
        let first = b.measure_many("tenant-settings", async move {
            let (l, r) = tokio::join!(logins, reads);
            vec![l, r]
        })?;
        login_iso.push(first + 1);
    }

    // --- Open loop: the cached read at a fixed rate ----------------------------------------------
    let s1_rate = b.med(&s1, Run::rps);
    let rate = (s1_rate * 0.3).max(100.0);
    println!("\n== open loop: CheckFeatures at {rate:.0}/s (0.3× the closed-loop rate)");
    b.group("open");
    let open = b.measure("tenant-settings", {
        let call = check_call(settings_ch.clone());
        open_loop(
            "S1 CheckFeatures, open loop at 0.3× peak",
            rate,
            16_384,
            load.warmup,
            load.duration,
            move |n| call((n % 64) as usize, n),
        )
    })?;

    b.skip = false;
    // --- Judgement -----------------------------------------------------------------------------
    let mut rows = Vec::new();
    let mut push = |scenario: String,
                    figure: String,
                    baseline: String,
                    r: Option<(f64, f64, f64)>,
                    target: &'static str,
                    pass: Option<bool>,
                    structural: bool| {
        let (ratio, extra) = match r {
            Some((m, lo, hi)) => (Some(m), range(lo, hi, reps)),
            None => (None, String::new()),
        };
        rows.push(Row {
            scenario,
            figure: figure + &extra,
            baseline,
            ratio,
            target,
            pass,
            structural,
        });
    };
    let p = |q: f64| move |r: &Run| us(r.pct_us(q));
    // A scenario's median rate (or p99) against its baseline's, as a ratio with a bound.
    macro_rules! rate_bar {
        ($label:expr, $a:expr, $base:expr, $target:expr, $min:expr) => {{
            let x = b.ratio($a, $base, Run::rps);
            push(
                $label.into(),
                fmt_rate(b.med($a, Run::rps)),
                fmt_rate(b.med($base, Run::rps)),
                Some(x),
                $target,
                Some(x.0 >= $min),
                false,
            );
        }};
    }
    // The same ratio, reported without a bound.
    macro_rules! rate_info {
        ($label:expr, $a:expr, $base:expr) => {{
            let x = b.ratio($a, $base, Run::rps);
            push(
                $label.into(),
                fmt_rate(b.med($a, Run::rps)),
                fmt_rate(b.med($base, Run::rps)),
                Some(x),
                "(info)",
                None,
                false,
            );
        }};
    }
    macro_rules! p99_bar {
        ($label:expr, $a:expr, $base:expr, $target:expr, $max:expr) => {{
            let p99 = |r: &Run| us(r.pct_us(0.99));
            let x = b.ratio($a, $base, p99);
            push(
                $label.into(),
                fmt_us(b.med($a, p99)),
                fmt_us(b.med($base, p99)),
                Some(x),
                $target,
                Some(x.0 <= $max),
                false,
            );
        }};
    }
    let rps = Run::rps;
    let cpu = |r: &Run| r.cpu_us_per_call.unwrap_or(f64::NAN);
    let stm = |r: &Run| r.stmts_per_call.unwrap_or(f64::NAN);

    rate_bar!(
        "S1 cached CheckFeatures vs B1 echo: req/s",
        &s1,
        &b1,
        "≥ 0.80",
        0.8
    );
    let x = b.ratio(&s1, &b1, cpu);
    push(
        "S1 vs B1: server CPU per call".into(),
        format!("{:.1} µs", b.med(&s1, cpu)),
        format!("{:.1} µs", b.med(&b1, cpu)),
        Some(x),
        "≤ 1.3",
        Some(x.0 <= 1.3),
        false,
    );
    p99_bar!("S1 vs B1: p99", &s1, &b1, "≤ 1.3", 1.3);
    // The services' own pollers (provisioning's and the outbox's, about 8 statements/s in
    // all) run during every run. The echo server issues none, so B1's count is that
    // background alone; a run's statement check allows twice its share of it, which matters
    // only when calls are few (a smoke run of a debug build on a slow machine).
    let span = |r: &Run| r.window.as_secs_f64() + args.warmup;
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let background_per_s = b.med(&b1, |r| stm(r) * r.issued as f64 / span(r));
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let allowance = |runs: &[usize]| {
        let a = b.med(runs, |r| {
            2.0 * background_per_s * span(r) / r.issued.max(1) as f64
        });
        if a.is_finite() { a } else { 0.0 }
    };
    let st = b.med(&s1, stm);
    push(
        "S1: DB statements per call".into(),
        format!("{st:.4}"),
        "background only".into(),
        None,
        "0 (< 0.01)",
        Some(st < 0.01 + allowance(&s1)),
        true,
    );
    let d = b.med(&s1_seq, p(0.5)) - b.med(&b1_seq, p(0.5));
    push(
        "S9 cached CheckFeatures, 1 in flight: p50 − B1 p50".into(),
        fmt_us(b.med(&s1_seq, p(0.5))),
        fmt_us(b.med(&b1_seq, p(0.5))),
        None,
        "≤ +15 µs",
        Some(d <= 15.0),
        false,
    );

    let x = b.ratio(&s2, &b3, rps);
    push(
        format!(
            "S2 GetTenant vs B3 pool read ({} in flight, pool {pool}): req/s",
            load.in_flight
        ),
        fmt_rate(b.med(&s2, rps)),
        fmt_rate(b.med(&b3, rps)),
        Some(x),
        "≥ 0.85",
        Some(x.0 >= 0.85),
        false,
    );
    rate_bar!(
        "S2 GetTenant vs B2 bare driver (the same statement): req/s",
        &s2,
        &b2,
        "≥ 0.70",
        0.7
    );
    rate_info!(
        "S2 GetTenant vs B2′ (one table's `SELECT *` by key, superuser): req/s",
        &s2,
        &b2x
    );
    rate_info!(
        "B2 (GetTenant's statement) vs B2′: what the statement costs on the bare driver",
        &b2,
        &b2x
    );
    let st = b.med(&s2, stm);
    push(
        "S2 GetTenant: DB statements per call".into(),
        format!("{st:.3}"),
        format!("B3: {:.3}", b.med(&b3, stm)),
        None,
        "1 (platform-mode connection)",
        Some(st > 0.95 && st < 1.05 + allowance(&s2)),
        true,
    );
    // Where S2's time goes: tenant-admin's CPU per call against its two parts measured alone,
    // the pool read (B3, in-process) and a bare tonic server answering a call (B1).
    let (ta, b3c, b1c) = (b.med(&s2, cpu), b.med(&b3, cpu), b.med(&b1, cpu));
    push(
        "S2 GetTenant: tenant-admin CPU per call vs B3 (the read alone) + B1 (a bare gRPC server)"
            .into(),
        format!("{ta:.1} µs"),
        format!("{b3c:.1} + {b1c:.1} µs"),
        Some((ratio(ta, b3c + b1c), f64::NAN, f64::NAN)),
        "(info)",
        None,
        false,
    );
    // The two cores as the budget: every process's CPU per call, measured in the same runs
    // (the load generator, the serving process, every Postgres process). When the cores are
    // the limit, a ratio of rates is the inverse ratio of these totals.
    let lg = |r: &Run| r.client_cpu_us_per_call.unwrap_or(f64::NAN);
    let pg = |r: &Run| r.db_cpu_us_per_call.unwrap_or(f64::NAN);
    let (s2_lg, s2_pg) = (b.med(&s2, lg), b.med(&s2, pg));
    let (b2_lg, b2_pg) = (b.med(&b2, lg), b.med(&b2, pg));
    let (b1_lg, b1_sv) = (b.med(&b1, lg), b.med(&b1, cpu));
    let s2_all = s2_lg + ta + s2_pg;
    let b2_all = b2_lg + b2_pg;
    push(
        "S2 vs B2: CPU per call of every process (load generator + tenant-admin + Postgres, \
         against the bare driver's process + Postgres); the ratio is the rate ratio the two \
         cores allow"
            .into(),
        format!("{s2_all:.1} µs ({s2_lg:.1} + {ta:.1} + {s2_pg:.1})"),
        format!("{b2_all:.1} µs ({b2_lg:.1} + {b2_pg:.1})"),
        Some((ratio(b2_all, s2_all), f64::NAN, f64::NAN)),
        "(info)",
        None,
        false,
    );
    let floor = b1_lg + b1_sv + b2_pg;
    push(
        "S2's floor vs B2: a bare tonic hop (B1's load generator + echo server) plus B2's \
         Postgres per call; the ratio is the most any gRPC service could reach against B2 here"
            .into(),
        format!("{floor:.1} µs ({b1_lg:.1} + {b1_sv:.1} + {b2_pg:.1})"),
        format!("{b2_all:.1} µs"),
        Some((ratio(b2_all, floor), f64::NAN, f64::NAN)),
        "(info)",
        None,
        false,
    );
    push(
        "S2 vs B2, the serving side only (callers run elsewhere in a deployment): tenant-admin \
         + Postgres against the bare driver's process + Postgres, CPU per call"
            .into(),
        format!("{:.1} µs", ta + s2_pg),
        format!("{b2_all:.1} µs"),
        Some((ratio(b2_all, ta + s2_pg), f64::NAN, f64::NAN)),
        "(info)",
        None,
        false,
    );
    let d = b.med(&s2_seq, p(0.5)) - b.med(&b2_seq, p(0.5));
    push(
        "S9 GetTenant, 1 in flight: p50 − B2 p50".into(),
        fmt_us(b.med(&s2_seq, p(0.5))),
        fmt_us(b.med(&b2_seq, p(0.5))),
        None,
        "≤ +40 µs",
        Some(d <= 40.0),
        false,
    );

    let tail = |r: &Run| ratio(us(r.pct_us(0.999)), us(r.pct_us(0.5)));
    let t = b.med(&s8, tail);
    push(
        format!("S8 GetTenant overload ({over_n} in flight: 4× the pool, ≥ 2× S2's): p99.9 ÷ p50"),
        fmt_us(b.med(&s8, p(0.999))),
        format!("p50 {}", fmt_us(b.med(&s8, p(0.5)))),
        Some((
            t,
            s8.iter()
                .map(|&i| tail(&b.runs[i]))
                .fold(f64::INFINITY, f64::min),
            s8.iter()
                .map(|&i| tail(&b.runs[i]))
                .fold(f64::NEG_INFINITY, f64::max),
        )),
        "≤ 10",
        Some(t <= 10.0),
        false,
    );
    rate_bar!("S8 throughput vs S2 (no collapse)", &s8, &s2, "≥ 0.90", 0.9);
    let r64 = &b.runs[s8_64];
    push(
        "S8 64 connections × 1: p99.9 ÷ p50".into(),
        fmt_us(us(r64.pct_us(0.999))),
        format!("p50 {}", fmt_us(us(r64.pct_us(0.5)))),
        Some({
            let t = ratio(us(r64.pct_us(0.999)), us(r64.pct_us(0.5)));
            (t, t, t)
        }),
        "≤ 10",
        Some(us(r64.pct_us(0.999)) <= 10.0 * us(r64.pct_us(0.5))),
        false,
    );
    // tenant-admin's shared platform-mode connections (GetTenant's pipelined reads).
    let shared = i64::try_from(tenantry_db::PoolConfig::new("").shared_readers).unwrap_or(0);
    push(
        "S8 64 connections: most backends of the services' role".into(),
        format!("{backends_max}"),
        format!(
            "4 pools × {pool} (3 services, tenant-admin's platform pool) + {shared} shared; \
             after: {backends_after}"
        ),
        None,
        "≤ the pools' sizes",
        Some(backends_max <= 4 * i64::from(pool) + shared),
        true,
    );
    let errs: u64 = s8.iter().chain([&s8_64]).map(|&i| b.runs[i].errors).sum();
    push(
        "S8 errors".into(),
        format!("{errs}"),
        String::new(),
        None,
        "0",
        Some(errs == 0),
        true,
    );

    let x = b.ratio(&s4_deep, &s4_first, p(0.5));
    push(
        format!("S4 ListTenants page {} vs page 1: p50", args.page),
        fmt_us(b.med(&s4_deep, p(0.5))),
        fmt_us(b.med(&s4_first, p(0.5))),
        Some(x),
        "≤ 1.3",
        Some(x.0 <= 1.3),
        false,
    );
    rate_bar!(
        format!("S4 page {} vs B6 bare keyset read: req/s", args.page),
        &s4_deep,
        &b6,
        "≥ 0.60",
        0.6
    );
    rate_info!(
        format!(
            "S4 page {} vs B6 + count(*) (what total_size costs): req/s",
            args.page
        ),
        &s4_deep,
        &b6c
    );
    let st = b.med(&s4_deep, stm);
    push(
        "S4 ListTenants: DB statements per call".into(),
        format!("{st:.3}"),
        "B6 + count: 2".into(),
        None,
        "2 (page, locales)",
        Some(st > 1.95 && st < 2.05 + allowance(&s4_deep)),
        true,
    );

    rate_bar!(
        format!("S5 UpdateTenant vs B5 bare UPDATE ({pool} in flight): req/s"),
        &s5,
        &b5,
        "≥ 0.80",
        0.8
    );
    p99_bar!("S5 vs B5: p99", &s5, &b5, "≤ 2.0", 2.0);
    let st = b.med(&s5, stm);
    push(
        "S5 UpdateTenant: DB statements per call".into(),
        format!("{st:.3}"),
        format!("B5: {:.3}", b.med(&b5, stm)),
        None,
        "(reported)",
        None,
        false,
    );

    rate_bar!(
        "S3 realistic mix vs B1 echo: req/s",
        &s3,
        &b1,
        "≥ 0.70",
        0.7
    );
    p99_bar!("S3 mix p99 vs S1 p99", &s3, &s1, "≤ 2.0", 2.0);
    let prop99 = us(propagation.value_at_quantile(0.99));
    push(
        format!(
            "S3 invalidation: write committed → other connection reads it ({} probes)",
            propagation.len()
        ),
        format!("p99 {}", fmt_us(prop99)),
        format!("p50 {}", fmt_us(us(propagation.value_at_quantile(0.5)))),
        None,
        "p99 ≤ 50 ms",
        Some(prop99 <= 50_000.0),
        false,
    );
    push(
        "S3 stale reads after the propagation window".into(),
        format!("{}", probe_errors.len()),
        probe_errors.first().cloned().unwrap_or_default(),
        None,
        "0",
        Some(probe_errors.is_empty()),
        true,
    );

    rate_bar!(
        format!("S6 ProvisionTenant vs B4 bare bcrypt (cost {cost}, {k} slot(s)): per s"),
        &s6,
        &b4,
        "≥ 0.90",
        0.9
    );
    let hash_p50 = us(b.runs[b4_k[0]].pct_us(0.5));
    let prov_p50 = us(b.runs[s6_k[0]].pct_us(0.5));
    push(
        "S6 ProvisionTenant p50, one per slot".into(),
        fmt_us(prov_p50),
        format!("one hash {}", fmt_us(hash_p50)),
        None,
        "≤ hash + 30 ms",
        Some(prov_p50 <= hash_p50 + 30_000.0),
        false,
    );
    rate_bar!(
        "S6 CheckFeatures during provisioning vs alone: req/s",
        &iso,
        &iso_solo,
        "≥ 0.45",
        0.45
    );
    p99_bar!(
        "S6 CheckFeatures during provisioning vs alone: p99",
        &iso,
        &iso_solo,
        "≤ 2.0",
        2.0
    );
    let slowest = iso.iter().map(|&i| b.runs[i].max_us()).max().unwrap_or(0);
    push(
        "S6 CheckFeatures during provisioning: slowest call".into(),
        fmt_us(us(slowest)),
        String::new(),
        None,
        "< 100 ms",
        Some(slowest < 100_000),
        false,
    );

    rate_bar!(
        format!("Login vs B4 bare bcrypt::verify (cost {cost}, {k} slot(s)): per s"),
        &login,
        &b4v,
        "≥ 0.90",
        0.9
    );
    rate_bar!(
        "CheckFeatures during logins vs alone: req/s",
        &login_iso,
        &iso_solo,
        "≥ 0.45",
        0.45
    );
    let slowest = login_iso
        .iter()
        .map(|&i| b.runs[i].max_us())
        .max()
        .unwrap_or(0);
    push(
        "CheckFeatures during logins: slowest call".into(),
        fmt_us(us(slowest)),
        String::new(),
        None,
        "< 100 ms",
        Some(slowest < 100_000),
        false,
    );

    rate_bar!(
        "S7 grpc-web vs native gRPC (64 connections): req/s",
        &s7_web,
        &s7_native,
        "≥ 0.90",
        0.9
    );

    let o = &b.runs[open];
    push(
        format!("Open loop: CheckFeatures at {rate:.0}/s: p99 (from scheduled start)"),
        fmt_us(us(o.pct_us(0.99))),
        format!("closed-loop p99 {}", fmt_us(b.med(&s1, p(0.99)))),
        None,
        "(info)",
        None,
        false,
    );

    let mut memory = Vec::new();
    for (name, idle_kb) in &idle {
        let peak_kb = b.peak.iter().find(|e| e.0 == *name).map_or(0, |e| e.1);
        memory.push(Memory {
            name,
            idle_kb: *idle_kb,
            peak_kb,
        });
    }
    #[expect(clippy::cast_precision_loss, reason = "kB")]
    for m in &memory {
        if m.name == "echo" {
            continue;
        }
        push(
            format!("{} resident memory, idle", m.name),
            format!("{:.1} MiB", m.idle_kb as f64 / 1024.0),
            String::new(),
            None,
            "< 30 MiB",
            Some(m.idle_kb < 30 * 1024),
            false,
        );
        push(
            format!("{} resident memory, peak under load", m.name),
            format!("{:.1} MiB", m.peak_kb as f64 / 1024.0),
            String::new(),
            None,
            "< 100 MiB",
            Some(m.peak_kb < 100 * 1024),
            false,
        );
    }
    for p in &mut b.procs {
        if !p.alive() {
            push(
                format!("{} still running at the end", p.name),
                "exited".into(),
                String::new(),
                None,
                "running",
                Some(false),
                true,
            );
        }
    }
    let runs = std::mem::take(&mut b.runs);
    drop(b);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(Outcome {
        rows,
        runs,
        memory,
        started,
        elapsed: t0.elapsed(),
    })
}
