//! Unread notification counts in /sync (`unread_notifications`, and per
//! thread with the `unread_thread_notifications` filter), as push rules decide
//! them and read receipts reset them, and `GET /notifications`.

use std::time::Duration;

use complement_tests::sync::{SYNC, next_batch, sync};
use complement_tests::{Client, TestServer, assert_err, assert_ok, enc};
use serde_json::{Value, json};

const THREADED: &str = r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#;

/// `(notification_count, highlight_count)` of a joined room in a sync response.
#[track_caller]
fn counts(body: &Value, room: &str) -> (u64, u64) {
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    let count = |key: &str| unread[key].as_u64().unwrap_or_else(|| panic!("no {key} for {room}: {body}"));
    (count("notification_count"), count("highlight_count"))
}

/// A room's counts from a fresh initial sync (with `filter`, if any).
async fn room_counts(client: &Client, room: &str, filter: Option<&str>) -> (u64, u64) {
    let query = filter.map(|f| format!("filter={}", enc(f))).unwrap_or_default();
    counts(&sync(client, &query).await, room)
}

async fn receipt(client: &Client, room: &str, receipt_type: &str, event_id: &str, body: Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/receipt/{receipt_type}/{}", enc(room), enc(event_id));
    assert_ok(client.post(&path, body).await);
}

async fn put_rule(client: &Client, kind: &str, rule_id: &str, body: Value) {
    let path = format!("/_matrix/client/v3/pushrules/global/{kind}/{}", enc(rule_id));
    assert_ok(client.put(&path, body).await);
}

/// A server where alice created a room that bob (and carol, with `three`) joined.
async fn room_with(three: bool) -> (TestServer, Client, Client, Option<Client>, String) {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let carol = if three {
        let carol = server.register("carol", "password-c").await;
        carol.join(&room).await;
        Some(carol)
    } else {
        None
    };
    (server, alice, bob, carol, room)
}

#[tokio::test]
async fn messages_count_for_the_other_members_and_a_read_receipt_resets_them() {
    let (_server, alice, bob, carol, room) = room_with(true).await;
    let carol = carol.unwrap();
    let since = next_batch(&sync(&bob, "").await);
    assert_eq!(room_counts(&bob, &room, None).await, (0, 0), "joining gives no notifications");

    alice.send_text(&room, "one").await;
    let second = alice.send_text(&room, "two").await;
    assert_eq!(room_counts(&bob, &room, None).await, (2, 0));
    assert_eq!(room_counts(&carol, &room, None).await, (2, 0));
    assert_eq!(room_counts(&alice, &room, None).await, (0, 0), "the sender is not notified of their own events");
    let body = sync(&bob, &format!("since={}", enc(&since))).await;
    assert_eq!(counts(&body, &room), (2, 0), "incremental sync: {body}");

    // A receipt moves bob's counts, and the room shows up with them in the next sync.
    let since = next_batch(&body);
    receipt(&bob, &room, "m.read", &second, json!({})).await;
    let body = sync(&bob, &format!("since={}&timeout=5000", enc(&since))).await;
    assert_eq!(counts(&body, &room), (0, 0), "{body}");
    assert_eq!(room_counts(&carol, &room, None).await, (2, 0), "bob's receipt is bob's only");

    // A private receipt counts too; the receipt furthest ahead wins.
    let third = alice.send_text(&room, "three").await;
    alice.send_text(&room, "four").await;
    receipt(&carol, &room, "m.read.private", &third, json!({})).await;
    assert_eq!(room_counts(&carol, &room, None).await, (1, 0));
    receipt(&carol, &room, "m.read", &second, json!({})).await;
    assert_eq!(room_counts(&carol, &room, None).await, (1, 0), "an older public receipt does not undo the private one");

    // Sending an event reads what came before it.
    bob.send_text(&room, "my turn").await;
    assert_eq!(room_counts(&bob, &room, None).await, (0, 0));
    assert_eq!(room_counts(&alice, &room, None).await, (1, 0));

    // A redacted event no longer counts.
    let oops = alice.send_text(&room, "oops").await;
    assert_eq!(room_counts(&bob, &room, None).await, (1, 0));
    alice.redact(&room, &oops, None).await;
    assert_eq!(room_counts(&bob, &room, None).await, (0, 0), "the redaction itself does not notify");
}

