//! Login, refresh tokens, logout, whoami.

use std::time::Duration;

use complement_tests::{TestServer, assert_err, assert_ok, errcode, user_id};
use reqwest::StatusCode;
use serde_json::json;

const LOGIN: &str = "/_matrix/client/v3/login";

#[tokio::test]
async fn login_flows_include_password() {
    let server = TestServer::start().await;
    let body = assert_ok(server.client().get(LOGIN).await);
    let flows = body["flows"].as_array().unwrap_or_else(|| panic!("no flows: {body}"));
    assert!(flows.iter().any(|f| f["type"] == "m.login.password"), "m.login.password missing: {body}");
}

#[tokio::test]
async fn login_with_localpart_full_id_and_legacy_user_field() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let client = server.client();

    let bodies = [
        json!({ "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "alice" },
                "password": "password-a" }),
        json!({ "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user_id("alice") },
                "password": "password-a" }),
        json!({ "type": "m.login.password", "user": "alice", "password": "password-a" }),
    ];
    let mut devices = vec![alice.device_id.clone()];
    for body in bodies {
        let resp = assert_ok(client.post(LOGIN, body.clone()).await);
        assert_eq!(resp["user_id"], json!(user_id("alice")), "for {body}: {resp}");
        let session = client.logged_in(&resp);
        assert!(!devices.contains(&session.device_id), "device id reused: {resp}");
        devices.push(session.device_id.clone());
        let who = assert_ok(session.whoami().await);
        assert_eq!(who["device_id"], json!(session.device_id));
    }
}

#[tokio::test]
async fn login_with_a_given_device_id_and_name() {
    let server = TestServer::start().await;
    server.register("alice", "password-a").await;
    let client = server.client();
    let body = assert_ok(
        client
            .post(
                LOGIN,
                json!({ "type": "m.login.password",
                        "identifier": { "type": "m.id.user", "user": "alice" },
                        "password": "password-a",
                        "device_id": "LAPTOP",
                        "initial_device_display_name": "Alice's laptop" }),
            )
            .await,
    );
    assert_eq!(body["device_id"], json!("LAPTOP"));
    let alice = client.logged_in(&body);
    let device = assert_ok(alice.get("/_matrix/client/v3/devices/LAPTOP").await);
    assert_eq!(device["display_name"], json!("Alice's laptop"));
}

#[tokio::test]
async fn logging_in_to_a_known_device_keeps_its_name() {
    // `initial_device_display_name` is ignored when `device_id` names a known device.
    let server = TestServer::start().await;
    server.register("alice", "password-a").await;
    let client = server.client();
    let mut alice = None;
    for name in ["Alice's laptop", "Another name"] {
        let body = json!({ "type": "m.login.password",
                           "identifier": { "type": "m.id.user", "user": "alice" },
                           "password": "password-a",
                           "device_id": "LAPTOP",
                           "initial_device_display_name": name });
        alice = Some(client.logged_in(&assert_ok(client.post(LOGIN, body).await)));
    }
    let device = assert_ok(alice.unwrap().get("/_matrix/client/v3/devices/LAPTOP").await);
    assert_eq!(device["display_name"], json!("Alice's laptop"));
}

#[tokio::test]
async fn wrong_password_is_forbidden() {
    let server = TestServer::start().await;
    server.register("alice", "password-a").await;
    let resp = server.client().login_raw("alice", "not-the-password").await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    assert!(resp.1.get("access_token").is_none());
}

