//! Per-room user data and room housekeeping: tags, room account data,
//! reports, forgetting rooms, and the empty-state-key state path.

mod support;

use complement_tests::{TestServer, assert_err, assert_ok, enc};
use serde_json::json;
use support::*;

// --------------------------------------------------------------------- tags

fn tags_path(user: &str, room: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/tags", enc(user), enc(room))
}

#[tokio::test]
async fn tags_put_get_delete() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_private_room(&alice).await;
    let path = tags_path(&alice.user_id, &room);

    assert_eq!(assert_ok(alice.get(&path).await), json!({ "tags": {} }));
    assert_eq!(assert_ok(alice.put(&format!("{path}/u.work"), json!({ "order": 0.5 })).await), json!({}));
    assert_ok(alice.put(&format!("{path}/m.favourite"), json!({})).await);
    let body = assert_ok(alice.get(&path).await);
    assert_eq!(body, json!({ "tags": { "u.work": { "order": 0.5 }, "m.favourite": {} } }));

    // Re-putting replaces the tag's content.
    assert_ok(alice.put(&format!("{path}/u.work"), json!({ "order": 0.25 })).await);
    assert_eq!(assert_ok(alice.get(&path).await)["tags"]["u.work"], json!({ "order": 0.25 }));

    assert_eq!(assert_ok(alice.delete(&format!("{path}/u.work"), None).await), json!({}));
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "tags": { "m.favourite": {} } }));

    // Tags are per room.
    let other = create_private_room(&alice).await;
    assert_eq!(assert_ok(alice.get(&tags_path(&alice.user_id, &other)).await), json!({ "tags": {} }));
}

#[tokio::test]
async fn tags_of_another_user_are_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    let path = tags_path(&alice.user_id, &room);
    assert_ok(alice.put(&format!("{path}/u.mine"), json!({ "order": 0.1 })).await);

    assert_err(&bob.get(&path).await, 403, "M_FORBIDDEN");
    assert_err(&bob.put(&format!("{path}/u.evil"), json!({})).await, 403, "M_FORBIDDEN");
    assert_err(&bob.delete(&format!("{path}/u.mine"), None).await, 403, "M_FORBIDDEN");
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "tags": { "u.mine": { "order": 0.1 } } }));
}

// ------------------------------------------------------- room account data

fn room_data_path(user: &str, room: &str, data_type: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/account_data/{}", enc(user), enc(room), enc(data_type))
}

#[tokio::test]
async fn room_account_data_round_trip_and_scoping() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_private_room(&alice).await;
    let other = create_private_room(&alice).await;
    let path = room_data_path(&alice.user_id, &room, "org.example.config");

    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
    assert_eq!(assert_ok(alice.put(&path, json!({ "colour": "blue", "n": 1 })).await), json!({}));
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "colour": "blue", "n": 1 }));
    assert_ok(alice.put(&path, json!({ "colour": "red" })).await);
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "colour": "red" }));

    // Not visible in another room, nor as global account data.
    assert_err(&alice.get(&room_data_path(&alice.user_id, &other, "org.example.config")).await, 404, "M_NOT_FOUND");
    let global = format!("/_matrix/client/v3/user/{}/account_data/org.example.config", enc(&alice.user_id));
    assert_err(&alice.get(&global).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn room_account_data_of_another_user_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    let path = room_data_path(&alice.user_id, &room, "org.example.config");
    assert_ok(alice.put(&path, json!({ "secret": true })).await);
    assert_err(&bob.get(&path).await, 403, "M_FORBIDDEN");
    assert_err(&bob.put(&path, json!({ "secret": false })).await, 403, "M_FORBIDDEN");
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "secret": true }));
}

#[tokio::test]
async fn room_account_data_managed_by_server_is_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_private_room(&alice).await;
    let path = room_data_path(&alice.user_id, &room, "m.fully_read");
    assert_err(&alice.put(&path, json!({ "event_id": "$x" })).await, 405, "M_BAD_JSON");
}

