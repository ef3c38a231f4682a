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

/// A `tenantctl up` started by a test: its output, where it logs, its addresses, and the
/// clean-up that stops it.
pub(crate) struct Up {
    /// Declared first so that it is dropped last (after the child handle).
    pub(crate) cleanup: Cleanup,
    pub(crate) child: tokio::process::Child,
    pub(crate) lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pub(crate) data_dir: PathBuf,
    pub(crate) err_log: PathBuf,
    /// tenant-admin, tenant-settings, provisioning.
    pub(crate) addrs: [String; 3],
}

/// Starts the real `tenantctl up` on free ports with a fresh data folder
/// (`<temp>/<prefix>-<random>`), on its private Postgres (no `DATABASE_URL`), a generated
/// secret, and without the variables named in `unset`.
pub(crate) fn spawn_up(prefix: &str, unset: &[&str]) -> Up {
    use tokio::io::AsyncBufReadExt as _;

    let data_dir = std::env::temp_dir().join(format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut cleanup = Cleanup {
        data_dir: data_dir.clone(),
        tenantctl: None,
        services: Vec::new(),
    };
    let err_log = data_dir.join("tenantctl.err.log");
    let addrs = free_addrs();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    cmd.arg("up");
    for var in ["DATABASE_URL", "DATABASE_ADMIN_URL", "TENANTRY_JWT_SECRET"]
        .iter()
        .chain(unset)
    {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .env("TENANTRY_DATA_DIR", &data_dir)
        .env("TENANT_ADMIN_ADDR", &addrs[0])
        .env("TENANT_SETTINGS_ADDR", &addrs[1])
        .env("PROVISIONING_ADDR", &addrs[2])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err_log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    cleanup.tenantctl = Some(i32::try_from(child.id().unwrap()).unwrap());
    let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    Up {
        cleanup,
        child,
        lines,
        data_dir,
        err_log,
        addrs,
    }
}
