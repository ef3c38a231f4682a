//! One handler type per gRPC service. Until their issues land, the RPCs answer UNIMPLEMENTED
//! through the generated default methods; authorization already applies to all of them.

use tenantry_db::Pool;
use tenantry_proto::admin::v1 as pb;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct State {
    #[expect(dead_code, reason = "used by the handlers of the tenant-admin issue")]
    pub(crate) pool: Pool,
}

macro_rules! handler {
    ($name:ident, $doc:literal, $path:path) => {
        #[doc = $doc]
        pub(crate) struct $name {
            #[expect(dead_code, reason = "used by the handlers of the tenant-admin issue")]
            state: State,
        }

        impl $name {
            pub(crate) fn new(state: State) -> Self {
                Self { state }
            }
        }

        #[tonic::async_trait]
        impl $path for $name {}
    };
}

handler!(
    TenantsApi,
    "Tenant lifecycle (super admins).",
    pb::tenant_admin_service_server::TenantAdminService
);
handler!(
    OrganizationsApi,
    "Organizations, members and invitations.",
    pb::organization_service_server::OrganizationService
);
handler!(
    BillingApi,
    "Billing: usage, subscription, invoices, payment methods.",
    pb::billing_service_server::BillingService
);
handler!(
    UsageApi,
    "Usage recording by backend services.",
    pb::usage_service_server::UsageService
);
handler!(
    AuditApi,
    "The audit trail.",
    pb::audit_service_server::AuditService
);
handler!(
    AuthApi,
    "Login and set-password.",
    pb::auth_service_server::AuthService
);
handler!(
    InternalApi,
    "RPCs for provisioning.",
    pb::tenant_internal_service_server::TenantInternalService
);
