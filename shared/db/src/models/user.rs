//! Users of a tenant (table `users`), their single-use set-password tokens (table
//! `password_tokens`) and the platform (super) admin accounts (table `platform_admins`, platform
//! scope only), all owned by tenant-admin.
//!
//! E-mail and username are unique per tenant, case-insensitively (indexes
//! `users_organization_id_lower_email_key` and `users_organization_id_lower_username_key`), so
//! lookups compare `lower(..)`. Password hashes are bcrypt strings; this module never sees a
//! plain-text password. Remember [`crate::models::organization::add_users`] when inserting or
//! deleting a member: `current_users` follows the members in the same transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::prepared::Cached;
use crate::schema::{password_tokens, platform_admins, users};

diesel::define_sql_function! {
    /// SQL `lower(text)`, matching the case-insensitive unique indexes.
    #[sql_name = "lower"]
    fn lower_text(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Consecutive failed logins that lock an account.
pub const MAX_FAILED_LOGINS: i32 = 5;
/// How long a lock lasts, in minutes.
pub const LOCK_MINUTES: i32 = 30;

/// Account status of a user (column `status`).
pub mod status {
    /// May sign in.
    pub const ACTIVE: &str = "active";
    /// Disabled by an admin.
    pub const INACTIVE: &str = "inactive";
    /// Suspended.
    pub const SUSPENDED: &str = "suspended";
    /// Created, no password set yet.
    pub const PENDING: &str = "pending";
}

/// A user row: every column of `users`, in table order.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// User id.
    pub id: Uuid,
    /// Tenant.
    pub organization_id: Uuid,
    /// E-mail (unique per tenant, case-insensitive).
    pub email: String,
    /// Username (unique per tenant, case-insensitive).
    pub username: String,
    /// bcrypt hash; `None` until a password is set. Never log or return it.
    pub password_hash: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// `admin`, `manager`, `teacher` or `member`.
    pub org_role: String,
    /// See [`status`].
    pub status: String,
    /// Whether the e-mail is verified.
    pub email_verified: bool,
    /// Consecutive failed logins.
    pub failed_login_attempts: i32,
    /// Locked until this time (after [`MAX_FAILED_LOGINS`] failures).
    pub locked_until: Option<DateTime<Utc>>,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Last password change.
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// Tells whether the account is locked at `at`.
    #[must_use]
    pub fn is_locked(&self, at: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > at)
    }
}

/// A user to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Tenant.
    pub organization_id: Uuid,
    /// E-mail.
    pub email: &'a str,
    /// Username.
    pub username: &'a str,
    /// bcrypt hash, if a password is set now.
    pub password_hash: Option<&'a str>,
    /// First name.
    pub first_name: Option<&'a str>,
    /// Last name.
    pub last_name: Option<&'a str>,
    /// Org role column value.
    pub org_role: &'a str,
    /// Status column value (see [`status`]).
    pub status: &'a str,
}

/// How a login names the user.
#[derive(Debug, Clone, Copy)]
pub enum LoginName<'a> {
    /// By e-mail (case-insensitive).
    Email(&'a str),
    /// By username (case-insensitive).
    Username(&'a str),
}

/// Loads a user of `tenant` by id.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find(conn: &mut AsyncPgConnection, tenant: Uuid, id: Uuid) -> QueryResult<User> {
    users::table
        .filter(users::organization_id.eq(tenant))
        .filter(users::id.eq(id))
        .select(User::as_select())
        .first(conn)
        .await
}

/// Loads a user of `tenant` by e-mail or username, case-insensitively; `None` if absent.
///
/// # Errors
///
/// The database error.
pub async fn find_by_login(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    name: LoginName<'_>,
) -> QueryResult<Option<User>> {
    let q = users::table
        .filter(users::organization_id.eq(tenant))
        .select(User::as_select());
    match name {
        LoginName::Email(e) => {
            q.filter(lower_text(users::email).eq(e.to_lowercase()))
                .first(conn)
                .await
        }
        LoginName::Username(u) => {
            q.filter(lower_text(users::username).eq(u.to_lowercase()))
                .first(conn)
                .await
        }
    }
    .optional()
}

