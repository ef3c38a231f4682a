//! OrganizationService: the organization as its own members see it — profile, members,
//! invitations, subscription, usage and features.
//!
//! Every handler validates first (INVALID_ARGUMENT naming the field, nothing written), then runs
//! one transaction scoped to the tenant of the verified token ([`Caller::resolve_tenant`]); a
//! foreign tenant id answers NOT_FOUND exactly like a random one. Members of a suspended or
//! cancelled tenant get FAILED_PRECONDITION with the reason. Every mutation records an audit
//! event in its transaction.
//!
//! Choices:
//! - A manager may invite managers, teachers and members, not admins (PERMISSION_DENIED), and
//!   may not resend an admin's invitation either.
//! - Seats: members plus pending, unexpired invitations may not pass `max_users` when inviting;
//!   accepting takes a seat under the organization row's lock (`SELECT .. FOR UPDATE`), so
//!   concurrent acceptances never pass the limit. Re-sending an expired invitation takes a seat
//!   again.
//! - The invitation token (32 random bytes, URL-safe base64) is returned once by
//!   CreateInvitation / ResendInvitation; only its SHA-256 is stored. An `invitation` e-mail is
//!   queued in the outbox with the invitation id (never the token).
//! - Accepting creates an active member with the invited role and returns an access token;
//!   an e-mail already used by a user of the tenant is ALREADY_EXISTS.
//! - CreateOrganization starts on the free tier with a 14-day trial, creates the admin (bcrypt
//!   on the blocking pool) and honours `request_id` (a replay returns the first result with a
//!   freshly minted token; the stored copy never holds a token).

use chrono::{Duration, Utc};
use diesel::{ExpressionMethods as _, OptionalExtension as _, SelectableHelper as _};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use prost::Message as _;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use tenantry_auth::{Caller, OrgRole};
use tenantry_db::models::invitation::{self as inv_model, NewInvitation};
use tenantry_db::models::member::{self as member_model, MemberFilter, NewMember};
use tenantry_db::models::organization::{self as org_model, NewOrganization, Tier};
use tenantry_db::models::outbox::{NewOutboxMessage, enqueue};
use tenantry_db::models::settings::{self as settings_model, SettingsChangeset};
use tenantry_db::models::usage::{NewUsageEvent, insert_event};
use tenantry_db::models::{billing as billing_model, idempotency};
use tenantry_db::schema::organizations;
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::common::v1 as common;
use tenantry_proto::settings::v1 as settings_pb;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::State;
use super::orgs::convert::{self, add_months, day_start, month_start};
use super::orgs::{Actor, audit, caller_of, load_tenant, request_id, secrets, subscription};
use crate::validate::{self, Cursor};

/// Fully-qualified name of an OrganizationService RPC (the audit action).
fn action(method: &str) -> String {
    crate::audit_trail::action("OrganizationService", method)
}

/// Length of a self-serve trial.
const TRIAL_DAYS: i32 = 14;
/// Default and largest invitation lifetime, in days.
const INVITATION_DAYS: (i32, i32) = (7, 30);

/// Organizations, members and invitations.
pub(crate) struct OrganizationsApi {
    state: State,
}

