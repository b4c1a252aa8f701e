//! Appending events to a room: one writer per room builds, authorises, hashes,
//! signs and persists each new event, so that rooms proceed in parallel while
//! every room's graph stays linear and valid.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ruma::room_version_rules::RoomVersionRules;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedUserId};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::oneshot;

use super::group_commit::{EventWrite, GroupCommit};
use super::ids::StreamId;
use super::pdu::{self, Pdu};
use super::state::{StateChange, StateMap, StateStore};
use crate::error::{Error, Result};
use crate::service::notifier::{EventNotice, Notifier};
use crate::service::now_ms;
use crate::service::push::{Evaluator, RoomPushContext, UnreadCache};
use crate::service::signing_key::SigningKey;
use crate::service::versioned_cache::VersionedCache;
use crate::storage::{Storage, StorageError, StoredEvent, TxnKey};

/// Most events of one room stored in one transaction.
const MAX_EVENTS_PER_BATCH: usize = 64;
/// Batches of one room handed to the group commit and not yet stored.
const MAX_BATCHES_IN_FLIGHT: usize = 2;
/// Batches a room's writer prepares before it lets others take the head.
const MAX_BATCHES_PER_TURN: usize = 32;
/// Rooms whose writers (current state, push context) are kept in memory when
/// idle (every room ever written to used to keep one).
const MAX_HEADS: usize = 1_000;
/// Generations reserved for each writer (see `Timeline::next_generations`).
const GENERATIONS_PER_WRITER: u64 = 1 << 32;
/// State changes a room's writer remembers, to store new snapshots as deltas cheaply.
const RECENT_CHANGES: usize = 4096;
/// Most prev_events one event names (the spec allows 20).
const MAX_PREV_EVENTS: usize = 20;
/// The spec's limit on the size of a PDU.
const MAX_PDU_BYTES: usize = 65_536;
/// Users whose room memberships are kept in memory for /sync.
const MAX_CACHED_USERS: u64 = 100_000;
/// Rooms whose member counts are kept in memory.
const MAX_CACHED_ROOMS: u64 = 100_000;
/// Event contents kept for visibility checks (history visibility, memberships).
const MAX_CACHED_CONTENTS: u64 = 100_000;
/// Stored events kept for /sync. Counted, not weighed: each holds its JSON and,
/// once formatted, the parsed form (~5 KB for a membership event, more for a
/// large one), so the count is kept small.
const MAX_CACHED_EVENTS: u64 = 4_096;
/// Memory for parsed state events (auth events): a room's writer reads a few
/// per event it sends; 16 MiB holds those of thousands of rooms.
const MAX_CACHED_PDU_BYTES: u64 = 16 << 20;
/// A parsed PDU's size besides its content (its ids, prev and auth event ids):
/// an estimate.
const PDU_OVERHEAD_BYTES: usize = 768;

/// What a client (or the server on its behalf) wants to add to a room.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub kind: String,
    pub state_key: Option<String>,
    pub content: Value,
    /// For m.room.redaction: the event redacted.
    pub redacts: Option<String>,
}

impl EventDraft {
    pub fn state(kind: &str, state_key: &str, content: Value) -> Self {
        Self { kind: kind.to_owned(), state_key: Some(state_key.to_owned()), content, redacts: None }
    }
    pub fn message(kind: &str, content: Value) -> Self {
        Self { kind: kind.to_owned(), state_key: None, content, redacts: None }
    }
}

/// Who sends, and the client transaction it came from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub sender: &'a str,
    /// `(device_id, scope, txn_id)`: the scope names the request path, since a
    /// retry is the same transaction id on the same path.
    pub txn: Option<(&'a str, &'a str, &'a str)>,
}

/// What a room's writer knows about the room's head between events.
struct RoomHead {
    room_id: String,
    version: String,
    rules: RoomVersionRules,
    /// Forward extremities: (event id, depth).
    extremities: Vec<(String, i64)>,
    state: Arc<StateMap>,
    state_group: i64,
    /// Number of state changes so far (the position of `state_group`).
    position: i64,
    /// The latest state changes, oldest first.
    recent: VecDeque<StateChange>,
    /// What push rule evaluation needs to know of the room; loaded on first use.
    push: Option<RoomPushContext>,
    /// `(position, id)` of the snapshots made by events not yet committed, so
    /// that a later event of the same batch can build on one.
    uncommitted_groups: Vec<(i64, i64)>,
    /// Events authorised but not yet committed, which later events of the same
    /// batch may name as auth events (the PDU cache may decline to keep them).
    uncommitted: HashMap<String, Arc<Pdu>>,
}

/// A room's writer: its head, and the appends waiting for it.
#[derive(Default)]
struct RoomWriter {
    head: AsyncMutex<Option<RoomHead>>,
    queue: Mutex<Vec<Request>>,
    /// Changes whenever the head is read again after a failed batch: the group
    /// commit refuses the batches that were built on the failed one.
    generation: AtomicU64,
    /// Whether a task is (about to be) writing the queue: appends spawn one only
    /// when none is. One task per append used to pile up under steady load,
    /// each waiting its turn at the head to find the queue already written
    /// (~9,000 tasks alive after 15 s of 16 senders).
    draining: AtomicBool,
    /// `Timeline::head_uses` when it was last asked for.
    last_used: AtomicU64,
}

