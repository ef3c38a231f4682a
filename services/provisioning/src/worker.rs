//! The provisioning job worker: a durable, orchestrated saga.
//!
//! A job is a `provisioning_jobs` row with one `provisioning_steps` row per step. A worker
//! holds a job through a lease (`lease_owner`, `lease_expires_at`) that it renews every third
//! of its length while it works. ProvisionTenant inserts its job already leased to this
//! process and hands it over through the [`Hub`]; every `poll_interval` the worker also claims
//! jobs whose lease expired (a killed process, another replica) with `FOR UPDATE SKIP LOCKED`,
//! and resumes them from the first step not finished. Every step is idempotent (deterministic
//! request ids, a deterministic e-mail Message-ID), so replaying a step after a crash changes
//! nothing twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel_async::AsyncConnection;
use secrecy::{ExposeSecret, SecretString};
use tenantry_auth::ACTOR_METADATA_KEY;
use tenantry_db::models::outbox::{self, NewOutboxMessage};
use tenantry_db::models::provisioning::{self as jobs, ProvisioningJob, status, step_state};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as admin_pb;
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::settings::v1 as settings_pb;
use tenantry_runtime::{ApiError, ApiResult};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::api::State;

/// Runs `$body` in one platform-scoped transaction (`$conn` is the connection).
macro_rules! tx {
    ($state:expr, |$conn:ident| $body:expr) => {
        async {
            let mut pooled = $state.pool.get().await?;
            pooled
                .transaction(async |$conn| -> ApiResult<_> {
                    set_scope($conn, Scope::Platform).await?;
                    $body
                })
                .await
        }
    };
}

/// The step names, in execution order.
pub(crate) const STEPS: [&str; 5] = [
    ADMIN_USER_CREATED,
    DEFAULT_SETTINGS_INITIALIZED,
    DEFAULT_FEATURES_CONFIGURED,
    ORGANIZATION_VERIFIED,
    WELCOME_EMAIL_SENT,
];
/// tenant-admin CreateTenantAdmin.
pub(crate) const ADMIN_USER_CREATED: &str = "admin_user_created";
/// tenant-settings InitializeDefaults.
pub(crate) const DEFAULT_SETTINGS_INITIALIZED: &str = "default_settings_initialized";
/// tenant-settings ApplyTier with the tenant's tier.
pub(crate) const DEFAULT_FEATURES_CONFIGURED: &str = "default_features_configured";
/// tenant-admin MarkTenantVerified.
pub(crate) const ORGANIZATION_VERIFIED: &str = "organization_verified";
/// The welcome e-mail written to the outbox (the relay delivers it at least once).
pub(crate) const WELCOME_EMAIL_SENT: &str = "welcome_email_sent";

/// Secrets of one job that must never reach the database: the password given in the request
/// (handed to CreateTenantAdmin) and the one tenant-admin generated (returned once).
#[derive(Debug, Default)]
pub(crate) struct JobSecrets {
    /// The password the request gave, if any.
    pub(crate) given_password: Option<SecretString>,
    /// The password tenant-admin generated, if any.
    pub(crate) generated_password: Option<SecretString>,
}

/// Hands jobs from the handlers to the local worker, carries their secrets in memory only,
/// and announces finished jobs.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    secrets: Mutex<HashMap<Uuid, JobSecrets>>,
    submitted: Mutex<VecDeque<Uuid>>,
    /// Jobs this process is running or about to run: a job is never run twice at once here,
    /// even when its lease expired while it waited for a permit and the claim loop took it
    /// again under the same owner name.
    active: Mutex<HashSet<Uuid>>,
    wake: Notify,
    /// Notified (all waiters) whenever a job finishes in this process.
    pub(crate) done: Notify,
}

