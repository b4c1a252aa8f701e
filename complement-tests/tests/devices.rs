//! Device management.

use complement_tests::{TestServer, assert_err, assert_ok};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn device_ids(body: &serde_json::Value) -> Vec<String> {
    body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices array: {body}"))
        .iter()
        .map(|d| d["device_id"].as_str().expect("device_id").to_owned())
        .collect()
}

#[tokio::test]
async fn list_devices() {
    let server = TestServer::start().await;
    let first = server.register("alice", "password-a").await;
    let second = server.client().login("alice", "password-a").await;
    server.register("bob", "password-b").await;
    let body = assert_ok(first.get("/_matrix/client/v3/devices").await);
    let mut ids = device_ids(&body);
    ids.sort();
    let mut expected = vec![first.device_id.clone(), second.device_id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "{body}");
}

#[tokio::test]
async fn get_and_rename_a_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/devices/{}", alice.device_id);
    let device = assert_ok(alice.get(&path).await);
    assert_eq!(device["device_id"], json!(alice.device_id));

    let resp = alice.put(&path, json!({ "display_name": "Renamed" })).await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    let device = assert_ok(alice.get(&path).await);
    assert_eq!(device["display_name"], json!("Renamed"));
}

#[tokio::test]
async fn unknown_device_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    assert_err(&alice.get("/_matrix/client/v3/devices/NOSUCHDEVICE").await, 404, "M_NOT_FOUND");
    assert_err(
        &alice.put("/_matrix/client/v3/devices/NOSUCHDEVICE", json!({ "display_name": "x" })).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn another_users_device_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let bob = server.register("bob", "password-b").await;
    let path = format!("/_matrix/client/v3/devices/{}", bob.device_id);
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn delete_device_needs_password_uia_and_revokes_its_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let other = server.client().login("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/devices/{}", other.device_id);

    let (status, uia) = alice.delete(&path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{uia}");
    assert!(uia["session"].is_string(), "{uia}");
    assert!(
        uia["flows"].as_array().is_some_and(|f| f.iter().any(|f| f["stages"] == json!(["m.login.password"]))),
        "{uia}"
    );
    assert_ok(other.whoami().await);

    let resp = alice.with_password_uia(Method::DELETE, &path, json!({}), "password-a").await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
    assert_err(&other.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_err(&alice.get(&path).await, 404, "M_NOT_FOUND");
    assert_ok(alice.whoami().await);
}

#[tokio::test]
async fn wrong_password_in_uia_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let other = server.client().login("alice", "password-a").await;
    let path = format!("/_matrix/client/v3/devices/{}", other.device_id);

    let (status, body) = alice.with_password_uia(Method::DELETE, &path, json!({}), "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], json!("M_FORBIDDEN"), "{body}");
    assert!(body["flows"].is_array(), "UIA body must repeat the flows: {body}");
    assert!(body["session"].is_string(), "{body}");
    assert_ok(other.whoami().await);
}

#[tokio::test]
async fn delete_devices_in_bulk() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-a").await;
    let second = server.client().login("alice", "password-a").await;
    let third = server.client().login("alice", "password-a").await;
    let body = json!({ "devices": [second.device_id, third.device_id] });

    let (status, uia) = alice.post("/_matrix/client/v3/delete_devices", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{uia}");
    let resp = alice.with_password_uia(Method::POST, "/_matrix/client/v3/delete_devices", body, "password-a").await;
    assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);

    assert_err(&second.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_err(&third.whoami().await, 401, "M_UNKNOWN_TOKEN");
    assert_ok(alice.whoami().await);
    let list = assert_ok(alice.get("/_matrix/client/v3/devices").await);
    assert_eq!(device_ids(&list), vec![alice.device_id.clone()]);
}
