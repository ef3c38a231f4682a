//! The hot path: CheckFeatures and WatchTenant from the cache, kept fresh across replicas by
//! LISTEN/NOTIFY, and after the listener's connection is killed.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::{bad_fields, client, create_tenant, exec, second_replica, suite};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tenantry_auth::OrgRole;
use tenantry_proto::common::v1::{Feature, TenantStatus};
use tenantry_proto::settings::v1 as pb;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_testing::{TestDb, authed, member_token, service_token, super_admin_token};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

const LISTENERS: &str = "SELECT count(*) AS n FROM pg_stat_activity \
                         WHERE application_name = 'tenantry-settings-listener'";

/// Waits until `n` cache listeners are connected to the test database.
async fn wait_for_listeners(db: &TestDb, n: i64) {
    let sql = format!("{LISTENERS} AND datname = '{}'", db.name);
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.count(&sql).await != n {
        assert!(Instant::now() < deadline, "{n} listeners never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check(
    c: &mut TenantSettingsServiceClient<Channel>,
    tenant: Uuid,
    feature: Feature,
) -> Result<bool, tonic::Status> {
    let r = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: tenant.to_string(),
                features: vec![feature as i32],
            },
            &service_token(),
        ))
        .await?
        .into_inner();
    Ok(r.features[0].enabled)
}

