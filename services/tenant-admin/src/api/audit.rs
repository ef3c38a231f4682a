//! The audit trail.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// The audit trail.
pub(crate) struct AuditApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl AuditApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {}
