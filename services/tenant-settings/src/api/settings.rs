//! GetSettings, UpdateSettings, UpdateCustomSettings, GetLimits, InitializeDefaults.

use std::collections::BTreeSet;

use diesel_async::AsyncConnection as _;
use serde_json::{Map, Value as Json};
use tenantry_db::Scope;
use tenantry_db::models::settings::{self as db, SettingsChangeset, TenantProfileChangeset};
use tenantry_proto::common::v1::{Feature, LimitMetric, MetricUsage, TenantUsage};
use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tonic::Request;

use super::audit::Actor;
use super::{SettingsApi, is_platform, load_usable, scope, target};
use crate::convert::{jsonb_text_len, struct_to_json};
use crate::view::{self, DEFAULT_SETTINGS, Home, TenantState};

/// Largest custom settings object, as Postgres renders it (`jsonb::text`).
pub(crate) const MAX_JSON_BYTES: usize = 64 * 1024;
/// Largest custom CSS, bytes.
const MAX_CSS_BYTES: usize = 64 * 1024;

/// Custom CSS: at most 64 KiB, no control characters but tab and line breaks, and no `</` (so
/// it cannot close the `<style>` element a client embeds it in).
fn is_safe_css(css: &str) -> bool {
    css.len() <= MAX_CSS_BYTES
        && !css
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        && !css.contains("</")
}

/// Every leaf path of TenantSettings that UpdateSettings writes.
const LEAVES: [&str; 25] = [
    "timezone",
    "locale",
    "display_name",
    "description",
    "branding.logo_url",
    "branding.primary_color",
    "branding.secondary_color",
    "branding.custom_domain",
    "branding.custom_css",
    "branding.default_theme",
    "security.sso_enabled",
    "security.session_timeout_minutes",
    "security.password_policy.min_length",
    "security.password_policy.require_uppercase",
    "security.password_policy.require_lowercase",
    "security.password_policy.require_numbers",
    "security.password_policy.require_symbols",
    "security.password_policy.expiration_days",
    "security.max_login_attempts",
    "security.two_factor_required",
    "security.sso_configuration",
    "compliance.audit_logs_enabled",
    "compliance.coppa_compliant",
    "compliance.ferpa_compliant",
    "compliance.data_retention_days",
];

/// Fields of TenantSettings that a mask may not name.
const READ_ONLY: [&str; 7] = [
    "tenant_id",
    "tenant_name",
    "tenant_slug",
    "custom_settings",
    "enabled_features",
    "version",
    "updated_at",
];

/// Expands an update mask into the leaf paths it names.
fn expand_mask(paths: &[String], v: &mut Violations) -> BTreeSet<&'static str> {
    let mut leaves = BTreeSet::new();
    if paths.is_empty() {
        v.add("update_mask", "is required");
    }
    for path in paths {
        let path = path.trim();
        let matched: Vec<&'static str> = LEAVES
            .iter()
            .copied()
            .filter(|leaf| {
                *leaf == path
                    || leaf
                        .strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .collect();
        if matched.is_empty() {
            if READ_ONLY.contains(&path) {
                v.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be updated here (output only, or UpdateCustomSettings)"
                    ),
                );
            } else {
                v.add("update_mask", format!("unknown path {path:?}"));
            }
        }
        leaves.extend(matched);
    }
    leaves
}

fn is_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

/// BCP 47 shape: a 2–3 letter language, then subtags of 2–8 letters or digits.
fn is_locale(s: &str) -> bool {
    let mut parts = s.split('-');
    let lang_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    lang_ok
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        && s.len() <= 10
}

/// A DNS host name: at least two labels of 1–63 letters, digits or inner hyphens, and a
/// non-numeric top-level label.
fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

fn is_https_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// `Some(None)` for an empty string (clear the column), `Some(Some(s))` otherwise.
fn nullable(s: &str) -> Option<Option<&str>> {
    Some((!s.is_empty()).then_some(s))
}

/// The validated values of an UpdateSettings request.
struct Update<'a> {
    leaves: BTreeSet<&'static str>,
    s: &'a pb::TenantSettings,
    security: pb::SecuritySettings,
    policy: pb::PasswordPolicy,
    compliance: pb::ComplianceSettings,
    branding: pb::Branding,
    domain: String,
    theme: String,
    sso_configuration: Option<Map<String, Json>>,
}

