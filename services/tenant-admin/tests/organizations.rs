//! OrganizationService through real gRPC on a real Postgres: create, read, update, members,
//! subscription, usage and features. Tenants and users are written with SQL so these tests do
//! not depend on the tenant-lifecycle RPCs.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::organization_service_client::OrganizationServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_proto::settings::v1 as spb;
use tenantry_testing::{Suite, TestDb, TestServer, authed, member_token, super_admin_token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

type Client = OrganizationServiceClient<Channel>;

async fn client(suite: &Suite) -> Client {
    OrganizationServiceClient::new(suite.admin.channel().await)
}

/// Inserts a tenant; a suspended one gets the reason `payment overdue`.
async fn tenant(db: &TestDb, status: &str, max_users: i32) -> Uuid {
    let id = Uuid::new_v4();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO organizations (id, name, slug, status, max_users, trial_started_at, \
         trial_expires_at, is_active, suspension_reason) \
         VALUES ($1, $2, $3, $4, $5, now(), now() + interval '10 days', $4 <> 'suspended', \
                 CASE WHEN $4 = 'suspended' THEN 'payment overdue' END)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(format!("Org {}", &id.simple().to_string()[..8]))
    .bind::<Text, _>(format!("org-{}", id.simple()))
    .bind::<Text, _>(status)
    .bind::<Integer, _>(max_users)
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

/// Inserts an active user and counts it in `current_users`.
async fn user(db: &TestDb, tenant: Uuid, name: &str, role: &str) -> Uuid {
    let id = Uuid::new_v4();
    let hash = bcrypt::hash("password-123", 4).unwrap();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO users (id, organization_id, email, username, password_hash, org_role, status) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(format!("{name}@example.test"))
    .bind::<Text, _>(name)
    .bind::<Text, _>(hash)
    .bind::<Text, _>(role)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE organizations SET current_users = current_users + 1 WHERE id = $1")
        .bind::<SqlUuid, _>(tenant)
        .execute(&mut conn)
        .await
        .unwrap();
    id
}

async fn sql(db: &TestDb, statement: &str) {
    let mut conn = db.admin_conn().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The fields a BadRequest detail names.
fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn create_request(slug: &str) -> pb::CreateOrganizationRequest {
    pb::CreateOrganizationRequest {
        name: "Acme School District".into(),
        slug: slug.into(),
        admin_email: "Principal@Acme.test".into(),
        admin_username: "principal".into(),
        admin_password: "correct horse battery".into(),
        timezone: "America/New_York".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_organization_creates_tenant_admin_and_token() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let sa = super_admin_token();

    let out = c
        .create_organization(authed(create_request("acme-schools"), &sa))
        .await
        .unwrap()
        .into_inner();
    let t = out.tenant.unwrap();
    assert_eq!(t.slug, "acme-schools");
    assert_eq!(t.subscription_tier, common::SubscriptionTier::Free as i32);
    assert_eq!(t.status, common::TenantStatus::Trial as i32);
    assert_eq!(t.trial_days_remaining, Some(14));
    assert_eq!(t.email, "principal@acme.test");
    assert_eq!(t.timezone, "America/New_York");
    assert_eq!(t.usage.unwrap().current_users, 1);
    assert_eq!(t.limits.unwrap().max_users, 10);
    let admin = out.admin.unwrap();
    assert_eq!(admin.org_role, common::OrgRole::Admin as i32);
    assert_eq!(admin.email, "principal@acme.test");
    assert_eq!(out.token_type, "Bearer");
    assert!(out.expires_in > 0);
    let id = Uuid::parse_str(&t.tenant_id).unwrap();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM users WHERE organization_id = '{id}' \
                 AND org_role = 'admin' AND password_hash LIKE '$2%'"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{id}' \
                 AND action = 'tenantry.admin.v1.OrganizationService/CreateOrganization'"
            ))
            .await,
        1
    );
    // The returned token is an admin token of the new organization.
    let current = c
        .get_current_organization(authed(
            pb::GetCurrentOrganizationRequest {},
            &out.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.tenant.unwrap().tenant_id, t.tenant_id);

    // Slug taken.
    let mut again = create_request("acme-schools");
    again.admin_username = "other".into();
    let err = c.create_organization(authed(again, &sa)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_organization_validates_authorizes_and_is_idempotent() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let sa = super_admin_token();

    let mut bad = create_request("Bad Slug");
    bad.admin_password = "short".into();
    bad.organization_type = "school".into();
    let err = c.create_organization(authed(bad, &sa)).await.unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"slug".to_owned()), "{fields:?}");
    assert!(fields.contains(&"admin_password".to_owned()), "{fields:?}");
    assert!(
        fields.contains(&"organization_type".to_owned()),
        "{fields:?}"
    );
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM organizations")
            .await,
        0
    );

    // Self-serve signup is off in the suite: a member may not create organizations.
    let member = member_token(Uuid::new_v4(), OrgRole::Admin);
    let err = c
        .create_organization(authed(create_request("acme-two"), &member))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // request_id: a retry answers the first result; another payload is refused.
    let mut first = create_request("acme-three");
    first.request_id = Uuid::new_v4().to_string();
    let a = c
        .create_organization(authed(first.clone(), &sa))
        .await
        .unwrap()
        .into_inner();
    let b = c
        .create_organization(authed(first.clone(), &sa))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.tenant.unwrap().tenant_id, b.tenant.unwrap().tenant_id);
    assert!(!b.access_token.is_empty());
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM organizations")
            .await,
        1
    );
    let mut other = first;
    other.name = "Another Name".into();
    let err = c.create_organization(authed(other, &sa)).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["request_id".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_organization_is_scoped_and_closed_when_suspended() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    let suspended = tenant(&suite.db, "suspended", 10).await;
    let token = member_token(own, OrgRole::Member);

    let got = c
        .get_organization(authed(pb::GetOrganizationRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tenant.unwrap().tenant_id, own.to_string());
    let current = c
        .get_current_organization(authed(pb::GetCurrentOrganizationRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.tenant.unwrap().tenant_id, own.to_string());

    // Another tenant's id and a random id answer the same NOT_FOUND.
    let foreign = c
        .get_organization(authed(
            pb::GetOrganizationRequest {
                tenant_id: other.to_string(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    let random = c
        .get_organization(authed(
            pb::GetOrganizationRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(
        (foreign.code(), foreign.message()),
        (random.code(), random.message())
    );
    let err = c
        .get_organization(authed(
            pb::GetOrganizationRequest {
                tenant_id: "not-a-uuid".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["tenant_id".to_owned()]);
    // A token without an organization role is refused before the handler.
    let err = c
        .get_organization(authed(
            pb::GetOrganizationRequest::default(),
            &tenantry_testing::roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Members of a suspended tenant get FAILED_PRECONDITION with the reason; super admins
    // still see it.
    let err = c
        .get_current_organization(authed(
            pb::GetCurrentOrganizationRequest {},
            &member_token(suspended, OrgRole::Admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("payment overdue"),
        "{}",
        err.message()
    );
    let got = c
        .get_organization(authed(
            pb::GetOrganizationRequest {
                tenant_id: suspended.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.tenant.unwrap().status,
        common::TenantStatus::Suspended as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_organization_applies_the_mask() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    let admin = member_token(own, OrgRole::Admin);
    let update = |tenant_id: String, paths: &[&str]| pb::UpdateOrganizationRequest {
        tenant_id,
        tenant: Some(pb::Tenant {
            name: "Renamed".into(),
            website: "https://renamed.test".into(),
            locale: "fr-FR".into(),
            subscription_tier: common::SubscriptionTier::Enterprise as i32,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
    };

    let out = c
        .update_organization(authed(
            update(String::new(), &["name", "website", "locale"]),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(out.name, "Renamed");
    assert_eq!(out.website, "https://renamed.test");
    assert_eq!(out.locale, "fr-FR");
    assert_eq!(out.subscription_tier, common::SubscriptionTier::Free as i32);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' AND name = 'Renamed'"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{own}' \
                 AND action LIKE '%/UpdateOrganization'"
            ))
            .await,
        1
    );

    // A read-only path is refused and nothing changes.
    let err = c
        .update_organization(authed(
            update(String::new(), &["website", "subscription_tier"]),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["update_mask".to_owned()]);
    let mut bad = update(String::new(), &["name"]);
    bad.tenant.as_mut().unwrap().name = "x".into();
    let err = c
        .update_organization(authed(bad, &admin))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["tenant.name".to_owned()]);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' AND name = 'Renamed'"
            ))
            .await,
        1
    );

    let err = c
        .update_organization(authed(
            update(String::new(), &["name"]),
            &member_token(own, OrgRole::Manager),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .update_organization(authed(update(other.to_string(), &["name"]), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_members_pages_and_filters() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    user(&suite.db, own, "alice", "admin").await;
    for name in ["bob", "carol", "dave", "erin"] {
        user(&suite.db, own, name, "teacher").await;
    }
    user(&suite.db, other, "mallory", "admin").await;
    let token = member_token(own, OrgRole::Member);

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_members(authed(
                pb::ListMembersRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total_size, 5);
        seen.extend(page.members.into_iter().map(|m| m.username));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["alice", "bob", "carol", "dave", "erin"]);

    let teachers = c
        .list_members(authed(
            pb::ListMembersRequest {
                org_role: common::OrgRole::Teacher as i32,
                query: "AR".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(teachers.total_size, 1);
    assert_eq!(teachers.members[0].username, "carol");

    let err = c
        .list_members(authed(
            pb::ListMembersRequest {
                page_size: 101,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_size".to_owned()]);
    let err = c
        .list_members(authed(
            pb::ListMembersRequest {
                tenant_id: other.to_string(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .list_members(authed(
            pb::ListMembersRequest::default(),
            &tenantry_testing::roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_roles_and_removal_keep_an_admin() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    let alice = user(&suite.db, own, "alice", "admin").await;
    let bob = user(&suite.db, own, "bob", "member").await;
    let mallory = user(&suite.db, other, "mallory", "member").await;
    let admin = member_token(own, OrgRole::Admin);
    let role = |user_id: Uuid, role: common::OrgRole| pb::UpdateMemberRoleRequest {
        user_id: user_id.to_string(),
        org_role: role as i32,
        ..Default::default()
    };

    // The last admin can be neither demoted nor removed.
    let err = c
        .update_member_role(authed(role(alice, common::OrgRole::Member), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = c
        .remove_member(authed(
            pb::RemoveMemberRequest {
                user_id: alice.to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Promote bob; then alice can step down.
    let out = c
        .update_member_role(authed(role(bob, common::OrgRole::Admin), &admin))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(out.org_role, common::OrgRole::Admin as i32);
    c.update_member_role(authed(role(alice, common::OrgRole::Teacher), &admin))
        .await
        .unwrap();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM users WHERE id = '{alice}' AND org_role = 'teacher'"
            ))
            .await,
        1
    );

    // Bad input, wrong role, other tenant.
    let err = c
        .update_member_role(authed(
            pb::UpdateMemberRoleRequest {
                user_id: "nope".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"user_id".to_owned()) && fields.contains(&"org_role".to_owned()));
    let err = c
        .update_member_role(authed(
            role(alice, common::OrgRole::Admin),
            &member_token(own, OrgRole::Manager),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let foreign = c
        .remove_member(authed(
            pb::RemoveMemberRequest {
                user_id: mallory.to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    let random = c
        .remove_member(authed(
            pb::RemoveMemberRequest {
                user_id: Uuid::new_v4().to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(foreign.message(), random.message());
    let err = c
        .remove_member(authed(
            pb::RemoveMemberRequest {
                user_id: alice.to_string(),
                ..Default::default()
            },
            &member_token(own, OrgRole::Teacher),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Removing alice frees her seat in the same transaction.
    c.remove_member(authed(
        pb::RemoveMemberRequest {
            user_id: alice.to_string(),
            ..Default::default()
        },
        &admin,
    ))
    .await
    .unwrap();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' AND current_users = 1"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM users WHERE organization_id = '{own}'"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{own}' \
                 AND action LIKE '%/RemoveMember' AND target_id = '{alice}'"
            ))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_subscription_applies_tier_limits() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "trial", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    let admin = member_token(own, OrgRole::Admin);
    let request = |tier: common::SubscriptionTier| pb::UpdateSubscriptionRequest {
        tenant_id: String::new(),
        subscription_tier: tier as i32,
    };

    let out = c
        .update_subscription(authed(request(common::SubscriptionTier::Basic), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.previous_tier, common::SubscriptionTier::Free as i32);
    let t = out.tenant.unwrap();
    assert_eq!(t.subscription_tier, common::SubscriptionTier::Basic as i32);
    assert_eq!(t.status, common::TenantStatus::Active as i32);
    let limits = t.limits.unwrap();
    assert_eq!(
        (
            limits.max_users,
            limits.max_classes,
            limits.max_api_calls_per_month
        ),
        (50, 20, 10_000)
    );
    let started = t.subscription_started_at.unwrap().seconds;
    let ends = t.subscription_expires_at.unwrap().seconds;
    assert_eq!(ends - started, 30 * 86_400);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM billing_invoices WHERE organization_id = '{own}' \
                 AND amount_cents = 2900 AND status = 'unpaid'"
            ))
            .await,
        1
    );

    // A downgrade below current usage is refused and changes nothing.
    sql(
        &suite.db,
        &format!("UPDATE organizations SET current_classes = 12 WHERE id = '{own}'"),
    )
    .await;
    let err = c
        .update_subscription(authed(request(common::SubscriptionTier::Free), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("max_classes"), "{}", err.message());
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' \
                 AND subscription_tier = 'basic'"
            ))
            .await,
        1
    );

    let err = c
        .update_subscription(authed(
            request(common::SubscriptionTier::Unspecified),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["subscription_tier".to_owned()]);
    let err = c
        .update_subscription(authed(
            request(common::SubscriptionTier::Basic),
            &member_token(own, OrgRole::Manager),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .update_subscription(authed(
            pb::UpdateSubscriptionRequest {
                tenant_id: other.to_string(),
                subscription_tier: common::SubscriptionTier::Basic as i32,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_usage_reports_current_and_past_periods() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    user(&suite.db, own, "alice", "admin").await;
    user(&suite.db, own, "bob", "member").await;
    // Snapshots of last month (peak 4 users) and the month before (2 users).
    sql(
        &suite.db,
        &format!(
            "INSERT INTO usage_logs (organization_id, period, users_count, api_calls_count) VALUES \
             ('{own}', (date_trunc('month', now()) - interval '1 month')::date, 3, 100), \
             ('{own}', (date_trunc('month', now()) - interval '1 month' + interval '5 days')::date, 4, 250), \
             ('{own}', (date_trunc('month', now()) - interval '2 months')::date, 2, 50)"
        ),
    )
    .await;
    let token = member_token(own, OrgRole::Member);
    let usage = |period: pb::UsagePeriod| pb::GetUsageRequest {
        tenant_id: String::new(),
        period: period as i32,
    };

    let current = c
        .get_usage(authed(usage(pb::UsagePeriod::Unspecified), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.period, pb::UsagePeriod::Current as i32);
    let users = &current.usage[0];
    assert_eq!(users.metric, common::LimitMetric::Users as i32);
    assert_eq!(
        (users.current, users.maximum, users.percentage),
        (2.0, 10.0, 20.0)
    );
    // Against last month's peak of 4: -50 %.
    assert_eq!(current.trends[0].growth_percent, Some(-50.0));

    let last = c
        .get_usage(authed(usage(pb::UsagePeriod::LastMonth), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.usage[0].current, 4.0);
    assert_eq!(last.usage[3].current, 250.0);
    assert_eq!(last.trends[0].growth_percent, Some(100.0));
    let year = c
        .get_usage(authed(usage(pb::UsagePeriod::LastYear), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(year.usage[3].current, 300.0, "sum of the monthly totals");
    assert_eq!(
        year.trends[0].growth_percent, None,
        "no data the year before"
    );

    let err = c
        .get_usage(authed(
            pb::GetUsageRequest {
                tenant_id: String::new(),
                period: 99,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["period".to_owned()]);
    let err = c
        .get_usage(authed(
            pb::GetUsageRequest {
                tenant_id: other.to_string(),
                period: 0,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_usage(authed(
            usage(pb::UsagePeriod::Current),
            &tenantry_testing::roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// A stand-in tenant-settings that records ApplyTier calls and answers GetFeatures.
#[derive(Default, Clone)]
struct FakeSettings {
    applied: Arc<Mutex<Vec<(String, i32)>>>,
}

#[tonic::async_trait]
impl spb::tenant_settings_service_server::TenantSettingsService for FakeSettings {
    async fn get_features(
        &self,
        request: tonic::Request<spb::GetFeaturesRequest>,
    ) -> Result<tonic::Response<spb::GetFeaturesResponse>, Status> {
        let tenant_id = request.into_inner().tenant_id;
        let feature = |f: common::Feature, enabled: bool, available: bool| common::FeatureState {
            feature: f as i32,
            enabled,
            available,
            source: common::FeatureSource::TierDefault as i32,
            available_in_tiers: vec![common::SubscriptionTier::Enterprise as i32],
        };
        Ok(tonic::Response::new(spb::GetFeaturesResponse {
            tenant_id,
            subscription_tier: common::SubscriptionTier::Free as i32,
            features: vec![
                feature(common::Feature::AiChat, true, true),
                feature(common::Feature::Sso, false, false),
            ],
            version: 1,
        }))
    }

    async fn apply_tier(
        &self,
        request: tonic::Request<spb::ApplyTierRequest>,
    ) -> Result<tonic::Response<spb::ApplyTierResponse>, Status> {
        let r = request.into_inner();
        self.applied.lock().unwrap().push((r.tenant_id, r.tier));
        Ok(tonic::Response::new(spb::ApplyTierResponse {
            enabled_features: vec![common::Feature::AiChat as i32],
            disabled_features: vec![common::Feature::LiveClasses as i32],
            version: 2,
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn features_and_tier_changes_go_through_tenant_settings() {
    let db = TestDb::new().await;
    let fake = FakeSettings::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings_addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(
            spb::tenant_settings_service_server::TenantSettingsServiceServer::new(fake.clone()),
        )
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = tenant_admin::Config {
        listen_addr: admin_listener.local_addr().unwrap(),
        settings_url: format!("http://{settings_addr}"),
        provisioning_url: "http://127.0.0.1:9".into(),
        common: tenantry_testing::common_config(&db),
    };
    let admin_server = TestServer::start_on(admin_listener, move |l, stop| async move {
        tenant_admin::serve(config, l, stop)
            .await
            .map_err(|e| Box::new(format!("{e:#}")) as Box<dyn std::fmt::Display + Send>)
    });
    let mut c = OrganizationServiceClient::new(admin_server.channel().await);
    let own = tenant(&db, "active", 10).await;
    let other = tenant(&db, "active", 10).await;

    let out = c
        .get_features(authed(
            pb::GetFeaturesRequest::default(),
            &member_token(own, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.tenant_id, own.to_string());
    assert_eq!(out.features.len(), 2);
    assert_eq!(out.available_upgrades, vec![common::Feature::Sso as i32]);
    assert_eq!(out.limits.unwrap().max_users, 10);
    let err = c
        .get_features(authed(
            pb::GetFeaturesRequest {
                tenant_id: other.to_string(),
            },
            &member_token(own, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_features(authed(
            pb::GetFeaturesRequest {
                tenant_id: "x".into(),
            },
            &member_token(own, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["tenant_id".to_owned()]);

    let changed = c
        .update_subscription(authed(
            pb::UpdateSubscriptionRequest {
                tenant_id: String::new(),
                subscription_tier: common::SubscriptionTier::Professional as i32,
            },
            &member_token(own, OrgRole::Admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        changed.disabled_features,
        vec![common::Feature::LiveClasses as i32]
    );
    assert_eq!(
        fake.applied.lock().unwrap().clone(),
        vec![(
            own.to_string(),
            common::SubscriptionTier::Professional as i32
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_features_passes_tenant_settings_errors_through() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    // Whatever tenant-settings answers (it may not implement GetFeatures yet) comes back as is;
    // the tenant checks happen first.
    let result = c
        .get_features(authed(
            pb::GetFeaturesRequest::default(),
            &member_token(own, OrgRole::Member),
        ))
        .await;
    if let Err(status) = result {
        assert_ne!(status.code(), Code::Internal, "{status:?}");
    }
    // A tier change succeeds even when tenant-settings cannot apply it.
    c.update_subscription(authed(
        pb::UpdateSubscriptionRequest {
            tenant_id: String::new(),
            subscription_tier: common::SubscriptionTier::Basic as i32,
        },
        &member_token(own, OrgRole::Admin),
    ))
    .await
    .unwrap();
}
