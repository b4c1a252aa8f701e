//! Server-side key backup: backup versions (`/room_keys/version[/{version}]`)
//! and the keys in them (`/room_keys/keys[/{roomId}[/{sessionId}]]`), with the
//! spec's rule for replacing a stored session (`is_verified`, then
//! `first_message_index`, then `forwarded_count`), the `etag` and `count`, and
//! writes to anything but the current version refused with 403
//! `M_WRONG_ROOM_KEYS_VERSION`.

use complement_tests::{Client, Resp, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const PASSWORD: &str = "key backup password";
const ALGORITHM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:localhost";
const OTHER_ROOM: &str = "!other:localhost";

fn auth_data(public_key: &str) -> Value {
    json!({ "public_key": public_key, "signatures": { "@alice:localhost": { "ed25519:DEV": "sig" } } })
}

/// `POST /room_keys/version`; asserts 200 and returns the new version.
async fn create_version(client: &Client, public_key: &str) -> String {
    let body = json!({ "algorithm": ALGORITHM, "auth_data": auth_data(public_key) });
    let resp = assert_ok(client.post(&format!("{V3}/room_keys/version"), body).await);
    resp["version"].as_str().unwrap_or_else(|| panic!("no version string in {resp}")).to_owned()
}

fn version_path(version: &str) -> String {
    format!("{V3}/room_keys/version/{}", enc(version))
}

/// `GET /room_keys/version` (latest) or `/room_keys/version/{version}`.
async fn get_version(client: &Client, version: Option<&str>) -> Resp {
    match version {
        Some(version) => client.get(&version_path(version)).await,
        None => client.get(&format!("{V3}/room_keys/version")).await,
    }
}

/// A backup version's info; asserts the required fields.
#[track_caller]
fn check_info(resp: Resp) -> Value {
    let info = assert_ok(resp);
    assert_eq!(info["algorithm"], json!(ALGORITHM), "{info}");
    assert!(info["auth_data"].is_object(), "{info}");
    assert!(info["count"].is_u64(), "count must be an integer: {info}");
    assert!(info["etag"].is_string(), "etag must be a string: {info}");
    assert!(info["version"].is_string(), "version must be a string: {info}");
    info
}

/// The `/room_keys/keys` path at the level given by `room` and `session`, with `?version=`.
fn keys_path(room: Option<&str>, session: Option<&str>, version: &str) -> String {
    let mut path = format!("{V3}/room_keys/keys");
    if let Some(room) = room {
        path.push_str(&format!("/{}", enc(room)));
        if let Some(session) = session {
            path.push_str(&format!("/{}", enc(session)));
        }
    }
    format!("{path}?version={}", enc(version))
}

/// Key backup data for one session; `marker` identifies the upload in `session_data`.
fn session(first_message_index: u64, forwarded_count: u64, is_verified: bool, marker: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": { "ephemeral": "base64+ephemeral+key", "ciphertext": marker, "mac": "base64+mac" },
    })
}

/// Puts one session; asserts 200 and returns the `{etag, count}` response.
async fn put_session(client: &Client, version: &str, room: &str, session_id: &str, data: Value) -> Value {
    let resp = assert_ok(client.put(&keys_path(Some(room), Some(session_id), version), data).await);
    check_update(&resp);
    resp
}

#[track_caller]
fn check_update(resp: &Value) {
    assert!(resp["etag"].is_string() && resp["count"].is_u64(), "update response needs etag and count: {resp}");
}

