//! TenantInternalService through gRPC on a real Postgres.

#![expect(clippy::unwrap_used, reason = "tests")]

use diesel_async::RunQueryDsl;
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::auth_service_client::AuthServiceClient;
use tenantry_proto::admin::v1::login_request::Identifier;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::admin::v1::tenant_internal_service_client::TenantInternalServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_testing::{Suite, authed, member_token, service_token, super_admin_token};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

async fn setup() -> (Suite, String, TenantInternalServiceClient<Channel>) {
    let s = Suite::start().await;
    let mut c = TenantAdminServiceClient::new(s.admin.channel().await);
    let t = c
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "Acme".into(),
                slug: "acme-schools".into(),
                email: "admin@acmeschools.edu".into(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let i = TenantInternalServiceClient::new(s.admin.channel().await);
    (s, t.tenant_id, i)
}

async fn exec(s: &Suite, sql: &str) {
    let mut conn = s.db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

fn admin_req(tenant: &str) -> pb::CreateTenantAdminRequest {
    pb::CreateTenantAdminRequest {
        tenant_id: tenant.into(),
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_tenant_admin_generates_a_one_time_password() {
    let (s, t, mut i) = setup().await;
    let req = admin_req(&t);
    let r = i
        .create_tenant_admin(authed(req.clone(), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    let password = r.generated_password.clone().unwrap();
    assert_eq!(password.len(), 22);
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM users WHERE email = 'admin@acmeschools.edu' \
                 AND username = 'admin_acme-schools' AND org_role = 'admin' AND status = 'active' \
                 AND password_hash LIKE '$2%'"
        )
        .await,
        1
    );
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations WHERE current_users = 1")
            .await,
        1
    );
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE action = \
                 'tenantry.admin.v1.TenantInternalService/CreateTenantAdmin' \
                 AND metadata::text NOT LIKE '%{password}%'"
        ))
        .await,
        1
    );
    // The password works.
    let mut auth = AuthServiceClient::new(s.admin.channel().await);
    let login = auth
        .login(pb::LoginRequest {
            tenant_slug: "acme-schools".into(),
            identifier: Some(Identifier::Username("admin_acme-schools".into())),
            password: password.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.user_id, r.user_id);

    // A retry answers the first result without the password.
    let again = i
        .create_tenant_admin(authed(req.clone(), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.user_id, r.user_id);
    assert_eq!(again.generated_password, None);
    // Another request for the same e-mail: the existing user, not created.
    let existing = i
        .create_tenant_admin(authed(admin_req(&t), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert!(!existing.created);
    assert_eq!(existing.user_id, r.user_id);
    assert_eq!(existing.generated_password, None);
    assert_eq!(s.db.count("SELECT count(*) AS n FROM users").await, 1);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations WHERE current_users = 1")
            .await,
        1
    );
    // Same request id, other payload.
    let err = i
        .create_tenant_admin(authed(
            pb::CreateTenantAdminRequest {
                first_name: "Other".into(),
                ..req
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_tenant_admin_checks_input_roles_and_limits() {
    let (s, t, mut i) = setup().await;
    let err = i
        .create_tenant_admin(authed(
            pb::CreateTenantAdminRequest {
                email: "bad".into(),
                username: "a b".into(),
                password: Some("short".into()),
                ..admin_req(&t)
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, vec!["email", "username", "password"]);
    assert_eq!(s.db.count("SELECT count(*) AS n FROM users").await, 0);

    let tenant: Uuid = t.parse().unwrap();
    for token in [super_admin_token(), member_token(tenant, OrgRole::Admin)] {
        let err = i
            .create_tenant_admin(authed(admin_req(&t), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let err = i
        .create_tenant_admin(authed(
            admin_req(&Uuid::new_v4().to_string()),
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    exec(
        &s,
        "UPDATE organizations SET max_users = 1, current_users = 1",
    )
    .await;
    let err = i
        .create_tenant_admin(authed(
            pb::CreateTenantAdminRequest {
                password: Some("a given password".into()),
                ..admin_req(&t)
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(s.db.count("SELECT count(*) AS n FROM users").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mark_tenant_verified_starts_a_pending_tenants_trial() {
    let (s, t, mut i) = setup().await;
    exec(
        &s,
        "UPDATE organizations SET status = 'pending', trial_started_at = NULL, trial_expires_at = NULL",
    )
    .await;
    let r = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest {
                tenant_id: t.clone(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.is_verified);
    assert_eq!(r.status(), common::TenantStatus::Trial);
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM organizations WHERE is_verified AND status = 'trial' \
                 AND trial_expires_at > now() + interval '13 days'"
        )
        .await,
        1
    );
    // Idempotent.
    let again = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest {
                tenant_id: t.clone(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, r);
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.TenantInternalService/MarkTenantVerified'"
        )
        .await,
        1
    );

    let err = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest {
                tenant_id: "nope".into(),
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest {
                tenant_id: t.clone(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    exec(
        &s,
        "UPDATE organizations SET status = 'cancelled', deleted_at = now()",
    )
    .await;
    let err = i
        .mark_tenant_verified(authed(
            pb::MarkTenantVerifiedRequest { tenant_id: t },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}
