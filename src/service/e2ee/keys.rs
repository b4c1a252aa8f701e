//! Device keys, one-time keys and fallback keys: `/keys/upload`, `/keys/query`, `/keys/claim`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::signatures::{self, SignaturesByTarget};
use super::{E2ee, KeyCounts};
use crate::error::{Error, Result};
use crate::service::auth::Requester;
use crate::storage::{DeviceKeysRow, NewKey};

/// The algorithm clients count on seeing in `one_time_key_counts`, even at zero.
const SIGNED_CURVE25519: &str = "signed_curve25519";
/// Most one-time keys one upload may carry: far above what clients send (50-100).
const MAX_KEYS_PER_UPLOAD: usize = 1_000;

#[derive(Default)]
pub struct UploadRequest {
    pub device_keys: Option<Value>,
    pub one_time_keys: Option<Map<String, Value>>,
    pub fallback_keys: Option<Map<String, Value>>,
}

impl E2ee {
    pub async fn upload_keys(&self, requester: &Requester, request: UploadRequest) -> Result<Value> {
        let (user_id, device_id) = (&requester.user_id, &requester.device_id);
        if let Some(keys) = &request.device_keys {
            self.upload_device_keys(requester, keys).await?;
        }
        if let Some(keys) = &request.one_time_keys {
            if keys.len() > MAX_KEYS_PER_UPLOAD {
                return Err(Error::invalid_param(format!("At most {MAX_KEYS_PER_UPLOAD} one-time keys per upload")));
            }
            let keys = keys.iter().map(|(id, key)| new_key(id, key)).collect::<Result<Vec<_>>>()?;
            let stored = self.storage.add_one_time_keys(user_id, device_id, &keys).await;
            self.keys_changed(user_id, device_id);
            stored?;
        }
        if let Some(keys) = &request.fallback_keys {
            for (id, key) in keys {
                let stored = self.storage.put_fallback_key(user_id, device_id, &new_key(id, key)?).await;
                self.keys_changed(user_id, device_id);
                stored?;
            }
        }
        Ok(json!({ "one_time_key_counts": self.one_time_key_counts(user_id, device_id).await? }))
    }

