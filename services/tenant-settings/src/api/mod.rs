//! The settings service handler. Until the tenant-settings issue lands, the RPCs answer
//! UNIMPLEMENTED through the generated default methods; authorization already applies.

use tenantry_db::Pool;
use tenantry_proto::settings::v1 as pb;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct State {
    #[expect(
        dead_code,
        reason = "used by the handlers of the tenant-settings issue"
    )]
    pub(crate) pool: Pool,
}

/// Settings, features, limits and integrations.
pub(crate) struct SettingsApi {
    #[expect(
        dead_code,
        reason = "used by the handlers of the tenant-settings issue"
    )]
    state: State,
}

impl SettingsApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::tenant_settings_service_server::TenantSettingsService for SettingsApi {}
