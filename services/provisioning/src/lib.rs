//! provisioning: the workflow that turns a created tenant into a working one, and the reverse
//! with a backup. Default port 50053.
//!
//! - [`api`]: the gRPC handlers (ProvisionTenant, jobs, DeprovisionTenant, backups, restore).
//! - `worker`: runs provisioning jobs as durable sagas, claimed with a lease
//!   (`FOR UPDATE SKIP LOCKED`), so a killed process's jobs are resumed by the next one.
//! - `mail`: the outbox relay that sends the welcome e-mails over SMTP, or writes them as
//!   `.eml` files when no SMTP host is configured.
//! - `archive`: the backup folder format (JSON lines per table + `manifest.json`).
//!
//! Variables (besides the shared ones of `tenantry_runtime::config`):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PROVISIONING_ADDR` | `0.0.0.0:50053` | where to listen |
//! | `TENANT_ADMIN_URL` | `http://127.0.0.1:50051` | tenant-admin |
//! | `TENANT_SETTINGS_URL` | `http://127.0.0.1:50052` | tenant-settings |
//! | `TENANTRY_DATA_DIR` | `.tenantry` | base of the two folders below |
//! | `TENANTRY_MAIL_DIR` | `<data dir>/mail` | `.eml` files, when no SMTP host is set |
//! | `TENANTRY_BACKUP_DIR` | `<data dir>/backups` | backup archives |
//! | `TENANTRY_SMTP_HOST` | unset | SMTP server; unset writes `.eml` files instead |
//! | `TENANTRY_SMTP_PORT` | 25 / 587 / 465 by TLS mode | SMTP port |
//! | `TENANTRY_SMTP_TLS` | `starttls` | `none`, `starttls` or `tls` |
//! | `TENANTRY_SMTP_USERNAME` / `TENANTRY_SMTP_PASSWORD` | unset | SMTP credentials |
//! | `TENANTRY_MAIL_FROM` | `Tenantry <no-reply@tenantry.localhost>` | sender |
//! | `TENANTRY_PUBLIC_URL` | `http://localhost:8080` | base of the set-password link |
//! | `TENANTRY_MAIL_RETRY_BASE_MS` | 2000 | first retry delay of a failed send (doubles) |
//! | `TENANTRY_MAIL_RETRY_MAX_SECS` | 300 | longest retry delay |
//! | `TENANTRY_WORKER_ID` | host-pid-random | lease owner name of this process |
//! | `TENANTRY_PROVISIONING_LEASE_SECS` | 30 | job lease; renewed every third of it |
//! | `TENANTRY_PROVISIONING_POLL_MS` | 1000 | how often idle workers look for jobs |
//! | `TENANTRY_PROVISIONING_WAIT_SECS` | 60 | how long ProvisionTenant waits for its job |
//! | `TENANTRY_PROVISIONING_STEP_TIMEOUT_SECS` | 15 | deadline of each inter-service call |
//! | `TENANTRY_PROVISIONING_STEP_ATTEMPTS` | 4 | attempts of a step on UNAVAILABLE and the like |
//! | `TENANTRY_PROVISIONING_MAX_JOBS` | 32 | jobs run at once by this process |

pub mod api;
mod archive;
mod mail;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tenantry_auth::{AuthLayer, ServiceTokenInterceptor, Signer, Verifier};
use tenantry_proto::provisioning::v1 as pb;
use tenantry_runtime::{CommonConfig, ServeOptions, config};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

/// The gRPC services this binary serves.
pub const SERVICES: [&str; 1] = ["tenantry.provisioning.v1.ProvisioningService"];

/// provisioning's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen_addr: SocketAddr,
    /// tenant-admin's URL.
    pub admin_url: String,
    /// tenant-settings' URL.
    pub settings_url: String,
    /// The shared settings.
    pub common: CommonConfig,
}

impl Config {
    /// Reads the configuration from the environment.
    ///
    /// # Errors
    ///
    /// A missing or malformed variable.
    pub fn from_env() -> Result<Self, config::ConfigError> {
        Ok(Self {
            listen_addr: config::parsed("PROVISIONING_ADDR", ([0, 0, 0, 0], 50053).into())?,
            admin_url: config::var("TENANT_ADMIN_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50051".into()),
            settings_url: config::var("TENANT_SETTINGS_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50052".into()),
            common: CommonConfig::from_env()?,
        })
    }
}

/// How TLS is used towards the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay or a test server).
    None,
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// User name, if the server wants authentication.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<SecretString>,
    /// Timeout of one SMTP conversation.
    pub timeout: Duration,
}

