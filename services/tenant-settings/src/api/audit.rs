//! The audit trail of tenant-settings' write RPCs, in the format tenant-admin uses
//! (`tenant-admin/src/audit_trail.rs`): one event per committed change, recorded with
//! [`record_audit`] inside the transaction that makes the change, whose `action` is the
//! fully-qualified RPC name and whose actor is the verified caller (the original caller when a
//! service acted for someone). Metadata names what changed and never holds a secret: for
//! integrations only the names of the secret keys that were set or removed.

use tenantry_auth::Caller;
use tenantry_db::models::audit::{NewAuditEvent, record_audit};
use tenantry_runtime::ApiResult;
use tonic::Request;
use uuid::Uuid;

/// The proto service whose RPCs this module audits.
const SERVICE: &str = "tenantry.settings.v1.TenantSettingsService";

/// Fully-qualified RPC name of a tenant-settings method, the audit `action`.
pub(crate) fn action(method: &str) -> String {
    format!("{SERVICE}/{method}")
}

/// Who made a call, as the audit trail records it.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// The subject (user id or service name), or the original caller of a service call.
    id: String,
    /// `super_admin`, `service`, or an organization role.
    role: String,
    /// The call's request id (`x-request-id`, or the request's own `request_id`).
    request_id: Option<String>,
}

impl Actor {
    /// The actor of a verified call; `request_id` is the request's idempotency key, if it has
    /// one (otherwise the `x-request-id` header, if any, is recorded).
    pub(crate) fn of<T>(caller: &Caller, request: &Request<T>, request_id: Option<&str>) -> Self {
        let role = caller
            .platform_role
            .map(|r| r.as_str())
            .or(caller.org_role.map(|r| r.as_str()))
            .unwrap_or("user")
            .to_owned();
        let id = if caller.is_service() {
            caller
                .actor
                .clone()
                .unwrap_or_else(|| caller.subject.clone())
        } else {
            caller.subject.clone()
        };
        let request_id = request_id
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                request
                    .metadata()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|r| !r.is_empty() && r.len() <= 128)
                    .map(str::to_owned)
            });
        Self {
            id,
            role,
            request_id,
        }
    }

    /// Records that this actor called `method` on `tenant`, acting on `target` (kind, id), in
    /// the current transaction.
    ///
    /// # Errors
    ///
    /// The database error.
    pub(crate) async fn record(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        tenant: Uuid,
        method: &str,
        target: (&str, &str),
        metadata: serde_json::Value,
    ) -> ApiResult<()> {
        let action = action(method);
        let event = NewAuditEvent {
            organization_id: Some(tenant),
            actor_id: Some(&self.id),
            actor_role: Some(&self.role),
            action: &action,
            target_type: Some(target.0),
            target_id: Some(target.1.to_owned()),
            metadata,
            request_id: self.request_id.as_deref(),
        };
        record_audit(conn, &event).await?;
        Ok(())
    }
}
