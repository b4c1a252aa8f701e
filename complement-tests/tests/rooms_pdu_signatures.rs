//! PDU hashes, event ids and signatures, verified by an independent
//! implementation (`tests-py/verify_pdus.py`, using the Python libraries
//! Synapse uses) against the raw PDUs from the admin endpoint
//! `GET /_kith/admin/v1/events/{eventId}/pdu`.

use std::path::{Path, PathBuf};
use std::process::Command;

use complement_tests::client::register_admin;
use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

/// A modification of one PDU that the verifier must notice.
type Tamper = fn(&mut Value);

const VERSIONS: [&str; 6] = ["1", "3", "4", "10", "11", "12"];

fn python() -> String {
    std::env::var("KITH_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests-py/verify_pdus.py")
}

/// Fails the test unless the Python packages are importable.
fn require_python_packages() {
    let python = python();
    let out = Command::new(&python)
        .args(["-c", "import signedjson, canonicaljson, unpaddedbase64"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (set KITH_PYTHON to a Python 3 interpreter): {e}"));
    assert!(
        out.status.success(),
        "`{python}` cannot import signedjson/canonicaljson/unpaddedbase64: run \
         `pip install -r tests-py/requirements.txt` (or set KITH_PYTHON).\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Run {
    success: bool,
    output: String,
}

fn run_verifier(file: &Path) -> Run {
    let out = Command::new(python()).arg(script()).arg(file).output().expect("run verify_pdus.py");
    Run {
        success: out.status.success(),
        output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}

fn pdu_path(event_id: &str) -> String {
    format!("/_kith/admin/v1/events/{}/pdu", enc(event_id))
}

/// Fills a room with messages, state, membership changes and a redaction.
async fn populate(room: &str, version: &str, alice: &Client, bob: &Client) {
    bob.join(room).await;
    alice.send_text(room, &format!("hello in v{version}")).await;
    let edited = bob
        .send_message(
            room,
            json!({
                "msgtype": "m.text",
                "body": "Ünïcødé 🎉 \"quotes\" \\ backslash \u{0001} <b>",
                "format": "org.matrix.custom.html",
                "formatted_body": "<b>bold</b>",
                "m.mentions": { "user_ids": [alice.user_id] },
            }),
        )
        .await;
    bob.send_message(
        room,
        json!({
            "msgtype": "m.text",
            "body": "* edited",
            "m.new_content": { "msgtype": "m.text", "body": "edited" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": edited },
        }),
    )
    .await;
    alice
        .send_event(
            room,
            "m.reaction",
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": edited, "key": "👍" } }),
        )
        .await;
    alice.send_state(room, "m.room.topic", "", json!({ "topic": format!("topic v{version}") })).await;
    alice
        .send_state(room, "com.example.state", "some key", json!({ "n": 9007199254740991i64, "neg": -5, "b": true }))
        .await;
    bob.send_state(room, "m.room.member", &bob.user_id, json!({ "membership": "join", "displayname": "Bob B" })).await;
    let doomed = bob.send_text(room, "to be redacted").await;
    alice.redact(room, &doomed, Some("spam")).await;
    let kicked = alice.send_text(room, "bye bob").await;
    assert!(kicked.starts_with('$'));
    let (status, body) = alice.membership_raw(room, "kick", &bob.user_id, Some("test kick")).await;
    assert_eq!(status.as_u16(), 200, "kick failed: {body}");
    alice.send_state(room, "m.room.join_rules", "", json!({ "join_rule": "invite" })).await;
    alice.invite(room, &bob.user_id).await;
}

#[tokio::test]
async fn pdus_verify_with_an_independent_implementation() {
    require_python_packages();
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let admin = register_admin(server.base_url(), "admin", "admin-password").await;

    let mut events = Vec::new();
    for version in VERSIONS {
        let room = alice
            .create_room(json!({
                "room_version": version,
                "preset": "public_chat",
                "name": format!("Room v{version}"),
                "room_alias_name": format!("sig-v{version}"),
                "initial_state": [{ "type": "com.example.init", "state_key": "", "content": { "k": "v" } }],
            }))
            .await;
        populate(&room, version, &alice, &bob).await;
        let timeline = alice.paginate_all(&room, "f", 100, None, 10).await;
        assert!(timeline.len() >= 20, "v{version}: expected a full timeline, got {} events", timeline.len());
        let mut redactions = 0;
        for event in &timeline {
            let event_id = event["event_id"].as_str().expect("event_id");
            let resp = assert_ok(admin.get(&pdu_path(event_id)).await);
            assert_eq!(resp["room_version"], json!(version), "{resp}");
            let pdu = &resp["pdu"];
            for key in ["hashes", "signatures", "prev_events", "auth_events", "depth", "sender", "type", "content"] {
                assert!(pdu.get(key).is_some(), "v{version} PDU of {event_id} without {key}: {resp}");
            }
            assert_eq!(pdu["type"], event["type"], "{resp}");
            if pdu["type"] == json!("m.room.redaction") {
                redactions += 1;
            }
            let redacted = event["unsigned"].get("redacted_because").is_some();
            events.push(json!({
                "event_id": event_id,
                "room_version": version,
                "redacted": redacted,
                "pdu": pdu,
            }));
        }
        assert_eq!(redactions, 1, "v{version}: one redaction in the timeline");
    }

    let server_keys = assert_ok(server.client().get("/_matrix/key/v2/server").await);
    let input = json!({ "server_keys": server_keys, "events": events });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pdus.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&input).expect("json")).expect("write pdus.json");

    if let Ok(dump) = std::env::var("KITH_PDU_DUMP") {
        std::fs::copy(&file, &dump).expect("copy to KITH_PDU_DUMP");
    }
    let run = run_verifier(&file);
    assert!(run.success, "verify_pdus.py rejected the server's PDUs:\n{}", run.output);
    let count = events.len();
    assert!(run.output.contains(&format!("verified {count} events")), "unexpected output: {}", run.output);

    // Negative self-checks: the verifier must notice tampering.
    let message_index = events
        .iter()
        .position(|e| {
            e["pdu"]["type"] == json!("m.room.message")
                && e["redacted"] == json!(false)
                && e["room_version"] == json!("12")
        })
        .expect("an unredacted v12 message");
    let event_id = events[message_index]["event_id"].as_str().expect("id").to_owned();
    let tampers: [(&str, Tamper); 4] = [
        ("content", |pdu| pdu["content"]["body"] = json!("tampered")),
        ("depth", |pdu| pdu["depth"] = json!(pdu["depth"].as_i64().unwrap_or(0) + 1)),
        ("signature", |pdu| {
            let sigs = pdu["signatures"]["localhost"].as_object_mut().expect("localhost signatures");
            let (_, sig) = sigs.iter_mut().next().expect("a signature");
            let s = sig.as_str().expect("signature string");
            let flipped = match s.strip_prefix('A') {
                Some(rest) => format!("B{rest}"),
                None => format!("A{}", &s[1..]),
            };
            *sig = json!(flipped);
        }),
        ("hash", |pdu| pdu["hashes"]["sha256"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
    ];
    for (what, tamper) in tampers {
        let mut bad = input.clone();
        tamper(&mut bad["events"][message_index]["pdu"]);
        std::fs::write(&file, serde_json::to_vec(&bad).expect("json")).expect("write");
        let run = run_verifier(&file);
        assert!(!run.success, "verify_pdus.py accepted a PDU with tampered {what}:\n{}", run.output);
        assert!(run.output.contains(&event_id), "the failure must name {event_id} ({what}):\n{}", run.output);
    }

    // Without the server keys nothing verifies.
    let mut bad = input.clone();
    bad["server_keys"]["verify_keys"] = json!({});
    std::fs::write(&file, serde_json::to_vec(&bad).expect("json")).expect("write");
    assert!(!run_verifier(&file).success, "verify_pdus.py must fail without server keys");
}

#[tokio::test]
async fn admin_pdu_endpoint_requires_an_admin() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let admin = register_admin(server.base_url(), "admin", "admin-password").await;
    let room = alice.create_room(json!({ "room_version": "11" })).await;
    let event_id = alice.send_text(&room, "hi").await;

    assert_err(&alice.get(&pdu_path(&event_id)).await, 403, "M_FORBIDDEN");
    assert_err(&server.client().get(&pdu_path(&event_id)).await, 401, "M_MISSING_TOKEN");
    assert_err(&admin.get(&pdu_path("$doesnotexist")).await, 404, "M_NOT_FOUND");

    let resp = assert_ok(admin.get(&pdu_path(&event_id)).await);
    assert_eq!(resp["room_version"], json!("11"), "{resp}");
    let pdu = &resp["pdu"];
    assert_eq!(pdu["room_id"], json!(room), "{resp}");
    assert_eq!(pdu["sender"], json!(alice.user_id), "{resp}");
    assert_eq!(pdu["content"], json!({ "msgtype": "m.text", "body": "hi" }), "{resp}");
    assert!(pdu["hashes"]["sha256"].is_string(), "{resp}");
    assert!(pdu["signatures"]["localhost"].as_object().is_some_and(|s| !s.is_empty()), "{resp}");
    assert!(pdu["depth"].as_u64().is_some_and(|d| d > 1), "{resp}");
    assert!(pdu["prev_events"].as_array().is_some_and(|p| !p.is_empty()), "{resp}");
    assert!(pdu["auth_events"].as_array().is_some_and(|a| a.len() >= 3), "create, power levels, member: {resp}");
    assert!(pdu.get("event_id").is_none(), "v11 PDUs do not carry their id: {resp}");
    assert!(pdu.get("unsigned").is_none_or(|u| u.get("transaction_id").is_none()), "{resp}");
}
