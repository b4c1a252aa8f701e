//! End-to-end encryption keys: `/keys/upload` (device keys with their
//! self-signature verified, one-time and fallback keys), `/keys/query`,
//! `/keys/claim` (one key per device, never the same key twice, fallback when
//! one-time keys run out), `/keys/changes`, the E2EE extensions to `/sync`
//! (`device_lists`, `device_one_time_keys_count`,
//! `device_unused_fallback_key_types`) and cross-signing
//! (`/keys/device_signing/upload`, `/keys/signatures/upload`).
//!
//! Every key is a real Ed25519 key and every signature a real signature over
//! the object's canonical JSON, as the spec's "Signing JSON" appendix says.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use complement_tests::sync::{SYNC, next_batch, since, sync};
use complement_tests::{Client, Resp, TestServer, assert_err, assert_ok, enc, errcode};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::Method;
use serde_json::{Map, Value, json};

const V3: &str = "/_matrix/client/v3";
const PASSWORD: &str = "e2ee keys password";
const OTK_ALG: &str = "signed_curve25519";
const ALGORITHMS: [&str; 2] = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"];

// ---------------------------------------------------------------------------
// Canonical JSON and signing
// ---------------------------------------------------------------------------

/// Canonical JSON: object keys sorted by code point, no insignificant
/// whitespace. Written by hand so the result does not depend on whether
/// serde_json's `preserve_order` feature is enabled somewhere in the build.
fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("string"));
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&serde_json::to_string(other).expect("scalar")),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// 32 unpredictable bytes (std's randomly keyed SipHash; enough for test keys).
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(complement_tests::now_ms() ^ i as u64);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    bytes
}

fn new_signing_key() -> SigningKey {
    SigningKey::from_bytes(&random_bytes())
}

/// The unpadded-base64 public key.
fn public_b64(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().as_bytes())
}

/// The signature of `object` (without `signatures` and `unsigned`) by `key`.
fn signature_of(object: &Value, key: &SigningKey) -> String {
    let mut stripped = object.clone();
    let map = stripped.as_object_mut().expect("only objects are signed");
    map.remove("signatures");
    map.remove("unsigned");
    B64.encode(key.sign(canonical_json(&stripped).as_bytes()).to_bytes())
}

/// Adds `signatures[user_id][key_id]` by `key` to `object`.
fn sign(object: &mut Value, user_id: &str, key_id: &str, key: &SigningKey) {
    let signature = signature_of(object, key);
    let map = object.as_object_mut().expect("only objects are signed");
    let signatures = map.entry("signatures").or_insert_with(|| json!({}));
    let by_user = signatures.as_object_mut().expect("signatures object").entry(user_id).or_insert_with(|| json!({}));
    by_user[key_id] = json!(signature);
}

/// `object` with `unsigned` removed (what the uploader signed and sent).
fn without_unsigned(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("unsigned");
    }
    object
}

#[test]
fn canonical_json_sorts_keys_and_drops_whitespace() {
    let value = json!({ "b": [1, { "z": true, "a": null }], "a": "é\"", "": {} });
    assert_eq!(canonical_json(&value), r#"{"":{},"a":"é\"","b":[1,{"a":null,"z":true}]}"#);
}

#[test]
fn signatures_verify_with_the_public_key() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let key = new_signing_key();
    let mut object = json!({ "user_id": "@a:localhost", "unsigned": { "x": 1 } });
    sign(&mut object, "@a:localhost", "ed25519:DEV", &key);
    let sig = B64.decode(object["signatures"]["@a:localhost"]["ed25519:DEV"].as_str().unwrap()).unwrap();
    let public = VerifyingKey::from_bytes(&B64.decode(public_b64(&key)).unwrap().try_into().unwrap()).unwrap();
    let signature = Signature::from_slice(&sig).unwrap();
    public.verify(br#"{"user_id":"@a:localhost"}"#, &signature).expect("signature over the canonical JSON");
    assert_ne!(public_b64(&key), public_b64(&new_signing_key()), "keys must differ");
}

// ---------------------------------------------------------------------------
// A device with real keys
// ---------------------------------------------------------------------------

/// A logged-in device with its own Ed25519 identity key.
struct Device {
    client: Client,
    key: SigningKey,
    curve25519: String,
}

impl Device {
    fn new(client: Client) -> Device {
        Device { client, key: new_signing_key(), curve25519: B64.encode(random_bytes()) }
    }

    fn user(&self) -> &str {
        &self.client.user_id
    }

    fn id(&self) -> &str {
        &self.client.device_id
    }

    fn ed25519_key_id(&self) -> String {
        format!("ed25519:{}", self.id())
    }

    /// The device keys as uploaded, unsigned.
    fn unsigned_device_keys(&self) -> Value {
        json!({
            "user_id": self.user(),
            "device_id": self.id(),
            "algorithms": ALGORITHMS,
            "keys": {
                format!("curve25519:{}", self.id()): self.curve25519,
                self.ed25519_key_id(): public_b64(&self.key),
            },
        })
    }

    /// The device keys, self-signed.
    fn device_keys(&self) -> Value {
        let mut keys = self.unsigned_device_keys();
        sign(&mut keys, self.user(), &self.ed25519_key_id(), &self.key);
        keys
    }

    /// A signed curve25519 key object (`fallback: true` for a fallback key).
    fn signed_key(&self, fallback: bool) -> Value {
        let mut key = json!({ "key": B64.encode(random_bytes()) });
        if fallback {
            key["fallback"] = json!(true);
        }
        sign(&mut key, self.user(), &self.ed25519_key_id(), &self.key);
        key
    }

    /// `n` fresh signed one-time keys: `{"signed_curve25519:<id>": key}`.
    fn one_time_keys(&self, n: usize) -> Value {
        let mut keys = serde_json::Map::new();
        for _ in 0..n {
            keys.insert(format!("{OTK_ALG}:{}", key_id()), self.signed_key(false));
        }
        Value::Object(keys)
    }

    /// A fresh fallback key: `{"signed_curve25519:<id>": key}`.
    fn fallback_key(&self) -> Value {
        json!({ format!("{OTK_ALG}:{}", key_id()): self.signed_key(true) })
    }

    async fn upload(&self, body: Value) -> Resp {
        self.client.post(&format!("{V3}/keys/upload"), body).await
    }

    /// Uploads `body`; asserts 200 and returns the `one_time_key_counts`.
    async fn upload_ok(&self, body: Value) -> Value {
        let resp = assert_ok(self.upload(body).await);
        assert!(resp["one_time_key_counts"].is_object(), "upload response without one_time_key_counts: {resp}");
        resp["one_time_key_counts"].clone()
    }

    /// Uploads this device's signed identity keys; asserts 200.
    async fn upload_device_keys(&self) {
        self.upload_ok(json!({ "device_keys": self.device_keys() })).await;
    }

    /// The current count of unclaimed `signed_curve25519` keys (an empty upload).
    async fn otk_count(&self) -> u64 {
        let counts = self.upload_ok(json!({})).await;
        counts[OTK_ALG].as_u64().unwrap_or(0)
    }
}

/// A one-time key id unique within the process.
fn key_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("AAAA{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn register(server: &TestServer, localpart: &str) -> Device {
    Device::new(server.register(localpart, PASSWORD).await)
}

/// Another device of `device`'s user (a password login).
async fn login_again(server: &TestServer, device: &Device) -> Device {
    Device::new(server.client().login(device.client.localpart(), PASSWORD).await)
}

// ---------------------------------------------------------------------------
// Endpoint helpers
// ---------------------------------------------------------------------------

async fn query_raw(client: &Client, body: Value) -> Resp {
    client.post(&format!("{V3}/keys/query"), body).await
}

/// `/keys/query` for all devices of `users`; asserts 200 and well-formed `failures`.
async fn query(client: &Client, users: &[&str]) -> Value {
    let wanted: serde_json::Map<String, Value> = users.iter().map(|u| (u.to_string(), json!([]))).collect();
    let body = assert_ok(query_raw(client, json!({ "device_keys": wanted })).await);
    assert!(body["device_keys"].is_object(), "/keys/query without device_keys: {body}");
    assert_no_failures(&body);
    body
}

/// `failures` may be absent or an object; local users never fail.
#[track_caller]
fn assert_no_failures(body: &Value) {
    let failures = &body["failures"];
    assert!(
        failures.is_null() || failures.as_object().is_some_and(|f| f.is_empty()),
        "unexpected failures (all users are local): {body}"
    );
}

async fn claim_raw(client: &Client, body: Value) -> Resp {
    client.post(&format!("{V3}/keys/claim"), body).await
}

/// Claims a `signed_curve25519` key of `target`; returns `(key id, key)` or
/// `None` when the server has no key for the device.
async fn claim_one(client: &Client, target: &Device) -> Option<(String, Value)> {
    let body =
        assert_ok(claim_raw(client, json!({ "one_time_keys": { target.user(): { target.id(): OTK_ALG } } })).await);
    assert!(body["one_time_keys"].is_object(), "/keys/claim without one_time_keys: {body}");
    assert_no_failures(&body);
    let keys = &body["one_time_keys"][target.user()][target.id()];
    let keys = keys.as_object().filter(|k| !k.is_empty())?;
    assert_eq!(keys.len(), 1, "a claim must return exactly one key for the device: {body}");
    let (id, key) = keys.iter().next().expect("one key");
    assert!(id.starts_with(&format!("{OTK_ALG}:")), "claimed key of the wrong algorithm: {body}");
    Some((id.clone(), key.clone()))
}

/// The current `next_batch` (an initial sync).
async fn token(client: &Client) -> String {
    next_batch(&sync(client, "timeout=0").await)
}

/// `device_lists.<field>` of a sync response (absent = empty).
fn device_list(body: &Value, field: &str) -> Vec<String> {
    body["device_lists"][field]
        .as_array()
        .map(|users| users.iter().map(|u| u.as_str().expect("user id string").to_owned()).collect())
        .unwrap_or_default()
}

/// Incremental syncs from `from` (long-polls of 2 s) until one satisfies
/// `done`; fails after 15 s. Returns the satisfying response.
async fn sync_until(client: &Client, from: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut token = from.to_owned();
    loop {
        let body = sync(client, &since(&token, 2000)).await;
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: not seen within 15 s; last sync response: {body}");
        token = next_batch(&body);
    }
}

/// Syncs from `from` until `user` is in `device_lists.<field>`; returns the response.
async fn wait_device_list(client: &Client, from: &str, field: &str, user: &str) -> Value {
    let what = format!("{user} in device_lists.{field} of {}", client.user_id);
    sync_until(client, from, &what, |body| device_list(body, field).iter().any(|u| u == user)).await
}

/// Every device-list change `client` sees from `from` until now: the union of
/// `changed` (and `left`) over incremental syncs until one comes back empty.
async fn device_lists_since(client: &Client, from: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut changed, mut left) = (BTreeSet::new(), BTreeSet::new());
    let mut token = from.to_owned();
    for _ in 0..10 {
        let body = sync(client, &since(&token, 0)).await;
        let (c, l) = (device_list(&body, "changed"), device_list(&body, "left"));
        if c.is_empty() && l.is_empty() {
            return (changed, left);
        }
        changed.extend(c);
        left.extend(l);
        token = next_batch(&body);
    }
    panic!("device_lists never became empty for {}", client.user_id);
}

