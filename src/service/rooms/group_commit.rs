//! Group commit: the events that room writers hand over while a transaction is
//! being written are stored together in the next one.
//!
//! A transaction's cost is mostly fixed (taking the writer connection, the
//! round trips of BEGIN and COMMIT, writing the touched B-tree pages to the
//! WAL, PostgreSQL's flush), so under load many events share it instead of each
//! paying for it. Nothing waits to fill a batch: an idle server commits an
//! event at once, and a batch is whatever queued up during the previous commit.

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
    writes: Vec<Arc<EventWrite>>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// Hands events to the task that writes them.
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

    /// Stores one room's events (in order, all or none) and returns once they
    /// are committed. The events of a job are never split, and a job fails only
    /// for its own events: a batch that fails is retried job by job.
    pub async fn commit(&self, writes: Vec<Arc<EventWrite>>) -> Result<(), StorageError> {
        let (done, result) = oneshot::channel();
        self.jobs.send(Job { writes, done }).map_err(|_| closed())?;
        result.await.map_err(|_| closed())?
    }
}

fn closed() -> StorageError {
    StorageError::Database(sqlx::Error::PoolClosed)
}

async fn run(storage: Arc<dyn Storage>, mut queue: mpsc::UnboundedReceiver<Job>) {
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
        if jobs.len() == 1 {
            let job = jobs.pop().expect("one job");
            let result = write(storage.as_ref(), &job.writes).await;
            let _ = job.done.send(result);
            continue;
        }
        let all: Vec<NewEvent<'_>> = jobs.iter().flat_map(|job| job.writes.iter().map(|w| w.as_new())).collect();
        let result = storage.persist_events(&all).await;
        drop(all);
        match result {
            Ok(()) => {
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
            }
            // One job's failure (a retried client transaction, say) must not fail
            // the others: each is tried alone, and answered with its own result.
            Err(_) => {
                for job in jobs {
                    let result = write(storage.as_ref(), &job.writes).await;
                    let _ = job.done.send(result);
                }
            }
        }
    }
}

async fn write(storage: &dyn Storage, writes: &[Arc<EventWrite>]) -> Result<(), StorageError> {
    let news: Vec<NewEvent<'_>> = writes.iter().map(|w| w.as_new()).collect();
    storage.persist_events(&news).await
}
