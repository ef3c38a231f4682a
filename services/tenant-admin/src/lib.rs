//! tenant-admin: tenants (super admins), organizations, members, invitations, billing, usage,
//! audit and login. Default port 50051.
//!
//! Variables (besides the shared ones of `tenantry_runtime::config`):
//! `TENANT_ADMIN_ADDR` (default `0.0.0.0:50051`), `TENANT_SETTINGS_URL`
//! (default `http://127.0.0.1:50052`), `PROVISIONING_URL` (default `http://127.0.0.1:50053`),
//! and the [`Tuning`] variables `TENANTRY_BCRYPT_COST` (default 12, 4–31) and
//! `TENANT_TRIAL_SWEEP_SECS` (default 60, at least 1: how often tenants whose trial ended are
//! suspended). The admin console's variables (`TENANTRY_CONSOLE_DIR`...) are read by
//! [`serve`]: see [`console`].

mod api;
mod audit_trail;
pub mod console;
mod convert;
mod passwords;
mod tenant_access;
mod totals;
mod trial;
mod validate;

pub use console::ConsoleConfig;
pub use trial::{TRIAL_EXPIRED_ACTION, sweep_expired_trials};

use std::future::Future;
use std::net::SocketAddr;

use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

use tenantry_auth::{AuthLayer, ServiceTokenInterceptor, Signer, Verifier};
use tenantry_proto::admin::v1 as pb;
use tenantry_runtime::{CommonConfig, ServeOptions, config};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

/// The gRPC services this binary serves.
pub const SERVICES: [&str; 7] = [
    "tenantry.admin.v1.TenantAdminService",
    "tenantry.admin.v1.OrganizationService",
    "tenantry.admin.v1.BillingService",
    "tenantry.admin.v1.UsageService",
    "tenantry.admin.v1.AuditService",
    "tenantry.admin.v1.AuthService",
    "tenantry.admin.v1.TenantInternalService",
];

/// tenant-admin's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen_addr: SocketAddr,
    /// tenant-settings' URL.
    pub settings_url: String,
    /// provisioning's URL.
    pub provisioning_url: String,
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
            listen_addr: config::parsed("TENANT_ADMIN_ADDR", ([0, 0, 0, 0], 50051).into())?,
            settings_url: config::var("TENANT_SETTINGS_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50052".into()),
            provisioning_url: config::var("PROVISIONING_URL")
                .unwrap_or_else(|| "http://127.0.0.1:50053".into()),
            common: CommonConfig::from_env()?,
        })
    }
}

/// How many bcrypt hashes run at once: one core fewer than the machine has (at least one), so
/// a burst of logins or provisions never takes every core from the calls that read (a hash at
/// cost 12 holds a core for about 240 ms).
#[must_use]
pub fn hash_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_sub(1)
        .max(1)
}

/// Settings read from the environment besides [`Config`] (kept apart so that code building a
/// `Config` literal keeps compiling; fold them into `Config` when convenient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// bcrypt cost of new password hashes (`TENANTRY_BCRYPT_COST`, default 12). Tests may use 4.
    pub bcrypt_cost: u32,
    /// Period of the trial-expiry sweep (`TENANT_TRIAL_SWEEP_SECS`, default 60 s).
    pub trial_sweep_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            bcrypt_cost: 12,
            trial_sweep_interval: Duration::from_secs(60),
        }
    }
}

impl Tuning {
    /// Reads `TENANTRY_BCRYPT_COST` and `TENANT_TRIAL_SWEEP_SECS`.
    ///
    /// # Errors
    ///
    /// A malformed or out-of-range value.
    pub fn from_env() -> Result<Self, config::ConfigError> {
        let bcrypt_cost: u32 = config::parsed("TENANTRY_BCRYPT_COST", 12)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(config::ConfigError::Invalid {
                name: "TENANTRY_BCRYPT_COST",
                detail: "must be between 4 and 31".into(),
            });
        }
        let secs: u64 = config::parsed("TENANT_TRIAL_SWEEP_SECS", 60)?;
        if secs == 0 {
            return Err(config::ConfigError::Invalid {
                name: "TENANT_TRIAL_SWEEP_SECS",
                detail: "must be at least 1".into(),
            });
        }
        Ok(Self {
            bcrypt_cost,
            trial_sweep_interval: Duration::from_secs(secs),
        })
    }
}

