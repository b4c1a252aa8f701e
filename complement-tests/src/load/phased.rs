//! Scenarios that run their own bounded workload in named phases (setup is not
//! measured) instead of N workers repeating one request: delivery latency
//! through long-polls, idle long-polls, initial sync, E2EE keys.
//!
//! Each measured phase is a [`Report`] of its own (its samples' percentiles,
//! the tool's own CPU time and, given `--server-pid`, the server's CPU time and
//! memory over that phase); a run prints every phase and writes them all in one
//! [`PhasedReport`].

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::Ctx;
use super::report::{ProcessSample, Report, own_cpu_seconds};

/// Options of the phased scenarios; `None` means the scenario's own default.
#[derive(Clone, Debug, Default)]
pub struct PhasedOpts {
    /// `sync-latency`, `fanout`: long-polling receivers in the room.
    pub receivers: Option<usize>,
    /// `sync-latency`: messages sent; `fanout`: rounds of one message.
    pub messages: Option<usize>,
    /// `sync-latency`, `fanout`: pause after every receiver got a message,
    /// so that all are back in their long-poll before the next one.
    pub gap: Option<Duration>,
    /// `idle-longpolls`: concurrent long-polls.
    pub polls: Option<usize>,
    /// `idle-longpolls`: distinct users holding them (default: one per poll).
    pub users: Option<usize>,
    /// `idle-longpolls`: how long the polls are held idle while CPU is measured.
    pub idle: Option<Duration>,
    /// `initial-sync`: rooms the user is in.
    pub rooms: Option<usize>,
    /// `initial-sync`: messages per room.
    pub room_messages: Option<usize>,
    /// Measured requests per phase (`initial-sync`, `keys`).
    pub requests: Option<u64>,
    /// `keys`: devices in one `/keys/claim`.
    pub claim_devices: Option<usize>,
    /// `keys`: users in one `/keys/query`.
    pub query_users: Option<usize>,
    /// The server's process id, for its CPU time and memory.
    pub server_pid: Option<u32>,
}

pub type RunPhased = for<'a> fn(&'a Ctx, &'a PhasedOpts) -> BoxFuture<'a, Result<PhasedReport, String>>;

/// A named phased scenario.
pub struct PhasedDef {
    pub name: &'static str,
    pub about: &'static str,
    pub run: RunPhased,
}

/// Every phased scenario, by name.
pub const PHASED_SCENARIOS: &[PhasedDef] = &[
    PhasedDef {
        name: "sync-latency",
        about: "send -> long-poll delivery latency: --receivers (100) poll one room, one sender sends --messages (200) one at a time",
        run: super::delivery::run_sync_latency,
    },
    PhasedDef {
        name: "fanout",
        about: "time until all --receivers (1000) long-polling members got one message, over --messages (10) rounds",
        run: super::delivery::run_fanout,
    },
    PhasedDef {
        name: "idle-longpolls",
        about: "hold --polls (10000) idle /sync long-polls of --users (one per poll): server memory and CPU while idle",
        run: super::idle_polls::run,
    },
    PhasedDef {
        name: "initial-sync",
        about: "initial /sync of a user in --rooms (50) rooms of --room-messages (20), and empty incremental syncs",
        run: super::initial_sync::run,
    },
    PhasedDef {
        name: "keys",
        about: "/keys/claim for --claim-devices (100) devices, /keys/query for --query-users (1000) users",
        run: super::keys::run,
    },
];

pub fn find(name: &str) -> Option<&'static PhasedDef> {
    PHASED_SCENARIOS.iter().find(|s| s.name == name)
}

/// Everything a phased run measured.
#[derive(Debug, Serialize)]
pub struct PhasedReport {
    pub scenario: String,
    pub url: String,
    /// Samples over all phases (what the CI smoke checks is non-zero).
    pub requests: u64,
    pub errors: u64,
    pub phases: Vec<Report>,
    /// Figures that are not latency distributions (e.g. memory per long-poll).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<Figure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One named number with its unit.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl PhasedReport {
    pub fn new(scenario: &str, ctx: &Ctx) -> PhasedReport {
        PhasedReport {
            scenario: scenario.to_owned(),
            url: ctx.base.clone(),
            requests: 0,
            errors: 0,
            phases: Vec::new(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, phase: Report) {
        self.requests += phase.requests;
        self.errors += phase.errors;
        self.phases.push(phase);
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push(Figure { name: name.to_owned(), value, unit: unit.to_owned() });
    }

    pub fn text(&self) -> String {
        let mut out = format!("scenario {} against {}\n", self.scenario, self.url);
        for phase in &self.phases {
            out.push_str("\n--- phase ");
            out.push_str(&phase.text());
        }
        if !self.figures.is_empty() || !self.notes.is_empty() {
            out.push('\n');
        }
        for f in &self.figures {
            out.push_str(&format!("{}: {:.3} {}\n", f.name, f.value, f.unit));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }
}

/// Latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (at least 1 µs).
pub fn record(histogram: &mut Histogram<u64>, d: Duration) {
    histogram.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// Measures one phase: wall time, this process's CPU time, and the server's.
pub struct Meter {
    start: Instant,
    cpu: f64,
    server: Option<ProcessSample>,
    server_pid: Option<u32>,
    /// Set by `stop`: the phase's wall time, this process's CPU and the server's sample.
    stopped: Option<(Duration, f64, Option<ProcessSample>)>,
}

impl Meter {
    pub fn start(opts: &PhasedOpts) -> Meter {
        Meter {
            server: opts.server_pid.and_then(ProcessSample::read),
            server_pid: opts.server_pid,
            cpu: own_cpu_seconds(),
            start: Instant::now(),
            stopped: None,
        }
    }

    /// Ends the measured time before the tool's own work on the answers (parsing
    /// and checking them), which then counts in neither the phase's throughput
    /// nor its CPU time.
    pub fn stop(&mut self) {
        let server_after = self.server_pid.and_then(ProcessSample::read);
        self.stopped = Some((self.start.elapsed(), own_cpu_seconds() - self.cpu, server_after));
    }

    /// The phase's report: `histogram` holds its samples; `concurrency` is how
    /// many requests were in flight at most.
    pub fn finish(
        &self,
        ctx: &Ctx,
        name: &str,
        concurrency: usize,
        histogram: &Histogram<u64>,
        errors: u64,
        error_samples: Vec<String>,
    ) -> Report {
        let (elapsed, cpu, server_after) = self.stopped.unwrap_or_else(|| {
            (self.start.elapsed(), own_cpu_seconds() - self.cpu, self.server_pid.and_then(ProcessSample::read))
        });
        let mut report =
            Report::new(name, ctx, histogram, errors, error_samples, elapsed, cpu, self.server.zip(server_after));
        report.concurrency = concurrency;
        report
    }
}

/// Keeps the first few error messages.
#[derive(Default)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, e: String) {
        self.count += 1;
        if self.samples.len() < 10 {
            self.samples.push(e);
        }
    }
}
