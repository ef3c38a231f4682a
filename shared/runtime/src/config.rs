//! Configuration read from the environment once, in `main`, and passed down as values.
//!
//! Variables shared by every service (each service adds its own; README lists them all):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | required | Postgres URL of the `tenantry_app` role |
//! | `DATABASE_ADMIN_URL` | unset | superuser URL; when set, the service migrates at start-up |
//! | `TENANTRY_APP_DB_PASSWORD` | empty | password given to `tenantry_app` when migrating |
//! | `DATABASE_POOL_SIZE` | 8 | most pooled connections |
//! | `TENANTRY_JWT_ALGORITHM` | `HS256` | `HS256`, `EdDSA` or `RS256` |
//! | `TENANTRY_JWT_SECRET` | required for HS256 | shared secret, at least 32 bytes |
//! | `TENANTRY_JWT_PUBLIC_KEYS` | required for EdDSA/RS256 | `kid=/path/key.pem,...` |
//! | `TENANTRY_JWT_SIGNING_KEY` | unset | PEM private key file that signs service tokens (EdDSA/RS256) |
//! | `TENANTRY_JWT_SIGNING_KEY_ID` | `default` | its `kid` |
//! | `TENANTRY_JWT_ISSUER` | `tenantry` | required `iss` |
//! | `TENANTRY_JWT_AUDIENCE` | `tenantry` | required `aud` |
//! | `TENANTRY_CORS_ORIGINS` | empty | comma-separated origins allowed to call over grpc-web |
//! | `TENANTRY_SELF_SERVE_SIGNUP` | `false` | lets anyone call `CreateOrganization` |
//! | `TENANTRY_SHUTDOWN_GRACE_SECS` | 10 | how long in-flight calls may drain on shutdown |
//! | `TENANTRY_WORKER_THREADS` | one per core | tokio workers; `1`: a current-thread runtime ([`crate::rt`]) |
//! | `LOG_FORMAT` | `text` | `json` for JSON lines |
//! | `RUST_LOG` | `info` | tracing filter |

use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use tenantry_auth::{Algorithm, AuthConfig};

/// A missing or malformed variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("{name} is invalid: {detail}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        detail: String,
    },
}

/// Reads a variable; empty counts as unset.
#[must_use]
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads a required variable.
///
/// # Errors
///
/// [`ConfigError::Missing`].
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError::Missing(name))
}

/// Reads and parses a variable, with a default.
///
/// # Errors
///
/// [`ConfigError::Invalid`] when it does not parse.
pub fn parsed<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            detail: e.to_string(),
        }),
    }
}

/// Reads a boolean (`true/false/1/0/yes/no/on/off`).
///
/// # Errors
///
/// [`ConfigError::Invalid`].
pub fn flag(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                detail: format!("{v:?} is not a boolean"),
            }),
        },
    }
}

/// Configuration shared by the three services.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// URL of the `tenantry_app` role.
    pub database_url: SecretString,
    /// Superuser URL for migrating at start-up, if set.
    pub database_admin_url: Option<SecretString>,
    /// Password set on `tenantry_app` when migrating.
    pub app_db_password: SecretString,
    /// Most pooled connections.
    pub pool_size: u32,
    /// Token keys and expectations.
    pub auth: AuthConfig,
    /// Origins allowed over grpc-web.
    pub cors_origins: Vec<String>,
    /// Whether `CreateOrganization` is public.
    pub self_serve_signup: bool,
    /// Drain bound on shutdown.
    pub shutdown_grace: Duration,
}

impl CommonConfig {
    /// Reads the shared variables.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: SecretString::from(required("DATABASE_URL")?),
            database_admin_url: var("DATABASE_ADMIN_URL").map(SecretString::from),
            app_db_password: SecretString::from(
                var("TENANTRY_APP_DB_PASSWORD").unwrap_or_default(),
            ),
            pool_size: parsed("DATABASE_POOL_SIZE", 8)?,
            auth: auth_from_env()?,
            cors_origins: var("TENANTRY_CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            self_serve_signup: flag("TENANTRY_SELF_SERVE_SIGNUP", false)?,
            shutdown_grace: Duration::from_secs(parsed("TENANTRY_SHUTDOWN_GRACE_SECS", 10)?),
        })
    }
}

/// Reads the token configuration.
///
/// # Errors
///
/// [`ConfigError`] for a missing or malformed variable, or an unreadable key file.
pub fn auth_from_env() -> Result<AuthConfig, ConfigError> {
    let algorithm: Algorithm = var("TENANTRY_JWT_ALGORITHM")
        .unwrap_or_else(|| "HS256".into())
        .parse()
        .map_err(|e: tenantry_auth::KeyError| ConfigError::Invalid {
            name: "TENANTRY_JWT_ALGORITHM",
            detail: e.to_string(),
        })?;
    let read = |name: &'static str, path: &str| {
        std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            name,
            detail: format!("{path}: {e}"),
        })
    };
    let mut public_keys = Vec::new();
    if let Some(list) = var("TENANTRY_JWT_PUBLIC_KEYS") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kid, path) = item.split_once('=').ok_or(ConfigError::Invalid {
                name: "TENANTRY_JWT_PUBLIC_KEYS",
                detail: "expected kid=/path/to/key.pem".into(),
            })?;
            public_keys.push((
                kid.trim().to_owned(),
                read("TENANTRY_JWT_PUBLIC_KEYS", path.trim())?,
            ));
        }
    }
    let signing_key = match var("TENANTRY_JWT_SIGNING_KEY") {
        Some(path) => Some((
            var("TENANTRY_JWT_SIGNING_KEY_ID").unwrap_or_else(|| "default".into()),
            SecretString::from(read("TENANTRY_JWT_SIGNING_KEY", &path)?),
        )),
        None => None,
    };
    let hs256_secret = var("TENANTRY_JWT_SECRET").map(SecretString::from);
    if algorithm == Algorithm::Hs256 && hs256_secret.is_none() {
        return Err(ConfigError::Missing("TENANTRY_JWT_SECRET"));
    }
    Ok(AuthConfig {
        algorithm,
        hs256_secret,
        public_keys,
        signing_key,
        issuer: var("TENANTRY_JWT_ISSUER").unwrap_or_else(|| "tenantry".into()),
        audience: var("TENANTRY_JWT_AUDIENCE").unwrap_or_else(|| "tenantry".into()),
    })
}