    async fn upload_device_keys(&self, requester: &Requester, keys: &Value) -> Result<()> {
        let (user_id, device_id) = (&requester.user_id, &requester.device_id);
        let object = keys.as_object().ok_or_else(|| Error::bad_json("device_keys must be an object"))?;
        if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
            return Err(Error::invalid_param("device_keys.user_id does not match the logged-in user"));
        }
        if object.get("device_id").and_then(Value::as_str) != Some(device_id) {
            return Err(Error::invalid_param("device_keys.device_id does not match the logged-in device"));
        }
        if !object.get("algorithms").is_some_and(Value::is_array) {
            return Err(Error::bad_json("device_keys.algorithms must be an array"));
        }
        let signing_key_id = format!("ed25519:{device_id}");
        let Some(public_key) = object.get("keys").and_then(|k| k.get(&signing_key_id)).and_then(Value::as_str) else {
            return Err(Error::invalid_param(format!("device_keys.keys must hold the device's {signing_key_id} key")));
        };
        if !signatures::verify(keys, user_id, &signing_key_id, public_key) {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_INVALID_SIGNATURE",
                "device_keys is not signed by the device's own ed25519 key",
            ));
        }
        let mut stored = keys.clone();
        if let Some(map) = stored.as_object_mut() {
            map.remove("unsigned");
        }
        let previous = self.storage.device_keys_of(std::slice::from_ref(user_id)).await?;
        let unchanged = previous
            .iter()
            .find(|row| &row.device_id == device_id)
            .and_then(|row| serde_json::from_str::<Value>(&row.key_json).ok())
            .is_some_and(|old| old == stored);
        if !unchanged {
            self.storage.put_device_keys(user_id, device_id, &stored.to_string()).await?;
            self.device_list_changed(user_id).await?;
        }
        Ok(())
    }

    pub async fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<BTreeMap<String, i64>> {
        let mut counts: BTreeMap<String, i64> =
            self.storage.one_time_key_counts(user_id, device_id).await?.into_iter().collect();
        counts.entry(SIGNED_CURVE25519.to_owned()).or_insert(0);
        Ok(counts)
    }

    pub async fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>> {
        Ok(self.storage.unused_fallback_key_types(user_id, device_id).await?)
    }

    /// The device's key counts for `/sync`, from memory while they have not changed.
    pub async fn key_counts(&self, user_id: &str, device_id: &str) -> Result<Arc<KeyCounts>> {
        let key = (user_id.to_owned(), device_id.to_owned());
        self.key_counts
            .get_or_load(&key, || async {
                Ok::<_, Error>(Arc::new(KeyCounts {
                    one_time: self.one_time_key_counts(user_id, device_id).await?,
                    unused_fallback: self.unused_fallback_key_types(user_id, device_id).await?,
                }))
            })
            .await
    }

    /// Call after the device's one-time or fallback keys were written (or the device deleted).
    pub fn keys_changed(&self, user_id: &str, device_id: &str) {
        self.key_counts.changed(&(user_id.to_owned(), device_id.to_owned()));
    }

    /// `/keys/query`: `wanted` maps users to device ids (empty = every device).
    pub async fn query_keys(
        &self,
        requester: &Requester,
        wanted: &HashMap<String, Vec<String>>,
    ) -> Result<KeysQueryResponse> {
        let mut failures = Map::new();
        let local: Vec<String> = wanted.keys().filter(|u| self.is_local(u)).cloned().collect();
        for user in wanted.keys().filter(|u| !self.is_local(u)) {
            // No federation yet: the other server cannot be asked.
            let server = user.rsplit_once(':').map(|(_, s)| s).unwrap_or(user);
            failures
                .insert(server.to_owned(), json!({"errcode": "M_UNREACHABLE", "error": "Federation is not supported"}));
        }
        // Each user's keys from memory, the others in one batch of reads.
        let (hits, misses) = self.served_keys.get_many(&local).await;
        let mut served: Vec<Option<Arc<ServedUserKeys>>> = vec![None; local.len()];
        for (i, keys) in hits {
            served[i] = Some(keys);
        }
        if !misses.is_empty() {
            let users: Vec<String> = misses.iter().map(|(i, _)| local[*i].clone()).collect();
            let mut loaded = self.load_served_keys(&users).await?;
            for (i, version) in misses {
                let keys = Arc::new(loaded.remove(&local[i]).unwrap_or_default());
                self.served_keys.insert(local[i].clone(), version, keys.clone()).await;
                served[i] = Some(keys);
            }
        }
        let users = local
            .into_iter()
            .zip(served)
            .map(|(user, keys)| {
                let devices = wanted.get(&user).cloned().unwrap_or_default();
                (user, keys.unwrap_or_default(), devices)
            })
            .collect();
        Ok(KeysQueryResponse { users, requester: requester.user_id.clone(), failures })
    }

    /// The keys of `users` as served, read in one batch (three reads at once).
    async fn load_served_keys(&self, users: &[String]) -> Result<HashMap<String, ServedUserKeys>> {
        let (signature_rows, device_rows, cross_signing_rows) = tokio::try_join!(
            self.storage.signatures_on(users),
            self.storage.device_keys_of(users),
            self.storage.cross_signing_keys_of(users),
        )?;
        let signatures = SignaturesByTarget::new(&signature_rows);
        let mut loaded: HashMap<String, ServedUserKeys> = HashMap::new();
        for row in device_rows {
            let Some(keys) = served_device_keys(&row, &signatures) else { continue };
            loaded.entry(row.user_id).or_default().devices.push((row.device_id, keys));
        }
        for row in cross_signing_rows {
            let Ok(mut key) = serde_json::from_str::<Value>(&row.key_json) else { continue };
            if let Some((_, public)) = signatures::single_ed25519_key(&key) {
                signatures.merge_into(&mut key, &row.user_id, &public);
            }
            let Ok(key) = serde_json::value::to_raw_value(&key) else { continue };
            let user = loaded.entry(row.user_id).or_default();
            match row.key_type.as_str() {
                "master" => user.master = Some(key),
                "self_signing" => user.self_signing = Some(key),
                "user_signing" => user.user_signing = Some(key),
                _ => {}
            }
        }
        Ok(loaded)
    }

    /// `/keys/claim`: one key per requested device, `wanted` = user → device → algorithm.
    pub async fn claim_keys(&self, wanted: &HashMap<String, HashMap<String, String>>) -> Result<Value> {
        let mut failures = Map::new();
        let mut requests = Vec::new();
        for (user_id, devices) in wanted {
            if !self.is_local(user_id) {
                let server = user_id.rsplit_once(':').map(|(_, s)| s).unwrap_or(user_id);
                failures.insert(
                    server.to_owned(),
                    json!({"errcode": "M_UNREACHABLE", "error": "Federation is not supported"}),
                );
                continue;
            }
            for (device_id, algorithm) in devices {
                requests.push((user_id.clone(), device_id.clone(), algorithm.clone()));
            }
        }
        // One order for every request: concurrent claims lock rows in the same
        // order, so they cannot deadlock (PostgreSQL).
        requests.sort();
        let mut claimed = Map::new();
        let keys = self.storage.claim_keys(&requests).await;
        for (user_id, device_id, _) in &requests {
            self.keys_changed(user_id, device_id);
        }
        let keys = keys?;
        for ((user_id, device_id, _), key) in requests.into_iter().zip(keys) {
            if let Some((key_id, key_json)) = key {
                let key: Value = serde_json::from_str(&key_json).map_err(Error::internal)?;
                let user = claimed.entry(user_id).or_insert_with(|| json!({}));
                user[device_id] = json!({ key_id: key });
            }
        }
        Ok(json!({ "one_time_keys": claimed, "failures": failures }))
    }
}

