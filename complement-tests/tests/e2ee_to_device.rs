//! Send-to-device messaging: `PUT /sendToDevice/{type}/{txnId}` to one device
//! or to every device (`*`), idempotent per transaction id, delivered through
//! `/sync` `to_device.events` in order of arrival until the device acknowledges
//! them by syncing with the following `next_batch`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use complement_tests::sync::{SYNC, next_batch, since, sync};
use complement_tests::{Client, Resp, TestServer, assert_err, assert_ok, enc};
use reqwest::Method;
use serde_json::{Value, json};

const V3: &str = "/_matrix/client/v3";
const PASSWORD: &str = "to-device password";
const TYPE: &str = "org.example.ping";

/// A transaction id unique within the process.
fn txn() -> String {
    complement_tests::client::new_txn_id()
}

fn send_path(event_type: &str, txn_id: &str) -> String {
    format!("{V3}/sendToDevice/{}/{}", enc(event_type), enc(txn_id))
}

async fn send_raw(client: &Client, event_type: &str, txn_id: &str, body: Value) -> Resp {
    client.put(&send_path(event_type, txn_id), body).await
}

/// Sends `content` of type [`TYPE`] to `device` (or `*`) of `to`; asserts 200 `{}`.
async fn send(from: &Client, to: &Client, device: &str, content: Value) {
    let body = json!({ "messages": { to.user_id.as_str(): { device: content } } });
    let resp = assert_ok(send_raw(from, TYPE, &txn(), body).await);
    assert_eq!(resp, json!({}), "sendToDevice returns an empty object");
}

/// `to_device.events` of a sync response (absent = none), each checked for shape.
#[track_caller]
fn to_device(body: &Value) -> Vec<Value> {
    let events = body["to_device"]["events"].as_array().cloned().unwrap_or_default();
    for event in &events {
        assert!(event["sender"].is_string() && event["type"].is_string(), "malformed to-device event: {event}");
        assert!(event["content"].is_object(), "to-device event without content: {event}");
    }
    events
}

/// The `n` field of the [`TYPE`] events in `events`.
fn numbers(events: &[Value]) -> Vec<u64> {
    events.iter().filter(|e| e["type"] == json!(TYPE)).map(|e| e["content"]["n"].as_u64().expect("n")).collect()
}

/// Syncs (acknowledging as it goes) from `from` until nothing more arrives
/// (one sync of 0 ms without to-device events after at least `min` events, or
/// 15 s). Returns every to-device event in order and the last token.
async fn drain(client: &Client, from: Option<&str>, min: usize) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut events = Vec::new();
    let mut token = from.map(str::to_owned);
    loop {
        let query = match &token {
            Some(token) => since(token, if events.len() < min { 1000 } else { 0 }),
            None => "timeout=0".to_owned(),
        };
        let body = sync(client, &query).await;
        let got = to_device(&body);
        let empty = got.is_empty();
        events.extend(got);
        let next = next_batch(&body);
        if empty && events.len() >= min {
            return (events, next);
        }
        token = Some(next);
        assert!(Instant::now() < deadline, "fewer than {min} to-device events within 15 s: {events:?}");
    }
}

/// A fresh sync token of `client` with no pending to-device messages.
async fn fresh_token(client: &Client) -> String {
    drain(client, None, 0).await.1
}

#[tokio::test]
async fn a_message_reaches_only_the_addressed_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob1 = server.register("bob", PASSWORD).await;
    let bob2 = server.client().login("bob", PASSWORD).await;
    let from1 = fresh_token(&bob1).await;
    let from2 = fresh_token(&bob2).await;

    let content = json!({ "n": 1, "nested": { "ünïcødé": ["x", 2, null] } });
    send(&alice, &bob1, &bob1.device_id, content.clone()).await;
    let (events, _) = drain(&bob1, Some(&from1), 1).await;
    assert_eq!(events, vec![json!({ "sender": alice.user_id, "type": TYPE, "content": content })]);
    let (events, _) = drain(&bob2, Some(&from2), 0).await;
    assert!(events.is_empty(), "the other device got the message: {events:?}");
}

