//! A small JSON client for the Matrix client-server API.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;

/// A response: status and the body parsed as JSON (`Value::Null` when not JSON).
pub type Resp = (StatusCode, Value);

/// A client of one server, logged in or not.
#[derive(Clone, Debug)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub device_id: String,
    pub http: reqwest::Client,
}

/// A new HTTP client (connection pool).
///
/// Pools are not shared between tests: each `#[tokio::test]` has its own
/// runtime, and a pooled connection whose runtime is gone fails when reused
/// (which can happen when a later server gets the same port).
pub fn new_http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("reqwest client")
}

impl Client {
    /// An anonymous client of `base` (`http://127.0.0.1:PORT`) with its own
    /// connection pool.
    pub fn new(base: &str) -> Client {
        Self::with_http(base, new_http())
    }

    /// An anonymous client of `base` using the given connection pool.
    pub fn with_http(base: &str, http: reqwest::Client) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            user_id: String::new(),
            device_id: String::new(),
            http,
        }
    }

    /// The same server with another (or no) access token.
    pub fn with_token(&self, token: Option<&str>) -> Client {
        Client { token: token.map(str::to_owned), ..self.clone() }
    }

    /// The localpart of `user_id`.
    pub fn localpart(&self) -> &str {
        self.user_id.strip_prefix('@').and_then(|s| s.split(':').next()).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request builder with the access token (if any) as Bearer header.
    pub fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// Sends a request and returns the status and JSON body.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let mut req = self.builder(method.clone(), path);
        if let Some(body) = body {
            req = req.json(body);
        }
        send(req).await.unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PUT, path, Some(&body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> Resp {
        self.request(Method::DELETE, path, body.as_ref()).await
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let req = self.builder(method.clone(), path).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        send(req).await.unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Registers `localpart` with the `m.login.dummy` flow (UIA: first request
    /// gets 401 with a session, the second completes the dummy stage) and returns
    /// the logged-in client. Panics on any unexpected response.
    pub async fn register(&self, localpart: &str, password: &str) -> Client {
        let (status, body) = self.register_dummy(json!({ "username": localpart, "password": password })).await;
        assert_eq!(status, StatusCode::OK, "registering {localpart} failed: {body}");
        self.logged_in(&body)
    }

    /// Runs the dummy-flow UIA dance with `body` and returns the final response.
    pub async fn register_dummy(&self, body: Value) -> Resp {
        let (status, first) = self.post("/_matrix/client/v3/register", body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "first /register must ask for UIA: {first}");
        let session =
            first["session"].as_str().unwrap_or_else(|| panic!("UIA response without session: {first}")).to_owned();
        let has_dummy = first["flows"]
            .as_array()
            .is_some_and(|flows| flows.iter().any(|f| f["stages"] == json!(["m.login.dummy"])));
        assert!(has_dummy, "no m.login.dummy flow offered: {first}");
        let mut body = body;
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        self.post("/_matrix/client/v3/register", body).await
    }

    /// POSTs `/register` with `body` and walks through UIA as far as it can:
    /// `m.login.dummy` always, `m.login.registration_token` when `token` is
    /// given. Returns the first response that is not a UIA continuation (or the
    /// last 401 when no offered flow can be completed).
    pub async fn register_attempt(&self, body: Value, token: Option<&str>) -> Resp {
        let path = "/_matrix/client/v3/register";
        let mut resp = self.post(path, body.clone()).await;
        for _ in 0..5 {
            let (status, uia) = &resp;
            if *status != StatusCode::UNAUTHORIZED {
                return resp;
            }
            let Some(session) = uia["session"].as_str() else {
                return resp;
            };
            let completed: Vec<&str> =
                uia["completed"].as_array().map(|c| c.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let supported =
                |stage: &str| stage == "m.login.dummy" || (stage == "m.login.registration_token" && token.is_some());
            let next = uia["flows"].as_array().and_then(|flows| {
                flows.iter().find_map(|flow| {
                    let stages: Vec<&str> = flow["stages"].as_array()?.iter().filter_map(Value::as_str).collect();
                    if !stages.iter().all(|s| supported(s)) {
                        return None;
                    }
                    stages.into_iter().find(|s| !completed.contains(s))
                })
            });
            let Some(stage) = next else { return resp };
            let auth = match stage {
                "m.login.registration_token" => {
                    json!({ "type": stage, "token": token, "session": session })
                }
                _ => json!({ "type": stage, "session": session }),
            };
            let mut body = body.clone();
            body["auth"] = auth;
            resp = self.post(path, body).await;
        }
        resp
    }

    /// A client logged in with the tokens of a register/login response.
    pub fn logged_in(&self, body: &Value) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(
                body["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {body}")).to_owned(),
            ),
            user_id: body["user_id"].as_str().unwrap_or_else(|| panic!("no user_id in {body}")).to_owned(),
            device_id: body["device_id"].as_str().unwrap_or_else(|| panic!("no device_id in {body}")).to_owned(),
            http: self.http.clone(),
        }
    }

    /// `POST /login` with an `m.id.user` identifier; the raw response.
    pub async fn login_raw(&self, user: &str, password: &str) -> Resp {
        self.post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": password,
            }),
        )
        .await
    }

    /// Logs in and returns the logged-in client; panics unless 200.
    pub async fn login(&self, user: &str, password: &str) -> Client {
        let (status, body) = self.login_raw(user, password).await;
        assert_eq!(status, StatusCode::OK, "login of {user} failed: {body}");
        self.logged_in(&body)
    }

    /// `GET /account/whoami`.
    pub async fn whoami(&self) -> Resp {
        self.get("/_matrix/client/v3/account/whoami").await
    }

    /// Sends a request that needs UIA with `m.login.password`: the first attempt
    /// must return 401 with a session; the second carries the password stage.
    /// Returns the second response.
    pub async fn with_password_uia(&self, method: Method, path: &str, body: Value, password: &str) -> Resp {
        let session = self.uia_session(method.clone(), path, body.clone()).await;
        let mut body = body;
        body["auth"] = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": self.user_id },
            "password": password,
            "session": session,
        });
        self.request(method, path, Some(&body)).await
    }

    /// Sends `body` without `auth`, asserts 401 with an `m.login.password`
    /// flow, and returns the UIA session id.
    pub async fn uia_session(&self, method: Method, path: &str, body: Value) -> String {
        let (status, first) = self.request(method.clone(), path, Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without auth must start UIA: {first}");
        let has_password = first["flows"]
            .as_array()
            .is_some_and(|flows| flows.iter().any(|f| f["stages"] == json!(["m.login.password"])));
        assert!(has_password, "no m.login.password flow offered: {first}");
        first["session"].as_str().unwrap_or_else(|| panic!("UIA response without session: {first}")).to_owned()
    }
}

