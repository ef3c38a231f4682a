//! AuditService through gRPC on a real Postgres.

#![expect(clippy::unwrap_used, reason = "tests")]

use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::audit_service_client::AuditServiceClient;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::prost_types::Timestamp;
use tenantry_testing::{Suite, authed, member_token, service_token, super_admin_token};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

async fn tenant(s: &Suite, slug: &str) -> Uuid {
    let mut c = TenantAdminServiceClient::new(s.admin.channel().await);
    let sa = super_admin_token();
    let t = c
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: slug.into(),
                slug: slug.into(),
                email: format!("a@{slug}.test"),
                ..Default::default()
            },
            &sa,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    c.suspend_tenant(authed(
        pb::SuspendTenantRequest {
            tenant_id: t.tenant_id.clone(),
            reason: "audit me".into(),
        },
        &sa,
    ))
    .await
    .unwrap();
    t.tenant_id.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn super_admins_list_everything_admins_their_own() {
    let s = Suite::start().await;
    let a = tenant(&s, "tenant-a").await;
    let b = tenant(&s, "tenant-b").await;
    let mut c = AuditServiceClient::new(s.admin.channel().await);

    let all = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest::default(),
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    // CreateTenant asks tenant-settings to ApplyTier, a write that tenant-settings records
    // itself, for the same operator.
    assert_eq!(all.total_size, 6);
    let actions: Vec<_> = all.audit_events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "tenantry.admin.v1.TenantAdminService/SuspendTenant",
            "tenantry.settings.v1.TenantSettingsService/ApplyTier",
            "tenantry.admin.v1.TenantAdminService/CreateTenant",
            "tenantry.admin.v1.TenantAdminService/SuspendTenant",
            "tenantry.settings.v1.TenantSettingsService/ApplyTier",
            "tenantry.admin.v1.TenantAdminService/CreateTenant",
        ],
        "newest first"
    );
    let apply = &all.audit_events[1];
    assert_eq!(apply.tenant_id, b.to_string());
    assert_eq!(apply.actor_id, "test-operator");
    assert_eq!(apply.actor_role, "service");
    let e = &all.audit_events[0];
    assert_eq!(e.tenant_id, b.to_string());
    assert_eq!(e.actor_id, "test-operator");
    assert_eq!(e.actor_role, "super_admin");
    assert_eq!(e.target_type, "tenant");
    assert_eq!(e.target_id, b.to_string());
    let reason = &e.metadata.as_ref().unwrap().fields["reason"];
    assert_eq!(
        reason.kind,
        Some(tenantry_proto::prost_types::value::Kind::StringValue(
            "audit me".into()
        ))
    );

    // Paging, filters.
    let first = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_size: 4,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.audit_events.len(), 4);
    let rest = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                page_size: 4,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.audit_events.len(), 2);
    assert!(rest.next_page_token.is_empty());
    let filtered = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                tenant_id: a.to_string(),
                action: "tenantry.admin.v1.TenantAdminService/CreateTenant".into(),
                actor_id: "test-operator".into(),
                start_time: Some(Timestamp {
                    seconds: chrono::Utc::now().timestamp() - 3600,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.total_size, 1);

    // An org admin sees their tenant only.
    let admin_a = member_token(a, OrgRole::Admin);
    let own = c
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &admin_a))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.total_size, 3);
    assert!(
        own.audit_events
            .iter()
            .all(|e| e.tenant_id == a.to_string())
    );

    // Another tenant's id and a random id answer the same NOT_FOUND.
    let foreign = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                tenant_id: b.to_string(),
                ..Default::default()
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    let random = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                tenant_id: Uuid::new_v4().to_string(),
                ..Default::default()
            },
            &admin_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(
        (foreign.code(), foreign.message()),
        (random.code(), random.message())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_roles() {
    let s = Suite::start().await;
    let a = tenant(&s, "tenant-a").await;
    let mut c = AuditServiceClient::new(s.admin.channel().await);
    let err = c
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                start_time: Some(Timestamp {
                    seconds: 2_000,
                    nanos: 0,
                }),
                end_time: Some(Timestamp {
                    seconds: 1_000,
                    nanos: 0,
                }),
                page_size: -5,
                ..Default::default()
            },
            &super_admin_token(),
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
    assert_eq!(fields, vec!["page_size", "end_time"]);

    for token in [member_token(a, OrgRole::Manager), service_token()] {
        let err = c
            .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
}
