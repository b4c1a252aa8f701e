//! Account management: password change, deactivation, third-party identifiers.

use complement_tests::{TestServer, assert_err, assert_ok, enc, errcode};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn change_password_logs_out_other_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old-password").await;
    let other = server.client().login("alice", "old-password").await;

    let resp = alice
        .with_password_uia(
            Method::POST,
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-password" }),
            "old-password",
        )
        .await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);

    assert_err(&server.client().login_raw("alice", "old-password").await, 403, "M_FORBIDDEN");
    server.client().login("alice", "new-password").await;
    assert_ok(alice.whoami().await);
    assert_err(&other.whoami().await, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn change_password_can_keep_other_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old-password").await;
    let other = server.client().login("alice", "old-password").await;
    let resp = alice
        .with_password_uia(
            Method::POST,
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-password", "logout_devices": false }),
            "old-password",
        )
        .await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    assert_ok(other.whoami().await);
    server.client().login("alice", "new-password").await;
}

#[tokio::test]
async fn change_password_with_the_wrong_password_fails() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old-password").await;
    let (status, body) = alice
        .with_password_uia(
            Method::POST,
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-password" }),
            "wrong-password",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(errcode(&body), "M_FORBIDDEN", "{body}");
    server.client().login("alice", "old-password").await;
    assert_err(&server.client().login_raw("alice", "new-password").await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn deactivate_account() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let other = server.client().login("alice", "password-a").await;

    let resp =
        alice.with_password_uia(Method::POST, "/_matrix/client/v3/account/deactivate", json!({}), "password-a").await;
    let body = assert_ok(resp);
    assert!(
        body["id_server_unbind_result"] == json!("no-support") || body["id_server_unbind_result"] == json!("success"),
        "id_server_unbind_result is required: {body}"
    );

    let (status, login) = server.client().login_raw("alice", "password-a").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{login}");
    assert!(["M_USER_DEACTIVATED", "M_FORBIDDEN"].contains(&errcode(&login)), "{login}");
    assert_err(&alice.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_err(&other.whoami().await, 401, "M_UNKNOWN_TOKEN");

    let again = server.client().register_attempt(json!({ "username": "alice", "password": "password-b" }), None).await;
    assert_err(&again, 400, "M_USER_IN_USE");
    let available =
        server.client().get(&format!("/_matrix/client/v3/register/available?username={}", enc("alice"))).await;
    assert_err(&available, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn deactivate_needs_uia() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let (status, body) = alice.post("/_matrix/client/v3/account/deactivate", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["session"].is_string(), "{body}");
    assert_ok(alice.whoami().await);
}

#[tokio::test]
async fn threepids_are_empty() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let body = assert_ok(alice.get("/_matrix/client/v3/account/3pid").await);
    assert_eq!(body, json!({ "threepids": [] }));
}

#[tokio::test]
async fn adding_an_email_is_denied() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let resp = alice
        .post(
            "/_matrix/client/v3/account/3pid/email/requestToken",
            json!({ "client_secret": "secret123", "email": "alice@example.org", "send_attempt": 1 }),
        )
        .await;
    assert_err(&resp, 403, "M_THREEPID_DENIED");
}
