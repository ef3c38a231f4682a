//! The admin console in a real browser: `tenantctl up` (the real binary, free ports, a fresh data
//! folder) serves the console it built; Debian's Chromium, driven by playwright-core
//! (`web/console/e2e/flow.mjs`), signs in as the bootstrap super admin and runs the whole flow;
//! then the services confirm what the page showed. Screenshots land in
//! `target/tmp/console-e2e/`.
//!
//! Needs Node.js (with npm) and Chromium (`apt-get install -y chromium`; `CHROMIUM` overrides
//! the path): the test fails, saying so, when either is missing.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;
use support::{Up, spawn_up};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tenantry_auth::{AuthConfig, OrgRole, Signer};
use tenantry_proto::admin::v1 as admin;
use tenantry_proto::common::v1::{Feature, FeatureSource, OrgRole as PbOrgRole, SubscriptionTier};
use tenantry_proto::settings::v1 as settings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{ChildStdout, Command};
use tonic::transport::Channel;

fn console_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../web/console")
        .canonicalize()
        .unwrap()
}

/// The program `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    which("chromium").unwrap_or_else(|| {
        panic!(
            "chromium is not installed: the console's browser test needs Debian's Chromium \
             (`apt-get install -y chromium`), or CHROMIUM=/path/to/chromium"
        )
    })
}

/// Builds the console like `tenantctl up` does (`npm ci` with the committed lockfile when
/// `node_modules` is stale, then `npm run build`), under the same lock.
fn build_console(src: &Path) {
    for tool in ["node", "npm"] {
        assert!(
            which(tool).is_some(),
            "{tool} is not installed: the console's browser test needs Node.js 20+ and npm"
        );
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(src.join(".build.lock"))
        .unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let modified = |p: &str| {
        std::fs::metadata(src.join(p))
            .and_then(|m| m.modified())
            .ok()
    };
    let mut steps: Vec<&[&str]> = Vec::new();
    if modified("node_modules/.package-lock.json") < modified("package-lock.json") {
        steps.push(&["ci", "--no-audit", "--no-fund"]);
    }
    steps.push(&["run", "build"]);
    for args in steps {
        let started = Instant::now();
        let out = std::process::Command::new("npm")
            .args(args)
            .current_dir(src)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`npm {}` failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "npm {}: {} ms",
            args.join(" "),
            started.elapsed().as_millis()
        );
    }
}

/// What `tenantctl up` printed up to its `Logs:` line.
#[derive(Debug, Default)]
struct Banner {
    console_url: Option<String>,
    login: Option<(String, String)>,
    token: Option<String>,
    pids: Vec<i32>,
    all: Vec<String>,
}

