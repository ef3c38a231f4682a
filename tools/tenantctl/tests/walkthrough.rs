//! The operator walkthrough (`docs/operators.md`) end to end: the page's ```` ```bash ```` blocks,
//! parsed from the markdown so page and test cannot drift, run in order in one bash session
//! (`set -euo pipefail`) with the real grpcurl 1.8.6 binary against the real `tenantctl up`
//! binary on free ports and a fresh data folder. Each block's output must contain every
//! `<!-- expect: ... -->` that follows the block; then the database, the backup and the mail
//! folder are checked from here.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;
use support::{Up, spawn_up};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tenantry_db::diesel;
use tenantry_db::diesel::sql_types::BigInt;
use tenantry_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use tokio::io::{BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// How long the whole page may take (it takes a few seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Marker printed before each block's output.
const BLOCK_MARKER: &str = "@@walkthrough-block ";
/// Marker printed after the last block.
const DONE_MARKER: &str = "@@walkthrough-done";
/// Prefix of the variables the script hands back after the last block.
const VAR_MARKER: &str = "@@walkthrough-var ";

/// One ```` ```bash ```` block of the page and the substrings its output must contain.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence, for messages.
    line: usize,
    code: String,
    expect: Vec<String>,
}

/// The page's bash blocks, each with the `<!-- expect: ... -->` lines that follow its closing
/// fence (blank lines between them allowed).
fn parse_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```bash" {
            i += 1;
            continue;
        }
        let line = i + 1;
        let mut j = i + 1;
        let mut code = String::new();
        while j < lines.len() && lines[j].trim_end() != "```" {
            code.push_str(lines[j]);
            code.push('\n');
            j += 1;
        }
        assert!(
            j < lines.len(),
            "the bash block at line {line} is not closed"
        );
        let mut expect = Vec::new();
        let mut k = j + 1;
        while k < lines.len() {
            let l = lines[k].trim();
            if l.is_empty() {
                k += 1;
                continue;
            }
            match l
                .strip_prefix("<!-- expect: ")
                .and_then(|r| r.strip_suffix(" -->"))
            {
                Some(e) => {
                    expect.push(e.to_owned());
                    k += 1;
                }
                None => break,
            }
        }
        blocks.push(Block { line, code, expect });
        i = k;
    }
    blocks
}

/// The script: the blocks in order, each preceded by a marker; stderr joined to stdout so a
/// block's errors appear in its own output; the variables the checks need printed at the end.
fn script(blocks: &[Block]) -> String {
    let mut s = String::from("set -euo pipefail\nexec 2>&1\n");
    for (i, b) in blocks.iter().enumerate() {
        s.push_str(&format!("printf '\\n{BLOCK_MARKER}{}\\n'\n", i + 1));
        s.push_str(&b.code);
        // Not in the page: let the outbox relay (it polls every second) write the invitation
        // before the page goes on to hard-delete the tenant, which drops its unsent mail.
        if b.code.contains("CreateInvitation") {
            s.push_str(
                "for _ in $(seq 1 100); do ls \"$TENANTRY_DATA_DIR\"/mail/invitation-* \
                 >/dev/null 2>&1 && break; sleep 0.1; done\n",
            );
        }
    }
    s.push_str(&format!("printf '\\n{DONE_MARKER}\\n'\n"));
    for var in ["TENANT_ID", "BACKUP_PATH", "SA_EMAIL"] {
        s.push_str(&format!("printf '{VAR_MARKER}{var}=%s\\n' \"${var}\"\n"));
    }
    s
}