impl Hub {
    /// Registers a job's secrets; they live until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, job: Uuid, secrets: JobSecrets) -> SecretsGuard {
        if let Ok(mut m) = self.secrets.lock() {
            m.insert(job, secrets);
        }
        SecretsGuard {
            hub: self.clone(),
            job,
        }
    }

    /// Hands a job leased to this process to the local worker.
    pub(crate) fn submit(&self, job: Uuid) {
        if let Ok(mut q) = self.submitted.lock() {
            q.push_back(job);
        }
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Uuid> {
        self.submitted.lock().ok()?.pop_front()
    }

    /// Marks a job as run by this process; `None` when it already is.
    fn begin(self: &Arc<Self>, job: Uuid) -> Option<ActiveGuard> {
        if !self.active.lock().ok()?.insert(job) {
            return None;
        }
        Some(ActiveGuard {
            hub: self.clone(),
            job,
        })
    }

    fn given_password(&self, job: Uuid) -> Option<SecretString> {
        self.secrets
            .lock()
            .ok()?
            .get(&job)
            .and_then(|s| s.given_password.clone())
    }

    fn store_generated(&self, job: Uuid, password: String) {
        // Kept only while a handler waits for this job; otherwise dropped at once.
        if let Ok(mut m) = self.secrets.lock()
            && let Some(s) = m.get_mut(&job)
        {
            s.generated_password = Some(SecretString::from(password));
        }
    }

    /// Takes the generated password of a job, if this process received one.
    pub(crate) fn take_generated(&self, job: Uuid) -> Option<SecretString> {
        self.secrets
            .lock()
            .ok()?
            .get_mut(&job)
            .and_then(|s| s.generated_password.take())
    }
}

/// Ends a job's run in this process when dropped.
#[derive(Debug)]
struct ActiveGuard {
    hub: Arc<Hub>,
    job: Uuid,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.hub.active.lock() {
            m.remove(&self.job);
        }
    }
}

/// Forgets a job's secrets when dropped.
#[derive(Debug)]
pub(crate) struct SecretsGuard {
    hub: Arc<Hub>,
    job: Uuid,
}

impl Drop for SecretsGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.hub.secrets.lock() {
            m.remove(&self.job);
        }
    }
}

fn lease_secs(state: &State) -> i64 {
    i64::try_from(state.workflow.lease.as_secs().max(1)).unwrap_or(30)
}

async fn platform_conn(state: &State) -> ApiResult<tenantry_db::PooledConn<'_>> {
    Ok(state.pool.get().await?)
}

/// Runs the worker until `stop` turns true. Jobs in flight are aborted with the worker (their
/// leases expire and another worker resumes them).
pub(crate) async fn run(state: State, mut stop: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(state.workflow.max_jobs.max(1)));
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if *stop.borrow() {
            return;
        }
        while let Some(id) = state.jobs.pop() {
            let Some(active) = state.jobs.begin(id) else {
                continue;
            };
            let (state, permits) = (state.clone(), permits.clone());
            running.spawn(async move {
                let _active = active;
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if let Err(e) = run_owned(&state, id).await {
                    tracing::warn!(job.id = %id, error = %e, "provisioning job stopped");
                }
            });
        }
        // A job is claimed only with a permit in hand, so no claimed job waits with a lease
        // nobody renews.
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            match claim(&state).await {
                Ok(Some(job)) => {
                    let Some(active) = state.jobs.begin(job.id) else {
                        // Already running (or waiting for a permit) here: the claim renewed
                        // its lease, the local run carries on.
                        continue;
                    };
                    let state = state.clone();
                    running.spawn(async move {
                        let (_active, _permit) = (active, permit);
                        let id = job.id;
                        tracing::info!(job.id = %id, "resuming provisioning job");
                        if let Err(e) = execute(&state, job).await {
                            tracing::warn!(job.id = %id, error = %e, "provisioning job stopped");
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim provisioning jobs");
                    break;
                }
            }
        }
        while running.try_join_next().is_some() {}
        tokio::select! {
            () = state.jobs.wake.notified() => {}
            () = tokio::time::sleep(state.workflow.poll_interval) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn claim(state: &State) -> ApiResult<Option<ProvisioningJob>> {
    let mut conn = platform_conn(state).await?;
    let owner = state.workflow.worker_id.clone();
    let secs = lease_secs(state);
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        Ok::<_, ApiError>(jobs::claim_next(conn, &owner, secs).await?)
    })
    .await
}

async fn run_owned(state: &State, id: Uuid) -> ApiResult<()> {
    let mut conn = platform_conn(state).await?;
    let owner = state.workflow.worker_id.clone();
    let secs = lease_secs(state);
    let job = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            Ok::<_, ApiError>(jobs::start_owned(conn, id, &owner, secs).await?)
        })
        .await?;
    drop(conn);
    match job {
        Some(job) => execute(state, job).await,
        None => Ok(()),
    }
}