/// The workflow settings: e-mail, backups, the job worker.
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    /// Where `.eml` files go when `smtp` is unset.
    pub mail_dir: PathBuf,
    /// Where backup archives go.
    pub backup_dir: PathBuf,
    /// SMTP server; `None` writes `.eml` files to `mail_dir`.
    pub smtp: Option<SmtpConfig>,
    /// Sender address (`Name <addr>` or `addr`).
    pub mail_from: String,
    /// Base URL of the set-password link (`<public_url>/set-password?token=...`).
    pub public_url: String,
    /// First retry delay of a failed send; doubles per attempt.
    pub mail_retry_base: Duration,
    /// Longest retry delay of a failed send.
    pub mail_retry_max: Duration,
    /// This process's lease owner name.
    pub worker_id: String,
    /// Job lease length.
    pub lease: Duration,
    /// How often idle workers (job and mail) look for work.
    pub poll_interval: Duration,
    /// How long ProvisionTenant waits for its job to finish.
    pub wait_timeout: Duration,
    /// Deadline of each inter-service call.
    pub step_timeout: Duration,
    /// Attempts of a step on retryable errors.
    pub step_attempts: u32,
    /// Jobs run at once by this process.
    pub max_jobs: usize,
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "provisioning".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl WorkflowConfig {
    /// Defaults with both folders under `data_dir` (no SMTP, `.eml` files).
    #[must_use]
    pub fn in_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            mail_dir: data_dir.join("mail"),
            backup_dir: data_dir.join("backups"),
            smtp: None,
            mail_from: "Tenantry <no-reply@tenantry.localhost>".into(),
            public_url: "http://localhost:8080".into(),
            mail_retry_base: Duration::from_millis(2000),
            mail_retry_max: Duration::from_secs(300),
            worker_id: default_worker_id(),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(1000),
            wait_timeout: Duration::from_secs(60),
            step_timeout: Duration::from_secs(15),
            step_attempts: 4,
            max_jobs: 32,
        }
    }

    /// Reads the workflow variables (see the crate documentation).
    ///
    /// # Errors
    ///
    /// A malformed variable.
    pub fn from_env() -> Result<Self, config::ConfigError> {
        Self::from_env_or(PathBuf::from(".tenantry"))
    }

    /// Like [`WorkflowConfig::from_env`], with another data folder when `TENANTRY_DATA_DIR` is
    /// unset.
    ///
    /// # Errors
    ///
    /// A malformed variable.
    pub fn from_env_or(default_data_dir: PathBuf) -> Result<Self, config::ConfigError> {
        let data_dir = config::var("TENANTRY_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or(default_data_dir);
        let mut c = Self::in_data_dir(&data_dir);
        if let Some(d) = config::var("TENANTRY_MAIL_DIR") {
            c.mail_dir = d.into();
        }
        if let Some(d) = config::var("TENANTRY_BACKUP_DIR") {
            c.backup_dir = d.into();
        }
        if let Some(host) = config::var("TENANTRY_SMTP_HOST") {
            let tls = match config::var("TENANTRY_SMTP_TLS")
                .unwrap_or_else(|| "starttls".into())
                .to_ascii_lowercase()
                .as_str()
            {
                "none" | "off" | "plain" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" | "smtps" => SmtpTls::Tls,
                other => {
                    return Err(config::ConfigError::Invalid {
                        name: "TENANTRY_SMTP_TLS",
                        detail: format!("{other:?} is not none, starttls or tls"),
                    });
                }
            };
            let default_port = match tls {
                SmtpTls::None => 25,
                SmtpTls::StartTls => 587,
                SmtpTls::Tls => 465,
            };
            c.smtp = Some(SmtpConfig {
                host,
                port: config::parsed("TENANTRY_SMTP_PORT", default_port)?,
                tls,
                username: config::var("TENANTRY_SMTP_USERNAME"),
                password: config::var("TENANTRY_SMTP_PASSWORD").map(SecretString::from),
                timeout: Duration::from_secs(config::parsed("TENANTRY_SMTP_TIMEOUT_SECS", 10)?),
            });
        }
        if let Some(v) = config::var("TENANTRY_MAIL_FROM") {
            c.mail_from = v;
        }
        if let Some(v) = config::var("TENANTRY_PUBLIC_URL") {
            c.public_url = v;
        }
        c.mail_retry_base =
            Duration::from_millis(config::parsed("TENANTRY_MAIL_RETRY_BASE_MS", 2000)?);
        c.mail_retry_max =
            Duration::from_secs(config::parsed("TENANTRY_MAIL_RETRY_MAX_SECS", 300)?);
        if let Some(v) = config::var("TENANTRY_WORKER_ID") {
            c.worker_id = v;
        }
        c.lease = Duration::from_secs(config::parsed("TENANTRY_PROVISIONING_LEASE_SECS", 30)?);
        c.poll_interval =
            Duration::from_millis(config::parsed("TENANTRY_PROVISIONING_POLL_MS", 1000)?);
        c.wait_timeout =
            Duration::from_secs(config::parsed("TENANTRY_PROVISIONING_WAIT_SECS", 60)?);
        c.step_timeout = Duration::from_secs(config::parsed(
            "TENANTRY_PROVISIONING_STEP_TIMEOUT_SECS",
            15,
        )?);
        c.step_attempts = config::parsed("TENANTRY_PROVISIONING_STEP_ATTEMPTS", 4)?;
        c.max_jobs = config::parsed("TENANTRY_PROVISIONING_MAX_JOBS", 32)?;
        Ok(c)
    }
}

