//! `--layout pinned` (the reference's "pinned 1+1"): the served processes run on the first core
//! only, the load generator on the last one, and Postgres keeps every core; `--layout shared`
//! (the default) leaves every process free on every core.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The cores every thread of `pid` may run on (`Cpus_allowed_list` of each task).
fn allowed(pid: i32) -> Vec<String> {
    let mut lists: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .collect();
    lists.sort();
    lists.dedup();
    lists
}

/// Starts the bench with `layout`, waits until its services serve, and returns the cores of
/// the bench, of each served process and of the postmaster, then interrupts it.
fn cores(layout: &str) -> (Vec<String>, Vec<Vec<String>>, Vec<String>) {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_tenantry-bench"))
        .args(["--layout", layout, "--only", "s1", "--reps", "1"])
        .args(["--warmup", "1", "--duration", "60"])
        .args(["--tenants", "300", "--hot-tenants", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = bench.id();
    common::wait_for_first_group(&mut bench);
    let me = allowed(i32::try_from(pid).unwrap());
    let served: Vec<Vec<String>> = common::children(pid, "__serve")
        .into_iter()
        .map(allowed)
        .collect();
    let pg = allowed(common::postmaster(pid));
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
    let _ = bench.wait().unwrap();
    (me, served, pg)
}

#[test]
fn the_pinned_layout_puts_the_services_and_the_load_generator_on_a_core_each() {
    let all = allowed(i32::try_from(std::process::id()).unwrap());
    let all_cores: Vec<usize> = {
        let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap())
            .collect()
    };
    if all_cores.len() < 2 {
        eprintln!("one core only: the pinned layout cannot be checked here");
        return;
    }
    let (first, last) = (all_cores[0], all_cores[all_cores.len() - 1]);

    let (me, served, pg) = cores("pinned");
    assert_eq!(
        me,
        vec![last.to_string()],
        "every thread of the load generator"
    );
    assert_eq!(served.len(), 4, "three services and the echo server");
    for s in &served {
        assert_eq!(
            s,
            &vec![first.to_string()],
            "every thread of a served process"
        );
    }
    assert_eq!(pg, all, "Postgres lands wherever it likes");

    let (me, served, pg) = cores("shared");
    assert_eq!(me, all);
    assert_eq!(served.len(), 4);
    for s in &served {
        assert_eq!(s, &all);
    }
    assert_eq!(pg, all);
}
