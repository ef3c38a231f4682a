//! BillingService: usage against limits for the calendar month, the subscription, usage history
//! from the daily snapshots, subscription changes (shared with
//! OrganizationService.UpdateSubscription), invoices and payment methods.
//!
//! Same rules as the organization handlers: validation first, one tenant-scoped transaction,
//! NOT_FOUND for another tenant, FAILED_PRECONDITION for members of a suspended or cancelled
//! tenant, an audit event in every mutation's transaction. Invoices and the price catalog:
//! see `orgs::subscription`. Payment methods are processor references only; the schema has one
//! column for the processor and its reference, stored as `<processor>:<reference>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Datelike as _, Duration, Utc};
use diesel_async::AsyncConnection as _;
use tenantry_db::models::billing::{self as billing_model, NewPaymentMethod};
use tenantry_db::models::organization::{Organization, Status};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::admin::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tonic::{Request, Response, Status as GrpcStatus};
use uuid::Uuid;

use super::State;
use super::orgs::convert::{self, add_months, day_start, month_start};
use super::orgs::{Actor, audit, caller_of, load_tenant, request_id, subscription};
use crate::validate::{self, Cursor};

/// Fully-qualified name of a BillingService RPC (the audit action).
fn action(method: &str) -> String {
    crate::audit_trail::action("BillingService", method)
}

/// Default page size of ListInvoices.
const INVOICE_PAGE_SIZE: i64 = 20;
/// Default window of ListUsageHistory, in days.
const HISTORY_DAYS: i32 = 30;

/// Billing: usage, subscription, invoices, payment methods.
pub(crate) struct BillingApi {
    state: State,
}

impl BillingApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, GrpcStatus> {
    result.map(Response::new).map_err(GrpcStatus::from)
}

