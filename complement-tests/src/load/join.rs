//! `join`: every request is a fresh user's POST /join/{roomId} into one
//! public room that grows with each join.
//!
//! Setup creates the room, registers `--members` users who join it, and
//! registers the users of the measured phase (`--joiners`, default
//! `--requests`, else 1000); the run ends when each of them has joined once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, SETUP_PARALLELISM, Scenario, Session, bounded, rooms};

/// Fresh users for the measured phase without --joiners or --requests.
const DEFAULT_JOINERS: u64 = 1000;

struct Join {
    room_id: String,
    members: usize,
    joiners: Vec<Session>,
    next: AtomicUsize,
    joined: AtomicUsize,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let n_members = ctx.opts.members;
        let n_joiners = ctx.opts.joiners.or(ctx.opts.requests).unwrap_or(DEFAULT_JOINERS);
        let n_joiners = usize::try_from(n_joiners).map_err(|_| "too many joiners".to_owned())?;
        if n_joiners == 0 {
            return Err("--joiners must be at least 1".to_owned());
        }
        let creator = ctx.register_many("jc", 1).await?.remove(0);
        let room_id = rooms::create_preset(ctx, &creator.access_token, "public_chat", "load join room").await?;
        let members = ctx.register_many("jm", n_members).await?;
        bounded("members joining", members.len(), SETUP_PARALLELISM, |i| {
            rooms::join(ctx, &members[i].access_token, &room_id)
        })
        .await?;
        let joiners = ctx.register_many("jj", n_joiners).await?;
        eprintln!("  room {room_id} has {} members; {n_joiners} users ready to join", n_members + 1);
        Ok(Arc::new(Join {
            room_id,
            members: n_members + 1,
            joiners,
            next: AtomicUsize::new(0),
            joined: AtomicUsize::new(0),
        }) as Arc<dyn Scenario>)
    }
    .boxed()
}

impl Scenario for Join {
    fn request<'a>(&'a self, ctx: &'a Ctx, _worker: usize, _seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let user = self.joiners.get(i).ok_or("no pre-registered joiner left")?;
            rooms::join(ctx, &user.access_token, &self.room_id).await?;
            self.joined.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        .boxed()
    }

    fn max_requests(&self) -> Option<u64> {
        Some(self.joiners.len() as u64)
    }

    fn notes(&self) -> Vec<String> {
        let joined = self.joined.load(Ordering::Relaxed);
        vec![format!(
            "room members: {} before the measured phase, {} after ({joined} joined)",
            self.members,
            self.members + joined
        )]
    }
}
