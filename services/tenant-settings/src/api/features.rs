//! GetFeatures, SetFeature, GrantFeatureOverride, RevokeFeatureOverride, ApplyTier.

use diesel_async::AsyncConnection as _;
use prost::Message as _;
use sha2::{Digest, Sha256};
use tenantry_db::models::settings as db;
use tenantry_proto::common::v1::{FeatureState, SubscriptionTier};
use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tonic::Request;
use uuid::Uuid;

use super::audit::Actor;
use super::{SettingsApi, feature_arg, load_usable, scope, target, user_id};
use crate::tiers::{self, MATRIX, Offer};
use crate::view::{SOURCE_ORG_ADMIN, SOURCE_OVERRIDE, SOURCE_TIER, TenantState, feature_states};

const APPLY_TIER: &str = "/tenantry.settings.v1.TenantSettingsService/ApplyTier";

fn check_reason(v: &mut Violations, reason: &str) {
    let n = reason.trim().chars().count();
    v.check(
        (1..=500).contains(&n),
        "reason",
        "is required (1 to 500 characters)",
    );
}

/// The state of the feature at `index` after a change, and the new version.
async fn state_after(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: Uuid,
    index: usize,
) -> ApiResult<(FeatureState, i64)> {
    let version = db::bump_version(conn, tenant).await?;
    let state = TenantState::load(conn, tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    let feature = state
        .feature_states()
        .into_iter()
        .nth(index)
        .ok_or_else(|| ApiError::internal("feature index out of range"))?;
    Ok((feature, version))
}

/// The matrix names of features given as enum values (for audit metadata).
fn feature_names(features: &[i32]) -> Vec<&'static str> {
    features
        .iter()
        .filter_map(|f| {
            let f = tenantry_proto::common::v1::Feature::try_from(*f).ok()?;
            tiers::feature_index(f).map(|i| MATRIX[i].1)
        })
        .collect()
}

