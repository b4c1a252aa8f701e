//! Storage of rooms: events (the DAG), state snapshots, current state,
//! memberships, transaction ids and aliases.

use std::sync::{Arc, LazyLock, OnceLock};

use async_trait::async_trait;
use serde_json::Value;

use super::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoomRecord {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub is_public: bool,
}

/// An event as stored: its PDU JSON and the columns indexed beside it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event_id: String,
    pub room_id: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub state_group: i64,
    /// For a state event: the event it replaced in the room state.
    pub replaces_state: Option<String>,
    pub redacted_by: Option<String>,
    pub json: String,
    /// `json` parsed, on first use, shared by clones: an event held in memory
    /// is formatted for every member it is delivered to. Never set `json`
    /// after it is read.
    #[sqlx(skip)]
    pub parsed: Arc<OnceLock<Value>>,
}

impl StoredEvent {
    /// The PDU as JSON, parsed once.
    pub fn pdu(&self) -> serde_json::Result<&Value> {
        if let Some(pdu) = self.parsed.get() {
            return Ok(pdu);
        }
        let pdu = serde_json::from_str(&self.json)?;
        Ok(self.parsed.get_or_init(|| pdu))
    }

    /// The event's `content` (an empty object when it has none).
    pub fn content(&self) -> serde_json::Result<&Value> {
        static EMPTY: LazyLock<Value> = LazyLock::new(|| Value::Object(Default::default()));
        Ok(self.pdu()?.get("content").unwrap_or(&EMPTY))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateGroupRecord {
    pub id: i64,
    pub prev_group: Option<i64>,
    pub position: i64,
}

/// One (type, state_key) → event_id entry of a state snapshot.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StateEntry {
    pub event_type: String,
    pub state_key: String,
    pub event_id: String,
}

#[derive(Debug, Clone)]
pub struct NewStateGroup {
    pub id: i64,
    pub prev_group: Option<i64>,
    pub position: i64,
    /// The entries that differ from `prev_group`.
    pub delta: Vec<StateEntry>,
}

/// Everything persisted with one new event, in one transaction.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event: &'a StoredEvent,
    pub prev_events: &'a [String],
    /// The snapshot created by this (state) event, if any.
    pub new_state_group: Option<&'a NewStateGroup>,
    /// For a membership event: the membership of the user named by its state key.
    pub membership: Option<&'a str>,
    /// The client transaction that sent it.
    pub txn: Option<TxnKey<'a>>,
    /// For a redaction that applies: the target event and its redacted JSON.
    pub redaction: Option<(&'a str, &'a str)>,
    /// `(relates_to, rel_type)` when the event relates to another.
    pub relation: Option<(&'a str, &'a str)>,
    /// `(key, text)` to index for full-text search (content.body, name or topic).
    pub search: Option<(&'a str, &'a str)>,
    /// The notifications the event gives local members (see `PushStore`).
    pub push_actions: &'a [super::PushActionRow],
}

/// One search hit: the event and its rank (higher is better).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SearchHit {
    #[sqlx(flatten)]
    pub event: StoredEvent,
    pub rank: f64,
}

/// A client transaction: a retry is the same id from the same device on the same path (scope).
#[derive(Debug, Clone, Copy)]
pub struct TxnKey<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub scope: &'a str,
    pub txn_id: &'a str,
}

