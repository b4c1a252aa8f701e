//! `messages`: backward pagination through one room's history.
//!
//! Setup fills one public room with `--events` m.text messages, sent
//! concurrently by one user per worker, then walks the history once (not
//! measured) to collect every page's `end` token. Each request then fetches
//! `--page` events backwards, either from the end of the room (no `from`) or
//! from a random `end` token seen earlier, so pages spread evenly through the
//! history.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, SETUP_PARALLELISM, Scenario, Session, bounded, mix64, rooms};

/// One request in this many starts from the end of the room.
const FROM_END_ONE_IN: u64 = 10;

struct Messages {
    users: Vec<Session>,
    room_id: String,
    page: usize,
    tokens: Mutex<Tokens>,
    seed: u64,
    from_end: AtomicU64,
    from_token: AtomicU64,
    exhausted: AtomicU64,
    events: AtomicU64,
    short_pages: AtomicU64,
}

#[derive(Default)]
struct Tokens {
    list: Vec<String>,
    seen: HashSet<String>,
}

pub fn prepare(ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async move {
        let n_events = ctx.opts.events;
        let page = ctx.opts.page;
        if page == 0 {
            return Err("--page must be at least 1".to_owned());
        }
        let users = ctx.register_many("m", ctx.concurrency).await?;
        let room_id = rooms::create_preset(ctx, &users[0].access_token, "public_chat", "load messages room").await?;
        bounded("joining room", users.len() - 1, SETUP_PARALLELISM, |j| {
            rooms::join(ctx, &users[j + 1].access_token, &room_id)
        })
        .await?;
        let parallel = ctx.concurrency.min(SETUP_PARALLELISM);
        let room = &room_id;
        let users_ref = &users;
        bounded("sending events", n_events, parallel, |i| async move {
            let worker = i % users_ref.len();
            let txn = format!("{}.fill.{i}", ctx.run_id);
            let text = rooms::message_text(worker, i as u64);
            rooms::send_text(ctx, &users_ref[worker].access_token, room, &txn, &text).await
        })
        .await?;
        eprintln!("  room {room_id} has {n_events} messages from {} users", users.len());
        let tokens = walk(ctx, &users[0].access_token, &room_id, page).await?;
        eprintln!("  {} pages of {page} (walked once to collect their tokens)", tokens.list.len() + 1);
        let seed = mix64(ctx.run_id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
        Ok(Arc::new(Messages {
            users,
            room_id,
            page,
            tokens: Mutex::new(tokens),
            seed,
            from_end: AtomicU64::new(0),
            from_token: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            events: AtomicU64::new(0),
            short_pages: AtomicU64::new(0),
        }) as Arc<dyn Scenario>)
    }
    .boxed()
}

/// Pages backwards from the end to the start of the room; returns every `end` token.
async fn walk(ctx: &Ctx, token: &str, room_id: &str, page: usize) -> Result<Tokens, String> {
    let mut tokens = Tokens::default();
    let mut from: Option<String> = None;
    loop {
        let resp = rooms::messages_back(ctx, token, room_id, page, from.as_deref()).await?;
        let Some(end) = resp["end"].as_str() else { break };
        if !tokens.seen.insert(end.to_owned()) {
            return Err(format!("walking the room: end token {end} repeats"));
        }
        tokens.list.push(end.to_owned());
        if tokens.list.len() % 100 == 0 {
            eprintln!("  walking the room: {} pages", tokens.list.len());
        }
        from = Some(end.to_owned());
    }
    Ok(tokens)
}

impl Messages {
    /// A random token seen before, or None (start from the end).
    fn pick_from(&self, worker: usize, seq: u64) -> Option<String> {
        let r = mix64(self.seed ^ mix64((worker as u64) << 40 ^ seq));
        if r.is_multiple_of(FROM_END_ONE_IN) {
            return None;
        }
        let tokens = self.tokens.lock().expect("tokens lock");
        if tokens.list.is_empty() {
            return None;
        }
        Some(tokens.list[(r >> 8) as usize % tokens.list.len()].clone())
    }

    fn remember(&self, token: &str) {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        if !tokens.seen.contains(token) {
            tokens.seen.insert(token.to_owned());
            tokens.list.push(token.to_owned());
        }
    }
}

impl Scenario for Messages {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let user = &self.users[worker % self.users.len()];
            let from = self.pick_from(worker, seq);
            let resp = rooms::messages_back(ctx, &user.access_token, &self.room_id, self.page, from.as_deref()).await?;
            let counter = if from.is_some() { &self.from_token } else { &self.from_end };
            counter.fetch_add(1, Ordering::Relaxed);
            let len = resp["chunk"].as_array().map_or(0, Vec::len);
            self.events.fetch_add(len as u64, Ordering::Relaxed);
            match resp["end"].as_str() {
                Some(end) => {
                    if len < self.page {
                        self.short_pages.fetch_add(1, Ordering::Relaxed);
                    }
                    self.remember(end);
                }
                None => {
                    self.exhausted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn notes(&self) -> Vec<String> {
        let distinct = self.tokens.lock().expect("tokens lock").list.len();
        let from_end = self.from_end.load(Ordering::Relaxed);
        let from_token = self.from_token.load(Ordering::Relaxed);
        let events = self.events.load(Ordering::Relaxed);
        let pages = from_end + from_token;
        vec![
            format!(
                "pages: {pages} ({from_end} from the end, {from_token} from a seen token), \
                 {distinct} distinct end tokens seen, {} reached the start of the room",
                self.exhausted.load(Ordering::Relaxed)
            ),
            format!(
                "events returned: {events} ({:.1} per page; page size {}), {} short pages with an end token",
                events as f64 / pages.max(1) as f64,
                self.page,
                self.short_pages.load(Ordering::Relaxed)
            ),
        ]
    }
}
