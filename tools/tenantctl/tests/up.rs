//! `tenantctl up` end to end: the real binary on a private Postgres in a fresh data folder, the
//! commands it prints run as printed, and Ctrl-C stops everything.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;
use support::{Up, alive, spawn_up};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// VmRSS of `pid`, in kB.
fn rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, err_log: &Path) -> String {
    match lines.next_line().await.unwrap() {
        Some(l) => l,
        None => panic!(
            "tenantctl up closed its output before it was ready; stderr:\n{}",
            std::fs::read_to_string(err_log).unwrap_or_default()
        ),
    }
}

/// What `tenantctl up` printed up to its `Logs:` line.
#[derive(Debug, Default)]
struct Banner {
    ready_ms: Option<u64>,
    token: Option<String>,
    pids: Vec<(String, i32)>,
    commands: Vec<String>,
    all: Vec<String>,
}

async fn read_banner(lines: &mut Lines<BufReader<ChildStdout>>, err_log: &Path) -> Banner {
    let mut b = Banner::default();
    loop {
        let line = next_line(lines, err_log).await;
        b.all.push(line.clone());
        if let Some(ms) = line
            .strip_prefix("Tenantry is ready in ")
            .and_then(|r| r.strip_suffix(" ms."))
        {
            b.ready_ms = Some(ms.parse().unwrap());
        } else if let Some(t) = line.strip_prefix("export TOKEN=") {
            b.token = Some(t.to_owned());
        } else if line.starts_with("grpcurl ") {
            b.commands.push(line.clone());
        } else if let Some((name, rest)) = line.split_once(": pid ") {
            let pid = rest.split_whitespace().next().unwrap().parse().unwrap();
            b.pids.push((name.to_owned(), pid));
        } else if line.starts_with("Logs: ") {
            return b;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_the_printed_commands_and_stops_on_ctrl_c() {
    let grpcurl = tokio::task::spawn_blocking(tenantry_testing::tools::grpcurl)
        .await
        .unwrap();
    let grpcurl_dir = grpcurl.parent().unwrap().canonicalize().unwrap();
    let path = std::env::join_paths(std::iter::once(grpcurl_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();

    let Up {
        mut cleanup,
        mut child,
        mut lines,
        data_dir,
        err_log,
        addrs: [admin, settings, provisioning],
    } = spawn_up("tenantctl-up-test", &[]);
    let pid = cleanup.tenantctl.unwrap();

    let banner = tokio::time::timeout(Duration::from_secs(120), read_banner(&mut lines, &err_log))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "tenantctl up was not ready within 120 s; stderr:\n{}",
                std::fs::read_to_string(&err_log).unwrap_or_default()
            )
        });
    cleanup.services = banner.pids.iter().map(|(_, p)| *p).collect();
    let out = banner.all.join("\n");
    // Each service listens where it was told to, and says so.
    for (name, addr) in [
        ("tenant-admin", &admin),
        ("tenant-settings", &settings),
        ("provisioning", &provisioning),
    ] {
        assert!(out.contains(&format!("{name}: pid ")), "{out}");
        assert!(out.contains(addr.as_str()), "{addr} not in\n{out}");
    }
    let ready_ms = banner
        .ready_ms
        .unwrap_or_else(|| panic!("no ready line:\n{out}"));
    let token = banner
        .token
        .clone()
        .unwrap_or_else(|| panic!("no token:\n{out}"));
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let names: Vec<&str> = banner.pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["tenant-admin", "tenant-settings", "provisioning"],
        "{out}"
    );
    assert_eq!(banner.commands.len(), 3, "{out}");
    assert!(
        out.contains("postgres: private cluster on 127.0.0.1:"),
        "no private cluster:\n{out}"
    );
    assert!(
        data_dir.join("postgres/pgdata/postmaster.pid").exists(),
        "the private postgres does not run in {}",
        data_dir.display()
    );

    // Measurements for the README.
    println!("tenantctl up: ready in {ready_ms} ms (fresh data folder, initdb included)");
    for (name, pid) in &banner.pids {
        let kb = rss_kb(*pid);
        assert!(kb > 0, "{name}: VmRSS 0");
        println!("{name}: VmRSS {kb} kB ({:.1} MiB)", kb as f64 / 1024.0);
    }

    for command in &banner.commands {
        let o = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new("sh")
                .arg("-c")
                .arg(command)
                .env("TOKEN", &token)
                .env("PATH", &path)
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not finish in 60 s"))
        .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "`{command}` failed ({}):\n{stdout}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!stdout.trim().is_empty(), "`{command}` printed nothing");
        if command.ends_with(" list") {
            assert!(
                stdout.contains("tenantry.admin.v1.TenantAdminService"),
                "{stdout}"
            );
        } else if command.contains(" describe ") {
            assert!(stdout.contains("rpc "), "{stdout}");
        } else if command.contains("Health/Check") {
            assert!(stdout.contains("\"SERVING\""), "{stdout}");
        }
    }

    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("tenantctl did not stop within 30 s of Ctrl-C"))
        .unwrap();
    cleanup.tenantctl = None;
    let mut rest = Vec::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push(l);
    }
    assert!(
        status.success(),
        "tenantctl exited with {status}; output after ready: {rest:?}; stderr:\n{}",
        std::fs::read_to_string(&err_log).unwrap_or_default()
    );
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    for (name, pid) in &banner.pids {
        assert!(!alive(*pid), "{name} (pid {pid}) still runs");
    }
    assert!(
        !data_dir.join("postgres/pgdata/postmaster.pid").exists(),
        "the private postgres still runs"
    );
    drop(cleanup);
    assert!(!data_dir.exists(), "{} was not removed", data_dir.display());
}