#[tokio::test]
async fn a_message_to_star_reaches_every_device_of_the_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob1 = server.register("bob", PASSWORD).await;
    let bob2 = server.client().login("bob", PASSWORD).await;
    let from1 = fresh_token(&bob1).await;
    let from2 = fresh_token(&bob2).await;
    let from_alice = fresh_token(&alice).await;

    send(&alice, &bob1, "*", json!({ "n": 7 })).await;
    for (device, from) in [(&bob1, &from1), (&bob2, &from2)] {
        let (events, _) = drain(device, Some(from), 1).await;
        assert_eq!(numbers(&events), vec![7], "{}: {events:?}", device.device_id);
        assert_eq!(events[0]["sender"], json!(alice.user_id));
    }
    let (events, _) = drain(&alice, Some(&from_alice), 0).await;
    assert!(events.is_empty(), "the sender got her own message to bob: {events:?}");
}

#[tokio::test]
async fn one_request_can_address_several_users_and_the_senders_other_devices() {
    let server = TestServer::start().await;
    let alice1 = server.register("alice", PASSWORD).await;
    let alice2 = server.client().login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from_alice2 = fresh_token(&alice2).await;
    let from_bob = fresh_token(&bob).await;

    let body = json!({ "messages": {
        alice1.user_id.as_str(): { alice2.device_id.as_str(): { "n": 1 } },
        bob.user_id.as_str(): { bob.device_id.as_str(): { "n": 2 } },
        "@nobody:localhost": { "*": { "n": 3 } },
    } });
    assert_ok(send_raw(&alice1, TYPE, &txn(), body).await);
    assert_eq!(numbers(&drain(&alice2, Some(&from_alice2), 1).await.0), vec![1]);
    assert_eq!(numbers(&drain(&bob, Some(&from_bob), 1).await.0), vec![2]);
}

#[tokio::test]
async fn the_same_transaction_is_delivered_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let alice2 = server.client().login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;

    let txn_id = txn();
    let body = json!({ "messages": { bob.user_id.as_str(): { bob.device_id.as_str(): { "n": 1 } } } });
    assert_eq!(assert_ok(send_raw(&alice, TYPE, &txn_id, body.clone()).await), json!({}));
    assert_eq!(assert_ok(send_raw(&alice, TYPE, &txn_id, body.clone()).await), json!({}), "a retry must succeed");
    // The same transaction id from another device is another transaction.
    let other = json!({ "messages": { bob.user_id.as_str(): { bob.device_id.as_str(): { "n": 2 } } } });
    assert_ok(send_raw(&alice2, TYPE, &txn_id, other).await);

    let (events, _) = drain(&bob, Some(&from), 2).await;
    assert_eq!(numbers(&events), vec![1, 2], "retried transaction delivered twice or lost: {events:?}");
}

#[tokio::test]
async fn messages_arrive_in_order_and_are_deleted_after_acknowledgement() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;
    for n in 0..5 {
        send(&alice, &bob, &bob.device_id, json!({ "n": n })).await;
    }

    let first = sync(&bob, &since(&from, 0)).await;
    assert_eq!(numbers(&to_device(&first)), vec![0, 1, 2, 3, 4], "{first}");
    // The response was lost: retrying with the old token returns the messages again.
    let retry = sync(&bob, &since(&from, 0)).await;
    assert_eq!(numbers(&to_device(&retry)), vec![0, 1, 2, 3, 4], "messages lost on retry: {retry}");
    // Syncing with the new token acknowledges them: they are gone.
    let acked = sync(&bob, &since(&next_batch(&retry), 0)).await;
    assert!(to_device(&acked).is_empty(), "acknowledged messages delivered again: {acked}");
    let again = sync(&bob, &since(&next_batch(&acked), 0)).await;
    assert!(to_device(&again).is_empty(), "{again}");
    // ... even for a client going back to the very first token.
    let old = sync(&bob, &since(&from, 0)).await;
    assert!(to_device(&old).is_empty(), "acknowledged messages came back with an old token: {old}");
}

