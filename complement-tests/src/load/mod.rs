//! The `kith-load` load generator: scenarios, the runner and the report.
//!
//! Each scenario is a module with a `prepare` function that does its setup
//! (registering users, ...) and returns a [`Scenario`] whose
//! [`Scenario::request`] performs one measured operation. To add a scenario,
//! write a module next to `whoami.rs` and add it to [`SCENARIOS`].
//!
//! Scenarios whose workload is not "N workers repeat one request" (delivery
//! through long-polls, idle long-polls, initial sync, E2EE keys) run their own
//! measured phases instead: see [`phased`] and its `PHASED_SCENARIOS`.

pub mod create_room;
pub mod dbsize;
pub mod delivery;
pub mod idle_polls;
pub mod initial_sync;
pub mod join;
pub mod keys;
pub mod login;
pub mod media;
pub mod messages;
pub mod phased;
pub mod register;
pub mod report;
pub mod rooms;
pub mod runner;
pub mod send;
pub mod sync_api;
pub mod whoami;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Options of the room scenarios.
    pub opts: ScenarioOpts,
    /// The server's process id (`--server-pid`), for scenarios that watch its memory.
    pub server_pid: Option<u32>,
}

/// Options that only some scenarios use.
#[derive(Clone, Debug)]
pub struct ScenarioOpts {
    /// `send`: number of rooms the workers are spread over.
    pub rooms: usize,
    /// `messages`: events the setup sends into the room.
    pub events: usize,
    /// `messages`: events per page.
    pub page: usize,
    /// `join`: members who join the room during setup.
    pub members: usize,
    /// `join`: fresh users registered for the measured phase (one join each).
    pub joiners: Option<u64>,
    /// `--requests`, if given.
    pub requests: Option<u64>,
    /// `media-large`, `media-upload`: file size in MB (10^6 bytes).
    pub file_mb: Option<u64>,
    /// `media-thumbnail`: 12-megapixel JPEGs uploaded (each one first thumbnail).
    pub images: usize,
}

impl Default for ScenarioOpts {
    fn default() -> ScenarioOpts {
        ScenarioOpts {
            rooms: 10,
            events: 10_000,
            page: 100,
            members: 1000,
            joiners: None,
            requests: None,
            file_mb: None,
            images: 5,
        }
    }
}

/// At most this many setup requests run at once.
pub const SETUP_PARALLELISM: usize = 32;

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

    /// The most requests the scenario can perform (e.g. one per pre-registered user).
    fn max_requests(&self) -> Option<u64> {
        None
    }

    /// Scenario-specific lines for the report, read after the measured phase.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
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
    ScenarioDef {
        name: "create-room",
        about: "POST /createRoom (private room) with one pre-registered user per worker",
        prepare: create_room::prepare,
    },
    ScenarioDef {
        name: "send",
        about: "PUT an m.text message; worker i is a member of room i % --rooms (default 10)",
        prepare: send::prepare,
    },
    ScenarioDef {
        name: "messages",
        about: "GET /messages?dir=b pages of --page (100) through a room of --events (10000)",
        prepare: messages::prepare,
    },
    ScenarioDef {
        name: "join",
        about: "POST /join of a fresh user per request into a room of --members (1000)",
        prepare: join::prepare,
    },
    ScenarioDef {
        name: "media-download",
        about: "GET /_matrix/client/v1/media/download of one cached 100 KB image",
        prepare: media::prepare_small,
    },
    ScenarioDef {
        name: "media-large",
        about: "GET of one --file-mb (100) MB file streamed from disk; notes give MB/s",
        prepare: media::prepare_large,
    },
    ScenarioDef {
        name: "media-thumbnail",
        about: "first 320x240 thumbnails of --images (5) 12 MP JPEGs (notes), then repeats",
        prepare: media::prepare_thumbnail,
    },
    ScenarioDef {
        name: "media-upload",
        about: "POST of one --file-mb (500) MB upload; with --server-pid, the server's RSS growth",
        prepare: media::prepare_upload,
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

    /// Registers `n` users (`<run_id>_<prefix><i>`), [`SETUP_PARALLELISM`] at a
    /// time, printing progress to stderr.
    pub async fn register_many(&self, prefix: &str, n: usize) -> Result<Vec<Session>, String> {
        bounded(&format!("registering {prefix} users"), n, SETUP_PARALLELISM, |i| {
            let localpart = format!("{}_{prefix}{i}", self.run_id);
            async move { self.register(&localpart, &format!("pw-{localpart}")).await }
        })
        .await
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

/// Runs `f(0..n)` with at most `parallel` at a time, in order of `i` in the
/// result; stops at the first error. Prints progress (`label: done/n`) to
/// stderr every 10 % or 5 s when `n` is large enough to take a while.
pub async fn bounded<T, F, Fut>(label: &str, n: usize, parallel: usize, f: F) -> Result<Vec<T>, String>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let verbose = n >= 50;
    let step = (n / 10).max(1);
    let mut last_print = start;
    let mut results = stream::iter(0..n).map(f).buffered(parallel.max(1));
    let mut out = Vec::with_capacity(n);
    while let Some(result) = results.next().await {
        out.push(result.map_err(|e| format!("{label}: {e}"))?);
        let done = out.len();
        if verbose && (done.is_multiple_of(step) || last_print.elapsed() >= Duration::from_secs(5)) {
            last_print = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!("  {label}: {done}/{n} ({:.1} s, {:.0}/s)", secs, done as f64 / secs.max(1e-9));
        }
    }
    Ok(out)
}

/// A small deterministic pseudo-random number generator step (SplitMix64).
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
