//! tenant-settings: settings, branding, security and compliance, tier-gated features,
//! integrations, limits, and the cached hot path every backend service reads. Default port 50052.
//!
//! Variables (besides the shared ones of `tenantry_runtime::config`):
//! `TENANT_SETTINGS_ADDR` (default `0.0.0.0:50052`) and `TENANTRY_SECRETS_KEY` (required: the
//! base64 of 32 bytes, the AES-256-GCM key of integration secrets at rest; see [`crypto`]).
//!
//! - Features follow the feature × tier matrix (data in `tiers.rs`): an operator override wins,
//!   then an org-admin toggle of a feature the tier offers, then the tier's default. Enabling a
//!   feature the tier does not offer is FAILED_PRECONDITION for org admins (so the brief's own
//!   example, `sso` on an education tenant, now fails); a super admin grants it as an override.
//! - CheckFeatures and WatchTenant are served from an in-process cache that a Postgres
//!   `LISTEN tenantry_tenant_changed` on a dedicated connection (application name
//!   [`LISTENER_APPLICATION_NAME`]) invalidates on every committed change from any replica;
//!   see `cache.rs`. The listener runs for the lifetime of [`serve`].

mod api;
mod cache;
mod convert;
pub mod crypto;
mod tiers;
mod view;

pub use cache::LISTENER_APPLICATION_NAME;
pub use crypto::SecretsKey;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tenantry_auth::{AuthLayer, Verifier};
use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{CommonConfig, ServeOptions, config};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

/// The gRPC services this binary serves.
pub const SERVICES: [&str; 1] = ["tenantry.settings.v1.TenantSettingsService"];

/// tenant-settings's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen_addr: SocketAddr,
    /// The shared settings.
    pub common: CommonConfig,
    /// The key that encrypts integration secrets at rest (`TENANTRY_SECRETS_KEY`).
    pub secrets_key: SecretsKey,
}

impl Config {
    /// Reads the configuration from the environment.
    ///
    /// # Errors
    ///
    /// A missing or malformed variable.
    pub fn from_env() -> Result<Self, config::ConfigError> {
        Ok(Self {
            listen_addr: config::parsed("TENANT_SETTINGS_ADDR", ([0, 0, 0, 0], 50052).into())?,
            common: CommonConfig::from_env()?,
            secrets_key: secrets_key_from_env()?,
        })
    }
}

/// Reads `TENANTRY_SECRETS_KEY` (required).
fn secrets_key_from_env() -> Result<SecretsKey, config::ConfigError> {
    let encoded = secrecy::SecretString::from(config::required("TENANTRY_SECRETS_KEY")?);
    SecretsKey::from_base64(encoded.expose_secret()).map_err(|detail| {
        config::ConfigError::Invalid {
            name: "TENANTRY_SECRETS_KEY",
            detail,
        }
    })
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

    // The cache of the hot path, kept fresh by a listener on its own connection; both stop
    // with the server.
    let cache = Arc::new(cache::Cache::new());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let listener_task = tokio::spawn(cache::run_listener(
        config.common.database_url.expose_secret().to_owned(),
        Arc::clone(&cache),
        stop.clone(),
    ));
    let sealer = Arc::new(crypto::Sealer::new(&config.secrets_key));
    let state = api::State {
        pool,
        cache,
        stop,
        sealer,
    };
    let auth = AuthLayer::new(
        Verifier::new(&config.common.auth)?,
        config.common.self_serve_signup,
    );

    let mut routes = RoutesBuilder::default();
    routes.add_service(
        pb::tenant_settings_service_server::TenantSettingsServiceServer::new(
            api::SettingsApi::new(state),
        ),
    );

    let options = ServeOptions {
        name: "tenant-settings",
        services: SERVICES.to_vec(),
        auth,
        cors_origins: config.common.cors_origins.clone(),
        shutdown_grace: config.common.shutdown_grace,
    };
    let stop_on_shutdown = stop_tx.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = stop_on_shutdown.send(true);
    };
    let served = tenantry_runtime::serve(listener, routes, options, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = listener_task.await;
    served?;
    Ok(())
}
