//! `tenantctl`, the Tenantry operator CLI.
//!
//! - `tenantctl up`: the whole suite on this machine. Without `DATABASE_URL` it starts a private
//!   Postgres cluster in the data folder (`.tenantry/` by default), migrates it, starts the three
//!   services, prints a super-admin token and commands to try, and stops everything on Ctrl-C.
//!   It also serves the admin console (building `web/console` with npm when needed) and creates
//!   a bootstrap super admin to sign in to it.
//! - `tenantctl migrate`: bootstraps the roles and runs pending migrations (`DATABASE_ADMIN_URL`).
//! - `tenantctl token`: mints a token with the configured key.
//! - `tenantctl create-super-admin`: creates a platform admin account (login with an empty
//!   tenant slug).
//! - `tenantctl serve <service>`: runs one service in this process (what `up` starts).
//! - `tenantctl health <addr>`: exits 0 when the service at `addr` reports SERVING.

mod console;
mod super_admin;
mod up;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use tenantry_auth::{OrgRole, PlatformRole, Signer};

#[derive(Parser)]
#[command(name = "tenantctl", version, about = "Operate a Tenantry suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts Postgres (unless DATABASE_URL is set) and the three services; Ctrl-C stops all.
    Up(up::UpArgs),
    /// Creates the roles and runs pending migrations on DATABASE_ADMIN_URL.
    Migrate {
        /// Superuser URL of the database to migrate.
        #[arg(long, env = "DATABASE_ADMIN_URL")]
        database_admin_url: String,
        /// Password to give the `tenantry_app` role.
        #[arg(long, env = "TENANTRY_APP_DB_PASSWORD", default_value = "")]
        app_password: String,
    },
    /// Mints a token signed with the configured key (TENANTRY_JWT_SECRET, or the secret that
    /// `tenantctl up` keeps in its data folder).
    Token {
        /// Platform role.
        #[arg(long, value_enum, default_value_t = RoleArg::SuperAdmin)]
        role: RoleArg,
        /// Tenant id (`org` claim) for member tokens.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// Role inside the tenant.
        #[arg(long, value_enum)]
        org_role: Option<OrgRoleArg>,
        /// Subject (`sub`).
        #[arg(long, default_value = "operator")]
        sub: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Data folder of `tenantctl up` (for its generated secret).
        #[arg(long, env = "TENANTRY_DATA_DIR", default_value = ".tenantry")]
        data_dir: PathBuf,
    },
    /// Creates a platform (super) admin account, who logs in with an empty tenant slug. Uses
    /// DATABASE_URL, else DATABASE_ADMIN_URL, else the private Postgres of `tenantctl up`.
    CreateSuperAdmin(super_admin::CreateSuperAdminArgs),
    /// Checks a service's gRPC health (exit code 0 when SERVING), for container health checks.
    Health {
        /// Address, e.g. `127.0.0.1:50051`.
        #[arg(default_value = "127.0.0.1:50051")]
        addr: String,
        /// A fully-qualified service name; empty for the whole server.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Runs one service in this process, configured from the environment.
    Serve {
        /// Which service.
        #[arg(value_enum)]
        service: ServiceArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    SuperAdmin,
    Service,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrgRoleArg {
    Admin,
    Manager,
    Teacher,
    Member,
}

/// The three services.
#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub(crate) enum ServiceArg {
    TenantAdmin,
    TenantSettings,
    Provisioning,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A service runs on the runtime its own binary would build (TENANTRY_WORKER_THREADS).
    let runtime = if matches!(cli.command, Command::Serve { .. }) {
        tenantry_runtime::rt::from_env()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Migrate { database_admin_url, app_password } => {
                tenantry_runtime::telemetry::init();
                let applied = tenantry_db::migrate(&database_admin_url, &app_password).await?;
                println!("applied {} migration(s)", applied.len());
                Ok(())
            }
            Command::Token { role, tenant, org_role, sub, ttl, data_dir } => {
                let mut auth = match tenantry_runtime::config::auth_from_env() {
                    Ok(a) => a,
                    Err(_) => {
                        let secret = up::read_secret(&data_dir).with_context(|| {
                            "no TENANTRY_JWT_SECRET and no secret from `tenantctl up` in the data folder"
                        })?;
                        tenantry_auth::AuthConfig::hs256(secret.expose_secret())
                    }
                };
                auth.public_keys.clear();
                let role = match role {
                    RoleArg::SuperAdmin => Some(PlatformRole::SuperAdmin),
                    RoleArg::Service => Some(PlatformRole::Service),
                    RoleArg::None => None,
                };
                let org = match (tenant, org_role) {
                    (Some(t), r) => Some((t, r.map_or(OrgRole::Member, org_role_of))),
                    (None, Some(_)) => anyhow::bail!("--org-role needs --tenant"),
                    (None, None) => None,
                };
                let token = Signer::new(&auth)?.mint(&sub, role, org, ttl)?;
                println!("{token}");
                Ok(())
            }
            Command::CreateSuperAdmin(args) => super_admin::run(args).await,
            Command::Health { addr, service } => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .timeout(std::time::Duration::from_secs(2))
                    .connect()
                    .await?;
                let status = tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest { service })
                    .await?
                    .into_inner()
                    .status();
                println!("{}", status.as_str_name());
                if status != tonic_health::pb::health_check_response::ServingStatus::Serving {
                    anyhow::bail!("not serving");
                }
                Ok(())
            }
            Command::Serve { service } => {
                tenantry_runtime::telemetry::init();
                match service {
                    ServiceArg::TenantAdmin => {
                        tenant_admin::run(tenant_admin::Config::from_env()?).await
                    }
                    ServiceArg::TenantSettings => {
                        tenant_settings::run(tenant_settings::Config::from_env()?).await
                    }
                    ServiceArg::Provisioning => {
                        provisioning::run(provisioning::Config::from_env()?).await
                    }
                }
            }
        }
    })
}

fn org_role_of(r: OrgRoleArg) -> OrgRole {
    match r {
        OrgRoleArg::Admin => OrgRole::Admin,
        OrgRoleArg::Manager => OrgRole::Manager,
        OrgRoleArg::Teacher => OrgRole::Teacher,
        OrgRoleArg::Member => OrgRole::Member,
    }
}