/// Splits the script's output at the markers: (block number, its output).
fn outputs(out: &str) -> Vec<(usize, String)> {
    let mut result: Vec<(usize, String)> = Vec::new();
    for line in out.lines() {
        if let Some(n) = line.strip_prefix(BLOCK_MARKER) {
            result.push((n.trim().parse().unwrap(), String::new()));
        } else if line.starts_with(DONE_MARKER) || line.starts_with(VAR_MARKER) {
            break;
        } else if let Some((_, text)) = result.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    result
}

fn var(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{VAR_MARKER}{name}=")))
        .unwrap_or_else(|| panic!("the script did not report {name}:\n{out}"))
        .to_owned()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Reads `tenantctl up`'s output up to its `Logs:` line; returns the services' pids.
async fn wait_ready(lines: &mut Lines<BufReader<ChildStdout>>, err_log: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut seen = Vec::new();
    loop {
        let Some(line) = lines.next_line().await.unwrap() else {
            panic!(
                "tenantctl up closed its output before it was ready:\n{}\nstderr:\n{}",
                seen.join("\n"),
                std::fs::read_to_string(err_log).unwrap_or_default()
            );
        };
        if let Some((_, rest)) = line.split_once(": pid ") {
            pids.push(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
        let done = line.starts_with("Logs: ");
        seen.push(line);
        if done {
            assert_eq!(pids.len(), 3, "{}", seen.join("\n"));
            return pids;
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_of_the_operator_walkthrough_works() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operators.md");
    let markdown = std::fs::read_to_string(&page).unwrap();
    let blocks = parse_blocks(&markdown);
    assert!(
        blocks.len() > 10,
        "only {} bash blocks in {}",
        blocks.len(),
        page.display()
    );
    for b in &blocks {
        assert!(
            !b.expect.is_empty(),
            "the bash block at docs/operators.md:{} has no <!-- expect: ... --> after it",
            b.line
        );
    }
    assert!(
        on_path("jq").is_some(),
        "the walkthrough needs jq on the PATH (apt-get install jq)"
    );

    let grpcurl = tokio::task::spawn_blocking(tenantry_testing::tools::grpcurl)
        .await
        .unwrap();
    let version = std::process::Command::new(&grpcurl)
        .arg("-version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string()
        + &String::from_utf8_lossy(&version.stderr);
    assert!(version.contains("grpcurl"), "{grpcurl:?}: {version}");
    let tenantctl = PathBuf::from(env!("CARGO_BIN_EXE_tenantctl"));
    let path = std::env::join_paths(
        [
            grpcurl.parent().unwrap().canonicalize().unwrap(),
            tenantctl.parent().unwrap().to_path_buf(),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();

    let Up {
        mut cleanup,
        child: mut up,
        mut lines,
        data_dir,
        err_log,
        addrs: [admin, settings, provisioning],
    } = spawn_up("tenantctl-walkthrough", &[]);
    cleanup.services =
        tokio::time::timeout(Duration::from_secs(120), wait_ready(&mut lines, &err_log))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "tenantctl up was not ready within 120 s; stderr:\n{}",
                    std::fs::read_to_string(&err_log).unwrap_or_default()
                )
            });
    // Keep reading `up`'s output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // The page, as a new user would paste it: a bash in the data folder's parent, nothing set
    // but the addresses and the data folder (as if run from the folder of `tenantctl up`).
    let script_path = data_dir.join("walkthrough.sh");
    std::fs::write(&script_path, script(&blocks)).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(&data_dir)
        .env("PATH", &path)
        .env("ADMIN", &admin)
        .env("SETTINGS", &settings)
        .env("PROVISIONING", &provisioning)
        .env("TENANTRY_DATA_DIR", &data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for v in [
        "DATABASE_URL",
        "DATABASE_ADMIN_URL",
        "TENANTRY_JWT_SECRET",
        "TOKEN",
        "TENANT_ID",
        "GRPCURL",
    ] {
        cmd.env_remove(v);
    }
    let started = std::time::Instant::now();
    let run = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the walkthrough did not finish in {SCRIPT_TIMEOUT:?}"))
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let per_block = outputs(&out);
    if !run.status.success() {
        let (n, text) = per_block.last().cloned().unwrap_or_default();
        let source = n
            .checked_sub(1)
            .and_then(|i| blocks.get(i))
            .map_or(String::new(), |b| {
                format!("docs/operators.md:{}\n{}", b.line, b.code)
            });
        panic!(
            "the walkthrough failed ({}) in block {n} of {}:\n{source}\n--- its output:\n{text}\n--- stderr:\n{}",
            run.status,
            blocks.len(),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    assert!(
        out.contains(DONE_MARKER),
        "the script exited 0 without running every block:\n{out}"
    );
    assert_eq!(
        per_block.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        (1..=blocks.len()).collect::<Vec<_>>(),
        "not every block ran, in order:\n{out}"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for ((n, text), block) in per_block.iter().zip(&blocks) {
        for e in &block.expect {
            checked += 1;
            if !text.contains(e.as_str()) {
                failures.push(format!(
                    "block {n} (docs/operators.md:{}) does not print {e:?}:\n{}\n--- its output:\n{text}",
                    block.line, block.code
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!(
        "walkthrough: {} bash blocks, {checked} expectations, all met in {} ms",
        blocks.len(),
        started.elapsed().as_millis()
    );

    // What the page claims happened, checked from here.
    let tenant = uuid::Uuid::parse_str(&var(&out, "TENANT_ID")).unwrap();
    let backup = PathBuf::from(var(&out, "BACKUP_PATH"));
    let sa_email = var(&out, "SA_EMAIL");
    let port = std::fs::read_to_string(data_dir.join("postgres/port")).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/tenantry", port.trim());
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    for table in [
        "organizations",
        "users",
        "invitations",
        "tenant_settings",
        "tenant_features",
        "provisioning_jobs",
        "usage_events",
    ] {
        let column = if table == "organizations" {
            "id"
        } else {
            "organization_id"
        };
        assert_eq!(
            count(
                &mut conn,
                &format!("SELECT count(*) AS n FROM {table} WHERE {column} = '{tenant}'")
            )
            .await,
            0,
            "{table} still holds rows of the hard-deleted tenant"
        );
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM organizations").await,
        2,
        "beta-academy and gamma-college should remain"
    );
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM platform_admins WHERE email = '{sa_email}' \
                 AND last_login_at IS NOT NULL"
            )
        )
        .await,
        1,
        "the super admin created by the page did not log in"
    );
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM backups WHERE organization_id = '{tenant}' \
                 AND path = '{}' AND length(checksum) = 64",
                backup.display()
            )
        )
        .await,
        1,
        "no backup row for {}",
        backup.display()
    );
    assert!(
        backup.starts_with(&data_dir),
        "backup {} outside the data folder",
        backup.display()
    );
    let manifest = std::fs::read_to_string(backup.join("manifest.json"))
        .unwrap_or_else(|e| panic!("no manifest in {}: {e}", backup.display()));
    assert!(manifest.contains("users"), "{manifest}");
    let users = std::fs::read_to_string(backup.join("users.jsonl")).unwrap();
    assert_eq!(users.lines().count(), 1, "{users}");
    assert!(users.contains("admin_acme-schools"), "{users}");
    let organizations = std::fs::read_to_string(backup.join("organizations.jsonl")).unwrap();
    assert!(organizations.contains("acme-schools"), "{organizations}");
    // The welcome e-mail of provisioning and the invitation, written as files (no SMTP).
    // The outbox sender writes them on its own schedule: wait for both (at most 15 s).
    let read_mails = || -> Vec<String> {
        std::fs::read_dir(data_dir.join("mail"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut mails = read_mails();
    while !(mails.iter().any(|m| m.starts_with("welcome."))
        && mails.iter().any(|m| m.starts_with("invitation-")))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        mails = read_mails();
    }
    assert!(mails.iter().any(|m| m.starts_with("welcome.")), "{mails:?}");
    assert!(
        mails.iter().any(|m| m.starts_with("invitation-")),
        "{mails:?}"
    );

    drop(conn);
    kill(Pid::from_raw(cleanup.tenantctl.unwrap()), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("tenantctl did not stop within 30 s of Ctrl-C")
        .unwrap();
    cleanup.tenantctl = None;
    assert!(status.success(), "tenantctl up exited with {status}");
}
