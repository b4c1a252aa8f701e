//! Group commit: the events that room writers hand over while a transaction is
//! being written are stored together in the next one.
//!
//! A transaction's cost is mostly fixed (taking the writer connection, the
//! round trips of BEGIN and COMMIT, writing the touched B-tree pages to the
//! WAL, PostgreSQL's flush), so under load many events share it instead of each
//! paying for it. Nothing waits to fill a batch: an idle server commits an
//! event at once, and a batch is whatever queued up during the previous commit.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::storage::{NewEvent, NewStateGroup, PushActionRow, Storage, StorageError, StoredEvent, TxnKey};

/// Most events in one transaction (keeps a transaction's duration bounded).
const MAX_EVENTS_PER_COMMIT: usize = 256;

/// Everything stored with one new event (the owned form of `NewEvent`).
#[derive(Debug)]
pub struct EventWrite {
    pub event: StoredEvent,
    pub prev_events: Vec<String>,
    pub new_state_group: Option<NewStateGroup>,
    pub membership: Option<String>,
    /// `(user_id, device_id, scope, txn_id)` of the client transaction.
    pub txn: Option<(String, String, String, String)>,
    /// A redaction that applies: the target and its redacted JSON.
    pub redaction: Option<(String, String)>,
    pub relation: Option<(String, String)>,
    pub search: Option<(&'static str, String)>,
    pub push_actions: Vec<PushActionRow>,
}

impl EventWrite {
    fn as_new(&self) -> NewEvent<'_> {
        NewEvent {
            event: &self.event,
            prev_events: &self.prev_events,
            new_state_group: self.new_state_group.as_ref(),
            membership: self.membership.as_deref(),
            txn: self.txn.as_ref().map(|(user_id, device_id, scope, txn_id)| TxnKey {
                user_id,
                device_id,
                scope,
                txn_id,
            }),
            redaction: self.redaction.as_ref().map(|(target, json)| (target.as_str(), json.as_str())),
            relation: self.relation.as_ref().map(|(to, rel)| (to.as_str(), rel.as_str())),
            search: self.search.as_ref().map(|(key, text)| (*key, text.as_str())),
            push_actions: &self.push_actions,
        }
    }
}

/// One room writer's events, in order: stored together or not at all.
struct Job {
    room_id: String,
    /// The writer's generation: once a job of a room fails, the later jobs of
    /// the same generation built on it and are refused.
    generation: u64,
    writes: Vec<Arc<EventWrite>>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Hands events to the task that writes them, one transaction at a time.
///
/// One writer on PostgreSQL too: several would each commit smaller batches,
/// and their events would contend for the full-text index's pending list (16
/// senders over 10 rooms, 2026-11-28, the same build: ~1,800 ev/s with four
/// writers, ~2,500 with one). The price: a merged transaction that fails (a
/// retried transaction id) is undone for every room in it, whose jobs are
/// then written one by one. Jobs are stored in the order they are handed over.
pub struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the writing task (it ends when the last `GroupCommit` is dropped).
    pub fn start(storage: Arc<dyn Storage>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(storage, queue));
        Self { jobs }
    }

    /// Hands one room's events to be stored (in order, all or none); the
    /// receiver gets the result once they are committed. Jobs are stored in the
    /// order they are handed over; the events of a job are never split, and a
    /// job fails only for its own events (a batch that fails is retried job by
    /// job) or because an earlier job of its room and generation failed.
    pub fn submit(
        &self,
        room_id: &str,
        generation: u64,
        writes: Vec<Arc<EventWrite>>,
    ) -> oneshot::Receiver<Result<(), StorageError>> {
        let (done, result) = oneshot::channel();
        // If the task is gone, `done` is dropped with the job and the receiver says so.
        let _ = self.jobs.send(Job { room_id: room_id.to_owned(), generation, writes, done });
        result
    }
}