/// A transaction id unique within this test process.
pub fn new_txn_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("txn{}-{}", crate::now_ms(), N.fetch_add(1, Ordering::Relaxed))
}

/// Room helpers. The `*_raw` variants return the response; the others assert
/// success and return the interesting field.
impl Client {
    /// `/_matrix/client/v3/rooms/{room}{rest}` with the room id percent-encoded.
    pub fn room_path(room_id: &str, rest: &str) -> String {
        format!("/_matrix/client/v3/rooms/{}{rest}", crate::enc(room_id))
    }

    /// `/rooms/{room}/state/{type}/{key}`; without the trailing `/` when the key is empty.
    pub fn state_path(room_id: &str, event_type: &str, state_key: &str) -> String {
        if state_key.is_empty() {
            Self::room_path(room_id, &format!("/state/{}", crate::enc(event_type)))
        } else {
            Self::room_path(room_id, &format!("/state/{}/{}", crate::enc(event_type), crate::enc(state_key)))
        }
    }

    /// `POST /createRoom`; the raw response.
    pub async fn create_room_raw(&self, body: Value) -> Resp {
        self.post("/_matrix/client/v3/createRoom", body).await
    }

    /// `POST /createRoom`; asserts 200 and returns the `room_id`.
    #[track_caller]
    pub fn create_room(&self, body: Value) -> impl std::future::Future<Output = String> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let (status, resp) = self.create_room_raw(body.clone()).await;
            assert_eq!(status, StatusCode::OK, "createRoom {body} failed at {caller}: {resp}");
            resp["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in {resp}")).to_owned()
        }
    }

    /// `PUT /rooms/{room}/send/{type}/{txn}`; the raw response.
    pub async fn send_event_raw(&self, room_id: &str, event_type: &str, txn_id: &str, content: Value) -> Resp {
        let path = Self::room_path(room_id, &format!("/send/{}/{}", crate::enc(event_type), crate::enc(txn_id)));
        self.put(&path, content).await
    }

    /// Sends an event with a fresh transaction id; asserts 200, returns the `event_id`.
    pub async fn send_event(&self, room_id: &str, event_type: &str, content: Value) -> String {
        let (status, body) = self.send_event_raw(room_id, event_type, &new_txn_id(), content.clone()).await;
        assert_eq!(status, StatusCode::OK, "sending {event_type} {content} to {room_id} failed: {body}");
        event_id_of(&body)
    }

    /// Sends an `m.room.message`; asserts 200 and returns the `event_id`.
    pub async fn send_message(&self, room_id: &str, content: Value) -> String {
        self.send_event(room_id, "m.room.message", content).await
    }

    /// Sends an `m.text` message with `body`; returns the `event_id`.
    pub async fn send_text(&self, room_id: &str, text: &str) -> String {
        self.send_message(room_id, json!({ "msgtype": "m.text", "body": text })).await
    }

    /// `PUT /rooms/{room}/state/{type}/{key}`; the raw response.
    pub async fn send_state_raw(&self, room_id: &str, event_type: &str, state_key: &str, content: Value) -> Resp {
        let path = Self::state_path(room_id, event_type, state_key);
        self.put(&path, content).await
    }

    /// Sets a state event; asserts 200 and returns the `event_id`.
    pub async fn send_state(&self, room_id: &str, event_type: &str, state_key: &str, content: Value) -> String {
        let (status, body) = self.send_state_raw(room_id, event_type, state_key, content.clone()).await;
        assert_eq!(status, StatusCode::OK, "setting {event_type}/{state_key} {content} in {room_id} failed: {body}");
        event_id_of(&body)
    }

    /// `GET /rooms/{room}/state/{type}/{key}`; the raw response.
    pub async fn get_state(&self, room_id: &str, event_type: &str, state_key: &str) -> Resp {
        let path = Self::state_path(room_id, event_type, state_key);
        self.get(&path).await
    }

    /// `GET /rooms/{room}/state`; the raw response.
    pub async fn full_state(&self, room_id: &str) -> Resp {
        self.get(&Self::room_path(room_id, "/state")).await
    }

    /// `GET /rooms/{room}/event/{event}`; the raw response.
    pub async fn get_event(&self, room_id: &str, event_id: &str) -> Resp {
        self.get(&Self::room_path(room_id, &format!("/event/{}", crate::enc(event_id)))).await
    }

    /// `PUT /rooms/{room}/redact/{event}/{txn}`; the raw response.
    pub async fn redact_raw(&self, room_id: &str, event_id: &str, txn_id: &str, body: Value) -> Resp {
        let path = Self::room_path(room_id, &format!("/redact/{}/{}", crate::enc(event_id), crate::enc(txn_id)));
        self.put(&path, body).await
    }

    /// Redacts `event_id` (with an optional reason); asserts 200, returns the redaction's `event_id`.
    pub async fn redact(&self, room_id: &str, event_id: &str, reason: Option<&str>) -> String {
        let body = match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        };
        let (status, resp) = self.redact_raw(room_id, event_id, &new_txn_id(), body).await;
        assert_eq!(status, StatusCode::OK, "redacting {event_id} in {room_id} failed: {resp}");
        event_id_of(&resp)
    }

    /// `POST /join/{roomIdOrAlias}`; the raw response.
    pub async fn join_raw(&self, room_id_or_alias: &str) -> Resp {
        self.post(&format!("/_matrix/client/v3/join/{}", crate::enc(room_id_or_alias)), json!({})).await
    }

    /// Joins by id or alias; asserts 200 and returns the `room_id`.
    pub async fn join(&self, room_id_or_alias: &str) -> String {
        let (status, body) = self.join_raw(room_id_or_alias).await;
        assert_eq!(status, StatusCode::OK, "{} joining {room_id_or_alias} failed: {body}", self.user_id);
        body["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in join response {body}")).to_owned()
    }

    /// `POST /rooms/{room}/{action}` with `{user_id, reason?}` (invite, kick, ban, unban); the raw response.
    pub async fn membership_raw(&self, room_id: &str, action: &str, user_id: &str, reason: Option<&str>) -> Resp {
        let mut body = json!({ "user_id": user_id });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        self.post(&Self::room_path(room_id, &format!("/{action}")), body).await
    }

    /// `POST /rooms/{room}/invite`; the raw response.
    pub async fn invite_raw(&self, room_id: &str, user_id: &str) -> Resp {
        self.membership_raw(room_id, "invite", user_id, None).await
    }

    /// Invites `user_id`; asserts 200.
    pub async fn invite(&self, room_id: &str, user_id: &str) {
        let (status, body) = self.invite_raw(room_id, user_id).await;
        assert_eq!(status, StatusCode::OK, "{} inviting {user_id} to {room_id} failed: {body}", self.user_id);
    }

    /// `POST /rooms/{room}/leave`; the raw response.
    pub async fn leave_raw(&self, room_id: &str) -> Resp {
        self.post(&Self::room_path(room_id, "/leave"), json!({})).await
    }

    /// Leaves `room_id`; asserts 200.
    pub async fn leave(&self, room_id: &str) {
        let (status, body) = self.leave_raw(room_id).await;
        assert_eq!(status, StatusCode::OK, "{} leaving {room_id} failed: {body}", self.user_id);
    }

    /// `GET /joined_rooms`: the room ids.
    pub async fn joined_rooms(&self) -> Vec<String> {
        let (status, body) = self.get("/_matrix/client/v3/joined_rooms").await;
        assert_eq!(status, StatusCode::OK, "GET /joined_rooms failed: {body}");
        body["joined_rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("no joined_rooms array in {body}"))
            .iter()
            .map(|r| r.as_str().expect("room id string").to_owned())
            .collect()
    }

    /// `GET /rooms/{room}/messages?{query}`; the raw response. `query` is
    /// already encoded, e.g. `dir=b&limit=10`.
    pub async fn messages_raw(&self, room_id: &str, query: &str) -> Resp {
        self.get(&Self::room_path(room_id, &format!("/messages?{query}"))).await
    }

    /// `GET /rooms/{room}/messages`; asserts 200 and a `chunk` array.
    pub async fn messages(&self, room_id: &str, query: &str) -> Value {
        let (status, body) = self.messages_raw(room_id, query).await;
        assert_eq!(status, StatusCode::OK, "GET /messages?{query} in {room_id} failed: {body}");
        assert!(body["chunk"].is_array(), "/messages without a chunk array: {body}");
        assert!(body["start"].is_string(), "/messages without a start token: {body}");
        body
    }

    /// Pages `/messages` in direction `dir` (`b` or `f`) from the start (no
    /// `from`), `limit` events a page, with an optional (unencoded) filter
    /// JSON, until a response has no `end`. Returns every event in order.
    /// Panics after `max_pages` pages.
    pub async fn paginate_all(
        &self,
        room_id: &str,
        dir: &str,
        limit: usize,
        filter: Option<&Value>,
        max_pages: usize,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..max_pages {
            let mut query = format!("dir={dir}&limit={limit}");
            if let Some(from) = &from {
                query.push_str(&format!("&from={}", crate::enc(from)));
            }
            if let Some(filter) = filter {
                query.push_str(&format!("&filter={}", crate::enc(&filter.to_string())));
            }
            let body = self.messages(room_id, &query).await;
            let chunk = body["chunk"].as_array().expect("chunk");
            assert!(chunk.len() <= limit, "/messages returned {} events for limit={limit}", chunk.len());
            events.extend(chunk.iter().cloned());
            match body["end"].as_str() {
                Some(end) => {
                    assert_ne!(from.as_deref(), Some(end), "/messages end token did not advance: {body}");
                    from = Some(end.to_owned());
                }
                None => return events,
            }
        }
        panic!("/messages?dir={dir} did not finish within {max_pages} pages");
    }
}