impl RoomWriter {
    fn take_queued(&self) -> Vec<Request> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn has_queued(&self) -> bool {
        !self.queue.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Drops the least recently used quarter of the writers nobody holds (a
/// writer held by no one has no queued appends, no task and no reader).
fn evict_idle_writers(heads: &mut HashMap<String, Arc<RoomWriter>>) {
    let mut idle: Vec<(u64, String)> = heads
        .iter()
        .filter(|(_, writer)| Arc::strong_count(writer) == 1)
        .map(|(room_id, writer)| (writer.last_used.load(Ordering::Relaxed), room_id.clone()))
        .collect();
    idle.sort_unstable();
    for (_, room_id) in idle.into_iter().take(MAX_HEADS / 4) {
        heads.remove(&room_id);
    }
}

/// Clears `RoomWriter::draining` when a writing turn ends, also by a panic, so
/// that the next append starts a new task.
struct DrainingTurn<'a>(&'a AtomicBool);

impl Drop for DrainingTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A batch handed to the group commit, waiting for its result.
struct InFlight<'a> {
    done: oneshot::Receiver<Result<(), StorageError>>,
    batch: Vec<(Request, Prepared<'a>)>,
}

impl RoomHead {
    /// Forgets what it kept of an event until it was stored.
    fn stored(&mut self, prepared: &Prepared<'_>) {
        self.uncommitted.remove(&prepared.write.event.event_id);
        if let Some((group, _)) = &prepared.new_state {
            self.uncommitted_groups.retain(|(_, id)| id != group);
        }
    }
}

/// An append waiting for its room's writer.
struct Request {
    sender: String,
    /// `(device_id, scope, txn_id)`.
    txn: Option<(String, String, String)>,
    draft: EventDraft,
    reply: oneshot::Sender<Result<String>>,
}

impl Request {
    fn origin(&self) -> Origin<'_> {
        Origin {
            sender: &self.sender,
            txn: self.txn.as_ref().map(|(device, scope, txn)| (device.as_str(), scope.as_str(), txn.as_str())),
        }
    }
}

/// An event authorised on top of the room's head, waiting to be stored.
struct Prepared<'a> {
    write: Arc<EventWrite>,
    stream: StreamId<'a>,
    /// The snapshot the event makes, remembered once stored.
    new_state: Option<(i64, Arc<StateMap>)>,
    has_relation: bool,
}

/// A new room's first event decides its id (v12) and its head.
pub struct NewRoom {
    pub room_id: String,
    pub version: String,
}

/// What a /sync room summary says about a room's members.
pub struct MemberSummary {
    pub joined: usize,
    pub invited: usize,
    /// The first joined or invited members by user id.
    pub heroes: Vec<String>,
}

/// Members a summary keeps: five heroes, plus the viewer, who is left out.
const SUMMARY_MEMBERS: usize = 6;

pub struct Timeline {
    storage: Arc<dyn Storage>,
    state: Arc<StateStore>,
    signing_key: Arc<SigningKey>,
    server_name: String,
    /// One writer per room, created on first use. Beyond `MAX_HEADS` the least
    /// recently used writers that nobody holds are dropped (their rooms' heads
    /// are read again when next written to); one that anybody holds is kept,
    /// so that two writers can never exist for one room.
    heads: Mutex<HashMap<String, Arc<RoomWriter>>>,
    /// Counts `writer` calls: each writer's last use, for evicting idle ones.
    head_uses: AtomicU64,
    /// The first generation of the next writer: a room's new writer never
    /// reuses the generations of one dropped before it (the group commit
    /// remembers the generation a room's write failed in).
    next_generations: AtomicU64,
    /// Stores the events of all rooms' writers, several per transaction under load.
    commits: GroupCommit,
    ids: super::ids::IdAllocator,
    /// State events parsed as PDUs: the auth events and state the auth checks read.
    events: moka::future::Cache<String, Arc<Pdu>>,
    notifier: Arc<Notifier>,
    /// Each room's latest event position (lets /sync skip quiet rooms).
    pub activity: crate::service::activity::LatestPositions,
    /// Each active room's latest events (lets a woken /sync skip the database).
    pub recent: super::recent::RecentEvents,
    /// Each user's memberships (read by every /sync).
    pub user_rooms: VersionedCache<String, Arc<Vec<crate::storage::UserMembership>>>,
    /// The position of the latest membership event in any room (from start: the
    /// position the server started at, as nothing earlier is known here).
    latest_membership: std::sync::atomic::AtomicI64,
    /// The latest event with a relation (edit, thread, reference) in any room.
    latest_relation: std::sync::atomic::AtomicI64,
    /// Member counts and heroes per room, for /sync summaries.
    member_summaries: VersionedCache<String, Arc<MemberSummary>>,
    /// Event contents read by visibility checks (they change only by redaction).
    contents: VersionedCache<String, Option<Arc<Value>>>,
    /// Stored events that many /syncs send at once, such as a sender's
    /// membership for lazy-loading members (they change only by redaction).
    stored_events: VersionedCache<String, Option<StoredEvent>>,
    push: Evaluator,
    /// Unread counts held in memory, kept current as events are stored.
    unread: Arc<UnreadCache>,
}

