//! Helpers shared by the tests that start `tenantry-bench` and inspect its processes.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test helpers; each test binary uses a part"
)]

use std::io::{BufRead as _, BufReader};
use std::process::Child;

/// The pids of `parent`'s children whose command line holds `needle`.
pub(crate) fn children(parent: u32, needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // rest: state, ppid, pgrp, session, …
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Reads `bench`'s output (stdout piped) until its first group starts: its services are up.
pub(crate) fn wait_for_first_group(bench: &mut Child) {
    let mut lines = BufReader::new(bench.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the bench ended before its first group")
            .unwrap();
        if line.starts_with("== S1") {
            break;
        }
    }
}

/// The postmaster's pid of the bench `pid`'s private Postgres.
pub(crate) fn postmaster(pid: u32) -> i32 {
    let base = std::env::temp_dir().join(format!("tenantry-bench-pg-{pid}"));
    let pidfile = std::fs::read_to_string(base.join("pgdata/postmaster.pid")).unwrap();
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}