impl TxnKey<'_> {
    /// What the store keys a transaction by: the first 16 bytes of the SHA-256
    /// of its four parts, each length-prefixed (so no two keys share a digest
    /// input). Stored instead of the strings, whose path alone names the room.
    pub fn digest(&self) -> [u8; 16] {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [self.user_id, self.device_id, self.scope, self.txn_id] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.finalize()[..16]);
        key
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RelationRow {
    pub relates_to: String,
    pub event_id: String,
    pub sender: String,
    pub stream_ordering: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThreadSummary {
    pub root: String,
    pub count: i64,
    pub latest: i64,
}

#[derive(Debug, Clone)]
pub struct NewReport<'a> {
    pub room_id: &'a str,
    pub event_id: Option<&'a str>,
    pub reporter: &'a str,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
    pub now: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Extremity {
    pub event_id: String,
    pub depth: i64,
    pub state_group: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRecord {
    pub user_id: String,
    pub membership: String,
    pub event_id: String,
}

/// A read receipt; `thread_id` is "" for an unthreaded receipt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReceiptRow {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
    pub stream_id: i64,
}

/// A user's membership in one room, with the stream position it changed at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserMembership {
    pub room_id: String,
    pub membership: String,
    pub event_id: String,
    pub stream_ordering: i64,
    pub forgotten: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

#[async_trait]
pub trait RoomStore: Send + Sync {
    /// `false` if the room id exists.
    async fn create_room(&self, room: &RoomRecord, now: i64) -> Result<bool>;
    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>>;
    async fn set_room_public(&self, room_id: &str, public: bool) -> Result<()>;
    async fn public_rooms(&self) -> Result<Vec<String>>;

    /// The largest stream ordering and state group id in use (0 when none).
    async fn max_ids(&self) -> Result<(i64, i64)>;

    /// Stores events in one transaction, in order: all of them or, on any error
    /// (a duplicate client transaction among them too), none.
    async fn persist_events(&self, batch: &[NewEvent<'_>]) -> Result<()>;
    async fn forward_extremities(&self, room_id: &str) -> Result<Vec<Extremity>>;
    async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>>;
    async fn get_events(&self, event_ids: &[String]) -> Result<Vec<StoredEvent>>;
    /// A page of a room's events in topological order, from the position
    /// `(depth, stream_ordering)` on (forward) or strictly before it (backward).
    async fn room_events_page(
        &self,
        room_id: &str,
        from: (i64, i64),
        direction: Direction,
        limit: i64,
    ) -> Result<Vec<StoredEvent>>;

    /// A room's events with stream positions in `(after, upto]`, newest first.
    async fn room_events_in_range(&self, room_id: &str, after: i64, upto: i64, limit: i64) -> Result<Vec<StoredEvent>>;
    /// A room's state events with stream positions in `(after, upto)`, oldest first.
    async fn room_state_events_in_range(&self, room_id: &str, after: i64, before: i64) -> Result<Vec<StoredEvent>>;
    /// Every room the user has a membership in.
    async fn user_memberships(&self, user_id: &str) -> Result<Vec<UserMembership>>;

    async fn state_group(&self, id: i64) -> Result<Option<StateGroupRecord>>;
    async fn state_group_at_position(&self, room_id: &str, position: i64) -> Result<Option<i64>>;
    /// The deltas of the snapshot and all its ancestors, oldest snapshot first.
    async fn state_group_chain_entries(&self, group: i64) -> Result<Vec<(i64, StateEntry)>>;
    /// One entry of a snapshot, looked up through its ancestors.
    async fn state_group_lookup(&self, group: i64, event_type: &str, state_key: &str) -> Result<Option<String>>;

    async fn current_state(&self, room_id: &str) -> Result<Vec<StateEntry>>;
    async fn current_state_event_id(&self, room_id: &str, event_type: &str, state_key: &str) -> Result<Option<String>>;
    async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<MemberRecord>>;
    /// Rooms where the user's membership is the given one (forgotten rooms excluded).
    async fn rooms_with_membership(&self, user_id: &str, membership: &str) -> Result<Vec<String>>;
    async fn room_members(&self, room_id: &str) -> Result<Vec<MemberRecord>>;
    async fn forget_room(&self, room_id: &str, user_id: &str) -> Result<()>;

    async fn txn_event_id(&self, key: &TxnKey<'_>) -> Result<Option<String>>;
    /// The transaction ids with which a device sent some of the given events.
    async fn txn_ids_of_events(
        &self,
        user_id: &str,
        device_id: &str,
        event_ids: &[String],
    ) -> Result<Vec<(String, String)>>;

    /// Events relating to `parent`, newest first (backward) or oldest first,
    /// strictly beyond the stream position `from`.
    #[allow(clippy::too_many_arguments)]
    async fn relations(
        &self,
        parent: &str,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: i64,
        direction: Direction,
        limit: i64,
    ) -> Result<Vec<StoredEvent>>;
    /// Relation rows of one type for several parents, oldest first.
    async fn relation_rows(&self, parents: &[String], rel_type: &str) -> Result<Vec<RelationRow>>;
    /// Thread roots among `parents` with their reply counts and latest reply position.
    async fn thread_summaries(&self, parents: &[String]) -> Result<Vec<ThreadSummary>>;
    /// Threads of a room by latest activity (newest first), below stream position `before`.
    async fn threads(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<ThreadSummary>>;
    /// The event closest to a timestamp: at or before it (backward) or at or after it.
    async fn event_near_timestamp(&self, room_id: &str, ts: i64, direction: Direction) -> Result<Option<StoredEvent>>;
    async fn add_report(&self, report: &NewReport<'_>) -> Result<()>;
    /// Stores a receipt, replacing the user's previous one of that type and thread.
    async fn put_receipt(&self, receipt: &ReceiptRow) -> Result<()>;
    /// A room's receipts changed at stream positions in `(after, upto]`.
    async fn receipts_since(&self, room_id: &str, after: i64, upto: i64) -> Result<Vec<ReceiptRow>>;
    async fn max_receipt_stream(&self) -> Result<i64>;
    /// Each room's latest receipt position (rooms without receipts are absent).
    async fn latest_receipt_per_room(&self) -> Result<Vec<(String, i64)>>;
    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool>;
    async fn get_alias(&self, alias: &str) -> Result<Option<(String, String)>>;
    async fn delete_alias(&self, alias: &str) -> Result<bool>;
    async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>>;
}

/// Full-text search; the engines' search features differ, so each implements it.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Full-text search in the given rooms; `recent` orders by time instead of rank.
    /// Returns one page of hits and the total number of hits.
    async fn search_events(
        &self,
        rooms: &[String],
        term: &str,
        keys: &[String],
        recent: bool,
        skip: i64,
        limit: i64,
    ) -> Result<(Vec<SearchHit>, i64)>;
}
