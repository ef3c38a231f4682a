//! Tenant lifecycle (super admins): `tenantry.admin.v1.TenantAdminService`.
//!
//! Every handler validates first (INVALID_ARGUMENT naming each bad field, nothing written),
//! then works in one platform-scoped transaction that also records the audit event. Calls to
//! tenant-settings (ApplyTier) and provisioning (DeprovisionTenant, ProvisionTenant) go over
//! gRPC with a service token and the super admin as the audit actor.

use std::collections::HashMap;

use chrono::{Duration as Days, Utc};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tenantry_auth::{ACTOR_METADATA_KEY, Caller};
use tenantry_db::models::organization::{
    self, LifecycleChangeset, Limits, ListFilter, NewOrganization, Organization,
    OrganizationChangeset, Status, Tier,
};
use tenantry_db::models::{audit, idempotency};
use tenantry_db::schema::tenant_settings;
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::common::v1 as common;
use tenantry_proto::provisioning::v1 as prov;
use tenantry_proto::settings::v1 as settings;
use tenantry_runtime::error::{ApiError, ApiResult, Violations};
use tonic::{Request, Response, Status as GrpcStatus};
use uuid::Uuid;

use super::State;
use crate::audit_trail::{Actor, action};
use crate::convert::{self, Locale, TierValue};
use crate::tenant_access::not_found;
use crate::validate;

const SERVICE: &str = "TenantAdminService";
/// Default trial length in days.
const DEFAULT_TRIAL_DAYS: i32 = 14;
/// Paths UpdateTenant accepts (the proto's list).
const UPDATABLE: [&str; 16] = [
    "name",
    "display_name",
    "description",
    "website",
    "email",
    "phone",
    "address",
    "timezone",
    "locale",
    "organization_type",
    "industry",
    "size_category",
    "subscription_tier",
    "billing_email",
    "billing_address",
    "tax_id",
];
const ORGANIZATION_TYPES: [&str; 3] = ["education", "corporate", "nonprofit"];
const SIZE_CATEGORIES: [&str; 4] = ["small", "medium", "large", "enterprise"];

/// Tenant lifecycle (super admins).
pub(crate) struct TenantsApi {
    state: State,
}

