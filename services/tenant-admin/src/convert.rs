//! Conversions between rows and protobuf messages: timestamps, JSON ↔ `google.protobuf.Struct`,
//! status / tier / role enums, and the `Tenant` message.

use chrono::{DateTime, Utc};
use tenantry_db::models::organization::{Organization, Status, Tier};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::common::v1 as common;
use tenantry_proto::prost_types;

/// A `google.protobuf.Timestamp` of a time.
pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// An optional timestamp.
pub(crate) fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

/// The time of a `google.protobuf.Timestamp`; `None` when it is out of range.
pub(crate) fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::from_timestamp(t.seconds, nanos)
}

/// The proto status of a row status.
pub(crate) fn status_to_proto(s: Status) -> common::TenantStatus {
    match s {
        Status::Active => common::TenantStatus::Active,
        Status::Suspended => common::TenantStatus::Suspended,
        Status::Trial => common::TenantStatus::Trial,
        Status::Pending => common::TenantStatus::Pending,
        Status::Cancelled => common::TenantStatus::Cancelled,
    }
}

/// The row status of a proto status; `None` for UNSPECIFIED or an unknown value.
pub(crate) fn status_from_proto(v: i32) -> Option<Status> {
    match common::TenantStatus::try_from(v).ok()? {
        common::TenantStatus::Unspecified => None,
        common::TenantStatus::Active => Some(Status::Active),
        common::TenantStatus::Suspended => Some(Status::Suspended),
        common::TenantStatus::Trial => Some(Status::Trial),
        common::TenantStatus::Pending => Some(Status::Pending),
        common::TenantStatus::Cancelled => Some(Status::Cancelled),
    }
}

/// The proto tier of a row tier.
pub(crate) fn tier_to_proto(t: Tier) -> common::SubscriptionTier {
    match t {
        Tier::Free => common::SubscriptionTier::Free,
        Tier::Basic => common::SubscriptionTier::Basic,
        Tier::Professional => common::SubscriptionTier::Professional,
        Tier::Enterprise => common::SubscriptionTier::Enterprise,
        Tier::Education => common::SubscriptionTier::Education,
    }
}

/// What a proto tier value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierValue {
    /// UNSPECIFIED.
    Unset,
    /// A tier.
    Tier(Tier),
    /// Not a known enum value.
    Unknown,
}

impl TierValue {
    /// The tier, `None` for UNSPECIFIED or an unknown value.
    pub(crate) fn tier(self) -> Option<Tier> {
        match self {
            Self::Tier(t) => Some(t),
            Self::Unset | Self::Unknown => None,
        }
    }
}

/// Reads a proto tier value.
pub(crate) fn tier_from_proto(v: i32) -> TierValue {
    match common::SubscriptionTier::try_from(v) {
        Err(_) => TierValue::Unknown,
        Ok(common::SubscriptionTier::Unspecified) => TierValue::Unset,
        Ok(common::SubscriptionTier::Free) => TierValue::Tier(Tier::Free),
        Ok(common::SubscriptionTier::Basic) => TierValue::Tier(Tier::Basic),
        Ok(common::SubscriptionTier::Professional) => TierValue::Tier(Tier::Professional),
        Ok(common::SubscriptionTier::Enterprise) => TierValue::Tier(Tier::Enterprise),
        Ok(common::SubscriptionTier::Education) => TierValue::Tier(Tier::Education),
    }
}

/// The proto org role of an org role.
pub(crate) fn role_to_proto(r: tenantry_auth::OrgRole) -> common::OrgRole {
    match r {
        tenantry_auth::OrgRole::Admin => common::OrgRole::Admin,
        tenantry_auth::OrgRole::Manager => common::OrgRole::Manager,
        tenantry_auth::OrgRole::Teacher => common::OrgRole::Teacher,
        tenantry_auth::OrgRole::Member => common::OrgRole::Member,
    }
}

/// The proto org role of a stored role name (`admin`, ...); UNSPECIFIED for an unknown name.
pub(crate) fn role_name_to_proto(name: &str) -> common::OrgRole {
    name.parse()
        .map_or(common::OrgRole::Unspecified, role_to_proto)
}

