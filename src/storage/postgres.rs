//! PostgreSQL: the production database. One pool serves reads and writes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::sql_rooms::EVENT_COLUMNS;
use super::{
    PoolStats, Result, SearchHit, SearchStore, Storage, StoredEvent, sql::impl_shared_sql, sql_e2ee::impl_e2ee_sql,
    sql_media::impl_media_sql, sql_push::impl_push_sql, sql_rooms::impl_room_sql,
};

pub struct PgStore {
    pub(super) read: PgPool,
    pub(super) write: PgPool,
}

impl PgStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        // Room for every statement the server runs, so none is parsed and planned twice.
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?.statement_cache_capacity(256);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let store = Self { read: pool.clone(), write: pool };
        store
            .move_legacy_txns(
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'event_txns'",
            )
            .await?;
        Ok(store)
    }
}

impl_shared_sql!(PgStore);
impl_room_sql!(PgStore);
impl_e2ee_sql!(PgStore);
impl_media_sql!(PgStore);
impl_push_sql!(PgStore);

#[async_trait]
impl Storage for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats { size: self.read.size(), idle: self.read.num_idle() as u32 }
    }

    fn concurrent_writers(&self) -> usize {
        // A quarter of the pool, so that readers always find connections.
        (self.read.options().get_max_connections() as usize / 4).clamp(1, 4)
    }

    async fn close(&self) {
        self.read.close().await;
    }
}

impl PgStore {
    /// After events are written: nothing to do (see the SQLite store's).
    async fn after_events_written(&self) {}

    /// Adds events' text to the search index, inside their transaction.
    async fn index_search(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        rows: &[(&StoredEvent, &str, &str)],
    ) -> Result<()> {
        let values: Vec<String> = (0..rows.len())
            .map(|i| {
                let p = i * 3;
                format!("(${}, ${}, to_tsvector('simple', ${}))", p + 1, p + 2, p + 3)
            })
            .collect();
        let sql = format!("INSERT INTO event_search (stream_ordering, key, vector) VALUES {}", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (event, key, text) in rows {
            query = query.bind(event.stream_ordering).bind(*key).bind(*text);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Removes a (redacted) event's text from the index, inside the redaction's transaction.
    async fn unindex_search(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, event_id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM event_search WHERE stream_ordering = (SELECT stream_ordering FROM events WHERE event_id = $1)",
        )
        .bind(event_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SearchStore for PgStore {
    async fn search_events(
        &self,
        rooms: &[String],
        term: &str,
        keys: &[String],
        recent: bool,
        skip: i64,
        limit: i64,
    ) -> Result<(Vec<SearchHit>, i64)> {
        if rooms.is_empty() || term.trim().is_empty() || keys.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let filter = "s.vector @@ plainto_tsquery('simple', $1) AND e.room_id = ANY($2) AND s.key = ANY($3)";
        let from = "event_search s JOIN events e ON e.stream_ordering = s.stream_ordering";
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {from} WHERE {filter}")))
            .bind(term)
            .bind(rooms)
            .bind(keys)
            .fetch_one(&self.read)
            .await?;
        let rank = "ts_rank(s.vector, plainto_tsquery('simple', $1))::float8";
        let order =
            if recent { "s.stream_ordering DESC".to_owned() } else { format!("{rank} DESC, s.stream_ordering DESC") };
        let columns = EVENT_COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns}, {rank} AS rank FROM {from}
             WHERE {filter} ORDER BY {order} LIMIT $4 OFFSET $5"
        );
        let hits: Vec<SearchHit> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(term)
            .bind(rooms)
            .bind(keys)
            .bind(limit)
            .bind(skip)
            .fetch_all(&self.read)
            .await?;
        Ok((hits, count))
    }
}