/// One user's keys as `/keys/query` serves them: device keys as the stored
/// text (a query of 1,000 users spent most of its CPU parsing, rebuilding and
/// dropping a JSON tree per device), with others' signatures merged in.
#[derive(Default)]
pub struct ServedUserKeys {
    devices: Vec<(String, Box<RawValue>)>,
    master: Option<Box<RawValue>>,
    self_signing: Option<Box<RawValue>>,
    user_signing: Option<Box<RawValue>>,
}

/// The `/keys/query` answer, written from the users' served keys.
pub struct KeysQueryResponse {
    /// Every local user asked about, their keys, and the devices asked for (none = all).
    users: Vec<(String, Arc<ServedUserKeys>, Vec<String>)>,
    requester: String,
    failures: Map<String, Value>,
}

impl Serialize for KeysQueryResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let users = &self.users;
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("device_keys", &DeviceKeysOf(users))?;
        map.serialize_entry("master_keys", &CrossSigningOf { users, only: None, key: |k| k.master.as_deref() })?;
        let self_signing = CrossSigningOf { users, only: None, key: |k| k.self_signing.as_deref() };
        map.serialize_entry("self_signing_keys", &self_signing)?;
        // Only the owner sees their user-signing key.
        let only = Some(self.requester.as_str());
        map.serialize_entry("user_signing_keys", &CrossSigningOf { users, only, key: |k| k.user_signing.as_deref() })?;
        map.serialize_entry("failures", &self.failures)?;
        map.end()
    }
}

type ServedUsers = [(String, Arc<ServedUserKeys>, Vec<String>)];

/// `device_keys`: user -> device -> keys, every user asked about (even without devices).
struct DeviceKeysOf<'a>(&'a ServedUsers);

impl Serialize for DeviceKeysOf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(user, keys, wanted)| (user, UserDevices { keys, wanted })))
    }
}

struct UserDevices<'a> {
    keys: &'a ServedUserKeys,
    wanted: &'a [String],
}

impl Serialize for UserDevices<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let wanted = |device: &String| self.wanted.is_empty() || self.wanted.contains(device);
        serializer.collect_map(self.keys.devices.iter().filter(|(device, _)| wanted(device)).map(|(d, k)| (d, k)))
    }
}

/// One kind of cross-signing key: user -> key, for the users who have one.
struct CrossSigningOf<'a> {
    users: &'a ServedUsers,
    /// Only this user's (the user-signing key).
    only: Option<&'a str>,
    key: fn(&ServedUserKeys) -> Option<&RawValue>,
}

impl Serialize for CrossSigningOf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let shown = |user: &String| self.only.is_none_or(|only| only == user);
        serializer.collect_map(
            self.users
                .iter()
                .filter(|(user, _, _)| shown(user))
                .filter_map(|(user, keys, _)| (self.key)(keys).map(|key| (user, key))),
        )
    }
}

