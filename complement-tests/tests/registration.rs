//! Registration: UIA flows, registration modes and tokens, usernames, guests,
//! shared-secret admin registration.

use std::time::Duration;

use complement_tests::{
    Client, SHARED_SECRET, TestServer, assert_err, assert_ok, enc, errcode, register_with_shared_secret,
    shared_secret_mac, user_id,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REGISTER: &str = "/_matrix/client/v3/register";

fn flows(body: &Value) -> Vec<Vec<String>> {
    body["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows in {body}"))
        .iter()
        .map(|f| {
            f["stages"]
                .as_array()
                .unwrap_or_else(|| panic!("flow without stages: {body}"))
                .iter()
                .map(|s| s.as_str().expect("stage is a string").to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn open_registration_uses_the_dummy_flow() {
    let server = TestServer::start().await;
    let client = server.client();
    let body = json!({ "username": "alice", "password": "password-a" });
    let (status, uia) = client.post(REGISTER, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{uia}");
    assert!(uia["session"].is_string(), "no session: {uia}");
    assert!(flows(&uia).contains(&vec!["m.login.dummy".to_owned()]), "no dummy flow: {uia}");

    let mut body = body;
    body["auth"] = json!({ "type": "m.login.dummy", "session": uia["session"] });
    let done = assert_ok(client.post(REGISTER, body).await);
    assert_eq!(done["user_id"], json!(user_id("alice")), "{done}");
    assert!(done["access_token"].is_string(), "{done}");
    assert!(done["device_id"].is_string(), "{done}");

    let alice = client.logged_in(&done);
    let who = assert_ok(alice.whoami().await);
    assert_eq!(who["user_id"], json!(user_id("alice")));
    assert_eq!(who["device_id"], done["device_id"]);
}

#[tokio::test]
async fn register_available() {
    let server = TestServer::start().await;
    let client = server.client();
    let path = |u: &str| format!("/_matrix/client/v3/register/available?username={}", enc(u));

    let body = assert_ok(client.get(&path("carol")).await);
    assert_eq!(body["available"], json!(true));

    server.register("carol", "password-c").await;
    assert_err(&client.get(&path("carol")).await, 400, "M_USER_IN_USE");
    assert_err(&client.get(&path("Not Valid!")).await, 400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn invalid_usernames_are_rejected() {
    let server = TestServer::start().await;
    let client = server.client();
    let too_long = "a".repeat(300);
    for name in ["UpperCase", "has space", "emoji🙂", "colon:name", too_long.as_str()] {
        let resp = client.register_attempt(json!({ "username": name, "password": "password-x" }), None).await;
        assert_err(&resp, 400, "M_INVALID_USERNAME");
    }
    // A valid name with every allowed punctuation character still works.
    let ok = client.register_attempt(json!({ "username": "a.b_c=d-e/f+g", "password": "password-x" }), None).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
}

#[tokio::test]
async fn taken_username_is_rejected() {
    let server = TestServer::start().await;
    server.register("dave", "password-d").await;
    let resp = server.client().register_attempt(json!({ "username": "dave", "password": "other" }), None).await;
    assert_err(&resp, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn inhibit_login_returns_no_access_token() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = client
        .register_attempt(json!({ "username": "erin", "password": "password-e", "inhibit_login": true }), None)
        .await;
    let body = assert_ok(resp);
    assert_eq!(body["user_id"], json!(user_id("erin")));
    assert!(body.get("access_token").is_none(), "access_token despite inhibit_login: {body}");
    assert!(body.get("device_id").is_none(), "device_id despite inhibit_login: {body}");
    // The account exists and can log in.
    client.login("erin", "password-e").await;
}

#[tokio::test]
async fn client_device_id_and_display_name_are_used() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = client
        .register_attempt(
            json!({
                "username": "frank",
                "password": "password-f",
                "device_id": "FRANKPHONE",
                "initial_device_display_name": "Frank's phone",
            }),
            None,
        )
        .await;
    let body = assert_ok(resp);
    assert_eq!(body["device_id"], json!("FRANKPHONE"));
    let frank = client.logged_in(&body);
    let device = assert_ok(frank.get("/_matrix/client/v3/devices/FRANKPHONE").await);
    assert_eq!(device["device_id"], json!("FRANKPHONE"));
    assert_eq!(device["display_name"], json!("Frank's phone"));
}

#[tokio::test]
async fn guest_registration_is_forbidden_by_default() {
    let server = TestServer::start().await;
    let resp = server.client().post(&format!("{REGISTER}?kind=guest"), json!({})).await;
    assert_err(&resp, 403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn guest_registration_when_allowed() {
    let server = TestServer::builder().env("KITH_REGISTRATION__ALLOW_GUESTS", "true").start().await;
    let client = server.client();
    let body = assert_ok(client.post(&format!("{REGISTER}?kind=guest"), json!({})).await);
    let guest = client.logged_in(&body);
    let who = assert_ok(guest.whoami().await);
    assert_eq!(who["user_id"], body["user_id"]);
    assert_eq!(who["is_guest"], json!(true), "{who}");
}

#[tokio::test]
async fn closed_registration_is_forbidden() {
    let server = TestServer::builder().env("KITH_REGISTRATION__MODE", "closed").start().await;
    let resp = server.client().register_attempt(json!({ "username": "gina", "password": "password-g" }), None).await;
    assert_err(&resp, 403, "M_FORBIDDEN");
}

fn token_server() -> complement_tests::TestServerBuilder {
    TestServer::builder().env("KITH_REGISTRATION__MODE", "token").env("KITH_REGISTRATION__TOKEN", "static-token-123")
}

#[tokio::test]
async fn token_mode_offers_the_registration_token_flow() {
    let server = token_server().start().await;
    let (status, uia) = server.client().post(REGISTER, json!({ "username": "hank", "password": "password-h" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{uia}");
    let flows = flows(&uia);
    assert!(
        flows.iter().all(|f| f.iter().any(|s| s == "m.login.registration_token")),
        "every flow must need a registration token: {uia}"
    );
    assert!(!flows.contains(&vec!["m.login.dummy".to_owned()]), "dummy-only flow offered in token mode: {uia}");
}

#[tokio::test]
async fn registration_token_validity() {
    let server = token_server().start().await;
    let client = server.client();
    let path = |t: &str| format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={}", enc(t));
    let body = assert_ok(client.get(&path("static-token-123")).await);
    assert_eq!(body, json!({ "valid": true }));
    let body = assert_ok(client.get(&path("wrong-token")).await);
    assert_eq!(body, json!({ "valid": false }));
}

#[tokio::test]
async fn static_registration_token_registers_repeatedly() {
    let server = token_server().start().await;
    let client = server.client();
    for name in ["ivan", "judy"] {
        let resp = client
            .register_attempt(json!({ "username": name, "password": "password-i" }), Some("static-token-123"))
            .await;
        let body = assert_ok(resp);
        assert_eq!(body["user_id"], json!(user_id(name)));
    }
}

#[tokio::test]
async fn wrong_registration_token_is_refused() {
    let server = token_server().start().await;
    let (status, body) =
        server.client().register_attempt(json!({ "username": "kate", "password": "password-k" }), Some("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert_err(&server.client().login_raw("kate", "password-k").await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn bootstrap_token_is_printed_and_works_once() {
    let server = TestServer::builder().env("KITH_REGISTRATION__MODE", "token").start().await;
    let token = server
        .wait_for_log(r"registration token: (\S+)", Duration::from_secs(5))
        .await
        .and_then(|c| c.get(1).cloned().flatten())
        .unwrap_or_else(|| panic!("no `registration token:` line in the log:\n{}", server.output()));

    let client = server.client();
    let first = client.register_attempt(json!({ "username": "root", "password": "password-r" }), Some(&token)).await;
    let body = assert_ok(first);
    assert_eq!(body["user_id"], json!(user_id("root")));
    client.login("root", "password-r").await;

    let (status, body) =
        client.register_attempt(json!({ "username": "second", "password": "password-s" }), Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "bootstrap token worked twice: {body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("user_id").is_none(), "{body}");
}

#[tokio::test]
async fn no_bootstrap_token_in_open_mode() {
    let server = TestServer::start().await;
    // Give the server a moment in case the line comes late.
    let found = server.wait_for_log(r"registration token: (\S+)", Duration::from_millis(500)).await;
    assert!(found.is_none(), "open mode printed a bootstrap token");
}

#[tokio::test]
async fn email_request_token_is_denied() {
    let server = TestServer::start().await;
    let resp = server
        .client()
        .post(
            "/_matrix/client/v3/register/email/requestToken",
            json!({ "client_secret": "secret123", "email": "a@example.org", "send_attempt": 1 }),
        )
        .await;
    assert_err(&resp, 403, "M_THREEPID_DENIED");
}

#[tokio::test]
async fn shared_secret_registration_creates_an_account() {
    let server = TestServer::start().await;
    let resp = register_with_shared_secret(server.base_url(), SHARED_SECRET, "admin", "password-adm", true).await;
    let body = assert_ok(resp);
    assert_eq!(body["user_id"], json!(user_id("admin")));
    assert!(body["access_token"].is_string(), "{body}");
    let admin = Client::new(server.base_url()).logged_in(&body);
    assert_ok(admin.whoami().await);
    server.client().login("admin", "password-adm").await;
}

#[tokio::test]
async fn shared_secret_registration_with_a_wrong_mac_is_forbidden() {
    let server = TestServer::start().await;
    let client = server.client();
    let nonce = assert_ok(client.get("/_synapse/admin/v1/register").await)["nonce"].as_str().expect("nonce").to_owned();
    let resp = client
        .post(
            "/_synapse/admin/v1/register",
            json!({
                "nonce": nonce,
                "username": "mallory",
                "password": "password-m",
                "admin": true,
                "mac": shared_secret_mac("wrong-secret", &nonce, "mallory", "password-m", true),
            }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN");
    assert_err(&client.login_raw("mallory", "password-m").await, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn shared_secret_nonce_cannot_be_reused() {
    let server = TestServer::start().await;
    let client = server.client();
    let nonce = assert_ok(client.get("/_synapse/admin/v1/register").await)["nonce"].as_str().expect("nonce").to_owned();
    let request = |user: &str| {
        json!({
            "nonce": nonce,
            "username": user,
            "password": "password-n",
            "admin": false,
            "mac": shared_secret_mac(SHARED_SECRET, &nonce, user, "password-n", false),
        })
    };
    assert_ok(client.post("/_synapse/admin/v1/register", request("nina")).await);
    let (status, body) = client.post("/_synapse/admin/v1/register", request("oscar")).await;
    assert!(status.is_client_error(), "reused nonce accepted: {status} {body}");
    assert!(errcode(&body).starts_with("M_"), "no errcode: {body}");
    assert_err(&client.login_raw("oscar", "password-n").await, 403, "M_FORBIDDEN");
}