/// A private room of `creator` that every one of `others` has joined.
async fn shared_room(creator: &Device, others: &[&Device]) -> String {
    let room = creator.client.create_room(json!({ "preset": "private_chat" })).await;
    for other in others {
        creator.client.invite(&room, other.user()).await;
        other.client.join(&room).await;
    }
    room
}

async fn device_signing_upload(client: &Client, body: Value) -> Resp {
    client.post(&format!("{V3}/keys/device_signing/upload"), body).await
}

async fn signatures_upload(client: &Client, body: Value) -> Resp {
    client.post(&format!("{V3}/keys/signatures/upload"), body).await
}

/// Asserts `status` and an errcode among `codes` (the spec leaves the choice open).
#[track_caller]
fn assert_err_among(resp: &Resp, status: u16, codes: &[&str]) {
    let (got, body) = resp;
    assert!(
        got.as_u16() == status && codes.contains(&errcode(body)),
        "expected {status} with one of {codes:?}, got {got} with body {body}"
    );
}

// ---------------------------------------------------------------------------
// /keys/upload and /keys/query
// ---------------------------------------------------------------------------

#[tokio::test]
async fn uploaded_device_keys_are_returned_by_query_to_everyone() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    assert_ok(
        alice
            .client
            .put(&format!("{V3}/devices/{}", enc(alice.id())), json!({ "display_name": "Alice's phone" }))
            .await,
    );
    let keys = alice.device_keys();
    let counts = alice.upload_ok(json!({ "device_keys": keys })).await;
    assert_eq!(counts[OTK_ALG].as_u64().unwrap_or(0), 0, "no one-time keys uploaded yet: {counts}");

    for viewer in [&alice, &bob] {
        let body = query(&viewer.client, &[alice.user()]).await;
        let got = &body["device_keys"][alice.user()][alice.id()];
        assert_eq!(without_unsigned(got), keys, "{} must see the keys exactly as uploaded: {body}", viewer.user());
        assert_eq!(got["unsigned"]["device_display_name"], json!("Alice's phone"), "{body}");
    }

    // Only the devices asked for; unknown devices and users are left out, not failures.
    let body = assert_ok(
        query_raw(&bob.client, json!({ "device_keys": { alice.user(): [alice.id(), "NOSUCHDEVICE"] } })).await,
    );
    let devices = body["device_keys"][alice.user()].as_object().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(devices.keys().collect::<Vec<_>>(), vec![alice.id()], "{body}");
    assert_no_failures(&body);

    let body = query(&bob.client, &["@nobody:localhost", bob.user()]).await;
    let nobody = &body["device_keys"]["@nobody:localhost"];
    assert!(nobody.is_null() || nobody.as_object().is_some_and(|d| d.is_empty()), "unknown user: {body}");
    // Bob never uploaded keys: his device has nothing to report.
    assert!(body["device_keys"][bob.user()][bob.id()].is_null(), "device without keys listed: {body}");
}

