//! The database's on-disk size: files and directories (SQLite), or
//! `pg_database_size(current_database())` (PostgreSQL).

use std::path::{Path, PathBuf};

use sqlx::Connection;

/// Where the size comes from.
#[derive(Clone, Debug)]
pub enum DbSize {
    /// Files and directories. A file also counts its SQLite `-wal` and `-shm`
    /// siblings; a directory counts every file below it.
    Paths(Vec<PathBuf>),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

/// Named parts in bytes.
pub type Sizes = Vec<(String, u64)>;

/// One measurement.
#[derive(Clone, Debug, Default)]
pub struct Measurement {
    /// File sizes (or the PostgreSQL database size).
    pub parts: Sizes,
    /// For SQLite files: the bytes of pages in use as the database itself sees
    /// them, WAL included ((page_count - freelist_count) * page_size). Unlike
    /// the file sizes this does not count the WAL twice around checkpoints.
    pub sqlite_used: Option<u64>,
}

impl DbSize {
    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            DbSize::Paths(paths) => paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            DbSize::Postgres(_) => "pg_database_size(current_database())".to_owned(),
        }
    }

    /// Measures the size now.
    pub async fn measure(&self) -> Result<Measurement, String> {
        match self {
            DbSize::Paths(paths) => {
                let mut sizes = Vec::new();
                let mut sqlite_used = None;
                for path in paths {
                    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    if meta.is_dir() {
                        sizes.push((format!("{}/", path.display()), dir_size(path)));
                    } else {
                        sizes.push((path.display().to_string(), meta.len()));
                        if let Some(used) = sqlite_used_bytes(path).await {
                            sqlite_used = Some(sqlite_used.unwrap_or(0) + used);
                        }
                        for suffix in ["-wal", "-shm"] {
                            let mut name = path.as_os_str().to_owned();
                            name.push(suffix);
                            let len = std::fs::metadata(&name).map(|m| m.len()).unwrap_or(0);
                            sizes.push((PathBuf::from(name).display().to_string(), len));
                        }
                    }
                }
                Ok(Measurement { parts: sizes, sqlite_used })
            }
            DbSize::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| format!("--pg-url: {e}"))?;
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| format!("pg_database_size: {e}"))?;
                let name: String = sqlx::query_scalar("SELECT current_database()::text")
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| format!("current_database: {e}"))?;
                let _ = conn.close().await;
                let parts = vec![(format!("postgres database {name}"), u64::try_from(size).unwrap_or(0))];
                Ok(Measurement { parts, sqlite_used: None })
            }
        }
    }
}

/// (page_count - freelist_count) * page_size of the SQLite database at
/// `path`, read through a short read-only connection; None if it is not one.
async fn sqlite_used_bytes(path: &Path) -> Option<u64> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true).create_if_missing(false);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
    let used: Result<i64, _> = sqlx::query_scalar(
        "SELECT (page_count - freelist_count) * page_size \
         FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    used.ok().and_then(|n| u64::try_from(n).ok())
}

/// Total length of the files below `dir` (symbolic links are not followed;
/// files that vanish while walking count as 0).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Sum of all parts.
pub fn total(sizes: &Sizes) -> u64 {
    sizes.iter().map(|(_, n)| n).sum()
}