/// Warms the cache, then proves a check is a cache hit: with `organizations` locked exclusively, any database
/// read of the tenant would block, so an answer within 500 ms came from memory.
async fn assert_cache_hit(
    db: &TestDb,
    c: &mut TenantSettingsServiceClient<Channel>,
    tenant: Uuid,
    feature: Feature,
) -> bool {
    // Warm the entry (twice, in case the listener was still subscribing).
    check(c, tenant, feature).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    check(c, tenant, feature).await.unwrap();
    let mut lock: AsyncPgConnection = db.admin_conn().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("LOCK TABLE organizations, tenant_features IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_millis(500), check(c, tenant, feature)).await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    answer
        .expect("a cache hit answers without the database")
        .unwrap()
}

/// Polls every 20 ms until `feature` reads `expected`, up to `bound`; returns the time taken.
async fn eventually(
    c: &mut TenantSettingsServiceClient<Channel>,
    tenant: Uuid,
    feature: Feature,
    expected: bool,
    bound: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if check(c, tenant, feature).await.unwrap() == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "{feature:?} still not {expected} after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_features_answers_from_the_cache() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "trial").await;
    let mut c = client(&suite.settings).await;
    wait_for_listeners(&suite.db, 1).await;

    let r = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: tenant.to_string(),
                features: vec![Feature::Sso as i32, Feature::AiChat as i32],
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tenant_id, tenant.to_string());
    assert_eq!(
        r.features
            .iter()
            .map(|f| (f.feature(), f.enabled))
            .collect::<Vec<_>>(),
        [(Feature::Sso, false), (Feature::AiChat, true)]
    );
    assert_eq!(r.status(), TenantStatus::Trial);
    assert_eq!(r.limits.unwrap().max_users, 10);

    // All 15 for a member of the tenant, without naming it.
    let all = c
        .check_features(authed(
            pb::CheckFeaturesRequest::default(),
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.features.len(), 15);
    assert_eq!(all.features.iter().filter(|f| f.enabled).count(), 7);

    // The second call is served from memory: no database statement.
    assert!(assert_cache_hit(&suite.db, &mut c, tenant, Feature::AiChat).await);

    // Errors.
    let err = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: String::new(),
                features: vec![],
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tenant_id"]);
    let err = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: tenant.to_string(),
                features: vec![Feature::AiChat as i32, 0, 99],
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["features[1]", "features[2]"]);
    let other = create_tenant(&suite.db, "free", "active").await;
    let a = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: other.to_string(),
                features: vec![],
            },
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    let b = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: Uuid::new_v4().to_string(),
                features: vec![],
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(a.code(), Code::NotFound);
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    let err = c
        .check_features(authed(
            pb::CheckFeaturesRequest {
                tenant_id: tenant.to_string(),
                features: vec![],
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_on_one_replica_reaches_the_other_within_a_second() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let replica2 = second_replica(&suite).await;
    let mut c1 = client(&suite.settings).await;
    let mut c2 = client(&replica2).await;
    wait_for_listeners(&suite.db, 2).await;

    // Replica 2 caches "webhooks off" (offered, not a default).
    assert!(!check(&mut c2, tenant, Feature::Webhooks).await.unwrap());
    assert!(!assert_cache_hit(&suite.db, &mut c2, tenant, Feature::Webhooks).await);

    // A watch stream on replica 2: first the snapshot.
    let mut stream = c2
        .watch_tenant(authed(
            pb::WatchTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.kind,
        Some(pb::watch_tenant_response::Kind::Snapshot(_))
    ));
    let webhooks = Feature::Webhooks as usize - 1;
    assert!(!first.features[webhooks].enabled);
    assert_eq!(first.settings.unwrap().tenant_id, tenant.to_string());

    // Set on replica 1.
    let set = c1
        .set_feature(authed(
            pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: Feature::Webhooks as i32,
                enabled: true,
            },
            &member_token(tenant, OrgRole::Admin),
        ))
        .await
        .unwrap()
        .into_inner();
    let took = eventually(
        &mut c2,
        tenant,
        Feature::Webhooks,
        true,
        Duration::from_secs(1),
    )
    .await;
    eprintln!("replica 2 saw the change after {took:?}");

    let change = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("a change message")
        .unwrap()
        .unwrap();
    match &change.kind {
        Some(pb::watch_tenant_response::Kind::Change(c)) => {
            assert!(c.aspects.contains(&(pb::TenantAspect::Features as i32)));
        }
        other => panic!("expected a change, got {other:?}"),
    }
    assert!(change.features[webhooks].enabled);
    assert_eq!(change.version, set.version);
    assert!(change.version > first.version);

    // A status change made by another service (tenant-admin) reaches the stream too.
    exec(
        &suite.db,
        &format!("UPDATE organizations SET status = 'suspended' WHERE id = '{tenant}'"),
    )
    .await;
    let suspended = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("a status message")
        .unwrap()
        .unwrap();
    assert_eq!(suspended.status(), TenantStatus::Suspended);
    assert!(!check(&mut c2, tenant, Feature::Webhooks).await.unwrap());

    // Hard delete ends the stream with NOT_FOUND.
    exec(
        &suite.db,
        &format!("DELETE FROM organizations WHERE id = '{tenant}'"),
    )
    .await;
    let end = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("the end of the stream")
        .unwrap_err();
    assert_eq!(end.code(), Code::NotFound);
    replica2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_seen_after_the_listener_connection_is_killed() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    wait_for_listeners(&suite.db, 1).await;
    assert!(check(&mut c, tenant, Feature::AiChat).await.unwrap());
    assert!(assert_cache_hit(&suite.db, &mut c, tenant, Feature::AiChat).await);

    // Kill the listener's backend, then change the tenant at once (likely while it is away).
    exec(
        &suite.db,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'tenantry-settings-listener' AND datname = '{}'",
            suite.db.name
        ),
    )
    .await;
    exec(
        &suite.db,
        &format!(
            "INSERT INTO tenant_features (organization_id, feature, enabled, source) \
             VALUES ('{tenant}', 'ai_chat', false, 'org_admin')"
        ),
    )
    .await;
    let took = eventually(
        &mut c,
        tenant,
        Feature::AiChat,
        false,
        Duration::from_secs(2),
    )
    .await;
    eprintln!("seen after the kill in {took:?}");
    // The listener is back, and later changes are pushed again.
    wait_for_listeners(&suite.db, 1).await;
    assert!(!assert_cache_hit(&suite.db, &mut c, tenant, Feature::AiChat).await);
    exec(
        &suite.db,
        &format!("DELETE FROM tenant_features WHERE organization_id = '{tenant}'"),
    )
    .await;
    eventually(
        &mut c,
        tenant,
        Feature::AiChat,
        true,
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_tenant_checks_the_caller() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "basic", "active").await;
    let mut c = client(&suite.settings).await;
    // A member watches their own tenant without naming it.
    let mut own = c
        .watch_tenant(authed(
            pb::WatchTenantRequest::default(),
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    let first = own.message().await.unwrap().unwrap();
    assert_eq!(first.subscription_tier, 2);
    assert_eq!(first.features.len(), 15);

    let err = c
        .watch_tenant(authed(pb::WatchTenantRequest::default(), &service_token()))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tenant_id"]);
    let err = c
        .watch_tenant(authed(
            pb::WatchTenantRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .watch_tenant(authed(
            pb::WatchTenantRequest {
                tenant_id: tenant.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
