//! `whoami`: authenticated GET /account/whoami, one pre-registered user per worker.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, Scenario, Session};

struct Whoami {
    users: Vec<Session>,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let users = ctx.register_users("w", ctx.concurrency).await?;
        Ok(Arc::new(Whoami { users }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for Whoami {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, _seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let user = &self.users[worker % self.users.len()];
            let (status, resp) = ctx
                .send(reqwest::Method::GET, "/_matrix/client/v3/account/whoami", Some(&user.access_token), None)
                .await?;
            if status != 200 || resp["user_id"] != user.user_id.as_str() {
                return Err(format!("whoami: {status} {resp}"));
            }
            Ok(())
        }
        .boxed()
    }
}
