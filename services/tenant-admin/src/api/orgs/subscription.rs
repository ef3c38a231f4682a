//! Subscription changes (OrganizationService.UpdateSubscription and
//! BillingService.ChangeSubscription share this code) and invoices.
//!
//! A change is effective immediately: the limits become the new tier's (table A of
//! seed-analysis §3.3), a 30-day period starts, a trial becomes `active`, and an invoice for the
//! new period is issued in the same transaction. A tenant suspended because its trial ended
//! (`trial_expired`) may still choose a subscription; that reactivates it. A downgrade below
//! current usage is refused. After the commit tenant-settings is told to re-derive the features
//! (ApplyTier); if it cannot be reached the change stands and a warning is logged.
//!
//! Invoices are persisted (`billing_invoices`), one per billing period, issued when the period
//! starts (billing in advance) from the price catalog [`price_cents`]. A free period is `paid`
//! on issue; a paid one is `pending` when a default payment method is on file (the processor
//! is charging it) and `unpaid` otherwise; an unpaid invoice reads as `overdue` once its due date
//! (14 days after issue) has passed.
//!
//! Price catalog (USD cents per 30-day period): free 0, basic 2,900, professional 9,900,
//! enterprise 49,900, education 19,900. Override with `TENANTRY_PRICE_CENTS`, for example
//! `basic=3500,professional=12000` (unknown tiers and malformed entries are ignored with a
//! warning).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use tenantry_auth::{ACTOR_METADATA_KEY, Caller};
use tenantry_db::models::billing::{self as billing_model, NewInvoice};
use tenantry_db::models::organization::{Organization, Status, TRIAL_EXPIRED, Tier};
use tenantry_db::schema::{organizations, payment_methods};
use tenantry_db::{Scope, set_scope};
use tenantry_proto::settings::v1 as settings_pb;
use tenantry_proto::settings::v1::tenant_settings_service_client::TenantSettingsServiceClient;
use tenantry_runtime::{ApiError, ApiResult};
use uuid::Uuid;

use super::convert::{self, api_calls_now};
use super::{Actor, ensure_usable};
use crate::api::State;

/// Length of a billing period.
pub(crate) const PERIOD_DAYS: i64 = 30;
/// Days between an invoice's issue and its due date.
pub(crate) const PAYMENT_TERMS_DAYS: i64 = 14;
/// Invoice currency.
pub(crate) const CURRENCY: &str = "USD";

/// The price of one billing period of `tier`, in cents (see the module docs).
pub(crate) fn price_cents(tier: Tier) -> i64 {
    static OVERRIDES: OnceLock<HashMap<&'static str, i64>> = OnceLock::new();
    let overrides = OVERRIDES.get_or_init(|| {
        let mut map = HashMap::new();
        if let Some(spec) = tenantry_runtime::config::var("TENANTRY_PRICE_CENTS") {
            for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let parsed = entry.split_once('=').and_then(|(name, cents)| {
                    let tier = name.trim().parse::<Tier>().ok()?;
                    let cents = cents.trim().parse::<i64>().ok().filter(|c| *c >= 0)?;
                    Some((tier.as_str(), cents))
                });
                match parsed {
                    Some((tier, cents)) => {
                        map.insert(tier, cents);
                    }
                    None => {
                        tracing::warn!(entry, "ignoring a malformed TENANTRY_PRICE_CENTS entry")
                    }
                }
            }
        }
        map
    });
    if let Some(cents) = overrides.get(tier.as_str()) {
        return *cents;
    }
    match tier {
        Tier::Free => 0,
        Tier::Basic => 2_900,
        Tier::Professional => 9_900,
        Tier::Enterprise => 49_900,
        Tier::Education => 19_900,
    }
}

/// The result of a subscription change.
#[derive(Debug)]
pub(crate) struct Changed {
    /// The tenant after the change.
    pub(crate) org: Organization,
    /// The tier before.
    pub(crate) previous: Tier,
    /// When the change took effect.
    pub(crate) effective: DateTime<Utc>,
    /// Features tenant-settings switched off (empty when it could not be reached).
    pub(crate) disabled_features: Vec<i32>,
}