#[tokio::test]
async fn identical_device_keys_can_be_uploaded_again() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let keys = alice.device_keys();
    alice.upload_ok(json!({ "device_keys": keys })).await;
    alice.upload_ok(json!({ "device_keys": keys })).await;
    let body = query(&alice.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&body["device_keys"][alice.user()][alice.id()]), keys, "{body}");
}

#[tokio::test]
async fn device_keys_for_another_user_or_device_are_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    // Properly self-signed, but claiming to be Bob's device.
    let mut keys = alice.unsigned_device_keys();
    keys["user_id"] = json!(bob.user());
    sign(&mut keys, bob.user(), &alice.ed25519_key_id(), &alice.key);
    assert_err(&alice.upload(json!({ "device_keys": keys })).await, 400, "M_INVALID_PARAM");

    // Properly self-signed, but for a device id that is not the caller's.
    let other = "NOTMYDEVICE";
    let mut keys = json!({
        "user_id": alice.user(),
        "device_id": other,
        "algorithms": ALGORITHMS,
        "keys": { format!("curve25519:{other}"): alice.curve25519, format!("ed25519:{other}"): public_b64(&alice.key) },
    });
    sign(&mut keys, alice.user(), &format!("ed25519:{other}"), &alice.key);
    assert_err(&alice.upload(json!({ "device_keys": keys })).await, 400, "M_INVALID_PARAM");
    // ... not even the id of another device of the same user.
    let second = login_again(&server, &alice).await;
    assert_err(&alice.upload(json!({ "device_keys": second.device_keys() })).await, 400, "M_INVALID_PARAM");

    let body = query(&bob.client, &[alice.user(), bob.user()]).await;
    for user in [alice.user(), bob.user()] {
        let devices = &body["device_keys"][user];
        assert!(devices.is_null() || devices.as_object().is_some_and(|d| d.is_empty()), "stored anyway: {body}");
    }
}

#[tokio::test]
async fn device_keys_with_a_bad_signature_are_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bad_signature = ["M_INVALID_SIGNATURE", "M_INVALID_PARAM"];

    let mut cases: Vec<(&str, Value)> = Vec::new();
    // Signed by a key other than the device's own ed25519 key.
    let mut keys = alice.unsigned_device_keys();
    sign(&mut keys, alice.user(), &alice.ed25519_key_id(), &new_signing_key());
    cases.push(("signed by another key", keys));
    // Changed after signing.
    let mut keys = alice.device_keys();
    keys["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    cases.push(("changed after signing", keys));
    let mut keys = alice.device_keys();
    keys["keys"][format!("curve25519:{}", alice.id())] = json!(B64.encode(random_bytes()));
    cases.push(("curve25519 key swapped after signing", keys));
    // No signature by the device at all.
    let mut keys = alice.unsigned_device_keys();
    cases.push(("unsigned", keys.clone()));
    keys["signatures"] = json!({ alice.user(): {} });
    cases.push(("empty signatures", keys));
    // A signature that is not even base64 / has the wrong length.
    let mut keys = alice.unsigned_device_keys();
    keys["signatures"] = json!({ alice.user(): { alice.ed25519_key_id(): "not*a*signature" } });
    cases.push(("garbage signature", keys));
    let mut keys = alice.unsigned_device_keys();
    keys["signatures"] = json!({ alice.user(): { alice.ed25519_key_id(): B64.encode([7u8; 12]) } });
    cases.push(("short signature", keys));
    // Signed under another user's name only.
    let mut keys = alice.unsigned_device_keys();
    sign(&mut keys, "@mallory:localhost", &alice.ed25519_key_id(), &alice.key);
    cases.push(("signed under another user id", keys));

    for (what, keys) in cases {
        let resp = alice.upload(json!({ "device_keys": keys })).await;
        assert!(resp.0.as_u16() == 400 && bad_signature.contains(&errcode(&resp.1)), "{what}: {resp:?}");
    }
    // A device keys object without an ed25519 key cannot be verified.
    let mut keys = alice.unsigned_device_keys();
    keys["keys"].as_object_mut().unwrap().remove(&alice.ed25519_key_id());
    sign(&mut keys, alice.user(), &alice.ed25519_key_id(), &alice.key);
    let resp = alice.upload(json!({ "device_keys": keys })).await;
    assert_err_among(&resp, 400, &["M_INVALID_SIGNATURE", "M_INVALID_PARAM", "M_BAD_JSON", "M_MISSING_PARAM"]);

    let body = query(&alice.client, &[alice.user()]).await;
    assert!(body["device_keys"][alice.user()][alice.id()].is_null(), "a rejected upload was stored: {body}");
    // The same device can still upload good keys.
    alice.upload_device_keys().await;
}

#[tokio::test]
async fn malformed_key_requests_are_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    assert_err(&alice.upload(json!({ "one_time_keys": "nope" })).await, 400, "M_BAD_JSON");
    assert_err(&alice.upload(json!({ "device_keys": [] })).await, 400, "M_BAD_JSON");
    assert_err(&query_raw(&alice.client, json!({ "device_keys": { alice.user(): "all" } })).await, 400, "M_BAD_JSON");
    assert_err_among(&query_raw(&alice.client, json!({})).await, 400, &["M_BAD_JSON", "M_MISSING_PARAM"]);
    assert_err_among(&claim_raw(&alice.client, json!({})).await, 400, &["M_BAD_JSON", "M_MISSING_PARAM"]);
    let anonymous = alice.client.with_token(None);
    assert_err(&query_raw(&anonymous, json!({ "device_keys": {} })).await, 401, "M_MISSING_TOKEN");
    assert_err(&anonymous.post(&format!("{V3}/keys/upload"), json!({})).await, 401, "M_MISSING_TOKEN");
    assert_err(&claim_raw(&anonymous, json!({ "one_time_keys": {} })).await, 401, "M_MISSING_TOKEN");
}

// ---------------------------------------------------------------------------
// One-time keys, fallback keys and /keys/claim
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_time_key_counts_follow_uploads() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let other_device = login_again(&server, &alice).await;
    alice.upload_device_keys().await;

    let counts = alice.upload_ok(json!({ "one_time_keys": alice.one_time_keys(5) })).await;
    assert_eq!(counts[OTK_ALG], json!(5), "{counts}");
    let more = alice.one_time_keys(3);
    assert_eq!(alice.upload_ok(json!({ "one_time_keys": more })).await[OTK_ALG], json!(8));
    // The same keys again are the same keys, not new ones.
    assert_eq!(alice.upload_ok(json!({ "one_time_keys": more })).await[OTK_ALG], json!(8));
    assert_eq!(alice.otk_count().await, 8);
    // Counts are per device.
    assert_eq!(other_device.otk_count().await, 0);
    // A fallback key is not a one-time key.
    assert_eq!(alice.upload_ok(json!({ "fallback_keys": alice.fallback_key() })).await[OTK_ALG], json!(8));
}

