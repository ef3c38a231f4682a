//! Migration 000003: custom CSS and default theme as columns, custom domains unique across
//! tenants in the database too, and organization changes (tier, status, limits) bumping the
//! configuration version a WatchTenant stream reports.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{bad_fields, client, create_tenant, exec, suite};
use diesel_async::{AsyncConnection as _, RunQueryDsl as _};
use prost_types::FieldMask;
use tenantry_auth::OrgRole;
use tenantry_proto::common::v1::{SubscriptionTier, TenantStatus};
use tenantry_proto::settings::v1 as pb;
use tenantry_testing::{authed, member_token, service_token};
use tonic::Code;

fn branding(
    token: &str,
    branding: pb::Branding,
    paths: &[&str],
) -> tonic::Request<pb::UpdateSettingsRequest> {
    authed(
        pb::UpdateSettingsRequest {
            tenant_id: String::new(),
            settings: Some(pb::TenantSettings {
                branding: Some(branding),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        },
        token,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_css_and_default_theme_are_stored_and_validated() {
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);
    let css = ".header { background: #1A2B3C; }\n.logo > img { height: 40px; }";

    let got = c
        .update_settings(branding(
            &admin,
            pb::Branding {
                custom_css: css.into(),
                default_theme: " midnight ".into(),
                ..Default::default()
            },
            &["branding.custom_css", "branding.default_theme"],
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    let b = got.branding.unwrap();
    assert_eq!(
        (b.custom_css.as_str(), b.default_theme.as_str()),
        (css, "midnight")
    );
    let read = c
        .get_settings(authed(
            pb::GetSettingsRequest::default(),
            &member_token(tenant, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
        .branding
        .unwrap();
    assert_eq!(
        (read.custom_css.as_str(), read.default_theme.as_str()),
        (css, "midnight")
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}' \
                 AND custom_css LIKE '.header%' AND default_theme = 'midnight'"
            ))
            .await,
        1
    );

    // Refused, nothing written: a closing tag, more than 64 KiB, a theme beyond 50 characters.
    let err = c
        .update_settings(branding(
            &admin,
            pb::Branding {
                custom_css: "a{}</style><script>alert(1)</script>".into(),
                default_theme: "x".repeat(51),
                ..Default::default()
            },
            &["branding"],
        ))
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        [
            "settings.branding.custom_css",
            "settings.branding.default_theme"
        ]
    );
    let err = c
        .update_settings(branding(
            &admin,
            pb::Branding {
                custom_css: "a{}".repeat(22_000),
                ..Default::default()
            },
            &["branding.custom_css"],
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["settings.branding.custom_css"]);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}' \
                 AND custom_css LIKE '.header%'"
            ))
            .await,
        1
    );
    // The columns' own checks back the service's.
    let mut conn = suite.db.admin_conn().await;
    let too_long = diesel::sql_query(format!(
        "UPDATE tenant_settings SET custom_css = repeat('a', 65537) \
         WHERE organization_id = '{tenant}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(
        too_long
            .to_string()
            .contains("tenant_settings_custom_css_length")
    );

    // Empty values clear: no CSS, the default theme.
    let cleared = c
        .update_settings(branding(
            &admin,
            pb::Branding::default(),
            &["branding.custom_css", "branding.default_theme"],
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap()
        .branding
        .unwrap();
    assert_eq!(
        (cleared.custom_css.as_str(), cleared.default_theme.as_str()),
        ("", "roblox")
    );

    // Branding needs the custom_branding feature (not on the free tier).
    let free = create_tenant(&suite.db, "free", "active").await;
    let err = c
        .update_settings(branding(
            &member_token(free, OrgRole::Admin),
            pb::Branding {
                custom_css: "a{}".into(),
                ..Default::default()
            },
            &["branding.custom_css"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_domains_are_unique_in_the_database_too() {
    let suite = suite().await;
    let a = create_tenant(&suite.db, "enterprise", "active").await;
    let b = create_tenant(&suite.db, "enterprise", "active").await;
    let mut c = client(&suite.settings).await;
    let set = |token: &str, d: &str| {
        branding(
            token,
            pb::Branding {
                custom_domain: d.into(),
                ..Default::default()
            },
            &["branding.custom_domain"],
        )
    };

    // The service's own check.
    c.update_settings(set(&member_token(a, OrgRole::Admin), "learn.example.org"))
        .await
        .unwrap();
    let err = c
        .update_settings(set(&member_token(b, OrgRole::Admin), "LEARN.example.org"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("branding.custom_domain"), "{err:?}");

    // A row written around the service (mixed case, so the service's equality check misses
    // it): the unique index on lower(custom_domain) refuses, mapped to the same answer.
    exec(
        &suite.db,
        &format!(
            "UPDATE tenant_settings SET custom_domain = 'Other.Example.ORG' \
             WHERE organization_id = '{a}'"
        ),
    )
    .await;
    let err = c
        .update_settings(set(&member_token(b, OrgRole::Admin), "other.example.org"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("branding.custom_domain"), "{err:?}");
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{b}' \
                 AND custom_domain IS NOT NULL"
            ))
            .await,
        0,
        "nothing written"
    );
    // The same domain for the same tenant is no collision; a free domain is fine.
    c.update_settings(set(&member_token(b, OrgRole::Admin), "b.example.org"))
        .await
        .unwrap();
}

/// Runs `sql` as the services' role in platform scope, like tenant-admin does.
async fn as_platform(db: &tenantry_testing::TestDb, sql: &str) {
    let mut conn = db.app_conn().await;
    let sql = sql.to_owned();
    conn.transaction(async |conn| -> diesel::QueryResult<()> {
        diesel::sql_query("SELECT set_config('tenantry.platform', 'on', true)")
            .execute(conn)
            .await?;
        let n = diesel::sql_query(&sql).execute(conn).await?;
        assert_eq!(n, 1, "{sql}");
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tier_status_and_limit_changes_increase_the_watched_version() {
    let suite = suite().await;
    // No settings row yet: the version reads 0, and the first change creates the row.
    let tenant = create_tenant(&suite.db, "professional", "active").await;
    let mut c = client(&suite.settings).await;
    let mut stream = c
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
    assert_eq!(first.version, 0);
    let next = async |stream: &mut tonic::Streaming<pb::WatchTenantResponse>| {
        tokio::time::timeout(Duration::from_secs(2), stream.message())
            .await
            .expect("a change message")
            .unwrap()
            .unwrap()
    };

    as_platform(
        &suite.db,
        &format!("UPDATE organizations SET subscription_tier = 'enterprise' WHERE id = '{tenant}'"),
    )
    .await;
    let tier = next(&mut stream).await;
    assert_eq!(tier.subscription_tier(), SubscriptionTier::Enterprise);
    assert!(
        tier.version > first.version,
        "{} > {}",
        tier.version,
        first.version
    );

    as_platform(
        &suite.db,
        &format!("UPDATE organizations SET max_users = max_users + 10 WHERE id = '{tenant}'"),
    )
    .await;
    let limits = next(&mut stream).await;
    assert!(limits.version > tier.version);

    as_platform(
        &suite.db,
        &format!("UPDATE organizations SET status = 'suspended' WHERE id = '{tenant}'"),
    )
    .await;
    let suspended = next(&mut stream).await;
    assert_eq!(suspended.status(), TenantStatus::Suspended);
    assert!(suspended.version > limits.version);

    // Columns outside the trigger's list leave the version alone.
    let before = suite
        .db
        .count(&format!(
            "SELECT version AS n FROM tenant_settings WHERE organization_id = '{tenant}'"
        ))
        .await;
    as_platform(
        &suite.db,
        &format!("UPDATE organizations SET website = 'https://x.example' WHERE id = '{tenant}'"),
    )
    .await;
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT version AS n FROM tenant_settings WHERE organization_id = '{tenant}'"
            ))
            .await,
        before
    );
    assert_eq!(before, suspended.version);
}
