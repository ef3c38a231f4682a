//! DeprovisionTenant (soft: suspend; hard: backup, then delete every row of the tenant in one
//! transaction; dry run: counts), ListBackups and RestoreTenant.
//!
//! These are platform operations on every tenant table, so they run in `Scope::Platform` and
//! synchronously inside the RPC; their idempotency keys live in `idempotency_keys` (with no
//! tenant for a hard delete, so the key outlives the tenant). They are not stored as
//! provisioning jobs: the schema's jobs cascade away with the tenant and only know the
//! provisioning step names, so `job_id` is empty in their responses.

use std::collections::HashMap;
use std::path::PathBuf;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message;
use sha2::{Digest, Sha256};
use tenantry_db::models::backup::{self, Backup, NewBackup, TenantTable};
use tenantry_db::models::idempotency::{self, Claim};
use tenantry_db::models::provisioning as jobs;
use tenantry_db::schema::organizations;
use tenantry_db::{Scope, set_scope};
use tenantry_proto::common::v1 as common_pb;
use tenantry_proto::provisioning::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use uuid::Uuid;

use super::{
    Actor, Event, State, audit, check_request_id, decode_token, encode_token, optional_uuid,
    page_size, required_uuid, timestamp,
};
use crate::archive;

const DEPROVISION: &str = "/tenantry.provisioning.v1.ProvisioningService/DeprovisionTenant";
const RESTORE: &str = "/tenantry.provisioning.v1.ProvisioningService/RestoreTenant";

fn tenant_status(s: &str) -> common_pb::TenantStatus {
    match s {
        "active" => common_pb::TenantStatus::Active,
        "suspended" => common_pb::TenantStatus::Suspended,
        "trial" => common_pb::TenantStatus::Trial,
        "pending" => common_pb::TenantStatus::Pending,
        "cancelled" => common_pb::TenantStatus::Cancelled,
        _ => common_pb::TenantStatus::Unspecified,
    }
}

fn not_found_tenant(e: diesel::result::Error) -> ApiError {
    match e {
        diesel::result::Error::NotFound => ApiError::NotFound("tenant"),
        e => e.into(),
    }
}

/// Locks a tenant row; returns (slug, status, deleted).
async fn lock_tenant(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> ApiResult<(String, String, bool)> {
    let (slug, status, deleted_at): (String, String, Option<chrono::DateTime<chrono::Utc>>) =
        organizations::table
            .find(tenant)
            .select((
                organizations::slug,
                organizations::status,
                organizations::deleted_at,
            ))
            .for_update()
            .get_result(conn)
            .await
            .map_err(not_found_tenant)?;
    Ok((slug, status, deleted_at.is_some()))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> ApiResult<M> {
    M::decode(bytes).map_err(|e| ApiError::internal(format!("stored response: {e}")))
}

/// Handles DeprovisionTenant.
pub(crate) async fn deprovision(
    state: &State,
    actor: &Actor,
    r: pb::DeprovisionTenantRequest,
) -> ApiResult<pb::DeprovisionTenantResponse> {
    let mut v = Violations::new();
    let tenant = required_uuid(&mut v, "tenant_id", &r.tenant_id);
    let mode = pb::DeprovisionMode::try_from(r.mode).unwrap_or(pb::DeprovisionMode::Unspecified);
    if mode == pb::DeprovisionMode::Unspecified {
        v.add("mode", "must be SOFT or HARD");
    }
    let reason = r.reason.trim().to_owned();
    if reason.is_empty() {
        v.add("reason", "is required");
    } else if reason.chars().count() > 500 {
        v.add("reason", "must be at most 500 characters");
    }
    if !r.dry_run {
        check_request_id(&mut v, &r.request_id);
    } else if r.request_id.chars().count() > 128 {
        v.add("request_id", "must be at most 128 characters");
    }
    v.finish()?;
    let Some(tenant) = tenant else {
        return Err(ApiError::field("tenant_id", "is required"));
    };
    if r.dry_run {
        return dry_run(state, tenant, mode).await;
    }
    let request_id = r.request_id.trim().to_owned();
    let hash = Sha256::digest(format!("{tenant}|{}|{reason}", mode as i32).as_bytes()).to_vec();
    match mode {
        pb::DeprovisionMode::Soft => soft(state, actor, tenant, &reason, &request_id, &hash).await,
        _ => hard(state, actor, tenant, &reason, &request_id, &hash).await,
    }
}

async fn dry_run(
    state: &State,
    tenant: Uuid,
    mode: pb::DeprovisionMode,
) -> ApiResult<pb::DeprovisionTenantResponse> {
    let mut conn = state.pool.get().await?;
    let (status, counts) = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let target = jobs::find_target(conn, tenant)
                .await
                .map_err(not_found_tenant)?;
            let mut counts = HashMap::new();
            if mode == pb::DeprovisionMode::Hard {
                for t in backup::tenant_tables(conn).await? {
                    let n = backup::count_rows(conn, &t, tenant).await?;
                    counts.insert(t.name, n);
                }
            }
            Ok::<_, ApiError>((target.status, counts))
        })
        .await?;
    Ok(pb::DeprovisionTenantResponse {
        tenant_id: tenant.to_string(),
        mode: mode as i32,
        dry_run: true,
        row_counts: counts,
        status: if mode == pb::DeprovisionMode::Soft {
            common_pb::TenantStatus::Suspended as i32
        } else {
            tenant_status(&status) as i32
        },
        ..Default::default()
    })
}

