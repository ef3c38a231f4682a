//! The services as grpcurl sees them: reflection lists and describes every service with its proto
//! comments, health needs no token, and the auth layer answers grpcurl like any other client.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;

use tenantry_testing::{Suite, super_admin_token, tools};

/// Runs grpcurl with `args` and returns its output.
async fn grpcurl(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let bin = tools::grpcurl();
        std::process::Command::new(&bin)
            .args(["-max-time", "30"])
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs grpcurl and asserts it succeeded; returns stdout.
async fn grpcurl_ok(args: &[&str]) -> String {
    let o = grpcurl(args).await;
    assert!(
        o.status.success(),
        "grpcurl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Each port with the services it serves.
fn ports(suite: &Suite) -> [(SocketAddr, Vec<&'static str>); 3] {
    [
        (suite.admin.addr, tenant_admin::SERVICES.to_vec()),
        (suite.settings.addr, tenant_settings::SERVICES.to_vec()),
        (suite.provisioning.addr, provisioning::SERVICES.to_vec()),
    ]
}

fn proto(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The first line of the comment block right above the line that contains `needle`.
fn comment_above(source: &str, needle: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not found in the proto"));
    let mut first = None;
    for l in lines[..at].iter().rev() {
        match l.trim().strip_prefix("//") {
            Some(text) => first = Some(text.trim().to_owned()),
            None => break,
        }
    }
    let text = first.unwrap_or_else(|| panic!("no comment above {needle:?}"));
    assert!(!text.is_empty(), "empty comment above {needle:?}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_exactly_the_services_of_each_port() {
    let suite = Suite::start().await;
    for (addr, services) in ports(&suite) {
        let out = grpcurl_ok(&["-plaintext", &addr.to_string(), "list"]).await;
        let listed: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for name in services.iter().chain(&["grpc.health.v1.Health"]) {
            assert!(
                listed.contains(name),
                "{addr}: {name} is not listed:\n{out}"
            );
        }
        for name in &listed {
            assert!(
                services.contains(name)
                    || *name == "grpc.health.v1.Health"
                    || name.starts_with("grpc.reflection."),
                "{addr}: lists {name}, which this port does not serve:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_shows_every_rpc_with_its_comment() {
    let suite = Suite::start().await;
    let login_comment = comment_above(&proto("tenantry/admin/v1/auth.proto"), "rpc Login(");
    let mut seen_login_comment = false;
    for (addr, services) in ports(&suite) {
        for service in services {
            let out = grpcurl_ok(&["-plaintext", &addr.to_string(), "describe", service]).await;
            assert!(
                out.contains(&format!(
                    "service {} {{",
                    service.rsplit('.').next().unwrap()
                )),
                "{service}: no service block:\n{out}"
            );
            let lines: Vec<&str> = out.lines().map(str::trim).collect();
            let mut rpcs = 0;
            for (i, line) in lines.iter().enumerate() {
                if line.starts_with("rpc ") && line.contains(" (") {
                    rpcs += 1;
                    let above = lines[..i].iter().rev().find(|l| !l.is_empty());
                    assert!(
                        above.is_some_and(|l| l.starts_with("//")),
                        "{service}: `{line}` has no comment above it:\n{out}"
                    );
                }
            }
            assert!(rpcs > 0, "{service}: no RPC described:\n{out}");
            seen_login_comment |= out.contains(&login_comment);
        }
    }
    assert!(
        seen_login_comment,
        "the comment of AuthService.Login ({login_comment:?}) is not in any description"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_of_a_message_shows_field_comments() {
    let suite = Suite::start().await;
    let source = proto("tenantry/admin/v1/auth.proto");
    let out = grpcurl_ok(&[
        "-plaintext",
        &suite.admin.addr.to_string(),
        "describe",
        "tenantry.admin.v1.LoginRequest",
    ])
    .await;
    assert!(out.contains("message LoginRequest {"), "{out}");
    for field in ["string tenant_slug = 1;", "string password = 4;"] {
        let comment = comment_above(&source, field);
        assert!(
            out.contains(&comment),
            "the comment of `{field}` ({comment:?}) is missing:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_needs_no_token() {
    let suite = Suite::start().await;
    for (addr, services) in ports(&suite) {
        let addr = addr.to_string();
        let out = grpcurl_ok(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "SERVING", "{addr}: {out}");
        let body = serde_json::json!({ "service": services[0] }).to_string();
        let out = grpcurl_ok(&[
            "-plaintext",
            "-d",
            &body,
            &addr,
            "grpc.health.v1.Health/Check",
        ])
        .await;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "SERVING", "{addr} {}: {out}", services[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_tenant_needs_a_token() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr.to_string();
    let body = serde_json::json!({ "tenant_id": uuid::Uuid::new_v4().to_string() }).to_string();
    let method = "tenantry.admin.v1.TenantAdminService/GetTenant";

    let anonymous = grpcurl(&["-plaintext", "-d", &body, &addr, method]).await;
    assert!(!anonymous.status.success(), "{}", stdout(&anonymous));
    assert!(
        stderr(&anonymous).contains("Code: Unauthenticated"),
        "without a token: {}",
        stderr(&anonymous)
    );

    let header = format!("authorization: Bearer {}", super_admin_token());
    let authed = grpcurl(&["-plaintext", "-H", &header, "-d", &body, &addr, method]).await;
    let err = stderr(&authed);
    // The call reached the handler: success, or a status the handler chose.
    assert!(
        authed.status.success() || err.contains("Code: "),
        "no gRPC answer: {err}"
    );
    assert!(
        !err.contains("Unauthenticated") && !err.contains("PermissionDenied"),
        "a super admin was refused: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_argument_details_are_decoded_through_reflection() {
    let suite = Suite::start().await;
    let header = format!("authorization: Bearer {}", super_admin_token());
    let body = serde_json::json!({ "tenant_id": "not-a-uuid" }).to_string();
    for (addr, method) in [
        (
            suite.admin.addr,
            "tenantry.admin.v1.TenantAdminService/GetTenant",
        ),
        (
            suite.settings.addr,
            "tenantry.settings.v1.TenantSettingsService/GetSettings",
        ),
        (
            suite.provisioning.addr,
            "tenantry.provisioning.v1.ProvisioningService/DeprovisionTenant",
        ),
    ] {
        let o = grpcurl(&[
            "-plaintext",
            "-H",
            &header,
            "-d",
            &body,
            &addr.to_string(),
            method,
        ])
        .await;
        let err = stderr(&o);
        assert!(!o.status.success(), "{method}: {}", stdout(&o));
        assert!(err.contains("Code: InvalidArgument"), "{method}: {err}");
        // The google.rpc.BadRequest detail is printed as fields, not as raw bytes ("@value").
        let compact: String = err.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            compact.contains("\"@type\":\"type.googleapis.com/google.rpc.BadRequest\""),
            "{method}: {err}"
        );
        assert!(
            !compact.contains("\"@value\""),
            "{method}: undecoded detail: {err}"
        );
        assert!(
            compact.contains("\"fieldViolations\":[{\"field\":\"tenant_id\""),
            "{method}: {err}"
        );
    }
}
