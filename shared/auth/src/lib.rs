//! Authentication and authorization for every Tenantry service.
//!
//! - [`Verifier`] checks a JWT bearer token per DESIGN.md: signature, `exp`, `nbf`, `iss` and `aud`
//!   are all required; exactly one algorithm family is accepted, so `alg: none` and algorithm
//!   confusion fail.
//! - [`rules`] holds the one table from every fully-qualified RPC to the role it needs. An RPC
//!   missing from it is refused ([`AuthLayer`] is deny by default).
//! - [`AuthLayer`] is the tower layer that applies the table and hands the verified [`Caller`] to
//!   handlers through the request extensions.
//! - [`Signer`] and [`ServiceTokenInterceptor`] mint the short-lived `service` tokens that
//!   inter-service calls carry.

mod caller;
mod client;
mod keys;
mod layer;
pub mod rules;

pub use caller::{Caller, OrgRole, PlatformRole};
pub use client::{ACTOR_METADATA_KEY, ServiceTokenInterceptor};
pub use keys::{Algorithm, AuthConfig, Claims, KeyError, Signer, TokenError, Verifier};
pub use layer::{AuthLayer, AuthService};
pub use rules::{Rule, rule_for};