impl Update<'_> {
    fn has(&self, leaf: &str) -> bool {
        self.leaves.contains(leaf)
    }
}

fn validate_update(request: &pb::UpdateSettingsRequest) -> ApiResult<Update<'_>> {
    static EMPTY: std::sync::OnceLock<pb::TenantSettings> = std::sync::OnceLock::new();
    let mut v = Violations::new();
    let paths = request
        .update_mask
        .as_ref()
        .map(|m| m.paths.as_slice())
        .unwrap_or_default();
    let leaves = expand_mask(paths, &mut v);
    let s = match &request.settings {
        Some(s) => s,
        None => {
            if !leaves.is_empty() {
                v.add("settings", "is required");
            }
            EMPTY.get_or_init(pb::TenantSettings::default)
        }
    };
    let security = s.security.clone().unwrap_or_default();
    let policy = security.password_policy.unwrap_or_default();
    let compliance = s.compliance.unwrap_or_default();
    let branding = s.branding.clone().unwrap_or_default();
    let domain = branding.custom_domain.trim().to_ascii_lowercase();
    let theme = branding.default_theme.trim().to_owned();
    let mut sso_configuration = None;
    for leaf in &leaves {
        let field = format!("settings.{leaf}");
        let field = field.as_str();
        match *leaf {
            "timezone" => v.check(
                !s.timezone.is_empty()
                    && s.timezone.len() <= 100
                    && s.timezone.parse::<chrono_tz::Tz>().is_ok(),
                field,
                "must be an IANA time zone name, for example Europe/Paris",
            ),
            "locale" => v.check(
                is_locale(&s.locale),
                field,
                "must be a BCP 47 locale of at most 10 characters, for example en-US",
            ),
            "display_name" => v.check(
                s.display_name.chars().count() <= 250 && !has_control(&s.display_name),
                field,
                "must be at most 250 characters without control characters",
            ),
            "description" => v.check(
                s.description.chars().count() <= 5000,
                field,
                "must be at most 5000 characters",
            ),
            "branding.logo_url" => v.check(
                branding.logo_url.is_empty()
                    || (branding.logo_url.chars().count() <= 500
                        && is_https_url(&branding.logo_url)),
                field,
                "must be an https URL of at most 500 characters",
            ),
            "branding.primary_color" => v.check(
                branding.primary_color.is_empty() || is_colour(&branding.primary_color),
                field,
                "must look like #RRGGBB",
            ),
            "branding.secondary_color" => v.check(
                branding.secondary_color.is_empty() || is_colour(&branding.secondary_color),
                field,
                "must look like #RRGGBB",
            ),
            "branding.custom_domain" => v.check(
                domain.is_empty() || (domain.len() <= 255 && is_hostname(&domain)),
                field,
                "must be a host name such as learn.example.org",
            ),
            "branding.custom_css" => v.check(
                is_safe_css(&branding.custom_css),
                field,
                "must be at most 64 KiB, without control characters or \"</\"",
            ),
            "branding.default_theme" => v.check(
                branding.default_theme.trim().chars().count() <= 50
                    && !has_control(&branding.default_theme),
                field,
                "must be at most 50 characters",
            ),
            "security.session_timeout_minutes" => v.check(
                (5..=1440).contains(&security.session_timeout_minutes),
                field,
                "must be between 5 and 1440",
            ),
            "security.max_login_attempts" => v.check(
                (1..=20).contains(&security.max_login_attempts),
                field,
                "must be between 1 and 20",
            ),
            "security.password_policy.min_length" => v.check(
                (8..=128).contains(&policy.min_length),
                field,
                "must be between 8 and 128",
            ),
            "security.password_policy.expiration_days" => v.check(
                (0..=3650).contains(&policy.expiration_days),
                field,
                "must be between 0 and 3650",
            ),
            "security.sso_configuration" => {
                match struct_to_json(&security.sso_configuration.clone().unwrap_or_default()) {
                    Ok(m) if jsonb_text_len(&Json::Object(m.clone())) <= 16 * 1024 => {
                        sso_configuration = Some(m);
                    }
                    Ok(_) => v.add(field, "must be at most 16 KiB"),
                    Err(e) => v.add(field, e),
                }
            }
            "compliance.data_retention_days" => v.check(
                (1..=3650).contains(&compliance.data_retention_days),
                field,
                "must be between 1 and 3650",
            ),
            _ => {}
        }
    }
    v.finish()?;
    Ok(Update {
        leaves,
        s,
        security,
        policy,
        compliance,
        branding,
        domain,
        theme,
        sso_configuration,
    })
}

