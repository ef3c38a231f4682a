use std::fmt;
use std::str::FromStr;

use tonic::{Request, Status};
use uuid::Uuid;

/// A platform-wide role carried in the `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformRole {
    /// A platform operator: manages every tenant.
    SuperAdmin,
    /// Another Tenantry service or a backend service of the platform.
    Service,
}

impl PlatformRole {
    /// Returns the claim value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuperAdmin => "super_admin",
            Self::Service => "service",
        }
    }
}

impl FromStr for PlatformRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "super_admin" => Ok(Self::SuperAdmin),
            "service" => Ok(Self::Service),
            _ => Err(()),
        }
    }
}

/// A role inside one organization (tenant): `admin` ⊇ `manager` ⊇ `teacher` ⊇ `member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrgRole {
    /// Any member.
    Member,
    /// A teacher.
    Teacher,
    /// A manager: may also invite.
    Manager,
    /// An organization administrator.
    Admin,
}

impl OrgRole {
    /// Every role, lowest first.
    pub const ALL: [Self; 4] = [Self::Member, Self::Teacher, Self::Manager, Self::Admin];

    /// Returns the claim (and database) value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Teacher => "teacher",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrgRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "member" => Ok(Self::Member),
            "teacher" => Ok(Self::Teacher),
            "manager" => Ok(Self::Manager),
            "admin" => Ok(Self::Admin),
            _ => Err(()),
        }
    }
}

/// The verified identity behind a call, put into the request extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `sub` claim: a user id, or a service name for service tokens.
    pub subject: String,
    /// The platform role, if any.
    pub platform_role: Option<PlatformRole>,
    /// The tenant the token belongs to (`org` claim), if any.
    pub tenant_id: Option<Uuid>,
    /// The role inside that tenant (`org_role` claim), if any.
    pub org_role: Option<OrgRole>,
    /// The token id (`jti`).
    pub token_id: Option<String>,
    /// For service calls made on behalf of someone: the original caller's subject, for the
    /// audit trail. Only honoured on `service` tokens.
    pub actor: Option<String>,
}

impl Caller {
    /// Returns the verified caller of a request.
    ///
    /// # Errors
    ///
    /// UNAUTHENTICATED when the auth layer attached no caller (a public RPC called without a
    /// token).
    pub fn of<T>(request: &Request<T>) -> Result<&Self, Status> {
        request
            .extensions()
            .get::<Self>()
            .ok_or_else(|| Status::unauthenticated("a bearer token is required"))
    }

    /// Tells whether the caller is a super admin.
    #[must_use]
    pub fn is_super_admin(&self) -> bool {
        self.platform_role == Some(PlatformRole::SuperAdmin)
    }

    /// Tells whether the caller is a service.
    #[must_use]
    pub fn is_service(&self) -> bool {
        self.platform_role == Some(PlatformRole::Service)
    }

    /// Tells whether the caller is a member of `tenant` with at least role `min`.
    #[must_use]
    pub fn has_org_role(&self, min: OrgRole) -> bool {
        self.tenant_id.is_some() && self.org_role.is_some_and(|r| r >= min)
    }

    /// Resolves the tenant a tenant-scoped request targets.
    ///
    /// A member's tenant is the token's: `requested` must be empty or equal to it, and any
    /// other value answers NOT_FOUND, exactly like a tenant that does not exist. Super admins
    /// and services must name the tenant.
    ///
    /// # Errors
    ///
    /// INVALID_ARGUMENT when `requested` is not a UUID or a platform caller left it empty;
    /// NOT_FOUND for another tenant's id.
    pub fn resolve_tenant(&self, requested: &str) -> Result<Uuid, Status> {
        let requested = requested.trim();
        let parsed = if requested.is_empty() {
            None
        } else {
            Some(
                Uuid::parse_str(requested)
                    .map_err(|_| crate::rules::invalid_field("tenant_id", "must be a uuid"))?,
            )
        };
        if self.is_super_admin() || self.is_service() {
            return parsed.ok_or_else(|| crate::rules::invalid_field("tenant_id", "is required"));
        }
        match (self.tenant_id, parsed) {
            (Some(own), None) => Ok(own),
            (Some(own), Some(p)) if own == p => Ok(own),
            _ => Err(Status::not_found("tenant not found")),
        }
    }
}
