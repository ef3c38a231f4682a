//! One module per gRPC service. RPCs not implemented yet answer UNIMPLEMENTED through the
//! generated default methods; authorization already applies to all of them.

mod audit;
mod auth;
mod billing;
mod internal;
mod organizations;
pub(crate) mod orgs;
mod tenants;
mod usage;

use std::sync::Arc;

use tenantry_auth::{ServiceTokenInterceptor, Signer};
use tenantry_db::Pool;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) use audit::AuditApi;
pub(crate) use auth::AuthApi;
pub(crate) use billing::BillingApi;
pub(crate) use internal::InternalApi;
pub(crate) use organizations::OrganizationsApi;
pub(crate) use tenants::TenantsApi;
pub(crate) use usage::UsageApi;

/// A channel to another Tenantry service that carries a short-lived service token.
pub(crate) type ServiceChannel = InterceptedService<Channel, ServiceTokenInterceptor>;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct State {
    /// The database pool (role `tenantry_app`).
    pub(crate) pool: Pool,
    /// Platform-mode connections (`tenantry_db::PlatformPool`) for the reads of handlers
    /// whose rule admits super admins only.
    pub(crate) platform: tenantry_db::PlatformPool,
    /// Signs access tokens (login, self-serve signup).
    pub(crate) signer: Signer,
    /// tenant-settings, with service tokens.
    pub(crate) settings: ServiceChannel,
    /// provisioning, with service tokens.
    pub(crate) provisioning: ServiceChannel,
    /// bcrypt on the blocking pool, bounded.
    pub(crate) passwords: Arc<crate::passwords::Passwords>,
    /// The service configuration.
    #[allow(dead_code, reason = "read by handlers as configuration grows")]
    pub(crate) config: Arc<crate::Config>,
    /// Recent ListTenants totals (`crate::totals`); tenant writes forget them.
    pub(crate) totals: Arc<crate::totals::Totals>,
}
