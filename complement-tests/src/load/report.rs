//! What a load run measured, printed and written as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Ctx;

/// CPU time and memory of a process, read from /proc.
#[derive(Clone, Copy, Debug)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
}

impl ProcessSample {
    /// Reads /proc/PID/stat (utime + stime) and /proc/PID/status (VmRSS, VmHWM).
    pub fn read(pid: u32) -> Option<ProcessSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the
        // 14th and 15th fields of the whole line.
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        Some(ProcessSample {
            cpu_seconds: (utime + stime) / ticks.max(1.0),
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        })
    }
}

/// User + system CPU time of this process so far, in seconds (getrusage).
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[derive(Debug, Serialize)]
pub struct ServerStats {
    pub cpu_seconds: f64,
    /// Server CPU seconds per second of wall time (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub concurrency: usize,
    pub requests: u64,
    pub errors: u64,
    pub duration_seconds: f64,
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    pub client_cpu_seconds: f64,
    pub server: Option<ServerStats>,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        ctx: &Ctx,
        histogram: &Histogram<u64>,
        errors: u64,
        error_samples: Vec<String>,
        elapsed: Duration,
        client_cpu_seconds: f64,
        server: Option<(ProcessSample, ProcessSample)>,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let requests = histogram.len();
        let server = server.map(|(before, after)| {
            let cpu = after.cpu_seconds - before.cpu_seconds;
            ServerStats { cpu_seconds: cpu, cpu_cores: cpu / secs, rss_kib: after.rss_kib, hwm_kib: after.hwm_kib }
        });
        Report {
            scenario: scenario.to_owned(),
            url: ctx.base.clone(),
            concurrency: ctx.concurrency,
            requests,
            errors,
            duration_seconds: secs,
            throughput_rps: requests as f64 / secs,
            latency_ms: Latency {
                p50: ms(histogram.value_at_quantile(0.50)),
                p95: ms(histogram.value_at_quantile(0.95)),
                p99: ms(histogram.value_at_quantile(0.99)),
                max: ms(histogram.max()),
                mean: histogram.mean() / 1000.0,
            },
            client_cpu_seconds,
            server,
            error_samples,
        }
    }

    /// A human-readable summary.
    pub fn text(&self) -> String {
        let mut out = format!(
            "scenario {} against {} with {} workers\n\
             requests: {} in {:.2} s, errors: {}\n\
             throughput: {:.1} req/s\n\
             latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}\n\
             client cpu: {:.2} s\n",
            self.scenario,
            self.url,
            self.concurrency,
            self.requests,
            self.duration_seconds,
            self.errors,
            self.throughput_rps,
            self.latency_ms.p50,
            self.latency_ms.p95,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.latency_ms.mean,
            self.client_cpu_seconds,
        );
        if let Some(server) = &self.server {
            out.push_str(&format!(
                "server cpu: {:.2} s ({:.2} cores), rss {} KiB, peak rss {} KiB\n",
                server.cpu_seconds,
                server.cpu_cores,
                server.rss_kib.map_or("?".to_owned(), |v| v.to_string()),
                server.hwm_kib.map_or("?".to_owned(), |v| v.to_string()),
            ));
        }
        for sample in &self.error_samples {
            out.push_str(&format!("error: {sample}\n"));
        }
        out
    }
}