#[tokio::test]
async fn claim_hands_out_each_one_time_key_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    let uploaded = alice.one_time_keys(3);
    alice.upload_ok(json!({ "one_time_keys": uploaded })).await;

    let mut seen = BTreeSet::new();
    for n in 0..3 {
        let (id, key) = claim_one(&bob.client, &alice).await.unwrap_or_else(|| panic!("claim {n}: no key"));
        assert_eq!(key, uploaded[&id], "claimed key {id} differs from the upload");
        assert!(seen.insert(id.clone()), "key {id} handed out twice");
        assert_eq!(alice.otk_count().await, 2 - n, "count after {} claims", n + 1);
    }
    // No one-time keys and no fallback key: nothing to hand out.
    assert_eq!(claim_one(&bob.client, &alice).await, None);
}

#[tokio::test]
async fn claim_for_unknown_users_and_devices_returns_nothing() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice.upload_device_keys().await;
    alice.upload_ok(json!({ "one_time_keys": alice.one_time_keys(1) })).await;
    let body = assert_ok(
        claim_raw(
            &alice.client,
            json!({ "one_time_keys": {
                "@nobody:localhost": { "DEV": OTK_ALG },
                alice.user(): { "NOSUCHDEVICE": OTK_ALG, alice.id(): "unknown_algorithm" },
            } }),
        )
        .await,
    );
    assert_no_failures(&body);
    let keys = &body["one_time_keys"];
    assert!(keys["@nobody:localhost"].is_null() || keys["@nobody:localhost"] == json!({}), "{body}");
    assert!(keys[alice.user()]["NOSUCHDEVICE"].is_null(), "{body}");
    let wrong_alg = &keys[alice.user()][alice.id()];
    assert!(wrong_alg.is_null() || wrong_alg == &json!({}), "a key of another algorithm was handed out: {body}");
    assert_eq!(alice.otk_count().await, 1, "the signed_curve25519 key must still be there");
}

#[tokio::test]
async fn claim_falls_back_to_the_fallback_key_when_one_time_keys_run_out() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    let otk = alice.one_time_keys(1);
    let fallback = alice.fallback_key();
    alice.upload_ok(json!({ "one_time_keys": otk, "fallback_keys": fallback })).await;
    let (fallback_id, fallback_key) =
        fallback.as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    let body = sync(&alice.client, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([OTK_ALG]), "{body}");

    // One-time keys first ...
    let (id, _) = claim_one(&bob.client, &alice).await.expect("the one-time key");
    assert!(otk.get(&id).is_some(), "{id} is not the one-time key");
    // ... then the fallback key, as uploaded, and again and again.
    for _ in 0..2 {
        let (id, key) = claim_one(&bob.client, &alice).await.expect("the fallback key");
        assert_eq!((id.as_str(), &key), (fallback_id.as_str(), &fallback_key));
        assert_eq!(key["fallback"], json!(true));
    }
    let body = sync(&alice.client, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "the fallback key was used: {body}");

    // A new fallback key replaces the used one.
    let new_fallback = alice.fallback_key();
    alice.upload_ok(json!({ "fallback_keys": new_fallback })).await;
    let body = sync(&alice.client, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([OTK_ALG]), "{body}");
    let (id, key) = claim_one(&bob.client, &alice).await.expect("the new fallback key");
    assert_eq!(new_fallback.get(&id), Some(&key), "claim must return the new fallback key, not {id}");
}

#[tokio::test]
async fn only_one_fallback_key_per_algorithm_is_kept() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    let first = alice.fallback_key();
    alice.upload_ok(json!({ "fallback_keys": first })).await;
    let second = alice.fallback_key();
    alice.upload_ok(json!({ "fallback_keys": second })).await;
    for _ in 0..2 {
        let (id, key) = claim_one(&bob.client, &alice).await.expect("a fallback key");
        assert_eq!(second.get(&id), Some(&key), "the replaced fallback key {id} was handed out");
    }
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_key_twice() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice.upload_device_keys().await;
    let uploaded = alice.one_time_keys(10);
    alice.upload_ok(json!({ "one_time_keys": uploaded })).await;
    let mut claimers = Vec::new();
    for i in 0..4 {
        claimers.push(server.register(&format!("claimer{i}"), PASSWORD).await);
    }
    let body = json!({ "one_time_keys": { alice.user(): { alice.id(): OTK_ALG } } });
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = claimers[i % claimers.len()].clone();
            let body = body.clone();
            tokio::spawn(async move { claim_raw(&client, body).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        let body = assert_ok(task.await.expect("claim task"));
        if let Some(keys) = body["one_time_keys"][&alice.client.user_id][&alice.client.device_id].as_object() {
            assert!(keys.len() <= 1, "more than one key for one device: {body}");
            claimed.extend(keys.keys().cloned());
        }
    }
    claimed.sort();
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a key was handed out twice: {claimed:?}");
    let expected: BTreeSet<&String> = uploaded.as_object().unwrap().keys().collect();
    assert_eq!(distinct, expected, "exactly the 10 uploaded keys must be handed out");
    assert_eq!(alice.otk_count().await, 0);
}

// ---------------------------------------------------------------------------
// /sync extensions and /keys/changes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sync_reports_one_time_key_counts_and_unused_fallback_key_types() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let other_device = login_again(&server, &alice).await;

    let body = sync(&alice.client, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "required even when empty: {body}");
    let count = &body["device_one_time_keys_count"][OTK_ALG];
    assert!(count.is_null() || count == &json!(0), "{body}");
    let from = next_batch(&body);

    alice.upload_device_keys().await;
    alice.upload_ok(json!({ "one_time_keys": alice.one_time_keys(4), "fallback_keys": alice.fallback_key() })).await;
    for query in ["timeout=0".to_owned(), since(&from, 0)] {
        let body = sync(&alice.client, &query).await;
        assert_eq!(body["device_one_time_keys_count"][OTK_ALG], json!(4), "sync?{query}: {body}");
        assert_eq!(body["device_unused_fallback_key_types"], json!([OTK_ALG]), "sync?{query}: {body}");
    }
    // Another device of the same user has its own (empty) counts.
    let body = sync(&other_device.client, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "{body}");
    let count = &body["device_one_time_keys_count"][OTK_ALG];
    assert!(count.is_null() || count == &json!(0), "{body}");

    // Counts the server keeps in memory follow claims by others...
    let bob = register(&server, "bob").await;
    let claim = json!({ "one_time_keys": { alice.user(): { alice.id(): OTK_ALG } } });
    assert_ok(claim_raw(&bob.client, claim).await);
    let body = sync(&alice.client, &since(&from, 0)).await;
    assert_eq!(body["device_one_time_keys_count"][OTK_ALG], json!(3), "after a claim: {body}");

    // ...and a device deleted and logged in again under the same id starts empty.
    let path = format!("{V3}/devices/{}", alice.id());
    assert_ok(alice.client.with_password_uia(Method::DELETE, &path, json!({}), PASSWORD).await);
    let login = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": alice.client.localpart() },
        "password": PASSWORD,
        "device_id": alice.id(),
    });
    let again = server.client().logged_in(&assert_ok(server.client().post(&format!("{V3}/login"), login).await));
    assert_eq!(again.device_id, alice.client.device_id);
    let body = sync(&again, "timeout=0").await;
    assert_eq!(body["device_unused_fallback_key_types"], json!([]), "a new device under an old id: {body}");
    let count = &body["device_one_time_keys_count"][OTK_ALG];
    assert!(count.is_null() || count == &json!(0), "a new device under an old id: {body}");
}

