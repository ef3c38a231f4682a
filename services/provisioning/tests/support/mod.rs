//! Shared helpers of the provisioning tests.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a part of the helpers"
)]
#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use tenantry_proto::provisioning::v1 as pb;
use tenantry_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use tenantry_testing::{Suite, TestServer};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

#[allow(unused_imports, reason = "not every test file uses every token")]
pub use tenantry_testing::{
    authed, member_token, roleless_token, service_token, super_admin_token,
};

/// A suite whose provisioning service runs with test folders (and optional changes).
pub struct Env {
    pub suite: Suite,
    pub dir: PathBuf,
    pub workflow: provisioning::WorkflowConfig,
}

impl Env {
    /// The mail folder (`.eml` files).
    pub fn mail_dir(&self) -> PathBuf {
        self.workflow.mail_dir.clone()
    }

    /// A client of provisioning.
    pub async fn client(&self) -> ProvisioningServiceClient<Channel> {
        ProvisioningServiceClient::new(self.suite.provisioning.channel().await)
    }

    /// Starts another provisioning process on the same database (a second replica).
    pub async fn start_replica(
        &self,
        change: impl FnOnce(&mut provisioning::WorkflowConfig),
    ) -> TestServer {
        let mut workflow = self.workflow.clone();
        workflow.worker_id = format!("replica-{}", Uuid::new_v4().simple());
        change(&mut workflow);
        start_provisioning(&self.suite, workflow).await
    }
}

/// A fresh temporary folder.
pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tenantry-prov-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn start_provisioning(suite: &Suite, workflow: provisioning::WorkflowConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = provisioning::Config {
        listen_addr: listener.local_addr().unwrap(),
        admin_url: suite.admin.url(),
        settings_url: suite.settings.url(),
        common: tenantry_testing::common_config(&suite.db),
    };
    TestServer::start_on(listener, move |l, stop| async move {
        provisioning::serve_with(config, workflow, l, stop)
            .await
            .map_err(|e| Box::new(format!("{e:#}")) as Box<dyn std::fmt::Display + Send>)
    })
}

/// Starts the suite, replacing its provisioning service by one with test folders, fast polling
/// and `change` applied.
pub async fn start(change: impl FnOnce(&mut provisioning::WorkflowConfig)) -> Env {
    let mut suite = Suite::start().await;
    let dir = temp_dir();
    let mut workflow = provisioning::WorkflowConfig::in_data_dir(&dir);
    workflow.poll_interval = Duration::from_millis(200);
    workflow.mail_retry_base = Duration::from_millis(200);
    workflow.mail_retry_max = Duration::from_secs(1);
    workflow.lease = Duration::from_secs(3);
    workflow.worker_id = format!("test-{}", Uuid::new_v4().simple());
    change(&mut workflow);
    let ours = start_provisioning(&suite, workflow.clone()).await;
    let theirs = std::mem::replace(&mut suite.provisioning, ours);
    theirs.shutdown().await;
    Env {
        suite,
        dir,
        workflow,
    }
}

/// Inserts a tenant with SQL; returns its id.
pub async fn create_tenant(env: &Env, slug: &str, email: Option<&str>, tier: &str) -> Uuid {
    let mut conn = env.suite.db.admin_conn().await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO organizations (name, slug, email, subscription_tier, status, trial_days) \
         VALUES ($1, $1, $2, $3, 'pending', 14) RETURNING id",
    )
    .bind::<Text, _>(slug)
    .bind::<diesel::sql_types::Nullable<Text>, _>(email)
    .bind::<Text, _>(tier)
    .get_result(&mut conn)
    .await
    .unwrap();
    row.id
}

/// Runs SQL as the superuser.
pub async fn exec(env: &Env, sql: &str) {
    let mut conn = env.suite.db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

/// `SELECT count(*) AS n ...` as the superuser.
pub async fn count(env: &Env, sql: &str) -> i64 {
    env.suite.db.count(sql).await
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Every public table's rows as `row_to_json` text, sorted, by table.
pub async fn dump(env: &Env, only_tenant: Option<Uuid>) -> BTreeMap<String, Vec<String>> {
    let mut conn = env.suite.db.admin_conn().await;
    let tables: Vec<Line> = diesel::sql_query(
        "SELECT c.relname::text AS line FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let name = t.line;
        let filter = match only_tenant {
            None => String::new(),
            Some(id) if name == "organizations" => format!("WHERE t.id = '{id}'"),
            Some(id) => {
                let has: i64 = env
                    .suite
                    .db
                    .count(&format!(
                        "SELECT count(*) AS n FROM information_schema.columns \
                         WHERE table_schema = 'public' AND table_name = '{name}' \
                         AND column_name = 'organization_id'"
                    ))
                    .await;
                if has == 0 {
                    continue;
                }
                format!("WHERE t.organization_id = '{id}'")
            }
        };
        let rows: Vec<Line> = diesel::sql_query(format!(
            "SELECT row_to_json(t)::text AS line FROM \"{name}\" t {filter} ORDER BY 1"
        ))
        .load(&mut conn)
        .await
        .unwrap();
        out.insert(name, rows.into_iter().map(|l| l.line).collect());
    }
    out
}

/// The fields named by a status's `BadRequest` details.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// A provision request with defaults.
pub fn provision_request(tenant: Uuid, request_id: &str) -> pb::ProvisionTenantRequest {
    pb::ProvisionTenantRequest {
        tenant_id: tenant.to_string(),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

/// The `.eml` files of a folder, as text.
pub fn emails(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    out.sort();
    out
}

/// Makes sure `aiosmtpd` is importable (installs it with pip when it is not).
pub fn ensure_aiosmtpd() {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
        .status()
        .unwrap();
    assert!(status.success(), "cannot install aiosmtpd");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running SMTP sink (aiosmtpd) writing each message to `folder`; killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub folder: PathBuf,
}

impl SmtpSink {
    /// Starts the sink on `port` and waits until it accepts connections.
    pub fn start(port: u16, folder: &Path) -> Self {
        ensure_aiosmtpd();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["127.0.0.1", &port.to_string()])
            .arg(folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "the SMTP sink did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            folder: folder.to_owned(),
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Inserts a user with SQL; returns its id.
pub async fn create_user(env: &Env, tenant: Uuid, email: &str, role: &str) -> Uuid {
    let mut conn = env.suite.db.admin_conn().await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let row: Id = diesel::sql_query(
        "INSERT INTO users (organization_id, email, username, org_role, status) \
         VALUES ($1, $2, 'u_' || substr(md5(random()::text), 1, 12), $3, 'active') RETURNING id",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(email)
    .bind::<Text, _>(role)
    .get_result(&mut conn)
    .await
    .unwrap();
    row.id
}
