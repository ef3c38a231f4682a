//! An interrupted run (Ctrl-C, SIGTERM) leaves nothing behind: the served processes run in
//! sessions of their own, so a terminal's Ctrl-C does not reach them, and the private Postgres
//! starts a session of its own too; the bench ends both before it exits.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The session a process belongs to.
fn session(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Gone, or a zombie waiting for init to reap it.
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_interrupted_run_ends_its_services_and_its_postgres() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let mut bench = Command::new(env!("CARGO_BIN_EXE_tenantry-bench"))
            .args([
                "--only",
                "s1",
                "--reps",
                "1",
                "--warmup",
                "1",
                "--duration",
                "60",
            ])
            .args(["--tenants", "300", "--hot-tenants", "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = bench.id();
        // The services are up once the first group starts.
        common::wait_for_first_group(&mut bench);
        let served = common::children(pid, "__serve");
        assert_eq!(served.len(), 4, "three services and the echo server");
        let own = session(i32::try_from(pid).unwrap()).unwrap();
        for &p in &served {
            assert_eq!(
                session(p),
                Some(p),
                "a served process leads a session of its own"
            );
            assert_ne!(session(p), Some(own));
        }
        let base = std::env::temp_dir().join(format!("tenantry-bench-pg-{pid}"));
        let postmaster = common::postmaster(pid);
        assert!(!ended(postmaster));

        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
        let status = bench.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal as i32), "{signal}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut bench.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            stderr.contains("stopping the services and the private Postgres"),
            "{stderr}"
        );
        for &p in &served {
            wait_until("a served process to end", || ended(p));
        }
        wait_until("the private Postgres to stop", || ended(postmaster));
        assert!(
            !Path::new(&base).exists(),
            "{} was left behind",
            base.display()
        );
    }
}
