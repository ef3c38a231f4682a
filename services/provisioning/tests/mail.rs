//! The welcome e-mail over real SMTP (aiosmtpd): delivered once, with a set-password link and
//! never the password; delivered after the SMTP server comes back. Needs tenant-admin
//! (CreateTenantAdmin, MarkTenantVerified) and tenant-settings (InitializeDefaults, ApplyTier).

#![expect(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use support::*;
use tenantry_proto::common::v1 as common_pb;
use uuid::Uuid;

fn smtp_on(port: u16) -> provisioning::SmtpConfig {
    provisioning::SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: provisioning::SmtpTls::None,
        username: None,
        password: None,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn welcome_mail_arrives_once_over_smtp_with_a_link_and_no_password() {
    let port = free_port();
    let sink_dir = temp_dir();
    let _sink = SmtpSink::start(port, &sink_dir);
    let env = start(|w| {
        w.smtp = Some(smtp_on(port));
        w.public_url = "https://console.example.test".into();
    })
    .await;
    let tenant = create_tenant(&env, "smtp-school", Some("office@smtp.test"), "education").await;
    let mut client = env.client().await;
    let r = client
        .provision_tenant(authed(
            tenantry_proto::provisioning::v1::ProvisionTenantRequest {
                admin_email: "Head@Smtp.Test".into(),
                ..provision_request(tenant, &Uuid::new_v4().to_string())
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        common_pb::ProvisioningStatus::Success as i32,
        "{r:?}"
    );
    let password = r.generated_admin_password.clone().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            emails(&sink_dir).len() == 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = emails(&sink_dir);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.contains("head@smtp.test"), "{mail}");
    assert!(mail.contains("https://console.example.test/set-password?token="));
    assert!(mail.contains(&format!(
        "Message-ID: <welcome.{}@tenantry>",
        r.admin_user_id
    )));
    assert!(!mail.contains(&password));
    assert!(
        emails(&env.mail_dir()).is_empty(),
        "no .eml files when SMTP is configured"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            count(
                &env,
                "SELECT count(*) AS n FROM email_outbox WHERE status = 'sent' AND attempts = 1",
            )
            .await
                == 1
        })
        .await
    );
    // The secret sweep covers the database too.
    for (table, rows) in dump(&env, None).await {
        assert!(
            rows.iter().all(|row| !row.contains(&password)),
            "password in {table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_queued_while_smtp_is_down_is_delivered_after_it_returns() {
    let port = free_port();
    let env = start(|w| w.smtp = Some(smtp_on(port))).await;
    let mut client = env.client().await;
    let mut admins = Vec::new();
    for i in 0..3 {
        let tenant = create_tenant(
            &env,
            &format!("down-{i}"),
            Some(&format!("a@down{i}.test")),
            "free",
        )
        .await;
        let r = client
            .provision_tenant(authed(
                provision_request(tenant, &Uuid::new_v4().to_string()),
                &super_admin_token(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            common_pb::ProvisioningStatus::Success as i32,
            "{r:?}"
        );
        admins.push(r.admin_user_id);
    }
    // Retried with backoff while the server is down.
    assert!(
        eventually(Duration::from_secs(20), || async {
            count(&env, "SELECT count(*) AS n FROM email_outbox WHERE status = 'pending' AND attempts >= 2 AND last_error IS NOT NULL").await == 3
        })
        .await
    );
    let sink_dir = temp_dir();
    let _sink = SmtpSink::start(port, &sink_dir);
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(
                &env,
                "SELECT count(*) AS n FROM email_outbox WHERE status = 'sent'",
            )
            .await
                == 3
        })
        .await
    );
    let mails = emails(&sink_dir);
    assert_eq!(mails.len(), 3);
    for admin in admins {
        assert_eq!(
            mails
                .iter()
                .filter(|m| m.contains(&format!("<welcome.{admin}@tenantry>")))
                .count(),
            1
        );
    }
    // Only the newest token of each admin is live.
    assert_eq!(
        count(
            &env,
            "SELECT count(*) AS n FROM password_tokens WHERE purpose = 'welcome'"
        )
        .await,
        3
    );
}
