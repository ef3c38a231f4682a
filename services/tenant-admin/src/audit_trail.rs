//! Who acted, for the audit trail: the verified caller, or the original caller a service
//! acted for. Every mutating handler records one event with
//! [`record_audit`](tenantry_db::models::audit::record_audit) inside its transaction; this
//! module builds the event from the caller.

use tenantry_auth::Caller;
use tenantry_db::models::audit::NewAuditEvent;
use uuid::Uuid;

/// Fully-qualified RPC name of a tenant-admin method, the audit `action`.
pub(crate) fn action(service: &str, method: &str) -> String {
    format!("tenantry.admin.v1.{service}/{method}")
}

/// The actor of a call.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// Subject (user id or service name), or the original caller of a service call.
    pub(crate) id: String,
    /// `super_admin`, `service`, an org role, or `public` / `system`.
    pub(crate) role: String,
}

impl Actor {
    /// The actor of a verified call.
    pub(crate) fn of(caller: &Caller) -> Self {
        let role = if let Some(r) = caller.platform_role {
            r.as_str().to_owned()
        } else if let Some(r) = caller.org_role {
            r.as_str().to_owned()
        } else {
            "user".to_owned()
        };
        let id = if caller.is_service() {
            caller
                .actor
                .clone()
                .unwrap_or_else(|| caller.subject.clone())
        } else {
            caller.subject.clone()
        };
        Self { id, role }
    }

    /// An actor without a token (login, set-password): the user the call is about.
    pub(crate) fn public(user: Uuid) -> Self {
        Self {
            id: user.to_string(),
            role: "public".to_owned(),
        }
    }

    /// The background tasks of tenant-admin.
    pub(crate) fn system() -> Self {
        Self {
            id: "tenant-admin".to_owned(),
            role: "system".to_owned(),
        }
    }

    /// The subject as a user id, when it is one (for `created_by`-style columns).
    pub(crate) fn user_id(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.id).ok()
    }

    /// An event by this actor.
    pub(crate) fn event<'a>(
        &'a self,
        tenant: Option<Uuid>,
        action: &'a str,
        target_type: &'a str,
        target_id: impl ToString,
        metadata: serde_json::Value,
        request_id: Option<&'a str>,
    ) -> NewAuditEvent<'a> {
        NewAuditEvent {
            organization_id: tenant,
            actor_id: Some(&self.id),
            actor_role: Some(&self.role),
            action,
            target_type: Some(target_type),
            target_id: Some(target_id.to_string()),
            metadata,
            request_id: request_id.filter(|r| !r.is_empty()),
        }
    }
}