#[tokio::test]
async fn mentions_highlight_and_user_rules_decide_what_counts() {
    let (_server, alice, bob, _carol, room) = room_with(true).await;
    alice
        .send_message(&room, json!({ "msgtype": "m.text", "body": "hey", "m.mentions": { "user_ids": [bob.user_id] } }))
        .await;
    assert_eq!(room_counts(&bob, &room, None).await, (1, 1), "a mention of bob");
    alice.send_message(&room, json!({ "msgtype": "m.notice", "body": "a bot speaks" })).await;
    assert_eq!(room_counts(&bob, &room, None).await, (1, 1), "notices are suppressed by default");

    // A user rule on the display name (bob's is his localpart) highlights.
    let name = bob.localpart().to_owned();
    put_rule(
        &bob,
        "override",
        "my-name",
        json!({ "conditions": [{ "kind": "contains_display_name" }], "actions": ["notify", { "set_tweak": "highlight" }] }),
    )
    .await;
    alice.send_text(&room, &format!("is {name} around?")).await;
    assert_eq!(room_counts(&bob, &room, None).await, (2, 2));
    alice.send_text(&room, &format!("{name}ny was here")).await;
    assert_eq!(room_counts(&bob, &room, None).await, (3, 2), "whole words only");

    // A muted room (room rule without actions) and a dont_notify sender rule count nothing.
    put_rule(&bob, "room", &room, json!({ "actions": [] })).await;
    alice.send_text(&room, "muted").await;
    assert_eq!(room_counts(&bob, &room, None).await, (3, 2));
    put_rule(&bob, "room", &room, json!({ "actions": ["notify"] })).await;
    alice.send_text(&room, "unmuted").await;
    assert_eq!(room_counts(&bob, &room, None).await, (4, 2));
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{}", enc(&room));
    assert_ok(bob.delete(&rule, None).await);
    put_rule(&bob, "sender", &alice.user_id, json!({ "actions": ["dont_notify"] })).await;
    alice.send_text(&room, "ignored sender").await;
    assert_eq!(room_counts(&bob, &room, None).await, (4, 2), "dont_notify is a no-op: nothing notifies");
    // The master rule silences everything.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled";
    assert_ok(bob.put(master, json!({ "enabled": true })).await);
    alice.send_message(&room, json!({ "body": "hi", "m.mentions": { "user_ids": [bob.user_id] } })).await;
    assert_eq!(room_counts(&bob, &room, None).await, (4, 2));
}