/// The `event_id` of a send/state/redact response.
#[track_caller]
pub fn event_id_of(body: &Value) -> String {
    let id = body["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {body}"));
    assert!(id.starts_with('$'), "event_id must start with $: {body}");
    id.to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Result<Resp> {
    let resp = req.send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, body))
}

/// The `errcode` of a response body ("" when none).
pub fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or_default()
}

/// Asserts the status and the `errcode` of an error response.
#[track_caller]
pub fn assert_err(resp: &Resp, status: u16, code: &str) {
    let (got_status, body) = resp;
    assert_eq!(
        (got_status.as_u16(), errcode(body)),
        (status, code),
        "expected {status} {code}, got {got_status} with body {body}"
    );
    assert!(body["error"].is_string() || body["error"].is_null(), "`error` must be a string when present: {body}");
}

/// Asserts a 200 response and returns its body.
#[track_caller]
pub fn assert_ok(resp: Resp) -> Value {
    let (status, body) = resp;
    assert_eq!(status, StatusCode::OK, "expected 200, got {status} with body {body}");
    body
}

/// The Synapse shared-secret registration MAC: hex HMAC-SHA1 over
/// `nonce \0 username \0 password \0 ("admin" | "notadmin")`.
pub fn shared_secret_mac(secret: &str, nonce: &str, user: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(user.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin { b"admin".as_slice() } else { b"notadmin".as_slice() });
    hex::encode(mac.finalize().into_bytes())
}