async fn read_banner(lines: &mut Lines<BufReader<ChildStdout>>, err_log: &Path) -> Banner {
    let mut b = Banner::default();
    loop {
        let Some(line) = lines.next_line().await.unwrap() else {
            panic!(
                "tenantctl up closed its output before it was ready:\n{}\nstderr:\n{}",
                b.all.join("\n"),
                std::fs::read_to_string(err_log).unwrap_or_default()
            );
        };
        b.all.push(line.clone());
        if let Some(url) = line.strip_prefix("Admin console: http") {
            b.console_url = Some(format!("http{url}"));
        } else if let Some(rest) = line.strip_prefix("Console login (created now;") {
            let email = rest.split("e-mail ").nth(1).unwrap().split(',').next();
            let password = rest.rsplit("password ").next();
            b.login = Some((email.unwrap().to_owned(), password.unwrap().to_owned()));
        } else if let Some(t) = line.strip_prefix("export TOKEN=") {
            b.token = Some(t.to_owned());
        } else if let Some((_, rest)) = line.split_once(": pid ") {
            b.pids
                .push(rest.split_whitespace().next().unwrap().parse().unwrap());
        } else if line.starts_with("Logs: ") {
            return b;
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status line and headers (lower-case
/// names), and the body.
async fn http(addr: &str, request: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_the_whole_flow_in_chromium() {
    let chromium = chromium();
    let src = console_src();
    tokio::task::spawn_blocking({
        let src = src.clone();
        move || build_console(&src)
    })
    .await
    .unwrap();

    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let Up {
        mut cleanup,
        mut child,
        mut lines,
        data_dir,
        err_log,
        addrs: [admin_addr, settings_addr, provisioning_addr],
    } = spawn_up(
        "tenantctl-console-test",
        &["TENANTRY_CONSOLE_DIR", "TENANTRY_CORS_ORIGINS"],
    );
    let pid = cleanup.tenantctl.unwrap();
    let banner = tokio::time::timeout(Duration::from_secs(180), read_banner(&mut lines, &err_log))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "tenantctl up was not ready within 180 s; stderr:\n{}",
                std::fs::read_to_string(&err_log).unwrap_or_default()
            )
        });
    cleanup.services.clone_from(&banner.pids);
    let out = banner.all.join("\n");
    let console_url = banner
        .console_url
        .clone()
        .unwrap_or_else(|| panic!("no console address:\n{out}"));
    assert_eq!(console_url, format!("http://{admin_addr}/"), "{out}");
    let (email, password) = banner
        .login
        .clone()
        .unwrap_or_else(|| panic!("no bootstrap login:\n{out}"));
    let token = banner.token.clone().unwrap();

    // The bootstrap login is kept for the operator, readable by its owner only.
    let login_file = data_dir.join("console-login");
    let kept = std::fs::read_to_string(&login_file).unwrap();
    assert!(kept.contains(&format!("password={password}")), "{kept}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&login_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", login_file.display());
    }

    // Static answers: security headers; HEAD without a body; no gRPC path opened by a GET;
    // nothing outside the console's folder; gRPC still behind the auth layer.
    let get = |path: &str, method: &str| {
        format!("{method} {path} HTTP/1.1\r\nhost: {admin_addr}\r\nconnection: close\r\n\r\n")
    };
    let (status, headers, body) = http(&admin_addr, &get("/", "GET")).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(String::from_utf8_lossy(&body).contains("<script type=\"module\" src=\"app.js\">"));
    let csp = header(&headers, "content-security-policy").unwrap();
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        &format!("connect-src 'self' http://{settings_addr} http://{provisioning_addr}"),
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert_eq!(header(&headers, "x-frame-options"), Some("DENY"));
    // The services have no TLS: no HSTS over plain HTTP.
    assert_eq!(header(&headers, "strict-transport-security"), None);
    let (status, headers, body) = http(&admin_addr, &get("/app.js", "HEAD")).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty());
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    for path in [
        "/tenantry.admin.v1.TenantAdminService/ListTenants",
        "/grpc.health.v1.Health/Check",
        "/../../../etc/passwd",
        "/%2e%2e/Cargo.toml",
        "/.build.lock",
    ] {
        let (status, headers, _) = http(&admin_addr, &get(path, "GET")).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "GET {path}");
        assert_eq!(
            header(&headers, "grpc-status"),
            None,
            "GET {path} reached gRPC"
        );
        assert!(header(&headers, "content-security-policy").is_some());
    }
    let grpc_web = format!(
        "POST /tenantry.admin.v1.TenantAdminService/ListTenants HTTP/1.1\r\nhost: {admin_addr}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: 5\r\n\
         connection: close\r\n\r\n\0\0\0\0\0"
    );
    let (_, headers, body) = http(&admin_addr, &grpc_web).await;
    let trailers = String::from_utf8_lossy(&body).into_owned();
    assert!(
        header(&headers, "grpc-status") == Some("16") || trailers.contains("grpc-status:16"),
        "a grpc-web call without a token was not refused: {headers:?} {trailers}"
    );

    // Two more tenants of this run, for paging (3 match the run's search, 2 a page).
    let channel = |addr: &str| {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    };
    let mut tenants =
        admin::tenant_admin_service_client::TenantAdminServiceClient::new(channel(&admin_addr));
    for n in ["a", "b"] {
        tenants
            .create_tenant(authed(
                admin::CreateTenantRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    name: format!("Paging {run} {n}"),
                    slug: format!("paging-{run}-{n}"),
                    email: format!("paging-{n}@example.com"),
                    subscription_tier: SubscriptionTier::Basic as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
    }

    // The browser flow.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let flow = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new("node")
            .arg("e2e/flow.mjs")
            .current_dir(&src)
            .env("CONSOLE_URL", &console_url)
            .env("LOGIN_EMAIL", &email)
            .env("LOGIN_PASSWORD", &password)
            .env("RUN_ID", &run)
            .env("SHOTS_DIR", &shots)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser flow did not finish within 300 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&flow.stdout);
    let stderr = String::from_utf8_lossy(&flow.stderr);
    assert!(
        flow.status.success(),
        "the browser flow failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        flow.status,
        shots.display()
    );
    println!(
        "browser flow: {} ms, screenshots in {}",
        started.elapsed().as_millis(),
        shots.display()
    );
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}"));
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    assert_eq!(result["consoleErrors"], serde_json::json!([]), "{result}");
    assert_eq!(result["headers"]["frame"], "DENY");
    assert_eq!(result["headers"]["hsts"], "");
    for shot in [
        "field-error",
        "provisioned",
        "tenants",
        "tenant-detail",
        "audit",
    ] {
        let p = shots.join(format!("console-{shot}.png"));
        assert!(
            std::fs::metadata(&p).unwrap().len() > 10_000,
            "{}",
            p.display()
        );
    }

    // What the page showed, confirmed by the services.
    let tenant_id = result["tenantId"].as_str().unwrap().to_owned();
    let tenant = tenants
        .get_tenant(authed(
            admin::GetTenantRequest {
                tenant_id: tenant_id.clone(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(tenant.slug, format!("console-{run}"));
    assert!(tenant.is_verified, "not provisioned");
    assert_eq!(tenant.subscription_tier, SubscriptionTier::Basic as i32);
    assert_eq!(tenant.usage.unwrap().current_users, 1);

    let mut settings_client =
        settings::tenant_settings_service_client::TenantSettingsServiceClient::new(channel(
            &settings_addr,
        ));
    let s = settings_client
        .get_settings(authed(
            settings::GetSettingsRequest {
                tenant_id: tenant_id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(s.timezone, "Europe/Paris");
    assert_eq!(
        s.branding.unwrap().primary_color,
        "",
        "branding needs custom_branding"
    );
    assert_eq!(s.display_name, format!("Console Academy {run} (console)"));
    let features = settings_client
        .get_features(authed(
            settings::GetFeaturesRequest {
                tenant_id: tenant_id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .features;
    let state = |f: Feature| {
        features
            .iter()
            .find(|s| s.feature == f as i32)
            .unwrap()
            .clone()
    };
    let assessment = state(Feature::AssessmentBuilder);
    assert!(assessment.enabled);
    assert_eq!(assessment.source, FeatureSource::OrgAdmin as i32);
    let gamification = state(Feature::Gamification);
    assert!(!gamification.enabled);
    assert_eq!(gamification.source, FeatureSource::OperatorOverride as i32);
    assert!(!state(Feature::Sso).available);

    let secret = std::fs::read_to_string(data_dir.join("jwt-secret")).unwrap();
    let admin_token = Signer::new(&AuthConfig::hs256(secret.trim()))
        .unwrap()
        .mint(
            "console-test",
            None,
            Some((tenant_id.parse().unwrap(), OrgRole::Admin)),
            600,
        )
        .unwrap();
    let mut orgs =
        admin::organization_service_client::OrganizationServiceClient::new(channel(&admin_addr));
    let invitations = orgs
        .list_invitations(authed(
            admin::ListInvitationsRequest::default(),
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .invitations;
    let invitee = result["invitee"].as_str().unwrap();
    assert!(
        invitations
            .iter()
            .any(|i| i.email == invitee && i.org_role == PbOrgRole::Teacher as i32),
        "{invitations:?}"
    );

    let mut audit = admin::audit_service_client::AuditServiceClient::new(channel(&admin_addr));
    let events = audit
        .list_audit_events(authed(
            admin::ListAuditEventsRequest {
                tenant_id: tenant_id.clone(),
                page_size: 100,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "tenantry.admin.v1.TenantAdminService/CreateTenant",
        "tenantry.admin.v1.OrganizationService/CreateInvitation",
        "tenantry.settings.v1.TenantSettingsService/GrantFeatureOverride",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
        let shown = action.trim_start_matches("tenantry.");
        let in_page = result["tenantAudit"]
            .as_array()
            .unwrap()
            .iter()
            .chain(result["platformAudit"].as_array().unwrap())
            .any(|a| a == shown);
        assert!(in_page, "{shown} not shown in the console: {result}");
    }

    // Ctrl-C stops everything.
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("tenantctl did not stop within 30 s of Ctrl-C")
        .unwrap();
    cleanup.tenantctl = None;
    assert!(status.success(), "tenantctl exited with {status}");
    drop(cleanup);
}
