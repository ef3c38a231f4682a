//! Organizations, members and invitations.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// Organizations, members and invitations.
pub(crate) struct OrganizationsApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl OrganizationsApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::organization_service_server::OrganizationService for OrganizationsApi {}
