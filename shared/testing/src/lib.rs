//! Test support for every Tenantry test: a database per test cloned from a migrated template,
//! the services started on `127.0.0.1:0`, and tokens.
//!
//! The Postgres server comes from `TEST_DATABASE_URL` (a superuser URL). When it is unset, the
//! same private-cluster logic as `tenantctl up` starts one in the system temp folder
//! (`tenantry-test-pg/`) and leaves it running for the next test process, so `cargo test` works
//! on a fresh machine with only Postgres installed.

#![expect(
    clippy::unwrap_used,
    reason = "test support: a failed set-up should panic loudly"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use tenantry_auth::{AuthConfig, OrgRole, PlatformRole, Signer};
use tenantry_runtime::CommonConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use uuid::Uuid;

pub mod tools;

/// The HS256 secret of every test token.
pub const TEST_JWT_SECRET: &str = "tenantry-test-secret-0123456789abcdef";
/// The key (base64 of 32 bytes) that encrypts integration secrets in every test tenant-settings.
pub const TEST_SECRETS_KEY: &str = "dGVuYW50cnktdGVzdC1zZWNyZXRzLWtleS0zMmJ5dGU=";
/// The password tests give `tenantry_app`.
pub const TEST_APP_PASSWORD: &str = "tenantry_app_test";
/// Lock key that serializes template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x7465_7374_746d_706c;

/// The superuser URL of the test server's maintenance database.
///
/// # Panics
///
/// When no server is configured and no private cluster can be started.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL")
            && !url.trim().is_empty()
        {
            return url;
        }
        let base = std::env::temp_dir().join("tenantry-test-pg");
        let cluster = tenantry_db::cluster::Cluster::start(&base, false)
            .unwrap_or_else(|e| panic!("no TEST_DATABASE_URL and no private cluster: {e}"));
        cluster.admin_url("postgres")
    })
    .clone()
}

