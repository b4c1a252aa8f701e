//! The `kith-load` load generator: scenarios, the runner and the report.
//!
//! Each scenario is a module with a `prepare` function that does its setup
//! (registering users, ...) and returns a [`Scenario`] whose
//! [`Scenario::request`] performs one measured operation. To add a scenario,
//! write a module next to `whoami.rs` and add it to [`SCENARIOS`].

pub mod login;
pub mod register;
pub mod report;
pub mod runner;
pub mod whoami;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use serde_json::{Value, json};

/// What every scenario gets: the HTTP client and the run's options.
#[derive(Clone)]
pub struct Ctx {
    pub http: reqwest::Client,
    /// `http://host:port` without a trailing slash.
    pub base: String,
    pub concurrency: usize,
    /// Register through `/_synapse/admin/v1/register` with this secret
    /// instead of the open `/register` dummy flow.
    pub shared_secret: Option<String>,
    /// A prefix that makes this run's user names unique.
    pub run_id: String,
}

/// A logged-in user created during setup.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub localpart: String,
    pub password: String,
    pub access_token: String,
    pub device_id: String,
}

/// One measured operation of a scenario.
pub trait Scenario: Send + Sync {
    /// Performs one operation for `worker` (0..concurrency), its `seq`-th.
    /// `Err` counts as an error and is sampled into the report.
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>>;
}

pub type Prepare = for<'a> fn(&'a Ctx) -> BoxFuture<'a, Result<Arc<dyn Scenario>, String>>;

/// A named scenario.
pub struct ScenarioDef {
    pub name: &'static str,
    pub about: &'static str,
    pub prepare: Prepare,
}

/// Every scenario, by name.
pub const SCENARIOS: &[ScenarioDef] = &[
    ScenarioDef {
        name: "register",
        about: "register a new user per request (dummy flow, or --shared-secret)",
        prepare: register::prepare,
    },
    ScenarioDef {
        name: "login",
        about: "password login of one pre-registered user per worker",
        prepare: login::prepare,
    },
    ScenarioDef {
        name: "whoami",
        about: "GET /account/whoami with one pre-registered user per worker",
        prepare: whoami::prepare,
    },
];

pub fn find(name: &str) -> Option<&'static ScenarioDef> {
    SCENARIOS.iter().find(|s| s.name == name)
}

impl Ctx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a JSON request; returns the status and the parsed body (Null if not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Registers `localpart` (dummy flow or shared secret) and returns its session.
    pub async fn register(&self, localpart: &str, password: &str) -> Result<Session, String> {
        let body = match &self.shared_secret {
            Some(secret) => self.register_shared_secret(secret, localpart, password).await?,
            None => self.register_dummy(localpart, password).await?,
        };
        let field = |name: &str| {
            body[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("registration response without {name}: {body}"))
        };
        Ok(Session {
            user_id: field("user_id")?,
            localpart: localpart.to_owned(),
            password: password.to_owned(),
            access_token: field("access_token")?,
            device_id: field("device_id")?,
        })
    }

    async fn register_dummy(&self, localpart: &str, password: &str) -> Result<Value, String> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({ "username": localpart, "password": password });
        let (status, first) = self.send(reqwest::Method::POST, path, None, Some(&body)).await?;
        if status != 401 {
            return Err(format!("register {localpart}: expected 401, got {status} {first}"));
        }
        let session =
            first["session"].as_str().ok_or_else(|| format!("register {localpart}: no UIA session in {first}"))?;
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        let (status, body) = self.send(reqwest::Method::POST, path, None, Some(&body)).await?;
        if status != 200 {
            return Err(format!("register {localpart}: {status} {body}"));
        }
        Ok(body)
    }

    async fn register_shared_secret(&self, secret: &str, localpart: &str, password: &str) -> Result<Value, String> {
        let path = "/_synapse/admin/v1/register";
        let (status, body) = self.send(reqwest::Method::GET, path, None, None).await?;
        let nonce = match (status, body["nonce"].as_str()) {
            (200, Some(nonce)) => nonce.to_owned(),
            _ => return Err(format!("GET {path}: {status} {body}")),
        };
        let mac = crate::client::shared_secret_mac(secret, &nonce, localpart, password, false);
        let req = json!({
            "nonce": nonce, "username": localpart, "password": password,
            "admin": false, "mac": mac,
        });
        let (status, body) = self.send(reqwest::Method::POST, path, None, Some(&req)).await?;
        if status != 200 {
            return Err(format!("shared-secret register {localpart}: {status} {body}"));
        }
        Ok(body)
    }

    /// Registers `n` users (`<run_id>_<prefix><i>`), up to 8 at a time.
    pub async fn register_users(&self, prefix: &str, n: usize) -> Result<Vec<Session>, String> {
        let results: Vec<Result<Session, String>> = stream::iter(0..n)
            .map(|i| {
                let localpart = format!("{}_{prefix}{i}", self.run_id);
                async move { self.register(&localpart, &format!("pw-{localpart}")).await }
            })
            .buffered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }
}
