//! Integrations: config for admins, names for members, secrets write-only. A capturing log
//! writer (installed before the services start, at TRACE) proves no secret reaches a log line,
//! and every response's Debug is scanned too.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{assert_one_event, audit_events, bad_fields, client, create_tenant, member_as, suite};
use prost_types::{Struct, Value, value::Kind};
use secrecy::ExposeSecret as _;
use tenant_settings::crypto::{Sealer, SecretContext};
use tenantry_auth::OrgRole;
use tenantry_proto::settings::v1 as pb;
use tenantry_testing::{authed, member_token, super_admin_token};
use tonic::Code;
use uuid::Uuid;

const SECRET: &str = "sk-live-7d1c0ffee-do-not-leak";
const SECRET2: &str = "whsec-second-9f8e7d";

#[derive(diesel::QueryableByName)]
struct RawSecrets {
    #[diesel(sql_type = diesel::sql_types::Text)]
    secrets: String,
}

/// The `secrets` column of an integration as stored, read as the superuser.
async fn raw_secrets(suite: &tenantry_testing::Suite, tenant: Uuid, name: &str) -> String {
    use diesel_async::RunQueryDsl as _;
    let mut conn = suite.db.admin_conn().await;
    diesel::sql_query(
        "SELECT secrets::text AS secrets FROM integrations \
         WHERE organization_id = $1::text::uuid AND name = $2",
    )
    .bind::<diesel::sql_types::Text, _>(tenant.to_string())
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result::<RawSecrets>(&mut conn)
    .await
    .unwrap()
    .secrets
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a global subscriber that keeps every log line in memory.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(Arc::clone(&buf));
        // Everything at TRACE, except tokio_postgres, whose DEBUG lines print every bind
        // parameter (a logging concern of the whole suite, reported to the lead).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,tokio_postgres=info",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buf
    })
    .clone()
}

