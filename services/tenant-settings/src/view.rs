//! A tenant's configuration as read from the database, and the proto messages built from it.
//!
//! Storage: `tenant_settings` holds locale, branding columns (custom CSS and default theme
//! included) and the `security`, `compliance` and `custom_settings` JSON objects;
//! `tenant_features` holds explicit feature decisions (no row:
//! the tier decides); `organizations` (owned by tenant-admin) holds tier, status, limits, usage
//! and the display name and description.

use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value as Json, json};
use tenantry_db::models::settings::{self as db, FeatureRow, SettingsRow, TenantView};
use tenantry_proto::common::v1::{
    Feature, FeatureSource, FeatureState, SubscriptionTier, TenantLimits, TenantStatus,
};
use tenantry_proto::settings::v1 as pb;
use uuid::Uuid;

use crate::convert::{json_to_struct, json_value_to_struct, timestamp};
use crate::tiers::{self, MATRIX, Offer};

/// `tenant_features.source` of an org-admin toggle.
pub(crate) const SOURCE_ORG_ADMIN: &str = "org_admin";
/// `tenant_features.source` of an operator override.
pub(crate) const SOURCE_OVERRIDE: &str = "operator_override";
/// `tenant_features.source` of a stored tier default (written by ApplyTier).
pub(crate) const SOURCE_TIER: &str = "tier_default";

/// Where a default setting lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Home {
    /// `tenant_settings.security`.
    Security,
    /// `tenant_settings.compliance`.
    Compliance,
    /// `tenant_settings.custom_settings`.
    Custom,
    /// `tenant_settings.default_theme` (shown as `branding.default_theme`).
    Theme,
}

/// A default value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DefaultValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(&'static str),
}

impl DefaultValue {
    pub(crate) fn json(self) -> Json {
        match self {
            Self::Bool(b) => Json::Bool(b),
            Self::Int(i) => Json::from(i),
            Self::Str(s) => Json::from(s),
        }
    }
}

/// The 11 default settings written by provisioning (seed-analysis §1.7), each in the object that
/// stores that fact (the security and compliance keys are the schema's own).
pub(crate) const DEFAULT_SETTINGS: [(&str, Home, DefaultValue); 11] = [
    (
        "email_notifications",
        Home::Custom,
        DefaultValue::Bool(true),
    ),
    ("weekly_reports", Home::Custom, DefaultValue::Bool(true)),
    (
        "allow_student_registration",
        Home::Custom,
        DefaultValue::Bool(true),
    ),
    (
        "allow_parent_access",
        Home::Custom,
        DefaultValue::Bool(true),
    ),
    (
        "require_parental_consent",
        Home::Compliance,
        DefaultValue::Bool(true),
    ),
    (
        "session_timeout_minutes",
        Home::Security,
        DefaultValue::Int(60),
    ),
    (
        "password_expiry_days",
        Home::Security,
        DefaultValue::Int(90),
    ),
    ("max_login_attempts", Home::Security, DefaultValue::Int(5)),
    (
        "enable_two_factor",
        Home::Security,
        DefaultValue::Bool(false),
    ),
    (
        "default_theme",
        Home::Theme,
        DefaultValue::Str(DEFAULT_THEME),
    ),
    ("default_language", Home::Custom, DefaultValue::Str("en-US")),
];

/// The UI theme of a tenant that has not chosen one.
pub(crate) const DEFAULT_THEME: &str = "roblox";

/// Everything stored about one tenant's configuration.
#[derive(Debug, Clone)]
pub(crate) struct TenantState {
    pub(crate) tenant: TenantView,
    pub(crate) settings: Option<SettingsRow>,
    pub(crate) features: Vec<FeatureRow>,
}

impl TenantState {
    /// Loads the state; `None` when the tenant is not visible in the transaction's scope.
    pub(crate) async fn load(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> diesel::QueryResult<Option<Self>> {
        let Some(tenant) = db::find_tenant(conn, id).await? else {
            return Ok(None);
        };
        let settings = db::find_settings(conn, id).await?;
        let features = db::list_features(conn, id).await?;
        Ok(Some(Self {
            tenant,
            settings,
            features,
        }))
    }

    pub(crate) fn tier(&self) -> SubscriptionTier {
        tiers::tier_from_db(&self.tenant.subscription_tier)
    }

    pub(crate) fn status(&self) -> TenantStatus {
        status_of(&self.tenant)
    }

    pub(crate) fn version(&self) -> i64 {
        self.settings.as_ref().map_or(0, |s| s.version)
    }

    /// The effective state of every feature, in `Feature` order.
    pub(crate) fn feature_states(&self) -> Vec<FeatureState> {
        feature_states(self.tier(), &self.features)
    }

    /// The settings message.
    pub(crate) fn settings_message(&self, features: &[FeatureState]) -> pb::TenantSettings {
        settings_message(&self.tenant, self.settings.as_ref(), features)
    }
}

/// The status of a tenant: soft-deleted counts as cancelled.
pub(crate) fn status_of(tenant: &TenantView) -> TenantStatus {
    if tenant.deleted_at.is_some() {
        TenantStatus::Cancelled
    } else {
        tiers::status_from_db(&tenant.status)
    }
}

/// Whether members may use the tenant (not suspended, not cancelled).
pub(crate) fn is_usable(status: TenantStatus) -> bool {
    !matches!(status, TenantStatus::Suspended | TenantStatus::Cancelled)
}

/// The effective state of every feature for a tier and the stored decisions: an operator
/// override wins; then an org-admin toggle of a feature the tier offers; otherwise the tier's
/// default.
pub(crate) fn feature_states(tier: SubscriptionTier, rows: &[FeatureRow]) -> Vec<FeatureState> {
    MATRIX
        .iter()
        .enumerate()
        .map(|(i, (feature, name, _))| {
            let row = rows.iter().find(|r| r.feature == *name);
            let available = tiers::offers(tier, i);
            let (enabled, source) = match row {
                Some(r) if r.source == SOURCE_OVERRIDE => {
                    (r.enabled, FeatureSource::OperatorOverride)
                }
                Some(r) if r.source == SOURCE_ORG_ADMIN && available => {
                    (r.enabled, FeatureSource::OrgAdmin)
                }
                _ => (
                    tiers::offer(tier, i) == Offer::Default,
                    FeatureSource::TierDefault,
                ),
            };
            FeatureState {
                feature: *feature as i32,
                enabled,
                available,
                source: source as i32,
                available_in_tiers: tiers::tiers_offering(i),
            }
        })
        .collect()
}

/// The enabled features of a feature list.
pub(crate) fn enabled_features(features: &[FeatureState]) -> Vec<i32> {
    features
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.feature)
        .collect()
}

