//! Rows to API messages, and the API enums to the stored vocabularies.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use tenantry_db::models::billing::{Invoice, PaymentMethod};
use tenantry_db::models::invitation::Invitation;
use tenantry_db::models::member::Member;
use tenantry_db::models::organization::{Organization, Tier};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::common::v1 as common;

pub(crate) use crate::convert::timestamp as ts;

/// The start (00:00 UTC) of a day.
pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The first day of the month of `at` (UTC).
pub(crate) fn month_start(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
        .with_day(1)
        .unwrap_or_else(|| at.date_naive())
}

/// The first day of the month `months` after (or before, when negative) `first`.
pub(crate) fn add_months(first: NaiveDate, months: i32) -> NaiveDate {
    let index = first.year() * 12 + i32::try_from(first.month0()).unwrap_or(0) + months;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    NaiveDate::from_ymd_opt(year, u32::try_from(month0).unwrap_or(0) + 1, 1).unwrap_or(first)
}

// The enum tables live once in `crate::convert`; these are the `i32` / stored-name forms the
// organization and billing handlers use.

/// The API enum of a stored tier.
pub(crate) fn tier_to_pb(tier: Tier) -> i32 {
    crate::convert::tier_to_proto(tier).into()
}

/// The stored tier of an API enum value; `None` for unset or unknown values.
pub(crate) fn tier_from_pb(value: i32) -> Option<Tier> {
    crate::convert::tier_from_proto(value).tier()
}

/// The API enum of a stored org role.
pub(crate) fn role_to_pb(role: &str) -> i32 {
    crate::convert::role_name_to_proto(role).into()
}

pub(crate) use crate::convert::role_from_proto as role_from_pb;

/// The API-call counter as of `now` (0 when it counts an earlier month).
pub(crate) fn api_calls_now(org: &Organization, now: DateTime<Utc>) -> i64 {
    if org.api_calls_month_start >= month_start(now) {
        i64::from(org.current_api_calls_this_month)
    } else {
        0
    }
}

/// The tenant's limits.
pub(crate) fn limits(org: &Organization) -> common::TenantLimits {
    common::TenantLimits {
        max_users: org.max_users,
        max_classes: org.max_classes,
        max_storage_gb: org.max_storage_gb,
        max_api_calls_per_month: i64::from(org.max_api_calls_per_month),
        max_roblox_sessions: org.max_roblox_sessions,
    }
}

/// The tenant's usage.
pub(crate) fn usage(org: &Organization, now: DateTime<Utc>) -> common::TenantUsage {
    common::TenantUsage {
        current_users: org.current_users,
        current_classes: org.current_classes,
        current_storage_gb: org.current_storage_gb,
        current_api_calls_this_month: api_calls_now(org, now),
        current_roblox_sessions: org.current_roblox_sessions,
    }
}

/// A member as the API shows it.
pub(crate) fn member(m: &Member) -> pb::Member {
    pb::Member {
        user_id: m.id.to_string(),
        email: m.email.clone(),
        username: m.username.clone(),
        first_name: m.first_name.clone().unwrap_or_default(),
        last_name: m.last_name.clone().unwrap_or_default(),
        org_role: role_to_pb(&m.org_role),
        joined_at: Some(ts(m.created_at)),
        last_login_at: m.last_login_at.map(ts),
        is_active: m.status == "active" || m.status == "pending",
    }
}

/// The API enum of an invitation status name.
pub(crate) fn invitation_status_to_pb(status: &str) -> i32 {
    (match status {
        "pending" => pb::InvitationStatus::Pending,
        "accepted" => pb::InvitationStatus::Accepted,
        "declined" => pb::InvitationStatus::Declined,
        "revoked" => pb::InvitationStatus::Revoked,
        "expired" => pb::InvitationStatus::Expired,
        _ => pb::InvitationStatus::Unspecified,
    }) as i32
}

/// An invitation as the API shows it, with its status as of `now`.
pub(crate) fn invitation(inv: &Invitation, now: DateTime<Utc>) -> pb::Invitation {
    pb::Invitation {
        invitation_id: inv.id.to_string(),
        tenant_id: inv.organization_id.to_string(),
        email: inv.email.clone(),
        org_role: role_to_pb(&inv.org_role),
        status: invitation_status_to_pb(inv.effective_status(now)),
        message: inv.message.clone().unwrap_or_default(),
        invited_by_id: inv.invited_by.map(|u| u.to_string()).unwrap_or_default(),
        expires_at: Some(ts(inv.expires_at)),
        created_at: Some(ts(inv.created_at)),
        accepted_at: inv.accepted_at.map(ts),
        declined_at: inv.declined_at.map(ts),
        revoked_at: inv.revoked_at.map(ts),
        accepted_by_id: inv.user_id.map(|u| u.to_string()).unwrap_or_default(),
    }
}

/// The API enum of an invoice status name.
pub(crate) fn invoice_status_to_pb(status: &str) -> i32 {
    (match status {
        "paid" => pb::InvoiceStatus::Paid,
        "unpaid" => pb::InvoiceStatus::Unpaid,
        "overdue" => pb::InvoiceStatus::Overdue,
        "pending" => pb::InvoiceStatus::Pending,
        _ => pb::InvoiceStatus::Unspecified,
    }) as i32
}

