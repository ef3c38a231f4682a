//! ProvisionTenant: validates, enqueues a durable job (idempotent by `request_id`), hands it to
//! the local worker and waits (bounded) for its outcome.
//!
//! The one-time generated admin password travels from tenant-admin's CreateTenantAdmin answer
//! to this response in memory only ([`crate::worker::Hub`]); it is never written to the job,
//! the outbox, the audit log or a log line. A retry with the same `request_id` returns the same
//! job and outcome, without the password.

use std::time::Instant;

use chrono::Utc;
use diesel_async::AsyncConnection;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tenantry_db::models::provisioning::{
    self as jobs, NewProvisioningJob, ProvisioningJob, ProvisioningStep, status, step_state,
};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use uuid::Uuid;

use super::{Actor, State, check_request_id, required_uuid, timestamp};
use crate::worker::{self, JobSecrets};

/// Checks an e-mail address the way the schema does.
pub(crate) fn valid_email(s: &str) -> bool {
    s.chars().count() <= 255
        && !s.chars().any(char::is_whitespace)
        && s.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

fn request_hash(tenant: Uuid, r: &pb::ProvisionTenantRequest) -> String {
    let canonical = serde_json::json!({
        "tenant_id": tenant.to_string(),
        "create_admin_user": r.create_admin_user.unwrap_or(true),
        "admin_email": r.admin_email.trim().to_lowercase(),
        "admin_username": r.admin_username.trim(),
        "password_given": r.admin_password.as_deref().is_some_and(|p| !p.is_empty()),
        "send_welcome_email": r.send_welcome_email.unwrap_or(true),
        "initialize_defaults": r.initialize_defaults.unwrap_or(true),
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Handles ProvisionTenant.
pub(crate) async fn provision_tenant(
    state: &State,
    actor: &Actor,
    r: pb::ProvisionTenantRequest,
) -> ApiResult<pb::ProvisionTenantResponse> {
    let mut v = Violations::new();
    let tenant = required_uuid(&mut v, "tenant_id", &r.tenant_id);
    check_request_id(&mut v, &r.request_id);
    let email = r.admin_email.trim().to_lowercase();
    if !email.is_empty() && !valid_email(&email) {
        v.add("admin_email", "must be an e-mail address");
    }
    let username = r.admin_username.trim().to_owned();
    if !username.is_empty()
        && (!(3..=50).contains(&username.chars().count())
            || username.chars().any(|c| c.is_whitespace() || c == '@'))
    {
        v.add(
            "admin_username",
            "must be 3 to 50 characters without spaces or @",
        );
    }
    let password = r.admin_password.clone().filter(|p| !p.is_empty());
    if let Some(p) = &password
        && !(8..=72).contains(&p.len())
    {
        v.add("admin_password", "must be 8 to 72 bytes");
    }
    v.finish()?;
    let Some(tenant) = tenant else {
        return Err(ApiError::field("tenant_id", "is required"));
    };
    let password = password.map(SecretString::from);
    let hash = request_hash(tenant, &r);
    let create_admin = r.create_admin_user.unwrap_or(true);
    let send_welcome = r.send_welcome_email.unwrap_or(true);
    let init_defaults = r.initialize_defaults.unwrap_or(true);
    let request_id = r.request_id.trim().to_owned();

    let mut conn = state.pool.get().await?;
    let target = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            jobs::find_target(conn, tenant).await.map_err(|e| match e {
                diesel::result::Error::NotFound => ApiError::NotFound("tenant"),
                e => e.into(),
            })
        })
        .await?;
    // A retry is answered from the first job, whatever the tenant's state is now.
    let existing = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            Ok::<_, ApiError>(jobs::find_by_request_id(conn, &request_id).await?)
        })
        .await?;
    drop(conn);
    if let Some(job) = existing {
        return answer_existing(state, job, tenant, &hash).await;
    }
    if target.deleted_at.is_some() || target.status == "cancelled" {
        return Err(ApiError::FailedPrecondition(
            "tenant is cancelled or deleted".into(),
        ));
    }
    let admin_email = if email.is_empty() {
        target.email.clone().map(|e| e.to_lowercase())
    } else {
        Some(email)
    };
    if create_admin && admin_email.is_none() {
        return Err(ApiError::field(
            "admin_email",
            "is required: the tenant has no e-mail",
        ));
    }
    let admin_username = if username.is_empty() {
        format!("admin_{}", target.slug)
    } else {
        username
    };
    let params = serde_json::json!({
        "request_hash": hash,
        "create_admin_user": create_admin,
        "admin_email": admin_email,
        "admin_username": admin_username,
        "password_given": password.is_some(),
        "send_welcome_email": send_welcome,
        "initialize_defaults": init_defaults,
        "tenant_name": target.name,
        // The role of `requested_by`, for the audit event the worker records at the end.
        "requested_by_role": actor.role,
    });

    let job_id = Uuid::new_v4();
    let owner = state.workflow.worker_id.clone();
    let lease = chrono::Duration::from_std(state.workflow.lease)
        .unwrap_or_else(|_| chrono::Duration::seconds(30));
    // The secrets are registered before the job exists, so the worker finds them.
    let guard = state.jobs.register(
        job_id,
        JobSecrets {
            given_password: password,
            generated_password: None,
        },
    );
    let mut conn = state.pool.get().await?;
    let inserted = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let provisioned = jobs::has_succeeded(conn, tenant).await?
                || (target.is_verified && !jobs::has_any(conn, tenant).await?);
            if provisioned {
                let result = serde_json::json!({
                    "admin_user_id": null,
                    "steps_completed": [],
                    "errors": [],
                    "message": "tenant is already provisioned",
                });
                let job = NewProvisioningJob {
                    id: job_id,
                    organization_id: tenant,
                    request_id: &request_id,
                    status: status::ALREADY_PROVISIONED,
                    params: params.clone(),
                    result: Some(result),
                    lease_owner: None,
                    lease_expires_at: None,
                    requested_by: Some(&actor.id),
                    finished_at: Some(Utc::now()),
                };
                return Ok::<_, ApiError>((jobs::insert_if_absent(conn, &job, &[]).await?, false));
            }
            let (earlier, _) = jobs::earlier_progress(conn, tenant).await?;
            let steps: Vec<ProvisioningStep> = worker::STEPS
                .iter()
                .map(|name| {
                    let disabled = match *name {
                        worker::ADMIN_USER_CREATED => !create_admin,
                        worker::DEFAULT_SETTINGS_INITIALIZED => !init_defaults,
                        worker::WELCOME_EMAIL_SENT => !send_welcome || !create_admin,
                        _ => false,
                    };
                    // Steps an earlier run completed are not repeated.
                    let done_before =
                        earlier.iter().any(|e| e == name) && *name != worker::ADMIN_USER_CREATED;
                    ProvisioningStep {
                        job_id,
                        organization_id: tenant,
                        name: (*name).to_owned(),
                        state: if disabled || done_before {
                            step_state::SKIPPED.to_owned()
                        } else {
                            step_state::PENDING.to_owned()
                        },
                        attempts: 0,
                        started_at: None,
                        finished_at: None,
                        error: None,
                    }
                })
                .collect();
            let job = NewProvisioningJob {
                id: job_id,
                organization_id: tenant,
                request_id: &request_id,
                status: status::PENDING,
                params: params.clone(),
                result: None,
                lease_owner: Some(&owner),
                lease_expires_at: Some(Utc::now() + lease),
                requested_by: Some(&actor.id),
                finished_at: None,
            };
            Ok((jobs::insert_if_absent(conn, &job, &steps).await?, true))
        })
        .await?;
    drop(conn);
    match inserted {
        (true, true) => {
            tracing::info!(job.id = %job_id, tenant.id = %tenant, "provisioning job queued");
            state.jobs.submit(job_id);
            let job = wait(state, job_id).await?;
            let password = state.jobs.take_generated(job_id);
            drop(guard);
            Ok(response(&job, password))
        }
        (true, false) => {
            let job = load(state, job_id).await?;
            Ok(response(&job, None))
        }
        (false, _) => {
            drop(guard);
            // Lost a race: the same request id (answer from its job), or another unfinished job
            // of the tenant.
            let mut conn = state.pool.get().await?;
            let existing = conn
                .transaction(async |conn| {
                    set_scope(conn, Scope::Platform).await?;
                    Ok::<_, ApiError>(jobs::find_by_request_id(conn, &request_id).await?)
                })
                .await?;
            drop(conn);
            match existing {
                Some(job) => answer_existing(state, job, tenant, &hash).await,
                None => Err(ApiError::Status(tonic::Status::aborted(
                    "another provisioning job of this tenant is running: retry later",
                ))),
            }
        }
    }
}