/// Registers through `/_synapse/admin/v1/register` (GET a nonce, POST with the
/// MAC). Returns the POST response.
pub async fn register_with_shared_secret(base: &str, secret: &str, user: &str, password: &str, admin: bool) -> Resp {
    let client = Client::new(base);
    let (status, body) = client.get("/_synapse/admin/v1/register").await;
    assert_eq!(status, StatusCode::OK, "GET nonce failed: {body}");
    let nonce = body["nonce"].as_str().unwrap_or_else(|| panic!("no nonce in {body}")).to_owned();
    client
        .post(
            "/_synapse/admin/v1/register",
            json!({
                "nonce": nonce,
                "username": user,
                "password": password,
                "admin": admin,
                "mac": shared_secret_mac(secret, &nonce, user, password, admin),
            }),
        )
        .await
}

/// Registers a server admin through shared-secret registration (with the
/// test servers' [`crate::SHARED_SECRET`]) and returns the logged-in client.
pub async fn register_admin(base: &str, localpart: &str, password: &str) -> Client {
    let (status, body) = register_with_shared_secret(base, crate::SHARED_SECRET, localpart, password, true).await;
    assert_eq!(status, StatusCode::OK, "shared-secret registration of admin {localpart} failed: {body}");
    Client::new(base).logged_in(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_synapse_reference() {
        // Computed with Python: hmac.new(b"secret", b"abc\0bob\0pw\0notadmin", hashlib.sha1).hexdigest()
        assert_eq!(shared_secret_mac("secret", "abc", "bob", "pw", false), "8ea9b87daa4e529ce4a0832f09be19bbe837a0af");
    }
}