/// An invoice as the API shows it, with its status as of `now`.
pub(crate) fn invoice(inv: &Invoice, now: DateTime<Utc>) -> pb::Invoice {
    let line_items = inv
        .line_items
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| pb::InvoiceLineItem {
                    description: item["description"].as_str().unwrap_or_default().to_owned(),
                    quantity: item["quantity"].as_i64().unwrap_or(0),
                    unit_amount_minor_units: item["unit_amount_cents"].as_i64().unwrap_or(0),
                    amount_minor_units: item["amount_cents"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::Invoice {
        invoice_id: inv.id.to_string(),
        tenant_id: inv.organization_id.to_string(),
        invoice_number: inv.invoice_number.clone(),
        amount_minor_units: inv.amount_cents,
        currency: inv.currency.clone(),
        status: invoice_status_to_pb(inv.effective_status(now)),
        issued_date: Some(ts(inv.issued_at)),
        due_date: inv.due_at.map(ts),
        paid_date: inv.paid_at.map(ts),
        period_start: inv.period_start.map(ts),
        period_end: inv.period_end.map(ts),
        description: inv.description.clone().unwrap_or_default(),
        line_items,
    }
}

/// The stored name of a payment method type; `None` for unset or unknown values.
pub(crate) fn payment_type_from_pb(value: i32) -> Option<&'static str> {
    match pb::PaymentMethodType::try_from(value).ok()? {
        pb::PaymentMethodType::Unspecified => None,
        pb::PaymentMethodType::Card => Some("card"),
        pb::PaymentMethodType::BankAccount => Some("bank_account"),
        pb::PaymentMethodType::Paypal => Some("paypal"),
    }
}

/// A payment method as the API shows it. `external_ref` holds `<processor>:<reference>`.
pub(crate) fn payment_method(pm: &PaymentMethod) -> pb::PaymentMethod {
    let (processor, reference) = pm
        .external_ref
        .as_deref()
        .and_then(|r| r.split_once(':'))
        .unwrap_or(("", ""));
    pb::PaymentMethod {
        payment_method_id: pm.id.to_string(),
        tenant_id: pm.organization_id.to_string(),
        r#type: (match pm.type_.as_str() {
            "card" => pb::PaymentMethodType::Card,
            "bank_account" => pb::PaymentMethodType::BankAccount,
            "paypal" => pb::PaymentMethodType::Paypal,
            _ => pb::PaymentMethodType::Unspecified,
        }) as i32,
        brand: pm.brand.clone().unwrap_or_default(),
        last4: pm.last4.clone().unwrap_or_default(),
        exp_month: pm.exp_month.unwrap_or(0),
        exp_year: pm.exp_year.unwrap_or(0),
        is_default: pm.is_default,
        processor: processor.to_owned(),
        processor_reference: reference.to_owned(),
        created_at: Some(ts(pm.created_at)),
    }
}

/// One metric's consumption against its limit.
pub(crate) fn metric_usage(
    metric: common::LimitMetric,
    current: f64,
    maximum: f64,
) -> common::MetricUsage {
    common::MetricUsage {
        metric: metric as i32,
        current,
        maximum,
        remaining: (maximum - current).max(0.0),
        percentage: percentage(current, maximum),
    }
}

/// `current / maximum * 100`, 0 when the maximum is not positive.
pub(crate) fn percentage(current: f64, maximum: f64) -> f64 {
    if maximum > 0.0 {
        current / maximum * 100.0
    } else {
        0.0
    }
}

/// The five metrics of a tenant as `(metric, current, maximum)`, in metric order.
pub(crate) fn metrics(
    org: &Organization,
    now: DateTime<Utc>,
) -> [(common::LimitMetric, f64, f64); 5] {
    [
        (
            common::LimitMetric::Users,
            f64::from(org.current_users),
            f64::from(org.max_users),
        ),
        (
            common::LimitMetric::Classes,
            f64::from(org.current_classes),
            f64::from(org.max_classes),
        ),
        (
            common::LimitMetric::StorageGb,
            org.current_storage_gb,
            org.max_storage_gb,
        ),
        (
            common::LimitMetric::ApiCallsPerMonth,
            api_calls_now(org, now) as f64,
            f64::from(org.max_api_calls_per_month),
        ),
        (
            common::LimitMetric::RobloxSessions,
            f64::from(org.current_roblox_sessions),
            f64::from(org.max_roblox_sessions),
        ),
    ]
}

/// The lower-case name of a metric in messages (`users`, `storage`, `api calls`, ...).
pub(crate) fn metric_label(metric: common::LimitMetric) -> &'static str {
    match metric {
        common::LimitMetric::Users => "users",
        common::LimitMetric::Classes => "classes",
        common::LimitMetric::StorageGb => "storage",
        common::LimitMetric::ApiCallsPerMonth => "api calls",
        common::LimitMetric::RobloxSessions => "roblox sessions",
        common::LimitMetric::Unspecified => "unknown",
    }
}