impl SettingsApi {
    pub(super) async fn get_features(
        &self,
        request: Request<pb::GetFeaturesRequest>,
    ) -> ApiResult<pb::GetFeaturesResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let mut conn = self.state.conn().await?;
        let state = conn
            .transaction(async |conn| -> ApiResult<TenantState> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await
            })
            .await?;
        Ok(pb::GetFeaturesResponse {
            tenant_id: tenant.to_string(),
            subscription_tier: state.tier() as i32,
            features: state.feature_states(),
            version: state.version(),
        })
    }

    pub(super) async fn set_feature(
        &self,
        request: Request<pb::SetFeatureRequest>,
    ) -> ApiResult<pb::SetFeatureResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let (_, index) = feature_arg("feature", request.get_ref().feature)?;
        let enabled = request.get_ref().enabled;
        let name = MATRIX[index].1;
        let mut conn = self.state.conn().await?;
        let (feature, version) = conn
            .transaction(async |conn| -> ApiResult<(FeatureState, i64)> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                let state = load_usable(conn, &caller, tenant).await?;
                let current = db::lock_settings(conn, tenant).await?;
                let tier = state.tier();
                let row = state.features.iter().find(|r| r.feature == name);
                if row.is_some_and(|r| r.source == SOURCE_OVERRIDE) {
                    return Err(ApiError::FailedPrecondition(format!(
                        "{name} is under an operator override"
                    )));
                }
                if !tiers::offers(tier, index) {
                    if enabled {
                        return Err(ApiError::FailedPrecondition(format!(
                            "the {} tier does not offer {name}",
                            tiers::tier_name(tier)
                        )));
                    }
                    // Already off: nothing to store.
                    let features = state.feature_states();
                    return Ok((features[index].clone(), current.version));
                }
                if row.is_some_and(|r| r.source == SOURCE_ORG_ADMIN && r.enabled == enabled) {
                    let features = state.feature_states();
                    return Ok((features[index].clone(), current.version));
                }
                db::upsert_feature(
                    conn,
                    tenant,
                    name,
                    enabled,
                    SOURCE_ORG_ADMIN,
                    user_id(&caller),
                )
                .await?;
                actor
                    .record(
                        conn,
                        tenant,
                        "SetFeature",
                        ("feature", name),
                        serde_json::json!({ "enabled": enabled }),
                    )
                    .await?;
                state_after(conn, tenant, index).await
            })
            .await?;
        Ok(pb::SetFeatureResponse {
            feature: Some(feature),
            version,
        })
    }

    pub(super) async fn grant_feature_override(
        &self,
        request: Request<pb::GrantFeatureOverrideRequest>,
    ) -> ApiResult<pb::GrantFeatureOverrideResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let r = request.get_ref();
        let mut v = Violations::new();
        let index = match feature_arg("feature", r.feature) {
            Ok((_, i)) => Some(i),
            Err(_) => {
                v.add("feature", "must be a feature");
                None
            }
        };
        check_reason(&mut v, &r.reason);
        v.finish()?;
        let index = index.ok_or_else(|| ApiError::field("feature", "must be a feature"))?;
        let name = MATRIX[index].1;
        let (enabled, reason) = (r.enabled, r.reason.trim());
        let mut conn = self.state.conn().await?;
        let (feature, version) = conn
            .transaction(async |conn| -> ApiResult<(FeatureState, i64)> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await?;
                db::lock_settings(conn, tenant).await?;
                db::upsert_feature(
                    conn,
                    tenant,
                    name,
                    enabled,
                    SOURCE_OVERRIDE,
                    user_id(&caller),
                )
                .await?;
                actor
                    .record(
                        conn,
                        tenant,
                        "GrantFeatureOverride",
                        ("feature", name),
                        serde_json::json!({ "enabled": enabled, "reason": reason }),
                    )
                    .await?;
                state_after(conn, tenant, index).await
            })
            .await?;
        Ok(pb::GrantFeatureOverrideResponse {
            feature: Some(feature),
            version,
        })
    }

    pub(super) async fn revoke_feature_override(
        &self,
        request: Request<pb::RevokeFeatureOverrideRequest>,
    ) -> ApiResult<pb::RevokeFeatureOverrideResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let r = request.get_ref();
        let mut v = Violations::new();
        let index = match feature_arg("feature", r.feature) {
            Ok((_, i)) => Some(i),
            Err(_) => {
                v.add("feature", "must be a feature");
                None
            }
        };
        check_reason(&mut v, &r.reason);
        v.finish()?;
        let index = index.ok_or_else(|| ApiError::field("feature", "must be a feature"))?;
        let name = MATRIX[index].1;
        let reason = r.reason.trim();
        let mut conn = self.state.conn().await?;
        let (feature, version) = conn
            .transaction(async |conn| -> ApiResult<(FeatureState, i64)> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                let state = load_usable(conn, &caller, tenant).await?;
                db::lock_settings(conn, tenant).await?;
                if !state
                    .features
                    .iter()
                    .any(|r| r.feature == name && r.source == SOURCE_OVERRIDE)
                {
                    return Err(ApiError::NotFound("feature override"));
                }
                db::delete_feature(conn, tenant, name).await?;
                actor
                    .record(
                        conn,
                        tenant,
                        "RevokeFeatureOverride",
                        ("feature", name),
                        serde_json::json!({ "reason": reason }),
                    )
                    .await?;
                state_after(conn, tenant, index).await
            })
            .await?;
        Ok(pb::RevokeFeatureOverrideResponse {
            feature: Some(feature),
            version,
        })
    }

    pub(super) async fn apply_tier(
        &self,
        request: Request<pb::ApplyTierRequest>,
    ) -> ApiResult<pb::ApplyTierResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, Some(&request.get_ref().request_id));
        let r = request.get_ref();
        let mut v = Violations::new();
        let tier = SubscriptionTier::try_from(r.tier)
            .ok()
            .filter(|t| *t != SubscriptionTier::Unspecified);
        v.check(tier.is_some(), "tier", "must be a tier");
        let key = r.request_id.trim();
        v.check(
            (1..=128).contains(&key.len()),
            "request_id",
            "is required (1 to 128 characters)",
        );
        v.finish()?;
        let tier = tier.ok_or_else(|| ApiError::field("tier", "must be a tier"))?;
        let hash = Sha256::digest(format!("{tenant}/{}", tier as i32).as_bytes()).to_vec();
        let mut conn = self.state.conn().await?;
        conn.transaction(async |conn| -> ApiResult<pb::ApplyTierResponse> {
            tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
            let state = load_usable(conn, &caller, tenant).await?;
            db::lock_settings(conn, tenant).await?;
            if let Some(stored) = db::find_request(conn, APPLY_TIER, key).await? {
                if stored.request_hash != hash {
                    return Err(ApiError::field(
                        "request_id",
                        "was used for a different request",
                    ));
                }
                return pb::ApplyTierResponse::decode(
                    stored.response.unwrap_or_default().as_slice(),
                )
                .map_err(ApiError::internal);
            }
            // Before: what was last stored (tier defaults that ApplyTier wrote, toggles,
            // overrides), else the tenant's current tier.
            let old_tier = state.tier();
            let before: Vec<bool> = MATRIX
                .iter()
                .enumerate()
                .map(|(i, (_, name, _))| {
                    state
                        .features
                        .iter()
                        .find(|r| r.feature == *name)
                        .map_or(tiers::offer(old_tier, i) == Offer::Default, |r| r.enabled)
                })
                .collect();
            let mut writes: Vec<(&str, bool, &str)> = Vec::new();
            for (i, (_, name, _)) in MATRIX.iter().enumerate() {
                let row = state.features.iter().find(|r| r.feature == *name);
                let keep = row.is_some_and(|r| {
                    r.source == SOURCE_OVERRIDE
                        || (r.source == SOURCE_ORG_ADMIN && tiers::offers(tier, i))
                });
                if !keep {
                    writes.push((name, tiers::offer(tier, i) == Offer::Default, SOURCE_TIER));
                }
            }
            db::upsert_features(conn, tenant, &writes, None).await?;
            let rows = db::list_features(conn, tenant).await?;
            let after = feature_states(tier, &rows);
            let version = db::bump_version(conn, tenant).await?;
            let response = pb::ApplyTierResponse {
                enabled_features: after
                    .iter()
                    .filter(|f| f.enabled)
                    .map(|f| f.feature)
                    .collect(),
                disabled_features: after
                    .iter()
                    .zip(&before)
                    .filter(|(f, was)| **was && !f.enabled)
                    .map(|(f, _)| f.feature)
                    .collect(),
                version,
            };
            actor
                .record(
                    conn,
                    tenant,
                    "ApplyTier",
                    ("tenant", &tenant.to_string()),
                    serde_json::json!({
                        "tier": tiers::tier_name(tier),
                        "enabled_features": feature_names(&response.enabled_features),
                        "disabled_features": feature_names(&response.disabled_features),
                    }),
                )
                .await?;
            db::save_request(
                conn,
                APPLY_TIER,
                key,
                Some(tenant),
                &hash,
                &response.encode_to_vec(),
            )
            .await?;
            Ok(response)
        })
        .await
    }
}
