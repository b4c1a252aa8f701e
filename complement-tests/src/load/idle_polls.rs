//! `idle-longpolls`: what holding many idle `/sync` long-polls costs the server.
//!
//! Setup registers `--users` users (default: one per poll) and makes an
//! initial sync for each (small filter, no rooms) for a token. The run then
//! opens `--polls` connections, each sending one
//! `/sync?since=..&timeout=60000` (user k % users; see below for the timeout), over raw TCP so that "held"
//! means exactly "the request was written and no byte of an answer came
//! back". It measures the server's resident memory before the polls, while
//! they are held and after they are dropped, and its CPU time over `--idle`
//! (10 s) while they are held with nothing happening.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::phased::{Meter, PhasedOpts, PhasedReport, new_histogram, record};
use super::report::ProcessSample;
use super::{Ctx, SETUP_PARALLELISM, bounded, rooms, sync_api};

/// Connections opened at once.
const OPEN_PARALLELISM: usize = 64;
/// The long-poll timeout: longer than setup + settle + idle.
const POLL_TIMEOUT_MS: u64 = 60_000;
/// Time given to the server to take in the last requests before measuring.
const SETTLE: Duration = Duration::from_secs(2);

pub fn run<'a>(ctx: &'a Ctx, opts: &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>> {
    run_inner(ctx, opts).boxed()
}

async fn run_inner(ctx: &Ctx, opts: &PhasedOpts) -> Result<PhasedReport, String> {
    let polls = opts.polls.unwrap_or(10_000);
    let n_users = opts.users.unwrap_or(polls).min(polls);
    let idle = opts.idle.unwrap_or(Duration::from_secs(10));
    if polls == 0 || n_users == 0 {
        return Err("--polls and --users must be at least 1".to_owned());
    }
    let Some(pid) = opts.server_pid else {
        return Err("idle-longpolls measures the server: give --server-pid".to_owned());
    };
    let addr = ctx
        .base
        .strip_prefix("http://")
        .ok_or("idle-longpolls speaks plain HTTP/1.1: the --url must be http://host:port")?
        .to_owned();
    let users = ctx.register_many("i", n_users).await?;
    let filter = sync_api::small_filter(1);
    let tokens = bounded("initial syncs", users.len(), SETUP_PARALLELISM, |i| {
        let (user, filter) = (&users[i], &filter);
        async move { sync_api::next_batch(&sync_api::sync(ctx, &user.access_token, None, 0, Some(filter)).await?) }
    })
    .await?;
    // Poll k is user k % users's. Polls of one user differ in their timeout by a
    // millisecond each: a server that shares identical in-flight requests
    // (Synapse does, by user, token, filter and timeout) must hold each one.
    let requests: Vec<String> = (0..polls)
        .map(|k| {
            let (user, since) = (&users[k % users.len()], &tokens[k % users.len()]);
            let timeout = POLL_TIMEOUT_MS + (k / users.len()) as u64;
            format!(
                "GET /_matrix/client/v3/sync?timeout={timeout}&since={}&filter={} HTTP/1.1\r\n\
                 Host: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
                rooms::encode(since),
                rooms::encode(&filter),
                user.access_token
            )
        })
        .collect();
    // Registration (argon2's 19 MiB buffers) leaves memory the allocator
    // returns only after a while: wait until the figure is steady.
    let before = settled(pid).await?;

    // Open the polls.
    let meter = Meter::start(opts);
    let opened = bounded("opening long-polls", polls, OPEN_PARALLELISM, |k| {
        let (request, addr) = (&requests[k], &addr);
        async move {
            let t = Instant::now();
            let mut stream = TcpStream::connect(addr.as_str()).await.map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            Ok((stream, t.elapsed()))
        }
    })
    .await?;
    let mut open_hist = new_histogram();
    let mut streams = Vec::with_capacity(opened.len());
    for (stream, took) in opened {
        record(&mut open_hist, took);
        streams.push(stream);
    }
    let mut report = PhasedReport::new("idle-longpolls", ctx);
    report.push(meter.finish(
        ctx,
        "open (connect + write one long-poll request)",
        OPEN_PARALLELISM,
        &open_hist,
        0,
        Vec::new(),
    ));

    tokio::time::sleep(SETTLE).await;
    let mut done = vec![false; streams.len()];
    let answered_before_idle = answered(&streams, &mut done);
    let held_start = ProcessSample::read(pid).ok_or("cannot read the server's /proc entry")?;
    let meter = Meter::start(opts);
    tokio::time::sleep(idle).await;
    let held_end = ProcessSample::read(pid).ok_or("cannot read the server's /proc entry")?;
    let mut idle_phase =
        meter.finish(ctx, "idle (polls held, nothing happening)", polls, &new_histogram(), 0, Vec::new());
    let answered_after_idle = answered(&streams, &mut done);
    idle_phase.requests = (polls - answered_after_idle) as u64;
    report.push(idle_phase);

    drop(streams);
    let after = settled(pid).await?;

    let kib = |s: &ProcessSample| s.rss_kib.unwrap_or(0) as f64;
    let extra_kib = kib(&held_end) - kib(&before);
    let idle_cpu = held_end.cpu_seconds - held_start.cpu_seconds;
    report.figure("server rss before the polls", kib(&before) / 1024.0, "MiB");
    report.figure("server rss while held", kib(&held_end) / 1024.0, "MiB");
    report.figure("server extra rss while held", extra_kib / 1024.0, "MiB");
    report.figure("server extra rss per poll", extra_kib / polls as f64, "KiB");
    report.figure("server rss after the polls were dropped", kib(&after) / 1024.0, "MiB");
    report.figure("server peak rss", held_end.hwm_kib.unwrap_or(0) as f64 / 1024.0, "MiB");
    report.figure("server cpu while idle", 100.0 * idle_cpu / idle.as_secs_f64(), "% of one core");
    report.figure("polls held through the idle phase", (polls - answered_after_idle) as f64, "polls");
    report.notes.push(format!(
        "{polls} long-polls (timeout {POLL_TIMEOUT_MS} ms) by {n_users} users; {answered_before_idle} answered before \
         the idle phase, {answered_after_idle} by its end; idle phase {idle:?}"
    ));
    if answered_after_idle > 0 {
        report.errors += answered_after_idle as u64;
    }
    Ok(report)
}

/// The server's sample once its resident memory changed by less than 1 MiB
/// over a second (at most 20 s).
async fn settled(pid: u32) -> Result<ProcessSample, String> {
    let read = || ProcessSample::read(pid).ok_or("cannot read the server's /proc entry".to_owned());
    let mut last = read()?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read()?;
        if now.rss_kib.unwrap_or(0).abs_diff(last.rss_kib.unwrap_or(0)) < 1024 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// How many of `streams` got an answer (or were closed) by now; `done`
/// remembers those seen answered before.
fn answered(streams: &[TcpStream], done: &mut [bool]) -> usize {
    let mut buf = [0u8; 256];
    for (stream, done) in streams.iter().zip(done.iter_mut()) {
        if !*done {
            *done = match stream.try_read(&mut buf) {
                Ok(_) => true,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
        }
    }
    done.iter().filter(|d| **d).count()
}
