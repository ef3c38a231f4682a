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

#[tonic::async_trait]
impl pb::provisioning_service_server::ProvisioningService for ProvisioningApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "ProvisionTenant"))]
    async fn provision_tenant(
        &self,
        request: Request<pb::ProvisionTenantRequest>,
    ) -> Result<Response<pb::ProvisionTenantResponse>, Status> {
        let actor = caller_actor(&request)?;
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
        let actor = caller_actor(&request)?;
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
        let actor = caller_actor(&request)?;
        deprovision::restore(&self.state, &actor, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// The proto service whose RPCs this crate serves.
const SERVICE: &str = "tenantry.provisioning.v1.ProvisioningService";

/// Fully-qualified RPC name of a provisioning method, the audit `action`.
pub(crate) fn action(method: &str) -> String {
    format!("{SERVICE}/{method}")
}

/// Who made a call, for the job record, the backup record and the audit trail: the verified
/// caller, or the original caller a service (tenant-admin) acted for.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// Subject (user id or service name), or the original caller of a service call.
    pub(crate) id: String,
    /// `super_admin` or `service`.
    pub(crate) role: String,
}

impl Actor {
    /// The actor of a verified call.
    fn of(caller: &Caller) -> Self {
        let role = caller
            .platform_role
            .map(|r| r.as_str())
            .or(caller.org_role.map(|r| r.as_str()))
            .unwrap_or("user")
            .to_owned();
        let id = if caller.is_service() {
            caller
                .actor
                .clone()
                .unwrap_or_else(|| caller.subject.clone())
        } else {
            caller.subject.clone()
        };
        Self { id, role }
    }
}

fn caller_actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    Ok(Actor::of(Caller::of(request)?))
}

/// An audit event of this service, in the format of every Tenantry service (see
/// `tenantry_db::models::audit`): `action` is the fully-qualified RPC name.
pub(crate) struct Event<'a> {
    /// Tenant concerned; `None` for a platform event (the tenant's rows are gone).
    pub(crate) tenant: Option<Uuid>,
    /// Kind and id of the object acted on.
    pub(crate) target: (&'a str, Uuid),
    /// The actor's id (user id, or service name).
    pub(crate) actor_id: Option<&'a str>,
    /// The actor's role.
    pub(crate) actor_role: Option<&'a str>,
    /// The RPC method name (`ProvisionTenant`, ...).
    pub(crate) method: &'a str,
    /// Details; never a secret.
    pub(crate) metadata: serde_json::Value,
    /// The request's idempotency key.
    pub(crate) request_id: Option<&'a str>,
}

/// Records an audit event in the current transaction (never with a secret in `metadata`).
pub(crate) async fn audit(
    conn: &mut diesel_async::AsyncPgConnection,
    event: Event<'_>,
) -> diesel::QueryResult<()> {
    let action = action(event.method);
    tenantry_db::models::audit::record_audit(
        conn,
        &tenantry_db::models::audit::NewAuditEvent {
            organization_id: event.tenant,
            actor_id: event.actor_id,
            actor_role: event.actor_role,
            action: &action,
            target_type: Some(event.target.0),
            target_id: Some(event.target.1.to_string()),
            metadata: event.metadata,
            request_id: event.request_id.filter(|r| !r.is_empty()),
        },
    )
    .await
}
