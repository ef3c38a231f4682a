//! The audit trail: `tenantry.admin.v1.AuditService`. Super admins read every tenant's events
//! (and platform events when no tenant is named); organization admins read their own tenant's
//! only, under a tenant-scoped transaction, so row-level security backs the filter.

use diesel_async::AsyncConnection;
use tenantry_auth::Caller;
use tenantry_db::models::audit::{self, AuditFilter};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_runtime::error::{ApiError, Violations};
use tonic::{Request, Response, Status};

use super::State;
use crate::convert;
use crate::validate;

/// The audit trail.
pub(crate) struct AuditApi {
    state: State,
}

impl AuditApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

fn event_message(e: &audit::AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: e.id.to_string(),
        tenant_id: e.organization_id.map(|t| t.to_string()).unwrap_or_default(),
        actor_id: e.actor_id.clone().unwrap_or_default(),
        actor_role: e.actor_role.clone().unwrap_or_default(),
        action: e.action.clone(),
        target_type: e.target_type.clone().unwrap_or_default(),
        target_id: e.target_id.clone().unwrap_or_default(),
        metadata: Some(convert::json_to_struct(&e.metadata)),
        request_id: e.request_id.clone().unwrap_or_default(),
        created_at: Some(convert::timestamp(e.created_at)),
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    #[tracing::instrument(skip_all, fields(rpc.method = "ListAuditEvents"))]
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        let req = request.into_inner();
        let mut v = Violations::new();
        let page_size = validate::page_size(&mut v, "page_size", req.page_size);
        let start = req.start_time.as_ref().map(|t| {
            let parsed = convert::from_timestamp(t);
            if parsed.is_none() {
                v.add("start_time", "is out of range");
            }
            parsed
        });
        let end = req.end_time.as_ref().map(|t| {
            let parsed = convert::from_timestamp(t);
            if parsed.is_none() {
                v.add("end_time", "is out of range");
            }
            parsed
        });
        let (start, end) = (start.flatten(), end.flatten());
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            v.add("end_time", "must not be before start_time");
        }
        for (field, value) in [
            ("action", &req.action),
            ("actor_id", &req.actor_id),
            ("target_type", &req.target_type),
            ("target_id", &req.target_id),
        ] {
            validate::max_length(&mut v, field, value, 200);
        }
        let tenant_given = req.tenant_id.trim();
        if !tenant_given.is_empty() && uuid::Uuid::parse_str(tenant_given).is_err() {
            v.add("tenant_id", "must be a uuid");
        }
        v.finish()?;
        // Super admin: empty = all tenants. Admin: empty = own; another tenant = NOT_FOUND.
        let (tenant, scope) = if caller.is_super_admin() {
            let t = if tenant_given.is_empty() {
                None
            } else {
                Some(caller.resolve_tenant(tenant_given)?)
            };
            (t, Scope::Platform)
        } else {
            let t = caller.resolve_tenant(tenant_given)?;
            (Some(t), Scope::Tenant(t))
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let (action, actor_id, target_type, target_id) = (
            opt(&req.action),
            opt(&req.actor_id),
            opt(&req.target_type),
            opt(&req.target_id),
        );
        let filter = AuditFilter {
            organization_id: tenant,
            action: action.as_deref(),
            actor_id: actor_id.as_deref(),
            target_type: target_type.as_deref(),
            target_id: target_id.as_deref(),
            start_time: start,
            end_time: end,
        };
        let fingerprint = validate::fingerprint(&[
            &tenant.map(|t| t.to_string()).unwrap_or_default(),
            &req.action,
            &req.actor_id,
            &req.target_type,
            &req.target_id,
            &start
                .map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
            &end.map(|t| t.timestamp_micros().to_string())
                .unwrap_or_default(),
        ]);
        let cursor = validate::decode_token(&req.page_token, &fingerprint)?;

        let mut conn = self.state.pool.get().await.map_err(ApiError::from)?;
        let response = conn
            .transaction::<_, ApiError, _>(async |conn| {
                set_scope(conn, scope).await?;
                let mut rows = audit::list_page(
                    conn,
                    &filter,
                    cursor.map(|c| (c.created_at, c.id)),
                    page_size + 1,
                )
                .await?;
                let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > page_size;
                rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
                let total = audit::count(conn, &filter).await?;
                let next_page_token = match rows.last() {
                    Some(last) if more => validate::encode_token(
                        validate::Cursor {
                            created_at: last.created_at,
                            id: last.id,
                        },
                        &fingerprint,
                    ),
                    _ => String::new(),
                };
                Ok(pb::ListAuditEventsResponse {
                    audit_events: rows.iter().map(event_message).collect(),
                    next_page_token,
                    total_size: i32::try_from(total).unwrap_or(i32::MAX),
                })
            })
            .await?;
        Ok(Response::new(response))
    }
}
