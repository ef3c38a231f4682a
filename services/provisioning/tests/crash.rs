//! Crash safety of the provisioning PROCESS: the real binary, killed with SIGKILL while 50
//! provisions run concurrently, then restarted on the same port. Every job finishes, every
//! tenant has exactly one admin, and every welcome e-mail reaches a real SMTP server (aiosmtpd)
//! with no more duplicates than kills.
//!
//! tenant-admin and tenant-settings run in-process (the Suite's); the Suite's own provisioning
//! server is stopped so that only the child process works on the jobs.

#![expect(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{SmtpSink, emails, free_port, temp_dir};
use tenantry_proto::admin::v1 as admin_pb;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as pb;
use tenantry_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use tenantry_testing::{Suite, authed, super_admin_token};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

const TENANTS: usize = 50;
const KILLS: usize = 1;
const STEPS: [&str; 5] = [
    "admin_user_created",
    "default_settings_initialized",
    "default_features_configured",
    "organization_verified",
    "welcome_email_sent",
];

/// What the child process needs to know.
struct ChildEnv {
    port: u16,
    database_url: String,
    admin_url: String,
    settings_url: String,
    data_dir: PathBuf,
    smtp_port: u16,
}

/// The provisioning binary as a child process; SIGKILLed when dropped (also on a failed test).
struct ProvisioningProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ProvisioningProcess {
    fn start(env: &ChildEnv, worker_id: &str) -> Self {
        let log = env.data_dir.join(format!("{worker_id}.log"));
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisioning"));
        // Nothing of the test runner's own configuration leaks into the child.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if ["TENANTRY_", "DATABASE_", "PROVISIONING_", "TENANT_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                cmd.env_remove(name);
            }
        }
        cmd.env("DATABASE_URL", &env.database_url)
            .env(
                "TENANTRY_APP_DB_PASSWORD",
                tenantry_testing::TEST_APP_PASSWORD,
            )
            .env("TENANTRY_JWT_SECRET", tenantry_testing::TEST_JWT_SECRET)
            .env("PROVISIONING_ADDR", format!("127.0.0.1:{}", env.port))
            .env("TENANT_ADMIN_URL", &env.admin_url)
            .env("TENANT_SETTINGS_URL", &env.settings_url)
            .env("TENANTRY_DATA_DIR", &env.data_dir)
            .env("TENANTRY_SMTP_HOST", "127.0.0.1")
            .env("TENANTRY_SMTP_PORT", env.smtp_port.to_string())
            .env("TENANTRY_SMTP_TLS", "none")
            // The relay's claim on a message lasts 3 × this + 30 s: a message the kill caught
            // mid-send is retried after 36 s.
            .env("TENANTRY_SMTP_TIMEOUT_SECS", "2")
            .env("TENANTRY_MAIL_RETRY_BASE_MS", "200")
            .env("TENANTRY_MAIL_RETRY_MAX_SECS", "1")
            .env("TENANTRY_WORKER_ID", worker_id)
            .env("TENANTRY_PROVISIONING_LEASE_SECS", "3")
            .env("TENANTRY_PROVISIONING_POLL_MS", "200")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().unwrap();
        let mut me = Self {
            child: Some(child),
            log,
        };
        me.wait_listening(env.port);
        me
    }

    /// Waits (bounded) until the port accepts connections; fails if the child exits first.
    fn wait_listening(&mut self, port: u16) {
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "provisioning exited at start-up ({status}):\n{}",
                    self.log_text()
                );
            }
            assert!(Instant::now() < end, "provisioning did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`, then reaps the process.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            kill(pid, Signal::SIGKILL).unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success(), "killed, not exited: {status}");
        }
    }
}

impl Drop for ProvisioningProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(
                Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
                Signal::SIGKILL,
            );
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Pair {
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Text)]
    b: String,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    let c: Count = diesel::sql_query(sql).get_result(conn).await.unwrap();
    c.n
}

async fn pairs(conn: &mut AsyncPgConnection, sql: &str) -> Vec<(String, String)> {
    let rows: Vec<Pair> = diesel::sql_query(sql).load(conn).await.unwrap();
    rows.into_iter().map(|p| (p.a, p.b)).collect()
}

async fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap()
}

