//! GetIntegrations, UpdateIntegration, RemoveIntegration. Secrets are write-only: a response
//! names the stored secrets (`is_set`), never their values, and nothing logs them. They are
//! stored encrypted (AES-256-GCM, see [`crate::crypto`]) and never decrypted here.

use diesel_async::AsyncConnection as _;
use serde_json::{Map, Value as Json};
use tenantry_auth::{Caller, OrgRole};
use tenantry_db::models::settings::{self as db, IntegrationRow};
use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tonic::Request;
use uuid::Uuid;

use super::audit::Actor;
use super::{SettingsApi, load_usable, scope, target};
use crate::api::settings::MAX_JSON_BYTES;
use crate::convert::{json_to_struct, jsonb_text_len, struct_to_json, timestamp};
use crate::crypto::{Sealer, SecretContext};

/// Most secrets per integration.
const MAX_SECRETS: usize = 32;
/// Longest secret value, in bytes.
const MAX_SECRET_BYTES: usize = 4096;
/// Config keys that look like they hold a secret (they belong in `secrets`).
const SECRET_WORDS: [&str; 8] = [
    "secret",
    "password",
    "passwd",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
];

fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_secret_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Paths of keys in `config` that look like secrets.
fn secret_looking_keys(prefix: &str, map: &Map<String, Json>, out: &mut Vec<String>) {
    for (k, v) in map {
        let path = format!("{prefix}.{k}");
        let lower = k.to_ascii_lowercase();
        if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
            out.push(path.clone());
        }
        if let Json::Object(inner) = v {
            secret_looking_keys(&path, inner, out);
        }
    }
}

/// The message of an integration: `full` adds config and secret names (admins).
fn message(row: &IntegrationRow, full: bool) -> pb::Integration {
    pb::Integration {
        name: row.name.clone(),
        enabled: row.enabled,
        config: full.then(|| {
            row.config
                .as_object()
                .map(json_to_struct)
                .unwrap_or_default()
        }),
        secret_fields: if full {
            row.secret_names()
                .into_iter()
                .map(|n| pb::SecretField {
                    name: n.to_owned(),
                    is_set: true,
                })
                .collect()
        } else {
            Vec::new()
        },
        updated_at: Some(timestamp(row.updated_at)),
    }
}

fn secret_context<'a>(tenant: Uuid, integration: &'a str, name: &'a str) -> SecretContext<'a> {
    SecretContext {
        tenant,
        integration,
        name,
    }
}

fn is_admin(caller: &Caller) -> bool {
    caller.has_org_role(OrgRole::Admin)
}