async fn soft(
    state: &State,
    actor: &Actor,
    tenant: Uuid,
    reason: &str,
    request_id: &str,
    hash: &[u8],
) -> ApiResult<pb::DeprovisionTenantResponse> {
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        // Lock first, so NOT_FOUND comes before the key is claimed.
        let (_, status, deleted) = lock_tenant(conn, tenant).await?;
        match idempotency::claim(conn, DEPROVISION, request_id, Some(tenant), hash).await? {
            Claim::Fresh => {}
            Claim::Replay(bytes) => return decode(&bytes),
            Claim::Mismatch => {
                return Err(ApiError::field(
                    "request_id",
                    "was already used with a different payload",
                ));
            }
            Claim::Pending => {
                return Err(ApiError::Status(tonic::Status::aborted(
                    "the same request is still running",
                )));
            }
        }
        if deleted || status == "cancelled" {
            return Err(ApiError::FailedPrecondition(
                "tenant is cancelled or deleted".into(),
            ));
        }
        diesel::update(organizations::table.find(tenant))
            .set((
                organizations::status.eq("suspended"),
                organizations::suspended_at.eq(diesel::dsl::now),
                organizations::suspension_reason.eq(reason),
            ))
            .execute(conn)
            .await?;
        audit(
            conn,
            Event {
                tenant: Some(tenant),
                target: ("tenant", tenant),
                actor_id: Some(&actor.id),
                actor_role: Some(&actor.role),
                method: "DeprovisionTenant",
                metadata: serde_json::json!({
                    "mode": "soft",
                    "reason": reason,
                    "changed_fields": ["status", "suspended_at", "suspension_reason"],
                }),
                request_id: Some(request_id),
            },
        )
        .await?;
        let response = pb::DeprovisionTenantResponse {
            tenant_id: tenant.to_string(),
            mode: pb::DeprovisionMode::Soft as i32,
            status: common_pb::TenantStatus::Suspended as i32,
            ..Default::default()
        };
        idempotency::complete(
            conn,
            DEPROVISION,
            request_id,
            Some(tenant),
            &response.encode_to_vec(),
        )
        .await?;
        Ok(response)
    })
    .await
}

