//! Running a scenario with N concurrent workers for a duration or a request count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::{ProcessSample, Report};
use super::{Ctx, Scenario};

/// How a run ends: at the deadline, or when `max_requests` have been started.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub duration: Duration,
    pub max_requests: Option<u64>,
}

/// At most this many error messages are kept in the report.
const ERROR_SAMPLES: usize = 10;

struct WorkerResult {
    histogram: Histogram<u64>,
    errors: u64,
    samples: Vec<String>,
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, from 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `scenario` and measures it (latency of every request, CPU time of this
/// process and, given its pid, of the server).
pub async fn run(
    ctx: Arc<Ctx>,
    scenario: Arc<dyn Scenario>,
    scenario_name: &str,
    limits: Limits,
    server_pid: Option<u32>,
) -> Report {
    let started_requests = Arc::new(AtomicU64::new(0));
    let server_before = server_pid.and_then(ProcessSample::read);
    let cpu_before = super::report::own_cpu_seconds();
    let start = Instant::now();
    let deadline = start + limits.duration;

    let mut tasks = Vec::with_capacity(ctx.concurrency);
    for worker in 0..ctx.concurrency {
        let ctx = ctx.clone();
        let scenario = scenario.clone();
        let started = started_requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = WorkerResult { histogram: new_histogram(), errors: 0, samples: Vec::new() };
            let mut seq = 0u64;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(max) = limits.max_requests
                    && started.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let t = Instant::now();
                let remaining = deadline.saturating_duration_since(t);
                let outcome =
                    tokio::time::timeout(remaining + Duration::from_secs(30), scenario.request(&ctx, worker, seq))
                        .await
                        .unwrap_or_else(|_| Err("request timed out".to_owned()));
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                result.histogram.saturating_record(micros);
                if let Err(e) = outcome {
                    result.errors += 1;
                    if result.samples.len() < ERROR_SAMPLES {
                        result.samples.push(e);
                    }
                }
                seq += 1;
            }
            result
        }));
    }

    let mut histogram = new_histogram();
    let mut errors = 0;
    let mut samples = Vec::new();
    for task in tasks {
        let result = task.await.expect("worker task panicked");
        histogram.add(&result.histogram).expect("same histogram bounds");
        errors += result.errors;
        for s in result.samples {
            if samples.len() < ERROR_SAMPLES {
                samples.push(s);
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu_after = super::report::own_cpu_seconds();
    let server_after = server_pid.and_then(ProcessSample::read);
    Report::new(
        scenario_name,
        &ctx,
        &histogram,
        errors,
        samples,
        elapsed,
        cpu_after - cpu_before,
        server_before.zip(server_after),
    )
}
