//! Tier-gated features, org-admin toggles, operator overrides and tier application.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{
    assert_one_event, audit_events, bad_fields, client, create_tenant, exec, member_as, suite,
};
use tenantry_auth::OrgRole;
use tenantry_proto::common::v1::{Feature, FeatureSource, SubscriptionTier};
use tenantry_proto::settings::v1 as pb;
use tenantry_testing::{authed, member_token, service_token, super_admin_token};
use tonic::Code;
use uuid::Uuid;

fn enabled(features: &[tenantry_proto::common::v1::FeatureState]) -> Vec<Feature> {
    features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.feature())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn education_tenant_sso_needs_an_operator_override() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "education", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);

    let got = c
        .get_features(authed(
            pb::GetFeaturesRequest::default(),
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.subscription_tier(), SubscriptionTier::Education);
    assert_eq!(got.features.len(), 15);
    assert_eq!(
        enabled(&got.features),
        [
            Feature::AiChat,
            Feature::RobloxIntegration,
            Feature::AdvancedAnalytics,
            Feature::CustomBranding,
            Feature::ParentPortal,
            Feature::MobileApp,
            Feature::Gamification,
            Feature::LiveClasses,
        ]
    );
    assert_eq!(got.features.iter().filter(|f| f.available).count(), 11);
    assert!(
        got.features
            .iter()
            .all(|f| f.source() == FeatureSource::TierDefault)
    );
    let sso = &got.features[Feature::Sso as usize - 1];
    assert!(!sso.available);
    assert_eq!(
        sso.available_in_tiers,
        [SubscriptionTier::Enterprise as i32]
    );

    // The brief's own example: enabling sso on an education tenant now fails.
    let set = |feature: Feature, on: bool| {
        authed(
            pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: feature as i32,
                enabled: on,
            },
            &admin,
        )
    };
    let err = c.set_feature(set(Feature::Sso, true)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("education"), "{}", err.message());
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM tenant_features")
            .await,
        0
    );

    // A super admin grants an override: enabled, source operator override.
    let sa = super_admin_token();
    let granted = c
        .grant_feature_override(authed(
            pb::GrantFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: Feature::Sso as i32,
                enabled: true,
                reason: "district contract".into(),
            },
            &sa,
        ))
        .await
        .unwrap()
        .into_inner();
    let state = granted.feature.unwrap();
    assert!(state.enabled);
    assert_eq!(state.source(), FeatureSource::OperatorOverride);
    let after = c
        .get_features(authed(
            pb::GetFeaturesRequest {
                tenant_id: tenant.to_string(),
            },
            &sa,
        ))
        .await
        .unwrap()
        .into_inner();
    let sso = &after.features[Feature::Sso as usize - 1];
    assert!(sso.enabled);
    assert_eq!(sso.source(), FeatureSource::OperatorOverride);
    assert!(after.version > got.version);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_features WHERE organization_id = '{tenant}' \
                 AND feature = 'sso' AND enabled AND source = 'operator_override'"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{tenant}' \
                 AND action = 'tenantry.settings.v1.TenantSettingsService/GrantFeatureOverride' \
                 AND target_id = 'sso' \
                 AND metadata ->> 'reason' = 'district contract'"
            ))
            .await,
        1
    );
    // Under an override, the org admin cannot change it.
    let err = c.set_feature(set(Feature::Sso, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Revoking returns it to the tier's decision; revoking again is NOT_FOUND.
    let revoke = || {
        authed(
            pb::RevokeFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: Feature::Sso as i32,
                reason: "contract ended".into(),
            },
            &sa,
        )
    };
    let revoked = c
        .revoke_feature_override(revoke())
        .await
        .unwrap()
        .into_inner()
        .feature
        .unwrap();
    assert!(!revoked.enabled);
    assert_eq!(revoked.source(), FeatureSource::TierDefault);
    let err = c.revoke_feature_override(revoke()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Bad input names the fields; an org admin may not grant; another tenant is NOT_FOUND.
    let err = c
        .grant_feature_override(authed(
            pb::GrantFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: 0,
                enabled: true,
                reason: String::new(),
            },
            &sa,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["feature", "reason"]);
    let err = c
        .grant_feature_override(authed(
            pb::GrantFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: Feature::Sso as i32,
                enabled: true,
                reason: "x".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .grant_feature_override(authed(
            pb::GrantFeatureOverrideRequest {
                tenant_id: Uuid::new_v4().to_string(),
                feature: Feature::Sso as i32,
                enabled: true,
                reason: "x".into(),
            },
            &sa,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn org_admins_toggle_offered_features_idempotently() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);
    let set = |feature: i32, on: bool, token: &str| {
        authed(
            pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature,
                enabled: on,
            },
            token,
        )
    };
    let first = c
        .set_feature(set(Feature::Webhooks as i32, true, &admin))
        .await
        .unwrap()
        .into_inner();
    let state = first.feature.unwrap();
    assert!(state.enabled && state.available);
    assert_eq!(state.source(), FeatureSource::OrgAdmin);
    let again = c
        .set_feature(set(Feature::Webhooks as i32, true, &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, first.version, "idempotent: no new version");
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_features WHERE organization_id = '{tenant}' \
                 AND feature = 'webhooks' AND enabled AND source = 'org_admin'"
            ))
            .await,
        1
    );
    // Switching a default off.
    let off = c
        .set_feature(set(Feature::AiChat as i32, false, &admin))
        .await
        .unwrap()
        .into_inner()
        .feature
        .unwrap();
    assert!(!off.enabled);

    let err = c.set_feature(set(0, true, &admin)).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["feature"]);
    let err = c
        .set_feature(set(
            Feature::Webhooks as i32,
            true,
            &member_token(tenant, OrgRole::Teacher),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .set_feature(authed(
            pb::SetFeatureRequest {
                tenant_id: create_tenant(&suite.db, "free", "active").await.to_string(),
                feature: Feature::AiChat as i32,
                enabled: false,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_tier_keeps_offered_toggles_and_overrides_and_reports_the_rest() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "enterprise", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);
    let sa = super_admin_token();
    let svc = service_token();
    // Provisioning applies the tier first (it stores the tier's decisions).
    c.apply_tier(authed(
        pb::ApplyTierRequest {
            tenant_id: tenant.to_string(),
            tier: SubscriptionTier::Enterprise as i32,
            request_id: "provision-1".into(),
        },
        &svc,
    ))
    .await
    .unwrap();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_features WHERE organization_id = '{tenant}' \
                 AND source = 'tier_default'"
            ))
            .await,
        15
    );
    // Manual toggles on enterprise: video_conferencing (education does not offer it) and
    // content_versioning (education offers it); an override on advanced_security.
    for f in [Feature::VideoConferencing, Feature::ContentVersioning] {
        c.set_feature(authed(
            pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: f as i32,
                enabled: true,
            },
            &admin,
        ))
        .await
        .unwrap();
    }
    c.grant_feature_override(authed(
        pb::GrantFeatureOverrideRequest {
            tenant_id: tenant.to_string(),
            feature: Feature::AdvancedSecurity as i32,
            enabled: true,
            reason: "pilot".into(),
        },
        &sa,
    ))
    .await
    .unwrap();

    // tenant-admin commits the tier change, then calls ApplyTier.
    exec(
        &suite.db,
        &format!("UPDATE organizations SET subscription_tier = 'education' WHERE id = '{tenant}'"),
    )
    .await;
    let apply = |request_id: &str, tier: SubscriptionTier| {
        authed(
            pb::ApplyTierRequest {
                tenant_id: tenant.to_string(),
                tier: tier as i32,
                request_id: request_id.into(),
            },
            &svc,
        )
    };
    let r = c
        .apply_tier(apply("req-1", SubscriptionTier::Education))
        .await
        .unwrap()
        .into_inner();
    let mut disabled: Vec<Feature> = r.disabled_features().collect();
    disabled.sort();
    // Enterprise defaults education lacks (sso, webhooks, api_access is offered but not a
    // default) and the video_conferencing toggle; not the overridden advanced_security.
    assert_eq!(
        disabled,
        [
            Feature::Sso,
            Feature::ApiAccess,
            Feature::Webhooks,
            Feature::VideoConferencing
        ]
    );
    let on: Vec<Feature> = r.enabled_features().collect();
    assert!(on.contains(&Feature::ContentVersioning), "kept toggle");
    assert!(on.contains(&Feature::AdvancedSecurity), "kept override");
    assert!(!on.contains(&Feature::VideoConferencing));
    assert_eq!(on.len(), 10, "8 education defaults + toggle + override");

    let got = c
        .get_features(authed(pb::GetFeaturesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    let got_on: Vec<Feature> = enabled(&got.features);
    let mut expected = on.clone();
    expected.sort();
    assert_eq!(got_on, expected);
    assert_eq!(got.version, r.version);

    // A retry with the same id returns the first result; another payload is INVALID_ARGUMENT.
    let retry = c
        .apply_tier(apply("req-1", SubscriptionTier::Education))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, r);
    let err = c
        .apply_tier(apply("req-1", SubscriptionTier::Free))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["request_id"]);
    let err = c
        .apply_tier(authed(
            pb::ApplyTierRequest {
                tenant_id: tenant.to_string(),
                tier: 0,
                request_id: String::new(),
            },
            &svc,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tier", "request_id"]);
    let err = c
        .apply_tier(authed(
            pb::ApplyTierRequest {
                tenant_id: Uuid::new_v4().to_string(),
                tier: SubscriptionTier::Free as i32,
                request_id: "req-2".into(),
            },
            &svc,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .apply_tier(authed(
            pb::ApplyTierRequest {
                tenant_id: tenant.to_string(),
                tier: SubscriptionTier::Free as i32,
                request_id: "req-4".into(),
            },
            &sa,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn feature_writes_record_one_audit_event_each() {
    let suite = suite().await;
    let db = &suite.db;
    let tenant = create_tenant(db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    let (admin_id, admin) = member_as(tenant, OrgRole::Admin);
    let set = |feature: i32, on: bool| {
        authed(
            pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature,
                enabled: on,
            },
            &admin,
        )
    };

    // SetFeature: one event by the org admin, naming the feature and the new value.
    c.set_feature(set(Feature::Webhooks as i32, true))
        .await
        .unwrap();
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events,
        "SetFeature",
        &admin_id,
        "admin",
        ("feature", "webhooks"),
    );
    assert_eq!(e.details(), serde_json::json!({ "enabled": true }));
    // The same value again changes nothing and records nothing; bad input records nothing.
    c.set_feature(set(Feature::Webhooks as i32, true))
        .await
        .unwrap();
    let err = c.set_feature(set(0, true)).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["feature"]);
    let err = c
        .set_feature(set(Feature::Sso as i32, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(audit_events(db, tenant).await.len(), 1);

    // Overrides: by the super admin, with the full RPC name.
    let sa = super_admin_token();
    c.grant_feature_override(authed(
        pb::GrantFeatureOverrideRequest {
            tenant_id: tenant.to_string(),
            feature: Feature::Sso as i32,
            enabled: true,
            reason: "pilot".into(),
        },
        &sa,
    ))
    .await
    .unwrap();
    let err = c
        .grant_feature_override(authed(
            pb::GrantFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: Feature::Sso as i32,
                enabled: true,
                reason: String::new(),
            },
            &sa,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["reason"]);
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events[1..],
        "GrantFeatureOverride",
        "test-operator",
        "super_admin",
        ("feature", "sso"),
    );
    assert_eq!(
        e.details(),
        serde_json::json!({ "enabled": true, "reason": "pilot" })
    );
    let revoke = || {
        authed(
            pb::RevokeFeatureOverrideRequest {
                tenant_id: tenant.to_string(),
                feature: Feature::Sso as i32,
                reason: "pilot over".into(),
            },
            &sa,
        )
    };
    c.revoke_feature_override(revoke()).await.unwrap();
    let err = c.revoke_feature_override(revoke()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let events = audit_events(db, tenant).await;
    assert_one_event(
        &events[2..],
        "RevokeFeatureOverride",
        "test-operator",
        "super_admin",
        ("feature", "sso"),
    );

    // ApplyTier from a service acting for a user: the original actor, role service, and the
    // request id; a replay and a bad request record nothing.
    let apply = |tier: SubscriptionTier, key: &str| {
        let mut r = authed(
            pb::ApplyTierRequest {
                tenant_id: tenant.to_string(),
                tier: tier as i32,
                request_id: key.into(),
            },
            &service_token(),
        );
        r.metadata_mut()
            .insert("x-tenantry-actor", "operator-42".parse().unwrap());
        r
    };
    c.apply_tier(apply(SubscriptionTier::Basic, "tier-1"))
        .await
        .unwrap();
    c.apply_tier(apply(SubscriptionTier::Basic, "tier-1"))
        .await
        .unwrap();
    let err = c
        .apply_tier(apply(SubscriptionTier::Unspecified, "tier-2"))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tier"]);
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events[3..],
        "ApplyTier",
        "operator-42",
        "service",
        ("tenant", &tenant.to_string()),
    );
    assert_eq!(e.request_id.as_deref(), Some("tier-1"));
    let details = e.details();
    assert_eq!(details["tier"], "basic");
    assert!(
        details["disabled_features"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("webhooks")),
        "{details}"
    );
}
