//! Typing notifications (in memory) and read receipts (stored), each a stream
//! that /sync follows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::service::activity::LatestPositions;
use crate::service::notifier::Notifier;
use crate::service::now_ms;
use crate::service::push::UnreadCache;
use crate::storage::{ReceiptRow, Storage};

/// Longest a client may ask to be shown as typing.
const MAX_TYPING: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    /// User → when their typing notice ends.
    users: HashMap<String, Instant>,
    /// Typing stream position of the latest change in this room.
    changed_at: i64,
}

pub struct Ephemeral {
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
    typing: Mutex<HashMap<String, RoomTyping>>,
    /// Typing lives in memory, so its positions start from the clock at each
    /// start: a token from before a restart is never ahead of new changes.
    typing_stream: AtomicI64,
    receipt_stream: AtomicI64,
    /// Receipt writes are serialised so a position is visible only once stored.
    receipt_write: tokio::sync::Mutex<()>,
    /// Each room's latest receipt position (lets /sync skip quiet rooms).
    pub receipt_activity: LatestPositions,
    /// Read receipts reset the unread counts held in memory.
    unread: Arc<UnreadCache>,
}

impl Ephemeral {
    pub async fn new(
        storage: Arc<dyn Storage>,
        notifier: Arc<Notifier>,
        unread: Arc<UnreadCache>,
    ) -> Result<Arc<Self>> {
        let receipts = storage.max_receipt_stream().await?;
        // One row per room: lets /sync tell, without a query, that a room has no new receipts.
        let receipt_activity = LatestPositions::complete(storage.latest_receipt_per_room().await?);
        Ok(Arc::new(Self {
            storage,
            notifier,
            typing: Mutex::new(HashMap::new()),
            typing_stream: AtomicI64::new(now_ms()),
            receipt_stream: AtomicI64::new(receipts),
            receipt_write: tokio::sync::Mutex::new(()),
            receipt_activity,
            unread,
        }))
    }

    pub fn typing_position(&self) -> i64 {
        self.typing_stream.load(Ordering::SeqCst)
    }

    pub fn receipt_position(&self) -> i64 {
        self.receipt_stream.load(Ordering::SeqCst)
    }

    /// Starts or stops a user's typing notice; a started one ends by itself after `timeout`.
    pub fn set_typing(self: &Arc<Self>, room_id: &str, user_id: &str, typing: bool, timeout: Duration) {
        let timeout = timeout.min(MAX_TYPING);
        let changed = {
            let mut rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            let room = rooms.entry(room_id.to_owned()).or_default();
            let changed = if typing {
                room.users.insert(user_id.to_owned(), Instant::now() + timeout).is_none()
            } else {
                room.users.remove(user_id).is_some()
            };
            if changed {
                room.changed_at = self.typing_stream.fetch_add(1, Ordering::SeqCst) + 1;
            }
            changed
        };
        if changed {
            self.notifier.notify_room(room_id);
        }
        if typing {
            let this = self.clone();
            let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                this.expire(&room_id, &user_id);
            });
        }
    }

    /// Ends a typing notice whose time is up (unless it was renewed meanwhile).
    fn expire(&self, room_id: &str, user_id: &str) {
        let expired = {
            let mut rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            let Some(room) = rooms.get_mut(room_id) else { return };
            match room.users.get(user_id) {
                Some(until) if *until <= Instant::now() => {
                    room.users.remove(user_id);
                    room.changed_at = self.typing_stream.fetch_add(1, Ordering::SeqCst) + 1;
                    true
                }
                _ => false,
            }
        };
        if expired {
            self.notifier.notify_room(room_id);
        }
    }

    /// The room's `m.typing` event when typing changed in `(after, upto]`.
    pub fn typing_event(&self, room_id: &str, after: i64, upto: i64) -> Option<Value> {
        let rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.get(room_id)?;
        if room.changed_at <= after || room.changed_at > upto {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<&String> = room.users.iter().filter(|(_, until)| **until > now).map(|(u, _)| u).collect();
        users.sort();
        Some(json!({ "type": "m.typing", "content": { "user_ids": users } }))
    }

    /// Stores a receipt and wakes the room's members.
    pub async fn put_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        event_id: &str,
        thread_id: Option<&str>,
    ) -> Result<()> {
        let guard = self.receipt_write.lock().await;
        let position = self.receipt_stream.load(Ordering::SeqCst) + 1;
        self.storage
            .put_receipt(&ReceiptRow {
                room_id: room_id.to_owned(),
                receipt_type: receipt_type.to_owned(),
                user_id: user_id.to_owned(),
                thread_id: thread_id.unwrap_or_default().to_owned(),
                event_id: event_id.to_owned(),
                ts: now_ms(),
                stream_id: position,
            })
            .await?;
        self.receipt_activity.record(room_id, position);
        if matches!(receipt_type, "m.read" | "m.read.private") {
            self.unread.read(user_id, room_id);
        }
        self.receipt_stream.store(position, Ordering::SeqCst);
        drop(guard);
        if receipt_type == "m.read.private" {
            self.notifier.wake_user(user_id);
        } else {
            self.notifier.notify_room(room_id);
        }
        Ok(())
    }

    /// The room's `m.receipt` event for receipts changed in `(after, upto]`, as
    /// `viewer` may see them (private receipts only their own).
    pub async fn receipt_event(&self, room_id: &str, viewer: &str, after: i64, upto: i64) -> Result<Option<Value>> {
        if self.receipt_activity.get(room_id).is_some_and(|latest| latest <= after) {
            return Ok(None);
        }
        let rows = self.storage.receipts_since(room_id, after, upto).await?;
        let mut content: Map<String, Value> = Map::new();
        for row in rows {
            if row.receipt_type == "m.read.private" && row.user_id != viewer {
                continue;
            }
            let mut receipt = json!({ "ts": row.ts });
            if !row.thread_id.is_empty() {
                receipt["thread_id"] = json!(row.thread_id);
            }
            let by_event = content.entry(row.event_id).or_insert_with(|| json!({}));
            by_event[&row.receipt_type][&row.user_id] = receipt;
        }
        Ok((!content.is_empty()).then(|| json!({ "type": "m.receipt", "content": content })))
    }
}