/// What the steps learn as they run.
#[derive(Debug, Default)]
struct Progress {
    admin_user_id: Option<Uuid>,
}

/// Request options as stored in `params` (never a password).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Params {
    pub(crate) admin_email: Option<String>,
    pub(crate) admin_username: Option<String>,
    #[serde(default)]
    pub(crate) password_given: bool,
    #[serde(default)]
    pub(crate) tenant_name: String,
}

/// Executes a job this worker holds the lease of, from its first unfinished step.
async fn execute(state: &State, job: ProvisioningJob) -> ApiResult<()> {
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (state, lost, id) = (state.clone(), lost.clone(), job.id);
        tokio::spawn(async move {
            let every = (state.workflow.lease / 3).max(Duration::from_millis(200));
            let owner = state.workflow.worker_id.clone();
            let secs = lease_secs(&state);
            loop {
                tokio::time::sleep(every).await;
                let held = tx!(&state, |conn| {
                    Ok(jobs::renew_lease(conn, id, &owner, secs).await?)
                })
                .await;
                if matches!(held, Ok(false)) {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        })
    };
    let outcome = execute_steps(state, &job, &lost).await;
    renewer.abort();
    outcome
}

async fn execute_steps(state: &State, job: &ProvisioningJob, lost: &AtomicBool) -> ApiResult<()> {
    let owner = state.workflow.worker_id.clone();
    let id = job.id;
    let tenant = job.organization_id;
    let params: Params = serde_json::from_value(job.params.clone())
        .map_err(|e| ApiError::internal(format!("job params: {e}")))?;
    let mut progress = Progress {
        admin_user_id: job
            .result
            .as_ref()
            .and_then(|r| r.get("admin_user_id"))
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok()),
    };
    let actor = job.requested_by.clone().unwrap_or_default();

    for name in STEPS {
        if lost.load(Ordering::SeqCst) {
            return Err(lease_lost());
        }
        // One transaction checks the lease, reads where the job stands and starts the step.
        let start = tx!(state, |conn| {
            if !jobs::holds_lease(conn, id, &owner).await? {
                return Ok(Start::LeaseLost);
            }
            let steps = jobs::steps_of(conn, &[id]).await?;
            let Some(step) = steps.iter().find(|s| s.name == name) else {
                return Ok(Start::Skip);
            };
            if ![step_state::PENDING, step_state::RUNNING].contains(&step.state.as_str()) {
                return Ok(Start::Skip);
            }
            let admin_failed = steps
                .iter()
                .any(|s| s.name == ADMIN_USER_CREATED && s.state == step_state::FAILED);
            jobs::step_started(conn, id, name).await?;
            Ok(Start::Run { admin_failed })
        })
        .await?;
        let admin_failed = match start {
            Start::LeaseLost => return Err(lease_lost()),
            Start::Skip => continue,
            Start::Run { admin_failed } => admin_failed,
        };
        let outcome = match name {
            ADMIN_USER_CREATED => create_admin(state, job, &params, &actor).await.map(|uid| {
                progress.admin_user_id = Some(uid);
                Some(uid)
            }),
            DEFAULT_SETTINGS_INITIALIZED => initialize_defaults(state, tenant, &actor)
                .await
                .map(|()| None),
            DEFAULT_FEATURES_CONFIGURED => apply_tier(state, job, &actor).await.map(|()| None),
            ORGANIZATION_VERIFIED => {
                if admin_failed {
                    Err(StepError::Permanent(
                        "not verified: the admin user was not created".into(),
                    ))
                } else {
                    mark_verified(state, tenant, &actor).await.map(|()| None)
                }
            }
            _ => Ok(None),
        };
        if name == WELCOME_EMAIL_SENT {
            // Queued in the outbox in the same transaction that marks the step done.
            let Some(user) = progress.admin_user_id else {
                let error = "no admin user to welcome";
                finished(state, id, name, step_state::FAILED, Some(error), None).await?;
                continue;
            };
            queue_welcome(state, job, &params, user).await?;
            continue;
        }
        match outcome {
            Ok(admin) => {
                let patch =
                    admin.map(|uid| serde_json::json!({ "admin_user_id": uid.to_string() }));
                finished(state, id, name, step_state::DONE, None, patch.as_ref()).await?;
            }
            Err(e) => {
                let message = e.message();
                tracing::warn!(job.id = %id, step = name, error = %message, "provisioning step failed");
                finished(state, id, name, step_state::FAILED, Some(&message), None).await?;
            }
        }
    }
    finish(state, job, &progress).await
}

