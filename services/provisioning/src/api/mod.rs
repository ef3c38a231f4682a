//! The ProvisioningService handlers, one module per group of RPCs: `provision`
//! (ProvisionTenant), `jobs` (GetProvisioningJob, ListProvisioningJobs) and `deprovision`
//! (DeprovisionTenant, ListBackups, RestoreTenant).

mod deprovision;
mod jobs;
mod provision;

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use tenantry_auth::{Caller, ServiceTokenInterceptor};
use tenantry_db::Pool;
use tenantry_proto::provisioning::v1 as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::WorkflowConfig;
use crate::worker::Hub;

/// A channel to another Tenantry service that carries a short-lived service token.
pub type ServiceChannel = InterceptedService<Channel, ServiceTokenInterceptor>;

/// What every handler, the job worker and the mail relay share.
#[derive(Clone)]
pub(crate) struct State {
    /// The database pool (role `tenantry_app`).
    pub(crate) pool: Pool,
    /// tenant-admin, with service tokens.
    pub(crate) admin: ServiceChannel,
    /// tenant-settings, with service tokens.
    pub(crate) settings: ServiceChannel,
    /// Workflow settings.
    pub(crate) workflow: Arc<WorkflowConfig>,
    /// Hands jobs from handlers to the local worker and reports their completion.
    pub(crate) jobs: Arc<Hub>,
    /// Wakes the mail relay when a message was queued.
    pub(crate) mail_wake: Arc<tokio::sync::Notify>,
}

/// Provisioning jobs, deprovisioning and backups.
pub(crate) struct ProvisioningApi {
    state: State,
}

impl ProvisioningApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

/// Default and maximum page sizes.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

/// Validates `page_size` (0 → default).
fn page_size(v: &mut tenantry_runtime::Violations, size: i32) -> i64 {
    if !(0..=MAX_PAGE as i32).contains(&size) {
        v.add("page_size", "must be between 0 and 100");
        return DEFAULT_PAGE;
    }
    if size == 0 {
        DEFAULT_PAGE
    } else {
        i64::from(size)
    }
}

/// Encodes a keyset page token.
fn encode_token(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{id}", at.timestamp_micros()))
}

/// Decodes a keyset page token.
fn decode_token(
    v: &mut tenantry_runtime::Violations,
    token: &str,
) -> Option<(DateTime<Utc>, Uuid)> {
    if token.is_empty() {
        return None;
    }
    let parsed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (micros, id) = s.split_once(':')?;
            Some((
                DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                Uuid::parse_str(id).ok()?,
            ))
        });
    if parsed.is_none() {
        v.add("page_token", "is not a token from a previous response");
    }
    parsed
}

/// Parses an optional uuid filter field.
fn optional_uuid(v: &mut tenantry_runtime::Violations, field: &str, s: &str) -> Option<Uuid> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let parsed = Uuid::parse_str(s).ok();
    if parsed.is_none() {
        v.add(field, "must be a uuid");
    }
    parsed
}

/// Parses a required uuid field.
fn required_uuid(v: &mut tenantry_runtime::Violations, field: &str, s: &str) -> Option<Uuid> {
    if s.trim().is_empty() {
        v.add(field, "is required");
        return None;
    }
    optional_uuid(v, field, s)
}

/// Validates a request id (AIP-155): 1–128 characters.
fn check_request_id(v: &mut tenantry_runtime::Violations, s: &str) {
    if s.trim().is_empty() {
        v.add("request_id", "is required");
    } else if s.chars().count() > 128 {
        v.add("request_id", "must be at most 128 characters");
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn caller_subject<T>(request: &Request<T>) -> Result<String, Status> {
    Ok(Caller::of(request)?.subject.clone())
}

#[tonic::async_trait]
impl pb::provisioning_service_server::ProvisioningService for ProvisioningApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "ProvisionTenant"))]
    async fn provision_tenant(
        &self,
        request: Request<pb::ProvisionTenantRequest>,
    ) -> Result<Response<pb::ProvisionTenantResponse>, Status> {
        let actor = caller_subject(&request)?;
        provision::provision_tenant(&self.state, &actor, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "GetProvisioningJob"))]
    async fn get_provisioning_job(
        &self,
        request: Request<pb::GetProvisioningJobRequest>,
    ) -> Result<Response<pb::GetProvisioningJobResponse>, Status> {
        jobs::get(&self.state, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "ListProvisioningJobs"))]
    async fn list_provisioning_jobs(
        &self,
        request: Request<pb::ListProvisioningJobsRequest>,
    ) -> Result<Response<pb::ListProvisioningJobsResponse>, Status> {
        jobs::list(&self.state, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "DeprovisionTenant"))]
    async fn deprovision_tenant(
        &self,
        request: Request<pb::DeprovisionTenantRequest>,
    ) -> Result<Response<pb::DeprovisionTenantResponse>, Status> {
        let actor = caller_subject(&request)?;
        deprovision::deprovision(&self.state, &actor, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "ListBackups"))]
    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        deprovision::list_backups(&self.state, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(rpc.method = "RestoreTenant"))]
    async fn restore_tenant(
        &self,
        request: Request<pb::RestoreTenantRequest>,
    ) -> Result<Response<pb::RestoreTenantResponse>, Status> {
        let actor = caller_subject(&request)?;
        deprovision::restore(&self.state, &actor, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// Records an audit event (never with a secret in `metadata`).
pub(crate) async fn audit(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: Option<Uuid>,
    target: Uuid,
    actor: Option<&str>,
    action: &str,
    metadata: serde_json::Value,
    request_id: Option<&str>,
) -> diesel::QueryResult<()> {
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use tenantry_db::schema::audit_events as a;
    let target = target.to_string();
    diesel::insert_into(a::table)
        .values((
            a::organization_id.eq(tenant),
            a::actor_id.eq(actor),
            a::action.eq(action),
            a::target_type.eq("organization"),
            a::target_id.eq(target),
            a::metadata.eq(metadata),
            a::request_id.eq(request_id),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
