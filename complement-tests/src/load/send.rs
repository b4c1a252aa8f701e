//! `send`: every request sends one m.text message. Worker i is user i, a
//! member of room i % `--rooms`; the first user creates the rooms (public_chat)
//! and the others join theirs.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, SETUP_PARALLELISM, Scenario, Session, bounded, rooms};

struct SendMessages {
    users: Vec<Session>,
    rooms: Vec<String>,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let n_rooms = ctx.opts.rooms;
        if n_rooms == 0 {
            return Err("--rooms must be at least 1".to_owned());
        }
        let users = ctx.register_many("s", ctx.concurrency).await?;
        let creator = &users[0];
        // One at a time: concurrent createRoom calls by the same user can get
        // identical m.room.create events (same sender, content and
        // millisecond), so room version 12 derives the same room id.
        let rooms = bounded("creating rooms", n_rooms, 1, |i| async move {
            rooms::create_preset(ctx, &creator.access_token, "public_chat", &format!("load send room {i}")).await
        })
        .await?;
        // User 0 created (and so is in) every room; the others join room i % R.
        bounded("joining rooms", users.len() - 1, SETUP_PARALLELISM, |j| {
            let i = j + 1;
            rooms::join(ctx, &users[i].access_token, &rooms[i % n_rooms])
        })
        .await?;
        eprintln!("  {} users in {} rooms", users.len(), n_rooms);
        Ok(Arc::new(SendMessages { users, rooms }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for SendMessages {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let user = &self.users[worker % self.users.len()];
            let room = &self.rooms[worker % self.rooms.len()];
            let txn = format!("{}.{worker}.{seq}", ctx.run_id);
            rooms::send_text(ctx, &user.access_token, room, &txn, &rooms::message_text(worker, seq)).await.map(drop)
        }
        .boxed()
    }

    fn notes(&self) -> Vec<String> {
        vec![format!("{} senders over {} rooms", self.users.len(), self.rooms.len())]
    }
}