impl SettingsApi {
    pub(super) async fn get_integrations(
        &self,
        request: Request<pb::GetIntegrationsRequest>,
    ) -> ApiResult<pb::GetIntegrationsResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let full = is_admin(&caller) || caller.is_super_admin();
        let mut conn = self.state.conn().await?;
        let rows = conn
            .transaction(async |conn| -> ApiResult<Vec<IntegrationRow>> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await?;
                Ok(db::list_integrations(conn, tenant).await?)
            })
            .await?;
        Ok(pb::GetIntegrationsResponse {
            tenant_id: tenant.to_string(),
            integrations: rows.iter().map(|r| message(r, full)).collect(),
        })
    }

    pub(super) async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> ApiResult<pb::UpdateIntegrationResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let r = request.get_ref();
        let mut v = Violations::new();
        let name = r.name.trim();
        v.check(
            is_name(name),
            "name",
            "must be 1 to 64 characters of a-z, 0-9, _ and -",
        );
        let config = match &r.config {
            None => None,
            Some(s) => match struct_to_json(s) {
                Ok(m) => {
                    if jsonb_text_len(&Json::Object(m.clone())) > MAX_JSON_BYTES {
                        v.add("config", "must be at most 64 KiB");
                    }
                    let mut secretish = Vec::new();
                    secret_looking_keys("config", &m, &mut secretish);
                    for path in secretish {
                        v.add(&path, "looks like a secret: put it in secrets");
                    }
                    Some(m)
                }
                Err(e) => {
                    v.add("config", e);
                    None
                }
            },
        };
        v.check(
            r.secrets.len() <= MAX_SECRETS,
            "secrets",
            "at most 32 secrets per integration",
        );
        let mut secret_names: Vec<&String> = r.secrets.keys().collect();
        secret_names.sort();
        for key in secret_names {
            let field = format!("secrets[{key}]");
            if !is_secret_name(key) {
                // Name the key only: a value is never echoed.
                v.add(
                    &field,
                    "secret names are 1 to 64 characters of a-z, 0-9 and _",
                );
            } else if r
                .secrets
                .get(key)
                .is_some_and(|s| s.len() > MAX_SECRET_BYTES)
            {
                v.add(&field, "a secret is at most 4096 bytes");
            }
        }
        v.finish()?;
        let enabled = r.enabled;
        let config_given = config.is_some();
        let secrets = &r.secrets;
        let sealer = &self.state.sealer;
        let mut conn = self.state.conn().await?;
        let row = conn
            .transaction(async |conn| -> ApiResult<IntegrationRow> {
                tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
                load_usable(conn, &caller, tenant).await?;
                db::lock_settings(conn, tenant).await?;
                let existing = db::find_integration_for_update(conn, tenant, name).await?;
                let enabled = enabled.unwrap_or(existing.as_ref().is_some_and(|e| e.enabled));
                let config = config.map_or_else(
                    || {
                        existing
                            .as_ref()
                            .map_or_else(|| Json::Object(Map::new()), |e| e.config.clone())
                    },
                    Json::Object,
                );
                let mut stored = existing
                    .as_ref()
                    .and_then(|e| e.secrets.as_object().cloned())
                    .unwrap_or_default();
                for (key, value) in secrets {
                    if value.is_empty() {
                        stored.remove(key);
                    } else {
                        let sealed = sealer.seal(&secret_context(tenant, name, key), value);
                        stored.insert(key.clone(), Json::String(sealed));
                    }
                }
                // A value stored in the clear before secrets were encrypted at rest is
                // encrypted on the integration's next update.
                for (key, value) in &mut stored {
                    if let Json::String(s) = value
                        && !Sealer::is_sealed(s)
                    {
                        *s = sealer.seal(&secret_context(tenant, name, key), s);
                    }
                }
                let stored = Json::Object(stored);
                if jsonb_text_len(&stored) > MAX_JSON_BYTES {
                    return Err(ApiError::field("secrets", "must be at most 64 KiB in all"));
                }
                let row =
                    db::upsert_integration(conn, tenant, name, enabled, &config, &stored).await?;
                db::bump_version(conn, tenant).await?;
                // The names of the secret keys set or removed, never a value (sealed or not).
                let mut secrets_set: Vec<&str> = Vec::new();
                let mut secrets_removed: Vec<&str> = Vec::new();
                for (key, value) in secrets {
                    if value.is_empty() {
                        secrets_removed.push(key);
                    } else {
                        secrets_set.push(key);
                    }
                }
                secrets_set.sort_unstable();
                secrets_removed.sort_unstable();
                let mut changed_fields = Vec::new();
                if existing.is_none() || existing.as_ref().is_some_and(|e| e.enabled != enabled) {
                    changed_fields.push("enabled");
                }
                if config_given {
                    changed_fields.push("config");
                }
                if !secrets.is_empty() {
                    changed_fields.push("secrets");
                }
                actor
                    .record(
                        conn,
                        tenant,
                        "UpdateIntegration",
                        ("integration", name),
                        serde_json::json!({
                            "created": existing.is_none(),
                            "changed_fields": changed_fields,
                            "secrets_set": secrets_set,
                            "secrets_removed": secrets_removed,
                        }),
                    )
                    .await?;
                Ok(row)
            })
            .await?;
        Ok(pb::UpdateIntegrationResponse {
            integration: Some(message(&row, true)),
        })
    }

    pub(super) async fn remove_integration(
        &self,
        request: Request<pb::RemoveIntegrationRequest>,
    ) -> ApiResult<pb::RemoveIntegrationResponse> {
        let (caller, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let actor = Actor::of(&caller, &request, None);
        let name = request.get_ref().name.trim();
        if !is_name(name) {
            return Err(ApiError::field(
                "name",
                "must be 1 to 64 characters of a-z, 0-9, _ and -",
            ));
        }
        let mut conn = self.state.conn().await?;
        conn.transaction(async |conn| -> ApiResult<()> {
            tenantry_db::set_scope(conn, scope(&caller, tenant)).await?;
            load_usable(conn, &caller, tenant).await?;
            db::lock_settings(conn, tenant).await?;
            if !db::delete_integration(conn, tenant, name).await? {
                return Err(ApiError::NotFound("integration"));
            }
            db::bump_version(conn, tenant).await?;
            actor
                .record(
                    conn,
                    tenant,
                    "RemoveIntegration",
                    ("integration", name),
                    serde_json::json!({ "changed_fields": ["enabled", "config", "secrets"] }),
                )
                .await?;
            Ok(())
        })
        .await?;
        Ok(pb::RemoveIntegrationResponse {})
    }
}