/// Names the limits of `tier` that current usage exceeds, as `max_users (12 > 10)`.
fn exceeded(org: &Organization, tier: Tier, now: DateTime<Utc>) -> Vec<String> {
    let l = tier.limits();
    let mut out = Vec::new();
    let mut check = |name: &str, current: f64, max: f64| {
        if current > max {
            out.push(format!("{name} ({current} > {max})"));
        }
    };
    check(
        "max_users",
        f64::from(org.current_users),
        f64::from(l.max_users),
    );
    check(
        "max_classes",
        f64::from(org.current_classes),
        f64::from(l.max_classes),
    );
    check("max_storage_gb", org.current_storage_gb, l.max_storage_gb);
    check(
        "max_api_calls_per_month",
        api_calls_now(org, now) as f64,
        f64::from(l.max_api_calls_per_month),
    );
    check(
        "max_roblox_sessions",
        f64::from(org.current_roblox_sessions),
        f64::from(l.max_roblox_sessions),
    );
    out
}

/// A requested tier change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TierChange<'a> {
    /// The tenant.
    pub(crate) tenant: Uuid,
    /// The new tier.
    pub(crate) tier: Tier,
    /// A new auto-renew setting; `None` keeps the current one.
    pub(crate) auto_renew: Option<bool>,
    /// The audit action (the fully-qualified RPC name).
    pub(crate) action: &'a str,
    /// The request id for the audit trail.
    pub(crate) request_id: Option<&'a str>,
}

/// Changes the tenant's tier (see the module docs).
///
/// # Errors
///
/// NOT_FOUND, FAILED_PRECONDITION (suspended or cancelled tenant; usage above the new limits),
/// the database error.
pub(crate) async fn change_tier(
    state: &State,
    caller: &Caller,
    actor: &Actor,
    change: TierChange<'_>,
) -> ApiResult<Changed> {
    let TierChange {
        tenant,
        tier,
        auto_renew,
        action,
        request_id,
    } = change;
    let mut conn = state.pool.get().await?;
    let (org, previous, effective) = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Tenant(tenant)).await?;
            let org = tenantry_db::models::organization::find_for_update(conn, tenant)
                .await
                .optional()?
                .ok_or(ApiError::NotFound("tenant"))?;
            let trial_expired = org.status() == Status::Suspended
                && org.suspension_reason.as_deref() == Some(TRIAL_EXPIRED)
                && org.deleted_at.is_none();
            if !trial_expired {
                ensure_usable(Some(caller), &org)?;
            }
            let now = Utc::now();
            let over = exceeded(&org, tier, now);
            if !over.is_empty() {
                return Err(ApiError::FailedPrecondition(format!(
                    "current usage exceeds the limits of the {tier} tier: {}",
                    over.join(", ")
                )));
            }
            let previous = org.tier();
            let limits = tier.limits();
            let period_end = now + chrono::Duration::days(PERIOD_DAYS);
            let reactivate = org.status() == Status::Trial || trial_expired;
            let status = if reactivate {
                Status::Active.as_str()
            } else {
                org.status.as_str()
            };
            let updated: Organization = diesel::update(organizations::table.find(tenant))
                .set((
                    organizations::subscription_tier.eq(tier.as_str()),
                    &limits,
                    organizations::subscription_started_at
                        .eq(org.subscription_started_at.unwrap_or(now)),
                    organizations::subscription_expires_at.eq(period_end),
                    organizations::last_billing_date.eq(now),
                    organizations::next_billing_date.eq(period_end),
                    organizations::auto_renew.eq(auto_renew.unwrap_or(org.auto_renew)),
                    organizations::status.eq(status),
                    organizations::is_active.eq(org.is_active || reactivate),
                    organizations::suspended_at.eq(if trial_expired {
                        None
                    } else {
                        org.suspended_at
                    }),
                    organizations::suspension_reason.eq(if trial_expired {
                        None
                    } else {
                        org.suspension_reason.clone()
                    }),
                    organizations::updated_by.eq(actor.user_id()),
                ))
                .returning(Organization::as_returning())
                .get_result(conn)
                .await?;
            let invoice = issue_invoice(conn, &updated, tier, now, period_end).await?;
            super::audit(
                conn,
                tenant,
                actor,
                request_id,
                action,
                ("subscription", tenant.to_string()),
                serde_json::json!({
                    "changed_fields": ["subscription_tier", "limits", "subscription_expires_at"],
                    "previous_tier": previous.as_str(),
                    "new_tier": tier.as_str(),
                    "reactivated": reactivate,
                    "invoice_id": invoice.id.to_string(),
                }),
            )
            .await?;
            Ok::<_, ApiError>((updated, previous, now))
        })
        .await?;
    drop(conn);
    let disabled_features = apply_tier(state, actor, tenant, tier).await;
    Ok(Changed {
        org,
        previous,
        effective,
        disabled_features,
    })
}