/// Inserts a user.
///
/// # Errors
///
/// A unique violation (`users_organization_id_lower_email_key` or
/// `users_organization_id_lower_username_key`), a check violation, or the database error.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Sets the org role of a user.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    id: Uuid,
    org_role: &str,
) -> QueryResult<User> {
    Cached::always(
        diesel::update(
            users::table
                .filter(users::organization_id.eq(tenant))
                .filter(users::id.eq(id)),
        )
        .set(users::org_role.eq(org_role))
        .returning(User::as_returning()),
    )
    .get_result(conn)
    .await
}

/// Records a failed login atomically: the counter goes up by one (restarting at 1 when an
/// earlier lock has run out), and the account is locked for [`LOCK_MINUTES`] when it reaches
/// [`MAX_FAILED_LOGINS`]. Returns the updated user.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn record_failed_login(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<User> {
    diesel::sql_query(failed_login_sql("users"))
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Integer, _>(MAX_FAILED_LOGINS)
        .bind::<diesel::sql_types::Integer, _>(LOCK_MINUTES)
        .get_result::<UserByName>(conn)
        .await
        .map(User::from)
}

/// The UPDATE behind [`record_failed_login`] and [`record_platform_admin_failed_login`]
/// (`$1` id, `$2` [`MAX_FAILED_LOGINS`], `$3` [`LOCK_MINUTES`]); `table` is a constant.
fn failed_login_sql(table: &str) -> String {
    format!(
        "UPDATE {table} SET \
           failed_login_attempts = CASE WHEN locked_until IS NOT NULL AND locked_until <= now() \
                                        THEN 1 ELSE failed_login_attempts + 1 END, \
           locked_until = CASE \
             WHEN locked_until IS NOT NULL AND locked_until > now() THEN locked_until \
             WHEN (CASE WHEN locked_until IS NOT NULL AND locked_until <= now() \
                        THEN 1 ELSE failed_login_attempts + 1 END) >= $2 \
               THEN now() + make_interval(mins => $3) \
             ELSE NULL END \
         WHERE id = $1 RETURNING *"
    )
}

/// Records a successful login: clears the failure counter and lock, sets `last_login_at`.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn record_login(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    Cached::always(diesel::update(users::table.find(id)).set((
        users::failed_login_attempts.eq(0),
        users::locked_until.eq(None::<DateTime<Utc>>),
        users::last_login_at.eq(Some(Utc::now())),
    )))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Sets a new password hash: clears any login lock, activates a pending user and stamps
/// `password_changed_at`.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn set_password(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    id: Uuid,
    hash: &str,
) -> QueryResult<User> {
    diesel::sql_query(
        "UPDATE users SET password_hash = $3, password_changed_at = now(), \
           failed_login_attempts = 0, locked_until = NULL, \
           status = CASE WHEN status = 'pending' THEN 'active' ELSE status END \
         WHERE organization_id = $1 AND id = $2 RETURNING *",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant)
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(hash)
    .get_result::<UserByName>(conn)
    .await
    .map(User::from)
}

/// [`User`] loaded by column name, for raw SQL.
#[derive(QueryableByName)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserByName {
    id: Uuid,
    organization_id: Uuid,
    email: String,
    username: String,
    password_hash: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    org_role: String,
    status: String,
    email_verified: bool,
    failed_login_attempts: i32,
    locked_until: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
    password_changed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserByName> for User {
    fn from(u: UserByName) -> Self {
        Self {
            id: u.id,
            organization_id: u.organization_id,
            email: u.email,
            username: u.username,
            password_hash: u.password_hash,
            first_name: u.first_name,
            last_name: u.last_name,
            org_role: u.org_role,
            status: u.status,
            email_verified: u.email_verified,
            failed_login_attempts: u.failed_login_attempts,
            locked_until: u.locked_until,
            last_login_at: u.last_login_at,
            password_changed_at: u.password_changed_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A set-password token row. The token itself is never stored: `token_hash` is its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = password_tokens, check_for_backend(diesel::pg::Pg))]
pub struct PasswordToken {
    /// Token id.
    pub id: Uuid,
    /// Tenant.
    pub organization_id: Uuid,
    /// The user whose password the token sets.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// `welcome` or `reset`.
    pub purpose: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// When it was used; a used token is refused.
    pub used_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A set-password token to insert (minted by whoever sends the e-mail).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = password_tokens)]