#[tokio::test]
async fn unknown_user_is_forbidden() {
    let server = TestServer::start().await;
    let resp = server.client().login_raw("nobody", "whatever").await;
    assert_err(&resp, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn missing_fields_are_a_bad_request() {
    let server = TestServer::start().await;
    server.register("alice", "password-a").await;
    let client = server.client();
    for body in [
        json!({ "type": "m.login.password" }),
        json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" } }),
        json!({ "identifier": { "type": "m.id.user", "user": "alice" }, "password": "password-a" }),
    ] {
        let (status, resp) = client.post(LOGIN, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {body}: {resp}");
        assert!(errcode(&resp).starts_with("M_"), "for {body}: {resp}");
    }
}

#[tokio::test]
async fn unknown_login_type_is_m_unknown() {
    let server = TestServer::start().await;
    let resp = server.client().post(LOGIN, json!({ "type": "org.example.bogus", "password": "x" })).await;
    assert_err(&resp, 400, "M_UNKNOWN");
}

#[tokio::test]
async fn whoami_reports_user_and_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let who = assert_ok(alice.whoami().await);
    assert_eq!(who["user_id"], json!(user_id("alice")));
    assert_eq!(who["device_id"], json!(alice.device_id));
    assert!(who["is_guest"] == json!(false) || who.get("is_guest").is_none(), "is_guest must be false: {who}");
}

fn refresh_server() -> complement_tests::TestServerBuilder {
    TestServer::builder().env("KITH_AUTH__ACCESS_TOKEN_LIFETIME_MS", "1000")
}

#[tokio::test]
async fn refresh_tokens_rotate_and_expire() {
    let server = refresh_server().start().await;
    server.register("alice", "password-a").await;
    let client = server.client();
    let body = assert_ok(
        client
            .post(
                LOGIN,
                json!({ "type": "m.login.password",
                        "identifier": { "type": "m.id.user", "user": "alice" },
                        "password": "password-a",
                        "refresh_token": true }),
            )
            .await,
    );
    let refresh = body["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh_token: {body}")).to_owned();
    let expires = body["expires_in_ms"].as_u64().unwrap_or_else(|| panic!("no expires_in_ms: {body}"));
    assert!(expires > 0 && expires <= 1000, "expires_in_ms {expires} with a 1000 ms lifetime");
    let alice = client.logged_in(&body);
    assert_ok(alice.whoami().await);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = alice.whoami().await;
    assert_err(&expired, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], json!(true), "{}", expired.1);

    let new = assert_ok(client.post("/_matrix/client/v3/refresh", json!({ "refresh_token": refresh })).await);
    let new_access = new["access_token"].as_str().unwrap_or_else(|| panic!("no access_token: {new}"));
    let new_refresh = new["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh_token: {new}"));
    assert_ne!(new_access, alice.token.as_deref().unwrap_or_default());
    assert_ne!(new_refresh, refresh);
    assert!(new["expires_in_ms"].as_u64().is_some(), "{new}");

    // Using the new access token invalidates the old refresh token.
    let renewed = alice.with_token(Some(new_access));
    let who = assert_ok(renewed.whoami().await);
    assert_eq!(who["device_id"], json!(alice.device_id), "refresh must keep the device");

    let reused = client.post("/_matrix/client/v3/refresh", json!({ "refresh_token": refresh })).await;
    assert_err(&reused, 401, "M_UNKNOWN_TOKEN");

    // The new refresh token works.
    assert_ok(client.post("/_matrix/client/v3/refresh", json!({ "refresh_token": new_refresh })).await);
}

#[tokio::test]
async fn tokens_without_refresh_do_not_expire() {
    let server = refresh_server().start().await;
    let alice = server.register("alice", "password-a").await;
    let login = server.client().login("alice", "password-a").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ok(alice.whoami().await);
    assert_ok(login.whoami().await);
}

#[tokio::test]
async fn unknown_refresh_token_is_refused() {
    let server = TestServer::start().await;
    let resp = server.client().post("/_matrix/client/v3/refresh", json!({ "refresh_token": "not-a-token" })).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn logout_revokes_only_that_token() {
    let server = TestServer::start().await;
    let first = server.register("alice", "password-a").await;
    let second = server.client().login("alice", "password-a").await;
    assert_ok(second.post("/_matrix/client/v3/logout", json!({})).await);
    assert_err(&second.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_ok(first.whoami().await);
    // The logged-out device is gone.
    let devices = assert_ok(first.get("/_matrix/client/v3/devices").await);
    let ids: Vec<&str> =
        devices["devices"].as_array().expect("devices array").iter().filter_map(|d| d["device_id"].as_str()).collect();
    assert!(!ids.contains(&second.device_id.as_str()), "{devices}");
}

#[tokio::test]
async fn logout_all_revokes_every_token() {
    let server = TestServer::start().await;
    let first = server.register("alice", "password-a").await;
    let second = server.client().login("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    assert_ok(first.post("/_matrix/client/v3/logout/all", json!({})).await);
    assert_err(&first.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_err(&second.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_ok(bob.whoami().await);
    // Logging in again still works.
    server.client().login("alice", "password-a").await;
}
