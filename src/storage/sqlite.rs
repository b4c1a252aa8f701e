//! SQLite: the embedded default. WAL mode; one writer connection, several readers.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::sql_rooms::{EVENT_COLUMNS, placeholders};
use super::{
    PoolStats, Result, SearchHit, SearchStore, Storage, StoredEvent, sql::impl_shared_sql, sql_e2ee::impl_e2ee_sql,
    sql_media::impl_media_sql, sql_push::impl_push_sql, sql_rooms::impl_room_sql,
};

pub struct SqliteStore {
    pub(super) read: SqlitePool,
    /// A single connection: SQLite allows one writer at a time, and queueing in
    /// the pool is cheaper than retrying on SQLITE_BUSY.
    pub(super) write: SqlitePool,
    /// Checkpoints the WAL in the background (see `checkpoint_wal`).
    checkpointer: SqlitePool,
    wal: Arc<WalState>,
    /// Ends the checkpoint task when the store is dropped.
    _stop_checkpoints: tokio_util::sync::DropGuard,
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Room for every statement the server runs, so none is prepared twice.
            .statement_cache_capacity(STATEMENT_CACHE)
            // Keeps the planner's statistics fresh (ANALYZE where it pays off).
            .optimize_on_close(true, None);
        // The writer never checkpoints: copying the WAL into the database (and its
        // fsync) would stall every write queued behind it. A connection of its
        // own does it in the background. Statement journals (multi-row inserts,
        // triggers) stay in memory.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0").pragma("temp_store", "memory"))
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let checkpointer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let stop = tokio_util::sync::CancellationToken::new();
        let wal = Arc::new(WalState::default());
        tokio::spawn(checkpoint_wal(checkpointer.clone(), wal.clone(), stop.clone()));
        // More readers than cores only add private page caches (memory) and
        // cache revalidation after each write.
        let read = SqlitePoolOptions::new()
            .max_connections(max_connections.clamp(1, 2 * crate::cores()))
            .connect_with(options.read_only(true))
            .await?;
        let store = Self { read, write, checkpointer, wal, _stop_checkpoints: stop.drop_guard() };
        store
            .move_legacy_txns("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'event_txns'")
            .await?;
        Ok(store)
    }

    /// SQLite stores every batch the general way (its statements are not
    /// round trips to another process).
    async fn persist_in_one_statement(&self, _batch: &[super::NewEvent<'_>]) -> Option<Result<()>> {
        None
    }

    /// After events are written: once the WAL is long, starts it over (see
    /// `checkpoint_wal`). Done by the writer between its transactions, so that
    /// no write waits in SQLite's busy handler, which sleeps in steps of
    /// milliseconds; the background checkpoints have copied nearly all of it.
    /// The events are stored whatever happens here: a failure is only logged.
    async fn after_events_written(&self) {
        if self.wal.frames.load(Ordering::Relaxed) < RESTART_WAL_FRAMES {
            return;
        }
        // A background checkpoint under way (with its fsync) is not waited for:
        // a later transaction's turn will come.
        let Ok(_checkpointing) = self.wal.lock.try_lock() else { return };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&self.write).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        self.wal.frames.store(0, Ordering::Relaxed);
    }
}

/// What the WAL's checkpoints share.
#[derive(Default)]
struct WalState {
    /// Frames in the WAL at the latest background checkpoint.
    frames: AtomicI64,
    /// Held while checkpointing, so that the writer and the background task
    /// never wait for each other in SQLite's busy handler.
    lock: tokio::sync::Mutex<()>,
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);
/// WAL frames (pages) after which the WAL is started over (16 MiB; SQLite's
/// automatic checkpoints run at 1,000).
const RESTART_WAL_FRAMES: i64 = 4000;