impl OrganizationsApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::organization_service_server::OrganizationService for OrganizationsApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::CreateOrganizationResponse>, Status> {
        respond(self.create(request).await)
    }

    async fn get_current_organization(
        &self,
        request: Request<pb::GetCurrentOrganizationRequest>,
    ) -> Result<Response<pb::GetCurrentOrganizationResponse>, Status> {
        let result = async {
            let caller = caller_of(&request)?;
            let tenant = caller.tenant_id.ok_or_else(|| {
                ApiError::FailedPrecondition("the token names no organization".into())
            })?;
            let tenant = self.read_tenant(&caller, tenant).await?;
            Ok(pb::GetCurrentOrganizationResponse {
                tenant: Some(tenant),
            })
        }
        .await;
        respond(result)
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let result = async {
            let caller = caller_of(&request)?;
            let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
            let tenant = self.read_tenant(&caller, tenant).await?;
            Ok(pb::GetOrganizationResponse {
                tenant: Some(tenant),
            })
        }
        .await;
        respond(result)
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::UpdateOrganizationResponse>, Status> {
        respond(self.update(request).await)
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        respond(self.members(request).await)
    }

    async fn update_member_role(
        &self,
        request: Request<pb::UpdateMemberRoleRequest>,
    ) -> Result<Response<pb::UpdateMemberRoleResponse>, Status> {
        respond(self.member_role(request).await)
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        respond(self.remove(request).await)
    }

    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Result<Response<pb::CreateInvitationResponse>, Status> {
        respond(self.invite(request).await)
    }

    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Result<Response<pb::ListInvitationsResponse>, Status> {
        respond(self.invitations(request).await)
    }

    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Result<Response<pb::RevokeInvitationResponse>, Status> {
        respond(self.revoke(request).await)
    }

    async fn resend_invitation(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> Result<Response<pb::ResendInvitationResponse>, Status> {
        respond(self.resend(request).await)
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        respond(self.accept(request.into_inner()).await)
    }

    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        respond(self.decline(request.into_inner()).await)
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionResponse>, Status> {
        respond(self.subscription(request).await)
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        respond(self.usage(request).await)
    }

    async fn get_features(
        &self,
        request: Request<pb::GetFeaturesRequest>,
    ) -> Result<Response<pb::GetFeaturesResponse>, Status> {
        respond(self.features(request).await)
    }
}

/// Checks a username: 3–50 characters, no whitespace and no `@`.
fn check_username(v: &mut Violations, field: &str, s: &str) {
    validate::length(v, field, s, 3, 50);
    if s.chars().any(|c| c.is_whitespace() || c == '@') {
        v.add(field, "must not contain spaces or @");
    }
}

/// Tells whether `s` is a BCP 47-like locale (`en`, `en-US`, `zh_Hant_TW`), ≤10 characters.
fn is_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && s.len() <= 10
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Checks a time zone name: 1–100 characters, no whitespace.
fn check_timezone(v: &mut Violations, field: &str, s: &str) {
    validate::length(v, field, s, 1, 100);
    if s.chars().any(char::is_whitespace) {
        v.add(field, "must be an IANA time zone name");
    }
}

const ORGANIZATION_TYPES: [&str; 3] = ["education", "corporate", "nonprofit"];
const SIZE_CATEGORIES: [&str; 4] = ["small", "medium", "large", "enterprise"];

/// The role a role filter or invitation names: `Ok(None)` for unset.
fn parse_role(v: &mut Violations, field: &str, value: i32) -> Option<OrgRole> {
    if value != 0 && convert::role_from_pb(value).is_none() {
        v.add(field, "is not a known role");
    }
    convert::role_from_pb(value)
}

/// An error for a username or e-mail unique violation on `users`.
fn user_conflict(e: ApiError) -> ApiError {
    match e {
        ApiError::AlreadyExists(m) if m.contains("username") => {
            ApiError::AlreadyExists("username is taken in the organization".into())
        }
        ApiError::AlreadyExists(m) if m.contains("email") => {
            ApiError::AlreadyExists("a user with this e-mail exists in the organization".into())
        }
        other => other,
    }
}

impl OrganizationsApi {
    /// Reads a tenant for a member (usable tenants only) or a super admin (any).
    async fn read_tenant(&self, caller: &Caller, tenant: Uuid) -> ApiResult<pb::Tenant> {
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            set_scope(conn, Scope::Tenant(tenant)).await?;
            let org = load_tenant(conn, caller, tenant, false).await?;
            super::orgs::tenant_message(conn, &org).await
        })
        .await
    }

    async fn create(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> ApiResult<pb::CreateOrganizationResponse> {
        // Public when self-serve signup is on (no caller), else a super admin (the layer checks).
        let caller = Caller::of(&request).ok().cloned();
        let req = request.into_inner();
        let admin_email = req.admin_email.trim().to_lowercase();
        let email = req.email.trim().to_lowercase();
        let mut v = Violations::new();
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        validate::length(&mut v, "name", req.name.trim(), 2, 200);
        validate::slug(&mut v, "slug", &req.slug);
        validate::max_length(&mut v, "display_name", &req.display_name, 250);
        validate::max_length(&mut v, "description", &req.description, 10_000);
        validate::max_length(&mut v, "website", &req.website, 500);
        validate::email(&mut v, "email", &email, false);
        validate::max_length(&mut v, "phone", &req.phone, 50);
        if !req.organization_type.is_empty()
            && !ORGANIZATION_TYPES.contains(&req.organization_type.as_str())
        {
            v.add(
                "organization_type",
                "must be education, corporate or nonprofit",
            );
        }
        validate::max_length(&mut v, "industry", &req.industry, 100);
        if !req.size_category.is_empty() && !SIZE_CATEGORIES.contains(&req.size_category.as_str()) {
            v.add(
                "size_category",
                "must be small, medium, large or enterprise",
            );
        }
        if !req.timezone.is_empty() {
            check_timezone(&mut v, "timezone", &req.timezone);
        }
        if !req.locale.is_empty() && !is_locale(&req.locale) {
            v.add("locale", "must be a BCP 47 locale such as en-US");
        }
        validate::email(&mut v, "admin_email", &admin_email, true);
        check_username(&mut v, "admin_username", &req.admin_username);
        crate::passwords::check_policy(&mut v, "admin_password", &req.admin_password);
        validate::max_length(&mut v, "admin_first_name", &req.admin_first_name, 100);
        validate::max_length(&mut v, "admin_last_name", &req.admin_last_name, 100);
        v.finish()?;

        let address = req
            .address
            .as_ref()
            .map_or_else(|| serde_json::json!({}), crate::convert::struct_to_json);
        // The request's fingerprint for request_id, without request_id and the password.
        let fingerprint: Vec<u8> = {
            let mut h = Sha256::new();
            for part in [
                req.name.trim(),
                &req.slug,
                &req.display_name,
                &req.description,
                &req.website,
                &email,
                &req.phone,
                &req.organization_type,
                &req.industry,
                &req.size_category,
                &req.timezone,
                &req.locale,
                &address.to_string(),
                &admin_email,
                &req.admin_username,
                &req.admin_first_name,
                &req.admin_last_name,
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.finalize().to_vec()
        };
        let password = self
            .state
            .passwords
            .hash(&SecretString::from(req.admin_password.clone()))
            .await?;
        let method = action("CreateOrganization");
        let tenant = Uuid::new_v4();
        let admin_id = Uuid::new_v4();
        let actor = match &caller {
            Some(c) => Actor::of(c),
            None => Actor::public(admin_id),
        };
        let request_id = (!req.request_id.is_empty()).then_some(req.request_id.as_str());

        let mut conn = self.state.pool.get().await?;
        let outcome = conn
            .transaction(async |conn| {
                if let Some(key) = request_id {
                    // Keys of platform-level creates have no tenant yet: platform scope.
                    set_scope(conn, Scope::Platform).await?;
                    match idempotency::claim(conn, &method, key, None, &fingerprint).await? {
                        idempotency::Claim::Fresh => {}
                        idempotency::Claim::Replay(bytes) => {
                            return pb::CreateOrganizationResponse::decode(bytes.as_slice())
                                .map_err(ApiError::internal);
                        }
                        idempotency::Claim::Mismatch => {
                            return Err(ApiError::field(
                                "request_id",
                                "was used with a different request",
                            ));
                        }
                        idempotency::Claim::Pending => {
                            return Err(ApiError::Unavailable(
                                "the first request with this request_id is still running".into(),
                            ));
                        }
                    }
                }
                set_scope(conn, Scope::Tenant(tenant)).await?;
                let now = Utc::now();
                let limits = Tier::Free.limits();
                let created_by = caller
                    .as_ref()
                    .and_then(|c| Uuid::parse_str(&c.subject).ok())
                    .unwrap_or(admin_id);
                let display_name = req.display_name.trim();
                // The id is chosen here so the row is visible under the new tenant's scope.
                let org: org_model::Organization = diesel::insert_into(organizations::table)
                    .values((
                        organizations::id.eq(tenant),
                        NewOrganization {
                            name: req.name.trim(),
                            slug: &req.slug,
                            display_name: (!display_name.is_empty()).then_some(display_name),
                            description: (!req.description.is_empty())
                                .then_some(req.description.as_str()),
                            website: (!req.website.is_empty()).then_some(req.website.as_str()),
                            email: Some(if email.is_empty() {
                                &admin_email
                            } else {
                                &email
                            }),
                            phone: (!req.phone.is_empty()).then_some(req.phone.as_str()),
                            address: address.clone(),
                            organization_type: if req.organization_type.is_empty() {
                                "education"
                            } else {
                                &req.organization_type
                            },
                            industry: (!req.industry.is_empty()).then_some(req.industry.as_str()),
                            size_category: (!req.size_category.is_empty())
                                .then_some(req.size_category.as_str()),
                            subscription_tier: Tier::Free.as_str(),
                            status: org_model::Status::Trial.as_str(),
                            trial_days: TRIAL_DAYS,
                            trial_started_at: Some(now),
                            trial_expires_at: Some(now + Duration::days(i64::from(TRIAL_DAYS))),
                            max_users: limits.max_users,
                            max_classes: limits.max_classes,
                            max_storage_gb: limits.max_storage_gb,
                            max_api_calls_per_month: limits.max_api_calls_per_month,
                            max_roblox_sessions: limits.max_roblox_sessions,
                            created_by: Some(created_by),
                        },
                    ))
                    .returning(org_model::Organization::as_returning())
                    .get_result(conn)
                    .await
                    .map_err(|e| match ApiError::from(e) {
                        ApiError::AlreadyExists(_) => {
                            ApiError::AlreadyExists("slug is taken".into())
                        }
                        other => other,
                    })?;
                let admin = member_model::insert(
                    conn,
                    &NewMember {
                        id: admin_id,
                        organization_id: tenant,
                        email: &admin_email,
                        username: &req.admin_username,
                        password_hash: &password,
                        first_name: (!req.admin_first_name.is_empty())
                            .then_some(req.admin_first_name.as_str()),
                        last_name: (!req.admin_last_name.is_empty())
                            .then_some(req.admin_last_name.as_str()),
                        org_role: OrgRole::Admin.as_str(),
                        status: "active",
                        email_verified: false,
                        password_changed_at: now,
                    },
                )
                .await?;
                let users = org_model::add_users(conn, tenant, 1)
                    .await?
                    .ok_or_else(|| ApiError::internal("a new tenant has no seat"))?;
                insert_event(
                    conn,
                    &NewUsageEvent {
                        organization_id: tenant,
                        metric: "users",
                        delta: 1.0,
                        value_after: f64::from(users.0),
                        request_id: None,
                        actor_id: Some(&actor.id),
                    },
                )
                .await?;
                settings_model::lock_settings(conn, tenant).await?;
                settings_model::update_settings(
                    conn,
                    tenant,
                    &SettingsChangeset {
                        timezone: Some(if req.timezone.is_empty() {
                            "UTC"
                        } else {
                            &req.timezone
                        }),
                        locale: Some(if req.locale.is_empty() {
                            "en-US"
                        } else {
                            &req.locale
                        }),
                        ..SettingsChangeset::default()
                    },
                )
                .await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    request_id,
                    &method,
                    ("tenant", tenant.to_string()),
                    serde_json::json!({
                        "slug": org.slug,
                        "subscription_tier": "free",
                        "trial_days": TRIAL_DAYS,
                        "admin_user_id": admin_id.to_string(),
                        "self_serve": caller.is_none(),
                    }),
                )
                .await?;
                let org = org_model::find(conn, tenant).await?;
                let response = pb::CreateOrganizationResponse {
                    tenant: Some(super::orgs::tenant_message(conn, &org).await?),
                    admin: Some(convert::member(&admin)),
                    access_token: String::new(),
                    token_type: "Bearer".into(),
                    expires_in: secrets::ACCESS_TOKEN_TTL_SECS,
                };
                if let Some(key) = request_id {
                    set_scope(conn, Scope::Platform).await?;
                    idempotency::complete(
                        conn,
                        &method,
                        key,
                        Some(tenant),
                        &response.encode_to_vec(),
                    )
                    .await?;
                }
                Ok(response)
            })
            .await;
        let mut response = outcome?;
        // A token is minted per answer (also on a replay); it is never stored.
        let tenant_id = response
            .tenant
            .as_ref()
            .and_then(|t| Uuid::parse_str(&t.tenant_id).ok())
            .ok_or_else(|| ApiError::internal("stored response without a tenant"))?;
        let admin_user = response
            .admin
            .as_ref()
            .and_then(|a| Uuid::parse_str(&a.user_id).ok())
            .ok_or_else(|| ApiError::internal("stored response without an admin"))?;
        response.access_token =
            secrets::access_token(&self.state.signer, admin_user, tenant_id, OrgRole::Admin)?;
        Ok(response)
    }

    async fn update(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> ApiResult<pb::UpdateOrganizationResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "names no field to update");
        }
        let new = req.tenant.unwrap_or_default();
        let email = new.email.trim().to_lowercase();
        let mut changes = org_model::OrganizationChangeset::default();
        let mut locale_changes = SettingsChangeset::default();
        let opt = |s: &str| -> Option<Option<String>> {
            Some((!s.trim().is_empty()).then(|| s.trim().to_owned()))
        };
        // Owned values the changeset borrows.
        let name = new.name.trim().to_owned();
        let display_name = opt(&new.display_name);
        let description = opt(&new.description);
        let website = opt(&new.website);
        let phone = opt(&new.phone);
        let industry = opt(&new.industry);
        let size_category = opt(&new.size_category);
        let email_value = opt(&email);
        for path in &paths {
            match path.as_str() {
                "name" => {
                    validate::length(&mut v, "tenant.name", &name, 2, 200);
                    changes.name = Some(&name);
                }
                "display_name" => {
                    validate::max_length(&mut v, "tenant.display_name", &new.display_name, 250);
                    changes.display_name = display_name.as_ref().map(Option::as_deref);
                }
                "description" => {
                    validate::max_length(&mut v, "tenant.description", &new.description, 10_000);
                    changes.description = description.as_ref().map(Option::as_deref);
                }
                "website" => {
                    validate::max_length(&mut v, "tenant.website", &new.website, 500);
                    changes.website = website.as_ref().map(Option::as_deref);
                }
                "email" => {
                    validate::email(&mut v, "tenant.email", &email, false);
                    changes.email = email_value.as_ref().map(Option::as_deref);
                }
                "phone" => {
                    validate::max_length(&mut v, "tenant.phone", &new.phone, 50);
                    changes.phone = phone.as_ref().map(Option::as_deref);
                }
                "address" => {
                    changes.address = Some(
                        new.address
                            .as_ref()
                            .map_or_else(|| serde_json::json!({}), crate::convert::struct_to_json),
                    );
                }
                "timezone" => {
                    check_timezone(&mut v, "tenant.timezone", &new.timezone);
                    locale_changes.timezone = Some(&new.timezone);
                }
                "locale" => {
                    if !is_locale(&new.locale) {
                        v.add("tenant.locale", "must be a BCP 47 locale such as en-US");
                    }
                    locale_changes.locale = Some(&new.locale);
                }
                "organization_type" => {
                    if !ORGANIZATION_TYPES.contains(&new.organization_type.as_str()) {
                        v.add(
                            "tenant.organization_type",
                            "must be education, corporate or nonprofit",
                        );
                    }
                    changes.organization_type = Some(&new.organization_type);
                }
                "industry" => {
                    validate::max_length(&mut v, "tenant.industry", &new.industry, 100);
                    changes.industry = industry.as_ref().map(Option::as_deref);
                }
                "size_category" => {
                    if !new.size_category.is_empty()
                        && !SIZE_CATEGORIES.contains(&new.size_category.as_str())
                    {
                        v.add(
                            "tenant.size_category",
                            "must be small, medium, large or enterprise",
                        );
                    }
                    changes.size_category = size_category.as_ref().map(Option::as_deref);
                }
                other => v.add(
                    "update_mask",
                    format!("{other} is not an updatable field of the organization"),
                ),
            }
        }
        v.finish()?;
        let actor = Actor::of(&caller);
        changes.updated_by = Some(actor.user_id());
        let method = action("UpdateOrganization");
        let mut conn = self.state.pool.get().await?;
        let tenant = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, true).await?;
                let org = org_model::update_profile(conn, tenant, &changes).await?;
                if locale_changes.timezone.is_some() || locale_changes.locale.is_some() {
                    settings_model::lock_settings(conn, tenant).await?;
                    settings_model::update_settings(conn, tenant, &locale_changes).await?;
                }
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("tenant", tenant.to_string()),
                    serde_json::json!({ "changed_fields": paths }),
                )
                .await?;
                super::orgs::tenant_message(conn, &org).await
            })
            .await?;
        Ok(pb::UpdateOrganizationResponse {
            tenant: Some(tenant),
        })
    }

    async fn members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> ApiResult<pb::ListMembersResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = validate::page_size(&mut v, "page_size", req.page_size);
        let role = parse_role(&mut v, "org_role", req.org_role);
        let query = req.query.trim().to_owned();
        validate::max_length(&mut v, "query", &query, 200);
        v.finish()?;
        let filters = validate::fingerprint(&[role.map_or("", OrgRole::as_str), &query]);
        let after = validate::decode_token(&req.page_token, &filters)?;
        let filter = MemberFilter {
            org_role: role.map(|r| r.as_str().to_owned()),
            query: (!query.is_empty()).then_some(query),
        };
        let mut conn = self.state.pool.get().await?;
        let (rows, total) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await?;
                let total = member_model::count(conn, tenant, &filter).await?;
                let rows = member_model::list_page(
                    conn,
                    tenant,
                    &filter,
                    after.map(|c| (c.created_at, c.id)),
                    limit + 1,
                )
                .await?;
                Ok::<_, ApiError>((rows, total))
            })
            .await?;
        let (page, next_page_token) = validate::page_of(rows, limit, &filters, |last| Cursor {
            created_at: last.created_at,
            id: last.id,
        });
        Ok(pb::ListMembersResponse {
            members: page.iter().map(convert::member).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn member_role(
        &self,
        request: Request<pb::UpdateMemberRoleRequest>,
    ) -> ApiResult<pb::UpdateMemberRoleResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let user = validate::uuid(&mut v, "user_id", &req.user_id);
        let role = parse_role(&mut v, "org_role", req.org_role);
        if req.org_role == 0 {
            v.add("org_role", "is required");
        }
        v.finish()?;
        let (Some(user), Some(role)) = (user, role) else {
            return Err(ApiError::field("org_role", "is required"));
        };
        let actor = Actor::of(&caller);
        let method = action("UpdateMemberRole");
        let mut conn = self.state.pool.get().await?;
        let member = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                // The tenant row lock serializes role changes and removals: two admins
                // demoting each other cannot both succeed.
                load_tenant(conn, &caller, tenant, true).await?;
                let member = member_model::find(conn, tenant, user)
                    .await?
                    .ok_or(ApiError::NotFound("member"))?;
                if member.org_role == role.as_str() {
                    return Ok(member);
                }
                if member.org_role == OrgRole::Admin.as_str()
                    && member_model::count_admins(conn, tenant).await? <= 1
                {
                    return Err(ApiError::FailedPrecondition(
                        "cannot demote the last admin of the organization".into(),
                    ));
                }
                let updated = member_model::set_role(conn, tenant, user, role.as_str()).await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("member", user.to_string()),
                    serde_json::json!({
                        "changed_fields": ["org_role"],
                        "from": member.org_role,
                        "to": role.as_str(),
                    }),
                )
                .await?;
                Ok(updated)
            })
            .await?;
        Ok(pb::UpdateMemberRoleResponse {
            member: Some(convert::member(&member)),
        })
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> ApiResult<pb::RemoveMemberResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let mut v = Violations::new();
        let user = validate::uuid(&mut v, "user_id", &request.get_ref().user_id);
        v.finish()?;
        let user = user.ok_or_else(|| ApiError::field("user_id", "is required"))?;
        let actor = Actor::of(&caller);
        let method = action("RemoveMember");
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            set_scope(conn, Scope::Tenant(tenant)).await?;
            load_tenant(conn, &caller, tenant, true).await?;
            let member = member_model::find(conn, tenant, user)
                .await?
                .ok_or(ApiError::NotFound("member"))?;
            if member.org_role == OrgRole::Admin.as_str()
                && member_model::count_admins(conn, tenant).await? <= 1
            {
                return Err(ApiError::FailedPrecondition(
                    "cannot remove the last admin of the organization".into(),
                ));
            }
            member_model::delete(conn, tenant, user).await?;
            match org_model::add_users(conn, tenant, -1).await? {
                Some((after, _)) => {
                    insert_event(
                        conn,
                        &NewUsageEvent {
                            organization_id: tenant,
                            metric: "users",
                            delta: -1.0,
                            value_after: f64::from(after),
                            request_id: None,
                            actor_id: Some(&actor.id),
                        },
                    )
                    .await?;
                }
                None => tracing::warn!(tenant.id = %tenant, "user counter already at 0"),
            }
            audit(
                conn,
                tenant,
                &actor,
                rid.as_deref(),
                &method,
                ("member", user.to_string()),
                serde_json::json!({ "email": member.email, "org_role": member.org_role }),
            )
            .await?;
            Ok::<_, ApiError>(())
        })
        .await?;
        Ok(pb::RemoveMemberResponse {})
    }

    async fn invite(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> ApiResult<pb::CreateInvitationResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, &request.get_ref().request_id);
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let email = req.email.trim().to_lowercase();
        let mut v = Violations::new();
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        validate::email(&mut v, "email", &email, true);
        let role = parse_role(&mut v, "org_role", req.org_role).unwrap_or(OrgRole::Member);
        let days = req.expires_in_days.unwrap_or(INVITATION_DAYS.0);
        if !(1..=INVITATION_DAYS.1).contains(&days) {
            v.add("expires_in_days", "must be between 1 and 30");
        }
        validate::max_length(&mut v, "message", &req.message, 1_000);
        v.finish()?;
        if role == OrgRole::Admin && !caller.has_org_role(OrgRole::Admin) {
            return Err(ApiError::PermissionDenied(
                "only an admin may invite an admin".into(),
            ));
        }
        let actor = Actor::of(&caller);
        let method = action("CreateInvitation");
        let (token, hash) = secrets::new_invitation_token();
        let mut conn = self.state.pool.get().await?;
        let invitation = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                let org = load_tenant(conn, &caller, tenant, true).await?;
                inv_model::expire_stale(conn, tenant, Some(&email)).await?;
                if member_model::email_taken(conn, tenant, &email).await? {
                    return Err(ApiError::AlreadyExists(
                        "a member with this e-mail already exists".into(),
                    ));
                }
                if inv_model::find_pending_for_email(conn, tenant, &email)
                    .await?
                    .is_some()
                {
                    return Err(ApiError::AlreadyExists(
                        "a pending invitation exists for this e-mail".into(),
                    ));
                }
                ensure_seat(conn, &org, tenant).await?;
                let now = Utc::now();
                let message = req.message.trim();
                let inv = inv_model::insert(
                    conn,
                    &NewInvitation {
                        organization_id: tenant,
                        email: &email,
                        org_role: role.as_str(),
                        token_hash: &hash,
                        invited_by: actor.user_id(),
                        message: (!message.is_empty()).then_some(message),
                        expires_at: now + Duration::days(i64::from(days)),
                    },
                )
                .await?;
                queue_invitation_email(conn, &org.name, &inv, Uuid::new_v4()).await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("invitation", inv.id.to_string()),
                    serde_json::json!({
                        "email": inv.email,
                        "org_role": inv.org_role,
                        "expires_in_days": days,
                    }),
                )
                .await?;
                Ok::<_, ApiError>(inv)
            })
            .await?;
        Ok(pb::CreateInvitationResponse {
            invitation: Some(convert::invitation(&invitation, Utc::now())),
            invitation_token: token,
        })
    }

    async fn invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> ApiResult<pb::ListInvitationsResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = validate::page_size(&mut v, "page_size", req.page_size);
        let status = match pb::InvitationStatus::try_from(req.status) {
            Ok(pb::InvitationStatus::Unspecified) => None,
            Ok(s) => Some(
                s.as_str_name()
                    .trim_start_matches("INVITATION_STATUS_")
                    .to_lowercase(),
            ),
            Err(_) => {
                v.add("status", "is not a known invitation status");
                None
            }
        };
        v.finish()?;
        let filters = validate::fingerprint(&[status.as_deref().unwrap_or("")]);
        let before = validate::decode_token(&req.page_token, &filters)?;
        let mut conn = self.state.pool.get().await?;
        let (rows, total) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await?;
                let total = inv_model::count(conn, tenant, status.as_deref()).await?;
                let rows = inv_model::list_page(
                    conn,
                    tenant,
                    status.as_deref(),
                    before.map(|c| (c.created_at, c.id)),
                    limit + 1,
                )
                .await?;
                Ok::<_, ApiError>((rows, total))
            })
            .await?;
        let (page, next_page_token) = validate::page_of(rows, limit, &filters, |last| Cursor {
            created_at: last.created_at,
            id: last.id,
        });
        let now = Utc::now();
        Ok(pb::ListInvitationsResponse {
            invitations: page.iter().map(|i| convert::invitation(i, now)).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> ApiResult<pb::RevokeInvitationResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "invitation_id", &request.get_ref().invitation_id);
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("invitation_id", "is required"))?;
        let actor = Actor::of(&caller);
        let method = action("RevokeInvitation");
        let mut conn = self.state.pool.get().await?;
        let inv = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, true).await?;
                let inv = inv_model::find_for_update(conn, tenant, id)
                    .await?
                    .ok_or(ApiError::NotFound("invitation"))?;
                let status = inv.effective_status(Utc::now());
                if status != "pending" {
                    return Err(ApiError::FailedPrecondition(format!(
                        "the invitation is {status}, not pending"
                    )));
                }
                let inv = inv_model::revoke(conn, id).await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("invitation", id.to_string()),
                    serde_json::json!({ "changed_fields": ["status"], "email": inv.email }),
                )
                .await?;
                Ok::<_, ApiError>(inv)
            })
            .await?;
        Ok(pb::RevokeInvitationResponse {
            invitation: Some(convert::invitation(&inv, Utc::now())),
        })
    }

    async fn resend(
        &self,
        request: Request<pb::ResendInvitationRequest>,
    ) -> ApiResult<pb::ResendInvitationResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "invitation_id", &req.invitation_id);
        let days = req.expires_in_days.unwrap_or(INVITATION_DAYS.0);
        if !(1..=INVITATION_DAYS.1).contains(&days) {
            v.add("expires_in_days", "must be between 1 and 30");
        }
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("invitation_id", "is required"))?;
        let actor = Actor::of(&caller);
        let method = action("ResendInvitation");
        let (token, hash) = secrets::new_invitation_token();
        let mut conn = self.state.pool.get().await?;
        let inv = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                let org = load_tenant(conn, &caller, tenant, true).await?;
                let inv = inv_model::find_for_update(conn, tenant, id)
                    .await?
                    .ok_or(ApiError::NotFound("invitation"))?;
                let now = Utc::now();
                let status = inv.effective_status(now).to_owned();
                if status != "pending" && status != "expired" {
                    return Err(ApiError::FailedPrecondition(format!(
                        "the invitation is {status}; only a pending or expired one can be resent"
                    )));
                }
                if inv.org_role == OrgRole::Admin.as_str() && !caller.has_org_role(OrgRole::Admin) {
                    return Err(ApiError::PermissionDenied(
                        "only an admin may resend an admin's invitation".into(),
                    ));
                }
                if status == "expired" {
                    // It takes a seat again.
                    ensure_seat(conn, &org, tenant).await?;
                }
                let inv = inv_model::renew(conn, id, &hash, now + Duration::days(i64::from(days)))
                    .await?;
                queue_invitation_email(conn, &org.name, &inv, Uuid::new_v4()).await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("invitation", id.to_string()),
                    serde_json::json!({
                        "changed_fields": ["token", "expires_at", "status"],
                        "expires_in_days": days,
                    }),
                )
                .await?;
                Ok::<_, ApiError>(inv)
            })
            .await?;
        Ok(pb::ResendInvitationResponse {
            invitation: Some(convert::invitation(&inv, Utc::now())),
            invitation_token: token,
        })
    }

    async fn accept(
        &self,
        req: pb::AcceptInvitationRequest,
    ) -> ApiResult<pb::AcceptInvitationResponse> {
        let mut v = Violations::new();
        validate::length(&mut v, "token", &req.token, 1, 200);
        check_username(&mut v, "username", &req.username);
        crate::passwords::check_policy(&mut v, "password", &req.password);
        validate::max_length(&mut v, "first_name", &req.first_name, 100);
        validate::max_length(&mut v, "last_name", &req.last_name, 100);
        v.finish()?;
        let hash = secrets::hash_token(&req.token);
        // A cheap look-up first, so unknown or used tokens do not cost a bcrypt hash.
        self.find_valid_invitation(&hash).await?;
        let password = self
            .state
            .passwords
            .hash(&SecretString::from(req.password.clone()))
            .await?;
        let method = action("AcceptInvitation");
        let mut conn = self.state.pool.get().await?;
        let (member, tenant) = conn
            .transaction(async |conn| {
                let found = invitation_by_token(conn, &hash).await?;
                let tenant = found.organization_id;
                set_scope(conn, Scope::Tenant(tenant)).await?;
                // Lock order: the tenant row, then the invitation (as invite and resend do).
                let org = org_model::find_for_update(conn, tenant)
                    .await
                    .optional()?
                    .ok_or(ApiError::NotFound("invitation"))?;
                super::orgs::ensure_usable(None, &org)?;
                let inv = inv_model::find_for_update(conn, tenant, found.id)
                    .await?
                    .ok_or(ApiError::NotFound("invitation"))?;
                check_answerable(&inv)?;
                if member_model::email_taken(conn, tenant, &inv.email).await? {
                    return Err(ApiError::AlreadyExists(
                        "a user with this e-mail exists in the organization".into(),
                    ));
                }
                let Some((users, max)) = org_model::add_users(conn, tenant, 1).await? else {
                    return Err(ApiError::ResourceExhausted(format!(
                        "the organization has reached its user limit ({})",
                        org.max_users
                    )));
                };
                let role: OrgRole = inv.org_role.parse().unwrap_or(OrgRole::Member);
                let user_id = Uuid::new_v4();
                let member = member_model::insert(
                    conn,
                    &NewMember {
                        id: user_id,
                        organization_id: tenant,
                        email: &inv.email,
                        username: &req.username,
                        password_hash: &password,
                        first_name: (!req.first_name.is_empty()).then_some(req.first_name.as_str()),
                        last_name: (!req.last_name.is_empty()).then_some(req.last_name.as_str()),
                        org_role: role.as_str(),
                        status: "active",
                        email_verified: true,
                        password_changed_at: Utc::now(),
                    },
                )
                .await
                .map_err(|e| user_conflict(ApiError::from(e)))?;
                inv_model::accept(conn, inv.id, user_id).await?;
                let actor = Actor::public(user_id);
                insert_event(
                    conn,
                    &NewUsageEvent {
                        organization_id: tenant,
                        metric: "users",
                        delta: 1.0,
                        value_after: f64::from(users),
                        request_id: None,
                        actor_id: Some(&actor.id),
                    },
                )
                .await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    None,
                    &method,
                    ("invitation", inv.id.to_string()),
                    serde_json::json!({
                        "user_id": user_id.to_string(),
                        "org_role": role.as_str(),
                        "current_users": users,
                        "max_users": max,
                    }),
                )
                .await?;
                Ok::<_, ApiError>((member, tenant))
            })
            .await?;
        let role: OrgRole = member.org_role.parse().unwrap_or(OrgRole::Member);
        let token = secrets::access_token(&self.state.signer, member.id, tenant, role)?;
        Ok(pb::AcceptInvitationResponse {
            user: Some(convert::member(&member)),
            tenant_id: tenant.to_string(),
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: secrets::ACCESS_TOKEN_TTL_SECS,
        })
    }

    /// The invitation of a token when it can still be answered.
    async fn find_valid_invitation(&self, hash: &[u8]) -> ApiResult<()> {
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            let inv = invitation_by_token(conn, hash).await?;
            check_answerable(&inv)
        })
        .await
    }

    async fn decline(
        &self,
        req: pb::DeclineInvitationRequest,
    ) -> ApiResult<pb::DeclineInvitationResponse> {
        let mut v = Violations::new();
        validate::length(&mut v, "token", &req.token, 1, 200);
        v.finish()?;
        let hash = secrets::hash_token(&req.token);
        let method = action("DeclineInvitation");
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            let found = invitation_by_token(conn, &hash).await?;
            let tenant = found.organization_id;
            set_scope(conn, Scope::Tenant(tenant)).await?;
            let inv = inv_model::find_for_update(conn, tenant, found.id)
                .await?
                .ok_or(ApiError::NotFound("invitation"))?;
            check_answerable(&inv)?;
            inv_model::decline(conn, inv.id).await?;
            let actor = Actor {
                id: format!("invitee:{}", inv.email),
                role: "public".into(),
            };
            audit(
                conn,
                tenant,
                &actor,
                None,
                &method,
                ("invitation", inv.id.to_string()),
                serde_json::json!({ "changed_fields": ["status"] }),
            )
            .await?;
            Ok::<_, ApiError>(())
        })
        .await?;
        Ok(pb::DeclineInvitationResponse {})
    }

    async fn subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> ApiResult<pb::UpdateSubscriptionResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let tier = required_tier(request.get_ref().subscription_tier)?;
        let actor = Actor::of(&caller);
        let action = action("UpdateSubscription");
        let changed = subscription::change_tier(
            &self.state,
            &caller,
            &actor,
            subscription::TierChange {
                tenant,
                tier,
                auto_renew: None,
                action: &action,
                request_id: rid.as_deref(),
            },
        )
        .await?;
        let mut conn = self.state.pool.get().await?;
        let message = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                super::orgs::tenant_message(conn, &changed.org).await
            })
            .await?;
        Ok(pb::UpdateSubscriptionResponse {
            tenant: Some(message),
            previous_tier: convert::tier_to_pb(changed.previous),
            effective_at: Some(convert::ts(changed.effective)),
            disabled_features: changed.disabled_features,
        })
    }

    async fn usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> ApiResult<pb::GetUsageResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let period = match pb::UsagePeriod::try_from(request.get_ref().period) {
            Ok(pb::UsagePeriod::Unspecified) => pb::UsagePeriod::Current,
            Ok(p) => p,
            Err(_) => return Err(ApiError::field("period", "is not a known period")),
        };
        let now = Utc::now();
        let this_month = month_start(now);
        // (start, end) of the period and of the one before it, in whole months.
        let months = match period {
            pb::UsagePeriod::LastYear => 12,
            _ => 1,
        };
        let (start, end) = match period {
            pb::UsagePeriod::Current => (this_month, add_months(this_month, 1)),
            _ => (add_months(this_month, -months), this_month),
        };
        let previous = (add_months(start, -months), start);
        let mut conn = self.state.pool.get().await?;
        let (org, current, before) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                let org = load_tenant(conn, &caller, tenant, false).await?;
                let current = if period == pb::UsagePeriod::Current {
                    None
                } else {
                    Some(billing_model::usage_summary(conn, tenant, start, end).await?)
                };
                let before =
                    billing_model::usage_summary(conn, tenant, previous.0, previous.1).await?;
                Ok::<_, ApiError>((org, current, before))
            })
            .await?;
        let live = convert::metrics(&org, now);
        let values: Vec<(common::LimitMetric, f64, f64)> = match &current {
            None => live.to_vec(),
            Some(s) => {
                let past = summary_values(s);
                live.iter()
                    .zip(past)
                    .map(|((metric, _, max), value)| (*metric, value, *max))
                    .collect()
            }
        };
        let previous_values = (before.snapshots > 0).then(|| summary_values(&before));
        let trends = values
            .iter()
            .enumerate()
            .map(|(i, (metric, value, _))| pb::UsageTrend {
                metric: *metric as i32,
                growth_percent: previous_values
                    .as_ref()
                    .map(|p| p[i])
                    .filter(|p| *p > 0.0)
                    .map(|p| (value - p) / p * 100.0),
            })
            .collect();
        Ok(pb::GetUsageResponse {
            tenant_id: tenant.to_string(),
            period: period as i32,
            period_start: Some(convert::ts(day_start(start))),
            period_end: Some(convert::ts(day_start(end))),
            usage: values
                .iter()
                .map(|(m, c, max)| convert::metric_usage(*m, *c, *max))
                .collect(),
            trends,
            generated_at: Some(convert::ts(now)),
        })
    }

    async fn features(
        &self,
        request: Request<pb::GetFeaturesRequest>,
    ) -> ApiResult<pb::GetFeaturesResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let mut conn = self.state.pool.get().await?;
        let org = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await
            })
            .await?;
        drop(conn);
        let mut client = TenantSettingsServiceClient::new(self.state.settings.clone());
        let mut call = Request::new(settings_pb::GetFeaturesRequest {
            tenant_id: tenant.to_string(),
        });
        call.set_timeout(std::time::Duration::from_secs(5));
        if let Ok(value) = Actor::of(&caller).id.parse() {
            call.metadata_mut()
                .insert(tenantry_auth::ACTOR_METADATA_KEY, value);
        }
        let answer = client.get_features(call).await?.into_inner();
        let available_upgrades = answer
            .features
            .iter()
            .filter(|f| !f.available && !f.available_in_tiers.is_empty())
            .map(|f| f.feature)
            .collect();
        Ok(pb::GetFeaturesResponse {
            tenant_id: tenant.to_string(),
            subscription_tier: convert::tier_to_pb(org.tier()),
            features: answer.features,
            available_upgrades,
            limits: Some(convert::limits(&org)),
        })
    }
}

