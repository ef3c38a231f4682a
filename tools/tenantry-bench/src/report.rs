//! The markdown report and the plot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use plotters::prelude::*;

use crate::Args;
use crate::scenarios::{Outcome, fmt_us};

fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    (cpus, model)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The report.
#[expect(clippy::too_many_lines, reason = "one page, top to bottom")]
pub(crate) fn markdown(args: &Args, o: &Outcome, plot: Option<&Path>, out: &Path) -> String {
    let (cpus, model) = machine();
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Produced by `cargo run --release -p tenantry-bench -- {}` \
         (one run of the full suite, {:.0} s). `cargo test -p tenantry-bench` runs the same \
         harness in `--smoke` mode (short runs; it checks that every run completes without \
         errors and the statements per call, never a timing).\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        o.elapsed.as_secs_f64()
    );
    let _ = writeln!(s, "- Date: {}", o.started.format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(
        s,
        "- Machine: {cpus} CPUs, `{model}`; load average at the end: {}",
        loadavg()
    );
    let _ = writeln!(
        s,
        "- Load: closed loop, {} calls in flight over {} HTTP/2 connections unless the row says \
         otherwise; {:.0} s warm-up + {:.0} s measured per run; every baseline/scenario pair run \
         {} times interleaved (A B A B …): figures are medians, ratios are the median of the \
         per-pair ratios with the min–max in brackets.",
        args.in_flight, args.connections, args.warmup, args.duration, args.reps
    );
    let _ = writeln!(
        s,
        "- Layout: each service and the echo server in a process of its own (the bench binary \
         re-executed as `__serve <name>`, configured by environment like a deployment, \
         `DATABASE_POOL_SIZE={}`, `TENANTRY_BCRYPT_COST={}`, `TENANTRY_WORKER_THREADS={}`: \
         {}; each in a session of its own, so that with autogroup scheduling each gets a CPU \
         share of its own, as a container or a systemd unit does); a private Postgres 15 \
         (durable: fsync and synchronous commit on) with `pg_stat_statements`; the load \
         generator on {} tokio worker(s). {}\n",
        args.pool_size,
        args.bcrypt_cost.unwrap_or(12),
        args.worker_threads,
        if args.worker_threads == 1 {
            "a current-thread runtime per process"
        } else {
            "that many tokio workers per process"
        },
        args.client_threads,
        match args.layout {
            crate::Layout::Shared => format!(
                "Everything shares the same {cpus} cores (the shared layout of the reference, \
                 `--layout shared`)."
            ),
            crate::Layout::Pinned => "The pinned layout of the reference (`--layout pinned`): \
                 the served processes on the first core, the load generator and the in-process \
                 baselines on the last, Postgres free on every core."
                .to_owned(),
        }
    );
    if let Some(p) = plot {
        let rel = p
            .strip_prefix(out.parent().unwrap_or(Path::new("")))
            .unwrap_or(p);
        let _ = writeln!(s, "![throughput and latency per run]({})\n", rel.display());
    }
    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(
        s,
        "| Scenario | Figure | Baseline | Ratio | Target | Pass/fail |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let (mut pass, mut fail) = (0, 0);
    for r in &o.rows {
        let verdict = match r.pass {
            Some(true) => {
                pass += 1;
                "pass"
            }
            Some(false) => {
                fail += 1;
                "**fail**"
            }
            None => "—",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.figure,
            r.baseline,
            r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
            r.target,
            verdict
        );
    }
    let _ = writeln!(s, "\n{pass} bars pass, {fail} fail.\n");
    let _ = writeln!(s, "## Memory\n");
    let _ = writeln!(
        s,
        "| Process | Resident, idle | Peak resident (VmHWM) after all runs |"
    );
    let _ = writeln!(s, "|---|---|---|");
    #[expect(clippy::cast_precision_loss, reason = "kB")]
    for m in &o.memory {
        let _ = writeln!(
            s,
            "| {} | {:.1} MiB | {:.1} MiB |",
            m.name,
            m.idle_kb as f64 / 1024.0,
            m.peak_kb as f64 / 1024.0
        );
    }
    let _ = writeln!(s, "\n## Every run\n");
    let _ = writeln!(
        s,
        "| Run | req/s | p50 | p99 | p99.9 | max | calls | errors | DB statements/call | CPU µs/call (process) | load generator CPU µs/call | Postgres CPU µs/call |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &o.runs {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.rps(),
            fmt_us(us(r.pct_us(0.5))),
            fmt_us(us(r.pct_us(0.99))),
            fmt_us(us(r.pct_us(0.999))),
            fmt_us(us(r.max_us())),
            r.calls,
            r.errors,
            r.stmts_per_call.map_or("—".into(), |x| format!("{x:.3}")),
            r.cpu_us_per_call.map_or("—".into(), |x| format!(
                "{x:.1} ({})",
                r.cpu_of.unwrap_or("?")
            )),
            r.client_cpu_us_per_call
                .map_or("—".into(), |x| format!("{x:.1}")),
            r.db_cpu_us_per_call
                .map_or("—".into(), |x| format!("{x:.1}")),
        );
    }
    s.push_str(METHOD);
    s
}

