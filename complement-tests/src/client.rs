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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_synapse_reference() {
        // Computed with Python: hmac.new(b"secret", b"abc\0bob\0pw\0notadmin", hashlib.sha1).hexdigest()
        assert_eq!(shared_secret_mac("secret", "abc", "bob", "pw", false), "8ea9b87daa4e529ce4a0832f09be19bbe837a0af");
    }
}
