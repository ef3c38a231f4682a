//! End to end through tenant-admin, tenant-settings and provisioning on one Suite: a super
//! admin creates and provisions a tenant (through tenant-admin), its admin logs in with the
//! one-time password, enables a feature and invites a teacher, who accepts, logs in and reads
//! the settings; then a hard delete leaves no row of the tenant (another tenant untouched) and
//! an archive on disk, and a restore brings back the same rows and a working admin login.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tenantry_proto::admin::v1 as admin_pb;
use tenantry_proto::admin::v1::auth_service_client::AuthServiceClient;
use tenantry_proto::admin::v1::login_request::Identifier;
use tenantry_proto::admin::v1::organization_service_client::OrganizationServiceClient;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as prov_pb;
use tenantry_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient;
use tenantry_proto::settings::v1 as settings_pb;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_testing::{Suite, TestDb, authed, super_admin_token};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

const STEPS: [&str; 5] = [
    "admin_user_created",
    "default_settings_initialized",
    "default_features_configured",
    "organization_verified",
    "welcome_email_sent",
];

fn rid() -> String {
    Uuid::new_v4().to_string()
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Every public table with an `organization_id` column (from the catalog), plus
/// `organizations`.
async fn tenant_tables(conn: &mut AsyncPgConnection) -> Vec<String> {
    let rows: Vec<Line> = diesel::sql_query(
        "SELECT c.relname::text AS line FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
           AND (c.relname = 'organizations' OR EXISTS ( \
                SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                  AND a.attname = 'organization_id' AND NOT a.attisdropped)) \
         ORDER BY 1",
    )
    .load(conn)
    .await
    .unwrap();
    rows.into_iter().map(|l| l.line).collect()
}

/// The rows of `tenant` in every tenant table, as sorted `row_to_json` text, by table.
async fn dump(db: &TestDb, tenant: &str) -> BTreeMap<String, Vec<String>> {
    let mut conn = db.admin_conn().await;
    let mut out = BTreeMap::new();
    for table in tenant_tables(&mut conn).await {
        let column = if table == "organizations" {
            "id"
        } else {
            "organization_id"
        };
        let rows: Vec<Line> = diesel::sql_query(format!(
            "SELECT row_to_json(t)::text AS line FROM \"{table}\" t \
             WHERE t.{column} = $1::uuid ORDER BY 1"
        ))
        .bind::<Text, _>(tenant)
        .load(&mut conn)
        .await
        .unwrap();
        out.insert(table, rows.into_iter().map(|l| l.line).collect());
    }
    out
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.admin_conn().await;
    let c: Count = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
    c.n
}

/// Polls `f` (bounded) until it returns true.
async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

fn login(slug: &str, identifier: Identifier, password: &str) -> admin_pb::LoginRequest {
    admin_pb::LoginRequest {
        tenant_slug: slug.into(),
        identifier: Some(identifier),
        password: password.into(),
    }
}

/// Creates (CreateTenant) and provisions (ProvisionTenant, through tenant-admin) a tenant;
/// returns it with the provisioning response.
async fn create_and_provision(
    tenants: &mut TenantAdminServiceClient<Channel>,
    slug: &str,
    email: &str,
    tier: common_pb::SubscriptionTier,
) -> (admin_pb::Tenant, admin_pb::ProvisionTenantResponse) {
    let created = tenants
        .create_tenant(authed(
            admin_pb::CreateTenantRequest {
                request_id: rid(),
                name: format!("School {slug}"),
                slug: slug.into(),
                email: email.into(),
                subscription_tier: tier as i32,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(created.slug, slug);
    assert_eq!(created.email, email);
    assert_eq!(created.subscription_tier, tier as i32);
    assert_eq!(created.status, common_pb::TenantStatus::Trial as i32);
    assert!(!created.is_verified, "{created:?}");
    Uuid::parse_str(&created.tenant_id).unwrap();

    let provisioned = tenants
        .provision_tenant(authed(
            admin_pb::ProvisionTenantRequest {
                tenant_id: created.tenant_id.clone(),
                request_id: rid(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(provisioned.tenant_id, created.tenant_id);
    assert_eq!(
        provisioned.status,
        common_pb::ProvisioningStatus::Success as i32,
        "{provisioned:?}"
    );
    assert_eq!(provisioned.steps_completed, STEPS);
    assert!(provisioned.errors.is_empty(), "{provisioned:?}");
    Uuid::parse_str(&provisioned.admin_user_id).unwrap();
    Uuid::parse_str(&provisioned.job_id).unwrap();
    assert!(provisioned.provisioned_at.is_some());
    let password = provisioned.generated_admin_password.as_deref().unwrap();
    assert!(
        password.len() >= 20,
        "a generated password of 16 random bytes"
    );

    let after = tenants
        .get_tenant(authed(
            admin_pb::GetTenantRequest {
                tenant_id: created.tenant_id.clone(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert!(after.is_verified, "{after:?}");
    assert_eq!(after.status, common_pb::TenantStatus::Trial as i32);
    (created, provisioned)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_provision_use_hard_delete_and_restore_a_tenant_end_to_end() {
    let suite = Suite::start().await;
    let db = &suite.db;
    let mut tenants = TenantAdminServiceClient::new(suite.admin.channel().await);
    let mut auth = AuthServiceClient::new(suite.admin.channel().await);
    let mut orgs = OrganizationServiceClient::new(suite.admin.channel().await);
    let mut settings = TenantSettingsServiceClient::new(suite.settings.channel().await);
    let mut prov = ProvisioningServiceClient::new(suite.provisioning.channel().await);

    // Another tenant, created and provisioned first: it must come through untouched.
    let (other, other_prov) = create_and_provision(
        &mut tenants,
        "e2e-other",
        "office@e2e-other.test",
        common_pb::SubscriptionTier::Basic,
    )
    .await;

    // 1. Create and provision (through tenant-admin) the tenant under test.
    let (tenant, provisioned) = create_and_provision(
        &mut tenants,
        "e2e-school",
        "office@e2e-school.test",
        common_pb::SubscriptionTier::Education,
    )
    .await;
    let tid = tenant.tenant_id.clone();
    let admin_password = provisioned.generated_admin_password.clone().unwrap();
    assert_ne!(
        other_prov.generated_admin_password,
        provisioned.generated_admin_password
    );
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) AS n FROM users WHERE organization_id = '{tid}' \
                 AND id = '{}' AND org_role = 'admin' AND username = 'admin_e2e-school' \
                 AND lower(email) = 'office@e2e-school.test'",
                provisioned.admin_user_id
            )
        )
        .await,
        1
    );

    // 2. The admin logs in with the returned password (by e-mail and by username).
    let admin_login = auth
        .login(login(
            "e2e-school",
            Identifier::Email("office@e2e-school.test".into()),
            &admin_password,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(admin_login.user_id, provisioned.admin_user_id);
    assert_eq!(admin_login.tenant_id, tid);
    assert_eq!(admin_login.org_role, common_pb::OrgRole::Admin as i32);
    assert_eq!(admin_login.token_type, "Bearer");
    assert!(admin_login.expires_in > 0);
    let by_name = auth
        .login(login(
            "e2e-school",
            Identifier::Username("admin_e2e-school".into()),
            &admin_password,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.user_id, provisioned.admin_user_id);
    let wrong = auth
        .login(login(
            "e2e-school",
            Identifier::Username("admin_e2e-school".into()),
            "not-the-password",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let admin_token = admin_login.access_token;

    // 3. The admin enables a feature the education tier offers but does not enable by default.
    let features = settings
        .get_features(authed(
            settings_pb::GetFeaturesRequest::default(),
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(features.tenant_id, tid);
    assert_eq!(
        features.subscription_tier,
        common_pb::SubscriptionTier::Education as i32
    );
    let api = features
        .features
        .iter()
        .find(|f| f.feature == common_pb::Feature::ApiAccess as i32)
        .unwrap();
    assert!(api.available && !api.enabled, "{api:?}");
    let set = settings
        .set_feature(authed(
            settings_pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: common_pb::Feature::ApiAccess as i32,
                enabled: true,
            },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let state = set.feature.unwrap();
    assert_eq!(state.feature, common_pb::Feature::ApiAccess as i32);
    assert!(state.enabled && state.available);
    assert_eq!(state.source, common_pb::FeatureSource::OrgAdmin as i32);
    assert!(set.version > features.version);
    // A feature the tier does not offer stays refused.
    let refused = settings
        .set_feature(authed(
            settings_pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: common_pb::Feature::Sso as i32,
                enabled: true,
            },
            &admin_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // 4. The admin invites a teacher; the token is returned once.
    let invited = orgs
        .create_invitation(authed(
            admin_pb::CreateInvitationRequest {
                request_id: rid(),
                email: "Teacher@E2E-School.test".into(),
                org_role: common_pb::OrgRole::Teacher as i32,
                ..Default::default()
            },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let invitation = invited.invitation.unwrap();
    assert_eq!(invitation.tenant_id, tid);
    assert_eq!(invitation.email, "teacher@e2e-school.test");
    assert_eq!(invitation.org_role, common_pb::OrgRole::Teacher as i32);
    assert_eq!(
        invitation.status,
        admin_pb::InvitationStatus::Pending as i32
    );
    assert_eq!(invitation.invited_by_id, provisioned.admin_user_id);
    assert!(!invited.invitation_token.is_empty());

    // 5. The teacher accepts and logs in.
    let teacher_password = "teacher passphrase 2026";
    let accepted = orgs
        .accept_invitation(admin_pb::AcceptInvitationRequest {
            token: invited.invitation_token.clone(),
            username: "teacher_tess".into(),
            password: teacher_password.into(),
            first_name: "Tess".into(),
            last_name: "Teacher".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.tenant_id, tid);
    let member = accepted.user.unwrap();
    assert_eq!(member.email, "teacher@e2e-school.test");
    assert_eq!(member.username, "teacher_tess");
    assert_eq!(member.org_role, common_pb::OrgRole::Teacher as i32);
    assert!(!accepted.access_token.is_empty());
    let again = orgs
        .accept_invitation(admin_pb::AcceptInvitationRequest {
            token: invited.invitation_token.clone(),
            username: "teacher_two".into(),
            password: teacher_password.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(again.code(), Code::FailedPrecondition | Code::NotFound),
        "an invitation is single-use: {again:?}"
    );
    let teacher_login = auth
        .login(login(
            "e2e-school",
            Identifier::Username("teacher_tess".into()),
            teacher_password,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(teacher_login.user_id, member.user_id);
    assert_eq!(teacher_login.tenant_id, tid);
    assert_eq!(teacher_login.org_role, common_pb::OrgRole::Teacher as i32);

    // 6. The teacher reads the settings (with the feature the admin enabled).
    let read = settings
        .get_settings(authed(
            settings_pb::GetSettingsRequest::default(),
            &teacher_login.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(read.tenant_id, tid);
    assert_eq!(read.tenant_slug, "e2e-school");
    assert_eq!(read.tenant_name, "School e2e-school");
    assert!(
        read.enabled_features
            .contains(&(common_pb::Feature::ApiAccess as i32)),
        "{read:?}"
    );
    assert!(read.version >= set.version);
    // ... but may not change them.
    let denied = settings
        .set_feature(authed(
            settings_pb::SetFeatureRequest {
                tenant_id: String::new(),
                feature: common_pb::Feature::ApiAccess as i32,
                enabled: false,
            },
            &teacher_login.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Let the mail relay finish (welcome and invitation e-mails), so nothing of either tenant
    // changes behind the snapshots.
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(
                db,
                "SELECT count(*) AS n FROM email_outbox WHERE status = 'pending'",
            )
            .await
                == 0
        })
        .await,
        "the outbox did not drain"
    );
    let before = dump(db, &tid).await;
    let other_before = dump(db, &other.tenant_id).await;
    assert_eq!(before["organizations"].len(), 1);
    assert_eq!(before["users"].len(), 2, "admin and teacher");
    assert_eq!(before["invitations"].len(), 1);
    assert_eq!(before["tenant_settings"].len(), 1);
    assert!(!before["tenant_features"].is_empty());
    assert_eq!(before["provisioning_jobs"].len(), 1);
    assert_eq!(before["provisioning_steps"].len(), 5);
    assert!(!before["email_outbox"].is_empty());
    assert!(!before["audit_events"].is_empty());
    assert!(before["backups"].is_empty());
    assert_eq!(other_before["users"].len(), 1);

    // 7. Hard delete through tenant-admin (forwarded to DeprovisionTenant, mode HARD).
    let deleted = tenants
        .delete_tenant(authed(
            admin_pb::DeleteTenantRequest {
                tenant_id: tid.clone(),
                permanent: true,
                request_id: rid(),
                reason: "end-to-end test".into(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.tenant.is_none());
    Uuid::parse_str(&deleted.backup_id).unwrap();
    assert_eq!(deleted.deleted_row_counts["organizations"], 1);
    assert_eq!(deleted.deleted_row_counts["users"], 2);

    // Every table with an organization_id holds 0 rows of the tenant (except `backups`, the
    // record of the archive itself, which is not a foreign key by design).
    let gone = dump(db, &tid).await;
    assert_eq!(
        gone.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &gone {
        if table == "backups" {
            assert_eq!(rows.len(), 1, "one backup record");
        } else {
            assert!(rows.is_empty(), "{table} still holds rows of the tenant");
        }
    }
    assert_eq!(
        dump(db, &other.tenant_id).await,
        other_before,
        "the other tenant changed"
    );
    let gone_login = auth
        .login(login(
            "e2e-school",
            Identifier::Email("office@e2e-school.test".into()),
            &admin_password,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone_login.code(), Code::Unauthenticated);

    // The archive on disk: manifest.json with the row count of every table.
    let backups = prov
        .list_backups(authed(
            prov_pb::ListBackupsRequest {
                tenant_id: tid.clone(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(backups.total_size, 1);
    let backup = &backups.backups[0];
    assert_eq!(backup.backup_id, deleted.backup_id);
    assert_eq!(backup.tenant_slug, "e2e-school");
    let dir = Path::new(&backup.path);
    assert!(dir.is_dir(), "{dir:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tenant_id"], tid.as_str());
    assert_eq!(manifest["backup_id"], deleted.backup_id.as_str());
    let manifest_counts: BTreeMap<String, usize> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                usize::try_from(t["rows"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    let expected_counts: BTreeMap<String, usize> = before
        .iter()
        .filter(|(t, _)| *t != "backups")
        .map(|(t, rows)| (t.clone(), rows.len()))
        .collect();
    assert_eq!(manifest_counts, expected_counts);
    for (table, rows) in &manifest_counts {
        let file = std::fs::read_to_string(dir.join(format!("{table}.jsonl"))).unwrap();
        assert_eq!(file.lines().count(), *rows, "{table}.jsonl");
        assert_eq!(
            usize::try_from(deleted.deleted_row_counts[table]).unwrap(),
            *rows,
            "{table}"
        );
    }

    // 8. Restore: the same rows back, and the admin logs in with the same password.
    let restored = prov
        .restore_tenant(authed(
            prov_pb::RestoreTenantRequest {
                backup_id: deleted.backup_id.clone(),
                request_id: rid(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.tenant_id, tid);
    assert_eq!(restored.status, common_pb::TenantStatus::Trial as i32);
    for (table, rows) in &manifest_counts {
        assert_eq!(
            restored.row_counts.get(table).copied().unwrap_or_default(),
            i64::try_from(*rows).unwrap(),
            "{table}"
        );
    }
    let mut back = dump(db, &tid).await;
    // The restore records its own audit event and idempotency key; the backup record stays.
    for (table, marker) in [
        ("audit_events", "ProvisioningService/RestoreTenant"),
        ("idempotency_keys", "RestoreTenant"),
    ] {
        let rows = back.get_mut(table).unwrap();
        let n = rows.len();
        rows.retain(|r| !r.contains(marker));
        assert_eq!(n - rows.len(), 1, "one {marker} row in {table}");
    }
    back.remove("backups");
    let mut expected = before.clone();
    expected.remove("backups");
    assert_eq!(back, expected, "the restored rows differ");
    assert_eq!(
        dump(db, &other.tenant_id).await,
        other_before,
        "the other tenant changed"
    );

    let relogin = auth
        .login(login(
            "e2e-school",
            Identifier::Email("office@e2e-school.test".into()),
            &admin_password,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(relogin.user_id, provisioned.admin_user_id);
    assert_eq!(relogin.tenant_id, tid);
    assert_eq!(relogin.org_role, common_pb::OrgRole::Admin as i32);
    let teacher_again = auth
        .login(login(
            "e2e-school",
            Identifier::Username("teacher_tess".into()),
            teacher_password,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(teacher_again.user_id, member.user_id);
}
