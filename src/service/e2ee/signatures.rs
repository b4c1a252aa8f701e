//! Checking ed25519 signatures on key objects (device keys, cross-signing keys),
//! and merging the signatures others uploaded into the objects served.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ruma::CanonicalJsonObject;
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use serde_json::{Map, Value};

use crate::storage::SignatureRow;

/// Unpadded base64 as Matrix writes it; padded input is accepted too.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text).or_else(|_| STANDARD.decode(text)).ok()
}

/// The canonical JSON that signatures on `object` cover (without `signatures` and `unsigned`).
pub(super) fn signed_bytes(object: &Value) -> Option<String> {
    let canonical: CanonicalJsonObject = serde_json::from_value(object.clone()).ok()?;
    to_canonical_json_string_for_signing(&canonical).ok()
}

/// Whether `object` carries a valid signature by `signer`'s key `key_id`
/// (`ed25519:<id>`) made with `public_key` (unpadded base64).
pub(super) fn verify(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object.pointer(&format!("/signatures/{}/{}", escape(signer), escape(key_id))) else {
        return false;
    };
    verify_signature(object, signature.as_str().unwrap_or_default(), public_key)
}

/// Whether `signature` (base64) over `object` verifies with `public_key` (base64).
pub(super) fn verify_signature(object: &Value, signature: &str, public_key: &str) -> bool {
    let (Some(signature), Some(key), Some(bytes)) =
        (decode_base64(signature), decode_base64(public_key), signed_bytes(object))
    else {
        return false;
    };
    verify_canonical_json_bytes(&ruma::SigningKeyAlgorithm::Ed25519, &key, &signature, bytes.as_bytes()).is_ok()
}

/// JSON pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The single ed25519 public key of a cross-signing key object: `(key id, key)`.
pub(super) fn single_ed25519_key(object: &Value) -> Option<(String, String)> {
    let keys = object.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, key) = keys.iter().next()?;
    let key = key.as_str()?;
    // The key id names the key itself.
    (id.strip_prefix("ed25519:")? == key).then(|| (id.clone(), key.to_owned()))
}

/// Stored signatures grouped by what they sign, `(target user, target key id)`:
/// a `/keys/query` of many users looks each key's signatures up once, rather
/// than scanning every signature row for every key.
pub(super) struct SignaturesByTarget<'a>(HashMap<(&'a str, &'a str), Vec<&'a SignatureRow>>);

impl<'a> SignaturesByTarget<'a> {
    pub(super) fn new(rows: &'a [SignatureRow]) -> Self {
        let mut by_target: HashMap<(&str, &str), Vec<&SignatureRow>> = HashMap::new();
        for row in rows {
            by_target.entry((&row.target_user_id, &row.target_key_id)).or_default().push(row);
        }
        Self(by_target)
    }

    /// Whether anything is stored on `(user, key)`.
    pub(super) fn contains(&self, user_id: &str, key: &str) -> bool {
        self.0.contains_key(&(user_id, key))
    }

    /// Adds the stored signatures on `(user, key)` into `object.signatures`.
    pub(super) fn merge_into(&self, object: &mut Value, user_id: &str, key: &str) {
        let Some(rows) = self.0.get(&(user_id, key)) else { return };
        let Some(map) = object.as_object_mut() else { return };
        let signatures = map.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
        if !signatures.is_object() {
            *signatures = Value::Object(Map::new());
        }
        let signatures = signatures.as_object_mut().expect("made an object above");
        for row in rows {
            let by_signer = signatures.entry(row.signer_user_id.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Some(by_signer) = by_signer.as_object_mut() {
                by_signer.insert(row.signer_key_id.clone(), Value::String(row.signature.clone()));
            }
        }
    }
}

/// The object without `signatures` and `unsigned`: what two copies of a key must agree on.
pub(super) fn unsigned_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    copy
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    /// Signs `object` as `signer`/`key_id` (test helper, also used by sibling modules).
    pub fn sign(object: &mut Value, key: &SigningKey, signer: &str, key_id: &str) {
        let bytes = signed_bytes(object).unwrap();
        let signature = STANDARD_NO_PAD.encode(key.sign(bytes.as_bytes()).to_bytes());
        object["signatures"][signer][key_id] = json!(signature);
    }

    pub fn public(key: &SigningKey) -> String {
        STANDARD_NO_PAD.encode(key.verifying_key().to_bytes())
    }

    #[test]
    fn verifies_and_rejects() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut object = json!({"user_id": "@a:x", "device_id": "D", "keys": {"ed25519:D": public(&key)}});
        sign(&mut object, &key, "@a:x", "ed25519:D");
        assert!(verify(&object, "@a:x", "ed25519:D", &public(&key)));
        assert!(!verify(&object, "@a:x", "ed25519:D", &public(&other)));
        assert!(!verify(&object, "@a:x", "ed25519:E", &public(&key)));
        // Unsigned data is not covered; changing anything else breaks the signature.
        object["unsigned"] = json!({"x": 1});
        assert!(verify(&object, "@a:x", "ed25519:D", &public(&key)));
        object["device_id"] = json!("E");
        assert!(!verify(&object, "@a:x", "ed25519:D", &public(&key)));
        assert!(!verify_signature(&object, "not base64!", &public(&key)));
    }

    #[test]
    fn single_key_and_merge() {
        assert_eq!(
            single_ed25519_key(&json!({"keys": {"ed25519:abc": "abc"}})),
            Some(("ed25519:abc".into(), "abc".into()))
        );
        assert_eq!(single_ed25519_key(&json!({"keys": {"ed25519:abc": "abd"}})), None);
        assert_eq!(single_ed25519_key(&json!({"keys": {}})), None);
        let mut object = json!({"keys": {}});
        let row = SignatureRow {
            target_user_id: "@a:x".into(),
            target_key_id: "D".into(),
            signer_user_id: "@a:x".into(),
            signer_key_id: "ed25519:S".into(),
            signature: "sig".into(),
        };
        let rows = [row];
        let by_target = SignaturesByTarget::new(&rows);
        by_target.merge_into(&mut object, "@a:x", "OTHER");
        assert_eq!(object, json!({"keys": {}}), "no signatures on another key");
        by_target.merge_into(&mut object, "@a:x", "D");
        assert_eq!(object["signatures"]["@a:x"]["ed25519:S"], "sig");
    }
}
