//! Tenant lifecycle (super admins).

use tenantry_proto::admin::v1 as pb;

use super::State;

/// Tenant lifecycle (super admins).
pub(crate) struct TenantsApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl TenantsApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::tenant_admin_service_server::TenantAdminService for TenantsApi {}