#[tokio::test]
async fn key_upload_shows_in_device_lists_changed_of_room_mates_only() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    shared_room(&alice, &[&bob]).await;
    let bob_from = token(&bob.client).await;
    let carol_from = token(&carol.client).await;

    alice.upload_device_keys().await;
    wait_device_list(&bob.client, &bob_from, "changed", alice.user()).await;
    let (changed, _) = device_lists_since(&carol.client, &carol_from).await;
    assert!(!changed.contains(alice.user()), "carol shares no room with alice but saw her keys change: {changed:?}");

    // /keys/changes between the two tokens says the same.
    let bob_to = token(&bob.client).await;
    let path = format!("{V3}/keys/changes?from={}&to={}", enc(&bob_from), enc(&bob_to));
    let body = assert_ok(bob.client.get(&path).await);
    let changed = body["changed"].as_array().unwrap_or_else(|| panic!("no changed array: {body}"));
    assert!(changed.contains(&json!(alice.user())), "{body}");
    let path = format!("{V3}/keys/changes?from={}&to={}", enc(&bob_to), enc(&bob_to));
    let body = assert_ok(bob.client.get(&path).await);
    assert!(!body["changed"].as_array().is_some_and(|c| c.contains(&json!(alice.user()))), "empty range: {body}");
}

#[tokio::test]
async fn keys_changes_reports_a_change_inside_the_range_even_after_a_later_one() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    shared_room(&alice, &[&bob]).await;
    let from = token(&bob.client).await;
    alice.upload_device_keys().await;
    let body = wait_device_list(&bob.client, &from, "changed", alice.user()).await;
    let to = next_batch(&body);
    // Alice changes her devices again after `to`: the change inside [from, to] still counts.
    login_again(&server, &alice).await.upload_device_keys().await;
    wait_device_list(&bob.client, &to, "changed", alice.user()).await;
    let path = format!("{V3}/keys/changes?from={}&to={}", enc(&from), enc(&to));
    let body = assert_ok(bob.client.get(&path).await);
    let changed = body["changed"].as_array().unwrap_or_else(|| panic!("no changed array: {body}"));
    assert!(changed.contains(&json!(alice.user())), "alice's change between from and to is missing: {body}");
}

#[tokio::test]
async fn keys_changes_needs_both_tokens() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let now = token(&alice.client).await;
    let resp = alice.client.get(&format!("{V3}/keys/changes?to={}", enc(&now))).await;
    assert_err(&resp, 400, "M_MISSING_PARAM");
    let resp = alice.client.get(&format!("{V3}/keys/changes?from=not-a-token&to={}", enc(&now))).await;
    assert_err_among(&resp, 400, &["M_INVALID_PARAM", "M_UNKNOWN"]);
}

#[tokio::test]
async fn long_poll_is_woken_by_a_room_mates_key_upload() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    shared_room(&alice, &[&bob]).await;
    let from = token(&bob.client).await;
    // Drain anything the join itself produced.
    let (_, _) = device_lists_since(&bob.client, &from).await;
    let from = token(&bob.client).await;

    let poll = {
        let bob = bob.client.clone();
        let query = since(&from, 20_000);
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, body) = bob.get(&format!("{SYNC}?{query}")).await;
            (status, body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.upload_device_keys().await;
    let (status, body, elapsed) = poll.await.expect("poll task");
    assert_eq!(status.as_u16(), 200, "{body}");
    assert!(device_list(&body, "changed").contains(&alice.client.user_id), "{body}");
    assert!(elapsed < Duration::from_secs(10), "the long-poll was not woken by the key upload ({elapsed:?})");
}

#[tokio::test]
async fn new_and_deleted_devices_show_in_device_lists_changed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    shared_room(&alice, &[&bob]).await;
    alice.upload_device_keys().await;

    let from = token(&bob.client).await;
    let second = login_again(&server, &alice).await;
    let body = wait_device_list(&bob.client, &from, "changed", alice.user()).await;
    let from = next_batch(&body);
    second.upload_device_keys().await;
    let body = wait_device_list(&bob.client, &from, "changed", alice.user()).await;
    let from = next_batch(&body);
    let listed = query(&bob.client, &[alice.user()]).await;
    assert!(listed["device_keys"][alice.user()][second.id()].is_object(), "{listed}");

    let path = format!("{V3}/devices/{}", enc(second.id()));
    assert_ok(alice.client.with_password_uia(Method::DELETE, &path, json!({}), PASSWORD).await);
    wait_device_list(&bob.client, &from, "changed", alice.user()).await;
    let listed = query(&bob.client, &[alice.user()]).await;
    assert!(listed["device_keys"][alice.user()][second.id()].is_null(), "deleted device still listed: {listed}");
    assert!(listed["device_keys"][alice.user()][alice.id()].is_object(), "{listed}");
}

#[tokio::test]
async fn sharing_a_room_again_or_no_more_shows_in_device_lists() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    bob.upload_device_keys().await;
    let room = alice.client.create_room(json!({ "preset": "public_chat" })).await;

    // Bob joins: he now shares a room with Alice, so she learns about him (and he about her).
    let alice_from = token(&alice.client).await;
    let bob_from = token(&bob.client).await;
    bob.client.join(&room).await;
    wait_device_list(&alice.client, &alice_from, "changed", bob.user()).await;
    wait_device_list(&bob.client, &bob_from, "changed", alice.user()).await;

    // Bob leaves the only shared room: Alice no longer needs his devices.
    let alice_from = token(&alice.client).await;
    bob.client.leave(&room).await;
    let body = wait_device_list(&alice.client, &alice_from, "left", bob.user()).await;
    assert!(!device_list(&body, "changed").contains(&bob.client.user_id), "left and changed at once: {body}");
    // ... and his later key changes are none of her business.
    let alice_from = next_batch(&body);
    let third = login_again(&server, &bob).await;
    third.upload_device_keys().await;
    let (changed, _) = device_lists_since(&alice.client, &alice_from).await;
    assert!(!changed.contains(bob.user()), "alice saw bob's device change after he left: {changed:?}");
}

#[tokio::test]
async fn leaving_the_last_shared_room_oneself_shows_in_device_lists_left() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let first = shared_room(&alice, &[&bob, &carol]).await;
    let second = shared_room(&alice, &[&bob]).await;

    // Leaving one of two shared rooms changes nothing.
    let from = token(&alice.client).await;
    alice.client.leave(&first).await;
    // Carol shared only the first room with alice.
    let body = wait_device_list(&alice.client, &from, "left", carol.user()).await;
    let (_, mut left) = device_lists_since(&alice.client, &next_batch(&body)).await;
    left.extend(device_list(&body, "left"));
    assert!(!left.contains(bob.user()), "bob still shares a room with alice: {left:?}");

    let from = token(&alice.client).await;
    alice.client.leave(&second).await;
    wait_device_list(&alice.client, &from, "left", bob.user()).await;
}

