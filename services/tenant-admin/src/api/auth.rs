//! Login and set-password: `tenantry.admin.v1.AuthService` (public).
//!
//! Login answers one UNAUTHENTICATED `invalid credentials` for an unknown tenant, an unknown
//! user, a wrong password, a locked account and a user who may not sign in (inactive, no
//! password yet); unknown users cost a dummy bcrypt verification, so the answer takes as long.
//! Only a caller who gave the right password learns that the tenant is suspended or cancelled
//! (FAILED_PRECONDITION, as the proto documents). Five failures in a row lock the account for
//! 30 minutes. bcrypt runs on the blocking pool; no database connection is held meanwhile.
//!
//! An empty `tenant_slug` signs in a platform admin (table `platform_admins`, created by
//! `tenantctl create-super-admin`) by e-mail: the token has role `super_admin` and no tenant.
//! The same lockout, the same single answer for every failure, the same audit events (without
//! a tenant).

use chrono::Utc;
use diesel_async::AsyncConnection;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tenantry_auth::{OrgRole, PlatformRole};
use tenantry_db::models::audit;
use tenantry_db::models::organization::{self, Organization};
use tenantry_db::models::user::{self, LoginName, PlatformAdmin, User};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::login_request::Identifier;
use tenantry_runtime::error::{ApiError, ApiResult, Violations};
use tonic::{Request, Response, Status};

use super::State;
use crate::audit_trail::{Actor, action};
use crate::convert;
use crate::passwords;
use crate::tenant_access;

const SERVICE: &str = "AuthService";
/// Lifetime, in seconds, of every access token tenant-admin returns (Login, and the org-scoped
/// tokens of the organization RPCs through `orgs::secrets`).
pub(crate) const ACCESS_TOKEN_TTL_SECS: i64 = 3600;

fn invalid_credentials() -> ApiError {
    ApiError::Unauthenticated("invalid credentials".into())
}

/// Login and set-password.
pub(crate) struct AuthApi {
    state: State,
}

impl AuthApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }

    /// Finds the tenant by slug (a narrow platform lookup) and the user in it (tenant scope).
    async fn lookup(
        &self,
        slug: &str,
        name: LoginName<'_>,
    ) -> ApiResult<Option<(Organization, Option<User>)>> {
        let mut conn = self.state.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let org = match organization::find_by_slug(conn, slug).await {
                Ok(o) => o,
                Err(diesel::result::Error::NotFound) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            set_scope(conn, Scope::Tenant(org.id)).await?;
            let user = user::find_by_login(conn, org.id, name).await?;
            Ok(Some((org, user)))
        })
        .await
    }

    /// Records a failed attempt (and the audit event) for an existing user.
    async fn fail(&self, org: &Organization, u: &User) -> ApiResult<()> {
        let method = action(SERVICE, "Login");
        let actor = Actor::public(u.id);
        let mut conn = self.state.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Tenant(org.id)).await?;
            let after = user::record_failed_login(conn, u.id).await?;
            let locked = after.is_locked(Utc::now()) && !u.is_locked(Utc::now());
            audit::record_audit(
                conn,
                &actor.event(
                    Some(org.id),
                    &method,
                    "user",
                    u.id,
                    serde_json::json!({
                        "outcome": "failure",
                        "failed_login_attempts": after.failed_login_attempts,
                        "locked": locked,
                    }),
                    None,
                ),
            )
            .await?;
            Ok(())
        })
        .await
    }
}

