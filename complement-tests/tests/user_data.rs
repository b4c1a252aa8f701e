//! Per-user data: profile, account data, filters.

use complement_tests::{TestServer, assert_err, assert_ok, enc, user_id};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn set_and_get_profile_fields() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let me = enc(&alice.user_id);

    let resp =
        alice.put(&format!("/_matrix/client/v3/profile/{me}/displayname"), json!({ "displayname": "Alice A." })).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    let resp = alice
        .put(
            &format!("/_matrix/client/v3/profile/{me}/avatar_url"),
            json!({ "avatar_url": "mxc://localhost/avatar123" }),
        )
        .await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);

    let name = assert_ok(alice.get(&format!("/_matrix/client/v3/profile/{me}/displayname")).await);
    assert_eq!(name, json!({ "displayname": "Alice A." }));
    let avatar = assert_ok(alice.get(&format!("/_matrix/client/v3/profile/{me}/avatar_url")).await);
    assert_eq!(avatar, json!({ "avatar_url": "mxc://localhost/avatar123" }));
    let profile = assert_ok(alice.get(&format!("/_matrix/client/v3/profile/{me}")).await);
    assert_eq!(profile["displayname"], json!("Alice A."));
    assert_eq!(profile["avatar_url"], json!("mxc://localhost/avatar123"));

    // Another user sees the same profile.
    let bob = server.register("bob", "password-b").await;
    let seen = assert_ok(bob.get(&format!("/_matrix/client/v3/profile/{me}")).await);
    assert_eq!(seen["displayname"], json!("Alice A."));
}

#[tokio::test]
async fn setting_another_users_profile_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let them = enc(&alice.user_id);
    let resp =
        bob.put(&format!("/_matrix/client/v3/profile/{them}/displayname"), json!({ "displayname": "Hacked" })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    let resp =
        bob.put(&format!("/_matrix/client/v3/profile/{them}/avatar_url"), json!({ "avatar_url": "mxc://x/y" })).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    let name = assert_ok(alice.get(&format!("/_matrix/client/v3/profile/{them}")).await);
    assert_ne!(name["displayname"], json!("Hacked"));
}

#[tokio::test]
async fn unknown_users_profile_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let nobody = enc(&user_id("nobody"));
    assert_err(&alice.get(&format!("/_matrix/client/v3/profile/{nobody}")).await, 404, "M_NOT_FOUND");
    assert_err(&alice.get(&format!("/_matrix/client/v3/profile/{nobody}/displayname")).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn account_data_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.test", enc(&alice.user_id));
    let content = json!({ "answer": 42, "nested": { "list": [1, 2, 3] } });
    let resp = alice.put(&path, content.clone()).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    assert_eq!(assert_ok(alice.get(&path).await), content);

    // Overwriting replaces the content.
    let resp = alice.put(&path, json!({ "answer": 43 })).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "answer": 43 }));
}

#[tokio::test]
async fn unknown_account_data_type_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.unset", enc(&alice.user_id));
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn another_users_account_data_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.test", enc(&alice.user_id));
    let resp = alice.put(&path, json!({ "secret": true })).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    assert_err(&bob.get(&path).await, 403, "M_FORBIDDEN");
    assert_err(&bob.put(&path, json!({ "secret": false })).await, 403, "M_FORBIDDEN");
    assert_eq!(assert_ok(alice.get(&path).await), json!({ "secret": true }));
}

#[tokio::test]
async fn filters_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let base = format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id));
    let filter = json!({
        "room": { "timeline": { "limit": 10, "types": ["m.room.message"] } },
        "presence": { "not_types": ["*"] },
        "event_fields": ["type", "content"]
    });
    let body = assert_ok(alice.post(&base, filter).await);
    let id = body["filter_id"].as_str().unwrap_or_else(|| panic!("no filter_id: {body}"));
    assert!(!id.starts_with('{'), "filter ids must not start with {{: {id}");

    let got = assert_ok(alice.get(&format!("{base}/{}", enc(id))).await);
    assert_eq!(got["room"]["timeline"]["limit"], json!(10), "{got}");
    assert_eq!(got["room"]["timeline"]["types"], json!(["m.room.message"]), "{got}");
    assert_eq!(got["presence"]["not_types"], json!(["*"]), "{got}");
    assert_eq!(got["event_fields"], json!(["type", "content"]), "{got}");
}

#[tokio::test]
async fn invalid_filter_is_bad_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let base = format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id));
    let resp = alice.post(&base, json!({ "room": { "timeline": { "limit": "x" } } })).await;
    assert_err(&resp, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn another_users_filters_are_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let alice_base = format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id));
    let body = assert_ok(alice.post(&alice_base, json!({ "room": { "timeline": { "limit": 5 } } })).await);
    let id = body["filter_id"].as_str().expect("filter_id");

    assert_err(&bob.get(&format!("{alice_base}/{}", enc(id))).await, 403, "M_FORBIDDEN");
    assert_err(&bob.post(&alice_base, json!({})).await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn unknown_filter_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/user/{}/filter/999999", enc(&alice.user_id));
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
}
