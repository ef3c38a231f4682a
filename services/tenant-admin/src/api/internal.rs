//! Calls that provisioning makes into tenant-admin: `tenantry.admin.v1.TenantInternalService`
//! (service tokens only).

use chrono::{Duration as Days, Utc};
use diesel::result::DatabaseErrorKind;
use diesel_async::AsyncConnection;
use prost::Message as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tenantry_auth::Caller;
use tenantry_db::models::organization::{self, LifecycleChangeset, Status};
use tenantry_db::models::user::{self, LoginName, NewUser};
use tenantry_db::models::{audit, idempotency};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_runtime::error::{ApiError, Violations};
use tonic::{Request, Response, Status as GrpcStatus};

use super::State;
use crate::audit_trail::{Actor, action};
use crate::tenant_access::not_found;
use crate::{convert, passwords, validate};

const SERVICE: &str = "TenantInternalService";

/// RPCs for provisioning.
pub(crate) struct InternalApi {
    state: State,
}

impl InternalApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

/// Maps a username unique violation to ALREADY_EXISTS.
fn username_taken(e: diesel::result::Error, username: &str) -> ApiError {
    if let diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &e
        && info.constraint_name() == Some("users_organization_id_lower_username_key")
    {
        return ApiError::AlreadyExists(format!("username '{username}' is taken"));
    }
    ApiError::from(e)
}

