//! The authorization table: every fully-qualified RPC of Tenantry and who may call it.
//!
//! This is the single place where access is decided before a handler runs. An RPC that is not
//! listed here is refused with PERMISSION_DENIED (deny by default); a test enumerates every
//! method of the descriptor set and fails when one has no entry, or when an entry names an RPC
//! that does not exist. Handlers still check tenant ownership (a member's tenant is the token's).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::caller::{Caller, OrgRole};

/// Who may call one RPC. Any matching clause admits the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// No token needed.
    pub public: bool,
    /// Public only while self-serve signup is enabled by configuration; super admins otherwise.
    pub signup: bool,
    /// Super admins may call it.
    pub super_admin: bool,
    /// `service` tokens may call it.
    pub service: bool,
    /// Members of a tenant with at least this role may call it.
    pub org: Option<OrgRole>,
}

impl Rule {
    const NONE: Self = Self {
        public: false,
        signup: false,
        super_admin: false,
        service: false,
        org: None,
    };
    /// No token needed.
    pub const PUBLIC: Self = Self {
        public: true,
        ..Self::NONE
    };
    /// Super admins only.
    pub const SA: Self = Self {
        super_admin: true,
        ..Self::NONE
    };
    /// Services only.
    pub const SVC: Self = Self {
        service: true,
        ..Self::NONE
    };
    /// Super admins and services.
    pub const SA_SVC: Self = Self {
        super_admin: true,
        service: true,
        ..Self::NONE
    };
    /// Public when self-serve signup is on, otherwise super admins.
    pub const SIGNUP: Self = Self {
        signup: true,
        super_admin: true,
        ..Self::NONE
    };

    /// Members with at least `role`.
    #[must_use]
    pub const fn org(role: OrgRole) -> Self {
        Self {
            org: Some(role),
            ..Self::NONE
        }
    }

    /// Adds super admins.
    #[must_use]
    pub const fn or_sa(self) -> Self {
        Self {
            super_admin: true,
            ..self
        }
    }

    /// Adds services.
    #[must_use]
    pub const fn or_svc(self) -> Self {
        Self {
            service: true,
            ..self
        }
    }

    /// Tells whether the rule needs no token, given the signup setting.
    #[must_use]
    pub fn is_public(&self, signup_enabled: bool) -> bool {
        self.public || (self.signup && signup_enabled)
    }

    /// Tells whether a verified caller satisfies the rule.
    #[must_use]
    pub fn admits(&self, caller: &Caller) -> bool {
        (self.super_admin && caller.is_super_admin())
            || (self.service && caller.is_service())
            || self.org.is_some_and(|min| caller.has_org_role(min))
    }
}

use OrgRole::{Admin, Manager, Member};

const ADMIN: &str = "/tenantry.admin.v1.";
const SETTINGS: &str = "/tenantry.settings.v1.";
const PROV: &str = "/tenantry.provisioning.v1.";

