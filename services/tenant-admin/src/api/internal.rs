//! RPCs for provisioning.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// RPCs for provisioning.
pub(crate) struct InternalApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl InternalApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::tenant_internal_service_server::TenantInternalService for InternalApi {}