#[tokio::test]
async fn a_users_own_device_changes_show_in_their_device_lists_changed() {
    // Clients learn about their own new devices (to verify them, to share keys) this way.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice.upload_device_keys().await;
    let from = token(&alice.client).await;
    let second = login_again(&server, &alice).await;
    second.upload_device_keys().await;
    let body = wait_device_list(&alice.client, &from, "changed", alice.user()).await;
    let listed = query(&alice.client, &[alice.user()]).await;
    assert!(listed["device_keys"][alice.user()][second.id()].is_object(), "{listed} after {body}");
}

#[tokio::test]
async fn logging_out_removes_the_devices_keys() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    shared_room(&alice, &[&bob]).await;
    let second = login_again(&server, &alice).await;
    second.upload_device_keys().await;
    second.upload_ok(json!({ "one_time_keys": second.one_time_keys(2) })).await;
    let from = token(&bob.client).await;

    assert_ok(second.client.post(&format!("{V3}/logout"), json!({})).await);
    wait_device_list(&bob.client, &from, "changed", alice.user()).await;
    let listed = query(&bob.client, &[alice.user()]).await;
    assert!(listed["device_keys"][alice.user()][second.id()].is_null(), "logged-out device still listed: {listed}");
    assert_eq!(claim_one(&bob.client, &second).await, None, "a logged-out device's one-time key was handed out");
}

#[tokio::test]
async fn query_and_claim_accept_a_timeout() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice.upload_device_keys().await;
    alice.upload_ok(json!({ "one_time_keys": alice.one_time_keys(1) })).await;
    let body =
        assert_ok(query_raw(&alice.client, json!({ "timeout": 10000, "device_keys": { alice.user(): [] } })).await);
    assert!(body["device_keys"][alice.user()][alice.id()].is_object(), "{body}");
    let request = json!({ "timeout": 10000, "one_time_keys": { alice.user(): { alice.id(): OTK_ALG } } });
    let body = assert_ok(claim_raw(&alice.client, request).await);
    let keys = body["one_time_keys"][alice.user()][alice.id()].as_object().map(|k| k.len());
    assert_eq!(keys, Some(1), "{body}");
}

// ---------------------------------------------------------------------------
// Cross-signing
// ---------------------------------------------------------------------------

/// A user's three cross-signing keys.
struct CrossSigning {
    master: SigningKey,
    self_signing: SigningKey,
    user_signing: SigningKey,
}

impl CrossSigning {
    fn new() -> CrossSigning {
        CrossSigning { master: new_signing_key(), self_signing: new_signing_key(), user_signing: new_signing_key() }
    }

    fn master_key_id(&self) -> String {
        format!("ed25519:{}", public_b64(&self.master))
    }

    fn ssk_key_id(&self) -> String {
        format!("ed25519:{}", public_b64(&self.self_signing))
    }

    fn usk_key_id(&self) -> String {
        format!("ed25519:{}", public_b64(&self.user_signing))
    }

    fn master_key(&self, user: &str) -> Value {
        cross_signing_key(user, "master", &self.master)
    }

    /// The self-signing key, signed by the master key.
    fn self_signing_key(&self, user: &str) -> Value {
        let mut key = cross_signing_key(user, "self_signing", &self.self_signing);
        sign(&mut key, user, &self.master_key_id(), &self.master);
        key
    }

    /// The user-signing key, signed by the master key.
    fn user_signing_key(&self, user: &str) -> Value {
        let mut key = cross_signing_key(user, "user_signing", &self.user_signing);
        sign(&mut key, user, &self.master_key_id(), &self.master);
        key
    }

    fn upload_body(&self, user: &str) -> Value {
        json!({
            "master_key": self.master_key(user),
            "self_signing_key": self.self_signing_key(user),
            "user_signing_key": self.user_signing_key(user),
        })
    }
}

fn cross_signing_key(user: &str, usage: &str, key: &SigningKey) -> Value {
    let public = public_b64(key);
    json!({ "user_id": user, "usage": [usage], "keys": { format!("ed25519:{public}"): public } })
}

/// Uploads a fresh set of cross-signing keys for `device`'s user (first upload: no UIA).
async fn upload_cross_signing(device: &Device) -> CrossSigning {
    let keys = CrossSigning::new();
    let body = assert_ok(device_signing_upload(&device.client, keys.upload_body(device.user())).await);
    assert_eq!(body, json!({}), "device_signing/upload returns an empty object");
    keys
}

/// The `signatures` of the key object at `path` (e.g. device keys) as seen by `viewer`.
fn signatures_at<'a>(body: &'a Value, section: &str, user: &str, device: Option<&str>) -> &'a Value {
    match device {
        Some(device) => &body[section][user][device]["signatures"][user],
        None => &body[section][user]["signatures"],
    }
}

#[tokio::test]
async fn cross_signing_keys_are_uploaded_without_uia_the_first_time_and_queried() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let keys = upload_cross_signing(&alice).await;

    let own = query(&alice.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&own["master_keys"][alice.user()]), keys.master_key(alice.user()), "{own}");
    assert_eq!(without_unsigned(&own["self_signing_keys"][alice.user()]), keys.self_signing_key(alice.user()));
    assert_eq!(without_unsigned(&own["user_signing_keys"][alice.user()]), keys.user_signing_key(alice.user()));

    // Others see the master and self-signing keys, never the user-signing key.
    let theirs = query(&bob.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&theirs["master_keys"][alice.user()]), keys.master_key(alice.user()), "{theirs}");
    assert_eq!(without_unsigned(&theirs["self_signing_keys"][alice.user()]), keys.self_signing_key(alice.user()));
    assert!(theirs["user_signing_keys"][alice.user()].is_null(), "bob must not see alice's USK: {theirs}");

    // Uploading the very same keys again is idempotent: no UIA.
    assert_ok(device_signing_upload(&alice.client, keys.upload_body(alice.user())).await);
    assert_ok(device_signing_upload(&alice.client, json!({ "master_key": keys.master_key(alice.user()) })).await);
}

#[tokio::test]
async fn replacing_the_master_key_needs_user_interactive_auth() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let old = upload_cross_signing(&alice).await;
    let new = CrossSigning::new();
    let path = format!("{V3}/keys/device_signing/upload");

    // Without auth: 401 with flows and a session, nothing replaced.
    let resp = device_signing_upload(&alice.client, new.upload_body(alice.user())).await;
    assert_eq!(resp.0.as_u16(), 401, "replacing the master key without UIA: {}", resp.1);
    assert!(resp.1["flows"].as_array().is_some_and(|f| !f.is_empty()), "401 without flows: {}", resp.1);
    assert!(resp.1["session"].is_string(), "401 without session: {}", resp.1);
    let body = query(&alice.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&body["master_keys"][alice.user()]), old.master_key(alice.user()), "{body}");

    // A wrong password is refused; the right one replaces all three keys.
    let session = alice.client.uia_session(Method::POST, &path, new.upload_body(alice.user())).await;
    let mut wrong = new.upload_body(alice.user());
    wrong["auth"] = json!({
        "type": "m.login.password", "session": session, "password": "wrong",
        "identifier": { "type": "m.id.user", "user": alice.user() },
    });
    let resp = device_signing_upload(&alice.client, wrong).await;
    assert!(matches!(resp.0.as_u16(), 401 | 403), "wrong password accepted: {resp:?}");
    assert_ok(alice.client.with_password_uia(Method::POST, &path, new.upload_body(alice.user()), PASSWORD).await);
    let body = query(&alice.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&body["master_keys"][alice.user()]), new.master_key(alice.user()), "{body}");
    assert_eq!(without_unsigned(&body["self_signing_keys"][alice.user()]), new.self_signing_key(alice.user()));
}

