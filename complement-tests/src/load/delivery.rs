//! `sync-latency` and `fanout`: how fast a message reaches the members of a
//! room who hold a `/sync` long-poll.
//!
//! Setup registers one sender and `--receivers` members, who join one public
//! room and each make an initial sync (small filter) for a token. Each
//! receiver then loops: long-poll `/sync?since=..&timeout=30000`, note the
//! instant it returned for every message of this run in it, re-poll at once
//! with the new `next_batch`. The sender sends `--messages` messages one at a
//! time; after each it waits until every receiver has it (or 30 s), then
//! until every receiver has sent its next poll, then `--gap` more, so that all
//! are waiting in the server when the next message is sent.
//!
//! Latency of a (receiver, message) pair = the instant the receiver's poll
//! returned the message - the instant the sender's PUT returned. A receiver can
//! get the event before the sender's PUT returns; such pairs count as 1 µs and
//! are reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::phased::{Errors, Meter, PhasedOpts, PhasedReport, new_histogram, record};
use super::{Ctx, SETUP_PARALLELISM, Session, bounded, rooms, sync_api};

/// How long a receiver's long-poll waits, and the sender for one message.
const POLL_TIMEOUT_MS: u64 = 30_000;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

struct Params {
    scenario: &'static str,
    receivers: usize,
    messages: usize,
    gap: Duration,
}

pub fn run_sync_latency<'a>(ctx: &'a Ctx, opts: &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>> {
    let params = Params {
        scenario: "sync-latency",
        receivers: opts.receivers.unwrap_or(100),
        messages: opts.messages.unwrap_or(200),
        gap: opts.gap.unwrap_or(Duration::from_millis(5)),
    };
    run(ctx, opts, params).boxed()
}

pub fn run_fanout<'a>(ctx: &'a Ctx, opts: &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>> {
    let params = Params {
        scenario: "fanout",
        receivers: opts.receivers.unwrap_or(1000),
        messages: opts.messages.unwrap_or(10),
        gap: opts.gap.unwrap_or(Duration::from_millis(50)),
    };
    run(ctx, opts, params).boxed()
}

/// What a receiver tells the sender: (receiver, message seq, instant its poll returned).
type Arrival = (usize, usize, Instant);

