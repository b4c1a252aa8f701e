//! PostgreSQL: the production database. One pool serves reads and writes.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{PoolStats, Result, Storage, sql::impl_shared_sql, sql_rooms::impl_room_sql};

pub struct PgStore {
    pub(super) read: PgPool,
    pub(super) write: PgPool,
}

impl PgStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { read: pool.clone(), write: pool })
    }
}

impl_shared_sql!(PgStore);
impl_room_sql!(PgStore);

#[async_trait]
impl Storage for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats { size: self.read.size(), idle: self.read.num_idle() as u32 }
    }

    async fn close(&self) {
        self.read.close().await;
    }
}
