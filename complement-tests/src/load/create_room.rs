//! `create-room`: every request creates a private room (one pre-registered user per worker).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, Scenario, Session, rooms};

struct CreateRoom {
    users: Vec<Session>,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let users = ctx.register_many("c", ctx.concurrency).await?;
        Ok(Arc::new(CreateRoom { users }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for CreateRoom {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let user = &self.users[worker % self.users.len()];
            rooms::create_preset(ctx, &user.access_token, "private_chat", &format!("load room {worker}.{seq}"))
                .await
                .map(drop)
        }
        .boxed()
    }
}
