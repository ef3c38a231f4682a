//! The Python client example (`examples/python`) end to end: a virtualenv under the target folder
//! with its pinned `requirements.txt`, stubs generated from `proto/` by `grpc_tools.protoc` as its
//! README says, and `client.py` run against a suite of the three services, logging in as a super
//! admin created by `tenantctl create-super-admin` and as a provisioned tenant's admin.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::fcntl::{Flock, FlockArg};
use tenantry_proto::admin::v1 as admin;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_proto::settings::v1 as settings;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_testing::{Suite, authed, member_token, super_admin_token};

const SUPER_ADMIN_EMAIL: &str = "py-ops@example.com";
const SUPER_ADMIN_PASSWORD: &str = "python client passphrase";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo().join("target"),
    }
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A virtualenv with `requirements.txt` installed, in `<target>/python-client/venv`: created on
/// the first run, reinstalled only when `requirements.txt` changes. Returns its python.
fn venv(example: &Path) -> PathBuf {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "the Python client example needs python3 with venv and pip on the PATH \
             (Debian: apt-get install python3 python3-venv); `python3 --version`: {other:?}"
        ),
    }
    let base = target_dir().join("python-client");
    std::fs::create_dir_all(&base).unwrap();
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join("venv.lock"))
        .unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let dir = base.join("venv");
    let python = dir.join("bin/python");
    if !python.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3 -m venv failed (Debian: apt-get install python3-venv):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let requirements = std::fs::read_to_string(example.join("requirements.txt")).unwrap();
    let stamp = dir.join("requirements.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) {
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg("-r")
            .arg(example.join("requirements.txt")));
        std::fs::write(&stamp, &requirements).unwrap();
    }
    python
}

