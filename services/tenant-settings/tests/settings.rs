//! Settings, custom settings, defaults and limits through real gRPC on a real Postgres.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{
    assert_one_event, audit_events, bad_fields, client, create_tenant, exec, member_as, suite,
};
use prost_types::{FieldMask, Struct, Value, value::Kind};
use tenantry_auth::OrgRole;
use tenantry_proto::settings::v1 as pb;
use tenantry_testing::{authed, member_token, roleless_token, service_token, super_admin_token};
use tonic::Code;
use uuid::Uuid;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn s(v: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(v.to_owned())),
    }
}

fn null() -> Value {
    Value {
        kind: Some(Kind::NullValue(0)),
    }
}

fn obj(fields: Vec<(&str, Value)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_settings_reads_defaults_for_members_and_super_admins() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;

    let member = member_token(tenant, OrgRole::Member);
    let got = c
        .get_settings(authed(pb::GetSettingsRequest::default(), &member))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(got.tenant_id, tenant.to_string());
    assert_eq!(got.timezone, "UTC");
    assert_eq!(got.locale, "en-US");
    assert_eq!(got.branding.as_ref().unwrap().default_theme, "roblox");
    let security = got.security.unwrap();
    assert_eq!(security.session_timeout_minutes, 60);
    assert_eq!(security.max_login_attempts, 5);
    assert_eq!(security.password_policy.unwrap().expiration_days, 90);
    let compliance = got.compliance.unwrap();
    assert!(compliance.coppa_compliant && !compliance.ferpa_compliant);
    assert_eq!(compliance.data_retention_days, 365);
    assert_eq!(got.enabled_features.len(), 7, "professional has 7 defaults");

    // A super admin must name the tenant.
    let sa = super_admin_token();
    let err = c
        .get_settings(authed(pb::GetSettingsRequest::default(), &sa))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tenant_id"]);
    let by_sa = c
        .get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: tenant.to_string(),
            },
            &sa,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_sa.settings.unwrap().tenant_id, tenant.to_string());

    // Another tenant's id answers exactly like an id that does not exist.
    let other = create_tenant(&suite.db, "free", "active").await;
    let a = c
        .get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: other.to_string(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    let b = c
        .get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(a.code(), Code::NotFound);
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    // A super admin asking for a tenant that does not exist gets the same answer.
    let c2 = c
        .get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &sa,
        ))
        .await
        .unwrap_err();
    assert_eq!((c2.code(), c2.message()), (a.code(), a.message()));

    // A token without a role may not read settings.
    let err = c
        .get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: tenant.to_string(),
            },
            &roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_settings_writes_the_masked_fields_and_validates_first() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);

    let request = pb::UpdateSettingsRequest {
        tenant_id: String::new(),
        settings: Some(pb::TenantSettings {
            timezone: "Europe/Paris".into(),
            locale: "fr-FR".into(),
            display_name: "Lycée Example".into(),
            description: "A school".into(),
            branding: Some(pb::Branding {
                logo_url: "https://cdn.example.org/logo.png".into(),
                primary_color: "#1A2b3C".into(),
                secondary_color: "#FFFFFF".into(),
                custom_domain: "Learn.Example.org".into(),
                default_theme: "dark".into(),
                ..Default::default()
            }),
            security: Some(pb::SecuritySettings {
                session_timeout_minutes: 30,
                max_login_attempts: 3,
                two_factor_required: true,
                password_policy: Some(pb::PasswordPolicy {
                    min_length: 12,
                    require_symbols: true,
                    expiration_days: 180,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            compliance: Some(pb::ComplianceSettings {
                ferpa_compliant: true,
                data_retention_days: 730,
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: mask(&[
            "timezone",
            "locale",
            "display_name",
            "description",
            "branding",
            "security.session_timeout_minutes",
            "security.max_login_attempts",
            "security.two_factor_required",
            "security.password_policy",
            "compliance.ferpa_compliant",
            "compliance.data_retention_days",
        ]),
    };
    let got = c
        .update_settings(authed(request, &admin))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(got.timezone, "Europe/Paris");
    assert_eq!(got.locale, "fr-FR");
    assert_eq!(got.display_name, "Lycée Example");
    let branding = got.branding.unwrap();
    assert_eq!(branding.custom_domain, "learn.example.org");
    assert_eq!(branding.primary_color, "#1A2b3C");
    assert_eq!(branding.default_theme, "dark");
    let security = got.security.unwrap();
    assert_eq!(security.session_timeout_minutes, 30);
    assert_eq!(security.max_login_attempts, 3);
    assert!(security.two_factor_required);
    let policy = security.password_policy.unwrap();
    assert_eq!((policy.min_length, policy.expiration_days), (12, 180));
    assert!(policy.require_symbols && !policy.require_uppercase);
    let compliance = got.compliance.unwrap();
    assert!(compliance.ferpa_compliant && compliance.coppa_compliant);
    assert_eq!(compliance.data_retention_days, 730);
    assert!(got.version >= 2);

    // The rows.
    let id = tenant.to_string();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{id}' \
                 AND timezone = 'Europe/Paris' AND locale = 'fr-FR' \
                 AND custom_domain = 'learn.example.org' AND primary_color = '#1A2b3C' \
                 AND (security ->> 'session_timeout_minutes')::int = 30 \
                 AND (security -> 'password_policy' ->> 'min_length')::int = 12 \
                 AND (security ->> 'password_expiry_days')::int = 180 \
                 AND (compliance ->> 'data_retention_days')::int = 730 \
                 AND (compliance ->> 'ferpa_compliance_required')::boolean \
                 AND default_theme = 'dark' AND NOT custom_settings ? 'default_theme'"
            ))
            .await,
        1
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{id}' \
                 AND display_name = 'Lycée Example' AND description = 'A school'"
            ))
            .await,
        1
    );

    // Bad values: every bad field is named, nothing is written.
    let snapshot = "SELECT count(*) AS n FROM tenant_settings WHERE timezone = 'Europe/Paris' \
                    AND version = ";
    let version = got.version;
    let bad = pb::UpdateSettingsRequest {
        tenant_id: String::new(),
        settings: Some(pb::TenantSettings {
            timezone: "Mars/Olympus".into(),
            locale: "english".into(),
            branding: Some(pb::Branding {
                logo_url: "http://cdn.example.org/logo.png".into(),
                primary_color: "red".into(),
                custom_domain: "not a host".into(),
                ..Default::default()
            }),
            security: Some(pb::SecuritySettings {
                session_timeout_minutes: 2,
                max_login_attempts: 50,
                ..Default::default()
            }),
            compliance: Some(pb::ComplianceSettings {
                data_retention_days: 0,
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: mask(&[
            "timezone",
            "locale",
            "branding.logo_url",
            "branding.primary_color",
            "branding.custom_domain",
            "security.session_timeout_minutes",
            "security.max_login_attempts",
            "compliance.data_retention_days",
        ]),
    };
    let err = c.update_settings(authed(bad, &admin)).await.unwrap_err();
    let mut fields = bad_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "settings.branding.custom_domain",
            "settings.branding.logo_url",
            "settings.branding.primary_color",
            "settings.compliance.data_retention_days",
            "settings.locale",
            "settings.security.max_login_attempts",
            "settings.security.session_timeout_minutes",
            "settings.timezone",
        ]
    );
    assert_eq!(
        suite.db.count(&format!("{snapshot}{version}")).await,
        1,
        "nothing written"
    );

    // Unknown and output-only mask paths.
    let err = c
        .update_settings(authed(
            pb::UpdateSettingsRequest {
                settings: Some(pb::TenantSettings::default()),
                update_mask: mask(&["version", "custom_settings", "nope"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        ["update_mask", "update_mask", "update_mask"]
    );

    // A member (not admin) may not update.
    let err = c
        .update_settings(authed(
            pb::UpdateSettingsRequest {
                settings: Some(pb::TenantSettings {
                    timezone: "UTC".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["timezone"]),
                ..Default::default()
            },
            &member_token(tenant, OrgRole::Manager),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Another tenant's id: NOT_FOUND.
    let err = c
        .update_settings(authed(
            pb::UpdateSettingsRequest {
                tenant_id: create_tenant(&suite.db, "free", "active").await.to_string(),
                settings: Some(pb::TenantSettings {
                    timezone: "UTC".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["timezone"]),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(suite.db.count(&format!("{snapshot}{version}")).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_settings_enforces_features_and_unique_domains() {
    let suite = suite().await;
    let pro = create_tenant(&suite.db, "professional", "active").await;
    let other = create_tenant(&suite.db, "enterprise", "active").await;
    let free = create_tenant(&suite.db, "free", "active").await;
    let mut c = client(&suite.settings).await;

    let domain = |tenant_admin: &str, d: &str| {
        authed(
            pb::UpdateSettingsRequest {
                settings: Some(pb::TenantSettings {
                    branding: Some(pb::Branding {
                        custom_domain: d.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["branding.custom_domain"]),
                ..Default::default()
            },
            tenant_admin,
        )
    };
    let pro_admin = member_token(pro, OrgRole::Admin);
    let other_admin = member_token(other, OrgRole::Admin);
    c.update_settings(domain(&pro_admin, "school.example.org"))
        .await
        .unwrap();
    let err = c
        .update_settings(domain(&other_admin, "SCHOOL.example.org"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{other}'"
            ))
            .await,
        0,
        "nothing written"
    );

    // Branding without the custom_branding feature (free tier).
    let err = c
        .update_settings(domain(
            &member_token(free, OrgRole::Admin),
            "free.example.org",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // SSO needs the sso feature: professional lacks it, enterprise has it.
    let sso = |token: &str| {
        authed(
            pb::UpdateSettingsRequest {
                settings: Some(pb::TenantSettings {
                    security: Some(pb::SecuritySettings {
                        sso_enabled: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["security.sso_enabled"]),
                ..Default::default()
            },
            token,
        )
    };
    let err = c.update_settings(sso(&pro_admin)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("sso"), "{}", err.message());
    let ok = c
        .update_settings(sso(&other_admin))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.settings.unwrap().security.unwrap().sso_enabled);
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_settings_merge_remove_nulls_and_cap_at_64_kib() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "basic", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);

    let merge = |settings: Struct| {
        authed(
            pb::UpdateCustomSettingsRequest {
                tenant_id: String::new(),
                settings: Some(settings),
            },
            &admin,
        )
    };
    c.update_custom_settings(merge(obj(vec![
        ("a", s("1")),
        (
            "nested",
            Value {
                kind: Some(Kind::StructValue(obj(vec![("deep", s("x"))]))),
            },
        ),
    ])))
    .await
    .unwrap();
    let got = c
        .update_custom_settings(merge(obj(vec![("a", null()), ("b", s("2"))])))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
        .custom_settings
        .unwrap();
    let mut keys: Vec<&String> = got.fields.keys().collect();
    keys.sort();
    assert_eq!(keys, ["b", "nested"]);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}' \
                 AND custom_settings = '{{\"b\": \"2\", \"nested\": {{\"deep\": \"x\"}}}}'::jsonb"
            ))
            .await,
        1
    );

    // 40 KiB now, then 40 KiB more: over 64 KiB once merged, nothing written.
    let big = "x".repeat(40 * 1024);
    c.update_custom_settings(merge(obj(vec![("big1", s(&big))])))
        .await
        .unwrap();
    let err = c
        .update_custom_settings(merge(obj(vec![("big2", s(&big))])))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["settings"]);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}' \
                 AND custom_settings ? 'big1' AND NOT custom_settings ? 'big2'"
            ))
            .await,
        1
    );

    // Missing settings.
    let err = c
        .update_custom_settings(authed(pb::UpdateCustomSettingsRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["settings"]);

    // Not an admin; another tenant.
    let err = c
        .update_custom_settings(authed(
            pb::UpdateCustomSettingsRequest {
                tenant_id: String::new(),
                settings: Some(obj(vec![("c", s("3"))])),
            },
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .update_custom_settings(authed(
            pb::UpdateCustomSettingsRequest {
                tenant_id: Uuid::new_v4().to_string(),
                settings: Some(obj(vec![("c", s("3"))])),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_defaults_writes_the_eleven_keys_once() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "education", "active").await;
    let mut c = client(&suite.settings).await;
    let svc = service_token();
    // A key set before provisioning is kept.
    c.update_custom_settings(authed(
        pb::UpdateCustomSettingsRequest {
            tenant_id: String::new(),
            settings: Some(obj(vec![(
                "weekly_reports",
                Value {
                    kind: Some(Kind::BoolValue(false)),
                },
            )])),
        },
        &member_token(tenant, OrgRole::Admin),
    ))
    .await
    .unwrap();
    // ... but then the row exists with the column defaults for security and compliance.
    exec(
        &suite.db,
        &format!(
            "UPDATE tenant_settings SET security = '{{}}', compliance = '{{}}', \
             default_theme = 'space' WHERE organization_id = '{tenant}'"
        ),
    )
    .await;

    let request = || {
        authed(
            pb::InitializeDefaultsRequest {
                tenant_id: tenant.to_string(),
            },
            &svc,
        )
    };
    let first = c.initialize_defaults(request()).await.unwrap().into_inner();
    assert_eq!(first.keys_written.len(), 9);
    assert_eq!(first.keys_kept, ["weekly_reports", "default_theme"]);
    let second = c.initialize_defaults(request()).await.unwrap().into_inner();
    assert!(second.keys_written.is_empty());
    assert_eq!(second.keys_kept.len(), 11);
    assert_eq!(second.version, first.version, "nothing changed");
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}' \
                 AND default_theme = 'space' \
                 AND NOT (custom_settings ->> 'weekly_reports')::boolean \
                 AND (custom_settings ->> 'email_notifications')::boolean \
                 AND custom_settings ->> 'default_language' = 'en-US' \
                 AND (security ->> 'max_login_attempts')::int = 5 \
                 AND (compliance ->> 'require_parental_consent')::boolean"
            ))
            .await,
        1
    );

    // A tenant without a settings row gets one.
    let fresh = create_tenant(&suite.db, "free", "active").await;
    let r = c
        .initialize_defaults(authed(
            pb::InitializeDefaultsRequest {
                tenant_id: fresh.to_string(),
            },
            &svc,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.keys_written.len(), 11);

    // Errors.
    let err = c
        .initialize_defaults(authed(pb::InitializeDefaultsRequest::default(), &svc))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tenant_id"]);
    let err = c
        .initialize_defaults(authed(
            pb::InitializeDefaultsRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &svc,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .initialize_defaults(authed(
            pb::InitializeDefaultsRequest {
                tenant_id: tenant.to_string(),
            },
            &member_token(tenant, OrgRole::Admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_report_current_maximum_and_remaining() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "basic", "active").await;
    exec(
        &suite.db,
        &format!(
            "UPDATE organizations SET max_users = 50, current_users = 60, max_classes = 20, \
             current_classes = 5, max_storage_gb = 10, current_storage_gb = 2.5 \
             WHERE id = '{tenant}'"
        ),
    )
    .await;
    let mut c = client(&suite.settings).await;
    let r = c
        .get_limits(authed(
            pb::GetLimitsRequest::default(),
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.metrics.len(), 5);
    let users = &r.metrics[0];
    assert_eq!(
        (users.current, users.maximum, users.remaining),
        (60.0, 50.0, 0.0)
    );
    assert!((users.percentage - 120.0).abs() < 1e-9);
    let classes = &r.metrics[1];
    assert_eq!(classes.remaining, 15.0);
    assert_eq!(r.metrics[2].remaining, 7.5);
    assert_eq!(r.limits.unwrap().max_users, 50);
    assert_eq!(r.usage.unwrap().current_users, 60);

    let sa = c
        .get_limits(authed(
            pb::GetLimitsRequest {
                tenant_id: tenant.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sa.tenant_id, tenant.to_string());
    let err = c
        .get_limits(authed(
            pb::GetLimitsRequest {
                tenant_id: "not-a-uuid".into(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["tenant_id"]);
    let err = c
        .get_limits(authed(
            pb::GetLimitsRequest {
                tenant_id: tenant.to_string(),
            },
            &roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_of_suspended_or_cancelled_tenants_are_refused() {
    let suite = suite().await;
    let suspended = create_tenant(&suite.db, "professional", "suspended").await;
    let cancelled = create_tenant(&suite.db, "professional", "cancelled").await;
    let mut c = client(&suite.settings).await;
    for tenant in [suspended, cancelled] {
        let member = member_token(tenant, OrgRole::Admin);
        let err = c
            .get_settings(authed(pb::GetSettingsRequest::default(), &member))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let err = c
            .get_features(authed(pb::GetFeaturesRequest::default(), &member))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let err = c
            .get_limits(authed(pb::GetLimitsRequest::default(), &member))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        // The hot path still answers, reporting the status, with every feature off.
        let check = c
            .check_features(authed(pb::CheckFeaturesRequest::default(), &member))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(check.status, 1);
        assert!(check.features.iter().all(|f| !f.enabled));
        // A super admin still reads.
        c.get_settings(authed(
            pb::GetSettingsRequest {
                tenant_id: tenant.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_writes_record_one_audit_event_each() {
    let suite = suite().await;
    let db = &suite.db;
    let tenant = create_tenant(db, "professional", "active").await;
    let target = tenant.to_string();
    let mut c = client(&suite.settings).await;
    let (admin_id, admin) = member_as(tenant, OrgRole::Admin);

    // UpdateSettings: one event naming the fields written.
    let update = |locale: &str| {
        authed(
            pb::UpdateSettingsRequest {
                tenant_id: String::new(),
                settings: Some(pb::TenantSettings {
                    locale: locale.into(),
                    security: Some(pb::SecuritySettings {
                        session_timeout_minutes: 30,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["locale", "security.session_timeout_minutes"]),
            },
            &admin,
        )
    };
    c.update_settings(update("fr-FR")).await.unwrap();
    let err = c.update_settings(update("not a locale")).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["settings.locale"]);
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events,
        "UpdateSettings",
        &admin_id,
        "admin",
        ("settings", &target),
    );
    assert_eq!(
        e.details(),
        serde_json::json!({ "changed_fields": ["locale", "security.session_timeout_minutes"] })
    );

    // UpdateCustomSettings: key names only, never the values.
    let merge = |settings: Option<Struct>| {
        authed(
            pb::UpdateCustomSettingsRequest {
                tenant_id: String::new(),
                settings,
            },
            &admin,
        )
    };
    c.update_custom_settings(merge(Some(obj(vec![
        ("motto", s("learn-by-doing")),
        ("old_key", null()),
    ]))))
    .await
    .unwrap();
    let err = c.update_custom_settings(merge(None)).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["settings"]);
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events[1..],
        "UpdateCustomSettings",
        &admin_id,
        "admin",
        ("settings", &target),
    );
    assert_eq!(
        e.details(),
        serde_json::json!({
            "changed_fields": ["custom_settings"],
            "keys_set": ["motto"],
            "keys_removed": ["old_key"],
        })
    );
    assert!(!e.metadata.contains("learn-by-doing"), "{}", e.metadata);

    // InitializeDefaults by a service for an operator: recorded once; the retry that keeps
    // every key writes nothing and records nothing.
    let init = || {
        let mut r = authed(
            pb::InitializeDefaultsRequest {
                tenant_id: target.clone(),
            },
            &service_token(),
        );
        r.metadata_mut()
            .insert("x-tenantry-actor", "operator-7".parse().unwrap());
        r
    };
    let first = c.initialize_defaults(init()).await.unwrap().into_inner();
    assert!(!first.keys_written.is_empty());
    c.initialize_defaults(init()).await.unwrap();
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events[2..],
        "InitializeDefaults",
        "operator-7",
        "service",
        ("settings", &target),
    );
    assert_eq!(
        e.details()["keys_written"].as_array().unwrap().len(),
        first.keys_written.len()
    );
}
