//! The backup archive: one folder per backup under the backup directory, holding one JSON-lines
//! file per table (`<table>.jsonl`, one `row_to_json` object per line) and `manifest.json`
//! with the row count and SHA-256 of every file. The `backups` row stores the manifest and the
//! SHA-256 of `manifest.json`, so a restore verifies the whole chain before it inserts a row.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The manifest format name.
const FORMAT: &str = "tenantry-backup/1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A written archive.
#[derive(Debug)]
pub(crate) struct Written {
    /// Its folder.
    pub(crate) dir: PathBuf,
    /// The manifest.
    pub(crate) manifest: serde_json::Value,
    /// SHA-256 of `manifest.json`.
    pub(crate) checksum: String,
    /// Total bytes of its files.
    pub(crate) size: i64,
}

/// Facts recorded in the manifest besides the tables.
#[derive(Debug)]
pub(crate) struct Meta<'a> {
    pub(crate) backup_id: Uuid,
    pub(crate) tenant_id: Uuid,
    pub(crate) tenant_slug: &'a str,
    pub(crate) created_by: &'a str,
    pub(crate) reason: &'a str,
}

/// Writes a file and flushes it to disk, so it survives a crash after the rows it holds are
/// deleted.
async fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path).await?;
    f.write_all(bytes).await?;
    f.sync_all().await
}

/// Writes an archive of `tables` (name, rows as JSON text), in the given order.
pub(crate) async fn write(
    base: &Path,
    meta: &Meta<'_>,
    tables: &[(String, Vec<String>)],
) -> std::io::Result<Written> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let dir = base.join(format!("{}-{stamp}-{}", meta.tenant_slug, meta.backup_id));
    tokio::fs::create_dir_all(&dir).await?;
    let mut size = 0_i64;
    let mut entries = Vec::with_capacity(tables.len());
    for (name, rows) in tables {
        let mut text = String::new();
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        let file = format!("{name}.jsonl");
        write_durably(&dir.join(&file), text.as_bytes()).await?;
        size += i64::try_from(text.len()).unwrap_or(i64::MAX);
        entries.push(serde_json::json!({
            "name": name,
            "file": file,
            "rows": rows.len(),
            "sha256": hex(&Sha256::digest(text.as_bytes())),
        }));
    }
    let manifest = serde_json::json!({
        "format": FORMAT,
        "backup_id": meta.backup_id.to_string(),
        "tenant_id": meta.tenant_id.to_string(),
        "tenant_slug": meta.tenant_slug,
        "created_at": chrono::Utc::now().to_rfc3339(),
        "created_by": meta.created_by,
        "reason": meta.reason,
        "tables": entries,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    write_durably(&dir.join("manifest.json"), &bytes).await?;
    size += i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    Ok(Written {
        dir,
        manifest,
        checksum: hex(&Sha256::digest(&bytes)),
        size,
    })
}

/// Why an archive cannot be restored.
#[derive(Debug)]
pub(crate) enum ArchiveError {
    /// A file is missing or unreadable.
    Io(String),
    /// A checksum, count or manifest field does not match.
    Mismatch(String),
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(m) | Self::Mismatch(m) => f.write_str(m),
        }
    }
}

/// The tables of a verified archive: (name, rows as JSON text), in manifest order.
pub(crate) type Tables = Vec<(String, Vec<String>)>;

/// Reads an archive and verifies the manifest checksum, every file's checksum and row count.
pub(crate) async fn read(dir: &Path, checksum: &str) -> Result<Tables, ArchiveError> {
    let bytes = tokio::fs::read(dir.join("manifest.json"))
        .await
        .map_err(|e| ArchiveError::Io(format!("cannot read the manifest: {e}")))?;
    if hex(&Sha256::digest(&bytes)) != checksum {
        return Err(ArchiveError::Mismatch(
            "the manifest checksum does not match".into(),
        ));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| ArchiveError::Mismatch("the manifest is not JSON".into()))?;
    if manifest.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(ArchiveError::Mismatch("unknown backup format".into()));
    }
    let entries = manifest
        .get("tables")
        .and_then(|t| t.as_array())
        .ok_or_else(|| ArchiveError::Mismatch("the manifest lists no tables".into()))?;
    let mut tables = Vec::with_capacity(entries.len());
    for e in entries {
        let (Some(name), Some(file), Some(rows), Some(sum)) = (
            e.get("name").and_then(|v| v.as_str()),
            e.get("file").and_then(|v| v.as_str()),
            e.get("rows").and_then(serde_json::Value::as_u64),
            e.get("sha256").and_then(|v| v.as_str()),
        ) else {
            return Err(ArchiveError::Mismatch(
                "a manifest entry is incomplete".into(),
            ));
        };
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(ArchiveError::Mismatch(
                "a manifest entry names a bad file".into(),
            ));
        }
        let text = tokio::fs::read(dir.join(file))
            .await
            .map_err(|e| ArchiveError::Io(format!("cannot read {file}: {e}")))?;
        if hex(&Sha256::digest(&text)) != sum {
            return Err(ArchiveError::Mismatch(format!(
                "the checksum of {file} does not match"
            )));
        }
        let text = String::from_utf8(text)
            .map_err(|_| ArchiveError::Mismatch(format!("{file} is not UTF-8")))?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if u64::try_from(lines.len()).ok() != Some(rows) {
            return Err(ArchiveError::Mismatch(format!(
                "the row count of {file} does not match"
            )));
        }
        tables.push((name.to_owned(), lines));
    }
    Ok(tables)
}