/// The `ciphertext` marker of the stored session, or `None` when it is not stored.
async fn stored_marker(client: &Client, version: &str, room: &str, session_id: &str) -> Option<String> {
    let (status, body) = client.get(&keys_path(Some(room), Some(session_id), version)).await;
    if status.as_u16() == 404 {
        assert_eq!(body["errcode"], json!("M_NOT_FOUND"), "{body}");
        return None;
    }
    assert_eq!(status.as_u16(), 200, "{body}");
    Some(body["session_data"]["ciphertext"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned())
}

#[tokio::test]
async fn without_a_backup_everything_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    assert_err(&get_version(&alice, None).await, 404, "M_NOT_FOUND");
    assert_err(&get_version(&alice, Some("1")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.delete(&version_path("1"), None).await, 404, "M_NOT_FOUND");
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("k") });
    assert_err(&alice.put(&version_path("1"), update).await, 404, "M_NOT_FOUND");
    for (room, session_id) in [(None, None), (Some(ROOM), None), (Some(ROOM), Some("s"))] {
        let path = keys_path(room, session_id, "1");
        assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
        assert_err(&alice.delete(&path, None).await, 404, "M_NOT_FOUND");
    }
    let path = keys_path(Some(ROOM), Some("s"), "1");
    assert_err(&alice.put(&path, session(0, 0, false, "x")).await, 404, "M_NOT_FOUND");
    let path = keys_path(Some(ROOM), None, "1");
    assert_err(&alice.put(&path, json!({ "sessions": { "s": session(0, 0, false, "x") } })).await, 404, "M_NOT_FOUND");
    let all = json!({ "rooms": { ROOM: { "sessions": { "s": session(0, 0, false, "x") } } } });
    assert_err(&alice.put(&keys_path(None, None, "1"), all).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn backup_versions_are_created_read_updated_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let v1 = create_version(&alice, "key one").await;

    let latest = check_info(get_version(&alice, None).await);
    assert_eq!(latest["version"], json!(v1));
    assert_eq!(latest["auth_data"], auth_data("key one"));
    assert_eq!(latest["count"], json!(0));
    assert_eq!(check_info(get_version(&alice, Some(&v1)).await), latest);

    // Only auth_data changes; the version in the body may be given if it matches.
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("key one, re-signed"), "version": v1 });
    assert_eq!(assert_ok(alice.put(&version_path(&v1), update).await), json!({}));
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("key one, again") });
    assert_eq!(assert_ok(alice.put(&version_path(&v1), update).await), json!({}));
    let info = check_info(get_version(&alice, Some(&v1)).await);
    assert_eq!((info["auth_data"].clone(), info["version"].clone()), (auth_data("key one, again"), json!(v1)));

    // A new version becomes the latest; the old one is still there.
    let v2 = create_version(&alice, "key two").await;
    assert_ne!(v1, v2);
    assert_eq!(check_info(get_version(&alice, None).await)["version"], json!(v2));
    assert_eq!(check_info(get_version(&alice, Some(&v1)).await)["auth_data"], auth_data("key one, again"));

    // Deleting the latest makes the previous one the latest; deleting twice is fine.
    assert_eq!(assert_ok(alice.delete(&version_path(&v2), None).await), json!({}));
    assert_err(&get_version(&alice, Some(&v2)).await, 404, "M_NOT_FOUND");
    assert_eq!(check_info(get_version(&alice, None).await)["version"], json!(v1));
    assert_ok(alice.delete(&version_path(&v2), None).await);
    // A deleted version's id is never handed out again.
    let v3 = create_version(&alice, "key three").await;
    assert!(v3 != v1 && v3 != v2, "version ids reused: {v1} {v2} {v3}");
    // A version that never existed.
    assert_err(&alice.delete(&version_path("987654321"), None).await, 404, "M_NOT_FOUND");
    assert_err(&get_version(&alice, Some("987654321")).await, 404, "M_NOT_FOUND");
    assert_err(&get_version(&alice, Some("not-a-number")).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn bad_version_updates_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let v1 = create_version(&alice, "key").await;
    let other_algorithm = json!({ "algorithm": "org.example.other", "auth_data": auth_data("x") });
    assert_err(&alice.put(&version_path(&v1), other_algorithm).await, 400, "M_INVALID_PARAM");
    let other_version = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("x"), "version": format!("{v1}0") });
    assert_err(&alice.put(&version_path(&v1), other_version).await, 400, "M_INVALID_PARAM");
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("x") });
    assert_err(&alice.put(&version_path("987654321"), update).await, 404, "M_NOT_FOUND");
    assert_err(&alice.put(&version_path(&v1), json!({ "algorithm": ALGORITHM })).await, 400, "M_BAD_JSON");
    assert_eq!(check_info(get_version(&alice, Some(&v1)).await)["auth_data"], auth_data("key"), "changed anyway");
    let no_algorithm = json!({ "auth_data": auth_data("x") });
    assert_err(&alice.post(&format!("{V3}/room_keys/version"), no_algorithm).await, 400, "M_BAD_JSON");
    assert_err(
        &alice.post(&format!("{V3}/room_keys/version"), json!({ "algorithm": ALGORITHM })).await,
        400,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn backups_are_private_to_their_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let version = create_version(&alice, "alice's key").await;
    put_session(&alice, &version, ROOM, "s1", session(0, 0, false, "alice's session")).await;

    assert_err(&get_version(&bob, None).await, 404, "M_NOT_FOUND");
    assert_err(&get_version(&bob, Some(&version)).await, 404, "M_NOT_FOUND");
    assert_err(&bob.get(&keys_path(Some(ROOM), Some("s1"), &version)).await, 404, "M_NOT_FOUND");
    assert_err(&bob.get(&keys_path(None, None, &version)).await, 404, "M_NOT_FOUND");
    assert_err(&bob.delete(&version_path(&version), None).await, 404, "M_NOT_FOUND");
    assert_err(&bob.delete(&keys_path(None, None, &version), None).await, 404, "M_NOT_FOUND");
    let update = json!({ "algorithm": ALGORITHM, "auth_data": auth_data("bob's") });
    assert_err(&bob.put(&version_path(&version), update).await, 404, "M_NOT_FOUND");

    // Bob's own backup may well get the same version id; it is still his own.
    let bobs = create_version(&bob, "bob's key").await;
    assert_eq!(check_info(get_version(&bob, Some(&bobs)).await)["count"], json!(0));
    assert_eq!(stored_marker(&bob, &bobs, ROOM, "s1").await, None);
    let info = check_info(get_version(&alice, Some(&version)).await);
    assert_eq!((info["count"].clone(), info["auth_data"].clone()), (json!(1), auth_data("alice's key")));
    assert_eq!(stored_marker(&alice, &version, ROOM, "s1").await.as_deref(), Some("alice's session"));
}

