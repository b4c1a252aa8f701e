//! What a load run measured, printed and written as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Ctx;
use super::dbsize::{Measurement, Sizes, total};

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
    /// On-disk database size (with `--db-size-path` or `--pg-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<DbStats>,
    /// Scenario-specific observations (see `Scenario::notes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DbStats {
    /// What was measured (paths, or pg_database_size).
    pub source: String,
    /// Before setup, before and after the measured phase, in bytes.
    pub before_setup_bytes: u64,
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// after - before (negative when e.g. a WAL checkpoint shrank a file).
    pub growth_bytes: i64,
    /// before - before_setup.
    pub setup_growth_bytes: i64,
    /// growth_bytes / successful requests.
    pub bytes_per_request: Option<f64>,
    pub parts: Vec<DbPart>,
    /// SQLite only: pages in use, WAL included (see `Measurement::sqlite_used`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_used: Option<SqliteUsed>,
}

#[derive(Debug, Serialize)]
pub struct SqliteUsed {
    pub before_setup_bytes: u64,
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub growth_bytes: i64,
    pub setup_growth_bytes: i64,
    pub bytes_per_request: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct DbPart {
    pub name: String,
    pub before_setup_bytes: u64,
    pub before_bytes: u64,
    pub after_bytes: u64,
}

impl DbStats {
    /// From the three measurements (parts matched by name) and the number of
    /// successful requests.
    pub fn new(
        source: String,
        before_setup: &Measurement,
        before: &Measurement,
        after: &Measurement,
        ok_requests: u64,
    ) -> DbStats {
        let per_request = |growth: i64| (ok_requests > 0).then(|| growth as f64 / ok_requests as f64);
        let sqlite_used = match (before_setup.sqlite_used, before.sqlite_used, after.sqlite_used) {
            (Some(s), Some(b), Some(a)) => Some(SqliteUsed {
                before_setup_bytes: s,
                before_bytes: b,
                after_bytes: a,
                growth_bytes: a as i64 - b as i64,
                setup_growth_bytes: b as i64 - s as i64,
                bytes_per_request: per_request(a as i64 - b as i64),
            }),
            _ => None,
        };
        let (before_setup, before, after) = (&before_setup.parts, &before.parts, &after.parts);
        let find = |sizes: &Sizes, name: &str| sizes.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b);
        let mut names: Vec<&String> = Vec::new();
        for (name, _) in before_setup.iter().chain(before).chain(after) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let parts: Vec<DbPart> = names
            .into_iter()
            .map(|name| DbPart {
                name: name.clone(),
                before_setup_bytes: find(before_setup, name),
                before_bytes: find(before, name),
                after_bytes: find(after, name),
            })
            .collect();
        let (before_setup, before, after) = (total(before_setup), total(before), total(after));
        let growth = after as i64 - before as i64;
        DbStats {
            source,
            before_setup_bytes: before_setup,
            before_bytes: before,
            after_bytes: after,
            growth_bytes: growth,
            setup_growth_bytes: before as i64 - before_setup as i64,
            bytes_per_request: per_request(growth),
            parts,
            sqlite_used,
        }
    }
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
            db: None,
            notes: Vec::new(),
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
        if let Some(db) = &self.db {
            out.push_str(&format!(
                "db size: {} -> {} bytes ({:+} bytes, {} per request; setup {:+} bytes) [{}]\n",
                db.before_bytes,
                db.after_bytes,
                db.growth_bytes,
                db.bytes_per_request.map_or("?".to_owned(), |b| format!("{b:.1}")),
                db.setup_growth_bytes,
                db.source,
            ));
            if db.parts.len() > 1 {
                for part in &db.parts {
                    out.push_str(&format!(
                        "  {}: {} -> {} bytes ({:+})\n",
                        part.name,
                        part.before_bytes,
                        part.after_bytes,
                        part.after_bytes as i64 - part.before_bytes as i64
                    ));
                }
            }
        }
        if let Some(used) = self.db.as_ref().and_then(|db| db.sqlite_used.as_ref()) {
            out.push_str(&format!(
                "sqlite pages in use: {} -> {} bytes ({:+} bytes, {} per request; setup {:+} bytes)\n",
                used.before_bytes,
                used.after_bytes,
                used.growth_bytes,
                used.bytes_per_request.map_or("?".to_owned(), |b| format!("{b:.1}")),
                used.setup_growth_bytes,
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for sample in &self.error_samples {
            out.push_str(&format!("error: {sample}\n"));
        }
        out
    }
}