#[tokio::test]
async fn initial_sync_delivers_pending_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    send(&alice, &bob, &bob.device_id, json!({ "n": 42 })).await;
    let body = sync(&bob, "timeout=0").await;
    assert_eq!(numbers(&to_device(&body)), vec![42], "{body}");
    let body = sync(&bob, &since(&next_batch(&body), 0)).await;
    assert!(to_device(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_to_device_message() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;
    let poll = {
        let bob = bob.clone();
        let query = since(&from, 20_000);
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = bob.get(&format!("{SYNC}?{query}")).await;
            (resp, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&alice, &bob, &bob.device_id, json!({ "n": 9 })).await;
    let ((status, body), elapsed) = poll.await.expect("poll task");
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(numbers(&to_device(&body)), vec![9], "{body}");
    assert!(elapsed < Duration::from_secs(10), "the long-poll was not woken ({elapsed:?})");
}

#[tokio::test]
async fn a_large_queue_is_delivered_in_batches_without_loss() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;
    // A request carries at most one message per device: 150 requests.
    for n in 0..150 {
        send(&alice, &bob, &bob.device_id, json!({ "n": n })).await;
    }
    let mut token = from;
    let mut got = Vec::new();
    let mut responses = 0;
    while got.len() < 150 {
        let body = sync(&bob, &since(&token, 0)).await;
        let events = to_device(&body);
        assert!(!events.is_empty(), "queue stalled after {} of 150 messages: {body}", got.len());
        assert!(
            events.len() <= 100,
            "{} to-device events in one response (spec: limit, 100 recommended)",
            events.len()
        );
        got.extend(numbers(&events));
        token = next_batch(&body);
        responses += 1;
    }
    assert!(responses >= 2, "150 messages in a single response");
    assert_eq!(got, (0..150).collect::<Vec<u64>>(), "lost, duplicated or reordered");
    let body = sync(&bob, &since(&token, 0)).await;
    assert!(to_device(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn messages_to_a_deleted_device_are_not_delivered_elsewhere() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob1 = server.register("bob", PASSWORD).await;
    let bob2 = server.client().login("bob", PASSWORD).await;
    let from1 = fresh_token(&bob1).await;
    send(&alice, &bob2, &bob2.device_id, json!({ "n": 1 })).await;
    let path = format!("{V3}/devices/{}", enc(&bob2.device_id));
    assert_ok(bob1.with_password_uia(Method::DELETE, &path, json!({}), PASSWORD).await);
    // A message to the deleted device (or to a device that never existed) is accepted and dropped.
    send(&alice, &bob2, &bob2.device_id, json!({ "n": 2 })).await;
    send(&alice, &bob2, "NOSUCHDEVICE", json!({ "n": 3 })).await;
    send(&alice, &bob1, "*", json!({ "n": 4 })).await;
    let (events, _) = drain(&bob1, Some(&from1), 1).await;
    assert_eq!(numbers(&events), vec![4], "{events:?}");
}

#[tokio::test]
async fn bad_send_to_device_requests_are_rejected() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;
    assert_err(&send_raw(&alice, TYPE, &txn(), json!({})).await, 400, "M_BAD_JSON");
    assert_err(&send_raw(&alice, TYPE, &txn(), json!({ "messages": "x" })).await, 400, "M_BAD_JSON");
    let not_object = json!({ "messages": { bob.user_id.as_str(): { bob.device_id.as_str(): "content" } } });
    assert_err(&send_raw(&alice, TYPE, &txn(), not_object).await, 400, "M_BAD_JSON");
    let resp = alice.send_raw(Method::PUT, &send_path(TYPE, &txn()), "application/json", "{not json").await;
    assert_err(&resp, 400, "M_NOT_JSON");
    let anonymous = alice.with_token(None);
    let body = json!({ "messages": { bob.user_id.as_str(): { "*": {} } } });
    assert_err(&send_raw(&anonymous, TYPE, &txn(), body).await, 401, "M_MISSING_TOKEN");
    let (events, _) = drain(&bob, Some(&from), 0).await;
    assert!(events.is_empty(), "a rejected request delivered something: {events:?}");
}

#[tokio::test]
async fn event_types_and_senders_are_kept_apart() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let from = fresh_token(&bob).await;
    let to_bob = |content: Value| json!({ "messages": { bob.user_id.as_str(): { bob.device_id.as_str(): content } } });
    assert_ok(send_raw(&alice, "m.room_key_request", &txn(), to_bob(json!({ "action": "request" }))).await);
    assert_ok(send_raw(&carol, "m.dummy", &txn(), to_bob(json!({}))).await);
    let (events, _) = drain(&bob, Some(&from), 2).await;
    let got: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| (e["sender"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().to_owned()))
        .collect();
    let want: BTreeSet<(String, String)> =
        [(alice.user_id.clone(), "m.room_key_request".to_owned()), (carol.user_id.clone(), "m.dummy".to_owned())]
            .into();
    assert_eq!(got, want, "{events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
}
