//! Provisioning jobs and their steps (owned by provisioning), and the few facts about a tenant
//! the provisioning workflow reads before it starts.
//!
//! Jobs are claimed by workers with a lease (`lease_owner`, `lease_expires_at`) taken with
//! `FOR UPDATE SKIP LOCKED`, so a job whose worker died is resumed by the next one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{organizations, provisioning_jobs, provisioning_steps};

/// Job status values (`provisioning_jobs.status`).
pub mod status {
    /// Accepted, not started.
    pub const PENDING: &str = "pending";
    /// Claimed by a worker.
    pub const RUNNING: &str = "running";
    /// Every step done or skipped.
    pub const SUCCESS: &str = "success";
    /// Some steps done, some failed.
    pub const PARTIAL_SUCCESS: &str = "partial_success";
    /// No step done.
    pub const FAILED: &str = "failed";
    /// The tenant was already provisioned; nothing was done.
    pub const ALREADY_PROVISIONED: &str = "already_provisioned";
}

/// Step state values (`provisioning_steps.state`).
pub mod step_state {
    /// Not started.
    pub const PENDING: &str = "pending";
    /// Being attempted.
    pub const RUNNING: &str = "running";
    /// Completed.
    pub const DONE: &str = "done";
    /// Failed after its retries.
    pub const FAILED: &str = "failed";
    /// Not needed.
    pub const SKIPPED: &str = "skipped";
}

/// A provisioning job.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = provisioning_jobs, check_for_backend(diesel::pg::Pg))]
pub struct ProvisioningJob {
    /// Job id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Idempotency key of the request that created it.
    pub request_id: Option<String>,
    /// See [`status`].
    pub status: String,
    /// The request options (never a password).
    pub params: serde_json::Value,
    /// The outcome (never a password).
    pub result: Option<serde_json::Value>,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times a worker claimed it.
    pub attempts: i32,
    /// Job-level error, if any.
    pub error: Option<String>,
    /// Subject of the original caller.
    pub requested_by: Option<String>,
    /// When a worker first started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = provisioning_steps, check_for_backend(diesel::pg::Pg))]
pub struct ProvisioningStep {
    /// Job id.
    pub job_id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Step name.
    pub name: String,
    /// See [`step_state`].
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Error of the last failed attempt.
    pub error: Option<String>,
}

/// A new job.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = provisioning_jobs)]
pub struct NewProvisioningJob<'a> {
    /// Job id (chosen by the caller, so the steps can be inserted with it).
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Idempotency key.
    pub request_id: &'a str,
    /// Initial status.
    pub status: &'a str,
    /// Request options (never a password).
    pub params: serde_json::Value,
    /// Outcome, for a job created already finished.
    pub result: Option<serde_json::Value>,
    /// Worker that takes the job at once, if any.
    pub lease_owner: Option<&'a str>,
    /// Its lease.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Original caller.
    pub requested_by: Option<&'a str>,
    /// Finish time, for a job created already finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What provisioning reads about a tenant before it starts.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct ProvisioningTarget {
    /// Tenant id.
    pub id: Uuid,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Tier.
    pub subscription_tier: String,
    /// Status.
    pub status: String,
    /// Whether provisioning verified it.
    pub is_verified: bool,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Reads a tenant's provisioning facts.
///
/// # Errors
///
/// `NotFound` when the tenant does not exist (or is not visible in the scope).
pub async fn find_target(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<ProvisioningTarget> {
    organizations::table
        .find(id)
        .select(ProvisioningTarget::as_select())
        .get_result(conn)
        .await
}

/// Reads one job.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<ProvisioningJob> {
    provisioning_jobs::table
        .find(id)
        .select(ProvisioningJob::as_select())
        .get_result(conn)
        .await
}

/// Finds the job created by a request id, in any tenant.
///
/// # Errors
///
/// The database error.
pub async fn find_by_request_id(
    conn: &mut AsyncPgConnection,
    request_id: &str,
) -> QueryResult<Option<ProvisioningJob>> {
    provisioning_jobs::table
        .filter(provisioning_jobs::request_id.eq(request_id))
        .select(ProvisioningJob::as_select())
        .order(provisioning_jobs::created_at)
        .first(conn)
        .await
        .optional()
}

/// Tells whether a tenant has a job that finished with `success`.
///
/// # Errors
///
/// The database error.
pub async fn has_succeeded(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_jobs::table
            .filter(provisioning_jobs::organization_id.eq(tenant))
            .filter(provisioning_jobs::status.eq(status::SUCCESS)),
    ))
    .get_result(conn)
    .await
}

/// Tells whether a tenant has any provisioning job at all.
///
/// # Errors
///
/// The database error.
pub async fn has_any(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_jobs::table.filter(provisioning_jobs::organization_id.eq(tenant)),
    ))
    .get_result(conn)
    .await
}