/// Issues the invoice of the period `[start, end)` at `tier`'s price.
async fn issue_invoice(
    conn: &mut AsyncPgConnection,
    org: &Organization,
    tier: Tier,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> ApiResult<billing_model::Invoice> {
    let price = price_cents(tier);
    let has_default_method: bool = diesel::select(diesel::dsl::exists(
        payment_methods::table
            .filter(payment_methods::organization_id.eq(org.id))
            .filter(payment_methods::is_default.eq(true)),
    ))
    .get_result(conn)
    .await?;
    let status = if price == 0 {
        "paid"
    } else if has_default_method {
        "pending"
    } else {
        "unpaid"
    };
    let number = format!(
        "INV-{}-{:06}",
        start.format("%Y%m"),
        billing_model::count_all_invoices(conn, org.id).await? + 1
    );
    let description = format!(
        "{} plan, {} to {}",
        tier.as_str(),
        start.format("%Y-%m-%d"),
        end.format("%Y-%m-%d")
    );
    let invoice = billing_model::insert_invoice(
        conn,
        &NewInvoice {
            organization_id: org.id,
            invoice_number: &number,
            amount_cents: price,
            currency: CURRENCY,
            status,
            description: Some(&description),
            line_items: serde_json::json!([{
                "description": format!("{} plan ({PERIOD_DAYS} days)", tier.as_str()),
                "quantity": 1,
                "unit_amount_cents": price,
                "amount_cents": price,
            }]),
            period_start: start,
            period_end: end,
            issued_at: start,
            due_at: start + chrono::Duration::days(PAYMENT_TERMS_DAYS),
            paid_at: (price == 0).then_some(start),
        },
    )
    .await?;
    Ok(invoice)
}

/// Tells tenant-settings to re-derive the tenant's features for `tier`; returns the features
/// it switched off. Failures are logged, never returned: the tier change has committed.
async fn apply_tier(state: &State, actor: &Actor, tenant: Uuid, tier: Tier) -> Vec<i32> {
    let mut client = TenantSettingsServiceClient::new(state.settings.clone());
    let mut request = tonic::Request::new(settings_pb::ApplyTierRequest {
        tenant_id: tenant.to_string(),
        tier: convert::tier_to_pb(tier),
        request_id: Uuid::new_v4().to_string(),
    });
    request.set_timeout(Duration::from_secs(5));
    if let Ok(value) = actor.id.parse() {
        request.metadata_mut().insert(ACTOR_METADATA_KEY, value);
    }
    match client.apply_tier(request).await {
        Ok(response) => response.into_inner().disabled_features,
        Err(status) => {
            tracing::warn!(
                tenant.id = %tenant,
                code = ?status.code(),
                message = status.message(),
                "tenant-settings did not apply the new tier; features were not re-derived"
            );
            Vec::new()
        }
    }
}
