//! What an incremental `/sync` answers from memory (a room's latest events,
//! receipt and account-data positions, memberships, ignored users) stays true
//! to what is stored: after redactions, restarts and account-data changes.

use complement_tests::sync::{ephemeral, next_batch, since, sync, timeline, timeline_ids};
use complement_tests::{Client, TestServer, assert_ok, enc};
use serde_json::json;

async fn room_with(alice: &Client, bob: &Client) -> String {
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    room
}

#[tokio::test]
async fn a_redaction_reaches_events_already_served_from_memory() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let room = alice.create_room(json!({})).await;
    let from = next_batch(&sync(&alice, "timeout=0").await);

    let message = alice.send_text(&room, "soon gone").await;
    let body = sync(&alice, &since(&from, 0)).await;
    assert_eq!(timeline_ids(&body, &room), vec![message.clone()], "{body}");

    let redaction = alice.redact(&room, &message, None).await;
    let body = sync(&alice, &since(&from, 0)).await;
    assert_eq!(timeline_ids(&body, &room), vec![message.clone(), redaction], "{body}");
    let redacted = timeline(&body, &room)[0];
    assert_eq!(redacted["content"], json!({}), "the timeline shows the redacted form: {body}");
    assert_eq!(redacted["unsigned"]["redacted_because"]["type"], "m.room.redaction", "{body}");
}

#[tokio::test]
async fn receipts_and_account_data_from_before_a_restart_are_synced_after_it() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with(&alice, &bob).await;
    let message = bob.send_text(&room, "read me").await;
    let from = next_batch(&sync(&alice, "timeout=0").await);

    let path = Client::room_path(&room, &format!("/receipt/m.read/{}", enc(&message)));
    assert_ok(bob.post(&path, json!({})).await);
    let data_path = format!("/_matrix/client/v3/user/{}/account_data/org.example.note", enc(&alice.user_id));
    assert_ok(alice.put(&data_path, json!({ "n": 1 })).await);

    server.restart().await;
    let alice = Client { base: server.base_url().to_owned(), ..alice.clone() };
    let bob = Client { base: server.base_url().to_owned(), ..bob.clone() };
    let body = sync(&alice, &since(&from, 0)).await;
    let receipts = ephemeral(&body, &room, "m.receipt");
    assert_eq!(receipts.len(), 1, "the receipt made before the restart: {body}");
    assert!(receipts[0]["content"][&message]["m.read"][&bob.user_id].is_object(), "{body}");
    let data = body["account_data"]["events"].as_array().cloned().unwrap_or_default();
    assert!(data.iter().any(|e| e["type"] == "org.example.note" && e["content"]["n"] == 1), "{body}");

    // Nothing new: an empty answer; then a receipt after the restart wakes a long-poll.
    let from = next_batch(&body);
    let body = sync(&alice, &since(&from, 0)).await;
    assert!(ephemeral(&body, &room, "m.receipt").is_empty(), "nothing new: {body}");
    let poll = {
        let alice = alice.clone();
        let query = since(&from, 10_000);
        tokio::spawn(async move { sync(&alice, &query).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = alice.send_text(&room, "and me").await;
    assert_ok(bob.post(&Client::room_path(&room, &format!("/receipt/m.read/{}", enc(&second))), json!({})).await);
    let mut body = poll.await.expect("long-poll task");
    // The message and the receipt may come in one answer or two.
    if ephemeral(&body, &room, "m.receipt").is_empty() {
        body = sync(&alice, &since(&next_batch(&body), 10_000)).await;
    }
    let receipts = ephemeral(&body, &room, "m.receipt");
    assert!(receipts.iter().any(|r| r["content"][&second]["m.read"][&bob.user_id].is_object()), "{body}");
}

#[tokio::test]
async fn ignoring_a_user_hides_their_next_messages_in_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with(&alice, &bob).await;
    let seen = bob.send_text(&room, "before").await;
    let body = sync(&alice, "timeout=0").await;
    assert!(timeline_ids(&body, &room).contains(&seen), "{body}");
    let from = next_batch(&body);

    let ignore_path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", enc(&alice.user_id));
    assert_ok(alice.put(&ignore_path, json!({ "ignored_users": { &bob.user_id: {} } })).await);
    let hidden = bob.send_text(&room, "while ignored").await;
    let own = alice.send_text(&room, "mine").await;
    let body = sync(&alice, &since(&from, 0)).await;
    assert_eq!(timeline_ids(&body, &room), vec![own], "bob's message is hidden: {body}");
    assert!(!timeline_ids(&body, &room).contains(&hidden));

    let from = next_batch(&body);
    assert_ok(alice.put(&ignore_path, json!({ "ignored_users": {} })).await);
    let shown = bob.send_text(&room, "after").await;
    let body = sync(&alice, &since(&from, 0)).await;
    assert_eq!(timeline_ids(&body, &room), vec![shown], "no longer ignored: {body}");
}

#[tokio::test]
async fn leaving_and_forgetting_change_the_next_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = room_with(&alice, &bob).await;
    let from = next_batch(&sync(&bob, "timeout=0").await);

    bob.leave(&room).await;
    let body = sync(&bob, &since(&from, 0)).await;
    assert!(body["rooms"]["leave"].get(&room).is_some(), "the room moves to leave: {body}");
    assert!(body["rooms"]["join"].get(&room).is_none(), "{body}");

    assert_ok(bob.post(&Client::room_path(&room, "/forget"), json!({})).await);
    let filter = enc(&json!({ "room": { "include_leave": true } }).to_string());
    let body = sync(&bob, &format!("timeout=0&filter={filter}")).await;
    assert!(body["rooms"]["leave"].get(&room).is_none(), "a forgotten room is gone: {body}");

    // Joining again brings it back at once.
    bob.join(&room).await;
    let body = sync(&bob, "timeout=0").await;
    assert!(body["rooms"]["join"].get(&room).is_some(), "{body}");
}