impl AuthApi {
    /// Finds a platform admin by e-mail (platform scope).
    async fn lookup_platform_admin(&self, email: &str) -> ApiResult<Option<PlatformAdmin>> {
        let mut conn = self.state.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            Ok(user::find_platform_admin_by_email(conn, email).await?)
        })
        .await
    }

    /// Records the outcome of a platform admin's login (failure counter or success) and its
    /// audit event, which has no tenant.
    async fn record_platform_login(&self, a: &PlatformAdmin, success: bool) -> ApiResult<()> {
        let method = action(SERVICE, "Login");
        let actor = Actor::public(a.id);
        let mut conn = self.state.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let metadata = if success {
                user::record_platform_admin_login(conn, a.id).await?;
                serde_json::json!({ "outcome": "success" })
            } else {
                let after = user::record_platform_admin_failed_login(conn, a.id).await?;
                let locked = after.is_locked(Utc::now()) && !a.is_locked(Utc::now());
                serde_json::json!({
                    "outcome": "failure",
                    "failed_login_attempts": after.failed_login_attempts,
                    "locked": locked,
                })
            };
            audit::record_audit(
                conn,
                &actor.event(None, &method, "platform_admin", a.id, metadata, None),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Login with an empty tenant slug: a platform admin by e-mail → a `super_admin` token.
    async fn login_platform_admin(
        &self,
        email: &str,
        password: SecretString,
    ) -> ApiResult<pb::LoginResponse> {
        let pw = &self.state.passwords;
        let found = self.lookup_platform_admin(email).await?;
        let admin = match found {
            Some(a) if !a.is_locked(Utc::now()) => a,
            _ => {
                // Unknown or locked: same work, same answer.
                pw.verify_dummy(&password).await?;
                return Err(invalid_credentials());
            }
        };
        if !pw.verify(&password, &admin.password_hash).await? {
            self.record_platform_login(&admin, false).await?;
            return Err(invalid_credentials());
        }
        self.record_platform_login(&admin, true).await?;
        let token = self
            .state
            .signer
            .mint(
                &admin.id.to_string(),
                Some(PlatformRole::SuperAdmin),
                None,
                ACCESS_TOKEN_TTL_SECS,
            )
            .map_err(ApiError::internal)?;
        Ok(pb::LoginResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            user_id: admin.id.to_string(),
            tenant_id: String::new(),
            org_role: tenantry_proto::common::v1::OrgRole::Unspecified.into(),
        })
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "Login"))]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let platform = req.tenant_slug.trim().is_empty();
        if platform && matches!(req.identifier, Some(Identifier::Username(_))) {
            v.add(
                "tenant_slug",
                "is required to sign in by username (platform admins sign in by email)",
            );
        }
        let name = match &req.identifier {
            Some(Identifier::Email(e)) if !e.trim().is_empty() => Some(LoginName::Email(e.trim())),
            Some(Identifier::Username(u)) if !u.trim().is_empty() => {
                Some(LoginName::Username(u.trim()))
            }
            Some(Identifier::Email(_)) => {
                v.add("email", "is required");
                None
            }
            Some(Identifier::Username(_)) => {
                v.add("username", "is required");
                None
            }
            None => {
                v.add("identifier", "an email or a username is required");
                None
            }
        };
        if req.password.is_empty() {
            v.add("password", "is required");
        }
        v.finish()?;
        let name = name.ok_or_else(|| ApiError::field("identifier", "is required"))?;
        let password = SecretString::from(req.password);
        if platform {
            let LoginName::Email(email) = name else {
                return Err(ApiError::field("tenant_slug", "is required").into());
            };
            return Ok(Response::new(
                self.login_platform_admin(email, password).await?,
            ));
        }
        let pw = &self.state.passwords;

        let found = self.lookup(req.tenant_slug.trim(), name).await?;
        let now = Utc::now();
        let (org, u) = match found {
            Some((org, Some(u))) if !u.is_locked(now) && u.password_hash.is_some() => (org, u),
            Some((org, Some(u))) => {
                // Locked, or no password yet: same work, same answer.
                pw.verify_dummy(&password).await?;
                if !u.is_locked(now) {
                    self.fail(&org, &u).await?;
                }
                return Err(invalid_credentials().into());
            }
            _ => {
                pw.verify_dummy(&password).await?;
                return Err(invalid_credentials().into());
            }
        };
        let hash = u.password_hash.clone().unwrap_or_default();
        if !pw.verify(&password, &hash).await? {
            self.fail(&org, &u).await?;
            return Err(invalid_credentials().into());
        }
        let role: Option<OrgRole> = u.org_role.parse().ok();
        let (Some(role), true) = (role, u.status == user::status::ACTIVE) else {
            return Err(invalid_credentials().into());
        };
        tenant_access::ensure_usable(&org)?;

        let method = action(SERVICE, "Login");
        let actor = Actor::public(u.id);
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Tenant(org.id)).await?;
            user::record_login(conn, u.id).await?;
            audit::record_audit(
                conn,
                &actor.event(
                    Some(org.id),
                    &method,
                    "user",
                    u.id,
                    serde_json::json!({ "outcome": "success" }),
                    None,
                ),
            )
            .await?;
            Ok(())
        })
        .await?;
        drop(conn);

        let token = self
            .state
            .signer
            .mint(
                &u.id.to_string(),
                None,
                Some((org.id, role)),
                ACCESS_TOKEN_TTL_SECS,
            )
            .map_err(ApiError::internal)?;
        Ok(Response::new(pb::LoginResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            user_id: u.id.to_string(),
            tenant_id: org.id.to_string(),
            org_role: convert::role_to_proto(role).into(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "SetPassword"))]
    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        if req.token.is_empty() {
            v.add("token", "is required");
        } else if req.token.len() > 512 {
            v.add("token", "is malformed");
        }
        passwords::check_policy(&mut v, "new_password", &req.new_password);
        v.finish()?;
        let token_hash = Sha256::digest(req.token.as_bytes()).to_vec();
        let password = SecretString::from(req.new_password);

        // Check the token before spending a bcrypt hash on it.
        let check = |t: &user::PasswordToken| -> ApiResult<()> {
            if t.used_at.is_some() {
                Err(ApiError::FailedPrecondition(
                    "token was already used".into(),
                ))
            } else if t.expires_at <= Utc::now() {
                Err(ApiError::FailedPrecondition("token has expired".into()))
            } else {
                Ok(())
            }
        };
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let t = user::find_password_token(conn, &token_hash)
                .await?
                .ok_or(ApiError::NotFound("token"))?;
            check(&t)
        })
        .await?;
        drop(conn);

        let hash = self.state.passwords.hash(&password).await?;
        let method = action(SERVICE, "SetPassword");
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let (user_id, tenant) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                let t = user::find_password_token(conn, &token_hash)
                    .await?
                    .ok_or(ApiError::NotFound("token"))?;
                check(&t)?;
                set_scope(conn, Scope::Tenant(t.organization_id)).await?;
                user::use_password_token(conn, t.id).await?;
                let u = user::set_password(conn, t.organization_id, t.user_id, &hash).await?;
                let actor = Actor::public(u.id);
                audit::record_audit(
                    conn,
                    &actor.event(
                        Some(t.organization_id),
                        &method,
                        "user",
                        u.id,
                        serde_json::json!({
                            "purpose": t.purpose,
                            "changed_fields": ["password_hash"],
                        }),
                        None,
                    ),
                )
                .await?;
                Ok((u.id, t.organization_id))
            })
            .await?;
        Ok(Response::new(pb::SetPasswordResponse {
            user_id: user_id.to_string(),
            tenant_id: tenant.to_string(),
        }))
    }
}
