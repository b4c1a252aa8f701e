//! Room state: full snapshots rebuilt from stored deltas, with a cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use moka::future::Cache;

use crate::error::Result;
use crate::storage::{NewStateGroup, StateEntry, Storage};

/// (event type, state key).
pub type StateKey = (String, String);

/// (event type, state key) → event id. A persistent map: a copy with one more
/// entry shares everything else, so a join to a room of 10,000 members copies
/// no member list.
pub type StateMap = imbl::HashMap<StateKey, String>;

/// One state change: (position, key, event id).
pub type StateChange = (i64, StateKey, String);

pub struct StateStore {
    storage: Arc<dyn Storage>,
    /// Full snapshots by group id, weighed by their number of entries plus
    /// `SNAPSHOT_WEIGHT`.
    full: Cache<i64, Arc<StateMap>>,
}

/// What a snapshot costs beyond its entries: one made by a state event shares
/// its entries with the snapshot before, but owns the map nodes the change
/// copied (~2.6 KB in a small room, measured with heaptrack), about as much as
/// 32 entries (~80 B each). Weighed by entries alone, the snapshots of 9,000
/// rooms made in a 20 s create-room run (8 each, ~8 entries) held ~150 MB.
const SNAPSHOT_WEIGHT: u32 = 32;
/// Entries (and snapshot weights) kept: ~8 MB at ~80 B an entry (the current
/// snapshots of ~2,500 small rooms, or of a few dozen rooms with thousands of
/// members; was 500,000). A snapshot not kept is read again from its
/// stored deltas; recently written rooms also hold their current state in
/// their writers' heads.
const MAX_WEIGHT: u64 = 100_000;

impl StateStore {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        let full = Cache::builder()
            .max_capacity(MAX_WEIGHT)
            .weigher(|_, state: &Arc<StateMap>| {
                u32::try_from(state.len()).unwrap_or(u32::MAX).saturating_add(SNAPSHOT_WEIGHT)
            })
            .build();
        Self { storage, full }
    }

    /// The full state of a snapshot (group 0 is the empty state before a room's create event).
    pub async fn full_state(&self, group: i64) -> Result<Arc<StateMap>> {
        if group == 0 {
            return Ok(Arc::new(StateMap::new()));
        }
        if let Some(state) = self.full.get(&group).await {
            return Ok(state);
        }
        let mut state = StateMap::new();
        // Entries come oldest snapshot first, so later deltas overwrite earlier ones.
        for (_, entry) in self.storage.state_group_chain_entries(group).await? {
            state.insert((entry.event_type, entry.state_key), entry.event_id);
        }
        let state = Arc::new(state);
        self.full.insert(group, state.clone()).await;
        Ok(state)
    }

    /// One entry of a snapshot, without building the whole snapshot when it is not cached.
    pub async fn lookup(&self, group: i64, event_type: &str, state_key: &str) -> Result<Option<String>> {
        if group == 0 {
            return Ok(None);
        }
        if let Some(state) = self.full.get(&group).await {
            return Ok(state.get(&(event_type.to_owned(), state_key.to_owned())).cloned());
        }
        Ok(self.storage.state_group_lookup(group, event_type, state_key).await?)
    }

    /// Plans the snapshot that follows a state change at `position`: it is stored
    /// as a delta against the snapshot at `position & (position - 1)`, so that
    /// every lookup walks at most log2(position) deltas.
    pub async fn plan_group(
        &self,
        room_id: &str,
        id: i64,
        position: i64,
        new_state: &StateMap,
        recent: &VecDeque<StateChange>,
        uncommitted: &[(i64, i64)],
    ) -> Result<NewStateGroup> {
        let base_position = position & (position - 1);
        let needed = (position - base_position) as usize;
        // Usually the changes since the base are still in memory: the delta is them.
        if recent.len() >= needed
            && recent.back().is_some_and(|(p, _, _)| *p == position)
            && recent[recent.len() - needed].0 == base_position + 1
        {
            let prev_group = if base_position == 0 {
                None
            } else if let Some((_, id)) = uncommitted.iter().find(|(p, _)| *p == base_position) {
                // Made by an earlier event of the batch being written.
                Some(*id)
            } else {
                self.storage.state_group_at_position(room_id, base_position).await?
            };
            if base_position == 0 || prev_group.is_some() {
                let mut delta: HashMap<&StateKey, &String> = HashMap::new();
                for (_, key, event_id) in recent.range(recent.len() - needed..) {
                    delta.insert(key, event_id);
                }
                let delta = delta
                    .into_iter()
                    .map(|((event_type, state_key), event_id)| StateEntry {
                        event_type: event_type.clone(),
                        state_key: state_key.clone(),
                        event_id: event_id.clone(),
                    })
                    .collect();
                return Ok(NewStateGroup { id, prev_group, position, delta });
            }
        }
        // Otherwise (after a restart), compare with the base snapshot in full.
        let (prev_group, base) = if base_position == 0 {
            (None, Arc::new(StateMap::new()))
        } else {
            match self.storage.state_group_at_position(room_id, base_position).await? {
                Some(base_group) => (Some(base_group), self.full_state(base_group).await?),
                None => (None, Arc::new(StateMap::new())),
            }
        };
        let delta = new_state
            .iter()
            .filter(|(key, event_id)| base.get(*key) != Some(*event_id))
            .map(|((event_type, state_key), event_id)| StateEntry {
                event_type: event_type.clone(),
                state_key: state_key.clone(),
                event_id: event_id.clone(),
            })
            .collect();
        Ok(NewStateGroup { id, prev_group, position, delta })
    }

    /// Remembers a snapshot just created, so the next state change need not rebuild it.
    pub async fn remember(&self, group: i64, state: Arc<StateMap>) {
        self.full.insert(group, state).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_positions_halve_the_walk() {
        // The chain of bases from any position has at most log2 steps.
        for position in 1i64..5000 {
            let mut p = position;
            let mut steps = 0;
            while p != 0 {
                p &= p - 1;
                steps += 1;
            }
            assert!(steps <= 64 - position.leading_zeros() as i64);
        }
    }
}
