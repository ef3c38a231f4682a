//! The bench's own flags and the runtime setting its served processes read, refused when they
//! make no sense (nothing is started: each case exits before Postgres or a service would).

#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::{Command, Output};

fn bench(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenantry-bench"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn only_runs_a_part_and_so_writes_and_judges_nothing() {
    for extra in [
        &["--write", "/nonexistent/benchmarks.md"][..],
        &["--smoke"][..],
    ] {
        let mut args = vec!["--only", "s1"];
        args.extend_from_slice(extra);
        let out = bench(&args, &[]);
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--only runs a part of the suite"),
            "{stderr}"
        );
    }
}

#[test]
fn worker_threads_must_be_at_least_one() {
    let out = bench(&["--worker-threads", "0"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--worker-threads"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_layout_is_refused_before_anything_starts() {
    let out = bench(&["--layout", "sideways"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--layout"), "{stderr}");
    assert!(
        stderr.contains("shared") && stderr.contains("pinned"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("starting a private Postgres"),
        "nothing is started for a refused flag"
    );
}

#[test]
fn a_served_process_refuses_a_core_it_cannot_run_on() {
    let out = bench(
        &["__serve", "tenant-settings"],
        &[("TENANTRY_BENCH_CPU", "1000")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pinning to cpu 1000"), "{stderr}");
}

#[test]
fn a_service_refuses_a_runtime_size_that_is_not_a_whole_number_of_at_least_one() {
    // `__serve` builds the runtime the way the service binaries do, before reading anything
    // else of the configuration.
    for bad in ["0", "two", "-3"] {
        let out = bench(
            &["__serve", "tenant-settings"],
            &[("TENANTRY_WORKER_THREADS", bad)],
        );
        assert!(!out.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("TENANTRY_WORKER_THREADS is invalid"),
            "{bad}: {stderr}"
        );
    }
}
