//! User-interactive authentication (spec: client-server API, "User-interactive
//! authentication API"). Sessions live in memory: a restart only makes a client
//! start its authentication again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::service::secrets;

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

#[derive(Debug, Default)]
struct Session {
    completed: Vec<String>,
    registration_token: Option<String>,
}

/// What a stage check reports.
pub enum StageResult {
    Done,
    /// The stage failed; the 401 carries this error.
    Failed(Error),
}

/// The outcome of a finished authentication.
#[derive(Debug, Default)]
pub struct Completed {
    pub registration_token: Option<String>,
}

pub struct Uia {
    sessions: Cache<String, Arc<Mutex<Session>>>,
}

impl Uia {
    pub fn new(timeout: Duration) -> Self {
        Self { sessions: Cache::builder().max_capacity(100_000).time_to_live(timeout).build() }
    }

    /// Runs one round of user-interactive auth.
    ///
    /// `flows` lists the acceptable sequences of stages; `check` verifies one
    /// stage's `auth` dict (password, token, ...). Returns `Ok` when a flow is
    /// complete, or the 401 that tells the client what is left.
    pub async fn authenticate<F, Fut>(
        &self,
        auth: Option<&Value>,
        flows: &[&[&str]],
        params: Value,
        check: F,
    ) -> Result<Completed>
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = Result<StageResult>>,
    {
        let auth = auth.filter(|a| !a.is_null());
        let session_id = auth.and_then(|a| a.get("session")).and_then(Value::as_str).map(str::to_owned);
        let (session_id, session) = match session_id {
            Some(id) => match self.sessions.get(&id).await {
                Some(session) => (id, session),
                None => {
                    return Err(Error::new(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN", "Unknown UIA session"));
                }
            },
            None => {
                let id = secrets::random_id(24);
                let session = Arc::new(Mutex::new(Session::default()));
                self.sessions.insert(id.clone(), session.clone()).await;
                (id, session)
            }
        };
        let challenge = |error: Option<&Error>, session: &Session| {
            let mut body = json!({
                "flows": flows.iter().map(|stages| json!({ "stages": stages })).collect::<Vec<_>>(),
                "params": params,
                "session": session_id,
            });
            if !session.completed.is_empty() {
                body["completed"] = json!(session.completed);
            }
            if let Some(error) = error {
                body["errcode"] = json!(error.errcode);
                body["error"] = json!(error.message);
            }
            Error::uia(body)
        };

        if let Some(auth) = auth {
            let Some(stage) = auth.get("type").and_then(Value::as_str).map(str::to_owned) else {
                let snapshot = lock(&session);
                return Err(challenge(Some(&Error::bad_json("auth.type is missing")), &snapshot));
            };
            let allowed = flows.iter().any(|f| f.contains(&stage.as_str()));
            let result = if allowed {
                check(stage.clone(), auth.clone()).await?
            } else {
                StageResult::Failed(Error::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "M_UNRECOGNIZED",
                    format!("Stage {stage} is not offered"),
                ))
            };
            let mut guard = lock(&session);
            match result {
                StageResult::Done => {
                    if !guard.completed.contains(&stage) {
                        guard.completed.push(stage.clone());
                    }
                    if stage == REGISTRATION_TOKEN {
                        guard.registration_token = auth.get("token").and_then(Value::as_str).map(str::to_owned);
                    }
                }
                StageResult::Failed(error) => return Err(challenge(Some(&error), &guard)),
            }
        }

        let completed = {
            let guard = lock(&session);
            let done = flows.iter().any(|flow| flow.iter().all(|stage| guard.completed.iter().any(|c| c == stage)));
            if !done {
                return Err(challenge(None, &guard));
            }
            Completed { registration_token: guard.registration_token.clone() }
        };
        self.sessions.invalidate(&session_id).await;
        Ok(completed)
    }
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn challenge_then_complete() {
        let uia = Uia::new(Duration::from_secs(60));
        let err = uia.authenticate(None, &[&[DUMMY]], json!({}), |_, _| async { Ok(StageResult::Done) }).await;
        let body = err.unwrap_err().body();
        assert_eq!(body["flows"][0]["stages"][0], DUMMY);
        assert!(body.get("errcode").is_none());
        let session = body["session"].as_str().unwrap().to_owned();

        let auth = json!({ "type": DUMMY, "session": session });
        let ok = uia.authenticate(Some(&auth), &[&[DUMMY]], json!({}), |_, _| async { Ok(StageResult::Done) }).await;
        assert!(ok.is_ok());
        // A finished session cannot be replayed.
        let again = uia.authenticate(Some(&auth), &[&[DUMMY]], json!({}), |_, _| async { Ok(StageResult::Done) }).await;
        assert_eq!(again.unwrap_err().status, 400);
    }

    #[tokio::test]
    async fn failed_stage_reports_error_in_401() {
        let uia = Uia::new(Duration::from_secs(60));
        let auth = json!({ "type": PASSWORD, "password": "x" });
        let err = uia
            .authenticate(Some(&auth), &[&[PASSWORD]], json!({}), |_, _| async {
                Ok(StageResult::Failed(Error::forbidden("Invalid password")))
            })
            .await
            .unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(err.body()["errcode"], "M_FORBIDDEN");
    }

    #[tokio::test]
    async fn stage_not_offered() {
        let uia = Uia::new(Duration::from_secs(60));
        let auth = json!({ "type": DUMMY });
        let err = uia
            .authenticate(Some(&auth), &[&[PASSWORD]], json!({}), |_, _| async { Ok(StageResult::Done) })
            .await
            .unwrap_err();
        assert_eq!(err.status, 401);
        assert_eq!(err.body()["errcode"], "M_UNRECOGNIZED");
    }
}
