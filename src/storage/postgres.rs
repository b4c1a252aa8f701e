//! PostgreSQL: the production database. One pool serves reads and writes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::pg_search_index::PendingSearchEntries;
use super::sql_rooms::EVENT_COLUMNS;
use super::{
    PoolStats, Result, SearchHit, SearchStore, Storage, StoredEvent, sql::impl_shared_sql, sql_e2ee::impl_e2ee_sql,
    sql_media::impl_media_sql, sql_push::impl_push_sql, sql_rooms::impl_room_sql,
};

pub struct PgStore {
    pub(super) read: PgPool,
    pub(super) write: PgPool,
    search_pending: PendingSearchEntries,
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
        let search_pending = PendingSearchEntries::start(pool.clone());
        let store = Self { read: pool.clone(), write: pool, search_pending };
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
impl_e2ee_sql!(PgStore, " FOR UPDATE SKIP LOCKED", list_placeholders);

/// `$1, ..., $n`.
fn list_placeholders(n: usize) -> String {
    super::sql_rooms::placeholders(1, n)
}

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

    async fn close(&self) {
        self.read.close().await;
    }
}

impl PgStore {
    /// After events are written: their words wait in the search index's
    /// pending list, to be merged in the background.
    async fn after_events_written(&self) {
        self.search_pending.events_written();
    }

    /// A batch of plain events in one statement (see `pg_events.rs`); `None`:
    /// store it the general way.
    async fn persist_in_one_statement(&self, batch: &[super::NewEvent<'_>]) -> Option<Result<()>> {
        super::pg_events::persist_plain(&self.write, batch).await
    }

    /// `column = param` written so that PostgreSQL uses its indexes keyed by
    /// `hashtext(column)` (migration 0015); comparing the ids themselves settles
    /// the rare hash collision.
    fn key_eq(column: &str, param: &str) -> String {
        format!("hashtext({column}) = hashtext({param}) AND {column} = {param}")
    }

    /// How to select the events of room `$1` for an ordered page: a probe by
    /// the room's hash alone, estimated as `room_id = $1` was before migration
    /// 0015 (a second condition on the room makes the planner expect a handful
    /// of rows, and without fresh statistics it then sorted a whole
    /// 100,000-event room for a page of /messages); and, when the probe's page
    /// holds another room's events (their ids hash alike), the exact filter.
    fn room_filters() -> [String; 2] {
        ["hashtext(room_id) = hashtext($1)".to_owned(), Self::key_eq("room_id", "$1")]
    }

    /// `column IN (SELECT selected FROM rest)`, likewise.
    fn key_in(column: &str, selected: &str, rest: &str) -> String {
        format!(
            "hashtext({column}) IN (SELECT hashtext({selected}) FROM {rest}) AND {column} IN (SELECT {selected} FROM {rest})"
        )
    }

    /// Nothing to write: the search index is an expression index over the
    /// events themselves (migration 0015).
    async fn index_search(
        _tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        _rows: &[(&StoredEvent, &str, &str)],
    ) -> Result<()> {
        Ok(())
    }

    /// Nothing to delete: a redacted event (`redacted_by` set) leaves the
    /// expression index's partial predicate.
    async fn unindex_search(_tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, _event_id: &str) -> Result<()> {
        Ok(())
    }
}

/// The event type whose text a search key names (see timeline.rs, `searchable`).
fn searched_type(key: &str) -> Option<&'static str> {
    match key {
        "content.body" => Some("m.room.message"),
        "content.name" => Some("m.room.name"),
        "content.topic" => Some("m.room.topic"),
        _ => None,
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
        let types: Vec<&str> = keys.iter().filter_map(|key| searched_type(key)).collect();
        // The expression and the predicate of the index `events_search` (migration 0015), word for word.
        let vector = "to_tsvector('simple', event_search_text(e.event_type, e.json))";
        let filter = format!(
            "e.event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND e.redacted_by IS NULL
             AND {vector} @@ plainto_tsquery('simple', $1) AND e.room_id = ANY($2) AND e.event_type = ANY($3)"
        );
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM events e WHERE {filter}")))
                .bind(term)
                .bind(rooms)
                .bind(&types)
                .fetch_one(&self.read)
                .await?;
        let rank = format!("ts_rank({vector}, plainto_tsquery('simple', $1))::float8");
        let order =
            if recent { "e.stream_ordering DESC".to_owned() } else { format!("{rank} DESC, e.stream_ordering DESC") };
        let columns = EVENT_COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {columns}, {rank} AS rank FROM events e
             WHERE {filter} ORDER BY {order} LIMIT $4 OFFSET $5"
        );
        let hits: Vec<SearchHit> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(term)
            .bind(rooms)
            .bind(&types)
            .bind(limit)
            .bind(skip)
            .fetch_all(&self.read)
            .await?;
        Ok((hits, count))
    }
}