#[tonic::async_trait]
impl pb::tenant_internal_service_server::TenantInternalService for InternalApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "CreateTenantAdmin"))]
    async fn create_tenant_admin(
        &self,
        request: Request<pb::CreateTenantAdminRequest>,
    ) -> Result<Response<pb::CreateTenantAdminResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let tenant = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        validate::email(&mut v, "email", req.email.trim(), false);
        let username = req.username.trim();
        if !username.is_empty() {
            validate::length(&mut v, "username", username, 3, 50);
            if username.chars().any(|c| c.is_whitespace() || c == '@') {
                v.add("username", "must not contain spaces or '@'");
            }
        }
        let given_password = req.password.as_deref().filter(|p| !p.is_empty());
        if let Some(p) = given_password {
            passwords::check_policy(&mut v, "password", p);
        }
        validate::request_id(&mut v, "request_id", &req.request_id, true);
        validate::max_length(&mut v, "first_name", &req.first_name, 100);
        validate::max_length(&mut v, "last_name", &req.last_name, 100);
        v.finish()?;
        let tenant = tenant.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;
        // The payload fingerprint leaves the password out: a fast hash of a secret is never
        // stored.
        let hash_of_request = Sha256::digest(
            pb::CreateTenantAdminRequest {
                request_id: String::new(),
                password: given_password.map(|_| String::new()),
                ..req.clone()
            }
            .encode_to_vec(),
        )
        .to_vec();

        // Defaults and a cheap look-up first, so that a retry spends no bcrypt hash.
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let (email, username, exists) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                let org = organization::find(conn, tenant)
                    .await
                    .map_err(|e| not_found(e, "tenant"))?;
                let email = if req.email.trim().is_empty() {
                    org.email.clone().unwrap_or_default()
                } else {
                    req.email.trim().to_owned()
                };
                if email.is_empty() {
                    return Err(ApiError::field(
                        "email",
                        "is required (the tenant has no e-mail)",
                    ));
                }
                let username = if username.is_empty() {
                    format!("admin_{}", org.slug)
                } else {
                    username.to_owned()
                };
                let exists = user::find_by_login(conn, tenant, LoginName::Email(&email))
                    .await?
                    .is_some();
                Ok((email, username, exists))
            })
            .await?;
        drop(conn);

        let generated = (!exists && given_password.is_none()).then(passwords::generate);
        let password_hash = if exists {
            None
        } else {
            let plain = SecretString::from(
                given_password
                    .map(str::to_owned)
                    .or_else(|| generated.clone())
                    .unwrap_or_default(),
            );
            Some(self.state.passwords.hash(&plain).await?)
        };

        let method = action(SERVICE, "CreateTenantAdmin");
        let request_id = req.request_id.as_str();
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let response = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                match idempotency::claim(conn, &method, request_id, Some(tenant), &hash_of_request)
                    .await?
                {
                    idempotency::Claim::Fresh => {}
                    idempotency::Claim::Replay(bytes) => {
                        return pb::CreateTenantAdminResponse::decode(bytes.as_slice())
                            .map_err(ApiError::internal);
                    }
                    idempotency::Claim::Mismatch => {
                        return Err(ApiError::field(
                            "request_id",
                            "was already used with a different request",
                        ));
                    }
                    idempotency::Claim::Pending => {
                        return Err(ApiError::Unavailable(
                            "a request with this request_id is in progress; retry".into(),
                        ));
                    }
                }
                set_scope(conn, Scope::Tenant(tenant)).await?;
                let existing = user::find_by_login(conn, tenant, LoginName::Email(&email)).await?;
                let (user_id, created, changed) = if let Some(u) = existing {
                    let made_admin = u.org_role != "admin";
                    if made_admin {
                        user::set_role(conn, tenant, u.id, "admin").await?;
                    }
                    (u.id, false, made_admin)
                } else {
                    let Some(hash) = password_hash.as_deref() else {
                        return Err(ApiError::Unavailable(
                            "the user changed concurrently; retry".into(),
                        ));
                    };
                    set_scope(conn, Scope::Platform).await?;
                    if organization::add_users(conn, tenant, 1).await?.is_none() {
                        return Err(ApiError::ResourceExhausted(
                            "the tenant has reached max_users".into(),
                        ));
                    }
                    set_scope(conn, Scope::Tenant(tenant)).await?;
                    let u = user::insert(
                        conn,
                        &NewUser {
                            organization_id: tenant,
                            email: &email,
                            username: &username,
                            password_hash: Some(hash),
                            first_name: (!req.first_name.is_empty()).then_some(&req.first_name),
                            last_name: (!req.last_name.is_empty()).then_some(&req.last_name),
                            org_role: "admin",
                            status: user::status::ACTIVE,
                        },
                    )
                    .await
                    .map_err(|e| username_taken(e, &username))?;
                    (u.id, true, true)
                };
                if changed {
                    audit::record_audit(
                        conn,
                        &actor.event(
                            Some(tenant),
                            &method,
                            "user",
                            user_id,
                            serde_json::json!({
                                "created": created,
                                "org_role": "admin",
                                "password_generated": created && generated.is_some(),
                            }),
                            Some(request_id),
                        ),
                    )
                    .await?;
                }
                let stored = pb::CreateTenantAdminResponse {
                    user_id: user_id.to_string(),
                    generated_password: None,
                    created,
                };
                set_scope(conn, Scope::Platform).await?;
                idempotency::complete(
                    conn,
                    &method,
                    request_id,
                    Some(tenant),
                    &stored.encode_to_vec(),
                )
                .await?;
                Ok(pb::CreateTenantAdminResponse {
                    generated_password: if created { generated.clone() } else { None },
                    ..stored
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "MarkTenantVerified"))]
    async fn mark_tenant_verified(
        &self,
        request: Request<pb::MarkTenantVerifiedRequest>,
    ) -> Result<Response<pb::MarkTenantVerifiedResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let mut v = Violations::new();
        let tenant = validate::uuid(&mut v, "tenant_id", &request.get_ref().tenant_id);
        v.finish()?;
        let tenant = tenant.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;
        let method = action(SERVICE, "MarkTenantVerified");

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let org = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                let org = organization::find_for_update(conn, tenant)
                    .await
                    .map_err(|e| not_found(e, "tenant"))?;
                if org.status() == Status::Cancelled {
                    return Err(ApiError::FailedPrecondition(
                        if org.deleted_at.is_some() {
                            "tenant is deleted"
                        } else {
                            "tenant is cancelled"
                        }
                        .into(),
                    ));
                }
                let pending = org.status() == Status::Pending;
                if org.is_verified && !pending {
                    return Ok(org);
                }
                let now = Utc::now();
                let mut changes = LifecycleChangeset {
                    is_verified: Some(true),
                    ..Default::default()
                };
                if pending {
                    if org.trial_days > 0 && org.trial_started_at.is_none() {
                        changes.status = Some(Status::Trial.as_str());
                        changes.trial_started_at = Some(Some(now));
                        changes.trial_expires_at =
                            Some(Some(now + Days::days(i64::from(org.trial_days))));
                    } else {
                        changes.status = Some(org.resumed_status(now).as_str());
                    }
                }
                let updated = organization::update_lifecycle(conn, tenant, &changes).await?;
                audit::record_audit(
                    conn,
                    &actor.event(
                        Some(tenant),
                        &method,
                        "tenant",
                        tenant,
                        serde_json::json!({
                            "previous_status": org.status,
                            "new_status": updated.status,
                            "changed_fields": ["is_verified", "status"],
                        }),
                        None,
                    ),
                )
                .await?;
                Ok(updated)
            })
            .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::MarkTenantVerifiedResponse {
            tenant_id: tenant.to_string(),
            status: convert::status_to_proto(org.status()).into(),
            is_verified: org.is_verified,
        }))
    }
}