/// A database of its own for one test, cloned from the migrated template; dropped at the end.
#[derive(Debug)]
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Superuser URL (bypasses RLS: for assertions on what was written).
    pub admin_url: String,
    /// URL of the `tenantry_app` role, as the services connect.
    pub app_url: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl TestDb {
    /// Creates the database. Needs a multi-threaded runtime (migrations block in place).
    ///
    /// # Panics
    ///
    /// When Postgres is unreachable or the schema does not migrate.
    pub async fn new() -> Self {
        let server = server_url();
        let template = format!("tenantry_tpl_{}", tenantry_db::SCHEMA_FINGERPRINT);
        let name = format!("tenantry_test_{}", Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&server).await.unwrap();
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .unwrap();
        let exists: Count =
            diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
                .bind::<Text, _>(&template)
                .get_result(&mut conn)
                .await
                .unwrap();
        if exists.n == 0 {
            let building = format!("{template}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
            diesel::sql_query(format!("CREATE DATABASE {building}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let url = tenantry_db::urls::with_database(&server, &building).unwrap();
            tenantry_db::migrate(&url, TEST_APP_PASSWORD).await.unwrap();
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {template}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .unwrap();
        let admin_url = tenantry_db::urls::with_database(&server, &name).unwrap();
        let app_url =
            tenantry_db::urls::with_user(&admin_url, tenantry_db::APP_ROLE, TEST_APP_PASSWORD)
                .unwrap();
        Self {
            name,
            admin_url,
            app_url,
        }
    }

    /// Opens a superuser connection to this database.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn admin_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.admin_url).await.unwrap()
    }

    /// Opens a connection as the services' role.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn app_conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.app_url).await.unwrap()
    }

    /// Counts rows with a superuser query (`SELECT count(*) AS n FROM ...`).
    ///
    /// # Panics
    ///
    /// When the query fails.
    pub async fn count(&self, sql: &str) -> i64 {
        let mut conn = self.admin_conn().await;
        let c: Count = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
        c.n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = AsyncPgConnection::establish(&server).await.ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The auth configuration of every test service.
#[must_use]
pub fn auth_config() -> AuthConfig {
    AuthConfig::hs256(TEST_JWT_SECRET)
}

/// A signer with the test key.
#[must_use]
pub fn signer() -> Signer {
    Signer::new(&auth_config()).unwrap()
}

/// A super-admin token.
#[must_use]
pub fn super_admin_token() -> String {
    signer()
        .mint("test-operator", Some(PlatformRole::SuperAdmin), None, 600)
        .unwrap()
}

/// A `service` token.
#[must_use]
pub fn service_token() -> String {
    signer()
        .mint("test-service", Some(PlatformRole::Service), None, 600)
        .unwrap()
}

/// A member token for `tenant` with `role`.
#[must_use]
pub fn member_token(tenant: Uuid, role: OrgRole) -> String {
    signer()
        .mint(&Uuid::new_v4().to_string(), None, Some((tenant, role)), 600)
        .unwrap()
}

/// A token of a user that belongs to no tenant and has no platform role.
#[must_use]
pub fn roleless_token() -> String {
    signer()
        .mint(&Uuid::new_v4().to_string(), None, None, 600)
        .unwrap()
}

/// Adds `authorization: Bearer <token>` to a request.
///
/// # Panics
///
/// When the token is not valid ASCII metadata.
#[must_use]
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The integration-secrets key of every test tenant-settings ([`TEST_SECRETS_KEY`]).
///
/// # Panics
///
/// Never: the constant is valid.
#[must_use]
pub fn secrets_key() -> tenant_settings::SecretsKey {
    tenant_settings::SecretsKey::from_base64(TEST_SECRETS_KEY).unwrap()
}

/// The shared configuration of a test service on `db`.
#[must_use]
pub fn common_config(db: &TestDb) -> CommonConfig {
    CommonConfig {
        database_url: SecretString::from(db.app_url.clone()),
        database_admin_url: None,
        app_db_password: SecretString::from(TEST_APP_PASSWORD.to_owned()),
        pool_size: 4,
        auth: auth_config(),
        cors_origins: vec!["https://console.example.test".into()],
        self_serve_signup: false,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// A service running on `127.0.0.1:<free port>`; stopped when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts `serve` on a bound listener and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When the port cannot be bound.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow_like::Result> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, serve)
    }

    /// `http://127.0.0.1:port`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected channel.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server and waits for it to finish draining.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The error type service `serve` functions return.
pub mod anyhow_like {
    /// `anyhow::Result<()>` without naming anyhow.
    pub type Result = std::result::Result<(), Box<dyn std::fmt::Display + Send>>;
}

/// The three services of a suite on one test database, wired to each other.
#[derive(Debug)]
pub struct Suite {
    /// The database.
    pub db: TestDb,
    /// tenant-admin.
    pub admin: TestServer,
    /// tenant-settings.
    pub settings: TestServer,
    /// provisioning.
    pub provisioning: TestServer,
}

fn boxed<E: std::fmt::Display + Send + 'static>(r: Result<(), E>) -> anyhow_like::Result {
    r.map_err(|e| Box::new(e) as Box<dyn std::fmt::Display + Send>)
}

impl Suite {
    /// Starts the three services on a fresh database.
    pub async fn start() -> Self {
        init_tracing();
        let db = TestDb::new().await;
        // Bind first so each service knows the others' addresses.
        let l_admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l_settings = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l_prov = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, s, p) = (
            l_admin.local_addr().unwrap(),
            l_settings.local_addr().unwrap(),
            l_prov.local_addr().unwrap(),
        );
        let admin_cfg = tenant_admin::Config {
            listen_addr: a,
            settings_url: format!("http://{s}"),
            provisioning_url: format!("http://{p}"),
            common: common_config(&db),
        };
        let settings_cfg = tenant_settings::Config {
            listen_addr: s,
            common: common_config(&db),
            secrets_key: secrets_key(),
        };
        let prov_cfg = provisioning::Config {
            listen_addr: p,
            admin_url: format!("http://{a}"),
            settings_url: format!("http://{s}"),
            common: common_config(&db),
        };
        // Each suite keeps its e-mails and backups in a folder of its own.
        let workflow = provisioning::WorkflowConfig::in_data_dir(
            std::env::temp_dir().join("tenantry-suites").join(&db.name),
        );
        let admin = TestServer::start_on(l_admin, move |l, stop| async move {
            // bcrypt cost 4 keeps password tests fast; production uses 12.
            let tuning = tenant_admin::Tuning {
                bcrypt_cost: 4,
                ..Default::default()
            };
            boxed(
                tenant_admin::serve_with(admin_cfg, tuning, l, stop)
                    .await
                    .map_err(|e| format!("{e:#}")),
            )
        });
        let settings = TestServer::start_on(l_settings, move |l, stop| async move {
            boxed(
                tenant_settings::serve(settings_cfg, l, stop)
                    .await
                    .map_err(|e| format!("{e:#}")),
            )
        });
        let provisioning = TestServer::start_on(l_prov, move |l, stop| async move {
            boxed(
                provisioning::serve_with(prov_cfg, workflow, l, stop)
                    .await
                    .map_err(|e| format!("{e:#}")),
            )
        });
        Self {
            db,
            admin,
            settings,
            provisioning,
        }
    }
}

impl TestServer {
    /// Like [`TestServer::start`], on an already-bound listener.
    pub fn start_on<F, Fut>(listener: TcpListener, serve: F) -> Self
    where
        F: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow_like::Result> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let fut = serve(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = fut.await {
                panic!("test server failed: {e}");
            }
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// Installs a test tracing subscriber (`RUST_LOG`, default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