/// Where a step stands when the worker comes to it.
enum Start {
    /// Another worker holds the job now.
    LeaseLost,
    /// Already done, failed or skipped (a resumed job), or not part of the job.
    Skip,
    /// Marked running (one more attempt); whether the admin user step failed.
    Run { admin_failed: bool },
}

fn lease_lost() -> ApiError {
    ApiError::Unavailable("lease lost".into())
}

/// Records a step's outcome (and what it learned, `patch`, in the job's result) in one
/// transaction, only while this worker holds the lease: `lease lost`, writing nothing,
/// otherwise.
async fn finished(
    state: &State,
    id: Uuid,
    name: &str,
    outcome: &str,
    error: Option<&str>,
    patch: Option<&serde_json::Value>,
) -> ApiResult<()> {
    let owner = state.workflow.worker_id.clone();
    let held = tx!(state, |conn| {
        if let Some(patch) = patch
            && !jobs::record_progress(conn, id, &owner, patch).await?
        {
            return Ok(false);
        }
        Ok(jobs::step_finished(conn, id, &owner, name, outcome, error).await?)
    })
    .await?;
    if held { Ok(()) } else { Err(lease_lost()) }
}

async fn finish(state: &State, job: &ProvisioningJob, progress: &Progress) -> ApiResult<()> {
    let owner = state.workflow.worker_id.clone();
    let id = job.id;
    let finished = tx!(state, |conn| {
        let steps = jobs::steps_of(conn, &[id]).await?;
        let mut completed = Vec::new();
        let mut errors = Vec::new();
        for name in STEPS {
            if let Some(s) = steps.iter().find(|s| s.name == name) {
                match s.state.as_str() {
                    step_state::DONE => completed.push(name.to_owned()),
                    step_state::FAILED => errors.push(serde_json::json!({
                        "step": name,
                        "message": s.error.clone().unwrap_or_default(),
                    })),
                    _ => {}
                }
            }
        }
        let (final_status, message) = if errors.is_empty() {
            (status::SUCCESS, "tenant provisioned successfully")
        } else if completed.is_empty() {
            (status::FAILED, "tenant provisioning failed")
        } else {
            (
                status::PARTIAL_SUCCESS,
                "tenant provisioned with some errors",
            )
        };
        let admin = progress
            .admin_user_id
            .or_else(|| {
                job.result
                    .as_ref()
                    .and_then(|r| r.get("admin_user_id"))
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok())
            })
            .map(|u| u.to_string());
        let result = serde_json::json!({
            "admin_user_id": admin,
            "steps_completed": completed,
            "errors": errors,
            "message": message,
        });
        let done = jobs::finish(conn, id, &owner, final_status, &result).await?;
        if done {
            // The event of the ProvisionTenant call that queued the job, by its caller.
            let role = job.params.get("requested_by_role").and_then(|r| r.as_str());
            crate::api::audit(
                conn,
                crate::api::Event {
                    tenant: Some(job.organization_id),
                    target: ("tenant", job.organization_id),
                    actor_id: job.requested_by.as_deref(),
                    actor_role: role,
                    method: "ProvisionTenant",
                    metadata: serde_json::json!({
                        "job_id": id.to_string(),
                        "status": final_status,
                        "steps_completed": completed,
                    }),
                    request_id: job.request_id.as_deref(),
                },
            )
            .await?;
        }
        Ok(done)
    })
    .await?;
    if finished {
        tracing::info!(job.id = %id, "provisioning job finished");
    }
    state.jobs.done.notify_waiters();
    Ok(())
}

