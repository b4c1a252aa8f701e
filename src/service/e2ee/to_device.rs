//! To-device messages: `PUT /sendToDevice`, delivered through `/sync` until the
//! device acknowledges them by syncing with a later token.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::E2ee;
use crate::error::{Error, Result};
use crate::service::auth::Requester;
use crate::storage::NewToDevice;

/// Messages per `/sync` response; the rest follow in the next ones.
const SYNC_BATCH: i64 = 100;
/// Most recipient devices one request may address.
const MAX_RECIPIENTS: usize = 10_000;

pub struct ToDeviceBatch {
    pub events: Vec<Value>,
    /// The to-device position the next token carries: the last message
    /// delivered when more are waiting, else the stream's position.
    pub position: i64,
}

impl E2ee {
    /// Sends `messages` (user → device id or `*` → content), once per transaction id.
    pub async fn send_to_device(
        &self,
        requester: &Requester,
        event_type: &str,
        txn_id: &str,
        messages: &Map<String, Value>,
    ) -> Result<()> {
        let mut outgoing: Vec<(String, String, String)> = Vec::new();
        for (user_id, devices) in messages {
            let devices = devices.as_object().ok_or_else(|| Error::bad_json("messages must map devices to content"))?;
            for content in devices.values() {
                if !content.is_object() {
                    return Err(Error::bad_json("Each to-device message content must be an object"));
                }
            }
            // No federation yet: messages to other servers' users have nowhere to go.
            if !self.is_local(user_id) {
                continue;
            }
            let existing: BTreeSet<String> =
                self.storage.list_devices(user_id).await?.into_iter().map(|d| d.device_id).collect();
            for (device, content) in devices {
                let targets: Vec<&String> =
                    if device == "*" { existing.iter().collect() } else { existing.get(device).into_iter().collect() };
                for target in targets {
                    outgoing.push((user_id.clone(), target.clone(), content.to_string()));
                }
            }
            if outgoing.len() > MAX_RECIPIENTS {
                return Err(Error::too_large(format!("At most {MAX_RECIPIENTS} recipient devices per request")));
            }
        }
        let rows: Vec<NewToDevice<'_>> = outgoing
            .iter()
            .map(|(user_id, device_id, content)| NewToDevice {
                user_id,
                device_id,
                event_type,
                content: content.clone(),
            })
            .collect();
        let storage = &self.storage;
        let stored = self
            .to_device
            .append(|position| async move {
                Ok(storage.add_to_device(&requester.user_id, &requester.device_id, txn_id, &rows, position).await?)
            })
            .await?;
        if stored {
            let recipients: BTreeSet<&str> = outgoing.iter().map(|(user, _, _)| user.as_str()).collect();
            for user in recipients {
                self.notifier.wake_user(user);
            }
        }
        Ok(())
    }

    /// Deletes the device's messages up to `acked`: the client confirmed them by
    /// syncing with a token that includes them.
    pub async fn acknowledge_to_device(&self, user_id: &str, device_id: &str, acked: i64) -> Result<()> {
        // Messages get positions above every published one: once a position is
        // acknowledged (and deleted up to), acknowledging it again finds nothing.
        let key = (user_id.to_owned(), device_id.to_owned());
        if acked <= 0 || self.to_device_acked.get(&key).is_some_and(|done| done >= acked) {
            return Ok(());
        }
        // A read first: most syncs have nothing to delete, and writes are dearer.
        if !self.storage.to_device_messages(user_id, device_id, 0, acked, 1).await?.is_empty() {
            self.storage.delete_to_device(user_id, device_id, acked).await?;
        }
        let done = self.to_device_acked.get(&key).unwrap_or(0).max(acked);
        self.to_device_acked.insert(key, done);
        Ok(())
    }

    /// The device's messages in `(after, upto]`, at most a batch.
    pub async fn to_device_for_sync(
        &self,
        user_id: &str,
        device_id: &str,
        after: i64,
        upto: i64,
    ) -> Result<ToDeviceBatch> {
        if upto <= after {
            return Ok(ToDeviceBatch { events: Vec::new(), position: upto });
        }
        let rows = self.storage.to_device_messages(user_id, device_id, after, upto, SYNC_BATCH).await?;
        let position = match rows.last() {
            Some(last) if rows.len() as i64 == SYNC_BATCH => last.stream_id,
            _ => upto,
        };
        let events = rows
            .into_iter()
            .map(|row| {
                let content: Value = serde_json::from_str(&row.content).unwrap_or_else(|_| json!({}));
                json!({ "sender": row.sender, "type": row.event_type, "content": content })
            })
            .collect();
        Ok(ToDeviceBatch { events, position })
    }
}