fn object(v: &Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap_or_default()
}

impl SettingsApi {
    pub(super) async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> ApiResult<pb::GetSettingsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let mut conn = self.state.conn().await?;
        let state = conn
            .transaction(async |conn| -> ApiResult<TenantState> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await
            })
            .await?;
        let features = state.feature_states();
        Ok(pb::GetSettingsResponse {
            settings: Some(state.settings_message(&features)),
        })
    }

    pub(super) async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> ApiResult<pb::UpdateSettingsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let u = validate_update(request.get_ref())?;
        let mut conn = self.state.conn().await?;
        let state = conn
            .transaction(async |conn| -> ApiResult<TenantState> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                let before = load_usable(conn, &caller, tenant).await?;
                let current = db::lock_settings(conn, tenant).await?;
                let features = before.feature_states();
                let old = before.settings_message(&features);
                let old_branding = old.branding.clone().unwrap_or_default();

                // Branding needs FEATURE_CUSTOM_BRANDING (to set a value; clearing is allowed).
                let branding_changes = [
                    (
                        "branding.logo_url",
                        &u.branding.logo_url,
                        &old_branding.logo_url,
                    ),
                    (
                        "branding.primary_color",
                        &u.branding.primary_color,
                        &old_branding.primary_color,
                    ),
                    (
                        "branding.secondary_color",
                        &u.branding.secondary_color,
                        &old_branding.secondary_color,
                    ),
                    (
                        "branding.custom_domain",
                        &u.domain,
                        &old_branding.custom_domain,
                    ),
                    (
                        "branding.custom_css",
                        &u.branding.custom_css,
                        &old_branding.custom_css,
                    ),
                    (
                        "branding.default_theme",
                        &u.theme,
                        &old_branding.default_theme,
                    ),
                ];
                let sets_branding = branding_changes
                    .iter()
                    .any(|(leaf, new, old)| u.has(leaf) && !new.is_empty() && new != old);
                if sets_branding && !view::is_enabled(&features, Feature::CustomBranding) {
                    return Err(ApiError::FailedPrecondition(
                        "branding requires the custom_branding feature".into(),
                    ));
                }
                if u.has("security.sso_enabled")
                    && u.security.sso_enabled
                    && !view::is_enabled(&features, Feature::Sso)
                {
                    return Err(ApiError::FailedPrecondition(
                        "single sign-on requires the sso feature".into(),
                    ));
                }
                if u.has("branding.custom_domain")
                    && !u.domain.is_empty()
                    && current.custom_domain.as_deref() != Some(u.domain.as_str())
                {
                    db::lock_custom_domain(conn, &u.domain).await?;
                    // Other tenants' rows are visible in platform mode only.
                    tenantry_db::set_scope(conn, Scope::Platform).await?;
                    let taken = db::custom_domain_taken(conn, &u.domain, tenant).await?;
                    tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                    if taken {
                        return Err(domain_taken());
                    }
                }

                let mut security = object(&current.security);
                let mut policy = security
                    .get("password_policy")
                    .map(object)
                    .unwrap_or_default();
                let mut compliance = object(&current.compliance);
                let p = &u.policy;
                let sec = &u.security;
                let com = &u.compliance;
                for leaf in &u.leaves {
                    match *leaf {
                        "security.sso_enabled" => {
                            security.insert("sso_enabled".into(), sec.sso_enabled.into());
                        }
                        "security.session_timeout_minutes" => {
                            security.insert(
                                "session_timeout_minutes".into(),
                                sec.session_timeout_minutes.into(),
                            );
                        }
                        "security.max_login_attempts" => {
                            security
                                .insert("max_login_attempts".into(), sec.max_login_attempts.into());
                        }
                        "security.two_factor_required" => {
                            security
                                .insert("enable_two_factor".into(), sec.two_factor_required.into());
                        }
                        "security.sso_configuration" => {
                            security.insert(
                                "sso_configuration".into(),
                                Json::Object(u.sso_configuration.clone().unwrap_or_default()),
                            );
                        }
                        "security.password_policy.expiration_days" => {
                            security
                                .insert("password_expiry_days".into(), p.expiration_days.into());
                        }
                        "security.password_policy.min_length" => {
                            policy.insert("min_length".into(), p.min_length.into());
                        }
                        "security.password_policy.require_uppercase" => {
                            policy.insert("require_uppercase".into(), p.require_uppercase.into());
                        }
                        "security.password_policy.require_lowercase" => {
                            policy.insert("require_lowercase".into(), p.require_lowercase.into());
                        }
                        "security.password_policy.require_numbers" => {
                            policy.insert("require_numbers".into(), p.require_numbers.into());
                        }
                        "security.password_policy.require_symbols" => {
                            policy.insert("require_symbols".into(), p.require_symbols.into());
                        }
                        "compliance.audit_logs_enabled" => {
                            compliance
                                .insert("audit_logs_enabled".into(), com.audit_logs_enabled.into());
                        }
                        "compliance.coppa_compliant" => {
                            compliance.insert(
                                "coppa_compliance_required".into(),
                                com.coppa_compliant.into(),
                            );
                        }
                        "compliance.ferpa_compliant" => {
                            compliance.insert(
                                "ferpa_compliance_required".into(),
                                com.ferpa_compliant.into(),
                            );
                        }
                        "compliance.data_retention_days" => {
                            compliance.insert(
                                "data_retention_days".into(),
                                com.data_retention_days.into(),
                            );
                        }
                        _ => {}
                    }
                }
                if u.leaves.iter().any(|l| {
                    l.starts_with("security.password_policy.")
                        && *l != "security.password_policy.expiration_days"
                }) {
                    security.insert("password_policy".into(), Json::Object(policy));
                }
                let security = Json::Object(security);
                let compliance = Json::Object(compliance);
                let changes = SettingsChangeset {
                    timezone: u.has("timezone").then_some(u.s.timezone.as_str()),
                    locale: u.has("locale").then_some(u.s.locale.as_str()),
                    logo_url: u
                        .has("branding.logo_url")
                        .then(|| nullable(&u.branding.logo_url))
                        .flatten(),
                    primary_color: u
                        .has("branding.primary_color")
                        .then(|| nullable(&u.branding.primary_color))
                        .flatten(),
                    secondary_color: u
                        .has("branding.secondary_color")
                        .then(|| nullable(&u.branding.secondary_color))
                        .flatten(),
                    custom_domain: u
                        .has("branding.custom_domain")
                        .then(|| nullable(&u.domain))
                        .flatten(),
                    custom_css: u
                        .has("branding.custom_css")
                        .then(|| nullable(&u.branding.custom_css))
                        .flatten(),
                    default_theme: u
                        .has("branding.default_theme")
                        .then(|| nullable(&u.theme))
                        .flatten(),
                    security: (security != current.security).then_some(&security),
                    compliance: (compliance != current.compliance).then_some(&compliance),
                    custom_settings: None,
                };
                db::update_settings(conn, tenant, &changes)
                    .await
                    .map_err(domain_violation)?;
                let profile = TenantProfileChangeset {
                    display_name: u
                        .has("display_name")
                        .then(|| nullable(u.s.display_name.trim()))
                        .flatten(),
                    description: u
                        .has("description")
                        .then(|| nullable(u.s.description.trim()))
                        .flatten(),
                };
                db::update_tenant_profile(conn, tenant, &profile).await?;
                actor
                    .record(
                        conn,
                        tenant,
                        "UpdateSettings",
                        ("settings", &tenant.to_string()),
                        serde_json::json!({ "changed_fields": u.leaves }),
                    )
                    .await?;
                TenantState::load(conn, tenant)
                    .await?
                    .ok_or(ApiError::NotFound("tenant"))
            })
            .await?;
        let features = state.feature_states();
        Ok(pb::UpdateSettingsResponse {
            settings: Some(state.settings_message(&features)),
        })
    }

    pub(super) async fn update_custom_settings(
        &self,
        request: Request<pb::UpdateCustomSettingsRequest>,
    ) -> ApiResult<pb::UpdateCustomSettingsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let patch = match &request.get_ref().settings {
            None => return Err(ApiError::field("settings", "is required")),
            Some(s) => struct_to_json(s).map_err(|e| ApiError::field("settings", &e))?,
        };
        if jsonb_text_len(&Json::Object(patch.clone())) > MAX_JSON_BYTES {
            return Err(ApiError::field("settings", "must be at most 64 KiB"));
        }
        let mut conn = self.state.conn().await?;
        let state = conn
            .transaction(async |conn| -> ApiResult<TenantState> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await?;
                let current = db::lock_settings(conn, tenant).await?;
                let mut merged = object(&current.custom_settings);
                for (key, value) in &patch {
                    if value.is_null() {
                        merged.remove(key);
                    } else {
                        merged.insert(key.clone(), value.clone());
                    }
                }
                let merged = Json::Object(merged);
                if jsonb_text_len(&merged) > MAX_JSON_BYTES {
                    return Err(ApiError::field(
                        "settings",
                        "custom settings must be at most 64 KiB once merged",
                    ));
                }
                let changes = SettingsChangeset {
                    custom_settings: Some(&merged),
                    ..SettingsChangeset::default()
                };
                db::update_settings(conn, tenant, &changes)
                    .await
                    .map_err(size_violation)?;
                // Key names only: the values are free-form and may be large.
                let (removed, set): (Vec<_>, Vec<_>) =
                    patch.iter().partition(|(_, value)| value.is_null());
                actor
                    .record(
                        conn,
                        tenant,
                        "UpdateCustomSettings",
                        ("settings", &tenant.to_string()),
                        serde_json::json!({
                            "changed_fields": ["custom_settings"],
                            "keys_set": set.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                            "keys_removed": removed.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                        }),
                    )
                    .await?;
                TenantState::load(conn, tenant)
                    .await?
                    .ok_or(ApiError::NotFound("tenant"))
            })
            .await?;
        let features = state.feature_states();
        Ok(pb::UpdateCustomSettingsResponse {
            settings: Some(state.settings_message(&features)),
        })
    }

    pub(super) async fn get_limits(
        &self,
        request: Request<pb::GetLimitsRequest>,
    ) -> ApiResult<pb::GetLimitsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let mut conn = self.state.conn().await?;
        let t = conn
            .transaction(async |conn| -> ApiResult<db::TenantView> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                let t = db::find_tenant(conn, tenant)
                    .await?
                    .ok_or(ApiError::NotFound("tenant"))?;
                super::ensure_usable(&caller, view::status_of(&t))?;
                Ok(t)
            })
            .await?;
        let metric = |m: LimitMetric, current: f64, maximum: f64| MetricUsage {
            metric: m as i32,
            current,
            maximum,
            remaining: (maximum - current).max(0.0),
            percentage: if maximum > 0.0 {
                current / maximum * 100.0
            } else {
                0.0
            },
        };
        Ok(pb::GetLimitsResponse {
            tenant_id: tenant.to_string(),
            limits: Some(view::limits(&t)),
            usage: Some(TenantUsage {
                current_users: t.current_users,
                current_classes: t.current_classes,
                current_storage_gb: t.current_storage_gb,
                current_api_calls_this_month: i64::from(t.current_api_calls_this_month),
                current_roblox_sessions: t.current_roblox_sessions,
            }),
            metrics: vec![
                metric(
                    LimitMetric::Users,
                    f64::from(t.current_users),
                    f64::from(t.max_users),
                ),
                metric(
                    LimitMetric::Classes,
                    f64::from(t.current_classes),
                    f64::from(t.max_classes),
                ),
                metric(
                    LimitMetric::StorageGb,
                    t.current_storage_gb,
                    t.max_storage_gb,
                ),
                metric(
                    LimitMetric::ApiCallsPerMonth,
                    f64::from(t.current_api_calls_this_month),
                    f64::from(t.max_api_calls_per_month),
                ),
                metric(
                    LimitMetric::RobloxSessions,
                    f64::from(t.current_roblox_sessions),
                    f64::from(t.max_roblox_sessions),
                ),
            ],
        })
    }

    pub(super) async fn initialize_defaults(
        &self,
        request: Request<pb::InitializeDefaultsRequest>,
    ) -> ApiResult<pb::InitializeDefaultsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        debug_assert!(is_platform(&caller));
        let mut conn = self.state.conn().await?;
        conn.transaction(async |conn| -> ApiResult<pb::InitializeDefaultsResponse> {
            tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
            db::find_tenant(conn, tenant)
                .await?
                .ok_or(ApiError::NotFound("tenant"))?;
            // A new row starts with empty objects, so the defaults below are written (and
            // reported) by this call rather than by the column defaults.
            let empty = Json::Object(Map::new());
            db::create_settings_if_missing(conn, tenant, &empty, &empty).await?;
            let current = db::lock_settings(conn, tenant).await?;
            let mut security = object(&current.security);
            let mut compliance = object(&current.compliance);
            let mut custom = object(&current.custom_settings);
            let mut response = pb::InitializeDefaultsResponse::default();
            let mut theme = None;
            for (key, home, value) in DEFAULT_SETTINGS {
                let target = match home {
                    Home::Security => &mut security,
                    Home::Compliance => &mut compliance,
                    Home::Custom => &mut custom,
                    Home::Theme => {
                        if current.default_theme.is_some() {
                            response.keys_kept.push(key.to_owned());
                        } else {
                            theme = Some(value);
                            response.keys_written.push(key.to_owned());
                        }
                        continue;
                    }
                };
                if target.contains_key(key) {
                    response.keys_kept.push(key.to_owned());
                } else {
                    target.insert(key.to_owned(), value.json());
                    response.keys_written.push(key.to_owned());
                }
            }
            let theme = theme.map(|t| t.json());
            response.version = if response.keys_written.is_empty() {
                current.version
            } else {
                let (security, compliance, custom) = (
                    Json::Object(security),
                    Json::Object(compliance),
                    Json::Object(custom),
                );
                let changes = SettingsChangeset {
                    security: Some(&security),
                    compliance: Some(&compliance),
                    custom_settings: Some(&custom),
                    default_theme: theme.as_ref().map(|t| t.as_str()),
                    ..SettingsChangeset::default()
                };
                let version = db::update_settings(conn, tenant, &changes)
                    .await
                    .map_err(size_violation)?
                    .version;
                // Only a call that wrote something is recorded: a retry (every key kept)
                // changes nothing.
                actor
                    .record(
                        conn,
                        tenant,
                        "InitializeDefaults",
                        ("settings", &tenant.to_string()),
                        serde_json::json!({ "keys_written": response.keys_written }),
                    )
                    .await?;
                version
            };
            Ok(response)
        })
        .await
    }
}