/// Why a step attempt failed.
#[derive(Debug)]
enum StepError {
    /// Worth another attempt (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
    Retryable(String),
    /// Will not get better by retrying.
    Permanent(String),
}

impl StepError {
    fn message(&self) -> String {
        match self {
            Self::Retryable(m) | Self::Permanent(m) => m.clone(),
        }
    }
}

fn classify(service: &str, s: &Status) -> StepError {
    let message = format!(
        "{service}: {} ({})",
        s.message().to_lowercase(),
        format!("{:?}", s.code()).to_lowercase()
    );
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Unknown => {
            StepError::Retryable(message)
        }
        _ => StepError::Permanent(message),
    }
}

/// Calls `call` until it succeeds, fails permanently or runs out of attempts (exponential
/// backoff from 100 ms, doubling, capped at 2 s, with jitter).
async fn with_retries<T, F, Fut>(state: &State, service: &str, mut call: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let attempts = state.workflow.step_attempts.max(1);
    let mut delay = Duration::from_millis(100);
    let mut last = StepError::Permanent(format!("{service}: not attempted"));
    for attempt in 1..=attempts {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) => {
                last = classify(service, &s);
                if matches!(last, StepError::Permanent(_)) || attempt == attempts {
                    return Err(last);
                }
                let jitter = Duration::from_millis(rand::random::<u64>() % 50);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    Err(last)
}

fn request<T>(state: &State, message: T, actor: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(state.workflow.step_timeout);
    if !actor.is_empty()
        && let Ok(v) = actor.parse()
    {
        r.metadata_mut().insert(ACTOR_METADATA_KEY, v);
    }
    r
}

async fn create_admin(
    state: &State,
    job: &ProvisioningJob,
    params: &Params,
    actor: &str,
) -> Result<Uuid, StepError> {
    let email = params
        .admin_email
        .clone()
        .ok_or_else(|| StepError::Permanent("admin e-mail is required".into()))?;
    let username = params.admin_username.clone().unwrap_or_default();
    let given = state.jobs.given_password(job.id);
    // The request hash on tenant-admin's side covers the password: a run that no longer has the
    // given password (resumed by another process) uses a fresh request id and no password;
    // tenant-admin then returns the existing user, or creates one with a generated password
    // that the welcome link replaces.
    let request_id = if params.password_given && given.is_none() {
        format!("prov-{}-admin-r{}", job.id, job.attempts)
    } else {
        format!("prov-{}-admin", job.id)
    };
    let message = admin_pb::CreateTenantAdminRequest {
        tenant_id: job.organization_id.to_string(),
        email,
        username,
        password: given.as_ref().map(|p| p.expose_secret().to_owned()),
        request_id,
        first_name: String::new(),
        last_name: String::new(),
    };
    let response = with_retries(state, "tenant-admin", || {
        let mut client = admin_pb::tenant_internal_service_client::TenantInternalServiceClient::new(
            state.admin.clone(),
        );
        let r = request(state, message.clone(), actor);
        async move { client.create_tenant_admin(r).await }
    })
    .await?
    .into_inner();
    let user = Uuid::parse_str(&response.user_id)
        .map_err(|_| StepError::Permanent("tenant-admin returned a bad user id".into()))?;
    if let Some(p) = response.generated_password {
        state.jobs.store_generated(job.id, p);
    }
    Ok(user)
}

async fn initialize_defaults(state: &State, tenant: Uuid, actor: &str) -> Result<(), StepError> {
    let message = settings_pb::InitializeDefaultsRequest {
        tenant_id: tenant.to_string(),
    };
    with_retries(state, "tenant-settings", || {
        let mut client =
            settings_pb::tenant_settings_service_client::TenantSettingsServiceClient::new(
                state.settings.clone(),
            );
        let r = request(state, message.clone(), actor);
        async move { client.initialize_defaults(r).await }
    })
    .await?;
    Ok(())
}

/// Maps a stored tier to the API enum.
pub(crate) fn tier(s: &str) -> common_pb::SubscriptionTier {
    match s {
        "basic" => common_pb::SubscriptionTier::Basic,
        "professional" => common_pb::SubscriptionTier::Professional,
        "enterprise" => common_pb::SubscriptionTier::Enterprise,
        "education" => common_pb::SubscriptionTier::Education,
        _ => common_pb::SubscriptionTier::Free,
    }
}

async fn apply_tier(state: &State, job: &ProvisioningJob, actor: &str) -> Result<(), StepError> {
    let tenant = job.organization_id;
    // The tier at the time the step runs: a tier change in between is honoured.
    let target = tx!(state, |conn| Ok(jobs::find_target(conn, tenant).await?))
        .await
        .map_err(|e| StepError::Retryable(format!("database: {e}")))?;
    let message = settings_pb::ApplyTierRequest {
        tenant_id: tenant.to_string(),
        tier: tier(&target.subscription_tier) as i32,
        request_id: format!("prov-{}-tier-{}", job.id, target.subscription_tier),
    };
    with_retries(state, "tenant-settings", || {
        let mut client =
            settings_pb::tenant_settings_service_client::TenantSettingsServiceClient::new(
                state.settings.clone(),
            );
        let r = request(state, message.clone(), actor);
        async move { client.apply_tier(r).await }
    })
    .await?;
    Ok(())
}

async fn mark_verified(state: &State, tenant: Uuid, actor: &str) -> Result<(), StepError> {
    let message = admin_pb::MarkTenantVerifiedRequest {
        tenant_id: tenant.to_string(),
    };
    with_retries(state, "tenant-admin", || {
        let mut client = admin_pb::tenant_internal_service_client::TenantInternalServiceClient::new(
            state.admin.clone(),
        );
        let r = request(state, message.clone(), actor);
        async move { client.mark_tenant_verified(r).await }
    })
    .await?;
    Ok(())
}

/// The placeholder the relay replaces with the set-password link at send time.
pub(crate) const LINK_PLACEHOLDER: &str = "{{set_password_link}}";

/// The Message-ID of a user's welcome e-mail: one per admin user, ever.
pub(crate) fn welcome_message_id(user: Uuid) -> String {
    format!("welcome.{user}@tenantry")
}

async fn queue_welcome(
    state: &State,
    job: &ProvisioningJob,
    params: &Params,
    user: Uuid,
) -> ApiResult<()> {
    let owner = state.workflow.worker_id.clone();
    let id = job.id;
    let tenant = job.organization_id;
    let Some(to) = params.admin_email.clone() else {
        return finished(
            state,
            id,
            WELCOME_EMAIL_SENT,
            step_state::FAILED,
            Some("no admin e-mail"),
            None,
        )
        .await;
    };
    let name = if params.tenant_name.is_empty() {
        "your organization".to_owned()
    } else {
        params.tenant_name.clone()
    };
    let subject = format!("Welcome to Tenantry: {name}");
    let body = format!(
        "Hello,\n\nan administrator account was created for you in {name}.\n\n\
         Set your password here (the link works once and expires in 72 hours):\n\
         {LINK_PLACEHOLDER}\n\n\
         If you did not expect this e-mail, you can ignore it.\n"
    );
    let message_id = welcome_message_id(user);
    tx!(state, |conn| {
        outbox::enqueue(
            conn,
            &NewOutboxMessage {
                organization_id: tenant,
                message_id: &message_id,
                kind: "welcome",
                to_address: &to,
                subject: &subject,
                body_text: &body,
                payload: serde_json::json!({
                    "user_id": user.to_string(),
                    "job_id": id.to_string(),
                }),
            },
        )
        .await?;
        // Without the lease, the step's outcome is not ours to record, and the e-mail is not
        // queued either (the transaction rolls back).
        if jobs::step_finished(conn, id, &owner, WELCOME_EMAIL_SENT, step_state::DONE, None).await?
        {
            Ok(())
        } else {
            Err(lease_lost())
        }
    })
    .await?;
    state.mail_wake.notify_one();
    Ok(())
}
