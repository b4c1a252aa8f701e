//! SQLite: the embedded default. WAL mode; one writer connection, several readers.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{PoolStats, Result, Storage, sql::impl_shared_sql, sql_rooms::impl_room_sql};

pub struct SqliteStore {
    pub(super) read: SqlitePool,
    /// A single connection: SQLite allows one writer at a time, and queueing in
    /// the pool is cheaper than retrying on SQLITE_BUSY.
    pub(super) write: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { read, write })
    }
}

impl_shared_sql!(SqliteStore);
impl_room_sql!(SqliteStore);

#[async_trait]
impl Storage for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.read.size() + self.write.size(),
            idle: (self.read.num_idle() + self.write.num_idle()) as u32,
        }
    }

    async fn close(&self) {
        self.read.close().await;
        // Closing the writer last lets SQLite checkpoint the WAL into the main file.
        self.write.close().await;
    }
}
