//! Wakes the long-polling `/sync` requests of exactly the users a change concerns.
//!
//! Each user with a waiting request has a `Notify`; a new event wakes the
//! members of its room (and the target of a membership change), account data
//! wakes its owner. Idle long-polls cost one `Notify` per user and no CPU.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use moka::future::Cache;
use tokio::sync::Notify;

use crate::storage::Storage;

/// What a persisted event needs for its notification.
#[derive(Debug, Clone)]
pub struct EventNotice {
    pub room_id: String,
    /// For membership events: the user whose membership changed, and the new membership.
    pub member: Option<(String, String)>,
}

pub struct Notifier {
    storage: Arc<dyn Storage>,
    users: Mutex<HashMap<String, Arc<Notify>>>,
    /// Users to wake for each room: joined, invited and knocking members. Kept
    /// up to date by membership events rather than reloaded, so a join to a
    /// big room costs no member-list read.
    members: Cache<String, Arc<Mutex<HashSet<String>>>>,
    /// Notices of events persisted while an earlier stream position was still
    /// being written: readers cannot see them yet, so they wait.
    held: Mutex<BTreeMap<i64, EventNotice>>,
    /// Set at shutdown: waiting requests return at once so shutdown need not wait for them.
    closing: AtomicBool,
    /// Sync requests waiting right now (a metric).
    waiting: AtomicI64,
}

/// Counts a waiting long-poll for as long as it lives.
pub struct WaitGuard<'a>(&'a AtomicI64);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Notifier {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            users: Mutex::new(HashMap::new()),
            members: Cache::builder().max_capacity(100_000).build(),
            held: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            waiting: AtomicI64::new(0),
        }
    }

    /// Marks a long-poll as waiting until the guard is dropped.
    pub fn waiting(&self) -> WaitGuard<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaitGuard(&self.waiting)
    }

    /// How many long-polls are waiting now.
    pub fn waiting_count(&self) -> i64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Ends every long-poll now and makes new ones return at once.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        for notify in users.values() {
            notify.notify_waiters();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The handle a sync request waits on. Call `notified()` and `enable()` it
    /// before looking for new data, so that no wake-up is missed in between.
    /// Handles stay for the life of the process (one small entry per user who
    /// ever synced): removing one while a request holds it would lose wake-ups.
    pub fn handle(&self, user_id: &str) -> Arc<Notify> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.entry(user_id.to_owned()).or_default().clone()
    }

    pub fn wake_user(&self, user_id: &str) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = users.get(user_id) {
            notify.notify_waiters();
        }
    }

    /// Records a persisted event at `stream`; wakes the users of every event now
    /// visible (all positions up to `visible` are persisted).
    pub fn event_persisted(self: &Arc<Self>, stream: i64, notice: EventNotice, visible: i64) {
        let ready: Vec<EventNotice> = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.insert(stream, notice);
            let later = held.split_off(&(visible + 1));
            std::mem::replace(&mut *held, later).into_values().collect()
        };
        for notice in ready {
            let this = self.clone();
            tokio::spawn(async move { this.wake_room(notice).await });
        }
    }

    /// Wakes the members of a room (typing, receipts).
    pub fn notify_room(self: &Arc<Self>, room_id: &str) {
        let this = self.clone();
        let notice = EventNotice { room_id: room_id.to_owned(), member: None };
        tokio::spawn(async move { this.wake_room(notice).await });
    }

    async fn wake_room(&self, notice: EventNotice) {
        let members = match self.room_members(&notice.room_id).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(error = %e, room_id = %notice.room_id, "cannot load members to notify");
                return;
            }
        };
        let to_wake: Vec<String> = {
            let mut members = members.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((user, membership)) = &notice.member {
                if matches!(membership.as_str(), "join" | "invite" | "knock") {
                    members.insert(user.clone());
                } else {
                    members.remove(user);
                }
            }
            members.iter().cloned().collect()
        };
        for user in &to_wake {
            self.wake_user(user);
        }
        // A user who just left or was removed still needs to hear of it.
        if let Some((member, _)) = &notice.member {
            self.wake_user(member);
        }
    }

    async fn room_members(&self, room_id: &str) -> crate::error::Result<Arc<Mutex<HashSet<String>>>> {
        if let Some(members) = self.members.get(room_id).await {
            return Ok(members);
        }
        let members: HashSet<String> = self
            .storage
            .room_members(room_id)
            .await?
            .into_iter()
            .filter(|m| matches!(m.membership.as_str(), "join" | "invite" | "knock"))
            .map(|m| m.user_id)
            .collect();
        let members = Arc::new(Mutex::new(members));
        // Another task may have loaded it meanwhile: keep the first.
        Ok(self.members.get_with(room_id.to_owned(), async { members }).await)
    }
}
