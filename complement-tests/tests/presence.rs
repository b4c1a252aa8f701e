//! Presence: `GET/PUT /presence/{userId}/status`, `m.presence` in `/sync` for
//! room-mates only, `set_presence`, the idle and offline timers, and the
//! config switch that turns presence off.

use std::time::{Duration, Instant};

use complement_tests::{Client, TestServer, TestServerBuilder, assert_err, assert_ok, enc};
use serde_json::{Value, json};

const PASSWORD: &str = "presence-test-password";

/// The harness turns presence off by default (it wakes long-polls); here it is the subject.
fn with_presence() -> TestServerBuilder {
    TestServer::builder().env("KITH_PRESENCE__ENABLED", "true")
}

fn status_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(user_id))
}

async fn sync(client: &Client, query: &str) -> Value {
    let body = assert_ok(client.get(&format!("/_matrix/client/v3/sync?{query}")).await);
    assert!(body["next_batch"].is_string(), "{body}");
    body
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The content of `sender`'s latest `m.presence` event in a sync response.
fn presence_of(body: &Value, sender: &str) -> Option<Value> {
    body["presence"]["events"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["sender"] == json!(sender) && e["type"] == "m.presence")
        .map(|e| e["content"].clone())
}

/// Alice and Bob share a room; Carol shares none with them.
async fn three_users(server: &TestServer) -> (Client, Client, Client) {
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    (alice, bob, carol)
}

#[tokio::test]
async fn status_round_trips_and_bad_input_is_refused() {
    let server = with_presence().start().await;
    let (alice, bob, carol) = three_users(&server).await;
    let path = status_path(&alice.user_id);

    assert_ok(alice.put(&path, json!({ "presence": "unavailable", "status_msg": "lunch" })).await);
    let status = assert_ok(alice.get(&path).await);
    assert_eq!(status["presence"], "unavailable", "{status}");
    assert_eq!(status["status_msg"], "lunch", "{status}");
    assert_eq!(status["currently_active"], false, "{status}");

    // Without status_msg the message stays; null clears it.
    assert_ok(alice.put(&path, json!({ "presence": "online" })).await);
    let status = assert_ok(bob.get(&path).await);
    assert_eq!((status["presence"].as_str(), status["status_msg"].as_str()), (Some("online"), Some("lunch")));
    assert_eq!(status["currently_active"], true, "{status}");
    assert!(status["last_active_ago"].as_i64().is_some_and(|ago| ago >= 0), "{status}");
    assert_ok(alice.put(&path, json!({ "presence": "online", "status_msg": null })).await);
    assert!(assert_ok(alice.get(&path).await).get("status_msg").is_none());

    // Bad input.
    assert_err(&alice.put(&path, json!({ "presence": "away" })).await, 400, "M_INVALID_PARAM");
    assert_err(&alice.put(&path, json!({ "status_msg": "no state" })).await, 400, "M_BAD_JSON");
    assert_err(&bob.put(&path, json!({ "presence": "offline" })).await, 403, "M_FORBIDDEN");
    // Only room-mates see presence; an unknown user has none.
    assert_err(&carol.get(&path).await, 403, "M_FORBIDDEN");
    assert_err(&alice.get(&status_path("@nobody:localhost")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.with_token(None).get(&path).await, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn room_mates_long_polls_wake_with_presence_and_strangers_see_nothing() {
    let server = with_presence().start().await;
    let (alice, bob, carol) = three_users(&server).await;
    let bob_token = next_batch(&sync(&bob, "timeout=0").await);
    let carol_token = next_batch(&sync(&carol, "timeout=0").await);

    let started = Instant::now();
    let poll = {
        let bob = bob.clone();
        let token = bob_token.clone();
        tokio::spawn(async move { sync(&bob, &format!("since={}&timeout=10000", enc(&token))).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ok(
        alice.put(&status_path(&alice.user_id), json!({ "presence": "unavailable", "status_msg": "away" })).await,
    );
    let body = poll.await.expect("long-poll task");
    assert!(started.elapsed() < Duration::from_secs(5), "long-poll not woken by presence: {body}");
    let content = presence_of(&body, &alice.user_id).unwrap_or_else(|| panic!("no presence for alice: {body}"));
    assert_eq!((content["presence"].as_str(), content["status_msg"].as_str()), (Some("unavailable"), Some("away")));

    // Carol shares no room with Alice: nothing about her.
    let body = sync(&carol, &format!("since={}&timeout=0", enc(&carol_token))).await;
    assert!(presence_of(&body, &alice.user_id).is_none(), "presence leaked to a stranger: {body}");

    // A filter can leave presence out.
    let filter = enc(r#"{"presence":{"not_types":["m.presence"]}}"#);
    let body = sync(&bob, &format!("since={}&timeout=0&filter={filter}", enc(&bob_token))).await;
    assert!(body.get("presence").is_none(), "filtered presence still sent: {body}");
}

#[tokio::test]
async fn syncing_marks_a_user_online_unless_set_presence_says_otherwise() {
    let server = with_presence().start().await;
    let (alice, bob, _carol) = three_users(&server).await;
    let path = status_path(&alice.user_id);

    sync(&alice, "timeout=0&set_presence=offline").await;
    assert_eq!(assert_ok(bob.get(&path).await)["presence"], "offline");

    let body = sync(&alice, "timeout=0").await;
    assert_eq!(assert_ok(bob.get(&path).await)["presence"], "online");
    // The user's own presence is in their sync.
    assert_eq!(presence_of(&body, &alice.user_id).expect("own presence")["presence"], "online", "{body}");

    sync(&alice, "timeout=0&set_presence=unavailable").await;
    assert_eq!(assert_ok(bob.get(&path).await)["presence"], "unavailable");
    assert_err(&alice.get("/_matrix/client/v3/sync?set_presence=busy").await, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn idle_users_become_unavailable_and_absent_users_offline() {
    let server = with_presence()
        .env("KITH_PRESENCE__IDLE_TIMEOUT_SECS", "1")
        .env("KITH_PRESENCE__OFFLINE_TIMEOUT_SECS", "2")
        .start()
        .await;
    let (alice, bob, _carol) = three_users(&server).await;
    let path = status_path(&alice.user_id);
    assert_ok(alice.put(&path, json!({ "presence": "online" })).await);

    // The timers run every few seconds: wait for each transition, bounded.
    let wait_for = |state: &'static str| {
        let (bob, path) = (bob.clone(), path.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let status = assert_ok(bob.get(&path).await);
                if status["presence"] == state {
                    return status;
                }
                assert!(Instant::now() < deadline, "never became {state}: {status}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    // While a client of hers holds a long-poll, idling makes Alice unavailable, not offline...
    // (A presence change wakes her own long-poll too, so the client polls again, as clients do.)
    let poll = {
        let alice = alice.clone();
        tokio::spawn(async move {
            let mut token = next_batch(&sync(&alice, "timeout=0&set_presence=offline").await);
            loop {
                let query = format!("since={}&timeout=1000&set_presence=offline", enc(&token));
                token = next_batch(&sync(&alice, &query).await);
            }
        })
    };
    let idle = wait_for("unavailable").await;
    assert_eq!(idle["currently_active"], false, "{idle}");
    // ...sending a message is activity: she is back online...
    let room = alice.joined_rooms().await.remove(0);
    alice.send_text(&room, "back").await;
    assert_eq!(assert_ok(bob.get(&path).await)["presence"], "online");
    // ...and once no client syncs any more, she goes offline.
    poll.abort();
    let _ = poll.await;
    wait_for("offline").await;
}

#[tokio::test]
async fn presence_switched_off_costs_nothing_and_shows_nothing() {
    let server = TestServer::builder().env("KITH_PRESENCE__ENABLED", "false").start().await;
    let (alice, bob, _carol) = three_users(&server).await;
    let token = next_batch(&sync(&bob, "timeout=0").await);
    assert_ok(alice.put(&status_path(&alice.user_id), json!({ "presence": "online", "status_msg": "hi" })).await);
    let body = sync(&alice, "timeout=0").await;
    assert!(body.get("presence").is_none(), "{body}");
    // Nothing to wake Bob: his long-poll runs to its timeout.
    let started = Instant::now();
    let body = sync(&bob, &format!("since={}&timeout=500", enc(&token))).await;
    assert!(started.elapsed() >= Duration::from_millis(450), "woken with presence off: {body}");
    assert!(body.get("presence").is_none(), "{body}");
    assert_err(&bob.get(&status_path(&alice.user_id)).await, 404, "M_NOT_FOUND");
}
