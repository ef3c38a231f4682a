//! The runtime every Tenantry service shares: typed configuration from the environment
//! ([`config`]), tracing ([`telemetry`]) and the gRPC server ([`server`]) with health,
//! reflection v1 and v1alpha, grpc-web with CORS on the same port, the auth layer and a graceful
//! shutdown with a drain bound.

pub mod config;
pub mod error;
pub mod rt;
pub mod server;
pub mod telemetry;

pub use config::{CommonConfig, ConfigError};
pub use error::{ApiError, ApiResult, Violations};
pub use server::{
    HttpFuture, HttpHandler, ServeError, ServeOptions, serve, serve_with_http, shutdown_signal,
};