/// The org role of a proto value; `None` for UNSPECIFIED or an unknown value.
pub(crate) fn role_from_proto(v: i32) -> Option<tenantry_auth::OrgRole> {
    match common::OrgRole::try_from(v).ok()? {
        common::OrgRole::Unspecified => None,
        common::OrgRole::Admin => Some(tenantry_auth::OrgRole::Admin),
        common::OrgRole::Manager => Some(tenantry_auth::OrgRole::Manager),
        common::OrgRole::Teacher => Some(tenantry_auth::OrgRole::Teacher),
        common::OrgRole::Member => Some(tenantry_auth::OrgRole::Member),
    }
}

/// A JSON value as a protobuf `Value`.
pub(crate) fn json_to_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(v)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct` (anything else gives an empty one).
pub(crate) fn json_to_struct(v: &serde_json::Value) -> prost_types::Struct {
    let fields = match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
        _ => Default::default(),
    };
    prost_types::Struct { fields }
}

/// A protobuf `Value` as JSON (non-finite numbers become null).
pub(crate) fn value_to_json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// A protobuf `Struct` as a JSON object.
pub(crate) fn struct_to_json(s: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

/// Whole days left until `end`, rounded up, never negative.
pub(crate) fn days_until(end: DateTime<Utc>, now: DateTime<Utc>) -> i32 {
    let secs = (end - now).num_seconds().max(0);
    i32::try_from((secs + 86_399) / 86_400).unwrap_or(i32::MAX)
}

/// Locale settings shown on a tenant (owned by tenant-settings; defaults when absent).
#[derive(Debug, Clone)]
pub(crate) struct Locale {
    /// IANA time zone.
    pub(crate) timezone: String,
    /// BCP 47 locale.
    pub(crate) locale: String,
}

impl Default for Locale {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            locale: "en-US".into(),
        }
    }
}

/// The `Tenant` message of a row.
pub(crate) fn tenant(org: &Organization, locale: &Locale) -> pb::Tenant {
    let now = Utc::now();
    let status = org.status();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    pb::Tenant {
        tenant_id: org.id.to_string(),
        name: org.name.clone(),
        slug: org.slug.clone(),
        display_name: org.display_name.clone().unwrap_or_else(|| org.name.clone()),
        description: text(&org.description),
        website: text(&org.website),
        email: text(&org.email),
        phone: text(&org.phone),
        address: Some(json_to_struct(&org.address)),
        timezone: locale.timezone.clone(),
        locale: locale.locale.clone(),
        organization_type: org.organization_type.clone(),
        industry: text(&org.industry),
        size_category: text(&org.size_category),
        subscription_tier: tier_to_proto(org.tier()).into(),
        status: status_to_proto(status).into(),
        is_active: org.is_active,
        is_verified: org.is_verified,
        limits: Some(common::TenantLimits {
            max_users: org.max_users,
            max_classes: org.max_classes,
            max_storage_gb: org.max_storage_gb,
            max_api_calls_per_month: i64::from(org.max_api_calls_per_month),
            max_roblox_sessions: org.max_roblox_sessions,
        }),
        usage: Some(common::TenantUsage {
            current_users: org.current_users,
            current_classes: org.current_classes,
            current_storage_gb: org.current_storage_gb,
            current_api_calls_this_month: tenantry_db::models::usage::Metric::ApiCalls.read(org).0
                as i64,
            current_roblox_sessions: org.current_roblox_sessions,
        }),
        // Owned by tenant-settings (tier matrix + toggles); see the hand-over notes.
        enabled_features: Vec::new(),
        trial_started_at: opt_timestamp(org.trial_started_at),
        trial_expires_at: opt_timestamp(org.trial_expires_at),
        trial_days_remaining: match (status, org.trial_expires_at) {
            (Status::Trial, Some(end)) => Some(days_until(end, now)),
            _ => None,
        },
        subscription_started_at: opt_timestamp(org.subscription_started_at),
        subscription_expires_at: opt_timestamp(org.subscription_expires_at),
        last_billing_date: opt_timestamp(org.last_billing_date),
        next_billing_date: opt_timestamp(org.next_billing_date),
        billing_email: text(&org.billing_email),
        billing_address: Some(json_to_struct(&org.billing_address)),
        tax_id: text(&org.tax_id),
        suspended_reason: if status == Status::Suspended {
            text(&org.suspension_reason)
        } else {
            String::new()
        },
        deleted_at: opt_timestamp(org.deleted_at),
        created_at: Some(timestamp(org.created_at)),
        updated_at: Some(timestamp(org.updated_at)),
        created_by_id: org.created_by.map(|u| u.to_string()).unwrap_or_default(),
    }
}