#[tonic::async_trait]
impl pb::billing_service_server::BillingService for BillingApi {
    async fn get_billing_usage(
        &self,
        request: Request<pb::GetBillingUsageRequest>,
    ) -> Result<Response<pb::GetBillingUsageResponse>, GrpcStatus> {
        respond(self.usage(request).await)
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, GrpcStatus> {
        let result = async {
            let caller = caller_of(&request)?;
            let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
            let org = self.read(&caller, tenant).await?;
            Ok(pb::GetSubscriptionResponse {
                subscription: Some(subscription_message(&org)),
            })
        }
        .await;
        respond(result)
    }

    async fn list_usage_history(
        &self,
        request: Request<pb::ListUsageHistoryRequest>,
    ) -> Result<Response<pb::ListUsageHistoryResponse>, GrpcStatus> {
        respond(self.history(request).await)
    }

    async fn change_subscription(
        &self,
        request: Request<pb::ChangeSubscriptionRequest>,
    ) -> Result<Response<pb::ChangeSubscriptionResponse>, GrpcStatus> {
        respond(self.change(request).await)
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, GrpcStatus> {
        respond(self.invoices(request).await)
    }

    async fn list_payment_methods(
        &self,
        request: Request<pb::ListPaymentMethodsRequest>,
    ) -> Result<Response<pb::ListPaymentMethodsResponse>, GrpcStatus> {
        respond(self.payment_methods(request).await)
    }

    async fn add_payment_method(
        &self,
        request: Request<pb::AddPaymentMethodRequest>,
    ) -> Result<Response<pb::AddPaymentMethodResponse>, GrpcStatus> {
        respond(self.add_method(request).await)
    }

    async fn remove_payment_method(
        &self,
        request: Request<pb::RemovePaymentMethodRequest>,
    ) -> Result<Response<pb::RemovePaymentMethodResponse>, GrpcStatus> {
        respond(self.remove_method(request).await)
    }

    async fn set_default_payment_method(
        &self,
        request: Request<pb::SetDefaultPaymentMethodRequest>,
    ) -> Result<Response<pb::SetDefaultPaymentMethodResponse>, GrpcStatus> {
        respond(self.default_method(request).await)
    }
}

/// The subscription of a tenant. `trial_days_remaining` is set while the status is TRIAL
/// (whole days rounded up, 0 once the trial end has passed).
fn subscription_message(org: &Organization) -> pb::Subscription {
    let now = Utc::now();
    let trial = org.status() == Status::Trial;
    pb::Subscription {
        tenant_id: org.id.to_string(),
        subscription_tier: convert::tier_to_pb(org.tier()),
        status: crate::convert::status_to_proto(org.status()) as i32,
        started_at: org.subscription_started_at.map(convert::ts),
        expires_at: org.subscription_expires_at.map(convert::ts),
        trial_started_at: org.trial_started_at.map(convert::ts),
        trial_expires_at: org.trial_expires_at.map(convert::ts),
        auto_renew: org.auto_renew,
        next_billing_date: org.next_billing_date.map(convert::ts),
        is_trial: trial && org.trial_expires_at.is_some_and(|end| end > now),
        trial_days_remaining: match (trial, org.trial_expires_at) {
            (true, Some(end)) => Some(crate::convert::days_until(end, now)),
            _ => None,
        },
    }
}

/// Decodes a position token of ListPaymentMethods; empty means 0.
fn decode_offset(token: &str) -> ApiResult<i64> {
    if token.is_empty() {
        return Ok(0);
    }
    let malformed = || ApiError::field("page_token", "is malformed");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let raw = String::from_utf8(raw).map_err(|_| malformed())?;
    raw.strip_prefix("pm|")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(malformed)
}

/// Tells whether `s` is a processor name: 1–50 of `[a-z0-9_-]`.
fn is_processor(s: &str) -> bool {
    (1..=50).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl BillingApi {
    /// Reads a tenant a member may use.
    async fn read(&self, caller: &tenantry_auth::Caller, tenant: Uuid) -> ApiResult<Organization> {
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            set_scope(conn, Scope::Tenant(tenant)).await?;
            load_tenant(conn, caller, tenant, false).await
        })
        .await
    }

    async fn usage(
        &self,
        request: Request<pb::GetBillingUsageRequest>,
    ) -> ApiResult<pb::GetBillingUsageResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let org = self.read(&caller, tenant).await?;
        let now = Utc::now();
        let start = month_start(now);
        let metrics = convert::metrics(&org, now);
        let mut warnings = Vec::new();
        let mut over_limit = false;
        for (metric, current, max) in metrics {
            let pct = convert::percentage(current, max);
            let label = convert::metric_label(metric);
            if pct >= 100.0 {
                over_limit = true;
                warnings.push(pb::UsageWarning {
                    metric: metric as i32,
                    percentage: pct,
                    exceeded: true,
                    message: format!("{label} limit exceeded"),
                });
            } else if pct >= 80.0 {
                warnings.push(pb::UsageWarning {
                    metric: metric as i32,
                    percentage: pct,
                    exceeded: false,
                    message: format!("{label} usage at {}%", pct.floor()),
                });
            }
        }
        Ok(pb::GetBillingUsageResponse {
            tenant_id: tenant.to_string(),
            tenant_name: org.name.clone(),
            billing_period_start: Some(convert::ts(day_start(start))),
            billing_period_end: Some(convert::ts(day_start(add_months(start, 1)))),
            current_usage: Some(convert::usage(&org, now)),
            limits: Some(convert::limits(&org)),
            subscription_tier: convert::tier_to_pb(org.tier()),
            usage_percentage: metrics
                .iter()
                .map(|(m, c, max)| convert::metric_usage(*m, *c, *max))
                .collect(),
            over_limit,
            warnings,
        })
    }

