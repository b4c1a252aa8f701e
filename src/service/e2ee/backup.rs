//! Server-side key backup (`/room_keys/...`): opaque encrypted session keys,
//! kept per backup version; a new key replaces a stored one only when it is
//! better by the spec's rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::E2ee;
use crate::error::{Error, Result};
use crate::storage::{BackupKeyRow, BackupVersionRow};

/// `KeyBackupData` as clients send it.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyBackupData {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: Value,
}

/// Keys to store or read: room → session → data.
pub type BackupKeys = BTreeMap<String, BTreeMap<String, KeyBackupData>>;

pub struct KeyBackup<'a>(pub &'a E2ee);

fn unknown_version() -> Error {
    Error::not_found("Unknown backup version")
}

/// Backup versions are decimal strings; anything else names no version.
fn parse_version(version: &str) -> Result<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(unknown_version)
}

fn version_json(row: &BackupVersionRow, count: i64) -> Value {
    let auth_data: Value = serde_json::from_str(&row.auth_data).unwrap_or_else(|_| json!({}));
    json!({
        "algorithm": row.algorithm,
        "auth_data": auth_data,
        "count": count,
        "etag": row.etag.to_string(),
        "version": row.version.to_string(),
    })
}

/// Whether `new` should replace `old` (the spec's order: verified, then lower
/// first message index, then fewer forwards; a tie keeps what is stored).
fn better(new: &KeyBackupData, old: &BackupKeyRow) -> bool {
    if new.is_verified != old.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != old.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

impl KeyBackup<'_> {
    pub async fn create_version(&self, user_id: &str, algorithm: &str, auth_data: &Value) -> Result<Value> {
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object"));
        }
        let version = self.0.storage.create_backup_version(user_id, algorithm, &auth_data.to_string()).await?;
        Ok(json!({ "version": version.to_string() }))
    }

    /// A version's description; `None` = the current (latest) version.
    pub async fn get_version(&self, user_id: &str, version: Option<&str>) -> Result<Value> {
        let version = version.map(parse_version).transpose()?;
        let row = self.0.storage.backup_version(user_id, version).await?;
        let row = row.ok_or_else(|| match version {
            Some(_) => unknown_version(),
            None => Error::not_found("No current backup version"),
        })?;
        let count = self.0.storage.count_backup_keys(user_id, row.version).await?;
        Ok(version_json(&row, count))
    }

    pub async fn update_version(
        &self,
        user_id: &str,
        version: &str,
        algorithm: &str,
        auth_data: &Value,
        body_version: Option<&str>,
    ) -> Result<()> {
        if body_version.is_some_and(|v| v != version) {
            return Err(Error::invalid_param("The version in the body does not match the version in the path"));
        }
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object"));
        }
        let number = parse_version(version)?;
        let row = self.0.storage.backup_version(user_id, Some(number)).await?.ok_or_else(unknown_version)?;
        if row.algorithm != algorithm {
            return Err(Error::invalid_param("Algorithm does not match"));
        }
        if !self.0.storage.update_backup_version(user_id, number, &auth_data.to_string()).await? {
            return Err(unknown_version());
        }
        Ok(())
    }

    pub async fn delete_version(&self, user_id: &str, version: &str) -> Result<()> {
        let number = parse_version(version)?;
        if !self.0.storage.delete_backup_version(user_id, number).await? {
            return Err(unknown_version());
        }
        Ok(())
    }

    /// Writes keys into the current version (`version` must name it).
    pub async fn put_keys(&self, user_id: &str, version: &str, keys: BackupKeys) -> Result<Value> {
        let _guard = self.0.backup_write.lock().await;
        let storage = &self.0.storage;
        let current = storage.backup_version(user_id, None).await?.ok_or_else(unknown_version)?;
        if parse_version(version).ok() != Some(current.version) {
            return Err(Error::new(
                axum::http::StatusCode::FORBIDDEN,
                "M_WRONG_ROOM_KEYS_VERSION",
                "Wrong backup version.",
            )
            .with("current_version", current.version.to_string()));
        }
        let mut winners = Vec::new();
        for (room_id, sessions) in keys {
            let stored: BTreeMap<String, BackupKeyRow> = storage
                .backup_keys(user_id, current.version, Some(&room_id), None)
                .await?
                .into_iter()
                .map(|row| (row.session_id.clone(), row))
                .collect();
            for (session_id, data) in sessions {
                if !data.session_data.is_object() {
                    return Err(Error::bad_json("session_data must be an object"));
                }
                if stored.get(&session_id).is_none_or(|old| better(&data, old)) {
                    winners.push(BackupKeyRow {
                        room_id: room_id.clone(),
                        session_id,
                        first_message_index: data.first_message_index,
                        forwarded_count: data.forwarded_count,
                        is_verified: data.is_verified,
                        session_data: data.session_data.to_string(),
                    });
                }
            }
        }
        let etag = if winners.is_empty() {
            current.etag
        } else {
            storage.put_backup_keys(user_id, current.version, &winners).await?
        };
        let count = storage.count_backup_keys(user_id, current.version).await?;
        Ok(json!({ "etag": etag.to_string(), "count": count }))
    }

    /// Reads keys of an existing version: all, one room's, or one session's.
    pub async fn get_keys(
        &self,
        user_id: &str,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Value> {
        let number = parse_version(version)?;
        let storage = &self.0.storage;
        storage.backup_version(user_id, Some(number)).await?.ok_or_else(unknown_version)?;
        let rows = storage.backup_keys(user_id, number, room_id, session_id).await?;
        let data = |row: &BackupKeyRow| {
            let session_data: Value = serde_json::from_str(&row.session_data).unwrap_or_else(|_| json!({}));
            json!({
                "first_message_index": row.first_message_index,
                "forwarded_count": row.forwarded_count,
                "is_verified": row.is_verified,
                "session_data": session_data,
            })
        };
        Ok(match (room_id, session_id) {
            (Some(_), Some(_)) => data(rows.first().ok_or_else(|| Error::not_found("No key for that session"))?),
            (Some(_), None) => {
                let sessions: Map<String, Value> = rows.iter().map(|r| (r.session_id.clone(), data(r))).collect();
                json!({ "sessions": sessions })
            }
            _ => {
                let mut rooms = Map::new();
                for row in &rows {
                    let room = rooms.entry(row.room_id.clone()).or_insert_with(|| json!({ "sessions": {} }));
                    room["sessions"][&row.session_id] = data(row);
                }
                json!({ "rooms": rooms })
            }
        })
    }

    pub async fn delete_keys(
        &self,
        user_id: &str,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Value> {
        let number = parse_version(version)?;
        let _guard = self.0.backup_write.lock().await;
        let storage = &self.0.storage;
        storage.backup_version(user_id, Some(number)).await?.ok_or_else(unknown_version)?;
        let etag = storage.delete_backup_keys(user_id, number, room_id, session_id).await?;
        let count = storage.count_backup_keys(user_id, number).await?;
        Ok(json!({ "etag": etag.to_string(), "count": count }))
    }
}

impl E2ee {
    pub fn backup(&self) -> KeyBackup<'_> {
        KeyBackup(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(verified: bool, index: i64, forwards: i64) -> BackupKeyRow {
        BackupKeyRow {
            room_id: "!r".into(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwards,
            is_verified: verified,
            session_data: "{}".into(),
        }
    }

    fn data(verified: bool, index: i64, forwards: i64) -> KeyBackupData {
        KeyBackupData {
            first_message_index: index,
            forwarded_count: forwards,
            is_verified: verified,
            session_data: json!({}),
        }
    }

    #[test]
    fn replacement_rules() {
        assert!(better(&data(true, 9, 9), &row(false, 0, 0)));
        assert!(!better(&data(false, 0, 0), &row(true, 9, 9)));
        assert!(better(&data(false, 1, 9), &row(false, 2, 0)));
        assert!(!better(&data(false, 3, 0), &row(false, 2, 9)));
        assert!(better(&data(true, 2, 1), &row(true, 2, 2)));
        assert!(!better(&data(true, 2, 2), &row(true, 2, 2)), "a tie keeps the stored key");
        assert_eq!(parse_version("7").unwrap(), 7);
        assert!(parse_version("x").is_err() && parse_version("0").is_err() && parse_version("-1").is_err());
    }
}