pub struct NewPasswordToken<'a> {
    /// Tenant.
    pub organization_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// `welcome` or `reset`.
    pub purpose: &'a str,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Inserts a set-password token.
///
/// # Errors
///
/// A unique or check violation, or the database error.
pub async fn insert_password_token(
    conn: &mut AsyncPgConnection,
    new: &NewPasswordToken<'_>,
) -> QueryResult<PasswordToken> {
    diesel::insert_into(password_tokens::table)
        .values(new)
        .returning(PasswordToken::as_returning())
        .get_result(conn)
        .await
}

/// Finds a set-password token by the SHA-256 of the token (needs platform scope: the tenant is
/// not known yet), locking it until the transaction ends; `None` if unknown.
///
/// # Errors
///
/// The database error.
pub async fn find_password_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<PasswordToken>> {
    password_tokens::table
        .filter(password_tokens::token_hash.eq(token_hash))
        .select(PasswordToken::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a set-password token used.
///
/// # Errors
///
/// The database error.
pub async fn use_password_token(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    Cached::always(
        diesel::update(password_tokens::table.find(id))
            .set(password_tokens::used_at.eq(Some(Utc::now()))),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// A platform (super) admin account: every column of `platform_admins`, in table order. Visible
/// in platform scope only.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = platform_admins, check_for_backend(diesel::pg::Pg))]
pub struct PlatformAdmin {
    /// Account id (the `sub` of its tokens).
    pub id: Uuid,
    /// E-mail (unique, case-insensitive).
    pub email: String,
    /// bcrypt hash. Never log or return it.
    pub password_hash: String,
    /// Consecutive failed logins.
    pub failed_login_attempts: i32,
    /// Locked until this time (after [`MAX_FAILED_LOGINS`] failures).
    pub locked_until: Option<DateTime<Utc>>,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl PlatformAdmin {
    /// Tells whether the account is locked at `at`.
    #[must_use]
    pub fn is_locked(&self, at: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > at)
    }
}

/// A platform admin to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = platform_admins)]
pub struct NewPlatformAdmin<'a> {
    /// E-mail.
    pub email: &'a str,
    /// bcrypt hash.
    pub password_hash: &'a str,
}

/// Inserts a platform admin (platform scope).
///
/// # Errors
///
/// A unique violation (`platform_admins_lower_email_key`), a check violation
/// (`platform_admins_email_format`), or the database error.
pub async fn insert_platform_admin(
    conn: &mut AsyncPgConnection,
    new: &NewPlatformAdmin<'_>,
) -> QueryResult<PlatformAdmin> {
    diesel::insert_into(platform_admins::table)
        .values(new)
        .returning(PlatformAdmin::as_returning())
        .get_result(conn)
        .await
}

/// Loads a platform admin by e-mail, case-insensitively (platform scope); `None` if absent.
///
/// # Errors
///
/// The database error.
pub async fn find_platform_admin_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<PlatformAdmin>> {
    platform_admins::table
        .filter(lower_text(platform_admins::email).eq(email.to_lowercase()))
        .select(PlatformAdmin::as_select())
        .first(conn)
        .await
        .optional()
}

/// [`record_failed_login`] for a platform admin (platform scope).
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn record_platform_admin_failed_login(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<PlatformAdmin> {
    diesel::sql_query(failed_login_sql("platform_admins"))
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Integer, _>(MAX_FAILED_LOGINS)
        .bind::<diesel::sql_types::Integer, _>(LOCK_MINUTES)
        .get_result::<PlatformAdmin>(conn)
        .await
}

/// [`record_login`] for a platform admin (platform scope).
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn record_platform_admin_login(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<()> {
    Cached::always(diesel::update(platform_admins::table.find(id)).set((
        platform_admins::failed_login_attempts.eq(0),
        platform_admins::locked_until.eq(None::<DateTime<Utc>>),
        platform_admins::last_login_at.eq(Some(Utc::now())),
    )))
    .execute(conn)
    .await
    .map(|_| ())
}
