//! The audit trail (table `audit_events`, append-only; written by every service).
//!
//! Every mutating RPC calls [`record_audit`] **inside the transaction that makes the change**, so
//! an event exists exactly when the change was committed:
//!
//! ```ignore
//! conn.transaction(async |conn| {
//!     set_scope(conn, Scope::Tenant(tenant)).await?;
//!     let member = /* the change */;
//!     record_audit(conn, &NewAuditEvent {
//!         organization_id: Some(tenant),
//!         actor_id: Some(&caller.subject),          // or the original caller for services
//!         actor_role: Some("admin"),
//!         action: "tenantry.admin.v1.OrganizationService/RemoveMember",
//!         target_type: Some("member"),
//!         target_id: Some(member.id.to_string()),
//!         metadata: serde_json::json!({ "changed_fields": ["org_role"] }),
//!         request_id: None,
//!     }).await?;
//!     Ok(..)
//! })
//! ```
//!
//! Conventions: `action` is the fully-qualified RPC name (`<package>.<Service>/<Method>`);
//! system actions that no RPC triggers use `system/<what>` (e.g. `system/TrialExpired`).
//! `metadata` names changed fields and gives reasons; it **never** holds a secret (no password,
//! hash, token or integration secret). Under a tenant scope only that tenant's events are
//! visible; platform events (`organization_id` NULL) need platform scope.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::audit_events;

/// An audit event row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditEvent {
    /// Event id.
    pub id: Uuid,
    /// Tenant concerned; `None` for platform events.
    pub organization_id: Option<Uuid>,
    /// The actor's subject (user id, or service name).
    pub actor_id: Option<String>,
    /// `super_admin`, `service`, an org role, or `system`.
    pub actor_role: Option<String>,
    /// Fully-qualified RPC name, or `system/<what>`.
    pub action: String,
    /// Kind of object acted on (`tenant`, `member`, ...).
    pub target_type: Option<String>,
    /// Id of the object acted on.
    pub target_id: Option<String>,
    /// Details: changed field names, reason, ... (a JSON object, never secrets).
    pub metadata: serde_json::Value,
    /// The request's idempotency key, when it had one.
    pub request_id: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// An audit event to record.
///
/// `None` is written as NULL (each optional column's default), not as `DEFAULT`: the INSERT then
/// has one text whatever is set, which keeps it prepared on the connection instead of parsed
/// and planned on every write.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
pub struct NewAuditEvent<'a> {
    /// Tenant concerned; `None` for a platform event.
    pub organization_id: Option<Uuid>,
    /// The actor's subject.
    pub actor_id: Option<&'a str>,
    /// The actor's role.
    pub actor_role: Option<&'a str>,
    /// Fully-qualified RPC name, or `system/<what>`.
    pub action: &'a str,
    /// Kind of object acted on.
    pub target_type: Option<&'a str>,
    /// Id of the object acted on.
    pub target_id: Option<String>,
    /// A JSON object: changed field names, reason, ... Never secrets.
    pub metadata: serde_json::Value,
    /// The request's idempotency key.
    pub request_id: Option<&'a str>,
}

/// Records an audit event in the current transaction (see the module docs).
///
/// # Errors
///
/// The database error (for example a `metadata` that is not a JSON object).
pub async fn record_audit<C>(conn: &mut C, event: &NewAuditEvent<'_>) -> QueryResult<()>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send,
{
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Filters of [`list_page`] and [`count`]. Unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Only this tenant's events.
    pub organization_id: Option<Uuid>,
    /// Exact action.
    pub action: Option<&'a str>,
    /// Exact actor.
    pub actor_id: Option<&'a str>,
    /// Exact target type.
    pub target_type: Option<&'a str>,
    /// Exact target id.
    pub target_id: Option<&'a str>,
    /// At or after.
    pub start_time: Option<DateTime<Utc>>,
    /// Before.
    pub end_time: Option<DateTime<Utc>>,
}

fn filtered<'a>(f: &AuditFilter<'a>) -> audit_events::BoxedQuery<'a, diesel::pg::Pg> {
    use crate::schema::audit_events::dsl as a;
    let mut q = a::audit_events.into_boxed();
    if let Some(t) = f.organization_id {
        q = q.filter(a::organization_id.eq(t));
    }
    if let Some(v) = f.action {
        q = q.filter(a::action.eq(v));
    }
    if let Some(v) = f.actor_id {
        q = q.filter(a::actor_id.eq(v));
    }
    if let Some(v) = f.target_type {
        q = q.filter(a::target_type.eq(v));
    }
    if let Some(v) = f.target_id {
        q = q.filter(a::target_id.eq(v));
    }
    if let Some(v) = f.start_time {
        q = q.filter(a::created_at.ge(v));
    }
    if let Some(v) = f.end_time {
        q = q.filter(a::created_at.lt(v));
    }
    q
}

/// One page of events, newest first (`created_at DESC, id DESC`), strictly after `after`.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    use crate::schema::audit_events::dsl as a;
    let mut q = filtered(filter);
    if let Some((created, id)) = after {
        q = q.filter(
            a::created_at
                .lt(created)
                .or(a::created_at.eq(created).and(a::id.lt(id))),
        );
    }
    q.order((a::created_at.desc(), a::id.desc()))
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)
        .await
}

/// Counts the events matching `filter`.
///
/// # Errors
///
/// The database error.
pub async fn count(conn: &mut AsyncPgConnection, filter: &AuditFilter<'_>) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}