#[tokio::test]
async fn replacing_only_the_self_signing_key_needs_user_interactive_auth() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let keys = upload_cross_signing(&alice).await;
    let new_ssk = new_signing_key();
    let mut ssk = cross_signing_key(alice.user(), "self_signing", &new_ssk);
    sign(&mut ssk, alice.user(), &keys.master_key_id(), &keys.master);
    let resp = device_signing_upload(&alice.client, json!({ "self_signing_key": ssk })).await;
    assert_eq!(resp.0.as_u16(), 401, "a new self-signing key is a new key: {}", resp.1);
    let path = format!("{V3}/keys/device_signing/upload");
    assert_ok(alice.client.with_password_uia(Method::POST, &path, json!({ "self_signing_key": ssk }), PASSWORD).await);
    let body = query(&alice.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&body["self_signing_keys"][alice.user()]), ssk, "{body}");
    assert_eq!(without_unsigned(&body["master_keys"][alice.user()]), keys.master_key(alice.user()), "{body}");
}

#[tokio::test]
async fn cross_signing_keys_must_be_signed_by_the_master_key() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let keys = CrossSigning::new();

    // Self-signing key signed by some other key.
    let mut bad_ssk = cross_signing_key(alice.user(), "self_signing", &keys.self_signing);
    sign(&mut bad_ssk, alice.user(), &keys.master_key_id(), &new_signing_key());
    let body = json!({ "master_key": keys.master_key(alice.user()), "self_signing_key": bad_ssk });
    assert_err(&device_signing_upload(&alice.client, body).await, 400, "M_INVALID_SIGNATURE");
    // User-signing key without any signature.
    let unsigned_usk = cross_signing_key(alice.user(), "user_signing", &keys.user_signing);
    let body = json!({ "master_key": keys.master_key(alice.user()), "user_signing_key": unsigned_usk });
    assert_err(&device_signing_upload(&alice.client, body).await, 400, "M_INVALID_SIGNATURE");
    // Nothing stored by the failed uploads.
    let stored = query(&alice.client, &[alice.user()]).await;
    assert!(stored["master_keys"][alice.user()].is_null(), "master key stored by a failed upload: {stored}");

    // A self-signing key with no master key anywhere.
    let body = json!({ "self_signing_key": keys.self_signing_key(alice.user()) });
    assert_err(&device_signing_upload(&alice.client, body).await, 400, "M_MISSING_PARAM");
}

#[tokio::test]
async fn cross_signing_keys_for_another_user_or_usage_are_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let keys = CrossSigning::new();
    let body = json!({ "master_key": keys.master_key(bob.user()) });
    let resp = device_signing_upload(&alice.client, body).await;
    assert!(resp.0.as_u16() == 400 || resp.0.as_u16() == 403, "alice uploaded bob's master key: {resp:?}");
    let mut wrong_usage = keys.master_key(alice.user());
    wrong_usage["usage"] = json!(["self_signing"]);
    let resp = device_signing_upload(&alice.client, json!({ "master_key": wrong_usage })).await;
    assert_eq!(resp.0.as_u16(), 400, "master key with usage self_signing: {resp:?}");
    let stored = query(&bob.client, &[alice.user(), bob.user()]).await;
    assert!(stored["master_keys"][bob.user()].is_null() && stored["master_keys"][alice.user()].is_null(), "{stored}");
}

#[tokio::test]
async fn a_cross_signing_key_may_not_share_a_device_id() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let keys = CrossSigning::new();
    let master_public = public_b64(&keys.master);
    // A device whose id is the master key's public key.
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": alice.client.localpart() },
        "password": PASSWORD,
        "device_id": master_public,
    });
    let login = assert_ok(server.client().post(&format!("{V3}/login"), body).await);
    assert_eq!(login["device_id"], json!(master_public));
    let resp = device_signing_upload(&alice.client, keys.upload_body(alice.user())).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn cross_signing_changes_show_in_device_lists_changed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    shared_room(&alice, &[&bob]).await;
    let from = token(&bob.client).await;
    upload_cross_signing(&alice).await;
    wait_device_list(&bob.client, &from, "changed", alice.user()).await;
}

#[tokio::test]
async fn signatures_upload_verifies_and_publishes_signatures() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    let alice_keys = upload_cross_signing(&alice).await;
    let bob_keys = upload_cross_signing(&bob).await;
    shared_room(&alice, &[&bob]).await;
    let bob_from = token(&bob.client).await;

    // Alice's self-signing key signs her device; her device signs her master key;
    // her user-signing key signs Bob's master key.
    let mut device = alice.device_keys();
    device.as_object_mut().unwrap().remove("signatures");
    sign(&mut device, alice.user(), &alice_keys.ssk_key_id(), &alice_keys.self_signing);
    let mut own_master = alice_keys.master_key(alice.user());
    sign(&mut own_master, alice.user(), &alice.ed25519_key_id(), &alice.key);
    let mut bobs_master = bob_keys.master_key(bob.user());
    sign(&mut bobs_master, alice.user(), &alice_keys.usk_key_id(), &alice_keys.user_signing);
    let body = json!({
        alice.user(): { alice.id(): device, public_b64(&alice_keys.master): own_master },
        bob.user(): { public_b64(&bob_keys.master): bobs_master },
    });
    let resp = assert_ok(signatures_upload(&alice.client, body).await);
    let failures = &resp["failures"];
    assert!(failures.is_null() || failures == &json!({}), "valid signatures reported as failures: {resp}");

    // Everyone sees the self-signing signature on the device and the device's signature on the master key.
    for viewer in [&alice, &bob] {
        let body = query(&viewer.client, &[alice.user()]).await;
        let on_device = signatures_at(&body, "device_keys", alice.user(), Some(alice.id()));
        assert_eq!(on_device[alice_keys.ssk_key_id()], device["signatures"][alice.user()][alice_keys.ssk_key_id()]);
        assert!(on_device[alice.ed25519_key_id()].is_string(), "the self-signature must stay: {body}");
        let on_master = &signatures_at(&body, "master_keys", alice.user(), None)[alice.user()];
        assert_eq!(on_master[alice.ed25519_key_id()], own_master["signatures"][alice.user()][alice.ed25519_key_id()]);
    }
    // Alice sees her signature on Bob's master key.
    let body = query(&alice.client, &[bob.user()]).await;
    let on_bob = &body["master_keys"][bob.user()]["signatures"][alice.user()][alice_keys.usk_key_id()];
    assert_eq!(on_bob, &bobs_master["signatures"][alice.user()][alice_keys.usk_key_id()], "{body}");
    // A new signature on Alice's keys is a device-list change for Bob.
    wait_device_list(&bob.client, &bob_from, "changed", alice.user()).await;
}

