//! `login`: password login of one pre-registered user per worker.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::{Ctx, Scenario, Session};

struct Login {
    users: Vec<Session>,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let users = ctx.register_users("l", ctx.concurrency).await?;
        Ok(Arc::new(Login { users }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for Login {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, _seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let user = &self.users[worker % self.users.len()];
            let body = json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user.localpart },
                "password": user.password,
            });
            let (status, resp) = ctx.send(reqwest::Method::POST, "/_matrix/client/v3/login", None, Some(&body)).await?;
            if status != 200 || !resp["access_token"].is_string() {
                return Err(format!("login: {status} {resp}"));
            }
            Ok(())
        }
        .boxed()
    }
}
