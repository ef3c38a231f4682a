//! Billing: usage, subscription, invoices, payment methods.

use tenantry_proto::admin::v1 as pb;

use super::State;

/// Billing: usage, subscription, invoices, payment methods.
pub(crate) struct BillingApi {
    #[expect(dead_code, reason = "used once the RPCs are implemented")]
    state: State,
}

impl BillingApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for BillingApi {}