/// Whether a feature is enabled in a feature list.
pub(crate) fn is_enabled(features: &[FeatureState], feature: Feature) -> bool {
    features
        .iter()
        .any(|f| f.feature == feature as i32 && f.enabled)
}

/// The limits of a tenant.
pub(crate) fn limits(t: &TenantView) -> TenantLimits {
    TenantLimits {
        max_users: t.max_users,
        max_classes: t.max_classes,
        max_storage_gb: t.max_storage_gb,
        max_api_calls_per_month: i64::from(t.max_api_calls_per_month),
        max_roblox_sessions: t.max_roblox_sessions,
    }
}

fn get_bool(o: &Json, key: &str, default: bool) -> bool {
    o.get(key).and_then(Json::as_bool).unwrap_or(default)
}

fn get_i32(o: &Json, key: &str, default: i32) -> i32 {
    o.get(key)
        .and_then(Json::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(default)
}

/// The security message of a stored security object (defaults for missing keys).
pub(crate) fn security_message(s: &Json) -> pb::SecuritySettings {
    let empty = json!({});
    let policy = s.get("password_policy").unwrap_or(&empty);
    pb::SecuritySettings {
        sso_enabled: get_bool(s, "sso_enabled", false),
        session_timeout_minutes: get_i32(s, "session_timeout_minutes", 60),
        password_policy: Some(pb::PasswordPolicy {
            min_length: get_i32(policy, "min_length", 8),
            require_uppercase: get_bool(policy, "require_uppercase", true),
            require_lowercase: get_bool(policy, "require_lowercase", true),
            require_numbers: get_bool(policy, "require_numbers", true),
            require_symbols: get_bool(policy, "require_symbols", false),
            expiration_days: get_i32(s, "password_expiry_days", 90),
        }),
        max_login_attempts: get_i32(s, "max_login_attempts", 5),
        two_factor_required: get_bool(s, "enable_two_factor", false),
        sso_configuration: Some(
            s.get("sso_configuration")
                .map(json_value_to_struct)
                .unwrap_or_default(),
        ),
    }
}

/// The compliance message of a stored compliance object (defaults for missing keys).
pub(crate) fn compliance_message(c: &Json) -> pb::ComplianceSettings {
    pb::ComplianceSettings {
        audit_logs_enabled: get_bool(c, "audit_logs_enabled", true),
        coppa_compliant: get_bool(c, "coppa_compliance_required", true),
        ferpa_compliant: get_bool(c, "ferpa_compliance_required", false),
        data_retention_days: get_i32(c, "data_retention_days", 365),
    }
}

/// The settings message of a tenant; a missing settings row reads as the defaults, version 0.
pub(crate) fn settings_message(
    tenant: &TenantView,
    settings: Option<&SettingsRow>,
    features: &[FeatureState],
) -> pb::TenantSettings {
    let empty = Json::Object(Map::new());
    let (security, compliance, custom) = settings.map_or((&empty, &empty, &empty), |s| {
        (&s.security, &s.compliance, &s.custom_settings)
    });
    pb::TenantSettings {
        tenant_id: tenant.id.to_string(),
        tenant_name: tenant.name.clone(),
        tenant_slug: tenant.slug.clone(),
        timezone: settings.map_or_else(|| "UTC".to_owned(), |s| s.timezone.clone()),
        locale: settings.map_or_else(|| "en-US".to_owned(), |s| s.locale.clone()),
        display_name: tenant.display_name.clone().unwrap_or_default(),
        description: tenant.description.clone().unwrap_or_default(),
        branding: Some(pb::Branding {
            logo_url: settings
                .and_then(|s| s.logo_url.clone())
                .unwrap_or_default(),
            primary_color: settings
                .and_then(|s| s.primary_color.clone())
                .unwrap_or_default(),
            secondary_color: settings
                .and_then(|s| s.secondary_color.clone())
                .unwrap_or_default(),
            custom_domain: settings
                .and_then(|s| s.custom_domain.clone())
                .unwrap_or_default(),
            custom_css: settings
                .and_then(|s| s.custom_css.clone())
                .unwrap_or_default(),
            default_theme: settings
                .and_then(|s| s.default_theme.clone())
                .unwrap_or_else(|| DEFAULT_THEME.to_owned()),
        }),
        security: Some(security_message(security)),
        compliance: Some(compliance_message(compliance)),
        custom_settings: Some(custom.as_object().map(json_to_struct).unwrap_or_default()),
        enabled_features: enabled_features(features),
        version: settings.map_or(0, |s| s.version),
        updated_at: Some(timestamp(
            settings.map_or(tenant.updated_at, |s| s.updated_at),
        )),
    }
}