impl TenantsApi {
    /// The features tenant-settings reports for `tenant` (its cached read; tier matrix,
    /// toggles and overrides), for GetTenant's FULL view. A tenant it cannot see (one being
    /// deleted) has none; any other failure is UNAVAILABLE.
    async fn features_of(&self, tenant: Uuid) -> Result<Vec<common::FeatureState>, GrpcStatus> {
        let mut client = settings::tenant_settings_service_client::TenantSettingsServiceClient::new(
            self.state.settings.clone(),
        );
        let mut call = Request::new(settings::GetFeaturesRequest {
            tenant_id: tenant.to_string(),
        });
        call.set_timeout(std::time::Duration::from_secs(5));
        match client.get_features(call).await {
            Ok(answer) => Ok(answer.into_inner().features),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(Vec::new()),
            Err(status) => {
                tracing::warn!(tenant.id = %tenant, code = ?status.code(), "tenant-settings GetFeatures failed");
                Err(GrpcStatus::unavailable(
                    "tenant-settings did not answer for the tenant's features; retry",
                ))
            }
        }
    }

    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

/// SHA-256 of an encoded message: the payload fingerprint of an idempotent request.
fn request_hash<M: prost::Message>(m: &M) -> Vec<u8> {
    Sha256::digest(m.encode_to_vec()).to_vec()
}

/// Maps a slug unique violation to ALREADY_EXISTS naming the slug.
fn slug_taken(e: diesel::result::Error, slug: &str) -> ApiError {
    if let diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &e
        && info.constraint_name() == Some("organizations_slug_key")
    {
        return ApiError::AlreadyExists(format!("tenant with slug '{slug}' already exists"));
    }
    ApiError::from(e)
}

/// Tells whether `s` is a BCP 47-like locale as the schema accepts it.
fn is_locale(s: &str) -> bool {
    if !(2..=10).contains(&s.len()) {
        return false;
    }
    let mut parts = s.split(['-', '_']);
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn check_timezone(v: &mut Violations, field: &str, s: &str) {
    validate::max_length(v, field, s, 100);
    if s.chars().any(char::is_whitespace) {
        v.add(field, "must be an IANA time zone name");
    }
}

fn check_locale(v: &mut Violations, field: &str, s: &str) {
    if !is_locale(s) {
        v.add(
            field,
            "must be a BCP 47 locale such as en-US (at most 10 characters)",
        );
    }
}

fn check_choice(v: &mut Violations, field: &str, s: &str, allowed: &[&str]) {
    if !allowed.contains(&s) {
        v.add(field, format!("must be one of {}", allowed.join(", ")));
    }
}

/// Bounds of a limit field (§2.1 #7).
fn check_limits(v: &mut Violations, prefix: &str, l: &Limits) {
    let f = |name: &str| format!("{prefix}{name}");
    if !(1..=10_000).contains(&l.max_users) {
        v.add(&f("max_users"), "must be between 1 and 10000");
    }
    if !(1..=1_000).contains(&l.max_classes) {
        v.add(&f("max_classes"), "must be between 1 and 1000");
    }
    if !(l.max_storage_gb.is_finite() && (0.1..=1_000.0).contains(&l.max_storage_gb)) {
        v.add(&f("max_storage_gb"), "must be between 0.1 and 1000.0");
    }
    if !(100..=10_000_000).contains(&l.max_api_calls_per_month) {
        v.add(
            &f("max_api_calls_per_month"),
            "must be between 100 and 10000000",
        );
    }
    if !(1..=1_000).contains(&l.max_roblox_sessions) {
        v.add(&f("max_roblox_sessions"), "must be between 1 and 1000");
    }
}

/// The tier's limits with the non-zero fields of `given` applied.
fn merge_limits(v: &mut Violations, tier: Tier, given: Option<&common::TenantLimits>) -> Limits {
    let mut l = tier.limits();
    let Some(g) = given else { return l };
    if g.max_users != 0 {
        l.max_users = g.max_users;
    }
    if g.max_classes != 0 {
        l.max_classes = g.max_classes;
    }
    if g.max_storage_gb != 0.0 {
        l.max_storage_gb = g.max_storage_gb;
    }
    if g.max_api_calls_per_month != 0 {
        l.max_api_calls_per_month = i32::try_from(g.max_api_calls_per_month).unwrap_or(i32::MAX);
    }
    if g.max_roblox_sessions != 0 {
        l.max_roblox_sessions = g.max_roblox_sessions;
    }
    check_limits(v, "limits.", &l);
    l
}

/// Reads the locale settings of tenants (owned by tenant-settings; defaults when absent).
async fn locales<C>(conn: &mut C, ids: &[Uuid]) -> ApiResult<HashMap<Uuid, Locale>>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send,
{
    let rows: Vec<(Uuid, String, String)> = tenant_settings::table
        .filter(tenant_settings::organization_id.eq_any(ids))
        .select((
            tenant_settings::organization_id,
            tenant_settings::timezone,
            tenant_settings::locale,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, timezone, locale)| (id, Locale { timezone, locale }))
        .collect())
}

/// The `Tenant` message of one row, with its locale settings.
async fn tenant_message(conn: &mut AsyncPgConnection, org: &Organization) -> ApiResult<pb::Tenant> {
    let l = locales(conn, &[org.id]).await?;
    Ok(convert::tenant(
        org,
        &l.get(&org.id).cloned().unwrap_or_default(),
    ))
}

/// Writes timezone and/or locale into the tenant's settings row (creating it with defaults).
async fn upsert_locale(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    timezone: Option<&str>,
    locale: Option<&str>,
) -> ApiResult<()> {
    let defaults = Locale::default();
    diesel::insert_into(tenant_settings::table)
        .values((
            tenant_settings::organization_id.eq(tenant),
            tenant_settings::timezone.eq(timezone.unwrap_or(&defaults.timezone)),
            tenant_settings::locale.eq(locale.unwrap_or(&defaults.locale)),
        ))
        .on_conflict(tenant_settings::organization_id)
        .do_update()
        .set((
            timezone.map(|t| tenant_settings::timezone.eq(t)),
            locale.map(|l| tenant_settings::locale.eq(l)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Parses the tenant id of a request (INVALID_ARGUMENT when missing or not a uuid).
fn tenant_id(s: &str) -> ApiResult<Uuid> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "tenant_id", s);
    v.finish()?;
    id.ok_or_else(|| ApiError::field("tenant_id", "is required"))
}

/// Adds the actor to an outgoing inter-service request, for the callee's audit trail.
fn with_actor<T>(message: T, actor: &Actor) -> Request<T> {
    let mut r = Request::new(message);
    if let Ok(v) = actor.id.parse() {
        r.metadata_mut().insert(ACTOR_METADATA_KEY, v);
    }
    r
}

impl TenantsApi {
    /// Tells tenant-settings to re-derive the tenant's features for `tier`. Best effort: the
    /// tier change is already committed; a failure is logged (tenant-settings re-derives on
    /// the next ApplyTier, and operators can retry with UpdateTenant).
    async fn apply_tier(&self, tenant: Uuid, tier: Tier, actor: &Actor) {
        let mut client = settings::tenant_settings_service_client::TenantSettingsServiceClient::new(
            self.state.settings.clone(),
        );
        let request = with_actor(
            settings::ApplyTierRequest {
                tenant_id: tenant.to_string(),
                tier: convert::tier_to_proto(tier).into(),
                request_id: Uuid::new_v4().to_string(),
            },
            actor,
        );
        if let Err(status) = client.apply_tier(request).await {
            tracing::warn!(
                tenant.id = %tenant,
                code = ?status.code(),
                message = status.message(),
                "tenant-settings ApplyTier failed; the tier change is committed"
            );
        }
    }

    /// Runs a lifecycle transition on one tenant in a platform transaction: `decide` sees the
    /// locked row and returns the change (or `None` to return the row unchanged) and the audit
    /// metadata.
    async fn transition<'a>(
        &self,
        id: Uuid,
        actor: &Actor,
        method: &str,
        decide: impl FnOnce(
            &Organization,
        ) -> ApiResult<Option<(LifecycleChangeset<'a>, serde_json::Value)>>
        + Send,
    ) -> ApiResult<pb::Tenant> {
        let act = action(SERVICE, method);
        let mut conn = self.state.pool.get().await?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let org = organization::find_for_update(conn, id)
                .await
                .map_err(|e| not_found(e, "tenant"))?;
            let org = match decide(&org)? {
                None => org,
                Some((mut changes, metadata)) => {
                    changes.updated_by = Some(actor.user_id());
                    let updated = organization::update_lifecycle(conn, id, &changes).await?;
                    audit::record_audit(
                        conn,
                        &actor.event(Some(id), &act, "tenant", id, metadata, None),
                    )
                    .await?;
                    updated
                }
            };
            tenant_message(conn, &org).await
        })
        .await
    }
}

/// A reason field: required or optional, at most 500 characters.
fn check_reason(v: &mut Violations, reason: &str, required: bool) {
    if required {
        validate::length(v, "reason", reason, 1, 500);
    } else {
        validate::max_length(v, "reason", reason, 500);
    }
}

#[tonic::async_trait]
impl pb::tenant_admin_service_server::TenantAdminService for TenantsApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "CreateTenant"))]
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();

        let mut v = Violations::new();
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        let name = req.name.trim();
        validate::length(&mut v, "name", name, 1, 200);
        validate::slug(&mut v, "slug", &req.slug);
        validate::email(&mut v, "email", &req.email, true);
        let tier = match convert::tier_from_proto(req.subscription_tier) {
            TierValue::Unset => Tier::Free,
            TierValue::Tier(t) => t,
            TierValue::Unknown => {
                v.add("subscription_tier", "is not a known tier");
                Tier::Free
            }
        };
        let trial_days = req.trial_days.unwrap_or(DEFAULT_TRIAL_DAYS);
        if !(0..=90).contains(&trial_days) {
            v.add("trial_days", "must be between 0 and 90");
        }
        let limits = merge_limits(&mut v, tier, req.limits.as_ref());
        validate::max_length(&mut v, "display_name", &req.display_name, 250);
        validate::max_length(&mut v, "website", &req.website, 500);
        validate::max_length(&mut v, "phone", &req.phone, 50);
        validate::max_length(&mut v, "industry", &req.industry, 100);
        if !req.timezone.is_empty() {
            check_timezone(&mut v, "timezone", &req.timezone);
        }
        if !req.locale.is_empty() {
            check_locale(&mut v, "locale", &req.locale);
        }
        let organization_type = if req.organization_type.is_empty() {
            "education"
        } else {
            check_choice(
                &mut v,
                "organization_type",
                &req.organization_type,
                &ORGANIZATION_TYPES,
            );
            req.organization_type.as_str()
        };
        if !req.size_category.is_empty() {
            check_choice(
                &mut v,
                "size_category",
                &req.size_category,
                &SIZE_CATEGORIES,
            );
        }
        v.finish()?;

        let hash = request_hash(&pb::CreateTenantRequest {
            request_id: String::new(),
            ..req.clone()
        });
        let method = action(SERVICE, "CreateTenant");
        let now = Utc::now();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let (display_name, description, website, phone, industry, size_category) = (
            opt(&req.display_name),
            opt(&req.description),
            opt(&req.website),
            opt(&req.phone),
            opt(&req.industry),
            opt(&req.size_category),
        );
        let new = NewOrganization {
            name,
            slug: &req.slug,
            display_name: display_name.as_deref(),
            description: description.as_deref(),
            website: website.as_deref(),
            email: Some(&req.email),
            phone: phone.as_deref(),
            address: req
                .address
                .as_ref()
                .map_or_else(|| serde_json::json!({}), convert::struct_to_json),
            organization_type,
            industry: industry.as_deref(),
            size_category: size_category.as_deref(),
            subscription_tier: tier.as_str(),
            status: if trial_days > 0 {
                Status::Trial.as_str()
            } else {
                Status::Active.as_str()
            },
            trial_days,
            trial_started_at: (trial_days > 0).then_some(now),
            trial_expires_at: (trial_days > 0).then(|| now + Days::days(i64::from(trial_days))),
            max_users: limits.max_users,
            max_classes: limits.max_classes,
            max_storage_gb: limits.max_storage_gb,
            max_api_calls_per_month: limits.max_api_calls_per_month,
            max_roblox_sessions: limits.max_roblox_sessions,
            created_by: actor.user_id(),
        };
        let locale = Locale {
            timezone: opt(&req.timezone).unwrap_or_else(|| Locale::default().timezone),
            locale: opt(&req.locale).unwrap_or_else(|| Locale::default().locale),
        };
        let request_id = req.request_id.as_str();

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let (response, fresh) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                if !request_id.is_empty() {
                    match idempotency::claim(conn, &method, request_id, None, &hash).await? {
                        idempotency::Claim::Fresh => {}
                        idempotency::Claim::Replay(bytes) => {
                            let first = pb::CreateTenantResponse::decode(bytes.as_slice())
                                .map_err(ApiError::internal)?;
                            return Ok((first, false));
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
                }
                let org = organization::insert(conn, &new)
                    .await
                    .map_err(|e| slug_taken(e, &req.slug))?;
                upsert_locale(conn, org.id, Some(&locale.timezone), Some(&locale.locale)).await?;
                audit::record_audit(
                    conn,
                    &actor.event(
                        Some(org.id),
                        &method,
                        "tenant",
                        org.id,
                        serde_json::json!({
                            "slug": org.slug,
                            "subscription_tier": org.subscription_tier,
                            "trial_days": org.trial_days,
                            "limits_given": req.limits.is_some(),
                        }),
                        Some(request_id),
                    ),
                )
                .await?;
                let response = pb::CreateTenantResponse {
                    tenant: Some(convert::tenant(&org, &locale)),
                };
                if !request_id.is_empty() {
                    idempotency::complete(
                        conn,
                        &method,
                        request_id,
                        Some(org.id),
                        &response.encode_to_vec(),
                    )
                    .await?;
                }
                Ok((response, true))
            })
            .await?;
        drop(conn);
        if fresh
            && let Some(t) = &response.tenant
            && let Ok(id) = Uuid::parse_str(&t.tenant_id)
        {
            self.apply_tier(id, tier, &actor).await;
        }
        self.state.totals.forget();
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "ListTenants"))]
    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, GrpcStatus> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_size = validate::page_size(&mut v, "page_size", req.page_size);
        let status = match req.status {
            0 => None,
            s => {
                let parsed = convert::status_from_proto(s);
                if parsed.is_none() {
                    v.add("status", "is not a known status");
                }
                parsed
            }
        };
        let tier = match convert::tier_from_proto(req.subscription_tier) {
            TierValue::Unset => None,
            TierValue::Tier(t) => Some(t),
            TierValue::Unknown => {
                v.add("subscription_tier", "is not a known tier");
                None
            }
        };
        let active_only = req.active_only.unwrap_or(true);
        let query = req.query.trim();
        validate::max_length(&mut v, "query", query, 200);
        let filters = validate::fingerprint(&[
            status.map_or("", Status::as_str),
            tier.map_or("", Tier::as_str),
            if active_only { "1" } else { "0" },
            query,
        ]);
        let cursor = if v.is_empty() {
            validate::decode_token_with_total(&req.page_token, &filters)?
        } else {
            None
        };
        v.finish()?;

        let filter = ListFilter {
            status,
            tier,
            active_only,
            query: (!query.is_empty()).then_some(query),
        };
        // ListTenants admits super admins only: platform-mode connection, no transaction — the
        // page (and, on a listing's first page, the count) and the locales.
        let mut conn = self.state.platform.get().await.map_err(ApiError::from)?;
        let conn = &mut *conn;
        let response = async {
            let mut rows = organization::list_page(
                conn,
                &filter,
                cursor.map(|(c, _)| (c.created_at, c.id)),
                page_size + 1,
            )
            .await
            .map_err(ApiError::from)?;
            let more = rows.len() as i64 > page_size;
            rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            // Taken when a listing starts (or reused from the last second) and carried by its
            // tokens.
            let total = match cursor {
                Some((_, total)) => total,
                None => match self.state.totals.get(&filters) {
                    Some(n) => n,
                    None => {
                        let generation = self.state.totals.generation();
                        let n = organization::count(conn, &filter)
                            .await
                            .map_err(ApiError::from)?;
                        self.state.totals.put(filters.clone(), n, generation);
                        n
                    }
                },
            };
            let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
            let locales = locales(conn, &ids).await?;
            let next_page_token = match rows.last() {
                Some(last) if more => validate::encode_token_with_total(
                    validate::Cursor {
                        created_at: last.created_at,
                        id: last.id,
                    },
                    &filters,
                    total,
                ),
                _ => String::new(),
            };
            Ok(pb::ListTenantsResponse {
                tenants: rows
                    .iter()
                    .map(|o| convert::tenant(o, &locales.get(&o.id).cloned().unwrap_or_default()))
                    .collect(),
                next_page_token,
                total_size: i32::try_from(total).unwrap_or(i32::MAX),
            })
        }
        .await
        .map_err(|e: ApiError| e)?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "GetTenant"))]
    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, GrpcStatus> {
        let full = match pb::TenantView::try_from(request.get_ref().view) {
            Ok(pb::TenantView::Unspecified | pb::TenantView::Full) => true,
            Ok(pb::TenantView::Basic) => false,
            Err(_) => return Err(ApiError::field("view", "is not a known view").into()),
        };
        let id = tenant_id(&request.get_ref().tenant_id)?;
        // GetTenant admits super admins only: a platform-mode connection, one statement (the
        // row and its locale settings), no transaction, pipelined on a shared connection with
        // the other reads in flight.
        let row = async {
            self.state
                .platform
                .read(|conn| {
                    Box::pin(async move {
                        let mut conn = conn;
                        organization::find_with_locale(&mut conn, id).await
                    })
                })
                .await
                .map_err(ApiError::from)?
                .map_err(|e| not_found(e, "tenant"))
        };
        // The enabled features (FULL view) are tenant-settings' (tier matrix, toggles,
        // overrides): asked of its cached read while the row is read here. The BASIC view
        // builds no call at all: a tonic call's future is kilobytes, and carrying it in this
        // one (which tonic boxes) was a tenth of tenant-admin's CPU per BASIC read, in copies.
        let (row, features) = if full {
            tokio::join!(row, Box::pin(self.features_of(id)))
        } else {
            (row.await, Ok(Vec::new()))
        };
        let (org, locale) = row?;
        let features = features?;
        let locale = locale
            .map(|(timezone, locale)| Locale { timezone, locale })
            .unwrap_or_default();
        let mut tenant = convert::tenant(&org, &locale);
        tenant.enabled_features = features
            .iter()
            .filter(|f| f.enabled)
            .map(|f| f.feature)
            .collect();
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "UpdateTenant"))]
    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::UpdateTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        if paths.is_empty() {
            v.add("update_mask", "is required: name the fields to update");
        }
        for p in &paths {
            if !UPDATABLE.contains(&p.as_str()) {
                v.add(
                    "update_mask",
                    format!(
                        "unknown or read-only path '{p}'; allowed: {}",
                        UPDATABLE.join(", ")
                    ),
                );
            }
        }
        let t = req.tenant.clone().unwrap_or_default();
        let has = |p: &str| paths.iter().any(|x| x == p);
        let field = |name: &str| format!("tenant.{name}");
        let name = t.name.trim().to_owned();
        if has("name") {
            validate::length(&mut v, &field("name"), &name, 1, 200);
        }
        if has("display_name") {
            validate::max_length(&mut v, &field("display_name"), &t.display_name, 250);
        }
        if has("website") {
            validate::max_length(&mut v, &field("website"), &t.website, 500);
        }
        if has("email") {
            validate::email(&mut v, &field("email"), &t.email, true);
        }
        if has("phone") {
            validate::max_length(&mut v, &field("phone"), &t.phone, 50);
        }
        if has("timezone") {
            if t.timezone.is_empty() {
                v.add(&field("timezone"), "is required");
            } else {
                check_timezone(&mut v, &field("timezone"), &t.timezone);
            }
        }
        if has("locale") {
            check_locale(&mut v, &field("locale"), &t.locale);
        }
        if has("organization_type") {
            check_choice(
                &mut v,
                &field("organization_type"),
                &t.organization_type,
                &ORGANIZATION_TYPES,
            );
        }
        if has("industry") {
            validate::max_length(&mut v, &field("industry"), &t.industry, 100);
        }
        if has("size_category") && !t.size_category.is_empty() {
            check_choice(
                &mut v,
                &field("size_category"),
                &t.size_category,
                &SIZE_CATEGORIES,
            );
        }
        let new_tier = if has("subscription_tier") {
            match convert::tier_from_proto(t.subscription_tier) {
                TierValue::Tier(tier) => Some(tier),
                _ => {
                    v.add(&field("subscription_tier"), "must be a known tier");
                    None
                }
            }
        } else {
            None
        };
        if has("billing_email") {
            validate::email(&mut v, &field("billing_email"), &t.billing_email, false);
        }
        if has("tax_id") {
            validate::max_length(&mut v, &field("tax_id"), &t.tax_id, 100);
        }
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;

        let opt = |p: &str, s: &str| -> Option<Option<String>> {
            has(p).then(|| (!s.is_empty()).then(|| s.to_owned()))
        };
        let display_name = opt("display_name", &t.display_name);
        let description = opt("description", &t.description);
        let website = opt("website", &t.website);
        let email = opt("email", &t.email);
        let phone = opt("phone", &t.phone);
        let industry = opt("industry", &t.industry);
        let size_category = opt("size_category", &t.size_category);
        let billing_email = opt("billing_email", &t.billing_email);
        let tax_id = opt("tax_id", &t.tax_id);
        let json = |p: &str, s: &Option<tenantry_proto::prost_types::Struct>| {
            has(p).then(|| {
                s.as_ref()
                    .map_or_else(|| serde_json::json!({}), convert::struct_to_json)
            })
        };
        let changes = OrganizationChangeset {
            name: has("name").then_some(name.as_str()),
            display_name: display_name.as_ref().map(|o| o.as_deref()),
            description: description.as_ref().map(|o| o.as_deref()),
            website: website.as_ref().map(|o| o.as_deref()),
            email: email.as_ref().map(|o| o.as_deref()),
            phone: phone.as_ref().map(|o| o.as_deref()),
            address: json("address", &t.address),
            organization_type: has("organization_type").then_some(t.organization_type.as_str()),
            industry: industry.as_ref().map(|o| o.as_deref()),
            size_category: size_category.as_ref().map(|o| o.as_deref()),
            subscription_tier: new_tier.map(Tier::as_str),
            billing_email: billing_email.as_ref().map(|o| o.as_deref()),
            billing_address: json("billing_address", &t.billing_address),
            tax_id: tax_id.as_ref().map(|o| o.as_deref()),
            updated_by: Some(actor.user_id()),
        };
        let timezone = has("timezone").then_some(t.timezone.as_str());
        let locale = has("locale").then_some(t.locale.as_str());
        let method = action(SERVICE, "UpdateTenant");

        // UpdateTenant admits super admins only: a platform-mode connection (no scope
        // statement). A change that touches neither the tier nor the locale settings (the
        // common case) is one statement: the UPDATE, its audit row and the read of the
        // tenant with its locale, committed together; Postgres parses and plans it once per
        // connection and update mask.
        let event = |previous_tier: Option<String>| {
            actor.event(
                Some(id),
                &method,
                "tenant",
                id,
                serde_json::json!({
                    "changed_fields": paths,
                    "previous_tier": previous_tier,
                }),
                None,
            )
        };
        let locale_changes = timezone.is_some() || locale.is_some();
        if new_tier.is_none() && !locale_changes {
            let event = event(None);
            let mut conn = self.state.platform.get().await.map_err(ApiError::from)?;
            let (org, locale) =
                organization::update_profile_audited(&mut **conn, id, &changes, &event)
                    .await
                    .map_err(|e| not_found(e, "tenant"))?;
            drop(conn);
            let locale = locale
                .map(|(timezone, locale)| Locale { timezone, locale })
                .unwrap_or_default();
            self.state.totals.forget();
            return Ok(Response::new(pb::UpdateTenantResponse {
                tenant: Some(convert::tenant(&org, &locale)),
            }));
        }
        // Otherwise a transaction. The row is locked and read first only for a tier change,
        // which checks the new limits against usage.
        let mut conn = self.state.platform.get().await.map_err(ApiError::from)?;
        let (tenant, tier_changed) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                let mut previous_tier = None;
                let mut tier_changed = None;
                if let Some(tier) = new_tier {
                    let before = organization::find_for_update(conn, id)
                        .await
                        .map_err(|e| not_found(e, "tenant"))?;
                    if tier != before.tier() {
                        let limits = tier.limits();
                        let below = limits.below_usage(&before);
                        if !below.is_empty() {
                            return Err(ApiError::FailedPrecondition(format!(
                                "the {tier} tier's limits are below current usage: {}",
                                below.join(", ")
                            )));
                        }
                        organization::update_limits(conn, id, &limits).await?;
                        previous_tier = Some(before.subscription_tier);
                        tier_changed = Some(tier);
                    }
                }
                let event = event(previous_tier);
                // The update, the audit row and (unless the locale settings change too) the
                // locale read go out pipelined on the transaction's connection: one round trip
                // instead of three. All are awaited and the update's error comes first: for an
                // unknown tenant the audit row's foreign key fails too, but the answer is
                // NOT_FOUND, and the transaction rolls back.
                let shared: &AsyncPgConnection = conn;
                let (org, audited, read) = tokio::join!(
                    async {
                        let mut c = shared;
                        organization::update_profile(&mut c, id, &changes).await
                    },
                    async {
                        let mut c = shared;
                        audit::record_audit(&mut c, &event).await
                    },
                    async {
                        if locale_changes {
                            return Ok(None);
                        }
                        let mut c = shared;
                        locales(&mut c, &[id]).await.map(Some)
                    },
                );
                let org = org.map_err(|e| not_found(e, "tenant"))?;
                audited?;
                let mut read = match read? {
                    Some(read) => read,
                    None => {
                        upsert_locale(conn, id, timezone, locale).await?;
                        locales(conn, &[id]).await?
                    }
                };
                let locale = read.remove(&id).unwrap_or_default();
                Ok((convert::tenant(&org, &locale), tier_changed))
            })
            .await?;
        drop(conn);
        if let Some(tier) = tier_changed {
            self.apply_tier(id, tier, &actor).await;
        }
        self.state.totals.forget();
        Ok(Response::new(pb::UpdateTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "UpdateTenantLimits"))]
    async fn update_tenant_limits(
        &self,
        request: Request<pb::UpdateTenantLimitsRequest>,
    ) -> Result<Response<pb::UpdateTenantLimitsResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        if let Some(n) = req.max_users
            && !(1..=10_000).contains(&n)
        {
            v.add("max_users", "must be between 1 and 10000");
        }
        if let Some(n) = req.max_classes
            && !(1..=1_000).contains(&n)
        {
            v.add("max_classes", "must be between 1 and 1000");
        }
        if let Some(n) = req.max_storage_gb
            && !(n.is_finite() && (0.1..=1_000.0).contains(&n))
        {
            v.add("max_storage_gb", "must be between 0.1 and 1000.0");
        }
        if let Some(n) = req.max_api_calls_per_month
            && !(100..=10_000_000).contains(&n)
        {
            v.add(
                "max_api_calls_per_month",
                "must be between 100 and 10000000",
            );
        }
        if let Some(n) = req.max_roblox_sessions
            && !(1..=1_000).contains(&n)
        {
            v.add("max_roblox_sessions", "must be between 1 and 1000");
        }
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;
        let method = action(SERVICE, "UpdateTenantLimits");

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let tenant = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                let before = organization::find_for_update(conn, id)
                    .await
                    .map_err(|e| not_found(e, "tenant"))?;
                let mut limits = before.limits();
                let mut changed = Vec::new();
                if let Some(n) = req.max_users {
                    limits.max_users = n;
                    changed.push("max_users");
                }
                if let Some(n) = req.max_classes {
                    limits.max_classes = n;
                    changed.push("max_classes");
                }
                if let Some(n) = req.max_storage_gb {
                    limits.max_storage_gb = n;
                    changed.push("max_storage_gb");
                }
                if let Some(n) = req.max_api_calls_per_month {
                    limits.max_api_calls_per_month = i32::try_from(n).unwrap_or(i32::MAX);
                    changed.push("max_api_calls_per_month");
                }
                if let Some(n) = req.max_roblox_sessions {
                    limits.max_roblox_sessions = n;
                    changed.push("max_roblox_sessions");
                }
                if changed.is_empty() {
                    return tenant_message(conn, &before).await;
                }
                let below: Vec<&str> = limits
                    .below_usage(&before)
                    .into_iter()
                    .filter(|f| changed.contains(f))
                    .collect();
                if !below.is_empty() && !req.force {
                    return Err(ApiError::FailedPrecondition(format!(
                        "below current usage: {}; set force to lower anyway",
                        below.join(", ")
                    )));
                }
                let org = organization::update_limits(conn, id, &limits).await?;
                audit::record_audit(
                    conn,
                    &actor.event(
                        Some(id),
                        &method,
                        "tenant",
                        id,
                        serde_json::json!({
                            "changed_fields": changed,
                            "force": req.force,
                            "below_usage": below,
                        }),
                        None,
                    ),
                )
                .await?;
                tenant_message(conn, &org).await
            })
            .await?;
        Ok(Response::new(pb::UpdateTenantLimitsResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "SuspendTenant"))]
    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::SuspendTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        let reason = req.reason.trim().to_owned();
        check_reason(&mut v, &reason, true);
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;
        let reason = reason.as_str();
        let tenant = self
            .transition(id, &actor, "SuspendTenant", move |org| match org.status() {
                Status::Cancelled => Err(ApiError::FailedPrecondition(
                    if org.deleted_at.is_some() {
                        "tenant is deleted"
                    } else {
                        "tenant is cancelled"
                    }
                    .into(),
                )),
                Status::Suspended => Ok(None),
                Status::Active | Status::Trial | Status::Pending => {
                    let changes = LifecycleChangeset {
                        status: Some(Status::Suspended.as_str()),
                        is_active: Some(false),
                        suspended_at: Some(Some(Utc::now())),
                        suspension_reason: Some(Some(reason)),
                        ..Default::default()
                    };
                    Ok(Some((
                        changes,
                        serde_json::json!({
                            "reason": reason,
                            "previous_status": org.status,
                            "changed_fields": ["status", "is_active", "suspension_reason"],
                        }),
                    )))
                }
            })
            .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::SuspendTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "ReactivateTenant"))]
    async fn reactivate_tenant(
        &self,
        request: Request<pb::ReactivateTenantRequest>,
    ) -> Result<Response<pb::ReactivateTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        let reason = req.reason.trim().to_owned();
        check_reason(&mut v, &reason, false);
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;
        let tenant = self
            .transition(id, &actor, "ReactivateTenant", move |org| {
                if org.status() != Status::Suspended || org.deleted_at.is_some() {
                    return Err(ApiError::FailedPrecondition(format!(
                        "tenant is not suspended (status {})",
                        org.status
                    )));
                }
                let status = org.resumed_status(Utc::now());
                let changes = LifecycleChangeset {
                    status: Some(status.as_str()),
                    is_active: Some(true),
                    suspended_at: Some(None),
                    suspension_reason: Some(None),
                    ..Default::default()
                };
                Ok(Some((
                    changes,
                    serde_json::json!({
                        "reason": reason,
                        "previous_reason": org.suspension_reason,
                        "new_status": status.as_str(),
                        "changed_fields": ["status", "is_active", "suspension_reason"],
                    }),
                )))
            })
            .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::ReactivateTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "DeleteTenant"))]
    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        let reason = req.reason.trim().to_owned();
        check_reason(&mut v, &reason, false);
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;

        if req.permanent {
            return self.delete_permanently(id, &actor, &req, &reason).await;
        }
        let deleted_by = actor.user_id();
        let tenant = self
            .transition(id, &actor, "DeleteTenant", move |org| {
                if org.deleted_at.is_some() {
                    return Ok(None);
                }
                let changes = LifecycleChangeset {
                    status: Some(Status::Cancelled.as_str()),
                    is_active: Some(false),
                    deleted_at: Some(Some(Utc::now())),
                    deleted_by: Some(deleted_by),
                    ..Default::default()
                };
                Ok(Some((
                    changes,
                    serde_json::json!({
                        "permanent": false,
                        "reason": reason,
                        "previous_status": org.status,
                        "changed_fields": ["status", "is_active", "deleted_at"],
                    }),
                )))
            })
            .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::DeleteTenantResponse {
            tenant: Some(tenant),
            backup_id: String::new(),
            deleted_row_counts: HashMap::new(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "RestoreTenant"))]
    async fn restore_tenant(
        &self,
        request: Request<pb::RestoreTenantRequest>,
    ) -> Result<Response<pb::RestoreTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let id = tenant_id(&request.get_ref().tenant_id)?;
        let tenant = self
            .transition(id, &actor, "RestoreTenant", |org| {
                if org.deleted_at.is_none() {
                    return Err(ApiError::FailedPrecondition("tenant is not deleted".into()));
                }
                // A tenant suspended before its deletion comes back suspended.
                let status = if org.suspended_at.is_some() {
                    Status::Suspended
                } else {
                    org.resumed_status(Utc::now())
                };
                let changes = LifecycleChangeset {
                    status: Some(status.as_str()),
                    is_active: Some(status != Status::Suspended),
                    deleted_at: Some(None),
                    deleted_by: Some(None),
                    ..Default::default()
                };
                Ok(Some((
                    changes,
                    serde_json::json!({
                        "new_status": status.as_str(),
                        "changed_fields": ["status", "is_active", "deleted_at"],
                    }),
                )))
            })
            .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::RestoreTenantResponse {
            tenant: Some(tenant),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "ProvisionTenant"))]
    async fn provision_tenant(
        &self,
        request: Request<pb::ProvisionTenantRequest>,
    ) -> Result<Response<pb::ProvisionTenantResponse>, GrpcStatus> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        validate::email(&mut v, "admin_email", &req.admin_email, false);
        if !req.admin_username.is_empty() {
            validate::length(&mut v, "admin_username", &req.admin_username, 3, 50);
            if req
                .admin_username
                .chars()
                .any(|c| c.is_whitespace() || c == '@')
            {
                v.add("admin_username", "must not contain spaces or '@'");
            }
        }
        if let Some(p) = req.admin_password.as_deref()
            && !p.is_empty()
        {
            crate::passwords::check_policy(&mut v, "admin_password", p);
        }
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("tenant_id", "is required"))?;

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let org = organization::find(conn, id)
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
            Ok(())
        })
        .await?;
        drop(conn);

        let forwarded = prov::ProvisionTenantRequest {
            tenant_id: id.to_string(),
            request_id: if req.request_id.is_empty() {
                Uuid::new_v4().to_string()
            } else {
                req.request_id.clone()
            },
            create_admin_user: req.create_admin_user,
            admin_email: req.admin_email.clone(),
            admin_username: req.admin_username.clone(),
            admin_password: req.admin_password.clone(),
            send_welcome_email: req.send_welcome_email,
            initialize_defaults: req.initialize_defaults,
        };
        let mut client = prov::provisioning_service_client::ProvisioningServiceClient::new(
            self.state.provisioning.clone(),
        );
        let r = client
            .provision_tenant(with_actor(forwarded, &actor))
            .await?
            .into_inner();
        self.state.totals.forget();
        Ok(Response::new(pb::ProvisionTenantResponse {
            tenant_id: r.tenant_id,
            status: r.status,
            steps_completed: r.steps_completed,
            errors: r.errors,
            admin_user_id: r.admin_user_id,
            generated_admin_password: r.generated_admin_password,
            job_id: r.job_id,
            message: r.message,
            provisioned_at: r.provisioned_at,
        }))
    }
}

