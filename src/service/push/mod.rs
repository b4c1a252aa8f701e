//! Push: users' push rules, the notifications they give (unread counts per
//! room and thread, `GET /notifications`) and pushers.

pub mod evaluate;
mod pushers;
mod rules;
pub mod rulesets;
mod unread;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

pub use evaluate::{Evaluator, MAIN_THREAD, RoomPushContext};
pub use pushers::PusherRequest;
pub use rules::Placement;
pub use rulesets::Rulesets;
pub use unread::UnreadCache;

use crate::error::{Error, Result};
use crate::service::rooms::format::client_event;
use crate::storage::Storage;

/// Most notifications one `GET /notifications` page returns.
const MAX_NOTIFICATIONS: i64 = 100;
const DEFAULT_NOTIFICATIONS: i64 = 20;

pub struct Push {
    storage: Arc<dyn Storage>,
    pub rulesets: Arc<Rulesets>,
    unread: Arc<UnreadCache>,
}

/// Unread counts of one room: the whole room or, with per-thread counts, the
/// main timeline and each thread with notifications.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnreadCounts {
    pub room: (i64, i64),
    pub threads: Vec<(String, (i64, i64))>,
}

impl Push {
    pub fn new(storage: Arc<dyn Storage>, rulesets: Arc<Rulesets>, unread: Arc<UnreadCache>) -> Self {
        Self { storage, rulesets, unread }
    }

    /// `(notification_count, highlight_count)` for the user's unread events in
    /// the room, given that every event up to stream position `upto` is stored
    /// (events the room writer has stored since may count too); `per_thread`
    /// splits threads out.
    pub async fn unread_counts(
        &self,
        user_id: &str,
        room_id: &str,
        upto: i64,
        per_thread: bool,
    ) -> Result<UnreadCounts> {
        let mut counts = UnreadCounts::default();
        let threads = match self.unread.lookup(user_id, room_id, upto) {
            Ok(threads) => threads,
            Err(ticket) => {
                let threads = self.storage.unread_counts(user_id, room_id, ticket.upto).await?;
                self.unread.store(user_id, room_id, ticket, &threads);
                threads
            }
        };
        for thread in threads {
            let pair = (thread.notifications, thread.highlights);
            if !per_thread || thread.thread_id == MAIN_THREAD {
                counts.room.0 += pair.0;
                counts.room.1 += pair.1;
            } else {
                counts.threads.push((thread.thread_id, pair));
            }
        }
        counts.threads.sort();
        Ok(counts)
    }

    /// A page of `GET /notifications`: newest first, before the token `from`.
    pub async fn notifications(
        &self,
        user_id: &str,
        from: Option<&str>,
        limit: Option<i64>,
        only: Option<&str>,
    ) -> Result<Value> {
        let before = match from {
            Some(token) => token
                .parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .ok_or_else(|| Error::invalid_param("Invalid from token"))?,
            None => i64::MAX,
        };
        let limit = limit.unwrap_or(DEFAULT_NOTIFICATIONS).clamp(1, MAX_NOTIFICATIONS);
        let only_highlight = only.is_some_and(|o| o.split(',').any(|f| f.trim() == "highlight"));
        let rows = self.storage.notifications(user_id, before, only_highlight, limit + 1).await?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let events: HashMap<String, _> =
            self.storage.get_events(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
        // Read receipt positions per room: (unthreaded, per thread).
        let mut read: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(event) = events.get(&row.event_id) else { continue };
            if !read.contains_key(&row.room_id) {
                let positions = self.storage.read_positions(user_id, &row.room_id).await?;
                read.insert(row.room_id.clone(), positions.into_iter().collect());
            }
            let positions = &read[&row.room_id];
            let read_upto =
                positions.get("").copied().unwrap_or(0).max(positions.get(&row.thread_id).copied().unwrap_or(0));
            let mut event = client_event(event, None)?;
            if let Some(object) = event.as_object_mut() {
                object.remove("room_id");
            }
            let actions: Value = serde_json::from_str(&row.actions).map_err(Error::internal)?;
            notifications.push(json!({
                "actions": actions,
                "event": event,
                "read": row.stream_ordering <= read_upto,
                "room_id": row.room_id,
                "ts": row.ts,
            }));
        }
        let mut response = Map::new();
        response.insert("notifications".into(), Value::Array(notifications));
        if more && let Some(last) = rows.last() {
            response.insert("next_token".into(), json!(last.stream_ordering.to_string()));
        }
        Ok(Value::Object(response))
    }
}