fn provision_request(tenant: &str, request_id: &str) -> pb::ProvisionTenantRequest {
    pb::ProvisionTenantRequest {
        tenant_id: tenant.to_owned(),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

/// Calls ProvisionTenant with the same request id until the job's finished result comes back
/// (the restarted process answers from the job, or creates it if the first call never did).
async fn collect(
    port: u16,
    tenant: String,
    request_id: String,
    deadline: Instant,
) -> pb::ProvisionTenantResponse {
    loop {
        let mut client = ProvisioningServiceClient::new(channel(port).await);
        match client
            .provision_tenant(authed(
                provision_request(&tenant, &request_id),
                &super_admin_token(),
            ))
            .await
        {
            Ok(r) => return r.into_inner(),
            Err(e) if matches!(e.code(), Code::Aborted | Code::Unavailable) => {
                assert!(
                    Instant::now() < deadline,
                    "tenant {tenant} not provisioned in time: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("ProvisionTenant of {tenant} after the restart: {e:?}"),
        }
    }
}

/// `Message-ID: <welcome.<user>@tenantry>` occurrences in the mails.
fn welcome_count(mails: &[String], user: &str) -> usize {
    let header = format!("<welcome.{user}@tenantry>");
    mails.iter().filter(|m| m.contains(&header)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_provisioning_process_resumes_all_fifty_jobs_after_restart() {
    let Suite {
        db,
        admin,
        settings,
        provisioning,
    } = Suite::start().await;
    // Only the child process may work on the jobs (and take over after the kill).
    provisioning.shutdown().await;

    let smtp_port = free_port();
    let sink_dir = temp_dir();
    let _sink = SmtpSink::start(smtp_port, &sink_dir);
    let env = ChildEnv {
        port: free_port(),
        database_url: db.app_url.clone(),
        admin_url: admin.url(),
        settings_url: settings.url(),
        data_dir: temp_dir(),
        smtp_port,
    };

    // 50 tenants, created through tenant-admin.
    let mut tenants = TenantAdminServiceClient::new(admin.channel().await);
    let mut ids = Vec::with_capacity(TENANTS);
    for i in 0..TENANTS {
        let t = tenants
            .create_tenant(authed(
                admin_pb::CreateTenantRequest {
                    request_id: Uuid::new_v4().to_string(),
                    name: format!("Crash School {i}"),
                    slug: format!("crash-{i}"),
                    email: format!("office@crash-{i}.test"),
                    subscription_tier: common_pb::SubscriptionTier::Basic as i32,
                    ..Default::default()
                },
                &super_admin_token(),
            ))
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap();
        assert_eq!(t.status, common_pb::TenantStatus::Trial as i32);
        assert!(!t.is_verified);
        ids.push(t.tenant_id);
    }
    let request_ids: Vec<String> = (0..TENANTS).map(|_| Uuid::new_v4().to_string()).collect();

    let mut first = ProvisioningProcess::start(&env, "crash-first");
    let ch = channel(env.port).await;
    let mut calls = Vec::with_capacity(TENANTS);
    for (tenant, request_id) in ids.iter().zip(&request_ids) {
        let mut client = ProvisioningServiceClient::new(ch.clone());
        let request = authed(provision_request(tenant, request_id), &super_admin_token());
        calls.push(tokio::spawn(async move {
            client
                .provision_tenant(request)
                .await
                .map(|r| r.into_inner())
        }));
    }

    // Kill -9 once about a third of the steps are done and some jobs are still unfinished.
    let mut conn = db.admin_conn().await;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(
            &mut conn,
            "SELECT count(*) AS n FROM provisioning_steps WHERE state = 'done'",
        )
        .await;
        let unfinished = count(
            &mut conn,
            "SELECT count(*) AS n FROM provisioning_jobs WHERE status IN ('pending', 'running')",
        )
        .await;
        if done >= 75 && unfinished > 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no moment with done steps and unfinished jobs (done {done}, unfinished {unfinished})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill9();

    // What the crash left: some jobs unfinished (they must be resumed), not all finished.
    let unfinished_at_kill: BTreeMap<String, i32> = pairs(
        &mut conn,
        "SELECT id::text AS a, attempts::text AS b FROM provisioning_jobs \
         WHERE status IN ('pending', 'running')",
    )
    .await
    .into_iter()
    .map(|(id, n)| (id, n.parse().unwrap()))
    .collect();
    let finished_at_kill = count(
        &mut conn,
        "SELECT count(*) AS n FROM provisioning_jobs WHERE status NOT IN ('pending', 'running')",
    )
    .await;
    assert!(!unfinished_at_kill.is_empty());
    assert!(usize::try_from(finished_at_kill).unwrap() < TENANTS);

    // The in-flight RPCs fail with a transport error; those that finished before are successes.
    let mut failed = 0;
    for call in calls {
        match tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("an RPC hung after the kill")
            .unwrap()
        {
            Ok(r) => assert_eq!(
                r.status,
                common_pb::ProvisioningStatus::Success as i32,
                "{r:?}"
            ),
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled
                    ),
                    "{e:?}"
                );
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the kill interrupted no RPC");
    eprintln!(
        "at the kill: {} jobs unfinished, {finished_at_kill} finished; {failed} RPCs failed",
        unfinished_at_kill.len()
    );

    // Restart on the same port; the same request ids collect the results.
    let _second = ProvisioningProcess::start(&env, "crash-second");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut again = Vec::with_capacity(TENANTS);
    for (tenant, request_id) in ids.iter().zip(&request_ids) {
        again.push(tokio::spawn(collect(
            env.port,
            tenant.clone(),
            request_id.clone(),
            deadline,
        )));
    }
    let mut admin_of: BTreeMap<String, String> = BTreeMap::new();
    for (tenant, call) in ids.iter().zip(again) {
        let r = call.await.unwrap();
        assert_eq!(&r.tenant_id, tenant);
        assert_eq!(
            r.status,
            common_pb::ProvisioningStatus::Success as i32,
            "{r:?}"
        );
        assert_eq!(r.steps_completed, STEPS, "{r:?}");
        assert!(r.errors.is_empty(), "{r:?}");
        admin_of.insert(tenant.clone(), r.admin_user_id);
    }

    // 50 of 50: one successful job per tenant, the interrupted ones resumed by the new process.
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM provisioning_jobs WHERE status = 'success'"
        )
        .await,
        i64::try_from(TENANTS).unwrap()
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM provisioning_jobs").await,
        i64::try_from(TENANTS).unwrap()
    );
    let not_done = pairs(
        &mut conn,
        "SELECT s.job_id::text AS a, s.name || ' ' || s.state || ' ' || s.attempts::text \
             || ' ' || coalesce(s.error, '') || ' job ' || j.status AS b \
         FROM provisioning_steps s JOIN provisioning_jobs j ON j.id = s.job_id \
         WHERE s.state <> 'done'",
    )
    .await;
    assert!(not_done.is_empty(), "steps not done: {not_done:?}");
    let attempts: BTreeMap<String, String> = pairs(
        &mut conn,
        "SELECT id::text AS a, attempts::text AS b FROM provisioning_jobs",
    )
    .await
    .into_iter()
    .collect();
    // A claim counts an attempt: every job the kill interrupted was taken over.
    for (job, before) in &unfinished_at_kill {
        let n: i32 = attempts[job].parse().unwrap();
        assert!(
            n > *before,
            "job {job} was not resumed by a claim ({before} attempts at the kill, {n} now)"
        );
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM organizations WHERE is_verified \
             AND status IN ('trial', 'active')"
        )
        .await,
        i64::try_from(TENANTS).unwrap()
    );

    // No tenant without an admin, no duplicate admins; the admin is the one the job reports.
    let admins: BTreeMap<String, String> = pairs(
        &mut conn,
        "SELECT o.id::text AS a, string_agg(u.id::text, ',') AS b FROM organizations o \
         LEFT JOIN users u ON u.organization_id = o.id AND u.org_role = 'admin' \
         GROUP BY o.id",
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(admins.len(), TENANTS);
    for (tenant, users) in &admins {
        assert!(!users.is_empty(), "tenant {tenant} has no admin");
        assert!(!users.contains(','), "tenant {tenant} has admins {users}");
        assert_eq!(&admin_of[tenant], users);
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM users").await,
        i64::try_from(TENANTS).unwrap()
    );

    // Every welcome e-mail delivered to the SMTP server; duplicates at most one per kill.
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let sent = count(
            &mut conn,
            "SELECT count(*) AS n FROM email_outbox WHERE kind = 'welcome' AND status = 'sent'",
        )
        .await;
        if usize::try_from(sent).unwrap() == TENANTS && emails(&sink_dir).len() >= TENANTS {
            break;
        }
        assert!(
            Instant::now() < end,
            "{sent} welcome e-mails sent, {} delivered",
            emails(&sink_dir).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A straggler duplicate of the killed relay would have arrived by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM email_outbox").await,
        i64::try_from(TENANTS).unwrap()
    );
    let mails = emails(&sink_dir);
    let mut duplicates = 0;
    for (i, tenant) in ids.iter().enumerate() {
        let user = &admin_of[tenant];
        let n = welcome_count(&mails, user);
        assert!(n >= 1, "no welcome e-mail for the admin of crash-{i}");
        let to = format!("office@crash-{i}.test");
        assert!(
            mails
                .iter()
                .filter(|m| m.contains(&format!("<welcome.{user}@tenantry>")))
                .all(|m| m.contains(&to)),
            "the welcome e-mail of crash-{i} went elsewhere"
        );
        duplicates += n - 1;
    }
    assert!(
        duplicates <= KILLS,
        "{duplicates} duplicate e-mails after {KILLS} kill(s)"
    );
    assert_eq!(mails.len(), TENANTS + duplicates, "unexpected e-mails");
    eprintln!(
        "{} e-mails delivered, {duplicates} duplicate(s)",
        mails.len()
    );
    for mail in &mails {
        assert!(mail.contains("set-password?token="), "{mail}");
    }
}