impl TenantsApi {
    /// DeleteTenant with `permanent`: provisioning exports a backup and removes every row of
    /// the tenant (DeprovisionTenant, mode HARD); its answer, or its error, is returned as is.
    async fn delete_permanently(
        &self,
        id: Uuid,
        actor: &Actor,
        req: &pb::DeleteTenantRequest,
        reason: &str,
    ) -> Result<Response<pb::DeleteTenantResponse>, GrpcStatus> {
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            organization::find(conn, id)
                .await
                .map_err(|e| not_found(e, "tenant"))?;
            Ok(())
        })
        .await?;
        drop(conn);

        let forwarded = prov::DeprovisionTenantRequest {
            tenant_id: id.to_string(),
            mode: prov::DeprovisionMode::Hard.into(),
            dry_run: false,
            request_id: if req.request_id.is_empty() {
                Uuid::new_v4().to_string()
            } else {
                req.request_id.clone()
            },
            reason: if reason.is_empty() {
                "permanently deleted by a super admin".to_owned()
            } else {
                reason.to_owned()
            },
        };
        let mut client = prov::provisioning_service_client::ProvisioningServiceClient::new(
            self.state.provisioning.clone(),
        );
        let r = client
            .deprovision_tenant(with_actor(forwarded, actor))
            .await?
            .into_inner();

        // The tenant's own events went with it: record the deletion as a platform event.
        let method = action(SERVICE, "DeleteTenant");
        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let request_id = req.request_id.as_str();
        conn.transaction::<_, ApiError, _>(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            audit::record_audit(
                conn,
                &actor.event(
                    None,
                    &method,
                    "organization",
                    id,
                    serde_json::json!({
                        "permanent": true,
                        "reason": reason,
                        "backup_id": r.backup_id,
                        "job_id": r.job_id,
                    }),
                    Some(request_id),
                ),
            )
            .await?;
            Ok(())
        })
        .await?;
        self.state.totals.forget();
        Ok(Response::new(pb::DeleteTenantResponse {
            tenant: None,
            backup_id: r.backup_id,
            deleted_row_counts: r.row_counts,
        }))
    }
}