async fn hard(
    state: &State,
    actor: &Actor,
    tenant: Uuid,
    reason: &str,
    request_id: &str,
    hash: &[u8],
) -> ApiResult<pb::DeprovisionTenantResponse> {
    let backup_id = Uuid::new_v4();
    let base = state.workflow.backup_dir.clone();
    let mut written_dir: Option<PathBuf> = None;
    let mut conn = state.pool.get().await?;
    // REPEATABLE READ: the export and the delete see the same snapshot; a concurrent change to
    // a row of the tenant makes the delete fail (and roll back) rather than lose the change.
    let result = conn
        .build_transaction()
        .repeatable_read()
        .run(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            match idempotency::claim(conn, DEPROVISION, request_id, None, hash).await? {
                Claim::Fresh => {}
                Claim::Replay(bytes) => return decode(&bytes),
                Claim::Mismatch => {
                    return Err(ApiError::field(
                        "request_id",
                        "was already used with a different payload",
                    ));
                }
                Claim::Pending => {
                    return Err(ApiError::Status(tonic::Status::aborted(
                        "the same request is still running",
                    )));
                }
            }
            let (slug, _, _) = lock_tenant(conn, tenant).await?;
            if jobs::has_active(conn, tenant).await? {
                return Err(ApiError::FailedPrecondition(
                    "a provisioning job of this tenant is running".into(),
                ));
            }
            let tables = backup::tenant_tables(conn).await?;
            let mut exported = Vec::with_capacity(tables.len());
            for t in &tables {
                exported.push((t.name.clone(), backup::export_rows(conn, t, tenant).await?));
            }
            let meta = archive::Meta {
                backup_id,
                tenant_id: tenant,
                tenant_slug: &slug,
                created_by: &actor.id,
                reason,
            };
            let written = archive::write(&base, &meta, &exported).await.map_err(|e| {
                tracing::error!(error = %e, "cannot write a backup");
                ApiError::FailedPrecondition(
                    "the backup could not be written: nothing was deleted".into(),
                )
            })?;
            written_dir = Some(written.dir.clone());
            let path = written.dir.to_string_lossy().into_owned();
            backup::insert(
                conn,
                &NewBackup {
                    id: backup_id,
                    organization_id: tenant,
                    path: &path,
                    manifest: written.manifest.clone(),
                    checksum: &written.checksum,
                    size_bytes: written.size,
                    created_by: Some(&actor.id),
                },
            )
            .await?;
            let mut counts = HashMap::new();
            for (t, (_, rows)) in tables.iter().zip(&exported).rev() {
                let n = backup::delete_rows(conn, t, tenant).await?;
                if n != rows.len() {
                    return Err(ApiError::Unavailable(
                        "the tenant changed during the backup: retry".into(),
                    ));
                }
                counts.insert(t.name.clone(), i64::try_from(n).unwrap_or(i64::MAX));
            }
            for t in &tables {
                if backup::count_rows(conn, t, tenant).await? != 0 {
                    return Err(ApiError::internal(format!(
                        "rows of the tenant left in {}",
                        t.name
                    )));
                }
            }
            // The tenant's own events went with it: a platform event on the organization.
            audit(
                conn,
                Event {
                    tenant: None,
                    target: ("organization", tenant),
                    actor_id: Some(&actor.id),
                    actor_role: Some(&actor.role),
                    method: "DeprovisionTenant",
                    metadata: serde_json::json!({
                        "mode": "hard",
                        "reason": reason,
                        "backup_id": backup_id.to_string(),
                    }),
                    request_id: Some(request_id),
                },
            )
            .await?;
            let response = pb::DeprovisionTenantResponse {
                tenant_id: tenant.to_string(),
                mode: pb::DeprovisionMode::Hard as i32,
                dry_run: false,
                row_counts: counts,
                backup_id: backup_id.to_string(),
                backup_path: path,
                job_id: String::new(),
                status: 0,
            };
            idempotency::complete(
                conn,
                DEPROVISION,
                request_id,
                None,
                &response.encode_to_vec(),
            )
            .await?;
            Ok(response)
        })
        .await;
    if result.is_err()
        && let Some(dir) = written_dir
    {
        // Nothing was deleted: the archive of a rolled-back delete is not a backup.
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    if result.is_ok() {
        tracing::info!(tenant.id = %tenant, backup.id = %backup_id, "tenant deleted after backup");
    }
    result
}

fn backup_to_pb(b: &Backup) -> pb::Backup {
    let tables = b
        .manifest
        .get("tables")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    pb::Backup {
        backup_id: b.id.to_string(),
        tenant_id: b.organization_id.to_string(),
        tenant_slug: b
            .manifest
            .get("tenant_slug")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned(),
        path: b.path.clone(),
        created_at: Some(timestamp(b.created_at)),
        row_counts: tables
            .iter()
            .filter_map(|t| {
                Some((
                    t.get("name")?.as_str()?.to_owned(),
                    i64::try_from(t.get("rows")?.as_u64()?).ok()?,
                ))
            })
            .collect(),
        checksum: b.checksum.clone(),
        size_bytes: b.size_bytes.unwrap_or_default(),
        job_id: String::new(),
    }
}

/// Handles ListBackups.
pub(crate) async fn list_backups(
    state: &State,
    r: pb::ListBackupsRequest,
) -> ApiResult<pb::ListBackupsResponse> {
    let mut v = Violations::new();
    let tenant = optional_uuid(&mut v, "tenant_id", &r.tenant_id);
    let limit = page_size(&mut v, r.page_size);
    let after = decode_token(&mut v, &r.page_token);
    v.finish()?;
    let mut conn = state.pool.get().await?;
    let (page, total) = conn
        .transaction(async |conn| {
            set_scope(conn, Scope::Platform).await?;
            let page = backup::list_page(conn, tenant, after, limit + 1).await?;
            let total = backup::count(conn, tenant).await?;
            Ok::<_, ApiError>((page, total))
        })
        .await?;
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = page.len() > take;
    let page: Vec<_> = page.into_iter().take(take).collect();
    let next_page_token = match (more, page.last()) {
        (true, Some(last)) => encode_token(last.created_at, last.id),
        _ => String::new(),
    };
    Ok(pb::ListBackupsResponse {
        backups: page.iter().map(backup_to_pb).collect(),
        next_page_token,
        total_size: i32::try_from(total).unwrap_or(i32::MAX),
    })
}

