//! Cross-signing keys (`/keys/device_signing/upload`) and signatures on keys
//! (`/keys/signatures/upload`).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::E2ee;
use super::signatures::{self, single_ed25519_key, unsigned_part};
use crate::error::{Error, Result};
use crate::storage::SignatureRow;

pub const KEY_TYPES: [&str; 3] = ["master", "self_signing", "user_signing"];

fn invalid_signature(message: impl Into<String>) -> Error {
    Error::new(axum::http::StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE", message)
}

impl E2ee {
    async fn stored_cross_signing_keys(&self, user_id: &str) -> Result<HashMap<String, Value>> {
        let mut keys = HashMap::new();
        for row in self.storage.cross_signing_keys_of(&[user_id.to_owned()]).await? {
            if let Ok(value) = serde_json::from_str(&row.key_json) {
                keys.insert(row.key_type, value);
            }
        }
        Ok(keys)
    }

    /// Whether uploading `keys` (key type → key) needs user-interactive auth:
    /// only when it would replace a master key the user already has (spec v1.11).
    pub async fn cross_signing_upload_needs_auth(&self, user_id: &str, keys: &HashMap<String, Value>) -> Result<bool> {
        let stored = self.stored_cross_signing_keys(user_id).await?;
        if !stored.contains_key("master") {
            return Ok(false);
        }
        Ok(keys.iter().any(|(kind, key)| stored.get(kind) != Some(key)))
    }

    /// Stores cross-signing keys after checking their shape and signatures.
    pub async fn upload_cross_signing_keys(&self, user_id: &str, keys: &HashMap<String, Value>) -> Result<()> {
        for (kind, key) in keys {
            check_cross_signing_key(user_id, kind, key)?;
        }
        let stored = self.stored_cross_signing_keys(user_id).await?;
        let master = keys.get("master").or(stored.get("master"));
        let Some(master) = master else {
            return Err(Error::missing_param("No master signing key is available"));
        };
        let (master_id, master_public) = single_ed25519_key(master).expect("checked above or when stored");
        // A key must not be mistaken for a device: the spec forbids a public key equal to a device id.
        let devices = self.storage.list_devices(user_id).await?;
        for key in keys.values() {
            if let Some((_, public)) = single_ed25519_key(key)
                && devices.iter().any(|d| d.device_id == public)
            {
                return Err(Error::forbidden("Key ID in use"));
            }
        }
        for kind in ["self_signing", "user_signing"] {
            if let Some(key) = keys.get(kind)
                && !signatures::verify(key, user_id, &master_id, &master_public)
            {
                return Err(invalid_signature(format!("The {kind} key is not signed by the master key")));
            }
        }
        let mut changed = false;
        for kind in KEY_TYPES {
            if let Some(key) = keys.get(kind)
                && stored.get(kind) != Some(key)
            {
                self.storage.put_cross_signing_key(user_id, kind, &key.to_string()).await?;
                changed = true;
            }
        }
        if changed {
            self.device_list_changed(user_id).await?;
        }
        Ok(())
    }

    /// `/keys/signatures/upload`: `signed` maps users to key ids (device ids or
    /// cross-signing public keys) to the signed objects. Returns the `failures`.
    pub async fn upload_signatures(&self, signer: &str, signed: &Map<String, Value>) -> Result<Value> {
        let signer_keys = self.stored_cross_signing_keys(signer).await?;
        let mut failures = Map::new();
        let mut accepted: Vec<SignatureRow> = Vec::new();
        let mut changed_users = Vec::new();
        for (target_user, objects) in signed {
            let Some(objects) = objects.as_object() else {
                return Err(Error::bad_json("Each user must map key ids to signed objects"));
            };
            let mut user_failures = Map::new();
            let before = accepted.len();
            for (key_id, object) in objects {
                match self.check_signatures(signer, &signer_keys, target_user, key_id, object).await {
                    Ok(rows) => accepted.extend(rows),
                    Err(e) => {
                        user_failures.insert(key_id.clone(), e.body());
                    }
                }
            }
            if accepted.len() > before {
                changed_users.push(target_user.clone());
            }
            if !user_failures.is_empty() {
                failures.insert(target_user.clone(), Value::Object(user_failures));
            }
        }
        self.storage.add_signatures(&accepted).await?;
        for user in changed_users {
            self.device_list_changed(&user).await?;
        }
        Ok(json!({ "failures": failures }))
    }

    /// The new, valid signatures by `signer` on one object.
    async fn check_signatures(
        &self,
        signer: &str,
        signer_keys: &HashMap<String, Value>,
        target_user: &str,
        key_id: &str,
        object: &Value,
    ) -> Result<Vec<SignatureRow>> {
        if !self.is_local(target_user) {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNREACHABLE",
                "Federation is not supported",
            ));
        }
        if object.get("user_id").and_then(Value::as_str) != Some(target_user) {
            return Err(Error::invalid_param("The signed object's user_id does not match"));
        }
        // The object as the server knows it: a device's keys or a cross-signing key.
        let target_keys = self.stored_cross_signing_keys(target_user).await?;
        let master = target_keys.get("master").filter(|k| single_ed25519_key(k).is_some_and(|(_, p)| p == key_id));
        let (stored, is_device) = match master {
            Some(master) => (master.clone(), false),
            None => {
                let devices = self.storage.device_keys_of(&[target_user.to_owned()]).await?;
                let Some(row) = devices.into_iter().find(|row| row.device_id == key_id) else {
                    return Err(Error::not_found(format!("No key {key_id} for {target_user}")));
                };
                (serde_json::from_str::<Value>(&row.key_json).map_err(Error::internal)?, true)
            }
        };
        if unsigned_part(&stored) != unsigned_part(object) {
            return Err(Error::invalid_param("The signed object does not match the stored key"));
        }
        // Which of the signer's keys may sign this target.
        let allowed: Vec<(String, String)> = if target_user == signer {
            if is_device {
                signer_keys.get("self_signing").and_then(single_ed25519_key).into_iter().collect()
            } else {
                // Devices sign their own user's master key.
                let devices = self.storage.device_keys_of(&[signer.to_owned()]).await?;
                devices
                    .iter()
                    .filter_map(|row| {
                        let keys: Value = serde_json::from_str(&row.key_json).ok()?;
                        let id = format!("ed25519:{}", row.device_id);
                        let public = keys["keys"][&id].as_str()?.to_owned();
                        Some((id, public))
                    })
                    .collect()
            }
        } else if is_device {
            return Err(Error::invalid_param("Only a user's own devices can be signed by them"));
        } else {
            signer_keys.get("user_signing").and_then(single_ed25519_key).into_iter().collect()
        };
        let offered = object.get("signatures").and_then(|s| s.get(signer)).and_then(Value::as_object);
        let mut rows = Vec::new();
        for (signer_key_id, signature) in offered.into_iter().flatten() {
            let Some((_, public)) = allowed.iter().find(|(id, _)| id == signer_key_id) else { continue };
            let signature = signature.as_str().unwrap_or_default();
            if !signatures::verify_signature(&stored, signature, public) {
                return Err(invalid_signature(format!("Invalid signature by {signer_key_id}")));
            }
            rows.push(SignatureRow {
                target_user_id: target_user.to_owned(),
                target_key_id: key_id.to_owned(),
                signer_user_id: signer.to_owned(),
                signer_key_id: signer_key_id.clone(),
                signature: signature.to_owned(),
            });
        }
        if rows.is_empty() {
            return Err(invalid_signature("No signature by a key allowed to sign this key"));
        }
        Ok(rows)
    }
}

/// The shape the spec requires of a cross-signing key of type `kind`.
fn check_cross_signing_key(user_id: &str, kind: &str, key: &Value) -> Result<()> {
    if key.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(Error::invalid_param(format!("The {kind} key's user_id must be the logged-in user")));
    }
    let usage_ok =
        key.get("usage").and_then(Value::as_array).is_some_and(|usage| usage.iter().any(|u| u.as_str() == Some(kind)));
    if !usage_ok {
        return Err(Error::invalid_param(format!("The {kind} key's usage must include {kind:?}")));
    }
    if single_ed25519_key(key).is_none() {
        return Err(Error::invalid_param(format!("The {kind} key must hold exactly one ed25519 key named by itself")));
    }
    Ok(())
}