impl Timeline {
    pub async fn new(
        storage: Arc<dyn Storage>,
        state: Arc<StateStore>,
        signing_key: Arc<SigningKey>,
        server_name: String,
        notifier: Arc<Notifier>,
        push: Evaluator,
        unread: Arc<UnreadCache>,
    ) -> Result<Self> {
        let ids = super::ids::IdAllocator::load(storage.as_ref()).await?;
        let started_at = ids.persisted();
        Ok(Self {
            storage: storage.clone(),
            state,
            signing_key,
            server_name,
            heads: Mutex::new(HashMap::new()),
            head_uses: AtomicU64::new(0),
            next_generations: AtomicU64::new(0),
            commits: GroupCommit::start(storage.clone()),
            ids,
            events: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED_PDU_BYTES)
                .weigher(|_, pdu: &Arc<Pdu>| {
                    u32::try_from(pdu.content.get().len() + PDU_OVERHEAD_BYTES).unwrap_or(u32::MAX)
                })
                .build(),
            notifier,
            activity: Default::default(),
            recent: Default::default(),
            user_rooms: VersionedCache::new(MAX_CACHED_USERS),
            latest_membership: std::sync::atomic::AtomicI64::new(started_at),
            latest_relation: std::sync::atomic::AtomicI64::new(started_at),
            contents: VersionedCache::new(MAX_CACHED_CONTENTS),
            stored_events: VersionedCache::new(MAX_CACHED_EVENTS),
            member_summaries: VersionedCache::new(MAX_CACHED_ROOMS),
            push,
            unread,
        })
    }

    pub fn ids(&self) -> &super::ids::IdAllocator {
        &self.ids
    }

    /// Whether an event relating to another (edit, thread reply, reference) may
    /// have been stored after `position`. Local relations always come after
    /// their target; one received over federation before its target would not
    /// (record it here when federation lands).
    pub fn relation_stored_after(&self, position: i64) -> bool {
        self.latest_relation.load(Ordering::SeqCst) > position
    }

    /// An event's content, from memory once read (contents change only by redaction).
    pub async fn content(&self, event_id: &str) -> Result<Option<Arc<Value>>> {
        let read = || async {
            Ok::<_, Error>(match self.storage.get_event(event_id).await? {
                Some(event) => Some(Arc::new(super::format::content(&event)?)),
                None => None,
            })
        };
        self.contents.get_or_load(&event_id.to_owned(), read).await
    }

    /// Stored events by id (those that exist), from memory once read: when a
    /// message wakes a thousand long-polls, each sends its sender's membership
    /// event, read once instead of a thousand times. A parsed event is shared
    /// by the copies handed out. Only for ids of stored events (from committed
    /// state): an id not found is remembered as absent until a redaction. Each
    /// miss is its own read (a cold sync with many senders pays one per sender).
    pub async fn stored_events(&self, event_ids: &[String]) -> Result<Vec<StoredEvent>> {
        let mut events = Vec::with_capacity(event_ids.len());
        for event_id in event_ids {
            let read = || async { Ok::<_, Error>(self.storage.get_event(event_id).await?) };
            events.extend(self.stored_events.get_or_load(event_id, read).await?);
        }
        Ok(events)
    }

    /// A room's joined and invited member counts, and the first few of them (by user id).
    pub async fn member_summary(&self, room_id: &str) -> Result<Arc<MemberSummary>> {
        let read = || async {
            let members = self.storage.room_members(room_id).await?;
            let current = |m: &&crate::storage::MemberRecord| matches!(m.membership.as_str(), "join" | "invite");
            Ok::<_, Error>(Arc::new(MemberSummary {
                joined: members.iter().filter(|m| m.membership == "join").count(),
                invited: members.iter().filter(|m| m.membership == "invite").count(),
                // One more than a summary names: the viewer may be among them.
                heroes: members.iter().filter(current).take(SUMMARY_MEMBERS).map(|m| m.user_id.clone()).collect(),
            }))
        };
        self.member_summaries.get_or_load(&room_id.to_owned(), read).await
    }

    /// Whether a membership event may have been stored after `position`.
    pub fn membership_changed_after(&self, position: i64) -> bool {
        self.latest_membership.load(Ordering::SeqCst) > position
    }

    fn writer(&self, room_id: &str) -> Arc<RoomWriter> {
        let used = self.head_uses.fetch_add(1, Ordering::Relaxed);
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = heads.get(room_id) {
            writer.last_used.store(used, Ordering::Relaxed);
            return writer.clone();
        }
        if heads.len() >= MAX_HEADS {
            evict_idle_writers(&mut heads);
        }
        let writer = Arc::new(RoomWriter {
            generation: AtomicU64::new(self.next_generations.fetch_add(GENERATIONS_PER_WRITER, Ordering::Relaxed)),
            last_used: AtomicU64::new(used),
            ..RoomWriter::default()
        });
        heads.insert(room_id.to_owned(), writer.clone());
        writer
    }

    /// A stored event parsed as a PDU, cached (events never change but by redaction,
    /// which the auth rules do not look at).
    pub async fn pdu(&self, event_id: &str, rules: &RoomVersionRules) -> Result<Option<Arc<Pdu>>> {
        if let Some(pdu) = self.events.get(event_id).await {
            return Ok(Some(pdu));
        }
        let Some(stored) = self.storage.get_event(event_id).await? else { return Ok(None) };
        let id = OwnedEventId::try_from(stored.event_id.as_str()).map_err(Error::internal)?;
        let pdu = Arc::new(Pdu::parse(id, &stored.json, rules)?);
        self.events.insert(event_id.to_owned(), pdu.clone()).await;
        Ok(Some(pdu))
    }

    /// An event the head's auth checks consult: one of the batch being written, or a stored one.
    async fn head_pdu(&self, head: &RoomHead, event_id: &str) -> Result<Option<Arc<Pdu>>> {
        match head.uncommitted.get(event_id) {
            Some(pdu) => Ok(Some(pdu.clone())),
            None => self.pdu(event_id, &head.rules).await,
        }
    }

    async fn load_head(&self, room_id: &str) -> Result<RoomHead> {
        let room = self.storage.get_room(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        let rules = pdu::rules_for(&room.room_version)?;
        let extremities = self.storage.forward_extremities(room_id).await?;
        // Locally every room has one extremity; several would need state
        // resolution, which arrives with federation: the deepest one wins until then.
        let Some(latest) = extremities.first() else {
            return Err(Error::internal(format!("room {room_id} has no forward extremities")));
        };
        let group = self.storage.state_group(latest.state_group).await?;
        let state = self.state.full_state(latest.state_group).await?;
        Ok(RoomHead {
            room_id: room_id.to_owned(),
            version: room.room_version,
            rules,
            extremities: extremities.iter().map(|e| (e.event_id.clone(), e.depth)).collect(),
            state,
            state_group: latest.state_group,
            position: group.map(|g| g.position).unwrap_or(0),
            recent: VecDeque::new(),
            push: None,
            uncommitted_groups: Vec::new(),
            uncommitted: HashMap::new(),
        })
    }

    /// Creates a room from its m.room.create content; returns the room id.
    pub async fn create_room(&self, version: &str, sender: &str, content: Value) -> Result<NewRoom> {
        let rules = pdu::rules_for(version)?;
        let mut head = RoomHead {
            room_id: String::new(),
            version: version.to_owned(),
            rules,
            extremities: Vec::new(),
            state: Arc::new(StateMap::new()),
            state_group: 0,
            position: 0,
            recent: VecDeque::new(),
            push: None,
            uncommitted_groups: Vec::new(),
            uncommitted: HashMap::new(),
        };
        if !head.rules.authorization.room_create_event_id_as_room_id {
            head.room_id = format!("!{}:{}", crate::service::secrets::random_id(18), self.server_name);
        }
        let draft = EventDraft::state("m.room.create", "", content);
        // In v12+ the room id is the create event's hash: the same user creating
        // two rooms with the same content in the same millisecond would get one
        // id, so a collision retries one millisecond later.
        let mut attempt = 0;
        let (object, event_id) = loop {
            let (object, event_id) =
                self.build(&head, &Origin { sender, txn: None }, &draft, now_ms() + attempt).await?;
            if head.rules.authorization.room_create_event_id_as_room_id {
                head.room_id = format!("!{}", &event_id.as_str()[1..]);
            }
            let record = crate::storage::RoomRecord {
                room_id: head.room_id.clone(),
                room_version: version.to_owned(),
                creator: sender.to_owned(),
                is_public: false,
            };
            if self.storage.create_room(&record, now_ms()).await? {
                break (object, event_id);
            }
            attempt += 1;
            if attempt > 16 || !head.rules.authorization.room_create_event_id_as_room_id {
                return Err(Error::internal("room id collision"));
            }
        };
        head.push = Some(RoomPushContext::new_room(&head.room_id)?);
        let writer = self.writer(&head.room_id);
        let mut guard = writer.head.lock().await;
        let prepared = self.authorize(&mut head, object, event_id, &draft, &Origin { sender, txn: None }).await?;
        let generation = writer.generation.load(Ordering::SeqCst);
        let done = self.commits.submit(&head.room_id, generation, vec![prepared.write.clone()]);
        done.await.map_err(|_| Error::internal("the group commit stopped"))?.map_err(stored_error)?;
        head.stored(&prepared);
        self.publish(prepared).await;
        let room = NewRoom { room_id: head.room_id.clone(), version: version.to_owned() };
        *guard = Some(head);
        Ok(room)
    }

    /// Appends an event to an existing room; returns its event id. A retried
    /// client transaction returns the event it created the first time.
    pub async fn append(self: &Arc<Self>, room_id: &str, origin: &Origin<'_>, draft: &EventDraft) -> Result<String> {
        let writer = self.writer(room_id);
        let (reply, answer) = oneshot::channel();
        writer.queue.lock().unwrap_or_else(|e| e.into_inner()).push(Request {
            sender: origin.sender.to_owned(),
            txn: origin.txn.map(|(device, scope, txn)| (device.to_owned(), scope.to_owned(), txn.to_owned())),
            draft: draft.clone(),
            reply,
        });
        self.start_writing(room_id, writer);
        answer.await.map_err(|_| Error::internal("the room writer stopped"))?
    }

    /// Makes sure a task writes the room's queued appends, spawning one unless
    /// one is already at it. The writer runs in a task of its own: once events
    /// are handed to the database it must see them through (move the head,
    /// publish their positions) even if the client that asked goes away.
    fn start_writing(self: &Arc<Self>, room_id: &str, writer: Arc<RoomWriter>) {
        if writer.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            loop {
                {
                    let _turn = DrainingTurn(&writer.draining);
                    this.drain(&room_id, &writer).await;
                }
                // An append queued after the turn's last look found the flag
                // still set and left its request to this task.
                if !writer.has_queued() || writer.draining.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    }

    /// Takes the room's writer and writes every append waiting for it.
    async fn drain(&self, room_id: &str, writer: &RoomWriter) {
        let mut head = writer.head.lock().await;
        self.write_requests(room_id, writer, &mut head).await;
    }

    /// Authorises queued appends one after another on top of the head, hands
    /// them to the group commit in batches, and answers each request once its
    /// batch is stored. The next batch is prepared while the previous one is
    /// being stored (it builds on the head as if that one were stored; if it
    /// is not, the committer refuses the later batch too and both are redone).
    async fn write_requests(&self, room_id: &str, writer: &RoomWriter, slot: &mut Option<RoomHead>) {
        let mut queue: VecDeque<Request> = VecDeque::new();
        let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
        // After a batch fails, its requests are retried one at a time, so that
        // each gets its own answer (a retried transaction id, say).
        let mut alone = 0usize;
        let mut batches = 0usize;
        loop {
            // After a while the writer stops taking new requests and lets go of the
            // head once done, so that others waiting for it (a room upgrade reading
            // the current state) get their turn; the writing task then queues for
            // the head again (the lock is fair) while requests are left.
            if batches < MAX_BATCHES_PER_TURN {
                queue.extend(writer.take_queued());
            }
            if let Some(next) = queue.front()
                && in_flight.len() < MAX_BATCHES_IN_FLIGHT
            {
                // What must see every earlier event stored waits for the batches in flight:
                // a redaction (it reads its target as stored), rooms of versions 1 and 2
                // (prev events are named by a hash of the stored event), retries one by one.
                let must_wait = !in_flight.is_empty()
                    && (slot.is_none()
                        || alone > 0
                        || next.draft.redacts.is_some()
                        || slot.as_ref().is_some_and(|head| !pdu::event_id_is_hash(&head.rules)));
                if !must_wait {
                    if let Some(flight) = self.prepare_batch(room_id, writer, slot, &mut queue, &mut alone).await {
                        in_flight.push_back(flight);
                        batches += 1;
                    }
                    continue;
                }
            }
            let Some(flight) = in_flight.pop_front() else {
                if queue.is_empty() {
                    return;
                }
                continue;
            };
            let result = match flight.done.await {
                Ok(result) => result,
                Err(_) => Err(StorageError::Database(sqlx::Error::PoolClosed)),
            };
            match result {
                Ok(()) => {
                    for (request, prepared) in flight.batch {
                        if let Some(head) = slot.as_mut() {
                            head.stored(&prepared);
                        }
                        let event_id = prepared.write.event.event_id.clone();
                        self.publish(prepared).await;
                        let _ = request.reply.send(Ok(event_id));
                    }
                }
                Err(e) => {
                    // The head moved past events that were not stored: read it again.
                    // The batches in flight after this one built on it: the committer
                    // refuses them (same generation), and they are redone.
                    *slot = None;
                    writer.generation.fetch_add(1, Ordering::SeqCst);
                    let later: Vec<InFlight<'_>> = in_flight.drain(..).collect();
                    let failed = flight.batch.len();
                    let mut redo: Vec<Request> = Vec::new();
                    for (request, prepared) in flight.batch.into_iter().chain(later.into_iter().flat_map(|f| f.batch)) {
                        self.events.invalidate(&prepared.write.event.event_id).await;
                        redo.push(request);
                    }
                    if failed == 1 {
                        // A batch of one failed for its own reason: that is its answer.
                        let request = redo.remove(0);
                        let answer = self.failed(&request.origin(), stored_error(e)).await;
                        let _ = request.reply.send(answer);
                    } else {
                        // A larger one is redone one by one, so each request gets its own.
                        alone += failed;
                    }
                    for request in redo.into_iter().rev() {
                        queue.push_front(request);
                    }
                }
            }
        }
    }

    /// Authorises the next requests of the queue on the head (loading it if
    /// needed) and hands them to the group commit as one batch.
    async fn prepare_batch<'a>(
        &'a self,
        room_id: &str,
        writer: &RoomWriter,
        slot: &mut Option<RoomHead>,
        queue: &mut VecDeque<Request>,
        alone: &mut usize,
    ) -> Option<InFlight<'a>> {
        if slot.is_none() {
            match self.load_head(room_id).await {
                Ok(head) => *slot = Some(head),
                Err(e) => {
                    for request in queue.drain(..) {
                        let _ = request.reply.send(Err(e.clone()));
                    }
                    return None;
                }
            }
        }
        let head = slot.as_mut().expect("loaded above");
        let limit = if *alone > 0 || !pdu::event_id_is_hash(&head.rules) { 1 } else { MAX_EVENTS_PER_BATCH };
        let mut batch: Vec<(Request, Prepared<'a>)> = Vec::new();
        while batch.len() < limit
            && let Some(next) = queue.front()
        {
            // A redaction reads its target as stored: what comes before it is stored first.
            if !batch.is_empty() && next.draft.redacts.is_some() {
                break;
            }
            let request = queue.pop_front().expect("front exists");
            *alone = alone.saturating_sub(1);
            let prepared = match self.build(head, &request.origin(), &request.draft, now_ms()).await {
                Ok((object, event_id)) => {
                    self.authorize(head, object, event_id, &request.draft, &request.origin()).await
                }
                Err(e) => Err(e),
            };
            match prepared {
                Ok(prepared) => batch.push((request, prepared)),
                Err(e) => {
                    let answer = self.failed(&request.origin(), e).await;
                    let _ = request.reply.send(answer);
                }
            }
        }
        if batch.is_empty() {
            return None;
        }
        let writes = batch.iter().map(|(_, prepared)| prepared.write.clone()).collect();
        let generation = writer.generation.load(Ordering::SeqCst);
        Some(InFlight { done: self.commits.submit(room_id, generation, writes), batch })
    }

    /// The answer to an append that failed: a retried client transaction is
    /// answered with the event it made the first time. Looked up only on
    /// failure (the transaction id's unique key refuses the duplicate), so the
    /// common path costs no query.
    async fn failed(&self, origin: &Origin<'_>, e: Error) -> Result<String> {
        let Some((device_id, scope, txn_id)) = origin.txn else { return Err(e) };
        match self.storage.txn_event_id(&TxnKey { user_id: origin.sender, device_id, scope, txn_id }).await? {
            Some(existing) => Ok(existing),
            None => Err(e),
        }
    }

    /// The current state of a room as its writer sees it.
    pub async fn current_state(&self, room_id: &str) -> Result<(Arc<StateMap>, String)> {
        let writer = self.writer(room_id);
        let mut guard = writer.head.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_head(room_id).await?);
        }
        let head = guard.as_ref().expect("loaded above");
        Ok((head.state.clone(), head.version.clone()))
    }

    /// Builds, hashes and signs the PDU for a draft on top of the room's head.
    async fn build(
        &self,
        head: &RoomHead,
        origin: &Origin<'_>,
        draft: &EventDraft,
        origin_server_ts: i64,
    ) -> Result<(CanonicalJsonObject, OwnedEventId)> {
        let rules = &head.rules;
        let sender = OwnedUserId::try_from(origin.sender).map_err(Error::internal)?;
        let content_raw = serde_json::value::to_raw_value(&draft.content).map_err(Error::internal)?;
        let kind = ruma::events::TimelineEventType::from(draft.kind.as_str());
        let auth_types = ruma::state_res::auth_types_for_event(
            &kind,
            &sender,
            draft.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event content: {e}")))?;
        let auth_events: Vec<&String> =
            auth_types.iter().filter_map(|(t, k)| head.state.get(&(t.to_string(), k.clone()))).collect();

        let mut prev: Vec<&(String, i64)> = head.extremities.iter().collect();
        prev.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
        prev.truncate(MAX_PREV_EVENTS);
        let depth = prev.iter().map(|(_, d)| *d).max().unwrap_or(0) + 1;

        let mut object = CanonicalJsonObject::new();
        let auth_refs = self.event_refs(rules, auth_events).await?;
        object.insert("auth_events".into(), auth_refs);
        let prev_refs = self.event_refs(rules, prev.iter().map(|(id, _)| id).collect()).await?;
        object.insert("prev_events".into(), prev_refs);
        let content = ruma::canonical_json::to_canonical_value(&draft.content)
            .map_err(|e| Error::bad_json(format!("Content is not canonical JSON: {e}")))?;
        object.insert("content".into(), content);
        object.insert("depth".into(), CanonicalJsonValue::Integer(depth.try_into().map_err(Error::internal)?));
        object.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(origin_server_ts.try_into().map_err(Error::internal)?),
        );
        if !head.room_id.is_empty() {
            object.insert("room_id".into(), CanonicalJsonValue::String(head.room_id.clone()));
        }
        object.insert("sender".into(), CanonicalJsonValue::String(origin.sender.to_owned()));
        object.insert("type".into(), CanonicalJsonValue::String(draft.kind.clone()));
        if let Some(state_key) = &draft.state_key {
            object.insert("state_key".into(), CanonicalJsonValue::String(state_key.clone()));
        }
        if let Some(redacts) = &draft.redacts
            && !rules.redaction.content_field_redacts
        {
            object.insert("redacts".into(), CanonicalJsonValue::String(redacts.clone()));
        }
        if rules.redaction.keep_origin_membership_prev_state {
            // Versions before 11 have a top-level `origin`.
            object.insert("origin".into(), CanonicalJsonValue::String(self.server_name.clone()));
        }
        let v1_event_id = if pdu::event_id_is_hash(rules) {
            None
        } else {
            let id = format!("${}:{}", crate::service::secrets::random_id(18), self.server_name);
            object.insert("event_id".into(), CanonicalJsonValue::String(id.clone()));
            Some(id)
        };

        ruma::signatures::hash_and_sign_event(
            &self.server_name,
            self.signing_key.pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        if serde_json::to_vec(&object).map_err(Error::internal)?.len() > MAX_PDU_BYTES {
            return Err(Error::too_large("The event is larger than 65536 bytes"));
        }
        let event_id = match v1_event_id {
            Some(id) => OwnedEventId::try_from(id).map_err(Error::internal)?,
            None => pdu::reference_event_id(&object, rules)?,
        };
        Ok((object, event_id))
    }

    /// `prev_events`/`auth_events` in the room version's format; v1 and v2 name
    /// each event with its reference hash.
    async fn event_refs(&self, rules: &RoomVersionRules, ids: Vec<&String>) -> Result<CanonicalJsonValue> {
        let mut refs = Vec::with_capacity(ids.len());
        for id in ids {
            let event_id = OwnedEventId::try_from(id.as_str()).map_err(Error::internal)?;
            let hash = if pdu::event_id_is_hash(rules) {
                String::new()
            } else {
                let stored = self.storage.get_event(id).await?.ok_or_else(|| Error::internal("missing prev event"))?;
                pdu::reference_hash(&stored.json, rules)?
            };
            refs.push((event_id, hash));
        }
        Ok(pdu::event_refs(rules, &refs))
    }

    /// Checks the auth rules against the state before the event and moves the
    /// room's head past it; the event is then ready to be stored. On an error
    /// the head is as it was.
    async fn authorize(
        &self,
        head: &mut RoomHead,
        object: CanonicalJsonObject,
        event_id: OwnedEventId,
        draft: &EventDraft,
        origin: &Origin<'_>,
    ) -> Result<Prepared<'_>> {
        let rules = head.rules.clone();
        let json = serde_json::to_string(&object).map_err(Error::internal)?;
        let pdu = Pdu::parse(event_id.clone(), &json, &rules)?;

        // Events the checks may look at: the auth events, and the state before.
        let mut known: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for id in &pdu.auth_events {
            if let Some(event) = self.head_pdu(head, id.as_str()).await? {
                known.insert(id.clone(), event);
            }
        }
        if rules.authorization.room_create_event_id_as_room_id
            && let Some(create_id) = head.state.get(&("m.room.create".to_owned(), String::new()))
            && let Some(event) = self.head_pdu(head, create_id).await?
        {
            known.insert(event.event_id.clone(), event);
        }
        // The state the auth rules consult: the event's auth types (power levels,
        // the members involved, join rules, invites) and the create event.
        let content_raw = serde_json::value::to_raw_value(&draft.content).map_err(Error::internal)?;
        let mut keys = ruma::state_res::auth_types_for_event(
            &pdu.kind,
            &pdu.sender,
            draft.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event content: {e}")))?
        .into_iter()
        .map(|(t, k)| (t.to_string(), k))
        .collect::<Vec<_>>();
        keys.push(("m.room.create".to_owned(), String::new()));
        let mut state_events: HashMap<(String, String), Arc<Pdu>> = HashMap::new();
        for key in keys {
            if let Some(id) = head.state.get(&key)
                && let Some(event) = self.head_pdu(head, id).await?
            {
                state_events.insert(key, event);
            }
        }

        let forbidden = |e: String| Error::forbidden(format!("Not allowed: {e}"));
        ruma::state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id| known.get(id).cloned())
            .map_err(forbidden)?;
        ruma::state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, |t, k| {
            state_events.get(&(t.to_string(), k.to_owned())).cloned()
        })
        .map_err(forbidden)?;

        // A redaction that applies rewrites the stored target.
        let redaction = match (&draft.redacts, draft.kind.as_str()) {
            (Some(target), "m.room.redaction") => self.redacted_json(&head.room_id, target, &rules).await?,
            _ => None,
        };

        // Notifications are stored with the event, so a /sync that sees the event
        // sees the counts it changed. Evaluated before a stream position is
        // taken: events of other rooms become visible only once every earlier
        // position is stored, so the position is held no longer than the write.
        if head.push.is_none() {
            head.push = Some(RoomPushContext::load(self.storage.as_ref(), &head.room_id, &rules.authorization).await?);
        }
        let push_context = head.push.as_mut().expect("loaded above");
        let push_actions = self.push.evaluate(push_context, origin.sender, &json, &draft.content).await?;

        // The state after, and its snapshot when the event changes state.
        let stream = self.ids.next_stream();
        let (state_group, new_group, new_state) = match &draft.state_key {
            Some(state_key) => {
                let key = (draft.kind.clone(), state_key.clone());
                let state = head.state.update(key.clone(), event_id.to_string());
                let group_id = self.ids.next_state_group();
                let position = head.position + 1;
                head.recent.push_back((position, key, event_id.to_string()));
                let plan = self
                    .state
                    .plan_group(&head.room_id, group_id, position, &state, &head.recent, &head.uncommitted_groups)
                    .await;
                let plan = match plan {
                    Ok(plan) => plan,
                    Err(e) => {
                        head.recent.pop_back();
                        return Err(e);
                    }
                };
                if head.recent.len() > RECENT_CHANGES {
                    head.recent.pop_front();
                }
                (group_id, Some(plan), Some(Arc::new(state)))
            }
            None => (head.state_group, None, None),
        };
        let membership =
            (draft.kind == "m.room.member").then(|| draft.content.get("membership").and_then(Value::as_str)).flatten();

        let event = StoredEvent {
            stream_ordering: stream.id(),
            event_id: event_id.to_string(),
            room_id: head.room_id.clone(),
            event_type: draft.kind.clone(),
            state_key: draft.state_key.clone(),
            sender: origin.sender.to_owned(),
            depth: pdu.depth as i64,
            origin_server_ts: u64::from(pdu.origin_server_ts.get()) as i64,
            state_group,
            replaces_state: draft
                .state_key
                .as_ref()
                .and_then(|k| head.state.get(&(draft.kind.clone(), k.clone())).cloned()),
            redacted_by: None,
            json,
            parsed: Default::default(),
        };
        if redaction.is_some() {
            // The target's stored form changes: what memory holds of the room goes.
            self.recent.drop_room(&event.room_id);
        }
        let relation = relation(&draft.content);
        let write = Arc::new(EventWrite {
            prev_events: pdu.prev_events.iter().map(ToString::to_string).collect(),
            new_state_group: new_group,
            membership: membership.map(str::to_owned),
            txn: origin.txn.map(|(device_id, scope, txn_id)| {
                (origin.sender.to_owned(), device_id.to_owned(), scope.to_owned(), txn_id.to_owned())
            }),
            redaction,
            relation: relation.map(|(to, rel)| (to.to_owned(), rel.to_owned())),
            search: searchable(&draft.kind, &draft.content).map(|(key, text)| (key, text.to_owned())),
            push_actions,
            event,
        });

        // The head moves past the event: a later event of the same batch builds on it.
        head.extremities = vec![(write.event.event_id.clone(), write.event.depth)];
        if let (Some(state_key), Some(push)) = (&draft.state_key, head.push.as_mut()) {
            push.apply(&draft.kind, state_key, origin.sender, &draft.content, &rules.authorization);
        }
        if let (Some(state), Some(group)) = (&new_state, &write.new_state_group) {
            head.state = state.clone();
            head.state_group = group.id;
            head.position = group.position;
            head.uncommitted_groups.push((group.position, group.id));
        }
        // Later events of the batch may name this one among their auth events.
        // Only state events can be auth events (or state the checks consult):
        // a message kept in the shared cache would only crowd out those.
        let pdu = Arc::new(pdu);
        head.uncommitted.insert(event_id.to_string(), pdu.clone());
        if draft.state_key.is_some() {
            self.events.insert(event_id.to_string(), pdu).await;
        }
        Ok(Prepared {
            new_state: new_state.map(|state| (state_group, state)),
            has_relation: relation.is_some(),
            write,
            stream,
        })
    }

    /// Makes a stored event visible: in-memory views first, then its stream
    /// position, then the wake-up of the long-polls it concerns.
    async fn publish(&self, prepared: Prepared<'_>) {
        let Prepared { write, stream, new_state, has_relation } = prepared;
        let stored = &write.event;
        let stream_id = stream.id();
        // Before the watermark moves: a sync that sees this position must see the room active.
        self.activity.record(&stored.room_id, stream_id);
        self.recent.push(stored);
        self.unread.event_stored(&stored.room_id, stream_id, &stored.sender, &write.push_actions);
        if write.redaction.is_some() {
            self.contents.changed_all();
            self.stored_events.changed_all();
            // The target's notifications were deleted with it.
            self.unread.room_changed(&stored.room_id);
        }
        if has_relation {
            self.latest_relation.fetch_max(stream_id, Ordering::SeqCst);
        }
        let membership = write.membership.as_deref();
        if let (Some(user), Some(_)) = (&stored.state_key, membership) {
            // The user's next /sync re-reads the memberships.
            self.user_rooms.changed(user);
            self.member_summaries.changed(&stored.room_id);
            self.latest_membership.fetch_max(stream_id, Ordering::SeqCst);
        }
        stream.finish();

        if let Some((target, _)) = &write.redaction {
            self.events.invalidate(target).await;
        }
        if let Some((group, state)) = new_state {
            self.state.remember(group, state).await;
        }
        let notice = EventNotice {
            room_id: stored.room_id.clone(),
            member: match (stored.state_key.clone(), membership) {
                (Some(user), Some(membership)) if stored.event_type == "m.room.member" => {
                    Some((user, membership.to_owned()))
                }
                _ => None,
            },
        };
        self.notifier.event_persisted(stream_id, notice, self.ids.persisted());
    }

    /// The redacted form of a room's event, when it exists and is not yet redacted.
    async fn redacted_json(
        &self,
        room_id: &str,
        target: &str,
        rules: &RoomVersionRules,
    ) -> Result<Option<(String, String)>> {
        let Some(event) = self.storage.get_event(target).await? else { return Ok(None) };
        if event.room_id != room_id || event.redacted_by.is_some() {
            return Ok(None);
        }
        let object: CanonicalJsonObject = serde_json::from_str(&event.json).map_err(Error::internal)?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None).map_err(Error::internal)?;
        Ok(Some((event.event_id, serde_json::to_string(&redacted).map_err(Error::internal)?)))
    }
}