async fn answer_existing(
    state: &State,
    job: ProvisioningJob,
    tenant: Uuid,
    hash: &str,
) -> ApiResult<pb::ProvisionTenantResponse> {
    let same = job.organization_id == tenant
        && job.params.get("request_hash").and_then(|h| h.as_str()) == Some(hash);
    if !same {
        return Err(ApiError::field(
            "request_id",
            "was already used with a different payload",
        ));
    }
    let job = wait(state, job.id).await?;
    Ok(response(&job, None))
}

async fn load(state: &State, id: Uuid) -> ApiResult<ProvisioningJob> {
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        Ok::<_, ApiError>(jobs::find(conn, id).await?)
    })
    .await
}

fn is_finished(job: &ProvisioningJob) -> bool {
    job.status != status::PENDING && job.status != status::RUNNING
}

/// Waits until a job finishes, up to the configured bound.
async fn wait(state: &State, id: Uuid) -> ApiResult<ProvisioningJob> {
    let deadline = Instant::now() + state.workflow.wait_timeout;
    loop {
        let notified = state.jobs.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = load(state, id).await?;
        if is_finished(&job) {
            return Ok(job);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ApiError::Status(tonic::Status::aborted(format!(
                "provisioning job {id} is still running: retry with the same request_id or \
                 poll GetProvisioningJob"
            ))));
        }
        let tick = (deadline - now).min(std::time::Duration::from_millis(250));
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Maps a stored provisioning status to the API enum.
pub(crate) fn provisioning_status(s: &str) -> common_pb::ProvisioningStatus {
    match s {
        status::SUCCESS => common_pb::ProvisioningStatus::Success,
        status::PARTIAL_SUCCESS => common_pb::ProvisioningStatus::PartialSuccess,
        status::FAILED => common_pb::ProvisioningStatus::Failed,
        status::ALREADY_PROVISIONED => common_pb::ProvisioningStatus::AlreadyProvisioned,
        _ => common_pb::ProvisioningStatus::Unspecified,
    }
}

fn response(job: &ProvisioningJob, password: Option<SecretString>) -> pb::ProvisionTenantResponse {
    let result = job.result.clone().unwrap_or_default();
    let strings = |key: &str| -> Vec<String> {
        result
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let errors = result
        .get("errors")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|e| common_pb::StepError {
                    step: e
                        .get("step")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    message: e
                        .get("message")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::ProvisionTenantResponse {
        tenant_id: job.organization_id.to_string(),
        status: provisioning_status(&job.status) as i32,
        steps_completed: strings("steps_completed"),
        errors,
        admin_user_id: result
            .get("admin_user_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        generated_admin_password: password.map(|p| p.expose_secret().to_owned()),
        job_id: job.id.to_string(),
        message: result
            .get("message")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        provisioned_at: job.finished_at.map(timestamp),
    }
}