#[tokio::test]
async fn keys_are_stored_read_and_deleted_at_every_level() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    let empty_etag = check_info(get_version(&alice, None).await)["etag"].clone();

    // Session level.
    let s1 = session(0, 0, true, "s1");
    let resp = put_session(&alice, &version, ROOM, "s1", s1.clone()).await;
    assert_eq!(resp["count"], json!(1));
    assert_ne!(resp["etag"], empty_etag, "the etag must change with the keys");
    let mut etag = resp["etag"].clone();
    // Room level.
    let room_keys = json!({ "sessions": { "s2": session(1, 0, false, "s2"), "s3": session(2, 1, false, "s3") } });
    let resp = assert_ok(alice.put(&keys_path(Some(ROOM), None, &version), room_keys).await);
    check_update(&resp);
    assert_eq!(resp["count"], json!(3));
    assert_ne!(resp["etag"], etag);
    etag = resp["etag"].clone();
    // All rooms.
    let all = json!({ "rooms": { OTHER_ROOM: { "sessions": { "s4": session(0, 0, false, "s4") } } } });
    let resp = assert_ok(alice.put(&keys_path(None, None, &version), all).await);
    check_update(&resp);
    assert_eq!(resp["count"], json!(4));
    assert_ne!(resp["etag"], etag);
    etag = resp["etag"].clone();
    let info = check_info(get_version(&alice, Some(&version)).await);
    assert_eq!((info["count"].clone(), info["etag"].clone()), (json!(4), etag.clone()), "{info}");

    // Reading at every level.
    let path = keys_path(Some(ROOM), Some("s1"), &version);
    assert_eq!(assert_ok(alice.get(&path).await), s1);
    let room = assert_ok(alice.get(&keys_path(Some(ROOM), None, &version)).await);
    let mut ids: Vec<&String> = room["sessions"].as_object().unwrap_or_else(|| panic!("{room}")).keys().collect();
    ids.sort();
    assert_eq!(ids, ["s1", "s2", "s3"], "{room}");
    assert_eq!(room["sessions"]["s3"], session(2, 1, false, "s3"));
    let everything = assert_ok(alice.get(&keys_path(None, None, &version)).await);
    assert_eq!(everything["rooms"][ROOM], room, "{everything}");
    assert_eq!(everything["rooms"][OTHER_ROOM]["sessions"]["s4"], session(0, 0, false, "s4"), "{everything}");
    assert_eq!(everything["rooms"].as_object().map(|r| r.len()), Some(2), "{everything}");

    // Missing things.
    assert_err(&alice.get(&keys_path(Some(ROOM), Some("nope"), &version)).await, 404, "M_NOT_FOUND");
    let nothing = assert_ok(alice.get(&keys_path(Some("!empty:localhost"), None, &version)).await);
    assert_eq!(nothing, json!({ "sessions": {} }));

    // Deleting at every level.
    let resp = assert_ok(alice.delete(&keys_path(Some(ROOM), Some("s1"), &version), None).await);
    check_update(&resp);
    assert_eq!(resp["count"], json!(3));
    assert_ne!(resp["etag"], etag);
    assert_eq!(stored_marker(&alice, &version, ROOM, "s1").await, None);
    let resp = assert_ok(alice.delete(&keys_path(Some(ROOM), None, &version), None).await);
    check_update(&resp);
    assert_eq!(resp["count"], json!(1));
    assert_eq!(assert_ok(alice.get(&keys_path(Some(ROOM), None, &version)).await), json!({ "sessions": {} }));
    let resp = assert_ok(alice.delete(&keys_path(None, None, &version), None).await);
    check_update(&resp);
    assert_eq!(resp["count"], json!(0));
    assert_eq!(assert_ok(alice.get(&keys_path(None, None, &version)).await), json!({ "rooms": {} }));
    assert_eq!(check_info(get_version(&alice, None).await)["count"], json!(0));
}