#[expect(
    clippy::cast_precision_loss,
    reason = "latencies in µs are far below 2^52"
)]
fn us(v: u64) -> f64 {
    v as f64
}

const METHOD: &str = "
## What is measured, and how

- **Closed loop**: every task starts its next call when the previous one ends; a call is \
recorded when it *starts* inside the measured window; req/s = recorded calls ÷ window. \
Latencies go into an HDR histogram (µs, 3 significant digits). **Open loop** (last run): calls \
start on a fixed schedule at 0.3× the closed-loop rate, each measured from its scheduled start, \
so a stall shows up as latency instead of slowing the load (no coordinated omission).
- **DB statements per call**: the delta of `sum(calls)` in `pg_stat_statements` (top-level \
statements of the bench database: `BEGIN`, `COMMIT`, scope `set_config`, pool pings and \
queries alike) divided by every call issued in the run, warm-up included. It includes the \
services' background work (trial sweep, provisioning worker, outbox sender) during the run: \
that noise floor is why the cached read is judged as `< 0.01`.
- **CPU per call**: utime + stime of the serving process from `/proc/<pid>/stat` over the run, \
divided by the calls issued (for the in-process baselines, the bench process itself, load \
generator included). The load generator's column is its own CPU per call (the bench \
process): on a shared 2-core machine it is taken from the system under test. The Postgres \
column is the private cluster's: its postmaster, every live child (backends, WAL writer, \
checkpointer …) and, through the postmaster's `cutime`/`cstime`, every backend that exited \
during the run. When the two cores are the limit, a ratio of two runs' rates is about the \
inverse ratio of their three columns' sums: the S2-vs-B2 rows marked (info) make that \
budget explicit.
- **B1 echo**: a bare tonic server in its own process with the services' `Server::builder()` \
settings (HTTP/1 accepted, grpc-web layer, the same per-call trace span), no auth, no cache, \
answering `TenantSettingsService/CheckFeatures` with a copy of a real answer (same message \
sizes), called by the same client code as S1 (same requests, Zipf tenants, same token header \
and answer check): only the server differs.
- **S1**: `CheckFeatures` (all 15 features) with a `service` token, tenant drawn Zipf(1) among \
the hot tenants, every one of which was read once before (warm cache).
- **B2**: GetTenant's own statement (`organization::find_with_locale_sql`: the row joined with \
its locale settings, the exact text GetTenant prepares) on the bare driver: tokio-postgres, \
prepared, as many held connections as the services' pool, the services' role in a \
platform-mode session. **B2′** (for scale): prepared `SELECT * FROM organizations WHERE id = $1` \
as superuser (one table, no RLS), the same way. **B3**: GetTenant's own statement \
(`organization::find_with_locale`: the row joined with its locale settings) as the services' role \
through `tenantry_db::connect_platform` (the services' bb8 + diesel-async pool settings, a \
platform-mode session like tenant-admin's), a checkout per read: the database work of S2 without \
the gRPC hop. **S2**: `GetTenant` (super admin, BASIC view): one `SELECT` (the row joined with its \
locale settings) pipelined with the other reads in flight on one of the platform pool's two shared \
connections (`PlatformPool::read`; `tenantry.platform = on` for the session, no transaction) — \
tenant drawn Zipf(1) among all tenants. Same concurrency for all four (B2 and B2′ pipeline it over as many \
connections as the pool holds). The in-process baselines (B2–B6) run on as many tokio workers as \
the services (`--worker-threads`).
- **S8**: `GetTenant` at 4× the pool size in flight, or twice S2's calls in flight when that is \
more (S2's read is pipelined, not bounded by the pool, so 4× the pool can be a lighter load than \
S2's), and over 64 connections with one call each, while the backends of the services' role are sampled from `pg_stat_activity`.
- **S4 / B6**: `ListTenants` (page size 50, default filters) page 1 and the deep page (reached \
once by walking `next_page_token`, then fetched with that token); B6 is the same 50-row \
keyset read with tokio-postgres at the same cursor, and B6 + count adds the `count(*)` that \
`total_size` needs.
- **S5 / B5**: `UpdateTenant` (display name: one statement, the `UPDATE`, its audit row and \
the read of the row with its locale settings, `organization::update_profile_audited`) vs a \
bare autocommit `UPDATE` of one row, each task on its own stripe of tenants.
- **S3**: 95 % `CheckFeatures`, 3 % `GetTenant`, 1 % `ListTenants`, 1 % `GrantFeatureOverride` \
(a write that invalidates the tenant's cache in every replica through LISTEN/NOTIFY). Meanwhile \
a probe flips a feature and reads it back from another connection until it answers the new \
value (propagation); a probe that does not see its write within 5 s counts as a stale read.
- **S6 / B4**: `ProvisionTenant` (provisioning → tenant-admin admin user with a bcrypt hash at \
the configured cost, tenant-settings defaults and tier features, verification, welcome e-mail \
into the outbox) on pending tenants, at twice the hashing slots, vs bare `bcrypt::hash` on \
the blocking pool behind a semaphore of the same slots; then the same provisioning load with \
cached reads running from other connections.
- **Login / B4 verify**: `AuthService.Login` of a user whose hash was made at the configured \
cost (password check on the blocking pool behind the hashing slots, last-login update, audit \
row, token) vs bare `bcrypt::verify` behind a semaphore of the same slots, at twice the slots in \
flight; then logins again with cached reads running from other connections.
- **S7**: the S1 call through tonic-web over HTTP/1.1 (hyper client + `GrpcWebClientLayer`), \
64 connections, vs native gRPC over 64 HTTP/2 connections.
- **Memory**: VmRSS of each process after start-up and one call, and VmHWM (peak) after all runs.
";

/// A PNG with two panels: throughput per run (log scale) and p50/p99 per run (log scale).
pub(crate) fn plot(o: &Outcome, path: &Path) -> Result<()> {
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .context("no TrueType font found (install fonts-dejavu-core)")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the font does not load"))?;

    let runs = &o.runs;
    let n = runs.len();
    let height = 200 + 26 * u32::try_from(n).unwrap_or(100);
    let root = BitMapBackend::new(path, (1600, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(900);
    let max_rps = runs.iter().map(crate::load::Run::rps).fold(1.0, f64::max);
    let max_lat = runs.iter().map(|r| us(r.pct_us(0.99))).fold(10.0, f64::max);
    let min_lat = runs
        .iter()
        .map(|r| us(r.pct_us(0.5)))
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let label_of = |y: &f64| row_label(&labels, *y);
    #[expect(clippy::cast_precision_loss, reason = "small")]
    let nf = n as f64;
    {
        let mut chart = ChartBuilder::on(&left)
            .caption(
                "Throughput per run (requests/s, log scale)",
                ("sans-serif", 22),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(420)
            .build_cartesian_2d((0.5f64..max_rps * 2.0).log_scale(), -0.5f64..nf - 0.5)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&label_of)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 13))
            .disable_y_mesh()
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(runs.iter().enumerate().map(|(i, r)| {
                #[expect(clippy::cast_precision_loss, reason = "small")]
                let y = (n - 1 - i) as f64;
                Rectangle::new(
                    [(0.5, y - 0.35), (r.rps().max(0.6), y + 0.35)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    {
        let mut chart = ChartBuilder::on(&right)
            .caption(
                "Latency per run: p50 (dot) to p99 (bar end), µs, log scale",
                ("sans-serif", 22),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(
                (min_lat / 2.0..max_lat * 2.0).log_scale(),
                -0.5f64..nf - 0.5,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .y_labels(0)
            .x_label_formatter(&|v| fmt_us(*v))
            .label_style(("sans-serif", 13))
            .disable_y_mesh()
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(runs.iter().enumerate().map(|(i, r)| {
                #[expect(clippy::cast_precision_loss, reason = "small")]
                let y = (n - 1 - i) as f64;
                Rectangle::new(
                    [
                        (us(r.pct_us(0.5)).max(1.0), y - 0.2),
                        (us(r.pct_us(0.99)).max(1.0), y + 0.2),
                    ],
                    RED.mix(0.5).filled(),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(runs.iter().enumerate().map(|(i, r)| {
                #[expect(clippy::cast_precision_loss, reason = "small")]
                let y = (n - 1 - i) as f64;
                Circle::new((us(r.pct_us(0.5)).max(1.0), y), 4, BLACK.filled())
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The label of the plot row at `y`: runs are drawn first on top, so row `y` holds run
/// `n - 1 - y`; between rows, nothing.
fn row_label(labels: &[String], y: f64) -> String {
    let i = y.round();
    if (y - i).abs() > 0.01 || i < 0.0 {
        return String::new();
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "small index"
    )]
    let i = i as usize;
    labels
        .len()
        .checked_sub(1 + i)
        .and_then(|run| labels.get(run))
        .map(|l| {
            if l.chars().count() > 58 {
                l.chars().take(56).collect::<String>() + "…"
            } else {
                l.clone()
            }
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::row_label;

    #[test]
    fn the_top_row_is_labelled_with_the_first_run() {
        let labels: Vec<String> = ["first", "second", "third"].map(String::from).to_vec();
        assert_eq!(row_label(&labels, 2.0), "first");
        assert_eq!(row_label(&labels, 1.0), "second");
        assert_eq!(row_label(&labels, 0.0), "third");
        assert_eq!(row_label(&labels, 0.5), "");
        assert_eq!(row_label(&labels, 3.0), "");
        assert_eq!(row_label(&labels, -1.0), "");
    }
}