/// A storage error as the client sees it.
fn stored_error(e: crate::storage::StorageError) -> Error {
    match e {
        // Not a failure: `append` answers with the transaction's first event.
        crate::storage::StorageError::DuplicateTxn => {
            Error::new(axum::http::StatusCode::CONFLICT, "M_UNKNOWN", "Duplicate transaction")
        }
        other => other.into(),
    }
}

/// `(relates_to, rel_type)` of an event that relates to another with a rel_type.
/// One naming a NUL names no event (and PostgreSQL text cannot hold it).
fn relation(content: &Value) -> Option<(&str, &str)> {
    let relates_to = content.get("m.relates_to")?;
    let relation = (relates_to.get("event_id")?.as_str()?, relates_to.get("rel_type")?.as_str()?);
    (!relation.0.contains('\0') && !relation.1.contains('\0')).then_some(relation)
}

/// The text of an event that full-text search indexes, with its key.
fn searchable<'a>(kind: &str, content: &'a Value) -> Option<(&'static str, &'a str)> {
    let (key, field) = match kind {
        "m.room.message" => ("content.body", "body"),
        "m.room.name" => ("content.name", "name"),
        "m.room.topic" => ("content.topic", "topic"),
        _ => return None,
    };
    Some((key, content.get(field)?.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_writers_are_evicted_least_recently_used_first_and_held_ones_kept() {
        let mut heads: HashMap<String, Arc<RoomWriter>> = HashMap::new();
        let mut held = Vec::new();
        for i in 0..MAX_HEADS {
            let writer = Arc::new(RoomWriter { last_used: AtomicU64::new(i as u64), ..RoomWriter::default() });
            // The oldest ten are in use (a queued append, a writing task).
            if i < 10 {
                held.push(writer.clone());
            }
            heads.insert(format!("!{i}:x"), writer);
        }
        evict_idle_writers(&mut heads);
        assert_eq!(heads.len(), MAX_HEADS - MAX_HEADS / 4);
        for i in 0..10 {
            assert!(heads.contains_key(&format!("!{i}:x")), "held writer {i} was dropped");
        }
        // Next the least recently used of the idle ones went.
        for i in 10..10 + MAX_HEADS / 4 {
            assert!(!heads.contains_key(&format!("!{i}:x")), "writer {i} kept");
        }
        assert!(heads.contains_key(&format!("!{}:x", 10 + MAX_HEADS / 4)));
        drop(held);
    }
}