/// A required tier field.
fn required_tier(value: i32) -> ApiResult<Tier> {
    if value == 0 {
        return Err(ApiError::field("subscription_tier", "is required"));
    }
    convert::tier_from_pb(value)
        .ok_or_else(|| ApiError::field("subscription_tier", "is not a known tier"))
}

/// Peak users, classes, storage, total API calls and peak sessions of a summary, in metric order.
fn summary_values(s: &billing_model::UsageSummary) -> [f64; 5] {
    [
        f64::from(s.users.unwrap_or(0)),
        f64::from(s.classes.unwrap_or(0)),
        s.storage_gb.unwrap_or(0.0),
        s.api_calls.unwrap_or(0) as f64,
        f64::from(s.roblox_sessions.unwrap_or(0)),
    ]
}

/// Refuses a new invitation when members plus pending invitations would pass `max_users`.
async fn ensure_seat(
    conn: &mut AsyncPgConnection,
    org: &org_model::Organization,
    tenant: Uuid,
) -> ApiResult<()> {
    let pending = inv_model::count_pending(conn, tenant).await?;
    if i64::from(org.current_users) + pending + 1 > i64::from(org.max_users) {
        return Err(ApiError::ResourceExhausted(format!(
            "the organization has reached its user limit ({}): {} members and {pending} pending \
             invitations",
            org.max_users, org.current_users
        )));
    }
    Ok(())
}

