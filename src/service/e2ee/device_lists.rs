//! The device-list stream: whose devices or keys changed, and who a client
//! should start or stop tracking (`device_lists.changed` / `left` in `/sync`,
//! `/keys/changes`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::E2ee;
use crate::error::Result;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceListDelta {
    pub changed: BTreeSet<String>,
    pub left: BTreeSet<String>,
}

impl DeviceListDelta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

impl E2ee {
    /// Records a change to the user's devices or keys and wakes everyone who
    /// tracks them (the user's own devices included).
    pub async fn device_list_changed(&self, user_id: &str) -> Result<()> {
        // Every change of a user's devices, device keys, cross-signing keys or
        // signatures on them comes here after it is stored.
        self.served_keys.changed(&user_id.to_owned());
        let storage = &self.storage;
        self.device_lists
            .append(|position| async move { Ok(storage.mark_device_list_changed(user_id, position).await?) })
            .await?;
        self.notifier.wake_user(user_id);
        for mate in self.storage.room_mates(user_id).await? {
            self.notifier.wake_user(&mate);
        }
        Ok(())
    }

    /// What changed for `user_id` between two positions of the device-list
    /// stream and of the event stream (memberships start and end tracking).
    pub async fn device_list_delta(
        &self,
        user_id: &str,
        device_lists: (i64, i64),
        events: (i64, i64),
    ) -> Result<DeviceListDelta> {
        let storage = &self.storage;
        let mut delta = DeviceListDelta::default();
        if device_lists.1 > device_lists.0 {
            let mut updated = storage.device_list_changes(device_lists.0, device_lists.1).await?;
            if let Some(own) = updated.iter().position(|u| u == user_id) {
                updated.swap_remove(own);
                delta.changed.insert(user_id.to_owned());
            }
            delta.changed.extend(storage.users_sharing_a_room(user_id, &updated).await?);
        }
        if events.1 > events.0 {
            let mut maybe_left = BTreeSet::new();
            for event in storage.member_events_in_rooms_of(user_id, events.0, events.1).await? {
                let Some(target) = event.state_key.as_deref() else { continue };
                let membership = serde_json::from_str::<Value>(&event.json)
                    .ok()
                    .and_then(|e| e["content"]["membership"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let joined = membership == "join";
                let gone = matches!(membership.as_str(), "leave" | "ban");
                if !joined && !gone {
                    continue;
                }
                // One's own join or leave starts or ends tracking the whole room.
                let affected: Vec<String> = if target == user_id {
                    storage
                        .room_members(&event.room_id)
                        .await?
                        .into_iter()
                        .filter(|m| m.membership == "join")
                        .map(|m| m.user_id)
                        .collect()
                } else {
                    vec![target.to_owned()]
                };
                if joined {
                    delta.changed.extend(affected);
                } else {
                    maybe_left.extend(affected);
                }
            }
            maybe_left.remove(user_id);
            if !maybe_left.is_empty() {
                let candidates: Vec<String> = maybe_left.iter().cloned().collect();
                let still: BTreeSet<String> =
                    storage.users_sharing_a_room(user_id, &candidates).await?.into_iter().collect();
                delta.left = maybe_left.difference(&still).cloned().collect();
            }
            for user in &delta.left {
                delta.changed.remove(user);
            }
        }
        Ok(delta)
    }
}