#[tokio::test]
async fn a_stored_session_is_replaced_only_by_a_better_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    // (stored, uploaded, which one the server keeps)
    let cases = [
        ("verified beats a lower index", session(10, 5, false, "old"), session(0, 0, true, "new"), "new"),
        ("verified is kept against a lower index", session(10, 5, true, "old"), session(0, 0, false, "new"), "old"),
        ("lower first_message_index wins", session(5, 0, false, "old"), session(3, 9, false, "new"), "new"),
        ("higher first_message_index loses", session(5, 0, true, "old"), session(7, 0, true, "new"), "old"),
        ("same index: lower forwarded_count wins", session(4, 2, true, "old"), session(4, 1, true, "new"), "new"),
        ("same index: higher forwarded_count loses", session(4, 2, false, "old"), session(4, 3, false, "new"), "old"),
    ];
    for (i, (what, stored, uploaded, kept)) in cases.into_iter().enumerate() {
        let session_id = format!("session{i}");
        put_session(&alice, &version, ROOM, &session_id, stored.clone()).await;
        let before = check_info(get_version(&alice, None).await);
        let resp = put_session(&alice, &version, ROOM, &session_id, uploaded.clone()).await;
        assert_eq!(resp["count"], json!(i + 1), "{what}: replacing must not add a key");
        let expected = if kept == "new" { &uploaded } else { &stored };
        let got = assert_ok(alice.get(&keys_path(Some(ROOM), Some(&session_id), &version)).await);
        assert_eq!(&got, expected, "{what}");
        if kept == "old" {
            assert_eq!(resp["etag"], before["etag"], "{what}: nothing changed, so the etag must not either");
        } else {
            assert_ne!(resp["etag"], before["etag"], "{what}: the keys changed, so must the etag");
        }
    }

    // The same rules apply to room-level and all-rooms uploads.
    put_session(&alice, &version, ROOM, "bulk", session(5, 0, false, "old")).await;
    let worse = json!({ "sessions": { "bulk": session(6, 0, false, "worse") } });
    assert_ok(alice.put(&keys_path(Some(ROOM), None, &version), worse).await);
    assert_eq!(stored_marker(&alice, &version, ROOM, "bulk").await.as_deref(), Some("old"));
    let better = json!({ "rooms": { ROOM: { "sessions": { "bulk": session(5, 0, true, "better") } } } });
    assert_ok(alice.put(&keys_path(None, None, &version), better).await);
    assert_eq!(stored_marker(&alice, &version, ROOM, "bulk").await.as_deref(), Some("better"));
}