async fn run(ctx: &Ctx, opts: &PhasedOpts, p: Params) -> Result<PhasedReport, String> {
    if p.receivers == 0 || p.messages == 0 {
        return Err("--receivers and --messages must be at least 1".to_owned());
    }
    let mut users = ctx.register_many("d", p.receivers + 1).await?;
    let sender = users.remove(0);
    let room_id = rooms::create_preset(ctx, &sender.access_token, "public_chat", "load delivery room").await?;
    bounded("receivers joining", users.len(), SETUP_PARALLELISM, |i| {
        rooms::join(ctx, &users[i].access_token, &room_id)
    })
    .await?;
    let filter = sync_api::small_filter(10);
    let tokens = bounded("initial syncs", users.len(), SETUP_PARALLELISM, |i| {
        let (user, filter) = (&users[i], &filter);
        async move { sync_api::next_batch(&sync_api::sync(ctx, &user.access_token, None, 0, Some(filter)).await?) }
    })
    .await?;
    eprintln!("  {} receivers in room {room_id}", users.len());

    let marker = format!("{} delivery", ctx.run_id);
    let polls_sent = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<String>();
    let shared = Arc::new((ctx.clone(), room_id.clone(), filter, marker.clone()));
    let mut tasks = Vec::with_capacity(users.len());
    for (i, (user, since)) in users.into_iter().zip(tokens).enumerate() {
        let (shared, tx, err_tx, polls_sent) = (shared.clone(), tx.clone(), err_tx.clone(), polls_sent.clone());
        tasks.push(tokio::spawn(async move {
            receive(i, &user, since, &shared.0, &shared.1, &shared.2, &shared.3, &tx, &err_tx, &polls_sent).await
        }));
    }
    let n = tasks.len() as u64;
    wait_for_polls(&polls_sent, n).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut put_hist = new_histogram();
    let mut pair_hist = new_histogram();
    let mut pair_from_put_start = new_histogram();
    let mut all_hist = new_histogram();
    let mut errors = Errors::default();
    let mut early = 0u64;
    let mut missing = 0u64;
    let mut polls_target = n;
    let meter = Meter::start(opts);
    for m in 0..p.messages {
        let txn = format!("{}.delivery.{m}", ctx.run_id);
        let put_start = Instant::now();
        let sent = rooms::send_text(ctx, &sender.access_token, &room_id, &txn, &format!("{marker} {m}")).await;
        let put_done = Instant::now();
        record(&mut put_hist, put_done - put_start);
        if let Err(e) = sent {
            errors.add(e);
            continue;
        }
        let mut got: HashMap<usize, Instant> = HashMap::new();
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        while got.len() < p.receivers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((r, seq, at))) if seq == m => {
                    got.entry(r).or_insert(at);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(e) = err_rx.try_recv() {
            errors.add(e);
        }
        if got.len() < p.receivers {
            missing += (p.receivers - got.len()) as u64;
            errors.add(format!("message {m}: {} of {} receivers got it within 30 s", got.len(), p.receivers));
        }
        let mut last = Duration::ZERO;
        for at in got.values() {
            if *at < put_done {
                early += 1;
            }
            let d = at.saturating_duration_since(put_done);
            last = last.max(d);
            record(&mut pair_hist, d);
            record(&mut pair_from_put_start, at.saturating_duration_since(put_start));
        }
        if got.len() == p.receivers {
            record(&mut all_hist, last);
        }
        // Every receiver that got the message polls again; wait until all have
        // sent their next request, then a little for the server to take them in.
        polls_target += got.len() as u64;
        wait_for_polls(&polls_sent, polls_target).await;
        tokio::time::sleep(p.gap).await;
    }
    let receivers = p.receivers;
    let mut report = PhasedReport::new(p.scenario, ctx);
    let (samples, count) = (errors.samples.clone(), errors.count);
    report.push(meter.finish(
        ctx,
        "delivery (PUT returned -> long-poll returned, every receiver x message)",
        receivers,
        &pair_hist,
        count,
        samples,
    ));
    report.push(meter.finish(
        ctx,
        "all delivered (PUT returned -> last receiver got it, per message)",
        receivers,
        &all_hist,
        0,
        Vec::new(),
    ));
    report.push(meter.finish(
        ctx,
        "delivery from PUT start (every receiver x message)",
        receivers,
        &pair_from_put_start,
        0,
        Vec::new(),
    ));
    report.push(meter.finish(ctx, "sender PUT", 1, &put_hist, 0, Vec::new()));
    for task in &tasks {
        task.abort();
    }
    report.notes.push(format!(
        "{receivers} receivers, {} messages one at a time, gap {:?}; the four phases share one measured window \
         (CPU and memory are for all of it)",
        p.messages, p.gap
    ));
    report.notes.push(format!(
        "{early} of {} deliveries returned before the sender's PUT did (counted as 1 µs); {missing} missing",
        pair_hist.len()
    ));
    Ok(report)
}

/// Waits until at least `target` polls have been sent (at most 30 s).
async fn wait_for_polls(polls_sent: &AtomicU64, target: u64) {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while polls_sent.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// One receiver's long-poll loop (until aborted).
#[allow(clippy::too_many_arguments)]
async fn receive(
    i: usize,
    user: &Session,
    mut since: String,
    ctx: &Ctx,
    room_id: &str,
    filter: &str,
    marker: &str,
    tx: &mpsc::UnboundedSender<Arrival>,
    err_tx: &mpsc::UnboundedSender<String>,
    polls_sent: &AtomicU64,
) {
    loop {
        polls_sent.fetch_add(1, Ordering::Relaxed);
        let (next, bodies) =
            match sync_api::sync_bodies(ctx, &user.access_token, &since, POLL_TIMEOUT_MS, filter, room_id).await {
                Ok(resp) => resp,
                Err(e) => {
                    let _ = err_tx.send(format!("receiver {i}: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        let at = Instant::now();
        for body in bodies.iter().flatten() {
            let seq = body.strip_prefix(marker).and_then(|rest| rest.trim().parse::<usize>().ok());
            if let Some(seq) = seq {
                let _ = tx.send((i, seq, at));
            }
        }
        since = next;
    }
}