fn config(pairs: &[(&str, &str)]) -> Struct {
    Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    Value {
                        kind: Some(Kind::StringValue((*v).to_owned())),
                    },
                )
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn integrations_keep_secrets_write_only() {
    let logs = captured_logs();
    let suite = suite().await;
    let tenant = create_tenant(&suite.db, "enterprise", "active").await;
    let mut c = client(&suite.settings).await;
    let admin = member_token(tenant, OrgRole::Admin);
    let member = member_token(tenant, OrgRole::Member);
    let mut responses: Vec<String> = Vec::new();

    let created = c
        .update_integration(authed(
            pb::UpdateIntegrationRequest {
                tenant_id: String::new(),
                name: "google_classroom".into(),
                enabled: Some(true),
                config: Some(config(&[("domain", "school.example.org")])),
                secrets: [
                    ("client_secret".to_owned(), SECRET.to_owned()),
                    ("webhook_key".to_owned(), SECRET2.to_owned()),
                ]
                .into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{created:?}"));
    let i = created.integration.unwrap();
    assert!(i.enabled);
    assert_eq!(
        i.secret_fields
            .iter()
            .map(|s| (s.name.as_str(), s.is_set))
            .collect::<Vec<_>>(),
        [("client_secret", true), ("webhook_key", true)]
    );
    assert!(i.config.unwrap().fields.contains_key("domain"));
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM integrations WHERE organization_id = '{tenant}' \
                 AND name = 'google_classroom' AND enabled \
                 AND config ->> 'domain' = 'school.example.org'"
            ))
            .await,
        1
    );
    // At rest the secrets are sealed (AES-256-GCM): the raw jsonb, read as the superuser,
    // holds neither plaintext, and each value opens with the key for its own context only.
    let raw = raw_secrets(&suite, tenant, "google_classroom").await;
    assert!(!raw.contains(SECRET) && !raw.contains(SECRET2), "{raw}");
    let stored: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&raw).unwrap();
    let sealer = Sealer::new(&tenantry_testing::secrets_key());
    for (name, plain) in [("client_secret", SECRET), ("webhook_key", SECRET2)] {
        let sealed = stored[name].as_str().unwrap();
        assert!(sealed.starts_with("v1:"), "{sealed}");
        let context = SecretContext {
            tenant,
            integration: "google_classroom",
            name,
        };
        assert_eq!(
            sealer.open(&context, sealed).unwrap().expose_secret(),
            plain
        );
        let elsewhere = SecretContext {
            tenant: Uuid::new_v4(),
            ..context
        };
        assert!(sealer.open(&elsewhere, sealed).is_err());
    }
    // A value stored in the clear (before encryption at rest) is sealed by the next update.
    common::exec(
        &suite.db,
        &format!(
            "UPDATE integrations SET secrets = secrets || '{{\"legacy\": \"plain-legacy-value\"}}' \
             WHERE organization_id = '{tenant}' AND name = 'google_classroom'"
        ),
    )
    .await;

    // Update: keep config, remove one secret (empty value), keep the other, disable.
    let updated = c
        .update_integration(authed(
            pb::UpdateIntegrationRequest {
                tenant_id: String::new(),
                name: "google_classroom".into(),
                enabled: Some(false),
                config: None,
                secrets: [("webhook_key".to_owned(), String::new())].into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{updated:?}"));
    let i = updated.integration.unwrap();
    assert!(!i.enabled);
    assert_eq!(i.secret_fields.len(), 2);
    let raw = raw_secrets(&suite, tenant, "google_classroom").await;
    assert!(
        !raw.contains("plain-legacy-value") && !raw.contains(SECRET),
        "{raw}"
    );
    common::exec(
        &suite.db,
        &format!(
            "UPDATE integrations SET secrets = secrets - 'legacy' \
             WHERE organization_id = '{tenant}' AND name = 'google_classroom'"
        ),
    )
    .await;
    assert!(i.config.unwrap().fields.contains_key("domain"));

    // Admins see config and secret names; members see names and enabled only.
    let as_admin = c
        .get_integrations(authed(pb::GetIntegrationsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{as_admin:?}"));
    assert_eq!(as_admin.integrations.len(), 1);
    assert_eq!(
        as_admin.integrations[0].secret_fields[0].name,
        "client_secret"
    );
    let as_member = c
        .get_integrations(authed(pb::GetIntegrationsRequest::default(), &member))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{as_member:?}"));
    assert_eq!(as_member.integrations[0].name, "google_classroom");
    assert!(as_member.integrations[0].config.is_none());
    assert!(as_member.integrations[0].secret_fields.is_empty());

    // Bad input: secret-looking config keys, bad names; nothing written, no value echoed.
    let err = c
        .update_integration(authed(
            pb::UpdateIntegrationRequest {
                tenant_id: String::new(),
                name: "Bad Name".into(),
                enabled: None,
                config: Some(config(&[("api_token", SECRET)])),
                secrets: [("Bad Key".to_owned(), SECRET.to_owned())].into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    responses.push(format!("{err:?}"));
    assert_eq!(
        bad_fields(&err),
        ["name", "config.api_token", "secrets[Bad Key]"]
    );
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM integrations")
            .await,
        1
    );

    // Roles and tenants.
    let err = c
        .update_integration(authed(
            pb::UpdateIntegrationRequest {
                name: "x".into(),
                secrets: [("k".to_owned(), SECRET.to_owned())].into(),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap_err();
    responses.push(format!("{err:?}"));
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .get_integrations(authed(
            pb::GetIntegrationsRequest {
                tenant_id: tenant.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .get_integrations(authed(
            pb::GetIntegrationsRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Settings and watch responses never carry integration secrets either.
    let settings = c
        .get_settings(authed(pb::GetSettingsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{settings:?}"));
    let mut watch = c
        .watch_tenant(authed(pb::WatchTenantRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    responses.push(format!("{:?}", watch.message().await.unwrap()));

    // Remove, then remove again (NOT_FOUND).
    let remove = || {
        authed(
            pb::RemoveIntegrationRequest {
                tenant_id: String::new(),
                name: "google_classroom".into(),
            },
            &admin,
        )
    };
    c.remove_integration(remove()).await.unwrap();
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM integrations")
            .await,
        0
    );
    let err = c.remove_integration(remove()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .remove_integration(authed(
            pb::RemoveIntegrationRequest {
                tenant_id: String::new(),
                name: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["name"]);

    for r in &responses {
        assert!(!r.contains(SECRET) && !r.contains(SECRET2), "leak in {r}");
    }
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.len() > 1000, "the capture saw the service's logs");
    assert!(logs.contains("tenant_settings") || logs.contains("rpc"));
    assert!(
        !logs.contains(SECRET) && !logs.contains(SECRET2),
        "a secret was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn integration_writes_are_audited_without_secrets() {
    // The capturing subscriber is process-wide and must be installed before any suite starts
    // (whichever test of this file runs first installs it).
    let _logs = captured_logs();
    let suite = suite().await;
    let db = &suite.db;
    let tenant = create_tenant(db, "enterprise", "active").await;
    let mut c = client(&suite.settings).await;
    let (admin_id, admin) = member_as(tenant, OrgRole::Admin);
    let update = |config_pairs: &[(&str, &str)], secrets: &[(&str, &str)]| {
        authed(
            pb::UpdateIntegrationRequest {
                tenant_id: String::new(),
                name: "zoom".into(),
                enabled: Some(true),
                config: Some(config(config_pairs)),
                secrets: secrets
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            },
            &admin,
        )
    };

    c.update_integration(update(
        &[("account", "school")],
        &[("api_secret", SECRET), ("webhook_key", SECRET2)],
    ))
    .await
    .unwrap();
    // A secret-looking config key is refused before anything is written.
    let err = c
        .update_integration(update(&[("password", SECRET)], &[]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["config.password"]);
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events,
        "UpdateIntegration",
        &admin_id,
        "admin",
        ("integration", "zoom"),
    );
    assert_eq!(
        e.details(),
        serde_json::json!({
            "created": true,
            "changed_fields": ["enabled", "config", "secrets"],
            "secrets_set": ["api_secret", "webhook_key"],
            "secrets_removed": [],
        })
    );

    // Rotating one secret and clearing the other: the names only.
    c.update_integration(update(
        &[("account", "school")],
        &[
            ("api_secret", "sk-rotated-0000-secret"),
            ("webhook_key", ""),
        ],
    ))
    .await
    .unwrap();
    let events = audit_events(db, tenant).await;
    let e = assert_one_event(
        &events[1..],
        "UpdateIntegration",
        &admin_id,
        "admin",
        ("integration", "zoom"),
    );
    assert_eq!(e.details()["created"], false);
    assert_eq!(
        e.details()["secrets_set"],
        serde_json::json!(["api_secret"])
    );
    assert_eq!(
        e.details()["secrets_removed"],
        serde_json::json!(["webhook_key"])
    );

    // RemoveIntegration: one event; removing it again is NOT_FOUND and records nothing.
    let remove = || {
        authed(
            pb::RemoveIntegrationRequest {
                tenant_id: String::new(),
                name: "zoom".into(),
            },
            &admin,
        )
    };
    c.remove_integration(remove()).await.unwrap();
    let err = c.remove_integration(remove()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let events = audit_events(db, tenant).await;
    assert_one_event(
        &events[2..],
        "RemoveIntegration",
        &admin_id,
        "admin",
        ("integration", "zoom"),
    );

    // No secret value, clear or sealed ("v1:..."), is in any event.
    for e in &events {
        for secret in [SECRET, SECRET2, "sk-rotated-0000-secret", "v1:"] {
            assert!(!e.metadata.contains(secret), "{secret} in {}", e.metadata);
        }
    }
}
