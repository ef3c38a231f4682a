//! Usage recording by backend services.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// Usage recording by backend services.
pub(crate) struct UsageApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl UsageApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::usage_service_server::UsageService for UsageApi {}