/// ALREADY_EXISTS naming the custom domain.
fn domain_taken() -> ApiError {
    ApiError::AlreadyExists(
        "settings.branding.custom_domain: the custom domain is used by another tenant".into(),
    )
}

/// Maps a violation of the unique index on custom domains (a concurrent claim the advisory
/// lock did not see, or a row written around the service) to [`domain_taken`].
fn domain_violation(e: diesel::result::Error) -> ApiError {
    if let diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::UniqueViolation,
        info,
    ) = &e
        && info.constraint_name() == Some(db::CUSTOM_DOMAIN_UNIQUE)
    {
        return domain_taken();
    }
    e.into()
}

/// Maps the custom-settings size constraint to a violation of `settings`.
fn size_violation(e: diesel::result::Error) -> ApiError {
    if let diesel::result::Error::DatabaseError(_, info) = &e
        && info.constraint_name() == Some("tenant_settings_custom_settings_size")
    {
        return ApiError::field(
            "settings",
            "custom settings must be at most 64 KiB once merged",
        );
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_locale("en-US") && is_locale("fr") && is_locale("zh-Hant-TW"));
        assert!(!is_locale("english") && !is_locale("en_US") && !is_locale("e"));
        assert!(is_hostname("learn.example.org") && is_hostname("a-b.co"));
        assert!(!is_hostname("localhost") && !is_hostname("-a.com") && !is_hostname("a..com"));
        assert!(!is_hostname("1.2.3.4"));
        assert!(is_colour("#A0b1C2") && !is_colour("A0B1C2") && !is_colour("#12345"));
        assert!(is_https_url("https://cdn.example.org/logo.png"));
        assert!(!is_https_url("http://cdn.example.org/logo.png"));
    }

    #[test]
    fn masks_expand_to_leaves() {
        let mut v = Violations::new();
        let leaves = expand_mask(
            &["security.password_policy".into(), "locale".into()],
            &mut v,
        );
        assert!(v.is_empty());
        assert_eq!(leaves.len(), 7);
        let mut v = Violations::new();
        expand_mask(&["version".into(), "nope".into()], &mut v);
        assert!(v.finish().is_err());
    }
}