/// Finds an invitation by token hash in any tenant (platform scope, for this look-up only).
async fn invitation_by_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> ApiResult<inv_model::Invitation> {
    set_scope(conn, Scope::Platform).await?;
    let found = inv_model::find_by_token_hash(conn, hash).await?;
    set_scope(conn, Scope::Nobody).await?;
    found.ok_or(ApiError::NotFound("invitation"))
}

/// Refuses an invitation that was already answered, revoked or has expired.
fn check_answerable(inv: &inv_model::Invitation) -> ApiResult<()> {
    match inv.effective_status(Utc::now()) {
        "pending" => Ok(()),
        "accepted" => Err(ApiError::FailedPrecondition(
            "the invitation was already used".into(),
        )),
        "declined" => Err(ApiError::FailedPrecondition(
            "the invitation was declined".into(),
        )),
        "revoked" => Err(ApiError::FailedPrecondition(
            "the invitation was revoked".into(),
        )),
        _ => Err(ApiError::FailedPrecondition(
            "the invitation has expired".into(),
        )),
    }
}

/// Queues the invitation e-mail (kind `invitation`; the payload names the invitation, never the
/// token).
async fn queue_invitation_email(
    conn: &mut AsyncPgConnection,
    org_name: &str,
    inv: &inv_model::Invitation,
    send_id: Uuid,
) -> ApiResult<()> {
    let message_id = format!("invitation-{send_id}@tenantry");
    let subject = format!("You are invited to join {org_name}");
    let mut body = format!(
        "You have been invited to join {org_name} as {}. The invitation expires on {}.",
        inv.org_role,
        inv.expires_at.format("%Y-%m-%d %H:%M UTC")
    );
    if let Some(m) = &inv.message {
        body.push_str("\n\n");
        body.push_str(m);
    }
    enqueue(
        conn,
        &NewOutboxMessage {
            organization_id: inv.organization_id,
            message_id: &message_id,
            kind: "invitation",
            to_address: &inv.email,
            subject: &subject,
            body_text: &body,
            payload: serde_json::json!({
                "invitation_id": inv.id.to_string(),
                "tenant_id": inv.organization_id.to_string(),
            }),
        },
    )
    .await?;
    Ok(())
}
