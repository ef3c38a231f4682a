//! What the organization and billing handlers share: the tenant guard, audit, conversions to
//! the API messages, secrets (invitation tokens, access tokens), subscription changes and
//! invoices, and the daily usage snapshots. Validation, paging tokens, passwords and the
//! `Tenant` message come from the crate-wide modules (`validate`, `passwords`, `convert`).

pub(crate) mod convert;
pub(crate) mod secrets;
pub(crate) mod snapshots;
pub(crate) mod subscription;

use diesel::OptionalExtension as _;
use diesel_async::AsyncPgConnection;
use tenantry_auth::Caller;
use tenantry_db::models::audit::record_audit;
use tenantry_db::models::organization::{self as org_model, Organization};
use tenantry_db::models::settings as settings_model;
use tenantry_proto::admin::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult};
use uuid::Uuid;

pub(crate) use crate::audit_trail::Actor;

/// Loads the tenant a request targets (optionally locking its row) and refuses members of a
/// suspended or cancelled tenant. Super admins and services pass.
///
/// # Errors
///
/// NOT_FOUND when the tenant does not exist (or is not visible); FAILED_PRECONDITION with the
/// reason for a member of a suspended or cancelled tenant.
pub(crate) async fn load_tenant(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    tenant: Uuid,
    lock: bool,
) -> ApiResult<Organization> {
    let found = if lock {
        org_model::find_for_update(conn, tenant).await
    } else {
        org_model::find(conn, tenant).await
    };
    let org = found.optional()?.ok_or(ApiError::NotFound("tenant"))?;
    ensure_usable(Some(caller), &org)?;
    Ok(org)
}

/// Refuses a member of a suspended or cancelled (or soft-deleted) tenant with the reason
/// ([`crate::tenant_access::ensure_usable`]); super admins and services pass. `caller` is
/// `None` for public RPCs (the invitation token authenticates).
///
/// # Errors
///
/// FAILED_PRECONDITION naming the status and the reason.
pub(crate) fn ensure_usable(caller: Option<&Caller>, org: &Organization) -> ApiResult<()> {
    if caller.is_some_and(|c| c.is_super_admin() || c.is_service()) {
        return Ok(());
    }
    crate::tenant_access::ensure_usable(org)
}

/// The `Tenant` message of a row, with the locale settings tenant-settings stores.
///
/// # Errors
///
/// The database error.
pub(crate) async fn tenant_message(
    conn: &mut AsyncPgConnection,
    org: &Organization,
) -> ApiResult<pb::Tenant> {
    let locale = settings_model::find_settings(conn, org.id)
        .await?
        .map(|s| crate::convert::Locale {
            timezone: s.timezone,
            locale: s.locale,
        })
        .unwrap_or_default();
    Ok(crate::convert::tenant(org, &locale))
}

/// The request id of a call: the `x-request-id` metadata, else `fallback` when not empty.
pub(crate) fn request_id<T>(request: &tonic::Request<T>, fallback: &str) -> Option<String> {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| (!fallback.trim().is_empty()).then(|| fallback.trim().to_owned()))
}

/// Records an audit event in the current transaction: `action` is the fully-qualified RPC
/// name, `target` the kind and id of the object acted on.
///
/// # Errors
///
/// The database error.
pub(crate) async fn audit(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    actor: &Actor,
    request_id: Option<&str>,
    action: &str,
    target: (&str, String),
    metadata: serde_json::Value,
) -> ApiResult<()> {
    let event = actor.event(
        Some(tenant),
        action,
        target.0,
        target.1,
        metadata,
        request_id,
    );
    record_audit(conn, &event).await?;
    Ok(())
}

/// The verified caller of a request.
///
/// # Errors
///
/// UNAUTHENTICATED when the auth layer attached none.
pub(crate) fn caller_of<T>(request: &tonic::Request<T>) -> ApiResult<Caller> {
    Ok(Caller::of(request)?.clone())
}
