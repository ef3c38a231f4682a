//! Login and set-password.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// Login and set-password.
pub(crate) struct AuthApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl AuthApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {}
