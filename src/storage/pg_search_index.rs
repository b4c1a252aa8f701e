//! PostgreSQL: the full-text index's pending list, merged in the background.
//!
//! New events' words are appended to the GIN index's pending list (migration
//! 0018) instead of being inserted into its trees one by one, which was about a
//! third of what an event cost PostgreSQL. The list must be merged into the
//! index before it reaches its limit, or the insert that finds it full merges
//! it inline and holds its batch meanwhile; this task merges it shortly after
//! events are written. Searches read the pending list too, so nothing is
//! missing from their results before a merge.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long after a write the list is merged: long enough for several
/// batches' words to share a merge, short enough that the list stays small.
const MERGE_DELAY: Duration = Duration::from_millis(200);
/// After a failed merge (one that keeps failing would otherwise be logged five
/// times a second): inserts merge the list themselves meanwhile.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

pub(super) struct PendingSearchEntries {
    written: Arc<Notify>,
    /// Ends the merging task when the store is dropped.
    _stop: DropGuard,
}

impl PendingSearchEntries {
    pub(super) fn start(pool: PgPool) -> Self {
        let written = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(merge_after_writes(pool, written.clone(), stop.clone()));
        Self { written, _stop: stop.drop_guard() }
    }

    /// Events were written: their words may wait in the pending list.
    pub(super) fn events_written(&self) {
        // A permit is kept if the task is busy merging: it merges once more.
        self.written.notify_one();
    }
}

async fn merge_after_writes(pool: PgPool, written: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = written.notified() => {}
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(MERGE_DELAY) => {}
            _ = stop.cancelled() => return,
        }
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("SELECT gin_clean_pending_list('events_search'::regclass)").execute(&pool).await {
            if pool.is_closed() {
                return;
            }
            // Nothing is lost: the next merge, or an insert, merges the list.
            tracing::warn!(error = %e, "merging the search index's pending list failed; trying again in a minute");
            tokio::select! {
                _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::storage::tests::{drop_pg_database, fresh_pg_database, plain, stored};
    use crate::storage::{RoomRecord, open};

    /// Entries waiting in the index's pending list (read with pageinspect,
    /// which does not merge them as `gin_clean_pending_list` would).
    async fn pending(pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar("SELECT n_pending_tuples FROM gin_metapage_info(get_raw_page('events_search', 0))")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn new_words_wait_in_the_pending_list_until_merged_in_the_background() {
        // PostgreSQL only: runs where TEST_DATABASE_URL names a server (CI).
        let Some((url, (admin_url, name))) = fresh_pg_database().await else { return };
        let storage = open(&url, 4).await.unwrap();
        let inspect = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect").execute(&inspect).await.unwrap();
        let room =
            RoomRecord { room_id: "!s:x".into(), room_version: "12".into(), creator: "@a:x".into(), is_public: false };
        storage.create_room(&room, 1).await.unwrap();
        let mut event = stored(1, "$s1", "!s:x", None, 0);
        event.json = r#"{"content":{"body":"pending papaya"}}"#.into();
        let written = Instant::now();
        storage.persist_events(&[plain(&event)]).await.unwrap();

        let rooms = ["!s:x".to_owned()];
        let keys = ["content.body".to_owned()];
        // Checked only while the merge cannot have started (a slow machine may
        // get here later).
        let waiting = pending(&inspect).await;
        assert!(waiting > 0 || written.elapsed() >= super::MERGE_DELAY, "the words went to the pending list");
        assert_eq!(storage.search_events(&rooms, "papaya", &keys, true, 0, 10).await.unwrap().1, 1);
        let started = Instant::now();
        while pending(&inspect).await > 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the pending list was never merged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(storage.search_events(&rooms, "papaya", &keys, true, 0, 10).await.unwrap().1, 1);

        storage.close().await;
        inspect.close().await;
        drop_pg_database(&admin_url, &name).await;
    }
}
