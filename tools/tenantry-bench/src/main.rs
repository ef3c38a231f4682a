//! `tenantry-bench`: the Tenantry load generator.
//!
//! Starts a private Postgres with `pg_stat_statements`, migrates one database, seeds tenants
//! with SQL, and starts each service — and the echo baseline — as a process of its own (this
//! binary re-executed as `__serve <name>`, configured through the environment like a
//! deployment), so CPU time per call and resident memory come from `/proc/<pid>`. Then it runs
//! each scenario of `docs/benchmarks.md` next to its baseline, interleaved (A B A B) for
//! `--reps` repetitions, on a load-generator runtime of one worker thread, and reports medians
//! and ratios: the machines are shared and noisy, so the bars are ratios to baselines measured
//! in the same run.
//!
//! `--smoke` proves the harness works: short runs, every scenario once; it fails when a run
//! completes no call, when a call fails, or when the statements per call are not the designed
//! counts. It never judges a timing.

mod baselines;
mod load;
mod report;
mod scenarios;
mod stack;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Tenantry load generator: scenarios vs same-run baselines")]
pub(crate) struct Args {
    /// Calls in flight for the throughput runs (closed loop: each finished call starts the
    /// next).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// HTTP/2 connections those calls are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Warm-up seconds per run (load runs, nothing is recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured seconds per run (10, with the 2 s warm-up: the reference's length per point).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Repetitions of each baseline/scenario pair (interleaved A B A B); medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Tenants seeded (the listing walks them; point reads pick among them).
    #[arg(long, default_value_t = 20_000)]
    tenants: i64,
    /// Tenants the cached reads pick among (Zipf, s = 1).
    #[arg(long, default_value_t = 1_000)]
    hot_tenants: usize,
    /// The deep page of the listing scenario (page size 50).
    #[arg(long, default_value_t = 200)]
    page: i64,
    /// `TENANTRY_WORKER_THREADS` of every service and of the echo server: 1 (a current-thread
    /// runtime) is the layout for this machine, where the services share two cores with
    /// Postgres and the load generator; `--worker-threads 2` measures one worker per core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: u16,
    /// `DATABASE_POOL_SIZE` of every service.
    #[arg(long, default_value_t = 8)]
    pool_size: u32,
    /// bcrypt cost (default 12; 4 in `--smoke`, which proves the harness, not the hash rate).
    #[arg(long)]
    bcrypt_cost: Option<u32>,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Where the processes run (the reference's two layouts): `shared`, every process free on
    /// every core, the production-like layout for this machine; `pinned`, the served processes
    /// (the three services and the echo server) on the first core, the load generator with
    /// the in-process baselines on the last one, Postgres wherever it lands.
    #[arg(long, value_enum, default_value_t = Layout::Shared)]
    layout: Layout,
    /// Short runs that prove the harness works; asserts completion and statement counts, never
    /// a timing.
    #[arg(long)]
    smoke: bool,
    /// Run only these groups of scenarios (comma-separated: s1, s7, s9, s2, s4, s5, s3, s6,
    /// login, open) and judge nothing: for profiling one path. Cannot be combined with
    /// `--write`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the markdown report to this file.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Write the plot (PNG) to this file (default: the report's path with `.png`, so
    /// `docs/benchmarks.md` plots to `docs/benchmarks.png`).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// See [`Args::layout`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Shared,
    Pinned,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__serve") {
        let arg = |i: usize| argv.get(i).map_or("", String::as_str);
        return serve(arg(2), arg(3), arg(4));
    }
    if let Err(e) = stack::clean_up_on_signals() {
        eprintln!("tenantry-bench: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let mut args = Args::parse();
    if !args.only.is_empty() && (args.write.is_some() || args.smoke) {
        eprintln!("tenantry-bench: --only runs a part of the suite; it writes and judges nothing");
        return std::process::ExitCode::FAILURE;
    }
    if args.smoke {
        args.reps = 1;
        args.warmup = 0.3;
        args.duration = 1.0;
        args.tenants = args.tenants.min(2_000);
        args.hot_tenants = args.hot_tenants.min(100);
        args.page = args.page.min(20);
    }
    if args.bcrypt_cost.is_none() {
        args.bcrypt_cost = Some(if args.smoke { 4 } else { 12 });
    }
    let started = Instant::now();
    let outcome = match scenarios::run_all(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tenantry-bench: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!();
    let mut ok = true;
    // With --only most rows would judge skipped runs: print the runs alone.
    let judged = if args.only.is_empty() {
        outcome.rows.as_slice()
    } else {
        &[]
    };
    for r in judged {
        println!(
            "{:<70} {:>14} vs {:>16}  ratio {:>6}  target {:<22} {}",
            r.scenario,
            r.figure,
            r.baseline,
            r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.target,
            if args.smoke && !r.structural {
                "(smoke: timing not judged)"
            } else {
                match r.pass {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "",
                }
            }
        );
        if args.smoke && r.structural && r.pass == Some(false) {
            ok = false;
        }
    }
    if args.smoke {
        for r in &outcome.runs {
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
            // The database's CPU is measured: the point reads' runs cost Postgres something.
            if (r.label.starts_with("S2 ") || r.label.starts_with("B2 "))
                && r.db_cpu_us_per_call.is_none_or(|c| c <= 0.0)
            {
                eprintln!(
                    "smoke: run {:?} measured no Postgres CPU ({:?})",
                    r.label, r.db_cpu_us_per_call
                );
                ok = false;
            }
        }
        println!(
            "smoke: {} runs, {} in {:.1} s",
            outcome.runs.len(),
            if ok {
                "all completed, statement counts as designed"
            } else {
                "FAILED"
            },
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.write {
        let plot = args
            .plot
            .clone()
            .unwrap_or_else(|| path.with_extension("png"));
        let plot_written = match report::plot(&outcome, &plot) {
            Ok(()) => {
                println!("wrote {}", plot.display());
                Some(plot)
            }
            Err(e) => {
                eprintln!("tenantry-bench: plot not written: {e:#}");
                None
            }
        };
        let text = report::markdown(&args, &outcome, plot_written.as_deref(), path);
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("tenantry-bench: writing {}: {e}", path.display());
            ok = false;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// `__serve <name>`: one service from its environment, as its own binary would run it; or
/// `__serve echo <addr> <answer>`, the echo baseline.
fn serve(name: &str, echo_addr: &str, echo_answer: &str) -> std::process::ExitCode {
    // A session of its own, as a deployment gives each service a cgroup of its own. With
    // autogroup scheduling (`kernel.sched_autogroup_enabled`, on in most distributions'
    // kernels and on these machines), the CPU is shared fairly between sessions before it is
    // shared between their threads: left in the bench's session, every served process would
    // split one share with the load generator, while each Postgres backend (which starts a
    // session of its own) has a whole share. Failing (already a session leader) changes
    // nothing.
    let _ = nix::unistd::setsid();
    // The pinned layout: this process (one thread so far; the runtime's threads inherit it)
    // on the core the bench names.
    if let Some(cpu) = std::env::var(stack::PIN_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        && let Err(e) = stack::pin_thread(0, cpu)
    {
        eprintln!("{name}: pinning to cpu {cpu}: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    tenantry_runtime::telemetry::init();
    // The same runtime as the services' own binaries, sized by TENANTRY_WORKER_THREADS.
    let rt = match tenantry_runtime::rt::from_env() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: runtime: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        match name {
            "tenant-admin" => tenant_admin::run(tenant_admin::Config::from_env()?).await,
            "tenant-settings" => tenant_settings::run(tenant_settings::Config::from_env()?).await,
            "provisioning" => provisioning::run(provisioning::Config::from_env()?).await,
            "echo" => baselines::serve_echo(echo_addr, echo_answer).await,
            other => Err(anyhow::anyhow!("unknown service {other:?}")),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
