//! DeprovisionTenant (dry run, soft, hard), ListBackups and RestoreTenant through gRPC.

#![expect(clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::Path;

use support::*;
use tenantry_auth::OrgRole;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as pb;
use tonic::Code;
use uuid::Uuid;

fn rid() -> String {
    Uuid::new_v4().to_string()
}

/// A tenant with rows in many tables (users, invitations, tokens, settings, features,
/// integrations, usage, billing, outbox, audit, idempotency keys).
async fn populated_tenant(env: &Env, slug: &str) -> Uuid {
    let t = create_tenant(
        env,
        slug,
        Some(&format!("office@{slug}.test")),
        "professional",
    )
    .await;
    let admin = create_user(env, t, &format!("admin@{slug}.test"), "admin").await;
    let teacher = create_user(env, t, &format!("teacher@{slug}.test"), "teacher").await;
    for sql in [
        format!(
            "UPDATE users SET password_hash = '$2b$12$abcdefghijklmnopqrstuu1234567890123456789012345678901' WHERE id = '{admin}'"
        ),
        format!(
            "INSERT INTO invitations (organization_id, email, org_role, token_hash, invited_by, user_id, status, accepted_at) VALUES ('{t}', 'teacher@{slug}.test', 'teacher', decode(md5(random()::text), 'hex'), '{admin}', '{teacher}', 'accepted', now())"
        ),
        format!(
            "INSERT INTO password_tokens (organization_id, user_id, token_hash, expires_at) VALUES ('{t}', '{admin}', decode(md5(random()::text), 'hex'), now() + interval '1 day')"
        ),
        format!(
            "INSERT INTO tenant_settings (organization_id, custom_settings, primary_color) VALUES ('{t}', '{{\"nested\": {{\"a\": [1, 2.5, \"x\\ny\"]}}}}', '#AABBCC')"
        ),
        format!(
            "INSERT INTO tenant_features (organization_id, feature, enabled) VALUES ('{t}', 'ai_chat', true), ('{t}', 'sso', false)"
        ),
        format!(
            "INSERT INTO integrations (organization_id, name, enabled, config, secrets) VALUES ('{t}', 'lti', true, '{{\"url\": \"https://x\"}}', '{{\"key\": \"s3cr3t\"}}')"
        ),
        format!(
            "INSERT INTO usage_logs (organization_id, log_type, period, storage_gb) VALUES ('{t}', 'daily', current_date, 0.1) ON CONFLICT DO NOTHING"
        ),
        format!(
            "INSERT INTO usage_events (organization_id, metric, delta, value_after, request_id) VALUES ('{t}', 'storage_gb', 0.30000000000000004, 0.30000000000000004, 'u1')"
        ),
        format!(
            "INSERT INTO billing_invoices (organization_id, invoice_number, amount_cents, line_items) VALUES ('{t}', 'INV-1', 1999, '[{{\"d\": \"seat\"}}]')"
        ),
        format!(
            "INSERT INTO payment_methods (organization_id, type, brand, last4, exp_month, exp_year, is_default) VALUES ('{t}', 'card', 'visa', '4242', 12, 2030, true)"
        ),
        format!(
            "INSERT INTO email_outbox (organization_id, message_id, kind, to_address, subject, body_text, status, sent_at) VALUES ('{t}', 'm-{t}', 'notification', 'a@b.test', 's', 'b', 'sent', now())"
        ),
        format!(
            "INSERT INTO audit_events (organization_id, actor_id, action) VALUES ('{t}', 'someone', 'thing.done')"
        ),
        format!(
            "INSERT INTO idempotency_keys (method, key, organization_id, request_hash) VALUES ('m', 'k-{t}', '{t}', '\\x00')"
        ),
    ] {
        exec(env, &sql).await;
    }
    t
}

