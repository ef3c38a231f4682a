//! Invitations to join a tenant. The token is never stored: only its SHA-256 (`token_hash`).
//! `expired` is stored lazily; a pending row past `expires_at` counts as expired everywhere.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::invitations;

/// An invitation row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct Invitation {
    /// Invitation id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Invited address, lower-cased.
    pub email: String,
    /// Role on acceptance.
    pub org_role: String,
    /// Stored status: `pending`, `accepted`, `declined`, `revoked` or `expired`.
    pub status: String,
    /// Inviter.
    pub invited_by: Option<Uuid>,
    /// Personal message.
    pub message: Option<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Acceptance time.
    pub accepted_at: Option<DateTime<Utc>>,
    /// Decline time.
    pub declined_at: Option<DateTime<Utc>>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The member created on acceptance.
    pub user_id: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Invitation {
    /// The status as of `now`: a pending invitation past its expiry is `expired`.
    #[must_use]
    pub fn effective_status(&self, now: DateTime<Utc>) -> &str {
        if self.status == "pending" && self.expires_at <= now {
            "expired"
        } else {
            &self.status
        }
    }
}

/// A new invitation.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    /// Tenant id.
    pub organization_id: Uuid,
    /// Invited address, lower-cased.
    pub email: &'a str,
    /// Role on acceptance.
    pub org_role: &'a str,
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// Inviter.
    pub invited_by: Option<Uuid>,
    /// Personal message.
    pub message: Option<&'a str>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Inserts an invitation.
///
/// # Errors
///
/// The database error (unique violation `invitations_one_pending_per_email_key`).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewInvitation<'_>,
) -> QueryResult<Invitation> {
    diesel::insert_into(invitations::table)
        .values(new)
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}

/// Marks the pending invitations of `org` that are past their expiry as `expired` (all of them,
/// or only those for `email`). Returns how many changed.
///
/// # Errors
///
/// The database error.
pub async fn expire_stale(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    email: Option<&str>,
) -> QueryResult<usize> {
    let mut q = diesel::update(invitations::table)
        .filter(invitations::organization_id.eq(org))
        .filter(invitations::status.eq("pending"))
        .filter(invitations::expires_at.le(diesel::dsl::now))
        .into_boxed();
    if let Some(email) = email {
        q = q.filter(invitations::email.eq(email.to_owned()));
    }
    q.set(invitations::status.eq("expired")).execute(conn).await
}

/// The pending, unexpired invitation for `email`, if any.
///
/// # Errors
///
/// The database error.
pub async fn find_pending_for_email(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    email: &str,
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::organization_id.eq(org))
        .filter(invitations::email.eq(email))
        .filter(invitations::status.eq("pending"))
        .filter(invitations::expires_at.gt(diesel::dsl::now))
        .select(Invitation::as_select())
        .first(conn)
        .await
        .optional()
}

/// Counts the pending, unexpired invitations of `org` (seats they reserve).
///
/// # Errors
///
/// The database error.
pub async fn count_pending(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<i64> {
    invitations::table
        .filter(invitations::organization_id.eq(org))
        .filter(invitations::status.eq("pending"))
        .filter(invitations::expires_at.gt(diesel::dsl::now))
        .count()
        .get_result(conn)
        .await
}

/// Finds an invitation of `org`, locking it for the rest of the transaction.
///
/// # Errors
///
/// The database error.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(
            invitations::organization_id
                .eq(org)
                .and(invitations::id.eq(id)),
        )
        .select(Invitation::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Finds an invitation by the hash of its token, in any tenant (call in platform scope). Lock
/// it afterwards with [`find_for_update`], after the tenant row, to keep one lock order.
///
/// # Errors
///
/// The database error.
pub async fn find_by_token_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::token_hash.eq(hash))
        .select(Invitation::as_select())
        .first(conn)
        .await
        .optional()
}

/// Status filter of [`list_page`]; `expired` and `pending` are derived from `expires_at`.
fn filtered(org: Uuid, status: Option<&str>) -> invitations::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = invitations::table
        .filter(invitations::organization_id.eq(org))
        .into_boxed();
    match status {
        None => {}
        Some("pending") => {
            q = q
                .filter(invitations::status.eq("pending"))
                .filter(invitations::expires_at.gt(diesel::dsl::now));
        }
        Some("expired") => {
            q = q.filter(
                invitations::status.eq("expired").or(invitations::status
                    .eq("pending")
                    .and(invitations::expires_at.le(diesel::dsl::now))),
            );
        }
        Some(other) => q = q.filter(invitations::status.eq(other.to_owned())),
    }
    q
}

/// Returns up to `limit` invitations, newest first (`created_at DESC, id DESC`), after `before`.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    status: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Invitation>> {
    let mut q = filtered(org, status);
    if let Some((at, id)) = before {
        q = q.filter(
            invitations::created_at
                .lt(at)
                .or(invitations::created_at.eq(at).and(invitations::id.lt(id))),
        );
    }
    q.order((invitations::created_at.desc(), invitations::id.desc()))
        .limit(limit)
        .select(Invitation::as_select())
        .load(conn)
        .await
}

/// Counts the invitations matching `status`.
///
/// # Errors
///
/// The database error.
pub async fn count(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    status: Option<&str>,
) -> QueryResult<i64> {
    filtered(org, status).count().get_result(conn).await
}

/// Marks an invitation revoked.
///
/// # Errors
///
/// The database error.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Invitation> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::status.eq("revoked"),
            invitations::revoked_at.eq(Some(Utc::now())),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}

/// Marks an invitation declined.
///
/// # Errors
///
/// The database error.
pub async fn decline(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Invitation> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::status.eq("declined"),
            invitations::declined_at.eq(Some(Utc::now())),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}

/// Marks an invitation accepted by `user`.
///
/// # Errors
///
/// The database error.
pub async fn accept(conn: &mut AsyncPgConnection, id: Uuid, user: Uuid) -> QueryResult<Invitation> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::status.eq("accepted"),
            invitations::accepted_at.eq(Some(Utc::now())),
            invitations::user_id.eq(Some(user)),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}

/// Gives an invitation a new token and expiry and makes it pending again (resend).
///
/// # Errors
///
/// The database error.
pub async fn renew(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> QueryResult<Invitation> {
    diesel::update(invitations::table.find(id))
        .set((
            invitations::status.eq("pending"),
            invitations::token_hash.eq(token_hash),
            invitations::expires_at.eq(expires_at),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
}
