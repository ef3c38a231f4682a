//! Load generation: closed loop (N calls in flight, each finished call starts the next) and open
//! loop (calls start on a fixed schedule whatever the answers do), recorded in HDR histograms.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng as _;

/// One measured run.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) label: String,
    /// Calls started inside the measured window that succeeded.
    pub(crate) calls: u64,
    /// Calls started inside the measured window that failed.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Every call issued, warm-up included (the denominator of the per-call counters).
    pub(crate) issued: u64,
    pub(crate) window: Duration,
    /// Latencies in microseconds.
    pub(crate) hist: Histogram<u64>,
    /// Database statements (`pg_stat_statements`) per issued call.
    pub(crate) stmts_per_call: Option<f64>,
    /// CPU time of the serving process per issued call, in µs.
    pub(crate) cpu_us_per_call: Option<f64>,
    /// Which process that CPU time is of.
    pub(crate) cpu_of: Option<&'static str>,
    /// CPU time of the load generator (this process) per issued call, in µs: for a gRPC run
    /// the client's share of the cores, taken from the system under test on a shared machine.
    pub(crate) client_cpu_us_per_call: Option<f64>,
    /// CPU time of the private Postgres (every process of the cluster) per issued call, in µs.
    pub(crate) db_cpu_us_per_call: Option<f64>,
}

impl Run {
    #[expect(clippy::cast_precision_loss, reason = "call counts are far below 2^52")]
    pub(crate) fn rps(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn pct_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    pub(crate) fn max_us(&self) -> u64 {
        self.hist.max()
    }
}

pub(crate) fn new_hist() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant digits: the bounds are valid constants.
    Histogram::new_with_bounds(1, 100_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// How long and how wide a closed-loop run is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) in_flight: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

impl Load {
    pub(crate) fn with_in_flight(self, in_flight: usize) -> Self {
        Self { in_flight, ..self }
    }
}

fn empty_run(label: &str, window: Duration) -> Run {
    Run {
        label: label.to_owned(),
        calls: 0,
        errors: 0,
        first_error: None,
        issued: 0,
        window,
        hist: new_hist(),
        stmts_per_call: None,
        cpu_us_per_call: None,
        cpu_of: None,
        client_cpu_us_per_call: None,
        db_cpu_us_per_call: None,
    }
}

type TaskResult = (Histogram<u64>, u64, u64, Option<String>);

async fn gather(
    label: &str,
    window: Duration,
    tasks: Vec<tokio::task::JoinHandle<TaskResult>>,
) -> Run {
    let mut run = empty_run(label, window);
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

/// Runs `call(task, n)` (`n` counts the task's calls) from `in_flight` tasks in a closed loop;
/// records calls that start after the warm-up and before the end (a call that ends after the
/// window still counts, so a slow call such as a bcrypt hash is not dropped at the edge).
pub(crate) async fn closed_loop<F, Fut>(label: &str, load: Load, call: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
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
                let r = call(i, issued).await;
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
    gather(label, load.duration, tasks).await
}

/// Open loop: starts a call every `1/rate` s whatever the answers do (at most `max_in_flight`
/// outstanding; a call that finds no slot is counted as an error), and measures each call from
/// its *scheduled* start, so a stall shows up in the latencies instead of slowing the load
/// (no coordinated omission).
pub(crate) async fn open_loop<F, Fut>(
    label: &str,
    rate: f64,
    max_in_flight: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Result<u64, String>)>();
    let mut n = 0u64;
    let mut dropped = 0u64;
    loop {
        let scheduled = start + interval.mul_f64(n as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        n += 1;
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if scheduled >= measure_from {
                dropped += 1;
            }
            continue;
        };
        let call = Arc::clone(&call);
        let tx = tx.clone();
        let seq = n;
        tokio::spawn(async move {
            let r = call(seq).await;
            let us = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
            drop(permit);
            let _ = tx.send((scheduled, r.map(|()| us)));
        });
    }
    drop(tx);
    let mut run = empty_run(label, duration);
    run.errors = dropped;
    if dropped > 0 {
        run.first_error = Some(format!("{dropped} calls found no free slot"));
    }
    while let Some((scheduled, r)) = rx.recv().await {
        run.issued += 1;
        if scheduled < measure_from {
            continue;
        }
        match r {
            Ok(us) => run.hist.saturating_record(us.max(1)),
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(e);
            }
        }
    }
    run.calls = run.hist.len();
    run
}

/// A Zipf(s = 1) sampler over `0..n`: rank 0 is the most popular.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    cdf: Arc<Vec<f64>>,
}

impl Zipf {
    #[expect(clippy::cast_precision_loss, reason = "ranks are small")]
    pub(crate) fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n.max(1));
        for k in 1..=n.max(1) {
            acc += 1.0 / k as f64;
            cdf.push(acc);
        }
        for v in &mut cdf {
            *v /= acc;
        }
        Self { cdf: Arc::new(cdf) }
    }

    pub(crate) fn sample(&self) -> usize {
        let u: f64 = rand::rng().random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}
