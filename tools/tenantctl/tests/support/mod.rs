//! What the tests that start the real `tenantctl up` share: free ports, a liveness check, and
//! the clean-up that stops the stack and removes its data folder even when a test fails.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Three free ports on 127.0.0.1 (bound, read, released).
pub(crate) fn free_addrs() -> [String; 3] {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    addrs.try_into().unwrap()
}

/// Whether `pid` runs (a zombie — exited, not yet reaped — does not).
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
    })
}

/// Stops `tenantctl up` (Ctrl-C: it stops its services and Postgres), kills whatever is left,
/// and removes the data folder, also when the test fails half-way.
pub(crate) struct Cleanup {
    pub(crate) data_dir: PathBuf,
    pub(crate) tenantctl: Option<i32>,
    pub(crate) services: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.tenantctl {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            for _ in 0..300 {
                if !alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for pid in &self.services {
            if alive(*pid) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        let pgdata = self.data_dir.join("postgres/pgdata");
        if pgdata.join("postmaster.pid").exists() {
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", "pg_ctl", "-D"])
                .arg(&pgdata)
                .args(["-m", "immediate", "stop"])
                .output();
            let _ = std::process::Command::new("pg_ctl")
                .arg("-D")
                .arg(&pgdata)
                .args(["-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