    async fn history(
        &self,
        request: Request<pb::ListUsageHistoryRequest>,
    ) -> ApiResult<pb::ListUsageHistoryResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let days = req.days.unwrap_or(HISTORY_DAYS);
        if !(1..=365).contains(&days) {
            v.add("days", "must be between 1 and 365");
        }
        let limit = validate::page_size(&mut v, "page_size", req.page_size);
        v.finish()?;
        let filters = validate::fingerprint(&[&days.to_string()]);
        let before = validate::decode_token(&req.page_token, &filters)?;
        let now = Utc::now();
        let start = now - Duration::days(i64::from(days));
        let since = start.date_naive();
        let mut conn = self.state.pool.get().await?;
        let (rows, total) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await?;
                let total = billing_model::count_daily_snapshots(conn, tenant, since).await?;
                let rows = billing_model::list_daily_snapshots(
                    conn,
                    tenant,
                    since,
                    before.map(|c| c.created_at.date_naive()),
                    limit + 1,
                )
                .await?;
                Ok::<_, ApiError>((rows, total))
            })
            .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let page: Vec<_> = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        let next_page_token = match page.last() {
            Some(last) if more => validate::encode_token(
                Cursor {
                    created_at: day_start(last.period),
                    id: last.id,
                },
                &filters,
            ),
            _ => String::new(),
        };
        Ok(pb::ListUsageHistoryResponse {
            tenant_id: tenant.to_string(),
            start_date: Some(convert::ts(start)),
            end_date: Some(convert::ts(now)),
            entries: page
                .iter()
                .map(|s| pb::UsageSnapshot {
                    date: Some(convert::ts(day_start(s.period))),
                    users: s.users_count,
                    classes: s.classes_count,
                    storage_gb: s.storage_gb,
                    api_calls: i64::from(s.api_calls_count),
                    roblox_sessions: s.roblox_sessions_count,
                    // Not tracked by the snapshots yet (no active-user column in usage_logs).
                    active_users: 0,
                })
                .collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn change(
        &self,
        request: Request<pb::ChangeSubscriptionRequest>,
    ) -> ApiResult<pb::ChangeSubscriptionResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        if req.subscription_tier == 0 {
            return Err(ApiError::field("subscription_tier", "is required"));
        }
        let tier = convert::tier_from_pb(req.subscription_tier)
            .ok_or_else(|| ApiError::field("subscription_tier", "is not a known tier"))?;
        let actor = Actor::of(&caller);
        let action = action("ChangeSubscription");
        let changed = subscription::change_tier(
            &self.state,
            &caller,
            &actor,
            subscription::TierChange {
                tenant,
                tier,
                auto_renew: req.auto_renew,
                action: &action,
                request_id: rid.as_deref(),
            },
        )
        .await?;
        Ok(pb::ChangeSubscriptionResponse {
            subscription: Some(subscription_message(&changed.org)),
            previous_tier: convert::tier_to_pb(changed.previous),
            message: format!(
                "subscription changed from {} to {}",
                changed.previous.as_str(),
                tier.as_str()
            ),
            effective_date: Some(convert::ts(changed.effective)),
            disabled_features: changed.disabled_features,
        })
    }

    async fn invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> ApiResult<pb::ListInvoicesResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = match req.page_size {
            0 => INVOICE_PAGE_SIZE,
            n => validate::page_size(&mut v, "page_size", n),
        };
        let status = match pb::InvoiceStatus::try_from(req.status) {
            Ok(pb::InvoiceStatus::Unspecified) => None,
            Ok(s) => Some(
                s.as_str_name()
                    .trim_start_matches("INVOICE_STATUS_")
                    .to_lowercase(),
            ),
            Err(_) => {
                v.add("status", "is not a known invoice status");
                None
            }
        };
        v.finish()?;
        let filters = validate::fingerprint(&[status.as_deref().unwrap_or("")]);
        let before = validate::decode_token(&req.page_token, &filters)?;
        let mut conn = self.state.pool.get().await?;
        let (rows, total) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await?;
                let total = billing_model::count_invoices(conn, tenant, status.as_deref()).await?;
                let rows = billing_model::list_invoices(
                    conn,
                    tenant,
                    status.as_deref(),
                    before.map(|c| (c.created_at, c.id)),
                    limit + 1,
                )
                .await?;
                Ok::<_, ApiError>((rows, total))
            })
            .await?;
        let (page, next_page_token) = validate::page_of(rows, limit, &filters, |last| Cursor {
            created_at: last.issued_at,
            id: last.id,
        });
        let now = Utc::now();
        Ok(pb::ListInvoicesResponse {
            invoices: page.iter().map(|i| convert::invoice(i, now)).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn payment_methods(
        &self,
        request: Request<pb::ListPaymentMethodsRequest>,
    ) -> ApiResult<pb::ListPaymentMethodsResponse> {
        let caller = caller_of(&request)?;
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let limit = validate::page_size(&mut v, "page_size", req.page_size);
        v.finish()?;
        let offset = decode_offset(&req.page_token)?;
        let mut conn = self.state.pool.get().await?;
        let (rows, total) = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, false).await?;
                let total = billing_model::count_payment_methods(conn, tenant).await?;
                let rows = billing_model::list_payment_methods(conn, tenant, offset, limit).await?;
                Ok::<_, ApiError>((rows, total))
            })
            .await?;
        let next = offset + i64::try_from(rows.len()).unwrap_or(0);
        Ok(pb::ListPaymentMethodsResponse {
            payment_methods: rows.iter().map(convert::payment_method).collect(),
            next_page_token: if next < total {
                URL_SAFE_NO_PAD.encode(format!("pm|{next}"))
            } else {
                String::new()
            },
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }

    async fn add_method(
        &self,
        request: Request<pb::AddPaymentMethodRequest>,
    ) -> ApiResult<pb::AddPaymentMethodResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, &request.get_ref().request_id);
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        validate::request_id(&mut v, "request_id", &req.request_id, false);
        if req.processor.is_empty() {
            v.add("processor", "is required");
        } else if !is_processor(&req.processor) {
            v.add(
                "processor",
                "must be 1–50 lowercase letters, digits, _ or -",
            );
        }
        let reference = req.processor_reference.trim();
        if reference.is_empty() {
            v.add("processor_reference", "is required");
        } else if reference.chars().count() + req.processor.len() >= 255
            || reference.chars().any(char::is_whitespace)
        {
            v.add(
                "processor_reference",
                "must be at most 200 characters without spaces",
            );
        }
        let kind = convert::payment_type_from_pb(req.r#type);
        if kind.is_none() {
            v.add("type", "is required: card, bank_account or paypal");
        }
        validate::max_length(&mut v, "brand", &req.brand, 50);
        let last4_ok = req.last4.len() == 4 && req.last4.bytes().all(|b| b.is_ascii_digit());
        if !req.last4.is_empty() && !last4_ok {
            v.add("last4", "must be exactly 4 digits");
        } else if req.last4.is_empty() && matches!(kind, Some("card" | "bank_account")) {
            v.add("last4", "is required for cards and bank accounts");
        }
        let now = Utc::now();
        let expiry = if kind == Some("card") {
            if !(1..=12).contains(&req.exp_month) {
                v.add("exp_month", "must be between 1 and 12");
            }
            if !(2000..=2100).contains(&req.exp_year) {
                v.add("exp_year", "must be a four-digit year");
            } else if (1..=12).contains(&req.exp_month) {
                let (year, month) = (now.year(), i32::try_from(now.month()).unwrap_or(12));
                if (req.exp_year, req.exp_month) < (year, month) {
                    v.add("exp_year", "the card has expired");
                }
            }
            Some((req.exp_month, req.exp_year))
        } else {
            if req.exp_month != 0 {
                v.add("exp_month", "must be 0 for this type");
            }
            if req.exp_year != 0 {
                v.add("exp_year", "must be 0 for this type");
            }
            None
        };
        v.finish()?;
        let kind = kind.ok_or_else(|| ApiError::field("type", "is required"))?;
        let external_ref = format!("{}:{reference}", req.processor);
        let actor = Actor::of(&caller);
        let method = action("AddPaymentMethod");
        let mut conn = self.state.pool.get().await?;
        let added = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                // The tenant row lock serializes default changes and duplicate checks.
                load_tenant(conn, &caller, tenant, true).await?;
                if billing_model::payment_ref_exists(conn, tenant, &external_ref).await? {
                    return Err(ApiError::AlreadyExists(
                        "a payment method with this processor reference exists".into(),
                    ));
                }
                let first = billing_model::count_payment_methods(conn, tenant).await? == 0;
                let make_default = first || req.set_default;
                if make_default && !first {
                    billing_model::clear_default_payment_method(conn, tenant).await?;
                }
                let added = billing_model::insert_payment_method(
                    conn,
                    &NewPaymentMethod {
                        organization_id: tenant,
                        type_: kind,
                        brand: (!req.brand.is_empty()).then_some(req.brand.as_str()),
                        last4: (!req.last4.is_empty()).then_some(req.last4.as_str()),
                        exp_month: expiry.map(|e| e.0),
                        exp_year: expiry.map(|e| e.1),
                        is_default: make_default,
                        external_ref: &external_ref,
                    },
                )
                .await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("payment_method", added.id.to_string()),
                    serde_json::json!({
                        "type": kind,
                        "processor": req.processor,
                        "is_default": make_default,
                    }),
                )
                .await?;
                Ok::<_, ApiError>(added)
            })
            .await?;
        Ok(pb::AddPaymentMethodResponse {
            payment_method: Some(convert::payment_method(&added)),
        })
    }

    async fn remove_method(
        &self,
        request: Request<pb::RemovePaymentMethodRequest>,
    ) -> ApiResult<pb::RemovePaymentMethodResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let mut v = Violations::new();
        let id = validate::uuid(
            &mut v,
            "payment_method_id",
            &request.get_ref().payment_method_id,
        );
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("payment_method_id", "is required"))?;
        let actor = Actor::of(&caller);
        let method = action("RemovePaymentMethod");
        let mut conn = self.state.pool.get().await?;
        conn.transaction(async |conn| {
            set_scope(conn, Scope::Tenant(tenant)).await?;
            load_tenant(conn, &caller, tenant, true).await?;
            let pm = billing_model::find_payment_method(conn, tenant, id)
                .await?
                .ok_or(ApiError::NotFound("payment method"))?;
            if pm.is_default && billing_model::count_payment_methods(conn, tenant).await? > 1 {
                return Err(ApiError::FailedPrecondition(
                    "the default payment method cannot be removed while others remain; set \
                     another default first"
                        .into(),
                ));
            }
            billing_model::delete_payment_method(conn, id).await?;
            audit(
                conn,
                tenant,
                &actor,
                rid.as_deref(),
                &method,
                ("payment_method", id.to_string()),
                serde_json::json!({ "type": pm.type_, "was_default": pm.is_default }),
            )
            .await?;
            Ok::<_, ApiError>(())
        })
        .await?;
        Ok(pb::RemovePaymentMethodResponse {})
    }

    async fn default_method(
        &self,
        request: Request<pb::SetDefaultPaymentMethodRequest>,
    ) -> ApiResult<pb::SetDefaultPaymentMethodResponse> {
        let caller = caller_of(&request)?;
        let rid = request_id(&request, "");
        let tenant = caller.resolve_tenant(&request.get_ref().tenant_id)?;
        let mut v = Violations::new();
        let id = validate::uuid(
            &mut v,
            "payment_method_id",
            &request.get_ref().payment_method_id,
        );
        v.finish()?;
        let id = id.ok_or_else(|| ApiError::field("payment_method_id", "is required"))?;
        let actor = Actor::of(&caller);
        let method = action("SetDefaultPaymentMethod");
        let mut conn = self.state.pool.get().await?;
        let pm = conn
            .transaction(async |conn| {
                set_scope(conn, Scope::Tenant(tenant)).await?;
                load_tenant(conn, &caller, tenant, true).await?;
                let pm = billing_model::find_payment_method(conn, tenant, id)
                    .await?
                    .ok_or(ApiError::NotFound("payment method"))?;
                if pm.is_default {
                    return Ok(pm);
                }
                billing_model::clear_default_payment_method(conn, tenant).await?;
                let pm = billing_model::make_default_payment_method(conn, id).await?;
                audit(
                    conn,
                    tenant,
                    &actor,
                    rid.as_deref(),
                    &method,
                    ("payment_method", id.to_string()),
                    serde_json::json!({ "changed_fields": ["is_default"] }),
                )
                .await?;
                Ok::<_, ApiError>(pm)
            })
            .await?;
        Ok(pb::SetDefaultPaymentMethodResponse {
            payment_method: Some(convert::payment_method(&pm)),
        })
    }
}