#[tokio::test]
async fn thread_counts_are_split_out_with_the_filter_and_reset_by_threaded_receipts() {
    let (_server, alice, bob, _carol, room) = room_with(false).await;
    let root = alice.send_text(&room, "root").await;
    let in_thread = |text: &str| json!({ "msgtype": "m.text", "body": text, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let reply = alice.send_message(&room, in_thread("reply 1")).await;
    alice.send_message(&room, in_thread("reply 2")).await;
    let mention = in_thread("reply 3");
    let mut mention = mention;
    mention["m.mentions"] = json!({ "user_ids": [bob.user_id] });
    alice.send_message(&room, mention).await;
    let main = alice.send_text(&room, "main again").await;

    // Without the filter: one count for the whole room, and no per-thread object.
    let body = sync(&bob, "").await;
    assert_eq!(counts(&body, &room), (5, 1));
    assert!(body["rooms"]["join"][&room].get("unread_thread_notifications").is_none(), "{body}");

    let filter = format!("filter={}", enc(THREADED));
    let body = sync(&bob, &filter).await;
    assert_eq!(counts(&body, &room), (2, 0), "the main timeline only: {body}");
    let threads = &body["rooms"]["join"][&room]["unread_thread_notifications"];
    assert_eq!(threads, &json!({ root.clone(): { "notification_count": 3, "highlight_count": 1 } }), "{body}");

    // A threaded receipt resets its thread only.
    receipt(&bob, &room, "m.read", &reply, json!({ "thread_id": root })).await;
    let body = sync(&bob, &filter).await;
    assert_eq!(counts(&body, &room), (2, 0));
    assert_eq!(body["rooms"]["join"][&room]["unread_thread_notifications"][&root]["notification_count"], 2);
    // A main-timeline receipt resets the main timeline only...
    receipt(&bob, &room, "m.read", &main, json!({ "thread_id": "main" })).await;
    let body = sync(&bob, &filter).await;
    assert_eq!(counts(&body, &room), (0, 0));
    assert_eq!(body["rooms"]["join"][&room]["unread_thread_notifications"][&root]["highlight_count"], 1);
    // ...and an unthreaded receipt resets every thread up to it.
    receipt(&bob, &room, "m.read", &main, json!({})).await;
    let body = sync(&bob, &filter).await;
    assert_eq!(counts(&body, &room), (0, 0));
    assert!(body["rooms"]["join"][&room].get("unread_thread_notifications").is_none(), "{body}");
}

#[tokio::test]
async fn the_long_poll_woken_by_a_message_carries_its_count() {
    let (_server, alice, bob, _carol, room) = room_with(false).await;
    let mut since = next_batch(&sync(&bob, "").await);
    for n in 1..=5u64 {
        let poller = bob.clone();
        let token = since.clone();
        let poll =
            tokio::spawn(
                async move { assert_ok(poller.get(&format!("{SYNC}?timeout=10000&since={}", enc(&token))).await) },
            );
        tokio::time::sleep(Duration::from_millis(50)).await;
        alice.send_text(&room, &format!("message {n}")).await;
        let body = poll.await.unwrap();
        let timeline = body["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        assert!(!timeline.is_empty(), "woken without the message: {body}");
        assert_eq!(counts(&body, &room), (n, 0), "the count arrives with the event itself: {body}");
        since = next_batch(&body);
    }
}

#[tokio::test]
async fn a_direct_chat_notifies_with_the_one_to_one_rule() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let room = alice
        .create_room(json!({ "preset": "trusted_private_chat", "invite": [bob.user_id], "is_direct": true }))
        .await;
    bob.join(&room).await;
    let event = alice.send_text(&room, "psst").await;
    assert_eq!(room_counts(&bob, &room, None).await, (1, 0));
    let notifications = assert_ok(bob.get("/_matrix/client/v3/notifications").await);
    let first = &notifications["notifications"][0];
    assert_eq!(first["event"]["event_id"], json!(event), "{notifications}");
    let actions = first["actions"].as_array().unwrap();
    assert!(actions.contains(&json!({ "set_tweak": "sound", "value": "default" })), "the one-to-one rule: {first}");
}

#[tokio::test]
async fn notifications_page_newest_first_with_read_flags_and_only_highlight() {
    let (_server, alice, bob, _carol, room) = room_with(true).await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let mut content = json!({ "msgtype": "m.text", "body": format!("n{n}") });
        if n % 2 == 0 {
            content["m.mentions"] = json!({ "user_ids": [bob.user_id] });
        }
        sent.push(alice.send_message(&room, content).await);
    }
    receipt(&bob, &room, "m.read", &sent[1], json!({})).await;

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("?limit=2&from={}", enc(token)),
            None => "?limit=2".to_owned(),
        };
        let page = assert_ok(bob.get(&format!("/_matrix/client/v3/notifications{query}")).await);
        for n in page["notifications"].as_array().unwrap() {
            assert_eq!(n["room_id"], json!(room), "{n}");
            assert!(n["ts"].is_u64() && n["event"].get("room_id").is_none(), "{n}");
            seen.push((n["event"]["event_id"].as_str().unwrap().to_owned(), n["read"].as_bool().unwrap()));
        }
        match page.get("next_token") {
            Some(token) => from = Some(token.as_str().expect("string token").to_owned()),
            None => break,
        }
    }
    let expected: Vec<(String, bool)> = sent.iter().enumerate().rev().map(|(i, id)| (id.clone(), i <= 1)).collect();
    assert_eq!(seen, expected, "newest first, read up to the receipt");

    let highlights = assert_ok(bob.get("/_matrix/client/v3/notifications?only=highlight").await);
    let ids: Vec<&str> = highlights["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sent[4].as_str(), sent[2].as_str(), sent[0].as_str()]);
    assert!(highlights.get("next_token").is_none());
    assert!(
        assert_ok(alice.get("/_matrix/client/v3/notifications").await)["notifications"].as_array().unwrap().is_empty()
    );
    assert_err(&bob.get("/_matrix/client/v3/notifications?from=xyz").await, 400, "M_INVALID_PARAM");
    assert_err(&bob.get("/_matrix/client/v3/notifications?limit=x").await, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn pushers_are_set_listed_replaced_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "key1", "app_display_name": "App",
        "device_display_name": "Phone", "lang": "en", "profile_tag": "tag",
        "data": { "url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only", "custom": 1 },
    });
    assert_ok(alice.post("/_matrix/client/v3/pushers/set", pusher.clone()).await);
    let listed = assert_ok(alice.get("/_matrix/client/v3/pushers").await);
    let mut expected = pusher.clone();
    expected.as_object_mut().unwrap().remove("append");
    assert_eq!(listed, json!({ "pushers": [expected] }));

    let mut changed = pusher.clone();
    changed["lang"] = json!("fr");
    assert_ok(alice.post("/_matrix/client/v3/pushers/set", changed).await);
    let listed = assert_ok(alice.get("/_matrix/client/v3/pushers").await);
    assert_eq!(listed["pushers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["pushers"][0]["lang"], "fr");

    let set = |body: Value| alice.post("/_matrix/client/v3/pushers/set", body);
    let without = |key: &str| {
        let mut body = pusher.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    assert_err(&set(without("pushkey")).await, 400, "M_MISSING_PARAM");
    assert_err(&set(without("kind")).await, 400, "M_MISSING_PARAM");
    assert_err(&set(without("lang")).await, 400, "M_MISSING_PARAM");
    let mut no_url = pusher.clone();
    no_url["data"] = json!({});
    assert_err(&set(no_url).await, 400, "M_MISSING_PARAM");
    let mut bad_url = pusher.clone();
    bad_url["data"]["url"] = json!("https://push.example.org/elsewhere");
    assert_err(&set(bad_url).await, 400, "M_INVALID_PARAM");
    let mut bad_kind = pusher.clone();
    bad_kind["kind"] = json!("pigeon");
    assert_err(&set(bad_kind).await, 400, "M_INVALID_PARAM");

    let mut delete = json!({ "kind": null, "app_id": "org.example.app", "pushkey": "key1" });
    assert_ok(set(delete.clone()).await);
    assert_eq!(assert_ok(alice.get("/_matrix/client/v3/pushers").await), json!({ "pushers": [] }));
    delete["pushkey"] = json!("unknown");
    assert_ok(set(delete).await);
}