/// Tells whether a tenant has a pending or running job.
///
/// # Errors
///
/// The database error.
pub async fn has_active(conn: &mut AsyncPgConnection, tenant: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        provisioning_jobs::table
            .filter(provisioning_jobs::organization_id.eq(tenant))
            .filter(provisioning_jobs::status.eq_any([status::PENDING, status::RUNNING])),
    ))
    .get_result(conn)
    .await
}

/// Names of the steps a tenant's earlier jobs completed, and the admin user id an earlier job
/// recorded in its result.
///
/// # Errors
///
/// The database error.
pub async fn earlier_progress(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> QueryResult<(Vec<String>, Option<Uuid>)> {
    let done: Vec<String> = provisioning_steps::table
        .filter(provisioning_steps::organization_id.eq(tenant))
        .filter(provisioning_steps::state.eq(step_state::DONE))
        .select(provisioning_steps::name)
        .distinct()
        .load(conn)
        .await?;
    let results: Vec<Option<serde_json::Value>> = provisioning_jobs::table
        .filter(provisioning_jobs::organization_id.eq(tenant))
        .filter(provisioning_jobs::result.is_not_null())
        .order(provisioning_jobs::created_at.desc())
        .select(provisioning_jobs::result)
        .load(conn)
        .await?;
    let admin = results.into_iter().flatten().find_map(|r| {
        r.get("admin_user_id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
    });
    Ok((done, admin))
}

/// Inserts a job and its steps unless a job with the same tenant and request id exists, or the
/// tenant already has an unfinished job. Returns whether it was inserted.
///
/// # Errors
///
/// The database error.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    job: &NewProvisioningJob<'_>,
    steps: &[ProvisioningStep],
) -> QueryResult<bool> {
    let n = diesel::insert_into(provisioning_jobs::table)
        .values(job)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if !steps.is_empty() {
        diesel::insert_into(provisioning_steps::table)
            .values(steps)
            .execute(conn)
            .await?;
    }
    Ok(true)
}

/// Claims the oldest unfinished job whose lease is free or expired, for `owner`, for
/// `lease_secs` seconds; marks it running.
///
/// # Errors
///
/// The database error.
pub async fn claim_next(
    conn: &mut AsyncPgConnection,
    owner: &str,
    lease_secs: i64,
) -> QueryResult<Option<ProvisioningJob>> {
    diesel::sql_query(
        "UPDATE provisioning_jobs SET lease_owner = $1, \
             lease_expires_at = now() + make_interval(secs => $2), \
             status = 'running', attempts = attempts + 1, \
             started_at = coalesce(started_at, now()) \
         WHERE id = (SELECT id FROM provisioning_jobs \
                     WHERE status IN ('pending', 'running') \
                       AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                     ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1) \
         RETURNING *",
    )
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(lease_secs)
    .get_result(conn)
    .await
    .optional()
}

/// Marks a job already leased to `owner` (created with its lease) as running.
///
/// # Errors
///
/// The database error. Returns `None` when `owner` no longer holds the lease.
pub async fn start_owned(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
    lease_secs: i64,
) -> QueryResult<Option<ProvisioningJob>> {
    diesel::sql_query(
        "UPDATE provisioning_jobs SET status = 'running', attempts = attempts + 1, \
             lease_expires_at = now() + make_interval(secs => $3), \
             started_at = coalesce(started_at, now()) \
         WHERE id = $1 AND lease_owner = $2 AND status IN ('pending', 'running') \
         RETURNING *",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(lease_secs)
    .get_result(conn)
    .await
    .optional()
}

/// Extends `owner`'s lease on a job. Returns false when the lease was lost.
///
/// # Errors
///
/// The database error.
pub async fn renew_lease(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
    lease_secs: i64,
) -> QueryResult<bool> {
    let n = diesel::sql_query(
        "UPDATE provisioning_jobs SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_owner = $2 AND status IN ('pending', 'running')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<BigInt, _>(lease_secs)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Records the final outcome of a job held by `owner` and releases the lease. Returns false
/// when the lease was lost (another worker owns the job now).
///
/// # Errors
///
/// The database error.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
    final_status: &str,
    result: &serde_json::Value,
) -> QueryResult<bool> {
    let n = diesel::update(
        provisioning_jobs::table
            .filter(provisioning_jobs::id.eq(id))
            .filter(provisioning_jobs::lease_owner.eq(owner))
            .filter(provisioning_jobs::status.eq_any([status::PENDING, status::RUNNING])),
    )
    .set((
        provisioning_jobs::status.eq(final_status),
        provisioning_jobs::result.eq(Some(result)),
        provisioning_jobs::finished_at.eq(diesel::dsl::now),
        provisioning_jobs::lease_owner.eq(None::<String>),
        provisioning_jobs::lease_expires_at.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Tells whether `owner` still holds the lease of a job, and if so keeps the job's row locked
/// (`FOR SHARE`) until the transaction ends: the lease cannot pass to another worker (whose
/// claim skips locked rows, and whose renewal waits) before the caller's writes commit.
///
/// # Errors
///
/// The database error.
pub async fn holds_lease(conn: &mut AsyncPgConnection, id: Uuid, owner: &str) -> QueryResult<bool> {
    provisioning_jobs::table
        .filter(provisioning_jobs::id.eq(id))
        .filter(provisioning_jobs::lease_owner.eq(owner))
        .filter(provisioning_jobs::status.eq_any([status::PENDING, status::RUNNING]))
        .select(provisioning_jobs::id)
        .for_share()
        .first::<Uuid>(conn)
        .await
        .optional()
        .map(|held| held.is_some())
}

/// The steps of some jobs, in no particular order.
///
/// # Errors
///
/// The database error.
pub async fn steps_of(
    conn: &mut AsyncPgConnection,
    jobs: &[Uuid],
) -> QueryResult<Vec<ProvisioningStep>> {
    provisioning_steps::table
        .filter(provisioning_steps::job_id.eq_any(jobs))
        .select(ProvisioningStep::as_select())
        .load(conn)
        .await
}

/// Marks a step as being attempted (one more attempt).
///
/// # Errors
///
/// The database error.
pub async fn step_started(conn: &mut AsyncPgConnection, job: Uuid, name: &str) -> QueryResult<()> {
    diesel::update(provisioning_steps::table.find((job, name)))
        .set((
            provisioning_steps::state.eq(step_state::RUNNING),
            provisioning_steps::attempts.eq(provisioning_steps::attempts + 1),
            provisioning_steps::started_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("coalesce(started_at, now())")),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a step's outcome (`done`, `failed` or `skipped`) and its error, if `owner` still
/// holds the job's lease ([`holds_lease`], which locks the job's row until the transaction
/// ends): a worker that lost it (another one took the job over) cannot overwrite the outcome
/// of a step the new owner runs. Returns false, writing nothing, when the lease is lost (or
/// the job has no such step, which the worker never asks for).
///
/// # Errors
///
/// The database error.
pub async fn step_finished(
    conn: &mut AsyncPgConnection,
    job: Uuid,
    owner: &str,
    name: &str,
    state: &str,
    error: Option<&str>,
) -> QueryResult<bool> {
    if !holds_lease(conn, job, owner).await? {
        return Ok(false);
    }
    let n = diesel::update(provisioning_steps::table.find((job, name)))
        .set((
            provisioning_steps::state.eq(state),
            provisioning_steps::finished_at.eq(diesel::dsl::now),
            provisioning_steps::error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Filters of [`list_page`] and [`count`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this tenant.
    pub tenant: Option<Uuid>,
    /// Only these statuses (empty: any).
    pub statuses: Vec<String>,
}

fn filtered(filter: &JobFilter) -> provisioning_jobs::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = provisioning_jobs::table.into_boxed();
    if let Some(t) = filter.tenant {
        q = q.filter(provisioning_jobs::organization_id.eq(t));
    }
    if !filter.statuses.is_empty() {
        q = q.filter(provisioning_jobs::status.eq_any(filter.statuses.clone()));
    }
    q
}

/// One page of jobs, newest first, after the keyset `(created_at, id)` of the previous page.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    filter: &JobFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<ProvisioningJob>> {
    let mut q = filtered(filter);
    if let Some((at, id)) = after {
        q = q.filter(
            provisioning_jobs::created_at
                .lt(at)
                .or(provisioning_jobs::created_at
                    .eq(at)
                    .and(provisioning_jobs::id.lt(id))),
        );
    }
    q.order((
        provisioning_jobs::created_at.desc(),
        provisioning_jobs::id.desc(),
    ))
    .limit(limit)
    .select(ProvisioningJob::as_select())
    .load(conn)
    .await
}

/// Counts the jobs matching a filter.
///
/// # Errors
///
/// The database error.
pub async fn count(conn: &mut AsyncPgConnection, filter: &JobFilter) -> QueryResult<i64> {
    filtered(filter).count().get_result(conn).await
}

/// Merges `patch` (a JSON object of non-secret facts, such as the admin user id) into a running
/// job's `result`, so a resumed run knows what earlier attempts learned. Returns false when
/// `owner` lost the lease.
///
/// # Errors
///
/// The database error.
pub async fn record_progress(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    owner: &str,
    patch: &serde_json::Value,
) -> QueryResult<bool> {
    let n = diesel::sql_query(
        "UPDATE provisioning_jobs SET result = coalesce(result, '{}'::jsonb) || $3 \
         WHERE id = $1 AND lease_owner = $2 AND status IN ('pending', 'running')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(owner)
    .bind::<diesel::sql_types::Jsonb, _>(patch)
    .execute(conn)
    .await?;
    Ok(n == 1)
}
