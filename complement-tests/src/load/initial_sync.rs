//! `initial-sync`: a user in `--rooms` (50) rooms, each with
//! `--room-messages` (20) messages, syncs from scratch (no `since`, default
//! filter) `--requests` (100) times one after the other, then syncs
//! incrementally with nothing new (`timeout=0`, the latest token) ten times as
//! often. Latency is the round trip on loopback, response body read in full
//! but not parsed (the first response of each kind is parsed and checked).

use std::time::Instant;

use super::phased::{Errors, Meter, PhasedOpts, PhasedReport, new_histogram, record};
use super::{Ctx, SETUP_PARALLELISM, bounded, rooms, sync_api};
use futures::FutureExt;
use futures::future::BoxFuture;

pub fn run<'a>(ctx: &'a Ctx, opts: &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>> {
    run_inner(ctx, opts).boxed()
}

/// GET `path` with `token`, reading the whole body without parsing it; an
/// error for any status but 200.
async fn get_raw(ctx: &Ctx, path: &str, token: &str) -> Result<(), String> {
    let resp = ctx.http.get(ctx.url(path)).bearer_auth(token).send().await.map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    if status != 200 {
        return Err(format!("{path}: {status} {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

async fn run_inner(ctx: &Ctx, opts: &PhasedOpts) -> Result<PhasedReport, String> {
    let n_rooms = opts.rooms.unwrap_or(50);
    let per_room = opts.room_messages.unwrap_or(20);
    let requests = opts.requests.unwrap_or(100);
    if n_rooms == 0 || requests == 0 {
        return Err("--rooms and --requests must be at least 1".to_owned());
    }
    let user = ctx.register_many("is", 1).await?.remove(0);
    let token = &user.access_token;
    // One at a time: see `send.rs` on concurrent createRoom by one user.
    let room_ids = bounded("creating rooms", n_rooms, 1, |i| async move {
        rooms::create_preset(ctx, token, "private_chat", &format!("load sync room {i}")).await
    })
    .await?;
    let room_ids = &room_ids;
    bounded("sending messages", n_rooms * per_room, SETUP_PARALLELISM, |k| async move {
        let (room, seq) = (k % n_rooms, k / n_rooms);
        let txn = format!("{}.is.{k}", ctx.run_id);
        rooms::send_text(ctx, token, &room_ids[room], &txn, &rooms::message_text(room, seq as u64)).await
    })
    .await?;
    eprintln!("  one user in {n_rooms} rooms with {per_room} messages each");

    // Check one of each (not measured), which also warms the server's caches.
    let first = sync_api::sync(ctx, token, None, 0, None).await?;
    let joined = first["rooms"]["join"].as_object().map_or(0, |j| j.len());
    if joined != n_rooms {
        return Err(format!("initial sync shows {joined} joined rooms, expected {n_rooms}"));
    }
    let since = sync_api::next_batch(&first)?;
    let initial_bytes = serde_json::to_vec(&first).map_or(0, |v| v.len());
    let empty = sync_api::sync(ctx, token, Some(&since), 0, None).await?;
    let empty_rooms = empty["rooms"]["join"].as_object().map_or(0, |j| j.len());
    if empty_rooms != 0 {
        return Err(format!("incremental sync with nothing new shows {empty_rooms} rooms: {empty}"));
    }

    let mut report = PhasedReport::new("initial-sync", ctx);
    let initial_path = "/_matrix/client/v3/sync?timeout=0".to_owned();
    let incremental_path = format!("/_matrix/client/v3/sync?timeout=0&since={}", rooms::encode(&since));
    for (name, path, n) in [
        (format!("initial sync, {n_rooms} rooms x {per_room} messages"), &initial_path, requests),
        ("incremental sync, nothing new (timeout=0), loopback round trip".to_owned(), &incremental_path, requests * 10),
    ] {
        let mut hist = new_histogram();
        let mut errors = Errors::default();
        let meter = Meter::start(opts);
        for _ in 0..n {
            let t = Instant::now();
            match get_raw(ctx, path, token).await {
                Ok(()) => record(&mut hist, t.elapsed()),
                Err(e) => errors.add(e),
            }
        }
        report.push(meter.finish(ctx, &name, 1, &hist, errors.count, errors.samples));
    }
    report.figure("initial sync response size", initial_bytes as f64 / 1024.0, "KiB");
    report.notes.push("one request at a time, over one keep-alive connection".to_owned());
    Ok(report)
}
