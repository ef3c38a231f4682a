//! Tracing set-up: `RUST_LOG` filter (default `info`), text or JSON lines (`LOG_FORMAT=json`).
//! `tokio_postgres` is capped at info so statement parameters never reach the logs.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // tokio-postgres logs every statement's bind values at debug level, and those can hold
    // secrets (integration secrets, token hashes): it never logs below info, whatever RUST_LOG.
    let filter = match "tokio_postgres=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
