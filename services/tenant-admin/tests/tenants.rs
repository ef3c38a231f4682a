//! TenantAdminService through gRPC on a real Postgres, plus the trial-expiry sweep.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;

use diesel_async::RunQueryDsl;
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_proto::prost_types::FieldMask;
use tenantry_testing::{Suite, authed, member_token, service_token, super_admin_token};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

fn sa<T>(m: T) -> Request<T> {
    authed(m, &super_admin_token())
}

async fn client(s: &Suite) -> TenantAdminServiceClient<Channel> {
    TenantAdminServiceClient::new(s.admin.channel().await)
}

fn fields(s: &Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn create_req(slug: &str) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        name: format!("Tenant {slug}"),
        slug: slug.into(),
        email: format!("admin@{slug}.test"),
        ..Default::default()
    }
}

async fn create(c: &mut TenantAdminServiceClient<Channel>, slug: &str) -> pb::Tenant {
    c.create_tenant(sa(create_req(slug)))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
}

async fn exec(s: &Suite, sql: &str) {
    let mut conn = s.db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_the_briefs_example() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = c
        .create_tenant(sa(pb::CreateTenantRequest {
            name: "Acme School District".into(),
            slug: "acme-schools".into(),
            email: "admin@acmeschools.edu".into(),
            subscription_tier: common::SubscriptionTier::Education.into(),
            limits: Some(common::TenantLimits {
                max_users: 500,
                max_classes: 100,
                max_storage_gb: 50.0,
                ..Default::default()
            }),
            trial_days: Some(30),
            timezone: "America/New_York".into(),
            locale: "en-US".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert!(Uuid::parse_str(&t.tenant_id).is_ok());
    assert_eq!(t.name, "Acme School District");
    assert_eq!(t.slug, "acme-schools");
    assert_eq!(t.email, "admin@acmeschools.edu");
    assert_eq!(t.status(), common::TenantStatus::Trial);
    assert_eq!(t.subscription_tier(), common::SubscriptionTier::Education);
    assert!(t.is_active);
    assert!(t.created_at.is_some());
    let l = t.limits.unwrap();
    assert_eq!(
        (l.max_users, l.max_classes, l.max_storage_gb),
        (500, 100, 50.0)
    );
    // Not given: the education tier's values.
    assert_eq!(
        (l.max_api_calls_per_month, l.max_roblox_sessions),
        (500_000, 200)
    );
    let u = t.usage.unwrap();
    assert_eq!(
        (u.current_users, u.current_classes, u.current_storage_gb),
        (0, 0, 0.0)
    );
    assert_eq!(t.trial_days_remaining, Some(30));
    assert_eq!(t.timezone, "America/New_York");
    assert_eq!(t.display_name, "Acme School District");

    let id = &t.tenant_id;
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM organizations WHERE id = '{id}' AND status = 'trial' \
                 AND max_users = 500 AND trial_expires_at > now() + interval '29 days'"
        ))
        .await,
        1
    );
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{id}' \
                 AND timezone = 'America/New_York'"
        ))
        .await,
        1
    );
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{id}' \
                 AND action = 'tenantry.admin.v1.TenantAdminService/CreateTenant' \
                 AND actor_id = 'test-operator' AND actor_role = 'super_admin'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_takes_the_tiers_limits_and_no_trial_means_active() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = c
        .create_tenant(sa(pb::CreateTenantRequest {
            subscription_tier: common::SubscriptionTier::Professional.into(),
            trial_days: Some(0),
            ..create_req("pro-school")
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.status(), common::TenantStatus::Active);
    assert!(t.trial_started_at.is_none() && t.trial_expires_at.is_none());
    assert_eq!(t.trial_days_remaining, None);
    let l = t.limits.unwrap();
    assert_eq!(
        (
            l.max_users,
            l.max_classes,
            l.max_storage_gb,
            l.max_api_calls_per_month,
            l.max_roblox_sessions
        ),
        (200, 100, 50.0, 100_000, 100)
    );
    // Default trial: 14 days.
    let t = create(&mut c, "default-trial").await;
    assert_eq!(t.status(), common::TenantStatus::Trial);
    assert_eq!(t.trial_days_remaining, Some(14));
    assert_eq!(t.subscription_tier(), common::SubscriptionTier::Free);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_rejects_bad_input_and_writes_nothing() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let err = c
        .create_tenant(sa(pb::CreateTenantRequest {
            name: String::new(),
            slug: "Acme--Schools".into(),
            email: "not-an-email".into(),
            trial_days: Some(91),
            limits: Some(common::TenantLimits {
                max_users: -1,
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let f = fields(&err);
    for name in ["name", "slug", "email", "trial_days", "limits.max_users"] {
        assert!(f.contains(&name.to_owned()), "{name} missing from {f:?}");
    }
    for slug in ["a", "-ab", "ab-", "a_b"] {
        let err = c.create_tenant(sa(create_req(slug))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{slug}");
        assert_eq!(fields(&err), vec!["slug".to_owned()], "{slug}");
    }
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations").await,
        0
    );
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM audit_events").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_needs_a_super_admin() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "guarded").await;
    let tenant: Uuid = t.tenant_id.parse().unwrap();
    for token in [member_token(tenant, OrgRole::Admin), service_token()] {
        let id = t.tenant_id.clone();
        let codes = [
            c.create_tenant(authed(create_req("other"), &token))
                .await
                .unwrap_err()
                .code(),
            c.list_tenants(authed(pb::ListTenantsRequest::default(), &token))
                .await
                .unwrap_err()
                .code(),
            c.get_tenant(authed(
                pb::GetTenantRequest {
                    tenant_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.update_tenant(authed(
                pb::UpdateTenantRequest {
                    tenant_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.update_tenant_limits(authed(
                pb::UpdateTenantLimitsRequest {
                    tenant_id: id.clone(),
                    max_users: Some(20),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.suspend_tenant(authed(
                pb::SuspendTenantRequest {
                    tenant_id: id.clone(),
                    reason: "x".into(),
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.reactivate_tenant(authed(
                pb::ReactivateTenantRequest {
                    tenant_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.delete_tenant(authed(
                pb::DeleteTenantRequest {
                    tenant_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.restore_tenant(authed(
                pb::RestoreTenantRequest {
                    tenant_id: id.clone(),
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
            c.provision_tenant(authed(
                pb::ProvisionTenantRequest {
                    tenant_id: id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err()
            .code(),
        ];
        assert!(
            codes.iter().all(|c| *c == Code::PermissionDenied),
            "{codes:?}"
        );
    }
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations").await,
        1
    );
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM organizations WHERE status = 'trial' AND max_users = 10"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_slug_is_already_exists_even_when_soft_deleted() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "taken").await;
    let err = c.create_tenant(sa(create_req("taken"))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "tenant with slug 'taken' already exists");
    c.delete_tenant(sa(pb::DeleteTenantRequest {
        tenant_id: t.tenant_id,
        ..Default::default()
    }))
    .await
    .unwrap();
    let err = c.create_tenant(sa(create_req("taken"))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_is_idempotent_by_request_id() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let req = pb::CreateTenantRequest {
        request_id: Uuid::new_v4().to_string(),
        ..create_req("idem")
    };
    let first = c.create_tenant(sa(req.clone())).await.unwrap().into_inner();
    let second = c.create_tenant(sa(req.clone())).await.unwrap().into_inner();
    assert_eq!(first, second);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations").await,
        1
    );
    // One CreateTenant event, and one ApplyTier event that tenant-settings records for the
    // tier CreateTenant applies there; the retry adds neither.
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM audit_events").await,
        2
    );
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM audit_events \
             WHERE action = 'tenantry.admin.v1.TenantAdminService/CreateTenant'"
        )
        .await,
        1
    );

    let err = c
        .create_tenant(sa(pb::CreateTenantRequest {
            name: "Another name".into(),
            ..req
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["request_id".to_owned()]);
    assert_eq!(
        s.db.count("SELECT count(*) AS n FROM organizations").await,
        1
    );
}

/// The listing test: 10,000 pre-existing tenants (with many equal `created_at`, so the
/// keyset's tie-breaker matters), paged 100 at a time while another task keeps creating tenants
/// through the RPC: every pre-existing tenant is seen exactly once, and nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_under_concurrent_inserts_yields_each_tenant_once() {
    const PRE_EXISTING: usize = 10_000;
    let s = Suite::start().await;
    exec(
        &s,
        &format!(
            "INSERT INTO organizations (name, slug, email, created_at) \
             SELECT 'Bulk ' || g, 'bulk-' || g, 'b' || g || '@x.test', \
                    now() - interval '1 hour' + (g % 50) * interval '1 second' \
             FROM generate_series(1, {PRE_EXISTING}) g"
        ),
    )
    .await;
    let pre: Vec<Uuid> = {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let mut conn = s.db.admin_conn().await;
        diesel::sql_query("ANALYZE organizations")
            .execute(&mut conn)
            .await
            .unwrap();
        diesel::sql_query("SELECT id FROM organizations")
            .load::<Row>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(pre.len(), PRE_EXISTING);
    let mut c = client(&s).await;
    let first = c
        .list_tenants(sa(pb::ListTenantsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total_size, PRE_EXISTING as i32);

    // Creates tenants through the RPC until the listing is done.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let writer = {
        let mut c = client(&s).await;
        tokio::spawn(async move {
            let mut created = 0_usize;
            while !*stopped.borrow_and_update() {
                c.create_tenant(sa(create_req(&format!("new-{created}"))))
                    .await
                    .unwrap();
                created += 1;
            }
            created
        })
    };
    let started = std::time::Instant::now();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_tenants(sa(pb::ListTenantsRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        for t in page.tenants {
            *seen.entry(t.tenant_id.parse().unwrap()).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokio::task::yield_now().await;
    }
    let listing = started.elapsed();
    stop.send(true).unwrap();
    let created = writer.await.unwrap();
    eprintln!("listed {pages} pages in {listing:?} while {created} tenants were created");
    assert!(created > 0, "the writer ran during the listing");
    assert!(pages >= PRE_EXISTING / 100);
    for id in &pre {
        assert_eq!(seen.get(id), Some(&1), "{id}");
    }
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_bad_paging() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    create(&mut c, "alpha-academy").await;
    let beta = c
        .create_tenant(sa(pb::CreateTenantRequest {
            subscription_tier: common::SubscriptionTier::Basic.into(),
            ..create_req("beta-school")
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    create(&mut c, "gamma-college").await;
    c.suspend_tenant(sa(pb::SuspendTenantRequest {
        tenant_id: beta.tenant_id.clone(),
        reason: "unpaid".into(),
    }))
    .await
    .unwrap();

    let list = |req: pb::ListTenantsRequest| {
        let mut c = c.clone();
        async move { c.list_tenants(sa(req)).await }
    };
    let all = list(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total_size, 2, "active only by default");
    let slugs: Vec<_> = all.tenants.iter().map(|t| t.slug.clone()).collect();
    assert_eq!(
        slugs,
        vec!["gamma-college", "alpha-academy"],
        "newest first"
    );
    let all = list(pb::ListTenantsRequest {
        active_only: Some(false),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(all.total_size, 3);
    let suspended = list(pb::ListTenantsRequest {
        status: common::TenantStatus::Suspended.into(),
        active_only: Some(false),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(suspended.tenants.len(), 1);
    assert_eq!(suspended.tenants[0].suspended_reason, "unpaid");
    let basic = list(pb::ListTenantsRequest {
        subscription_tier: common::SubscriptionTier::Basic.into(),
        active_only: Some(false),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(basic.total_size, 1);
    let q = list(pb::ListTenantsRequest {
        query: "ACAD".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(q.tenants.len(), 1);
    assert_eq!(q.tenants[0].slug, "alpha-academy");
    let q = list(pb::ListTenantsRequest {
        query: "%".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(q.total_size, 0, "LIKE wildcards are escaped");

    let err = list(pb::ListTenantsRequest {
        page_size: -1,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["page_size".to_owned()]);
    let err = list(pb::ListTenantsRequest {
        page_size: 101,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(fields(&err), vec!["page_size".to_owned()]);
    let page = list(pb::ListTenantsRequest {
        page_size: 1,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert!(!page.next_page_token.is_empty());
    let err = list(pb::ListTenantsRequest {
        page_size: 1,
        page_token: page.next_page_token,
        query: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["page_token".to_owned()]);
    let err = list(pb::ListTenantsRequest {
        page_token: "garbage!".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(fields(&err), vec!["page_token".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn total_size_is_counted_when_a_listing_starts_and_carried_by_its_tokens() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    for slug in ["t-one", "t-two", "t-three"] {
        create(&mut c, slug).await;
    }
    let first = c
        .list_tenants(sa(pb::ListTenantsRequest {
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total_size, 3);
    assert_eq!(first.tenants.len(), 2);
    // A tenant created meanwhile: the listing in progress keeps its total, a new one counts it.
    create(&mut c, "t-four").await;
    let second = c
        .list_tenants(sa(pb::ListTenantsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.total_size, 3, "carried by the token");
    assert_eq!(
        second.tenants.len(),
        1,
        "the new tenant sorts before the cursor"
    );
    let fresh = c
        .list_tenants(sa(pb::ListTenantsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.total_size, 4);
    // The token belongs to its filters.
    let err = c
        .list_tenants(sa(pb::ListTenantsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            active_only: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["page_token"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_total_is_reused_for_a_second_unless_this_replica_wrote() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    create(&mut c, "c-one").await;
    let total = |c: &TenantAdminServiceClient<Channel>| {
        let mut c = c.clone();
        async move {
            c.list_tenants(sa(pb::ListTenantsRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .total_size
        }
    };
    assert_eq!(total(&c).await, 1);
    // Another replica's write (straight to the database): the count of the last second stands.
    exec(
        &s,
        "UPDATE organizations SET is_active = false WHERE slug = 'c-one'",
    )
    .await;
    assert_eq!(total(&c).await, 1, "reused within the second");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(total(&c).await, 0, "counted again after a second");
    // A write through this replica shows at once.
    create(&mut c, "c-two").await;
    assert_eq!(total(&c).await, 1);
    // Other filters are counted on their own.
    let all = c
        .list_tenants(sa(pb::ListTenantsRequest {
            active_only: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total_size, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_finds_a_tenant_and_answers_not_found_otherwise() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "gettable").await;
    let got = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: t.tenant_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(got.slug, "gettable");
    assert_eq!(got.timezone, "UTC");
    assert_eq!(got.locale, "en-US");
    // The enabled features are tenant-settings' answer.
    let mut settings = tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient::new(
        s.settings.channel().await,
    );
    let want: Vec<i32> = settings
        .get_features(authed(
            tenantry_proto::settings::v1::GetFeaturesRequest {
                tenant_id: t.tenant_id.clone(),
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.feature)
        .collect();
    assert!(!want.is_empty(), "the tier enables some features");
    assert_eq!(got.enabled_features, want);
    let basic = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: t.tenant_id.clone(),
            view: pb::TenantView::Basic.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert!(basic.enabled_features.is_empty(), "BASIC leaves them out");
    assert_eq!(basic.slug, "gettable");
    let err = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: t.tenant_id.clone(),
            view: 99,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["view".to_owned()]);

    let missing = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "tenant not found");
    let err = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: "nope".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["tenant_id".to_owned()]);
}

/// The platform-mode backends of GetTenant's shared connections in the suite's database.
async fn shared_read_backends(s: &Suite) -> Vec<i32> {
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut conn = s.db.admin_conn().await;
    let pids: Vec<Pid> = diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 \
         ORDER BY pid",
    )
    .bind::<diesel::sql_types::Text, _>(&s.db.name)
    .bind::<diesel::sql_types::Text, _>(tenantry_db::SHARED_READS_APPLICATION_NAME)
    .load(&mut conn)
    .await
    .unwrap();
    pids.into_iter().map(|p| p.pid).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_pipelines_on_two_shared_connections_and_outlives_their_backends() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "pipelined").await;
    let get = |c: &TenantAdminServiceClient<Channel>| {
        let mut c = c.clone();
        let id = t.tenant_id.clone();
        async move {
            c.get_tenant(sa(pb::GetTenantRequest {
                tenant_id: id,
                view: pb::TenantView::Basic.into(),
            }))
            .await
            .map(|r| r.into_inner().tenant.unwrap().slug)
        }
    };
    // 64 reads at once: every one answers, over two shared connections (not one per read).
    let answers = futures::future::join_all((0..64).map(|_| get(&c))).await;
    for a in &answers {
        assert_eq!(a.as_ref().unwrap(), "pipelined");
    }
    let before = shared_read_backends(&s).await;
    assert_eq!(before.len(), 2, "{before:?}");

    // Their backends are terminated (a restart, a failover, an operator): the next reads open
    // new connections, and none of them fails.
    let mut admin = s.db.admin_conn().await;
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = $2",
    )
    .bind::<diesel::sql_types::Text, _>(&s.db.name)
    .bind::<diesel::sql_types::Text, _>(tenantry_db::SHARED_READS_APPLICATION_NAME)
    .execute(&mut admin)
    .await
    .unwrap();
    for _ in 0..100 {
        let now = shared_read_backends(&s).await;
        if now.iter().all(|p| !before.contains(p)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        assert_eq!(get(&c).await.unwrap(), "pipelined");
    }
    let after = shared_read_backends(&s).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );

    // A missing tenant on a shared connection is still NOT_FOUND, not a retry or an error.
    let missing = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            view: pb::TenantView::Basic.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_applies_the_mask_and_a_tier_change_brings_its_limits() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "updatable").await;
    let id = t.tenant_id.clone();
    let updated = c
        .update_tenant(sa(pb::UpdateTenantRequest {
            tenant_id: id.clone(),
            tenant: Some(pb::Tenant {
                name: "Renamed".into(),
                website: "https://example.test".into(),
                subscription_tier: common::SubscriptionTier::Basic.into(),
                locale: "fr-FR".into(),
                phone: "should be ignored".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec![
                    "name".into(),
                    "website".into(),
                    "subscription_tier".into(),
                    "locale".into(),
                ],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(updated.name, "Renamed");
    assert_eq!(updated.website, "https://example.test");
    assert_eq!(updated.phone, "");
    assert_eq!(updated.locale, "fr-FR");
    assert_eq!(updated.subscription_tier(), common::SubscriptionTier::Basic);
    assert_eq!(updated.limits.unwrap().max_users, 50);
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM organizations WHERE id = '{id}' AND name = 'Renamed' \
                 AND subscription_tier = 'basic' AND max_api_calls_per_month = 10000"
        ))
        .await,
        1
    );
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.TenantAdminService/UpdateTenant' \
                 AND metadata -> 'changed_fields' ? 'subscription_tier'"
        )
        .await,
        1
    );

    let err = c
        .update_tenant(sa(pb::UpdateTenantRequest {
            tenant_id: id.clone(),
            tenant: Some(pb::Tenant {
                slug: "new-slug".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["slug".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(fields(&err), vec!["update_mask".to_owned()]);
    let err = c
        .update_tenant(sa(pb::UpdateTenantRequest {
            tenant_id: id.clone(),
            tenant: Some(pb::Tenant::default()),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["tenant.name".to_owned()]);
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM organizations WHERE slug = 'updatable' AND name = 'Renamed'"
        )
        .await,
        1
    );

    // A change outside the locale settings reads them in the same round trip as the update
    // and the audit row: the answer carries the locale stored above.
    let described = c
        .update_tenant(sa(pb::UpdateTenantRequest {
            tenant_id: id.clone(),
            tenant: Some(pb::Tenant {
                description: "Described".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["description".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(described.description, "Described");
    assert_eq!(described.locale, "fr-FR");
    assert_eq!(described.name, "Renamed");
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE target_id = '{id}' \
                 AND organization_id = '{id}' AND actor_role = 'super_admin' \
                 AND action = 'tenantry.admin.v1.TenantAdminService/UpdateTenant' \
                 AND metadata -> 'changed_fields' ? 'description' \
                 AND metadata -> 'previous_tier' = 'null'::jsonb"
        ))
        .await,
        1
    );

    // A downgrade below current usage is refused.
    exec(
        &s,
        &format!("UPDATE organizations SET current_users = 20 WHERE id = '{id}'"),
    )
    .await;
    let err = c
        .update_tenant(sa(pb::UpdateTenantRequest {
            tenant_id: id.clone(),
            tenant: Some(pb::Tenant {
                subscription_tier: common::SubscriptionTier::Free.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["subscription_tier".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // An unknown tenant is NOT_FOUND whichever statements its update pipelines (the audit
    // row's foreign key fails as well), and nothing is written.
    let audit_rows = "SELECT count(*) AS n FROM audit_events \
         WHERE action = 'tenantry.admin.v1.TenantAdminService/UpdateTenant'";
    let audited = s.db.count(audit_rows).await;
    for paths in [vec!["description"], vec!["timezone", "description"]] {
        let unknown = Uuid::new_v4();
        let missing = c
            .update_tenant(sa(pb::UpdateTenantRequest {
                tenant_id: unknown.to_string(),
                tenant: Some(pb::Tenant {
                    timezone: "Europe/Paris".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{paths:?}: {missing:?}");
        assert_eq!(
            s.db.count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{unknown}'"
            ))
            .await,
            0
        );
    }
    assert_eq!(s.db.count(audit_rows).await, audited);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_limits_checks_bounds_and_usage() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "limited").await;
    let id = t.tenant_id.clone();
    let limits = |max_users: Option<i32>, force: bool| pb::UpdateTenantLimitsRequest {
        tenant_id: id.clone(),
        max_users,
        max_api_calls_per_month: Some(5_000),
        force,
        ..Default::default()
    };
    let t = c
        .update_tenant_limits(sa(limits(Some(40), false)))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let l = t.limits.unwrap();
    assert_eq!(
        (l.max_users, l.max_api_calls_per_month, l.max_classes),
        (40, 5_000, 5)
    );

    let err = c
        .update_tenant_limits(sa(pb::UpdateTenantLimitsRequest {
            tenant_id: id.clone(),
            max_users: Some(10_001),
            max_storage_gb: Some(0.05),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&err),
        vec!["max_users".to_owned(), "max_storage_gb".to_owned()]
    );

    exec(
        &s,
        &format!("UPDATE organizations SET current_users = 30 WHERE id = '{id}'"),
    )
    .await;
    let err = c
        .update_tenant_limits(sa(limits(Some(20), false)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("max_users"));
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM organizations WHERE id = '{id}' AND max_users = 40"
        ))
        .await,
        1
    );
    let t = c
        .update_tenant_limits(sa(limits(Some(20), true)))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.limits.unwrap().max_users, 20);
    assert_eq!(t.usage.unwrap().current_users, 30);
    assert_eq!(
        c.update_tenant_limits(sa(pb::UpdateTenantLimitsRequest {
            tenant_id: Uuid::new_v4().to_string(),
            max_users: Some(5),
            ..Default::default()
        }))
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_reactivate_delete_restore_follow_the_state_machine() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "lifecycle").await;
    let id = t.tenant_id.clone();

    let err = c
        .suspend_tenant(sa(pb::SuspendTenantRequest {
            tenant_id: id.clone(),
            reason: "  ".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["reason".to_owned()]);
    let t = c
        .suspend_tenant(sa(pb::SuspendTenantRequest {
            tenant_id: id.clone(),
            reason: "unpaid invoice".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.status(), common::TenantStatus::Suspended);
    assert!(!t.is_active);
    assert_eq!(t.suspended_reason, "unpaid invoice");
    // Suspending again returns it unchanged.
    c.suspend_tenant(sa(pb::SuspendTenantRequest {
        tenant_id: id.clone(),
        reason: "again".into(),
    }))
    .await
    .unwrap();
    assert_eq!(
        s.db.count(
            "SELECT count(*) AS n FROM organizations WHERE suspension_reason = 'unpaid invoice'"
        )
        .await,
        1
    );

    let t = c
        .reactivate_tenant(sa(pb::ReactivateTenantRequest {
            tenant_id: id.clone(),
            reason: "paid".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(
        t.status(),
        common::TenantStatus::Trial,
        "trial still running"
    );
    assert!(t.is_active);
    let err = c
        .reactivate_tenant(sa(pb::ReactivateTenantRequest {
            tenant_id: id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let err = c
        .restore_tenant(sa(pb::RestoreTenantRequest {
            tenant_id: id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let d = c
        .delete_tenant(sa(pb::DeleteTenantRequest {
            tenant_id: id.clone(),
            reason: "closing".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let t = d.tenant.unwrap();
    assert_eq!(t.status(), common::TenantStatus::Cancelled);
    assert!(t.deleted_at.is_some() && !t.is_active);
    assert!(d.backup_id.is_empty());
    let err = c
        .suspend_tenant(sa(pb::SuspendTenantRequest {
            tenant_id: id.clone(),
            reason: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let t = c
        .restore_tenant(sa(pb::RestoreTenantRequest {
            tenant_id: id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.status(), common::TenantStatus::Trial);
    assert!(t.deleted_at.is_none() && t.is_active);
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{id}' AND action IN (\
                 'tenantry.admin.v1.TenantAdminService/SuspendTenant', \
                 'tenantry.admin.v1.TenantAdminService/ReactivateTenant', \
                 'tenantry.admin.v1.TenantAdminService/DeleteTenant', \
                 'tenantry.admin.v1.TenantAdminService/RestoreTenant')"
        ))
        .await,
        4,
        "the repeated suspend wrote nothing"
    );
    for code in [
        c.suspend_tenant(sa(pb::SuspendTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            reason: "x".into(),
        }))
        .await
        .unwrap_err()
        .code(),
        c.delete_tenant(sa(pb::DeleteTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err()
        .code(),
        c.restore_tenant(sa(pb::RestoreTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
        }))
        .await
        .unwrap_err()
        .code(),
    ] {
        assert_eq!(code, Code::NotFound);
    }
    let err = c
        .delete_tenant(sa(pb::DeleteTenantRequest {
            tenant_id: "x".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(fields(&err), vec!["tenant_id".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_delete_and_provision_go_through_provisioning() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let t = create(&mut c, "forwarded").await;
    let id = t.tenant_id.clone();

    // Checked here before forwarding.
    let err = c
        .provision_tenant(sa(pb::ProvisionTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .provision_tenant(sa(pb::ProvisionTenantRequest {
            tenant_id: id.clone(),
            admin_username: "a b".into(),
            admin_password: Some("short".into()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        vec!["admin_username".to_owned(), "admin_password".to_owned()]
    );
    let err = c
        .delete_tenant(sa(pb::DeleteTenantRequest {
            tenant_id: Uuid::new_v4().to_string(),
            permanent: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Forwarded: provisioning's answer (or its error status) comes back as is.
    match c
        .provision_tenant(sa(pb::ProvisionTenantRequest {
            tenant_id: id.clone(),
            request_id: Uuid::new_v4().to_string(),
            ..Default::default()
        }))
        .await
    {
        Ok(r) => assert_eq!(r.into_inner().tenant_id, id),
        Err(e) => assert_ne!(e.code(), Code::Internal, "{e:?}"),
    }
    match c
        .delete_tenant(sa(pb::DeleteTenantRequest {
            tenant_id: id.clone(),
            permanent: true,
            request_id: Uuid::new_v4().to_string(),
            reason: "test".into(),
        }))
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            assert!(r.tenant.is_none());
            assert_eq!(
                s.db.count(&format!(
                    "SELECT count(*) AS n FROM organizations WHERE id = '{id}'"
                ))
                .await,
                0
            );
        }
        Err(e) => {
            assert_ne!(e.code(), Code::Internal, "{e:?}");
            assert_eq!(
                s.db.count(&format!(
                    "SELECT count(*) AS n FROM organizations WHERE id = '{id}'"
                ))
                .await,
                1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trial_sweep_suspends_ended_trials() {
    let s = Suite::start().await;
    let mut c = client(&s).await;
    let ended = create(&mut c, "ended-trial").await;
    let running = create(&mut c, "running-trial").await;
    exec(
        &s,
        &format!(
            "UPDATE organizations SET trial_started_at = now() - interval '15 days', \
             trial_expires_at = now() - interval '1 day' WHERE id = '{}'",
            ended.tenant_id
        ),
    )
    .await;
    let mut conn = s.db.app_conn().await;
    let swept = tenant_admin::sweep_expired_trials(&mut conn).await.unwrap();
    assert_eq!(swept, vec![ended.tenant_id.parse::<Uuid>().unwrap()]);
    assert!(
        tenant_admin::sweep_expired_trials(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );

    let t = c
        .get_tenant(sa(pb::GetTenantRequest {
            tenant_id: ended.tenant_id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.status(), common::TenantStatus::Suspended);
    assert_eq!(t.suspended_reason, "trial_expired");
    assert!(!t.is_active);
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{}' \
                 AND action = '{}' AND actor_role = 'system'",
            ended.tenant_id,
            tenant_admin::TRIAL_EXPIRED_ACTION
        ))
        .await,
        1
    );
    assert_eq!(
        s.db.count(&format!(
            "SELECT count(*) AS n FROM organizations WHERE id = '{}' AND status = 'trial'",
            running.tenant_id
        ))
        .await,
        1
    );
    // Reactivated after the trial: active.
    let t = c
        .reactivate_tenant(sa(pb::ReactivateTenantRequest {
            tenant_id: ended.tenant_id,
            reason: "subscribed".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.status(), common::TenantStatus::Active);
}