/// Handles RestoreTenant.
pub(crate) async fn restore(
    state: &State,
    actor: &Actor,
    r: pb::RestoreTenantRequest,
) -> ApiResult<pb::RestoreTenantResponse> {
    let mut v = Violations::new();
    let backup_id = required_uuid(&mut v, "backup_id", &r.backup_id);
    check_request_id(&mut v, &r.request_id);
    v.finish()?;
    let Some(backup_id) = backup_id else {
        return Err(ApiError::field("backup_id", "is required"));
    };
    let request_id = r.request_id.trim().to_owned();
    let hash = Sha256::digest(backup_id.as_bytes()).to_vec();
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        set_scope(conn, Scope::Platform).await?;
        // A retry is answered first, before "the tenant exists again".
        if let Some((stored_hash, Some(bytes))) = stored(conn, RESTORE, &request_id).await? {
            if stored_hash != hash {
                return Err(ApiError::field(
                    "request_id",
                    "was already used with a different payload",
                ));
            }
            return decode(&bytes);
        }
        let b = backup::find(conn, backup_id).await.map_err(|e| match e {
            diesel::result::Error::NotFound => ApiError::NotFound("backup"),
            e => e.into(),
        })?;
        let tenant = b.organization_id;
        let tables = archive::read(&PathBuf::from(&b.path), &b.checksum)
            .await
            .map_err(|e| {
                ApiError::FailedPrecondition(format!("the backup cannot be restored: {e}"))
            })?;
        let exists: bool = diesel::select(diesel::dsl::exists(
            organizations::table.filter(organizations::id.eq(tenant)),
        ))
        .get_result(conn)
        .await?;
        if exists {
            return Err(ApiError::AlreadyExists("the tenant exists".into()));
        }
        let slug = b
            .manifest
            .get("tenant_slug")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned();
        let slug_taken: bool = diesel::select(diesel::dsl::exists(
            organizations::table.filter(organizations::slug.eq(&slug)),
        ))
        .get_result(conn)
        .await?;
        if slug_taken {
            return Err(ApiError::AlreadyExists(format!(
                "the slug {slug} is taken by another tenant"
            )));
        }
        let order = backup::tenant_tables(conn).await?;
        let mut counts = HashMap::new();
        for (name, _) in &tables {
            if !order.iter().any(|t| &t.name == name) {
                return Err(ApiError::FailedPrecondition(format!(
                    "the backup holds table {name}, which no longer exists"
                )));
            }
        }
        for t in &order {
            let Some((_, rows)) = tables.iter().find(|(n, _)| n == &t.name) else {
                continue;
            };
            let mut n = 0;
            for chunk in rows.chunks(500) {
                n += import(conn, t, chunk).await?;
            }
            if n != rows.len() {
                return Err(ApiError::internal(format!(
                    "restored {n} rows of {}",
                    t.name
                )));
            }
            counts.insert(t.name.clone(), i64::try_from(n).unwrap_or(i64::MAX));
        }
        let status: String = organizations::table
            .find(tenant)
            .select(organizations::status)
            .get_result(conn)
            .await?;
        audit(
            conn,
            Event {
                tenant: Some(tenant),
                target: ("tenant", tenant),
                actor_id: Some(&actor.id),
                actor_role: Some(&actor.role),
                method: "RestoreTenant",
                metadata: serde_json::json!({ "backup_id": backup_id.to_string() }),
                request_id: Some(&request_id),
            },
        )
        .await?;
        let response = pb::RestoreTenantResponse {
            tenant_id: tenant.to_string(),
            row_counts: counts,
            job_id: String::new(),
            status: tenant_status(&status) as i32,
        };
        match idempotency::claim(conn, RESTORE, &request_id, Some(tenant), &hash).await? {
            Claim::Fresh => {}
            _ => {
                return Err(ApiError::Status(tonic::Status::aborted(
                    "the same request ran concurrently: retry",
                )));
            }
        }
        idempotency::complete(
            conn,
            RESTORE,
            &request_id,
            Some(tenant),
            &response.encode_to_vec(),
        )
        .await?;
        Ok(response)
    })
    .await
}

async fn stored(
    conn: &mut AsyncPgConnection,
    method: &str,
    key: &str,
) -> ApiResult<Option<(Vec<u8>, Option<Vec<u8>>)>> {
    use tenantry_db::schema::idempotency_keys as k;
    Ok(k::table
        .find((method, key))
        .select((k::request_hash, k::response))
        .first(conn)
        .await
        .optional()?)
}

async fn import(
    conn: &mut AsyncPgConnection,
    table: &TenantTable,
    rows: &[String],
) -> ApiResult<usize> {
    let mut array = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(row);
    }
    array.push(']');
    backup::import_rows(conn, table, &array)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => ApiError::AlreadyExists(format!(
                "a row of {} exists again: nothing restored",
                table.name
            )),
            e => e.into(),
        })
}