/// Copies committed WAL frames into the database file in the background. A
/// PASSIVE checkpoint waits for no one, so it runs beside the writer; but with
/// writes going on, the WAL is never fully copied at the moment the next write
/// starts, so SQLite would never start it over and it would grow without end
/// (and every write past its end costs the kernel fresh zeroed pages). The
/// writer restarts it after writing events (`after_events_written`); should
/// other writes keep it growing, this task restarts it itself.
async fn checkpoint_wal(pool: SqlitePool, wal: Arc<WalState>, stop: tokio_util::sync::CancellationToken) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        if pool.is_closed() {
            return;
        }
        let checkpoint = async {
            let _checkpointing = wal.lock.lock().await;
            // (busy, frames in the WAL, frames copied)
            let (_, frames, _): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await?;
            wal.frames.store(frames, Ordering::Relaxed);
            if frames >= 4 * RESTART_WAL_FRAMES {
                sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&pool).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(e) = checkpoint.await {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

impl_shared_sql!(SqliteStore);
impl_room_sql!(SqliteStore);
impl_e2ee_sql!(SqliteStore, "", list_placeholders);

/// `?, ..., ?` for a statement whose only parameters are an n-item list. Not
/// `$1, ..., $n`: sqlx asks SQLite each numbered parameter's name, which SQLite
/// finds by a linear search, so binding n of them took O(n^2) (a `/keys/query`
/// of 1,000 users spent a fifth of its CPU there); plain `?` have no names.
fn list_placeholders(n: usize) -> String {
    let mut list = "?, ".repeat(n);
    list.truncate(list.len().saturating_sub(2));
    list
}

impl_media_sql!(SqliteStore);
impl_push_sql!(SqliteStore);

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
        self.checkpointer.close().await;
        // Closing the writer last lets SQLite checkpoint the WAL into the main file.
        self.write.close().await;
    }
}

impl SqliteStore {
    /// `column = param` (PostgreSQL's version adds the hashed key its indexes use).
    fn key_eq(column: &str, param: &str) -> String {
        format!("{column} = {param}")
    }

    /// How to select the events of room `$1` for an ordered page: a probe and
    /// an exact filter (here both exact; PostgreSQL's probe is not).
    fn room_filters() -> [String; 2] {
        ["room_id = $1".to_owned(), "room_id = $1".to_owned()]
    }

    /// `column IN (SELECT selected FROM rest)`.
    fn key_in(column: &str, selected: &str, rest: &str) -> String {
        format!("{column} IN (SELECT {selected} FROM {rest})")
    }

    /// Adds events' text to the FTS5 index, inside their transaction.
    async fn index_search(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        rows: &[(&StoredEvent, &str, &str)],
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO event_search (rowid, content, key) VALUES {}",
            super::sql_rooms::values_sql(rows.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (event, key, text) in rows {
            query = query.bind(event.stream_ordering).bind(*text).bind(*key);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Removes a (redacted) event's text from the index, inside the redaction's transaction.
    async fn unindex_search(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, event_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events WHERE event_id = $1)")
            .bind(event_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// The user's words as an FTS5 query: each word a quoted phrase (so that
/// operators in user input are plain text), all of them required.
fn fts5_query(term: &str) -> String {
    term.split_whitespace().map(|word| format!("\"{}\"", word.replace('"', "\"\""))).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_events(
        &self,
        rooms: &[String],
        term: &str,
        keys: &[String],
        recent: bool,
        skip: i64,
        limit: i64,
    ) -> Result<(Vec<SearchHit>, i64)> {
        let query = fts5_query(term);
        if rooms.is_empty() || query.is_empty() || keys.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let room_list = placeholders(2, rooms.len());
        let key_list = placeholders(2 + rooms.len(), keys.len());
        let filter = format!("event_search MATCH $1 AND e.room_id IN ({room_list}) AND s.key IN ({key_list})");
        let from = "event_search s JOIN events e ON e.stream_ordering = s.rowid";
        let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {filter}");
        let mut count_query = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)).bind(&query);
        for value in rooms.iter().chain(keys) {
            count_query = count_query.bind(value);
        }
        let count: i64 = count_query.fetch_one(&self.read).await?;
        // bm25() is lower for better matches; it is negated into a rank.
        let order = if recent { "s.rowid DESC" } else { "bm25(event_search) ASC, s.rowid DESC" };
        let columns = EVENT_COLUMNS.split(", ").map(|c| format!("e.{}", c.trim())).collect::<Vec<_>>().join(", ");
        let next = 2 + rooms.len() + keys.len();
        let sql = format!(
            "SELECT {columns}, -bm25(event_search) AS rank FROM {from}
             WHERE {filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
            next,
            next + 1
        );
        let mut search = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&query);
        for value in rooms.iter().chain(keys) {
            search = search.bind(value);
        }
        let hits: Vec<SearchHit> = search.bind(limit).bind(skip).fetch_all(&self.read).await?;
        Ok((hits, count))
    }
}

#[cfg(test)]
mod list_tests {
    #[test]
    fn list_placeholders_are_plain() {
        assert_eq!(super::list_placeholders(3), "?, ?, ?");
        assert_eq!(super::list_placeholders(1), "?");
        assert_eq!(super::list_placeholders(0), "");
    }
}