/// Binds the configured address and serves until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// Start-up failures (bind, migrations, keys) and transport errors.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen_addr).await?;
    serve(config, listener, tenantry_runtime::shutdown_signal()).await
}

/// Serves on an already-bound listener until `shutdown` resolves, with [`Tuning::from_env`]
/// and [`ConsoleConfig::from_env`].
///
/// # Errors
///
/// Start-up failures (configuration, migrations, keys) and transport errors.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let console = ConsoleConfig::from_env(&config.settings_url, &config.provisioning_url)?;
    serve_with_console(config, Tuning::from_env()?, console, listener, shutdown).await
}

/// Serves on an already-bound listener until `shutdown` resolves, without the console (every
/// `GET` is 404). Also runs the trial-expiry sweep every [`Tuning::trial_sweep_interval`],
/// stopped with the server.
///
/// # Errors
///
/// Start-up failures (migrations, keys) and transport errors.
pub async fn serve_with(
    config: Config,
    tuning: Tuning,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with_console(config, tuning, ConsoleConfig::default(), listener, shutdown).await
}

/// Like [`serve_with`], and answers `GET` and `HEAD` with the admin console of `console`.
///
/// # Errors
///
/// Start-up failures (migrations, keys, console directory) and transport errors.
pub async fn serve_with_console(
    config: Config,
    tuning: Tuning,
    console: ConsoleConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = console::handler(&console)?;
    if let Some(dir) = &console.dir {
        tracing::info!(console.dir = %dir.display(), "serving the admin console");
    }
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
    // Super admins' reads (GetTenant, ListTenants) in one statement each, on a pool of the same
    // size whose connections are opened on demand.
    let platform_config = pool_config.clone();
    let platform = tenantry_db::connect_platform(&platform_config).await?;
    let signer = Signer::new(&config.common.auth)?;
    let tokens = ServiceTokenInterceptor::new(signer.clone(), "tenant-admin");
    let lazy = |url: &str| -> anyhow::Result<api::ServiceChannel> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        Ok(InterceptedService::new(channel, tokens.clone()))
    };
    let state = api::State {
        pool,
        platform,
        signer,
        settings: lazy(&config.settings_url)?,
        provisioning: lazy(&config.provisioning_url)?,
        passwords: Arc::new(passwords::Passwords::new(
            tuning.bcrypt_cost,
            hash_concurrency(),
        )?),
        config: Arc::new(config.clone()),
        totals: Arc::default(),
    };
    let sweeper = tokio::spawn(trial::run(state.pool.clone(), tuning.trial_sweep_interval));
    let snapshots = tokio::spawn(api::orgs::snapshots::run(
        state.pool.clone(),
        api::orgs::snapshots::INTERVAL,
    ));
    let auth = AuthLayer::new(
        Verifier::new(&config.common.auth)?,
        config.common.self_serve_signup,
    );

    let mut routes = RoutesBuilder::default();
    routes
        .add_service(
            pb::tenant_admin_service_server::TenantAdminServiceServer::new(api::TenantsApi::new(
                state.clone(),
            )),
        )
        .add_service(
            pb::organization_service_server::OrganizationServiceServer::new(
                api::OrganizationsApi::new(state.clone()),
            ),
        )
        .add_service(pb::billing_service_server::BillingServiceServer::new(
            api::BillingApi::new(state.clone()),
        ))
        .add_service(pb::usage_service_server::UsageServiceServer::new(
            api::UsageApi::new(state.clone()),
        ))
        .add_service(pb::audit_service_server::AuditServiceServer::new(
            api::AuditApi::new(state.clone()),
        ))
        .add_service(pb::auth_service_server::AuthServiceServer::new(
            api::AuthApi::new(state.clone()),
        ))
        .add_service(
            pb::tenant_internal_service_server::TenantInternalServiceServer::new(
                api::InternalApi::new(state),
            ),
        );

    let options = ServeOptions {
        name: "tenant-admin",
        services: SERVICES.to_vec(),
        auth,
        cors_origins: config.common.cors_origins.clone(),
        shutdown_grace: config.common.shutdown_grace,
    };
    let served =
        tenantry_runtime::serve_with_http(listener, routes, options, Some(http), shutdown).await;
    sweeper.abort();
    snapshots.abort();
    served?;
    Ok(())
}