async fn run(storage: Arc<dyn Storage>, mut queue: mpsc::UnboundedReceiver<Job>) {
    // Rooms whose job failed, with the generation it failed in.
    let mut failed: HashMap<String, u64> = HashMap::new();
    while let Some(first) = queue.recv().await {
        let mut count = first.writes.len();
        let mut jobs = vec![first];
        while count < MAX_EVENTS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => {
                    count += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut ready = Vec::with_capacity(jobs.len());
        for job in jobs {
            match failed.get(&job.room_id) {
                Some(generation) if *generation == job.generation => {
                    let _ = job.done.send(Err(refused()));
                }
                Some(_) => {
                    failed.remove(&job.room_id);
                    ready.push(job);
                }
                None => ready.push(job),
            }
        }
        // Several jobs are tried in one transaction; one job (or a batch that
        // failed) is written job by job below.
        let merged = ready.len() > 1 && {
            let all: Vec<NewEvent<'_>> = ready.iter().flat_map(|job| job.writes.iter().map(|w| w.as_new())).collect();
            storage.persist_events(&all).await.is_ok()
        };
        if merged {
            for job in ready {
                let _ = job.done.send(Ok(()));
            }
            continue;
        }
        // One job's failure (a retried client transaction, say) must not fail
        // the others: each is written alone, in order, and answered with its
        // own result; the later jobs of a room whose job failed are refused.
        for job in ready {
            if failed.get(&job.room_id) == Some(&job.generation) {
                let _ = job.done.send(Err(refused()));
                continue;
            }
            let result = write(storage.as_ref(), &job.writes).await;
            if result.is_err() {
                failed.insert(job.room_id.clone(), job.generation);
            }
            let _ = job.done.send(result);
        }
    }
}

/// The answer to a job built on a failed one (never shown to a client: the
/// writer redoes such a job).
fn refused() -> StorageError {
    StorageError::Database(sqlx::Error::Protocol("an earlier batch of the room failed".into()))
}

async fn write(storage: &dyn Storage, writes: &[Arc<EventWrite>]) -> Result<(), StorageError> {
    let news: Vec<NewEvent<'_>> = writes.iter().map(|w| w.as_new()).collect();
    storage.persist_events(&news).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(stream: i64, room_id: &str, prev: Option<&str>, txn_id: &str) -> Arc<EventWrite> {
        Arc::new(EventWrite {
            event: crate::storage::tests::stored(stream, &format!("$e{stream}"), room_id, None, 0),
            prev_events: prev.map(str::to_owned).into_iter().collect(),
            new_state_group: None,
            membership: None,
            txn: Some(("@a:x".into(), "D".into(), "send".into(), txn_id.into())),
            redaction: None,
            relation: None,
            search: None,
            push_actions: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_failed_job_fails_the_jobs_built_on_it_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let storage = crate::storage::open(&url, 2).await.unwrap();
        let commits = GroupCommit::start(storage.clone());
        commits.submit("!a:x", 0, vec![write(1, "!a:x", None, "t1")]).await.unwrap().unwrap();

        // Handed over together: room a's first job reuses a transaction id, its
        // second job built on the first, room b's job is independent.
        let failing =
            commits.submit("!a:x", 0, vec![write(2, "!a:x", Some("$e1"), "t2"), write(3, "!a:x", None, "t1")]);
        let built_on_it = commits.submit("!a:x", 0, vec![write(4, "!a:x", Some("$e3"), "t4")]);
        let other_room = commits.submit("!b:x", 0, vec![write(5, "!b:x", None, "t5")]);
        assert!(matches!(failing.await.unwrap(), Err(StorageError::DuplicateTxn)));
        assert!(built_on_it.await.unwrap().is_err());
        other_room.await.unwrap().unwrap();
        for (id, stored) in [("$e2", false), ("$e3", false), ("$e4", false), ("$e5", true)] {
            assert_eq!(storage.get_event(id).await.unwrap().is_some(), stored, "{id}");
        }

        // The writer read its head again (a new generation): room a is written again.
        commits.submit("!a:x", 1, vec![write(6, "!a:x", Some("$e1"), "t6")]).await.unwrap().unwrap();
        assert_eq!(storage.forward_extremities("!a:x").await.unwrap()[0].event_id, "$e6");
        storage.close().await;
    }
}