/// A device's keys as served: the stored object with the signatures others
/// uploaded on it and its display name as `unsigned.device_display_name`.
/// `None` when what is stored is not a JSON object.
fn served_device_keys(row: &DeviceKeysRow, signatures: &SignaturesByTarget) -> Option<Box<RawValue>> {
    if signatures.contains(&row.user_id, &row.device_id) {
        let mut keys: Value = serde_json::from_str(&row.key_json).ok()?;
        let object = keys.as_object_mut()?;
        if let Some(name) = &row.display_name {
            object.insert("unsigned".to_owned(), json!({ "device_display_name": name }));
        }
        signatures.merge_into(&mut keys, &row.user_id, &row.device_id);
        return serde_json::value::to_raw_value(&keys).ok();
    }
    // Nothing to merge: the display name is spliced into the text (stored keys
    // never hold `unsigned`: the upload drops it). The result is checked to be JSON.
    let open = row.key_json.trim_end().strip_suffix('}')?.trim_end();
    if !open.trim_start().starts_with('{') {
        return None;
    }
    let mut text = String::with_capacity(row.key_json.len() + 64);
    text.push_str(open);
    if let Some(name) = &row.display_name {
        if open.trim_start() != "{" {
            text.push(',');
        }
        text.push_str(r#""unsigned":{"device_display_name":"#);
        text.push_str(&serde_json::to_string(name).ok()?);
        text.push('}');
    }
    text.push('}');
    RawValue::from_string(text).ok()
}

/// `"<algorithm>:<id>"` and its key (an object, or a bare string for unsigned curve25519).
fn new_key(id: &str, key: &Value) -> Result<NewKey> {
    let (algorithm, key_id) = id
        .split_once(':')
        .filter(|(a, k)| !a.is_empty() && !k.is_empty())
        .ok_or_else(|| Error::invalid_param(format!("Key id {id:?} is not of the form <algorithm>:<key id>")))?;
    if !(key.is_object() || key.is_string()) {
        return Err(Error::bad_json(format!("Key {id:?} must be an object or a string")));
    }
    Ok(NewKey { algorithm: algorithm.to_owned(), key_id: key_id.to_owned(), key_json: key.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SignatureRow;

    #[test]
    fn key_ids() {
        let key = new_key("signed_curve25519:AAAA", &json!({"key": "k"})).unwrap();
        assert_eq!((key.algorithm.as_str(), key.key_id.as_str()), ("signed_curve25519", "AAAA"));
        assert!(new_key("curve25519:B", &json!("k")).is_ok());
        for bad in ["nocolon", ":x", "x:"] {
            assert_eq!(new_key(bad, &json!({})).unwrap_err().errcode, "M_INVALID_PARAM", "{bad}");
        }
        assert_eq!(new_key("a:b", &json!(5)).unwrap_err().errcode, "M_BAD_JSON");
    }

    fn row(key_json: &str, display_name: Option<&str>) -> DeviceKeysRow {
        DeviceKeysRow {
            user_id: "@a:x".into(),
            device_id: "D".into(),
            key_json: key_json.into(),
            display_name: display_name.map(Into::into),
        }
    }

    fn served(row: &DeviceKeysRow, signatures: &[SignatureRow]) -> Option<Value> {
        let by_target = SignaturesByTarget::new(signatures);
        served_device_keys(row, &by_target).map(|raw| serde_json::from_str(raw.get()).unwrap())
    }

    #[test]
    fn device_keys_are_served_with_display_name_and_others_signatures() {
        let stored = r#"{"device_id":"D","keys":{"ed25519:D":"k"},"signatures":{"@a:x":{"ed25519:D":"s"}}}"#;
        let plain: Value = serde_json::from_str(stored).unwrap();
        assert_eq!(served(&row(stored, None), &[]), Some(plain.clone()));
        let mut named = plain.clone();
        named["unsigned"] = json!({"device_display_name": "Phone \"1\""});
        assert_eq!(served(&row(stored, Some("Phone \"1\"")), &[]), Some(named.clone()));
        assert_eq!(served(&row(" {} ", Some("n")), &[]), Some(json!({"unsigned": {"device_display_name": "n"}})));

        let signature = SignatureRow {
            target_user_id: "@a:x".into(),
            target_key_id: "D".into(),
            signer_user_id: "@a:x".into(),
            signer_key_id: "ed25519:SSK".into(),
            signature: "by-ssk".into(),
        };
        let mut signed = named;
        signed["signatures"]["@a:x"]["ed25519:SSK"] = json!("by-ssk");
        assert_eq!(served(&row(stored, Some("Phone \"1\"")), &[signature]), Some(signed));

        for bad in ["[1]", "null", "{\"a\":}", "{\"a\":1", "}"] {
            assert_eq!(served(&row(bad, Some("n")), &[]), None, "{bad}");
        }
    }
}
