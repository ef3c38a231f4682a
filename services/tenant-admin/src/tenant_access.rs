//! The rule that suspended and cancelled tenants are closed to their members (DESIGN.md:
//! "A suspended or cancelled tenant's members get FAILED_PRECONDITION"); super admins still
//! manage them through `TenantAdminService`.
//!
//! Member-facing handlers (organizations, billing, usage) call [`load_usable`] first thing
//! in their tenant-scoped transaction, or [`ensure_usable`] on a row they already hold.

use diesel_async::AsyncPgConnection;
use tenantry_db::models::organization::{self, Organization, Status};
use tenantry_runtime::error::{ApiError, ApiResult};
use uuid::Uuid;

/// Answers FAILED_PRECONDITION with the reason when the tenant is suspended or cancelled:
/// `tenant is suspended: <reason>` or `tenant is cancelled` / `tenant is deleted`.
///
/// # Errors
///
/// FAILED_PRECONDITION as above.
pub(crate) fn ensure_usable(org: &Organization) -> ApiResult<()> {
    match org.status() {
        Status::Suspended => Err(ApiError::FailedPrecondition(format!(
            "tenant is suspended: {}",
            org.suspension_reason
                .as_deref()
                .unwrap_or("no reason given")
        ))),
        Status::Cancelled if org.deleted_at.is_some() => {
            Err(ApiError::FailedPrecondition("tenant is deleted".into()))
        }
        Status::Cancelled => Err(ApiError::FailedPrecondition("tenant is cancelled".into())),
        Status::Active | Status::Trial | Status::Pending => Ok(()),
    }
}

/// Loads the tenant in the current transaction and checks [`ensure_usable`].
#[allow(
    dead_code,
    reason = "for the member-facing handlers (organizations, billing)"
)]
///
/// # Errors
///
/// NOT_FOUND (`tenant not found`) when it is absent or invisible under the transaction's
/// scope; FAILED_PRECONDITION when it is suspended or cancelled; the database error.
pub(crate) async fn load_usable(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> ApiResult<Organization> {
    let org = organization::find(conn, tenant)
        .await
        .map_err(|e| not_found(e, "tenant"))?;
    ensure_usable(&org)?;
    Ok(org)
}

/// Maps diesel's `NotFound` to NOT_FOUND naming `what`; other errors as usual.
pub(crate) fn not_found(e: diesel::result::Error, what: &'static str) -> ApiError {
    match e {
        diesel::result::Error::NotFound => ApiError::NotFound(what),
        other => ApiError::from(other),
    }
}
