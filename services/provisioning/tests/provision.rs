//! ProvisionTenant, GetProvisioningJob and ListProvisioningJobs through gRPC.
//!
//! Tests marked "needs tenant-admin + tenant-settings" call CreateTenantAdmin,
//! MarkTenantVerified, InitializeDefaults and ApplyTier for real; they fail while those RPCs
//! answer UNIMPLEMENTED.

#![expect(clippy::unwrap_used, reason = "tests")]

mod support;

use std::time::Duration;

use support::*;
use tenantry_auth::OrgRole;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as pb;
use tonic::Code;
use uuid::Uuid;

fn rid() -> String {
    Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_end_to_end_creates_admin_settings_features_and_one_welcome_mail() {
    // needs tenant-admin + tenant-settings
    let env = start(|_| {}).await;
    let tenant = create_tenant(
        &env,
        "acme-school",
        Some("office@acme.test"),
        "professional",
    )
    .await;
    let mut client = env.client().await;
    let request_id = rid();
    let r = client
        .provision_tenant(authed(
            provision_request(tenant, &request_id),
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
    assert_eq!(
        r.steps_completed,
        [
            "admin_user_created",
            "default_settings_initialized",
            "default_features_configured",
            "organization_verified",
            "welcome_email_sent"
        ]
    );
    assert!(r.errors.is_empty());
    let password = r.generated_admin_password.clone().unwrap();
    assert!(password.len() >= 20);
    let admin = Uuid::parse_str(&r.admin_user_id).unwrap();
    assert_eq!(
        count(&env, &format!(
            "SELECT count(*) AS n FROM users WHERE id = '{admin}' AND organization_id = '{tenant}' \
             AND username = 'admin_acme-school' AND lower(email) = 'office@acme.test' AND org_role = 'admin'"
        ))
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{tenant}' AND is_verified \
             AND status IN ('trial', 'active')"
            )
        )
        .await,
        1
    );
    assert!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM tenant_settings WHERE organization_id = '{tenant}'"
            )
        )
        .await
            == 1
    );
    assert!(count(&env, &format!("SELECT count(*) AS n FROM tenant_features WHERE organization_id = '{tenant}' AND enabled")).await > 0);
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM provisioning_steps WHERE job_id = '{}' AND state = 'done'", r.job_id)).await,
        5
    );

    // The welcome e-mail: once, with a set-password link, never the password.
    let mail_dir = env.mail_dir();
    assert!(
        eventually(Duration::from_secs(20), || async {
            emails(&mail_dir).len() == 1
        })
        .await
    );
    let mail = &emails(&mail_dir)[0];
    assert!(mail.contains("set-password?token="), "{mail}");
    assert!(mail.contains(&format!("welcome.{admin}@tenantry")));
    assert!(!mail.contains(&password));
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM password_tokens WHERE user_id = '{admin}' \
            AND expires_at > now() + interval '71 hours' AND expires_at < now() + interval '73 hours'")).await,
        1
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            count(
                &env,
                "SELECT count(*) AS n FROM email_outbox WHERE status = 'sent'",
            )
            .await
                == 1
        })
        .await
    );

    // The secret sweep: the password is in no table and no e-mail.
    let all = dump(&env, None).await;
    for (table, rows) in &all {
        for row in rows {
            assert!(!row.contains(&password), "the password leaked into {table}");
        }
    }

    // A retry: the same job and outcome, without the password.
    let again = client
        .provision_tenant(authed(
            provision_request(tenant, &request_id),
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.job_id, r.job_id);
    assert_eq!(again.status, r.status);
    assert_eq!(again.admin_user_id, r.admin_user_id);
    assert!(again.generated_admin_password.is_none());
    // One audit event for the call and its retry, by the super admin who called.
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{tenant}' \
                 AND action = 'tenantry.provisioning.v1.ProvisioningService/ProvisionTenant' \
                 AND actor_id = 'test-operator' AND actor_role = 'super_admin' \
                 AND target_type = 'tenant' AND target_id = '{tenant}' \
                 AND request_id = '{request_id}' AND metadata ->> 'job_id' = '{}' \
                 AND metadata ->> 'status' = 'success'",
                r.job_id
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{tenant}' \
                 AND action LIKE '%/ProvisionTenant'"
            )
        )
        .await,
        1
    );

    // Provisioned: a new request id is answered ALREADY_PROVISIONED and changes nothing.
    let third = client
        .provision_tenant(authed(
            provision_request(tenant, &rid()),
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        third.status,
        common_pb::ProvisioningStatus::AlreadyProvisioned as i32
    );
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) AS n FROM users WHERE organization_id = '{tenant}'")
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_already_verified_tenant_is_already_provisioned() {
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "old-school", Some("a@old.test"), "basic").await;
    exec(
        &env,
        &format!(
            "UPDATE organizations SET is_verified = true, status = 'active' WHERE id = '{tenant}'"
        ),
    )
    .await;
    let mut client = env.client().await;
    let r = client
        .provision_tenant(authed(provision_request(tenant, &rid()), &service_token()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        common_pb::ProvisioningStatus::AlreadyProvisioned as i32
    );
    assert!(r.generated_admin_password.is_none());
    assert!(r.steps_completed.is_empty());
    assert_eq!(count(&env, "SELECT count(*) AS n FROM users").await, 0);
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM email_outbox").await,
        0
    );
    // The job is recorded and can be read back.
    let job = client
        .get_provisioning_job(authed(
            pb::GetProvisioningJobRequest {
                job_id: r.job_id.clone(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.tenant_id, tenant.to_string());
    assert_eq!(job.state, pb::ProvisioningJobState::Succeeded as i32);
    assert_eq!(
        job.provisioning_status,
        common_pb::ProvisioningStatus::AlreadyProvisioned as i32
    );
    assert_eq!(job.requested_by_id, "test-service");
    assert!(job.finished_at.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_rejects_bad_input_naming_the_fields_and_writes_nothing() {
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "bad-input", None, "free").await;
    let mut client = env.client().await;
    let cases: Vec<(pb::ProvisionTenantRequest, &str)> = vec![
        (
            pb::ProvisionTenantRequest {
                request_id: rid(),
                ..Default::default()
            },
            "tenant_id",
        ),
        (
            pb::ProvisionTenantRequest {
                tenant_id: "nope".into(),
                request_id: rid(),
                ..Default::default()
            },
            "tenant_id",
        ),
        (provision_request(tenant, ""), "request_id"),
        (provision_request(tenant, &"x".repeat(129)), "request_id"),
        (
            pb::ProvisionTenantRequest {
                admin_email: "not-an-email".into(),
                ..provision_request(tenant, &rid())
            },
            "admin_email",
        ),
        (
            pb::ProvisionTenantRequest {
                admin_username: "ab".into(),
                ..provision_request(tenant, &rid())
            },
            "admin_username",
        ),
        (
            pb::ProvisionTenantRequest {
                admin_password: Some("short".into()),
                ..provision_request(tenant, &rid())
            },
            "admin_password",
        ),
        // Neither the request nor the tenant has an e-mail.
        (provision_request(tenant, &rid()), "admin_email"),
    ];
    for (req, field) in cases {
        let e = client
            .provision_tenant(authed(req, &super_admin_token()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(bad_fields(&e).contains(&field.to_owned()), "{field}: {e:?}");
    }
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM provisioning_jobs").await,
        0
    );
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM provisioning_steps").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_checks_role_and_tenant() {
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "roles", Some("a@roles.test"), "free").await;
    let mut client = env.client().await;
    for token in [member_token(tenant, OrgRole::Admin), roleless_token()] {
        let e = client
            .provision_tenant(authed(provision_request(tenant, &rid()), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    let e = client
        .provision_tenant(authed(
            provision_request(Uuid::new_v4(), &rid()),
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    exec(&env, &format!("UPDATE organizations SET status = 'cancelled', deleted_at = now() WHERE id = '{tenant}'")).await;
    let e = client
        .provision_tenant(authed(
            provision_request(tenant, &rid()),
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM provisioning_jobs").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_request_id_with_another_payload_is_invalid_argument() {
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "payload", Some("a@payload.test"), "free").await;
    exec(
        &env,
        &format!(
            "UPDATE organizations SET is_verified = true, status = 'active' WHERE id = '{tenant}'"
        ),
    )
    .await;
    let mut client = env.client().await;
    let request_id = rid();
    client
        .provision_tenant(authed(
            provision_request(tenant, &request_id),
            &super_admin_token(),
        ))
        .await
        .unwrap();
    let other = pb::ProvisionTenantRequest {
        send_welcome_email: Some(false),
        ..provision_request(tenant, &request_id)
    };
    let e = client
        .provision_tenant(authed(other, &super_admin_token()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&e), ["request_id"]);
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM provisioning_jobs").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_calls_with_one_request_id_make_one_job() {
    // The job/answer part holds on its own; one admin, one e-mail and one password need
    // tenant-admin + tenant-settings.
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "twenty", Some("admin@twenty.test"), "basic").await;
    let request_id = rid();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let channel = env.suite.provisioning.channel().await;
        let req = provision_request(tenant, &request_id);
        calls.push(tokio::spawn(async move {
            let mut c = tenantry_proto::provisioning::v1::provisioning_service_client::ProvisioningServiceClient::new(channel);
            c.provision_tenant(authed(req, &super_admin_token())).await
        }));
    }
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap().unwrap().into_inner());
    }
    let job = answers[0].job_id.clone();
    assert!(answers.iter().all(|a| a.job_id == job));
    assert!(answers.iter().all(|a| a.status == answers[0].status));
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM provisioning_jobs").await,
        1
    );
    assert!(
        answers
            .iter()
            .filter(|a| a.generated_admin_password.is_some())
            .count()
            <= 1
    );

    assert_eq!(
        answers[0].status,
        common_pb::ProvisioningStatus::Success as i32,
        "{:?}",
        answers[0]
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.generated_admin_password.is_some())
            .count(),
        1
    );
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) AS n FROM users WHERE organization_id = '{tenant}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM email_outbox").await,
        1
    );
    let mail_dir = env.mail_dir();
    assert!(
        eventually(Duration::from_secs(20), || async {
            emails(&mail_dir).len() == 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emails(&mail_dir).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_with_an_expired_lease_is_taken_over_and_completed() {
    // Taking over holds on its own; "success" needs tenant-admin + tenant-settings.
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "orphan", Some("admin@orphan.test"), "free").await;
    let job = Uuid::new_v4();
    exec(
        &env,
        &format!(
            "INSERT INTO provisioning_jobs (id, organization_id, request_id, status, params, \
                 lease_owner, lease_expires_at, attempts, started_at, requested_by) \
             VALUES ('{job}', '{tenant}', 'dead-1', 'running', \
                 '{{\"admin_email\": \"admin@orphan.test\", \"admin_username\": \"admin_orphan\", \
                   \"create_admin_user\": true, \"password_given\": false, \"tenant_name\": \"orphan\"}}', \
                 'dead-worker', now() - interval '1 minute', 1, now() - interval '2 minutes', 'test-operator')"
        ),
    )
    .await;
    for (name, state) in [
        ("admin_user_created", "running"),
        ("default_settings_initialized", "pending"),
        ("default_features_configured", "pending"),
        ("organization_verified", "pending"),
        ("welcome_email_sent", "pending"),
    ] {
        exec(
            &env,
            &format!(
                "INSERT INTO provisioning_steps (job_id, organization_id, name, state, attempts) \
                 VALUES ('{job}', '{tenant}', '{name}', '{state}', {})",
                i32::from(state == "running")
            ),
        )
        .await;
    }
    let finished = eventually(Duration::from_secs(30), || async {
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM provisioning_jobs WHERE id = '{job}' \
             AND status NOT IN ('pending', 'running') AND lease_owner IS NULL AND attempts = 2"
            ),
        )
        .await
            == 1
    })
    .await;
    assert!(finished, "the orphaned job was not taken over");
    let mut client = env.client().await;
    let j = client
        .get_provisioning_job(authed(
            pb::GetProvisioningJobRequest {
                job_id: job.to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(j.steps.len(), 5);
    assert_eq!(j.steps[0].name, "admin_user_created");
    assert!(j.steps[0].attempts >= 2);
    assert_eq!(j.state, pb::ProvisioningJobState::Succeeded as i32, "{j:?}");
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) AS n FROM users WHERE organization_id = '{tenant}'")
        )
        .await,
        1
    );
}

/// `step_finished` of the `admin_user_created` step by `owner`: whether it was recorded.
async fn record(
    conn: &mut diesel_async::AsyncPgConnection,
    job: Uuid,
    owner: &str,
    state: &str,
    error: Option<&str>,
) -> bool {
    tenantry_db::models::provisioning::step_finished(
        conn,
        job,
        owner,
        "admin_user_created",
        state,
        error,
    )
    .await
    .unwrap()
}

/// A worker that lost a job's lease cannot record a step's outcome: the new owner's step stays
/// as the new owner left it, and the call reports it (false), writing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_records_a_step_outcome() {
    use tenantry_db::models::provisioning as jobs;
    let env = start(|w| w.poll_interval = Duration::from_secs(3600)).await;
    let tenant = create_tenant(&env, "leased", Some("admin@leased.test"), "free").await;
    let job = Uuid::new_v4();
    exec(
        &env,
        &format!(
            "INSERT INTO provisioning_jobs (id, organization_id, request_id, status, params, \
                 lease_owner, lease_expires_at, attempts, started_at) \
             VALUES ('{job}', '{tenant}', 'lease-1', 'running', '{{}}', \
                 'worker-b', now() + interval '1 hour', 2, now())"
        ),
    )
    .await;
    exec(
        &env,
        &format!(
            "INSERT INTO provisioning_steps (job_id, organization_id, name, state, attempts) \
             VALUES ('{job}', '{tenant}', 'admin_user_created', 'running', 2)"
        ),
    )
    .await;
    let step = |state: &str| {
        format!(
            "SELECT count(*) AS n FROM provisioning_steps WHERE job_id = '{job}' \
             AND name = 'admin_user_created' AND state = '{state}'"
        )
    };
    let mut conn = env.suite.db.admin_conn().await;
    // worker-a lost the lease to worker-b: nothing is written.
    let recorded = record(&mut conn, job, "worker-a", "failed", Some("stale")).await;
    assert!(!recorded);
    assert_eq!(count(&env, &step("running")).await, 1);
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM provisioning_steps WHERE job_id = '{job}' \
                 AND (finished_at IS NOT NULL OR error IS NOT NULL)"
            )
        )
        .await,
        0
    );
    // The holder records it.
    let recorded = record(&mut conn, job, "worker-b", "done", None).await;
    assert!(recorded);
    assert_eq!(count(&env, &step("done")).await, 1);
    // The lease expires. While worker-b's transaction has just found it still holds the lease,
    // the job's row stays locked: a takeover waits for that transaction to end.
    exec(
        &env,
        &format!(
            "UPDATE provisioning_jobs SET lease_expires_at = now() - interval '1 minute' \
             WHERE id = '{job}'"
        ),
    )
    .await;
    let mut other = env.suite.db.admin_conn().await;
    {
        use diesel_async::AsyncConnection as _;
        let other = &mut other;
        conn.transaction(async |conn| {
            assert!(jobs::holds_lease(conn, job, "worker-b").await?);
            let taken = jobs::claim_next(other, "worker-c", 30).await?;
            assert!(taken.is_none(), "taken over while worker-b was writing");
            Ok::<_, diesel::result::Error>(())
        })
        .await
        .unwrap();
    }
    let taken = jobs::claim_next(&mut other, "worker-c", 30)
        .await
        .unwrap()
        .expect("the expired lease is taken over once worker-b's transaction ended");
    assert_eq!(taken.id, job);
    assert_eq!(taken.lease_owner.as_deref(), Some("worker-c"));
    // worker-b lost it: nothing it records is written.
    let recorded = record(&mut conn, job, "worker-b", "failed", Some("stale")).await;
    assert!(!recorded);
    assert_eq!(count(&env, &step("done")).await, 1);
    // Once the job is over, not even its last owner rewrites a step.
    exec(
        &env,
        &format!("UPDATE provisioning_jobs SET status = 'success' WHERE id = '{job}'"),
    )
    .await;
    let recorded = record(&mut conn, job, "worker-c", "failed", Some("late")).await;
    assert!(!recorded);
    assert_eq!(count(&env, &step("done")).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_get_and_list_with_paging_filters_and_errors() {
    let env = start(|_| {}).await;
    let mut client = env.client().await;
    let mut tenants = Vec::new();
    for i in 0..3 {
        let t = create_tenant(&env, &format!("listed-{i}"), Some("a@b.test"), "free").await;
        exec(
            &env,
            &format!(
                "UPDATE organizations SET is_verified = true, status = 'active' WHERE id = '{t}'"
            ),
        )
        .await;
        client
            .provision_tenant(authed(provision_request(t, &rid()), &super_admin_token()))
            .await
            .unwrap();
        tenants.push(t);
    }
    let page1 = client
        .list_provisioning_jobs(authed(
            pb::ListProvisioningJobsRequest {
                page_size: 2,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.jobs.len(), 2);
    assert_eq!(page1.total_size, 3);
    assert!(!page1.next_page_token.is_empty());
    // newest first
    assert_eq!(page1.jobs[0].tenant_id, tenants[2].to_string());
    let page2 = client
        .list_provisioning_jobs(authed(
            pb::ListProvisioningJobsRequest {
                page_size: 2,
                page_token: page1.next_page_token.clone(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.jobs.len(), 1);
    assert_eq!(page2.jobs[0].tenant_id, tenants[0].to_string());
    assert!(page2.next_page_token.is_empty());
    let one = client
        .list_provisioning_jobs(authed(
            pb::ListProvisioningJobsRequest {
                tenant_id: tenants[1].to_string(),
                state: pb::ProvisioningJobState::Succeeded as i32,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.total_size, 1);
    let none = client
        .list_provisioning_jobs(authed(
            pb::ListProvisioningJobsRequest {
                state: pb::ProvisioningJobState::Failed as i32,
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.total_size, 0);

    // bad input
    for (req, field) in [
        (
            pb::ListProvisioningJobsRequest {
                page_size: 101,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListProvisioningJobsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListProvisioningJobsRequest {
                tenant_id: "x".into(),
                ..Default::default()
            },
            "tenant_id",
        ),
    ] {
        let e = client
            .list_provisioning_jobs(authed(req, &super_admin_token()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&e), [field]);
    }
    let e = client
        .get_provisioning_job(authed(
            pb::GetProvisioningJobRequest { job_id: "x".into() },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&e), ["job_id"]);
    let e = client
        .get_provisioning_job(authed(
            pb::GetProvisioningJobRequest {
                job_id: Uuid::new_v4().to_string(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // roles: super admin only
    for token in [service_token(), member_token(tenants[0], OrgRole::Admin)] {
        let e = client
            .list_provisioning_jobs(authed(pb::ListProvisioningJobsRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let e = client
            .get_provisioning_job(authed(
                pb::GetProvisioningJobRequest {
                    job_id: Uuid::new_v4().to_string(),
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_for_another_caller_is_audited_as_that_caller() {
    // needs tenant-admin + tenant-settings
    let env = start(|_| {}).await;
    let tenant = create_tenant(&env, "audit-school", Some("office@audit.test"), "basic").await;
    let mut client = env.client().await;
    let on_behalf = |message: pb::ProvisionTenantRequest| {
        let mut r = authed(message, &service_token());
        r.metadata_mut()
            .insert("x-tenantry-actor", "operator-9".parse().unwrap());
        r
    };
    let events = |filter: &str| {
        format!(
            "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{tenant}' {filter}"
        )
    };

    // Bad input records nothing.
    let err = client
        .provision_tenant(on_behalf(provision_request(tenant, "")))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["request_id"]);
    assert_eq!(count(&env, &events("")).await, 0);

    let request_id = rid();
    let r = client
        .provision_tenant(on_behalf(provision_request(tenant, &request_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        common_pb::ProvisioningStatus::Success as i32,
        "{r:?}"
    );
    // The job names the original caller, not the service that forwarded the call.
    let job = client
        .get_provisioning_job(authed(
            pb::GetProvisioningJobRequest {
                job_id: r.job_id.clone(),
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.requested_by_id, "operator-9");
    assert_eq!(
        count(
            &env,
            &events(&format!(
                "AND action = 'tenantry.provisioning.v1.ProvisioningService/ProvisionTenant' \
                 AND actor_id = 'operator-9' AND actor_role = 'service' \
                 AND target_type = 'tenant' AND target_id = '{tenant}' \
                 AND request_id = '{request_id}'"
            ))
        )
        .await,
        1
    );
    assert_eq!(
        count(&env, &events("AND action LIKE '%/ProvisionTenant'")).await,
        1
    );
    // The steps' calls to tenant-settings carry the same actor.
    assert_eq!(
        count(
            &env,
            &events(
                "AND action IN (\
                 'tenantry.settings.v1.TenantSettingsService/InitializeDefaults', \
                 'tenantry.settings.v1.TenantSettingsService/ApplyTier') \
                 AND actor_id = 'operator-9' AND actor_role = 'service'"
            )
        )
        .await,
        2
    );
    // No event of any service names the forwarding service as the actor.
    assert_eq!(
        count(&env, &events("AND actor_id = 'test-service'")).await,
        0
    );
}