#[tokio::test]
async fn room_account_data_with_invalid_room_id_is_invalid_param() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let path = room_data_path(&alice.user_id, "not-a-room-id", "org.example.config");
    assert_err(&alice.put(&path, json!({ "a": 1 })).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.get(&path).await, 400, "M_INVALID_PARAM");
}

// ------------------------------------------------------------------ reports

#[tokio::test]
async fn report_event_in_joined_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_public_room(&alice).await;
    join(&bob, &room).await;
    let event = send_text(&alice, &room, "offensive").await;
    let path = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event));

    assert_eq!(assert_ok(bob.post(&path, json!({ "reason": "spam", "score": -100 })).await), json!({}));
    assert_eq!(assert_ok(bob.post(&path, json!({ "reason": "no score" })).await), json!({}));
    assert_eq!(assert_ok(bob.post(&path, json!({})).await), json!({}), "reason is optional for events");
}

#[tokio::test]
async fn report_event_score_out_of_range_is_invalid_param() {
    // `score` (-100..0) was part of the report API before v1.18 removed it;
    // Kith still validates it when given.
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_public_room(&alice).await;
    let event = send_text(&alice, &room, "hello").await;
    let path = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event));
    assert_err(&alice.post(&path, json!({ "reason": "x", "score": 1 })).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.post(&path, json!({ "reason": "x", "score": -101 })).await, 400, "M_INVALID_PARAM");
    assert_ok(alice.post(&path, json!({ "reason": "x", "score": 0 })).await);
}

#[tokio::test]
async fn report_event_not_found_when_unknown_or_not_joined() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    let event = send_text(&alice, &room, "private").await;
    let path = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event));
    assert_err(&bob.post(&path, json!({ "reason": "x" })).await, 404, "M_NOT_FOUND");
    let unknown = format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc("$nosuchevent"));
    assert_err(&alice.post(&unknown, json!({ "reason": "x" })).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn report_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = create_private_room(&alice).await;
    // The reporter need not be joined.
    let path = format!("/_matrix/client/v3/rooms/{}/report", enc(&room));
    assert_eq!(assert_ok(bob.post(&path, json!({ "reason": "bad room" })).await), json!({}));
    assert_eq!(assert_ok(alice.post(&path, json!({ "reason": "" })).await), json!({}), "reason may be blank");
    let unknown = format!("/_matrix/client/v3/rooms/{}/report", enc("!nosuchroom:localhost"));
    assert_err(&bob.post(&unknown, json!({ "reason": "x" })).await, 404, "M_NOT_FOUND");
}

// ------------------------------------------------------------------- forget

#[tokio::test]
async fn forget_requires_leaving_first() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_private_room(&alice).await;
    let keep = create_private_room(&alice).await;
    let path = format!("/_matrix/client/v3/rooms/{}/forget", enc(&room));

    assert_err(&alice.post(&path, json!({})).await, 400, "M_UNKNOWN");
    let joined = assert_ok(alice.get("/_matrix/client/v3/joined_rooms").await);
    assert!(joined["joined_rooms"].as_array().is_some_and(|r| r.contains(&json!(room))), "{joined}");

    leave(&alice, &room).await;
    assert_eq!(assert_ok(alice.post(&path, json!({})).await), json!({}));
    let joined = assert_ok(alice.get("/_matrix/client/v3/joined_rooms").await);
    assert_eq!(joined["joined_rooms"], json!([keep]), "{joined}");
}

// ------------------------------------------------------- state path (empty key)

#[tokio::test]
async fn state_with_empty_key_accepts_trailing_slash() {
    // "If the state key is an empty string, the trailing slash on this endpoint is optional."
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = create_room(&alice, json!({ "preset": "private_chat", "name": "Slash" })).await;
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room));
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "name": "Slash" }));
    let body = assert_ok(alice.put(&path, json!({ "name": "Renamed" })).await);
    assert!(body["event_id"].is_string(), "{body}");
    assert_eq!(get_state(&alice, &room, "m.room.name", "").await, json!({ "name": "Renamed" }));
}
