//! GetProvisioningJob and ListProvisioningJobs.
//!
//! Only provision jobs are stored as jobs today (the schema's step names and status vocabulary
//! are those of provisioning); a filter on another kind matches nothing.

use diesel_async::AsyncConnection;
use tenantry_db::models::provisioning::{
    self as jobs, JobFilter, ProvisioningJob, ProvisioningStep, status, step_state,
};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::provisioning::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};

use super::provision::provisioning_status;
use super::{
    State, decode_token, encode_token, optional_uuid, page_size, required_uuid, timestamp,
};
use crate::worker::STEPS;

fn job_state(s: &str) -> pb::ProvisioningJobState {
    match s {
        status::PENDING => pb::ProvisioningJobState::Pending,
        status::RUNNING => pb::ProvisioningJobState::Running,
        status::SUCCESS | status::ALREADY_PROVISIONED => pb::ProvisioningJobState::Succeeded,
        status::PARTIAL_SUCCESS => pb::ProvisioningJobState::PartiallySucceeded,
        status::FAILED => pb::ProvisioningJobState::Failed,
        _ => pb::ProvisioningJobState::Unspecified,
    }
}

fn statuses_of(state: pb::ProvisioningJobState) -> Vec<String> {
    let s: &[&str] = match state {
        pb::ProvisioningJobState::Unspecified => &[],
        pb::ProvisioningJobState::Pending => &[status::PENDING],
        pb::ProvisioningJobState::Running => &[status::RUNNING],
        pb::ProvisioningJobState::Succeeded => &[status::SUCCESS, status::ALREADY_PROVISIONED],
        pb::ProvisioningJobState::PartiallySucceeded => &[status::PARTIAL_SUCCESS],
        pb::ProvisioningJobState::Failed => &[status::FAILED],
    };
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn step_state_of(s: &str) -> pb::ProvisioningStepState {
    match s {
        step_state::PENDING => pb::ProvisioningStepState::Pending,
        step_state::RUNNING => pb::ProvisioningStepState::Running,
        step_state::DONE => pb::ProvisioningStepState::Succeeded,
        step_state::FAILED => pb::ProvisioningStepState::Failed,
        step_state::SKIPPED => pb::ProvisioningStepState::Skipped,
        _ => pb::ProvisioningStepState::Unspecified,
    }
}

fn to_pb(job: &ProvisioningJob, steps: &[ProvisioningStep]) -> pb::ProvisioningJob {
    let mut own: Vec<&ProvisioningStep> = steps.iter().filter(|s| s.job_id == job.id).collect();
    own.sort_by_key(|s| {
        STEPS
            .iter()
            .position(|n| *n == s.name)
            .unwrap_or(usize::MAX)
    });
    let finished = job.status != status::PENDING && job.status != status::RUNNING;
    pb::ProvisioningJob {
        job_id: job.id.to_string(),
        tenant_id: job.organization_id.to_string(),
        kind: pb::ProvisioningJobKind::Provision as i32,
        state: job_state(&job.status) as i32,
        steps: own
            .into_iter()
            .map(|s| pb::ProvisioningStep {
                name: s.name.clone(),
                state: step_state_of(&s.state) as i32,
                started_at: s.started_at.map(timestamp),
                finished_at: s.finished_at.map(timestamp),
                attempts: s.attempts,
                error: s.error.clone().unwrap_or_default(),
            })
            .collect(),
        request_id: job.request_id.clone().unwrap_or_default(),
        requested_by_id: job.requested_by.clone().unwrap_or_default(),
        created_at: Some(timestamp(job.created_at)),
        started_at: job.started_at.map(timestamp),
        finished_at: job.finished_at.map(timestamp),
        provisioning_status: if finished {
            provisioning_status(&job.status) as i32
        } else {
            0
        },
    }
}

/// Handles GetProvisioningJob.
pub(crate) async fn get(
    state: &State,
    r: pb::GetProvisioningJobRequest,
) -> ApiResult<pb::GetProvisioningJobResponse> {
    let mut v = Violations::new();
    let id = required_uuid(&mut v, "job_id", &r.job_id);
    v.finish()?;
    let Some(id) = id else {
        return Err(ApiError::field("job_id", "is required"));
    };
    let mut conn = state.pool.get().await?;
    let (job, steps) = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let job = jobs::find(conn, id).await.map_err(|e| match e {
                diesel::result::Error::NotFound => ApiError::NotFound("provisioning job"),
                e => e.into(),
            })?;
            let steps = jobs::steps_of(conn, &[id]).await?;
            Ok::<_, ApiError>((job, steps))
        })
        .await?;
    Ok(pb::GetProvisioningJobResponse {
        job: Some(to_pb(&job, &steps)),
    })
}

/// Handles ListProvisioningJobs.
pub(crate) async fn list(
    state: &State,
    r: pb::ListProvisioningJobsRequest,
) -> ApiResult<pb::ListProvisioningJobsResponse> {
    let mut v = Violations::new();
    let tenant = optional_uuid(&mut v, "tenant_id", &r.tenant_id);
    let limit = page_size(&mut v, r.page_size);
    let after = decode_token(&mut v, &r.page_token);
    let kind = pb::ProvisioningJobKind::try_from(r.kind);
    if kind.is_err() {
        v.add("kind", "is not a job kind");
    }
    let job_state = pb::ProvisioningJobState::try_from(r.state);
    if job_state.is_err() {
        v.add("state", "is not a job state");
    }
    v.finish()?;
    let filter = JobFilter {
        tenant,
        statuses: job_state.map(statuses_of).unwrap_or_default(),
    };
    if matches!(
        kind,
        Ok(pb::ProvisioningJobKind::Deprovision | pb::ProvisioningJobKind::Restore)
    ) {
        return Ok(pb::ListProvisioningJobsResponse::default());
    }
    let mut conn = state.pool.get().await?;
    let (page, steps, total) = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let page = jobs::list_page(conn, &filter, after, limit + 1).await?;
            let ids: Vec<_> = page.iter().map(|j| j.id).collect();
            let steps = jobs::steps_of(conn, &ids).await?;
            let total = jobs::count(conn, &filter).await?;
            Ok::<_, ApiError>((page, steps, total))
        })
        .await?;
    let more = page.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let page: Vec<_> = page
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let next_page_token = match (more, page.last()) {
        (true, Some(last)) => encode_token(last.created_at, last.id),
        _ => String::new(),
    };
    Ok(pb::ListProvisioningJobsResponse {
        jobs: page.iter().map(|j| to_pb(j, &steps)).collect(),
        next_page_token,
        total_size: i32::try_from(total).unwrap_or(i32::MAX),
    })
}
