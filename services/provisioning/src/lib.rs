//! provisioning: the workflow that turns a created tenant into a working one, and the reverse
//! with a backup. Default port 50053.
//!
//! Variables (besides the shared ones of `tenantry_runtime::config`):
//! `PROVISIONING_ADDR` (default `0.0.0.0:50053`), `TENANT_ADMIN_URL`
//! (default `http://127.0.0.1:50051`), `TENANT_SETTINGS_URL` (default `http://127.0.0.1:50052`).

mod api;

use std::future::Future;
use std::net::SocketAddr;

use secrecy::ExposeSecret;
use tenantry_auth::{AuthLayer, Verifier};
use tenantry_proto::provisioning::v1 as pb;
use tenantry_runtime::{CommonConfig, ServeOptions, config};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

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

/// Binds the configured address and serves until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// Start-up failures (bind, migrations, keys) and transport errors.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen_addr).await?;
    serve(config, listener, tenantry_runtime::shutdown_signal()).await
}

/// Serves on an already-bound listener until `shutdown` resolves.
///
/// # Errors
///
/// Start-up failures (migrations, keys) and transport errors.
pub async fn serve(
    config: Config,
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
    let state = api::State { pool };
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
    tenantry_runtime::serve(listener, routes, options, shutdown).await?;
    Ok(())
}