#[tokio::test]
async fn forged_signatures_are_reported_as_failures() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    alice.upload_device_keys().await;
    let alice_keys = upload_cross_signing(&alice).await;
    let bob_keys = upload_cross_signing(&bob).await;

    // Claims to be from the self-signing key but is made by another key.
    let mut forged = alice.device_keys();
    forged.as_object_mut().unwrap().remove("signatures");
    sign(&mut forged, alice.user(), &alice_keys.ssk_key_id(), &new_signing_key());
    // Correctly signed, but the object differs from the uploaded device keys.
    let mut altered = alice.unsigned_device_keys();
    altered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    sign(&mut altered, alice.user(), &alice_keys.ssk_key_id(), &alice_keys.self_signing);
    // Bob's master key "signed" with Alice's master key instead of her user-signing key: forged under the USK id.
    let mut bobs_master = bob_keys.master_key(bob.user());
    sign(&mut bobs_master, alice.user(), &alice_keys.usk_key_id(), &alice_keys.master);

    let body = json!({
        alice.user(): { alice.id(): forged },
        bob.user(): { public_b64(&bob_keys.master): bobs_master },
    });
    let resp = assert_ok(signatures_upload(&alice.client, body).await);
    let failure = &resp["failures"][alice.user()][alice.id()];
    assert_eq!(failure["errcode"], json!("M_INVALID_SIGNATURE"), "{resp}");
    let failure = &resp["failures"][bob.user()][public_b64(&bob_keys.master)];
    assert_eq!(failure["errcode"], json!("M_INVALID_SIGNATURE"), "{resp}");

    let resp = assert_ok(signatures_upload(&alice.client, json!({ alice.user(): { alice.id(): altered } })).await);
    assert!(resp["failures"][alice.user()][alice.id()]["errcode"].is_string(), "altered object accepted: {resp}");

    // Signing a device that does not exist is a failure for that key only.
    let mut ghost = alice.unsigned_device_keys();
    ghost["device_id"] = json!("GHOST");
    sign(&mut ghost, alice.user(), &alice_keys.ssk_key_id(), &alice_keys.self_signing);
    let resp = assert_ok(signatures_upload(&alice.client, json!({ alice.user(): { "GHOST": ghost } })).await);
    assert!(resp["failures"][alice.user()]["GHOST"]["errcode"].is_string(), "unknown device accepted: {resp}");

    // None of it is visible.
    let body = query(&bob.client, &[alice.user(), bob.user()]).await;
    let on_device = signatures_at(&body, "device_keys", alice.user(), Some(alice.id()));
    assert!(on_device[alice_keys.ssk_key_id()].is_null(), "forged signature published: {body}");
    let on_bob = &body["master_keys"][bob.user()]["signatures"][alice.user()];
    assert!(on_bob.is_null() || on_bob.get(alice_keys.usk_key_id()).is_none(), "forged signature published: {body}");
    let body = query(&alice.client, &[bob.user()]).await;
    let on_bob = &body["master_keys"][bob.user()]["signatures"][alice.user()];
    assert!(on_bob.is_null() || on_bob.get(alice_keys.usk_key_id()).is_none(), "forged signature published: {body}");
}

#[tokio::test]
async fn concurrent_claims_of_overlapping_devices_all_succeed() {
    // Claims of several devices lock their keys in one order: on PostgreSQL,
    // claims of overlapping sets must wait for each other, not deadlock.
    let server = TestServer::start().await;
    let mut targets = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let device = register(&server, name).await;
        device.upload_device_keys().await;
        device.upload_ok(json!({ "one_time_keys": device.one_time_keys(8) })).await;
        targets.push(device);
    }
    let claimer = server.register("claimer", PASSWORD).await;
    // Every pair of the three, and all three, in turn.
    let sets: [&[usize]; 4] = [&[0, 1], &[1, 2], &[2, 0], &[0, 1, 2]];
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let mut wanted = Map::new();
            for &t in sets[i % sets.len()] {
                wanted.insert(targets[t].user().to_owned(), json!({ targets[t].id(): OTK_ALG }));
            }
            let client = claimer.clone();
            tokio::spawn(async move { claim_raw(&client, json!({ "one_time_keys": wanted })).await })
        })
        .collect();
    let mut claimed: Vec<Vec<String>> = vec![Vec::new(); targets.len()];
    for task in tasks {
        let body = assert_ok(task.await.expect("claim task"));
        for (t, target) in targets.iter().enumerate() {
            if let Some(keys) = body["one_time_keys"][target.user()][target.id()].as_object() {
                assert_eq!(keys.len(), 1, "one key per device: {body}");
                claimed[t].extend(keys.keys().cloned());
            }
        }
    }
    // Each device is in 9 of the 12 claims and has 8 keys: all 8 go, each once.
    for (t, target) in targets.iter().enumerate() {
        let distinct: BTreeSet<&String> = claimed[t].iter().collect();
        assert_eq!(distinct.len(), claimed[t].len(), "a key of {} was handed out twice", target.user());
        assert_eq!(distinct.len(), 8, "{}: {:?}", target.user(), claimed[t]);
        assert_eq!(target.otk_count().await, 0);
    }
}

#[tokio::test]
async fn query_answers_follow_every_change_of_the_keys() {
    // Answers are kept in memory per user: each change must show in the next
    // query, asked right after it (no wait for device lists).
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let devices_of = |body: &Value| -> BTreeSet<String> {
        body["device_keys"][alice.user()].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(body["device_keys"][alice.user()], json!({}), "no keys yet: {body}");

    alice.upload_device_keys().await;
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(devices_of(&body), BTreeSet::from([alice.id().to_owned()]), "{body}");
    assert!(body["master_keys"][alice.user()].is_null(), "{body}");

    let path = format!("{V3}/devices/{}", enc(alice.id()));
    assert_ok(alice.client.put(&path, json!({ "display_name": "Renamed" })).await);
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(body["device_keys"][alice.user()][alice.id()]["unsigned"]["device_display_name"], "Renamed");

    let keys = upload_cross_signing(&alice).await;
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(without_unsigned(&body["master_keys"][alice.user()]), keys.master_key(alice.user()), "{body}");

    let mut device = alice.device_keys();
    device.as_object_mut().unwrap().remove("signatures");
    sign(&mut device, alice.user(), &keys.ssk_key_id(), &keys.self_signing);
    let resp = assert_ok(signatures_upload(&alice.client, json!({ alice.user(): { alice.id(): device } })).await);
    assert!(resp["failures"].is_null() || resp["failures"] == json!({}), "{resp}");
    let body = query(&bob.client, &[alice.user()]).await;
    let on_device = signatures_at(&body, "device_keys", alice.user(), Some(alice.id()));
    assert!(on_device[keys.ssk_key_id()].is_string(), "the new signature must show: {body}");

    let second = login_again(&server, &alice).await;
    second.upload_device_keys().await;
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(devices_of(&body), BTreeSet::from([alice.id().to_owned(), second.id().to_owned()]), "{body}");

    let path = format!("{V3}/devices/{}", enc(second.id()));
    assert_ok(alice.client.with_password_uia(Method::DELETE, &path, json!({}), PASSWORD).await);
    let body = query(&bob.client, &[alice.user()]).await;
    assert_eq!(devices_of(&body), BTreeSet::from([alice.id().to_owned()]), "deleted device still listed: {body}");
}
