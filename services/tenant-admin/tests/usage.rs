//! UsageService through gRPC on a real Postgres.

#![expect(clippy::unwrap_used, reason = "tests")]

use diesel_async::RunQueryDsl;
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::admin::v1::usage_service_client::UsageServiceClient;
use tenantry_proto::common::v1::LimitMetric;
use tenantry_testing::{Suite, authed, member_token, service_token, super_admin_token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

async fn setup() -> (Suite, String, UsageServiceClient<Channel>) {
    let s = Suite::start().await;
    let mut c = TenantAdminServiceClient::new(s.admin.channel().await);
    let t = c
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "Metered".into(),
                slug: "metered".into(),
                email: "m@metered.test".into(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let u = UsageServiceClient::new(s.admin.channel().await);
    (s, t.tenant_id, u)
}

fn rec(tenant: &str, metric: LimitMetric, delta: i64) -> pb::RecordUsageRequest {
    pb::RecordUsageRequest {
        tenant_id: tenant.into(),
        metric: metric.into(),
        delta,
        request_id: Uuid::new_v4().to_string(),
    }
}

async fn record(
    u: &mut UsageServiceClient<Channel>,
    r: pb::RecordUsageRequest,
) -> Result<pb::RecordUsageResponse, Status> {
    u.record_usage(authed(r, &service_token()))
        .await
        .map(tonic::Response::into_inner)
}

async fn exec(s: &Suite, sql: &str) {
    let mut conn = s.db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

fn fields(s: &Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_enforces_and_is_idempotent() {
    let (s, t, mut u) = setup().await;
    let first = rec(&t, LimitMetric::Classes, 3);
    let r = record(&mut u, first.clone()).await.unwrap();
    assert_eq!((r.current, r.limit, r.remaining), (3.0, 5.0, 2.0));
    assert_eq!(r.tenant_id, t);
    let again = record(&mut u, first.clone()).await.unwrap();
    assert_eq!(again, r);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM usage_events").await,
        1
    );
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations WHERE current_classes = 3")
            .await,
        1
    );
    let err = record(&mut u, pb::RecordUsageRequest { delta: 2, ..first })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["request_id"]);

    // Passing the limit records nothing.
    let err = record(&mut u, rec(&t, LimitMetric::Classes, 3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Below zero.
    let err = record(&mut u, rec(&t, LimitMetric::Classes, -4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let r = record(&mut u, rec(&t, LimitMetric::Classes, -3))
        .await
        .unwrap();
    assert_eq!(r.current, 0.0);
    // Storage deltas are bytes.
    let r = record(&mut u, rec(&t, LimitMetric::StorageGb, 500_000_000))
        .await
        .unwrap();
    assert_eq!((r.current, r.limit), (0.5, 1.0));
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM usage_events").await,
        3
    );
    assert_eq!(
        s.db
            .count(
                "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.UsageService/RecordUsage' AND actor_role = 'service'"
            )
            .await,
        3
    );

    // A suspended tenant's usage is refused.
    exec(
        &s,
        "UPDATE organizations SET status = 'suspended', is_active = false, suspension_reason = 'x'",
    )
    .await;
    let err = record(&mut u, rec(&t, LimitMetric::Classes, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_roles_and_unknown_tenants() {
    let (s, t, mut u) = setup().await;
    let err = record(
        &mut u,
        pb::RecordUsageRequest {
            tenant_id: "x".into(),
            metric: LimitMetric::Unspecified.into(),
            delta: 0,
            request_id: String::new(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        vec!["tenant_id", "metric", "delta", "request_id"]
    );
    let err = record(&mut u, rec(&t, LimitMetric::Users, 1))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["metric"]);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM usage_events").await,
        0
    );

    let tenant: Uuid = t.parse().unwrap();
    for token in [super_admin_token(), member_token(tenant, OrgRole::Admin)] {
        let err = u
            .record_usage(authed(rec(&t, LimitMetric::Classes, 1), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let err = record(
        &mut u,
        rec(&Uuid::new_v4().to_string(), LimitMetric::Classes, 1),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "tenant not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_never_pass_the_limit() {
    let (s, t, u) = setup().await;
    // Free tier: 5 Roblox sessions.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let mut u = u.clone();
            let t = t.clone();
            tokio::spawn(
                async move { record(&mut u, rec(&t, LimitMetric::RobloxSessions, 1)).await },
            )
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations WHERE current_roblox_sessions = 5")
            .await,
        1
    );
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM usage_events").await,
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_call_counter_resets_each_month() {
    let (s, t, mut u) = setup().await;
    exec(
        &s,
        "UPDATE organizations SET current_api_calls_this_month = 1000, \
         api_calls_month_start = (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date",
    )
    .await;
    let r = record(&mut u, rec(&t, LimitMetric::ApiCallsPerMonth, 10))
        .await
        .unwrap();
    assert_eq!((r.current, r.limit), (10.0, 1000.0));
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM organizations WHERE current_api_calls_this_month = 10 \
                 AND api_calls_month_start = (date_trunc('month', now() AT TIME ZONE 'UTC'))::date"
        )
        .await,
        1
    );
}
