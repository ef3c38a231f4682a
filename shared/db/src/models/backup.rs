//! Tenant backups (`backups`, owned by provisioning, platform-scoped) and the generic per-table
//! export, delete and import that hard deprovisioning and restoring use.
//!
//! Tenant tables are discovered from the catalog (every table of schema `public` with an
//! `organization_id` column, plus `organizations` itself, minus `backups`), and ordered by their
//! foreign keys, so a table added by a later migration is backed up, deleted and restored
//! without code changes. Rows travel as `row_to_json` text and come back through
//! `json_populate_recordset`, so every column round-trips.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::backups;

/// A backup record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = backups, check_for_backend(diesel::pg::Pg))]
pub struct Backup {
    /// Backup id.
    pub id: Uuid,
    /// Tenant id (not a foreign key: the backup outlives the tenant).
    pub organization_id: Uuid,
    /// Folder of the backup.
    pub path: String,
    /// The manifest (row counts and checksums per table).
    pub manifest: serde_json::Value,
    /// SHA-256 of `manifest.json`, lowercase hex.
    pub checksum: String,
    /// Total size of the backup's files.
    pub size_bytes: Option<i64>,
    /// Subject of the caller who made it.
    pub created_by: Option<String>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A new backup record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = backups)]
pub struct NewBackup<'a> {
    /// Backup id.
    pub id: Uuid,
    /// Tenant id.
    pub organization_id: Uuid,
    /// Folder of the backup.
    pub path: &'a str,
    /// The manifest.
    pub manifest: serde_json::Value,
    /// SHA-256 of `manifest.json`.
    pub checksum: &'a str,
    /// Total size of the files.
    pub size_bytes: i64,
    /// Caller subject.
    pub created_by: Option<&'a str>,
}

/// Records a backup.
///
/// # Errors
///
/// The database error.
pub async fn insert(conn: &mut AsyncPgConnection, backup: &NewBackup<'_>) -> QueryResult<Backup> {
    diesel::insert_into(backups::table)
        .values(backup)
        .returning(Backup::as_returning())
        .get_result(conn)
        .await
}

/// Reads one backup.
///
/// # Errors
///
/// `NotFound`, or the database error.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Backup> {
    backups::table
        .find(id)
        .select(Backup::as_select())
        .get_result(conn)
        .await
}

fn filtered(tenant: Option<Uuid>) -> backups::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = backups::table.into_boxed();
    if let Some(t) = tenant {
        q = q.filter(backups::organization_id.eq(t));
    }
    q
}

/// One page of backups, newest first, after the keyset `(created_at, id)` of the previous page.
///
/// # Errors
///
/// The database error.
pub async fn list_page(
    conn: &mut AsyncPgConnection,
    tenant: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<Backup>> {
    let mut q = filtered(tenant);
    if let Some((at, id)) = after {
        q = q.filter(
            backups::created_at
                .lt(at)
                .or(backups::created_at.eq(at).and(backups::id.lt(id))),
        );
    }
    q.order((backups::created_at.desc(), backups::id.desc()))
        .limit(limit)
        .select(Backup::as_select())
        .load(conn)
        .await
}

/// Counts backups, of one tenant or all.
///
/// # Errors
///
/// The database error.
pub async fn count(conn: &mut AsyncPgConnection, tenant: Option<Uuid>) -> QueryResult<i64> {
    filtered(tenant).count().get_result(conn).await
}

/// A table that holds tenant rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTable {
    /// Table name (a plain lowercase identifier).
    pub name: String,
    /// The column naming the tenant: `id` for `organizations`, else `organization_id`.
    pub key: &'static str,
}