/// Binds the configured address and serves until Ctrl-C or SIGTERM, with the workflow
/// settings read from the environment.
///
/// # Errors
///
/// Start-up failures (bind, migrations, keys, variables) and transport errors.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let workflow = WorkflowConfig::from_env()?;
    let listener = TcpListener::bind(config.listen_addr).await?;
    serve_with(
        config,
        workflow,
        listener,
        tenantry_runtime::shutdown_signal(),
    )
    .await
}

/// Serves on an already-bound listener until `shutdown` resolves, with the workflow settings
/// read from the environment. Embedded servers (tests) that do not set `TENANTRY_DATA_DIR`
/// keep their folders under the system temp folder (`<tmp>/tenantry`), never in the working
/// directory; [`run`] (the binary) uses `.tenantry`.
///
/// # Errors
///
/// Start-up failures (migrations, keys, variables) and transport errors.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let workflow = WorkflowConfig::from_env_or(std::env::temp_dir().join("tenantry"))?;
    serve_with(config, workflow, listener, shutdown).await
}

/// Serves on an already-bound listener until `shutdown` resolves, and runs the job worker and
/// the mail relay alongside; both stop when the server stops.
///
/// # Errors
///
/// Start-up failures (migrations, keys) and transport errors.
pub async fn serve_with(
    config: Config,
    workflow: WorkflowConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(admin) = &config.common.database_admin_url {
        tenantry_db::migrate(
            admin.expose_secret(),
            config.common.app_db_password.expose_secret(),
        )
        .await?;
    }
    let mut pool_config = tenantry_db::PoolConfig::new(config.common.database_url.expose_secret());
    pool_config.max_size = config.common.pool_size;
    let pool = tenantry_db::connect(&pool_config).await?;
    let signer = Signer::new(&config.common.auth)?;
    let tokens = ServiceTokenInterceptor::new(signer, "provisioning");
    let step_timeout = workflow.step_timeout;
    let channel = |url: &str| -> anyhow::Result<api::ServiceChannel> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(step_timeout)
            .connect_lazy();
        Ok(InterceptedService::new(channel, tokens.clone()))
    };
    let workflow = Arc::new(workflow);
    let state = api::State {
        pool,
        admin: channel(&config.admin_url)?,
        settings: channel(&config.settings_url)?,
        workflow: workflow.clone(),
        jobs: Arc::new(worker::Hub::default()),
        mail_wake: Arc::new(tokio::sync::Notify::new()),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_task = tokio::spawn(worker::run(state.clone(), stop_rx.clone()));
    let mail_task = tokio::spawn(mail::run(state.clone(), stop_rx));

    let auth = AuthLayer::new(
        Verifier::new(&config.common.auth)?,
        config.common.self_serve_signup,
    );
    let mut routes = RoutesBuilder::default();
    routes.add_service(
        pb::provisioning_service_server::ProvisioningServiceServer::new(api::ProvisioningApi::new(
            state,
        )),
    );
    let options = ServeOptions {
        name: "provisioning",
        services: SERVICES.to_vec(),
        auth,
        cors_origins: config.common.cors_origins.clone(),
        shutdown_grace: config.common.shutdown_grace,
    };
    let served = tenantry_runtime::serve(listener, routes, options, shutdown).await;
    let _ = stop_tx.send(true);
    // The worker and the relay stop at their next await point; jobs they held are resumed by
    // the next process once their lease expires.
    worker_task.abort();
    mail_task.abort();
    let _ = worker_task.await;
    let _ = mail_task.await;
    served?;
    Ok(())
}
