//! The provisioning service handler. Until the provisioning issue lands, the RPCs answer
//! UNIMPLEMENTED through the generated default methods; authorization already applies.

use tenantry_db::Pool;
use tenantry_proto::provisioning::v1 as pb;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct State {
    #[expect(dead_code, reason = "used by the handlers of the provisioning issue")]
    pub(crate) pool: Pool,
}

/// Provisioning jobs, deprovisioning and backups.
pub(crate) struct ProvisioningApi {
    #[expect(dead_code, reason = "used by the handlers of the provisioning issue")]
    state: State,
}

impl ProvisioningApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::provisioning_service_server::ProvisioningService for ProvisioningApi {}