impl TenantTable {
    fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Edge {
    #[diesel(sql_type = Text)]
    child: String,
    #[diesel(sql_type = Text)]
    parent: String,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Every table holding tenant rows, parents before children (`organizations` first): the order
/// to insert in. Delete in the reverse order.
///
/// # Errors
///
/// The database error.
pub async fn tenant_tables(conn: &mut AsyncPgConnection) -> QueryResult<Vec<TenantTable>> {
    let names: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'backups' \
           AND (c.relname = 'organizations' OR EXISTS ( \
                SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                  AND a.attname = 'organization_id' AND NOT a.attisdropped)) \
         ORDER BY 1",
    )
    .load(conn)
    .await?;
    let edges: Vec<Edge> = diesel::sql_query(
        "SELECT ch.relname::text AS child, pa.relname::text AS parent FROM pg_constraint k \
         JOIN pg_class ch ON ch.oid = k.conrelid JOIN pg_class pa ON pa.oid = k.confrelid \
         JOIN pg_namespace n ON n.oid = ch.relnamespace \
         WHERE k.contype = 'f' AND n.nspname = 'public'",
    )
    .load(conn)
    .await?;
    let set: BTreeSet<String> = names
        .into_iter()
        .map(|n| n.name)
        .filter(|n| is_plain_identifier(n))
        .collect();
    let mut parents: BTreeMap<String, BTreeSet<String>> =
        set.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
    for e in edges {
        if e.child != e.parent
            && set.contains(&e.parent)
            && let Some(p) = parents.get_mut(&e.child)
        {
            p.insert(e.parent);
        }
    }
    // Kahn's algorithm, alphabetical among the ready ones, so the order is stable.
    let mut order = Vec::with_capacity(set.len());
    while !parents.is_empty() {
        let ready: Vec<String> = parents
            .iter()
            .filter(|(_, ps)| ps.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        let ready = if ready.is_empty() {
            // A cycle (not in the schema today): break it deterministically.
            parents.keys().take(1).cloned().collect()
        } else {
            ready
        };
        for n in ready {
            parents.remove(&n);
            for ps in parents.values_mut() {
                ps.remove(&n);
            }
            order.push(n);
        }
    }
    Ok(order
        .into_iter()
        .map(|name| TenantTable {
            key: if name == "organizations" {
                "id"
            } else {
                "organization_id"
            },
            name,
        })
        .collect())
}

/// Every row of a tenant in one table, as `row_to_json` text, in a stable order.
///
/// # Errors
///
/// The database error.
pub async fn export_rows(
    conn: &mut AsyncPgConnection,
    table: &TenantTable,
    tenant: Uuid,
) -> QueryResult<Vec<String>> {
    let rows: Vec<Line> = diesel::sql_query(format!(
        "SELECT row_to_json(t)::text AS line FROM {} t WHERE t.{} = $1 ORDER BY 1",
        table.quoted(),
        table.key
    ))
    .bind::<SqlUuid, _>(tenant)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|l| l.line).collect())
}

/// Counts a tenant's rows in one table.
///
/// # Errors
///
/// The database error.
pub async fn count_rows(
    conn: &mut AsyncPgConnection,
    table: &TenantTable,
    tenant: Uuid,
) -> QueryResult<i64> {
    let c: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {} WHERE {} = $1",
        table.quoted(),
        table.key
    ))
    .bind::<SqlUuid, _>(tenant)
    .get_result(conn)
    .await?;
    Ok(c.n)
}

/// Deletes a tenant's rows from one table; returns how many.
///
/// # Errors
///
/// The database error.
pub async fn delete_rows(
    conn: &mut AsyncPgConnection,
    table: &TenantTable,
    tenant: Uuid,
) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "DELETE FROM {} WHERE {} = $1",
        table.quoted(),
        table.key
    ))
    .bind::<SqlUuid, _>(tenant)
    .execute(conn)
    .await
}

/// Inserts rows given as a JSON array of `row_to_json` objects; returns how many.
///
/// # Errors
///
/// The database error (for example a unique violation when a row exists again).
pub async fn import_rows(
    conn: &mut AsyncPgConnection,
    table: &TenantTable,
    json_array: &str,
) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "INSERT INTO {t} SELECT * FROM json_populate_recordset(NULL::{t}, $1::json)",
        t = table.quoted()
    ))
    .bind::<Text, _>(json_array)
    .execute(conn)
    .await
}
