//! Members: the `users` of one tenant as the organization sees them (role, profile, status).
//! Login-related columns (password hash, lockout) are not read here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::users;

/// A user of a tenant, without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct Member {
    /// User id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// E-mail address.
    pub email: String,
    /// Username.
    pub username: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// `admin`, `manager`, `teacher` or `member`.
    pub org_role: String,
    /// `active`, `inactive`, `suspended` or `pending`.
    pub status: String,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// When the user joined.
    pub created_at: DateTime<Utc>,
}

/// A new member with a password already hashed.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewMember<'a> {
    /// User id, chosen by the caller (so a creator can reference it before the insert).
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// E-mail address (lower-cased by the caller).
    pub email: &'a str,
    /// Username.
    pub username: &'a str,
    /// bcrypt hash.
    pub password_hash: &'a str,
    /// First name.
    pub first_name: Option<&'a str>,
    /// Last name.
    pub last_name: Option<&'a str>,
    /// Organization role.
    pub org_role: &'a str,
    /// Account status.
    pub status: &'a str,
    /// Whether the e-mail is verified (true when it came through an invitation).
    pub email_verified: bool,
    /// When the password was set.
    pub password_changed_at: DateTime<Utc>,
}

/// Filters of [`list_page`] and [`count`].
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    /// Only this role.
    pub org_role: Option<String>,
    /// Case-insensitive substring of e-mail, username, first or last name.
    pub query: Option<String>,
}

fn filtered(org: Uuid, filter: &MemberFilter) -> users::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = users::table
        .filter(users::organization_id.eq(org))
        .into_boxed();
    if let Some(role) = &filter.org_role {
        q = q.filter(users::org_role.eq(role.clone()));
    }
    if let Some(text) = &filter.query {
        let p = format!("%{}%", super::organization::escape_like(text));
        q = q.filter(
            users::email
                .ilike(p.clone())
                .or(users::username.ilike(p.clone()))
                .or(users::first_name.ilike(p.clone()))
                .or(users::last_name.ilike(p)),
        );
    }
    q
}

/// Returns up to `limit` members ordered by `(created_at, id)`, after the keyset `after`.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    filter: &MemberFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Member>> {
    let mut q = filtered(org, filter);
    if let Some((at, id)) = after {
        q = q.filter(
            users::created_at
                .gt(at)
                .or(users::created_at.eq(at).and(users::id.gt(id))),
        );
    }
    q.order((users::created_at.asc(), users::id.asc()))
        .limit(limit)
        .select(Member::as_select())
        .load(conn)
        .await
}

/// Counts the members matching `filter`.
///
/// # Errors
///
/// The database error.
pub async fn count(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    filter: &MemberFilter,
) -> QueryResult<i64> {
    filtered(org, filter).count().get_result(conn).await
}

/// Finds one member of `org`.
///
/// # Errors
///
/// The database error.
pub async fn find(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
) -> QueryResult<Option<Member>> {
    users::table
        .filter(users::organization_id.eq(org).and(users::id.eq(id)))
        .select(Member::as_select())
        .first(conn)
        .await
        .optional()
}

/// Tells whether a user of `org` has this e-mail (case-insensitive).
///
/// # Errors
///
/// The database error.
pub async fn email_taken(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    email: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(
            users::organization_id
                .eq(org)
                .and(lower(users::email).eq(email.to_lowercase())),
        ),
    ))
    .get_result(conn)
    .await
}

diesel::define_sql_function! {
    /// SQL `lower(text)`.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Counts the admins of `org`.
///
/// # Errors
///
/// The database error.
pub async fn count_admins(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<i64> {
    users::table
        .filter(
            users::organization_id
                .eq(org)
                .and(users::org_role.eq("admin")),
        )
        .count()
        .get_result(conn)
        .await
}

/// Inserts a member.
///
/// # Errors
///
/// The database error (a unique violation on e-mail or username).
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewMember<'_>) -> QueryResult<Member> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(Member::as_returning())
        .get_result(conn)
        .await
}

/// Changes a member's role.
///
/// # Errors
///
/// The database error; `NotFound` when no such member.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    id: Uuid,
    role: &str,
) -> QueryResult<Member> {
    diesel::update(users::table.filter(users::organization_id.eq(org).and(users::id.eq(id))))
        .set(users::org_role.eq(role))
        .returning(Member::as_returning())
        .get_result(conn)
        .await
}

/// Deletes a member; returns how many rows went (0 or 1).
///
/// # Errors
///
/// The database error.
pub async fn delete(conn: &mut AsyncPgConnection, org: Uuid, id: Uuid) -> QueryResult<usize> {
    diesel::delete(users::table.filter(users::organization_id.eq(org).and(users::id.eq(id))))
        .execute(conn)
        .await
}