#[tokio::test]
async fn only_the_current_version_can_be_written() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let v1 = create_version(&alice, "old key").await;
    put_session(&alice, &v1, ROOM, "s1", session(0, 0, false, "in v1")).await;
    let v2 = create_version(&alice, "new key").await;

    let data = session(0, 0, false, "late write");
    let writes = [
        (keys_path(Some(ROOM), Some("s2"), &v1), data.clone()),
        (keys_path(Some(ROOM), None, &v1), json!({ "sessions": { "s2": data } })),
        (keys_path(None, None, &v1), json!({ "rooms": { ROOM: { "sessions": { "s2": data } } } })),
        (keys_path(Some(ROOM), Some("s2"), "987654321"), data.clone()),
    ];
    for (path, body) in writes {
        let resp = alice.put(&path, body).await;
        assert_err(&resp, 403, "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(resp.1["current_version"], json!(v2), "403 must name the current version: {}", resp.1);
    }
    // The old backup can still be read, and was not written to.
    assert_eq!(stored_marker(&alice, &v1, ROOM, "s1").await.as_deref(), Some("in v1"));
    assert_eq!(stored_marker(&alice, &v1, ROOM, "s2").await, None);
    assert_eq!(check_info(get_version(&alice, Some(&v1)).await)["count"], json!(1));
    // Keys belong to their version.
    assert_eq!(check_info(get_version(&alice, Some(&v2)).await)["count"], json!(0));
    assert_eq!(stored_marker(&alice, &v2, ROOM, "s1").await, None);
    // Reading a version that does not exist.
    assert_err(&alice.get(&keys_path(None, None, "987654321")).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_version_deletes_its_keys() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let v1 = create_version(&alice, "key").await;
    put_session(&alice, &v1, ROOM, "s1", session(0, 0, false, "x")).await;
    assert_ok(alice.delete(&version_path(&v1), None).await);
    assert_err(&alice.get(&keys_path(None, None, &v1)).await, 404, "M_NOT_FOUND");
    assert_err(&alice.get(&keys_path(Some(ROOM), Some("s1"), &v1)).await, 404, "M_NOT_FOUND");
    assert_err(&get_version(&alice, None).await, 404, "M_NOT_FOUND");
    let v2 = create_version(&alice, "key").await;
    assert_eq!(check_info(get_version(&alice, None).await)["count"], json!(0));
    assert_eq!(assert_ok(alice.get(&keys_path(None, None, &v2)).await), json!({ "rooms": {} }));
}

#[tokio::test]
async fn bad_key_uploads_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&alice, "key").await;
    let path = keys_path(Some(ROOM), Some("s1"), &version);
    let mut missing_index = session(0, 0, false, "x");
    missing_index.as_object_mut().unwrap().remove("first_message_index");
    assert_err(&alice.put(&path, missing_index).await, 400, "M_BAD_JSON");
    let mut not_boolean = session(0, 0, false, "x");
    not_boolean["is_verified"] = json!("yes");
    assert_err(&alice.put(&path, not_boolean).await, 400, "M_BAD_JSON");
    let mut fractional = session(0, 0, false, "x");
    fractional["forwarded_count"] = json!(1.5);
    assert_err(&alice.put(&path, fractional).await, 400, "M_BAD_JSON");
    let mut not_object = session(0, 0, false, "x");
    not_object["session_data"] = json!("x");
    assert_err(&alice.put(&path, not_object).await, 400, "M_BAD_JSON");
    assert_err(&alice.put(&keys_path(Some(ROOM), None, &version), json!({ "sessions": 1 })).await, 400, "M_BAD_JSON");
    let no_version = format!("{V3}/room_keys/keys/{}/s1", enc(ROOM));
    assert_err(&alice.put(&no_version, session(0, 0, false, "x")).await, 400, "M_MISSING_PARAM");
    assert_eq!(check_info(get_version(&alice, None).await)["count"], json!(0), "a rejected upload was stored");
}