/// Every RPC: (service path prefix, service, method, rule). The settings reads (GetSettings,
/// GetFeatures, GetLimits) also admit services, which must name the tenant: tenant-admin asks
/// for features, and backend services read settings and limits.
const TABLE: &[(&str, &str, &str, Rule)] = &[
    // tenant-admin: tenant lifecycle, super admins only.
    (ADMIN, "TenantAdminService", "CreateTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "ListTenants", Rule::SA),
    (ADMIN, "TenantAdminService", "GetTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "UpdateTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "UpdateTenantLimits", Rule::SA),
    (ADMIN, "TenantAdminService", "SuspendTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "ReactivateTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "DeleteTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "RestoreTenant", Rule::SA),
    (ADMIN, "TenantAdminService", "ProvisionTenant", Rule::SA),
    // Organizations.
    (
        ADMIN,
        "OrganizationService",
        "CreateOrganization",
        Rule::SIGNUP,
    ),
    (
        ADMIN,
        "OrganizationService",
        "GetCurrentOrganization",
        Rule::org(Member),
    ),
    (
        ADMIN,
        "OrganizationService",
        "GetOrganization",
        Rule::org(Member).or_sa(),
    ),
    (
        ADMIN,
        "OrganizationService",
        "UpdateOrganization",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "OrganizationService",
        "ListMembers",
        Rule::org(Member),
    ),
    (
        ADMIN,
        "OrganizationService",
        "UpdateMemberRole",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "OrganizationService",
        "RemoveMember",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "OrganizationService",
        "CreateInvitation",
        Rule::org(Manager),
    ),
    (
        ADMIN,
        "OrganizationService",
        "ListInvitations",
        Rule::org(Manager),
    ),
    (
        ADMIN,
        "OrganizationService",
        "RevokeInvitation",
        Rule::org(Manager),
    ),
    (
        ADMIN,
        "OrganizationService",
        "ResendInvitation",
        Rule::org(Manager),
    ),
    (
        ADMIN,
        "OrganizationService",
        "AcceptInvitation",
        Rule::PUBLIC,
    ),
    (
        ADMIN,
        "OrganizationService",
        "DeclineInvitation",
        Rule::PUBLIC,
    ),
    (
        ADMIN,
        "OrganizationService",
        "UpdateSubscription",
        Rule::org(Admin),
    ),
    (ADMIN, "OrganizationService", "GetUsage", Rule::org(Member)),
    (
        ADMIN,
        "OrganizationService",
        "GetFeatures",
        Rule::org(Member),
    ),
    // Billing.
    (
        ADMIN,
        "BillingService",
        "GetBillingUsage",
        Rule::org(Member),
    ),
    (
        ADMIN,
        "BillingService",
        "GetSubscription",
        Rule::org(Member),
    ),
    (
        ADMIN,
        "BillingService",
        "ListUsageHistory",
        Rule::org(Member),
    ),
    (
        ADMIN,
        "BillingService",
        "ChangeSubscription",
        Rule::org(Admin),
    ),
    (ADMIN, "BillingService", "ListInvoices", Rule::org(Admin)),
    (
        ADMIN,
        "BillingService",
        "ListPaymentMethods",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "BillingService",
        "AddPaymentMethod",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "BillingService",
        "RemovePaymentMethod",
        Rule::org(Admin),
    ),
    (
        ADMIN,
        "BillingService",
        "SetDefaultPaymentMethod",
        Rule::org(Admin),
    ),
    // Usage recording by the platform's backend services.
    (ADMIN, "UsageService", "RecordUsage", Rule::SVC),
    // Audit trail: any tenant for super admins, their own for org admins.
    (
        ADMIN,
        "AuditService",
        "ListAuditEvents",
        Rule::org(Admin).or_sa(),
    ),
    // Login and set-password are public: the credential is in the request.
    (ADMIN, "AuthService", "Login", Rule::PUBLIC),
    (ADMIN, "AuthService", "SetPassword", Rule::PUBLIC),
    // Called by provisioning only.
    (
        ADMIN,
        "TenantInternalService",
        "CreateTenantAdmin",
        Rule::SVC,
    ),
    (
        ADMIN,
        "TenantInternalService",
        "MarkTenantVerified",
        Rule::SVC,
    ),
    // tenant-settings.
    (
        SETTINGS,
        "TenantSettingsService",
        "GetSettings",
        Rule::org(Member).or_sa().or_svc(),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "UpdateSettings",
        Rule::org(Admin),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "UpdateCustomSettings",
        Rule::org(Admin),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "GetFeatures",
        Rule::org(Member).or_sa().or_svc(),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "SetFeature",
        Rule::org(Admin),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "GrantFeatureOverride",
        Rule::SA,
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "RevokeFeatureOverride",
        Rule::SA,
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "GetLimits",
        Rule::org(Member).or_sa().or_svc(),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "GetIntegrations",
        Rule::org(Member),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "UpdateIntegration",
        Rule::org(Admin),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "RemoveIntegration",
        Rule::org(Admin),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "CheckFeatures",
        Rule::org(Member).or_svc(),
    ),
    (
        SETTINGS,
        "TenantSettingsService",
        "WatchTenant",
        Rule::org(Member).or_svc(),
    ),
    (SETTINGS, "TenantSettingsService", "ApplyTier", Rule::SVC),
    (
        SETTINGS,
        "TenantSettingsService",
        "InitializeDefaults",
        Rule::SVC,
    ),
    // provisioning.
    (PROV, "ProvisioningService", "ProvisionTenant", Rule::SA_SVC),
    (PROV, "ProvisioningService", "GetProvisioningJob", Rule::SA),
    (
        PROV,
        "ProvisioningService",
        "ListProvisioningJobs",
        Rule::SA,
    ),
    (
        PROV,
        "ProvisioningService",
        "DeprovisionTenant",
        Rule::SA_SVC,
    ),
    (PROV, "ProvisioningService", "ListBackups", Rule::SA),
    (PROV, "ProvisioningService", "RestoreTenant", Rule::SA),
];

/// Services that answer without a token on every port: health and reflection.
pub const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Returns the rule for a request path such as `/tenantry.admin.v1.AuthService/Login`, or
/// `None` when the RPC has no rule (and must be refused).
#[must_use]
pub fn rule_for(path: &str) -> Option<Rule> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    let (package, service) = service.rsplit_once('.')?;
    TABLE.iter().find_map(|(prefix, s, m, rule)| {
        (prefix.trim_matches(['/', '.']) == package && *s == service && *m == method)
            .then_some(*rule)
    })
}

/// Lists every fully-qualified RPC path that has a rule, for tests that cross-check the table
/// against the descriptor set.
#[must_use]
pub fn all_paths() -> Vec<String> {
    TABLE
        .iter()
        .map(|(p, s, m, _)| format!("{p}{s}/{m}"))
        .collect()
}

/// Builds an INVALID_ARGUMENT status whose `google.rpc.BadRequest` detail names the field.
#[must_use]
pub fn invalid_field(field: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}