fn hard(tenant: Uuid, request_id: &str, dry_run: bool) -> pb::DeprovisionTenantRequest {
    pb::DeprovisionTenantRequest {
        tenant_id: tenant.to_string(),
        mode: pb::DeprovisionMode::Hard as i32,
        dry_run,
        request_id: request_id.to_owned(),
        reason: "contract ended".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_counts_rows_and_changes_nothing() {
    let env = start(|_| {}).await;
    let t = populated_tenant(&env, "dry").await;
    let before = dump(&env, None).await;
    let mut client = env.client().await;
    let r = client
        .deprovision_tenant(authed(hard(t, "", true), &super_admin_token()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.dry_run);
    assert!(r.job_id.is_empty() && r.backup_id.is_empty());
    assert_eq!(r.row_counts["organizations"], 1);
    assert_eq!(r.row_counts["users"], 2);
    assert_eq!(r.row_counts["invitations"], 1);
    assert_eq!(r.row_counts["tenant_features"], 2);
    assert_eq!(r.row_counts["audit_events"], 1);
    assert!(!r.row_counts.contains_key("backups"));
    assert_eq!(dump(&env, None).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_delete_backs_up_then_removes_every_row_and_restore_brings_them_back() {
    let env = start(|_| {}).await;
    let gone = populated_tenant(&env, "gone").await;
    let kept = populated_tenant(&env, "kept").await;
    let gone_before = dump(&env, Some(gone)).await;
    let kept_before = dump(&env, Some(kept)).await;
    let mut client = env.client().await;
    let request_id = rid();
    let r = client
        .deprovision_tenant(authed(hard(gone, &request_id, false), &super_admin_token()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.dry_run);
    assert_eq!(r.mode, pb::DeprovisionMode::Hard as i32);
    assert_eq!(r.row_counts["users"], 2);
    assert_eq!(r.row_counts["organizations"], 1);

    // 0 rows of the tenant in every table with organization_id (backups excepted: it is the
    // record of the backup), the other tenant unchanged.
    let gone_after = dump(&env, Some(gone)).await;
    for (table, rows) in &gone_after {
        if table != "backups" {
            assert!(rows.is_empty(), "{table} still holds rows of the tenant");
        }
    }
    assert_eq!(dump(&env, Some(kept)).await, kept_before);

    // The archive and its manifest.
    let dir = Path::new(&r.backup_path);
    assert!(dir.starts_with(&env.workflow.backup_dir));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tenant_id"], gone.to_string());
    let users = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "users")
        .unwrap();
    assert_eq!(users["rows"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("users.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    // A retry gives the same answer.
    let again = client
        .deprovision_tenant(authed(hard(gone, &request_id, false), &super_admin_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, r);
    // One audit event, kept as a platform event (the tenant's own events went with it).
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id IS NULL \
                 AND action = 'tenantry.provisioning.v1.ProvisioningService/DeprovisionTenant' \
                 AND actor_id = 'test-operator' AND actor_role = 'super_admin' \
                 AND target_type = 'organization' AND target_id = '{gone}' \
                 AND request_id = '{request_id}' AND metadata ->> 'mode' = 'hard' \
                 AND metadata ->> 'backup_id' = '{}'",
                r.backup_id
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) AS n FROM audit_events WHERE action LIKE '%DeprovisionTenant'"
        )
        .await,
        1
    );

    // ListBackups.
    let list = client
        .list_backups(authed(
            pb::ListBackupsRequest {
                tenant_id: gone.to_string(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1);
    let b = &list.backups[0];
    assert_eq!(b.backup_id, r.backup_id);
    assert_eq!(b.tenant_slug, "gone");
    assert_eq!(b.row_counts["users"], 2);
    assert_eq!(b.checksum.len(), 64);
    assert!(b.size_bytes > 0);

    // Restore: the same rows, byte for byte as row_to_json renders them.
    let restore_id = rid();
    let restored = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: r.backup_id.clone(),
                request_id: restore_id.clone(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restored.tenant_id, gone.to_string());
    assert_eq!(restored.status, common_pb::TenantStatus::Pending as i32);
    assert_eq!(restored.row_counts["users"], 2);
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{gone}' \
                 AND action = 'tenantry.provisioning.v1.ProvisioningService/RestoreTenant' \
                 AND actor_id = 'test-operator' AND actor_role = 'super_admin' \
                 AND target_type = 'tenant' AND target_id = '{gone}' \
                 AND request_id = '{restore_id}'"
            )
        )
        .await,
        1
    );
    let mut gone_restored = dump(&env, Some(gone)).await;
    // The restore adds its own audit event and idempotency key; compare everything else.
    let audit: Vec<String> = gone_restored["audit_events"]
        .iter()
        .filter(|r| !r.contains("ProvisioningService/RestoreTenant"))
        .cloned()
        .collect();
    gone_restored.insert("audit_events".into(), audit);
    let keys: Vec<String> = gone_restored["idempotency_keys"]
        .iter()
        .filter(|r| !r.contains("RestoreTenant"))
        .cloned()
        .collect();
    gone_restored.insert("idempotency_keys".into(), keys);
    gone_restored.remove("backups");
    let mut expected = gone_before.clone();
    expected.remove("backups");
    assert_eq!(gone_restored, expected);
    assert_eq!(dump(&env, Some(kept)).await, kept_before);

    // Restoring again with the same request id answers the first result; with a new one the
    // tenant exists.
    let same = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: r.backup_id.clone(),
                request_id: restore_id,
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same, restored);
    let e = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: r.backup_id.clone(),
                request_id: rid(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_refuses_a_tampered_archive_and_restores_nothing() {
    let env = start(|_| {}).await;
    let t = populated_tenant(&env, "tamper").await;
    let mut client = env.client().await;
    let r = client
        .deprovision_tenant(authed(hard(t, &rid(), false), &super_admin_token()))
        .await
        .unwrap()
        .into_inner();
    let users = Path::new(&r.backup_path).join("users.jsonl");
    let text = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, text.replace("teacher", "admin")).unwrap();
    let e = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: r.backup_id.clone(),
                request_id: rid(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) AS n FROM organizations WHERE id = '{t}'")
        )
        .await,
        0
    );
    let e = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: Uuid::new_v4().to_string(),
                request_id: rid(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_deprovision_suspends_with_the_reason() {
    let env = start(|_| {}).await;
    let t = populated_tenant(&env, "soft").await;
    let mut client = env.client().await;
    let request_id = rid();
    let req = pb::DeprovisionTenantRequest {
        tenant_id: t.to_string(),
        mode: pb::DeprovisionMode::Soft as i32,
        request_id: request_id.clone(),
        reason: "unpaid".into(),
        dry_run: false,
    };
    let r = client
        .deprovision_tenant(authed(req.clone(), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, common_pb::TenantStatus::Suspended as i32);
    assert!(r.row_counts.is_empty());
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM organizations WHERE id = '{t}' AND status = 'suspended' AND suspension_reason = 'unpaid' AND suspended_at IS NOT NULL")).await,
        1
    );
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) AS n FROM users WHERE organization_id = '{t}'")
        )
        .await,
        2
    );
    let again = client
        .deprovision_tenant(authed(req.clone(), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, r);
    let e = client
        .deprovision_tenant(authed(
            pb::DeprovisionTenantRequest {
                reason: "other".into(),
                ..req
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&e), ["request_id"]);
    // One audit event for the call, the retry and the refused payload together.
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{t}' \
                 AND action = 'tenantry.provisioning.v1.ProvisioningService/DeprovisionTenant' \
                 AND actor_id = 'test-service' AND actor_role = 'service' \
                 AND target_type = 'tenant' AND target_id = '{t}' \
                 AND request_id = '{request_id}' AND metadata ->> 'mode' = 'soft' \
                 AND metadata ->> 'reason' = 'unpaid'"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{t}' \
                 AND action LIKE '%DeprovisionTenant'"
            )
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deprovision_and_backups_reject_bad_input_roles_and_unknown_tenants() {
    let env = start(|_| {}).await;
    let t = populated_tenant(&env, "checks").await;
    let before = dump(&env, None).await;
    let mut client = env.client().await;
    let cases = [
        (
            pb::DeprovisionTenantRequest {
                tenant_id: "x".into(),
                ..hard(t, &rid(), false)
            },
            "tenant_id",
        ),
        (
            pb::DeprovisionTenantRequest {
                mode: 0,
                ..hard(t, &rid(), false)
            },
            "mode",
        ),
        (
            pb::DeprovisionTenantRequest {
                reason: String::new(),
                ..hard(t, &rid(), false)
            },
            "reason",
        ),
        (
            pb::DeprovisionTenantRequest {
                reason: "r".repeat(501),
                ..hard(t, &rid(), false)
            },
            "reason",
        ),
        (hard(t, "", false), "request_id"),
    ];
    for (req, field) in cases {
        let e = client
            .deprovision_tenant(authed(req, &super_admin_token()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        assert_eq!(bad_fields(&e), [field]);
    }
    for token in [member_token(t, OrgRole::Admin), roleless_token()] {
        let e = client
            .deprovision_tenant(authed(hard(t, &rid(), false), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    for token in [service_token(), member_token(t, OrgRole::Admin)] {
        let e = client
            .list_backups(authed(pb::ListBackupsRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let e = client
            .restore_tenant(authed(
                pb::RestoreTenantRequest {
                    backup_id: Uuid::new_v4().to_string(),
                    request_id: rid(),
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    for dry in [true, false] {
        let e = client
            .deprovision_tenant(authed(
                hard(Uuid::new_v4(), &rid(), dry),
                &super_admin_token(),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    let e = client
        .list_backups(authed(
            pb::ListBackupsRequest {
                page_size: -1,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["page_size"]);
    let e = client
        .restore_tenant(authed(
            pb::RestoreTenantRequest {
                backup_id: "x".into(),
                request_id: String::new(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    let mut fields = bad_fields(&e);
    fields.sort();
    assert_eq!(fields, ["backup_id", "request_id"]);
    assert_eq!(dump(&env, None).await, before);
    assert!(
        std::fs::read_dir(&env.workflow.backup_dir)
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}
