//! Usage recording by the platform's backend services: `tenantry.admin.v1.UsageService`.
//!
//! One platform-scoped transaction per call: lock the tenant row, answer a retry of the same
//! `request_id` from the ledger (`usage_events`), then apply the delta with one conditional
//! `UPDATE .. WHERE current + delta <= max RETURNING` (see `models::usage::apply_delta`), so
//! concurrent callers never pass a limit together and a refused change records nothing.

use diesel_async::AsyncConnection;
use tenantry_auth::Caller;
use tenantry_db::models::usage::{self, Metric, NewUsageEvent};
use tenantry_db::models::{audit, organization};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::common::v1 as common;
use tenantry_runtime::error::{ApiError, Violations};
use tonic::{Request, Response, Status};

use super::State;
use crate::audit_trail::{Actor, action};
use crate::tenant_access::{ensure_usable, not_found};
use crate::validate;

/// Bytes in a gigabyte, for storage deltas (1 GB = 10^9 bytes).
const BYTES_PER_GB: f64 = 1e9;

/// Usage recording by backend services.
pub(crate) struct UsageApi {
    state: State,
}

impl UsageApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

/// The metric a service may record; users follow member changes and are refused here.
fn metric_of(v: &mut Violations, value: i32) -> Option<Metric> {
    match common::LimitMetric::try_from(value) {
        Ok(common::LimitMetric::Classes) => Some(Metric::Classes),
        Ok(common::LimitMetric::StorageGb) => Some(Metric::StorageGb),
        Ok(common::LimitMetric::ApiCallsPerMonth) => Some(Metric::ApiCalls),
        Ok(common::LimitMetric::RobloxSessions) => Some(Metric::RobloxSessions),
        Ok(common::LimitMetric::Users) => {
            v.add(
                "metric",
                "users are counted by member changes and cannot be recorded",
            );
            None
        }
        Ok(common::LimitMetric::Unspecified) => {
            v.add("metric", "is required");
            None
        }
        Err(_) => {
            v.add("metric", "is not a known metric");
            None
        }
    }
}

#[tonic::async_trait]
impl pb::usage_service_server::UsageService for UsageApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "RecordUsage"))]
    async fn record_usage(
        &self,
        request: Request<pb::RecordUsageRequest>,
    ) -> Result<Response<pb::RecordUsageResponse>, Status> {
        let actor = Actor::of(Caller::of(&request)?);
        let req = request.into_inner();
        let mut v = Violations::new();
        let tenant = validate::uuid(&mut v, "tenant_id", &req.tenant_id);
        let metric = metric_of(&mut v, req.metric);
        if req.delta == 0 {
            v.add("delta", "must not be 0");
        }
        validate::request_id(&mut v, "request_id", &req.request_id, true);
        v.finish()?;
        let (Some(tenant), Some(metric)) = (tenant, metric) else {
            return Err(ApiError::field("tenant_id", "is required").into());
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "deltas beyond 2^53 are not meaningful counts"
        )]
        let delta = if metric == Metric::StorageGb {
            req.delta as f64 / BYTES_PER_GB
        } else {
            req.delta as f64
        };
        let method = action("UsageService", "RecordUsage");
        let request_id = req.request_id.as_str();

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let (current, limit) = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, Scope::Platform).await?;
                let org = organization::find_for_update(conn, tenant)
                    .await
                    .map_err(|e| not_found(e, "tenant"))?;
                if let Some(done) = usage::find_event(conn, tenant, request_id).await? {
                    if done.metric != metric.as_str() || done.delta != delta {
                        return Err(ApiError::field(
                            "request_id",
                            "was already used with a different request",
                        ));
                    }
                    return Ok((done.value_after, metric.read(&org).1));
                }
                ensure_usable(&org)?;
                let Some((current, limit)) =
                    usage::apply_delta(conn, tenant, metric, delta).await?
                else {
                    let (current, limit) = metric.read(&org);
                    return Err(if current + delta < 0.0 {
                        ApiError::FailedPrecondition(format!(
                            "{} would go below zero (current {current}, delta {delta})",
                            metric.as_str()
                        ))
                    } else {
                        ApiError::ResourceExhausted(format!(
                            "{} limit reached (limit {limit}, current {current}, delta {delta})",
                            metric.as_str()
                        ))
                    });
                };
                usage::insert_event(
                    conn,
                    &NewUsageEvent {
                        organization_id: tenant,
                        metric: metric.as_str(),
                        delta,
                        value_after: current,
                        request_id: Some(request_id),
                        actor_id: Some(&actor.id),
                    },
                )
                .await?;
                audit::record_audit(
                    conn,
                    &actor.event(
                        Some(tenant),
                        &method,
                        "usage",
                        metric.as_str(),
                        serde_json::json!({ "delta": delta, "value_after": current }),
                        Some(request_id),
                    ),
                )
                .await?;
                Ok((current, limit))
            })
            .await?;
        Ok(Response::new(pb::RecordUsageResponse {
            tenant_id: tenant.to_string(),
            metric: req.metric,
            current,
            limit,
            remaining: (limit - current).max(0.0),
        }))
    }
}