/// Generates the stubs into a fresh `<target>/python-client/gen<pid>` with the README's
/// command (its paths made absolute).
fn generate(python: &Path, example: &Path) -> PathBuf {
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    let documented = readme
        .lines()
        .find(|l| l.contains("grpc_tools.protoc"))
        .expect("examples/python/README.md shows no grpc_tools.protoc command");
    assert!(
        documented.contains(
            "-m grpc_tools.protoc -I ../../proto --python_out=gen --grpc_python_out=gen \
             ../../proto/tenantry/*/v1/*.proto"
        ),
        "the README's generate command changed; update this test: {documented}"
    );
    let gen_dir = target_dir()
        .join("python-client")
        .join(format!("gen{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&gen_dir);
    std::fs::create_dir_all(&gen_dir).unwrap();
    let proto = repo().join("proto");
    let mut files: Vec<PathBuf> = Vec::new();
    for area in std::fs::read_dir(proto.join("tenantry")).unwrap() {
        let v1 = area.unwrap().path().join("v1");
        for f in std::fs::read_dir(&v1).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "proto") {
                files.push(f);
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    let out_flag = |name: &str| format!("--{name}={}", gen_dir.display());
    run(Command::new(python)
        .current_dir(example)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(out_flag("python_out"))
        .arg(out_flag("grpc_python_out"))
        .args(&files));
    for stub in [
        "tenantry/admin/v1/auth_pb2_grpc.py",
        "tenantry/admin/v1/tenants_pb2.py",
        "tenantry/settings/v1/settings_pb2_grpc.py",
        "tenantry/common/v1/common_pb2.py",
    ] {
        assert!(gen_dir.join(stub).is_file(), "{stub} was not generated");
    }
    gen_dir
}

/// Creates a tenant of `tier` and provisions it; returns (tenant id, its admin's one-time
/// password).
async fn provisioned_tenant(
    s: &Suite,
    slug: &str,
    tier: common::SubscriptionTier,
) -> (String, String) {
    let mut client = TenantAdminServiceClient::new(s.admin.channel().await);
    let tenant = client
        .create_tenant(authed(
            admin::CreateTenantRequest {
                name: format!("{slug} school"),
                slug: slug.into(),
                email: format!("it@{slug}.example"),
                subscription_tier: tier as i32,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let provisioned = client
        .provision_tenant(authed(
            admin::ProvisionTenantRequest {
                tenant_id: tenant.tenant_id.clone(),
                request_id: format!("python-client-{slug}"),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        provisioned.status(),
        common::ProvisioningStatus::Success,
        "{provisioned:?}"
    );
    (
        tenant.tenant_id,
        provisioned.generated_admin_password.unwrap(),
    )
}

struct Client {
    python: PathBuf,
    gen_dir: PathBuf,
    example: PathBuf,
    admin: String,
    settings: String,
}

impl Client {
    /// Runs `client.py` with `env` and `args`; (exit success, stdout, stderr).
    async fn run(&self, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg(self.example.join("client.py"))
            .args(args)
            .env("TENANTRY_PY_GEN", &self.gen_dir)
            .env("TENANTRY_ADMIN_ADDR", &self.admin)
            .env("TENANTRY_SETTINGS_ADDR", &self.settings)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for v in [
            "TENANTRY_SUPER_ADMIN_EMAIL",
            "TENANTRY_SUPER_ADMIN_PASSWORD",
            "TENANTRY_TENANT",
            "TENANTRY_USERNAME",
            "TENANTRY_PASSWORD",
        ] {
            cmd.env_remove(v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
            .await
            .expect("client.py did not finish in 60 s")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_logs_in_lists_tenants_and_checks_features() {
    let example = repo().join("examples/python");
    let (python, gen_dir) = tokio::task::spawn_blocking({
        let example = example.clone();
        move || {
            let python = venv(&example);
            let gen_dir = generate(&python, &example);
            (python, gen_dir)
        }
    })
    .await
    .unwrap();

    let s = Suite::start().await;
    // A super admin account, made the way an operator makes one.
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args([
            "create-super-admin",
            "--email",
            SUPER_ADMIN_EMAIL,
            "--password-stdin",
        ])
        .env("DATABASE_URL", &s.db.app_url)
        .env("TENANTRY_BCRYPT_COST", "4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(create.stdin.take().unwrap(), "{SUPER_ADMIN_PASSWORD}").unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(
        created.status.success(),
        "create-super-admin: {}",
        String::from_utf8_lossy(&created.stderr)
    );

    // Two provisioned tenants; the education one gets API access switched on by its admin.
    let (acme, acme_password) =
        provisioned_tenant(&s, "py-acme", common::SubscriptionTier::Education).await;
    let (free, _) = provisioned_tenant(&s, "py-free", common::SubscriptionTier::Free).await;
    TenantSettingsServiceClient::new(s.settings.channel().await)
        .set_feature(authed(
            settings::SetFeatureRequest {
                tenant_id: String::new(),
                feature: common::Feature::ApiAccess as i32,
                enabled: true,
            },
            &member_token(acme.parse().unwrap(), tenantry_auth::OrgRole::Admin),
        ))
        .await
        .unwrap();

    let client = Client {
        python,
        gen_dir: gen_dir.clone(),
        example,
        admin: s.admin.addr.to_string(),
        settings: s.settings.addr.to_string(),
    };
    let (ok, out, err) = client
        .run(
            &[
                ("TENANTRY_SUPER_ADMIN_PASSWORD", SUPER_ADMIN_PASSWORD),
                ("TENANTRY_PASSWORD", &acme_password),
            ],
            &[
                "--super-admin-email",
                SUPER_ADMIN_EMAIL,
                "--tenant",
                "py-acme",
                "--username",
                "admin_py-acme",
                "--feature",
                "api_access",
                "--feature",
                "FEATURE_SSO",
                "--feature",
                "ai_chat",
            ],
        )
        .await;
    assert!(ok, "client.py failed:\n{out}\n{err}");
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    for expected in [
        "tenants: 2".to_owned(),
        format!("  tenant py-acme TENANT_STATUS_TRIAL SUBSCRIPTION_TIER_EDUCATION {acme}"),
        format!("  tenant py-free TENANT_STATUS_TRIAL SUBSCRIPTION_TIER_FREE {free}"),
        "listed 2 tenant(s)".to_owned(),
        "  FEATURE_API_ACCESS enabled".to_owned(),
        "  FEATURE_SSO disabled".to_owned(),
        "  FEATURE_AI_CHAT enabled".to_owned(),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "no line {expected:?} in:\n{out}\n{err}"
        );
    }
    assert!(
        lines[0].starts_with(&format!(
            "signed in as super admin {SUPER_ADMIN_EMAIL} (user "
        )),
        "{out}"
    );
    assert!(
        out.contains("signed in to py-acme as admin_py-acme, ORG_ROLE_ADMIN (user "),
        "{out}"
    );
    assert!(
        out.contains(
            "features of py-acme (TENANT_STATUS_TRIAL, SUBSCRIPTION_TIER_EDUCATION, version "
        ),
        "{out}"
    );
    // The checks are in the order asked for.
    let order: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("  FEATURE_"))
        .copied()
        .collect();
    assert_eq!(
        order,
        [
            "  FEATURE_API_ACCESS enabled",
            "  FEATURE_SSO disabled",
            "  FEATURE_AI_CHAT enabled"
        ],
        "{out}"
    );

    // A failed call: the status code and message, exit status 1, nothing listed.
    let (ok, out, err) = client
        .run(
            &[("TENANTRY_SUPER_ADMIN_PASSWORD", "not the password")],
            &["--super-admin-email", SUPER_ADMIN_EMAIL],
        )
        .await;
    assert!(!ok, "a wrong password succeeded:\n{out}");
    assert_eq!(
        err.trim(),
        "error: Login failed: UNAUTHENTICATED: invalid credentials",
        "{out}"
    );
    assert!(!out.contains("tenants:"), "{out}");

    // A tenant user alone (signed in by e-mail): no tenant list, and every feature is checked
    // when none is named.
    let (ok, out, err) = client
        .run(
            &[
                ("TENANTRY_TENANT", "py-acme"),
                ("TENANTRY_USERNAME", "it@py-acme.example"),
                ("TENANTRY_PASSWORD", &acme_password),
            ],
            &[],
        )
        .await;
    assert!(ok, "client.py failed:\n{out}\n{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  FEATURE_")).count(),
        15,
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&gen_dir);
    // Stop the services before their database is dropped.
    let Suite {
        db,
        admin,
        settings,
        provisioning,
    } = s;
    admin.shutdown().await;
    settings.shutdown().await;
    provisioning.shutdown().await;
    drop(db);
}
