//! `kith-load`: a load generator for Kith (or any Matrix homeserver).
//!
//! ```text
//! kith-load --url http://127.0.0.1:8008 --concurrency 64 --duration 10s whoami
//! ```
//!
//! Run the server with rate limits off (KITH_RATE_LIMITS__ENABLED=false) and,
//! unless `--shared-secret` is given, with open registration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use complement_tests::load::dbsize::DbSize;
use complement_tests::load::phased::{self, PhasedOpts};
use complement_tests::load::report::DbStats;
use complement_tests::load::runner::{self, Limits};
use complement_tests::load::{self, Ctx, SETUP_PARALLELISM, ScenarioOpts};

#[derive(Parser, Debug)]
#[command(about = "Load generator for Kith", after_help = scenarios_help())]
struct Args {
    /// Base URL of the client-server API.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// Number of concurrent workers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the measured phase runs (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests (whichever comes first with --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Register users through /_synapse/admin/v1/register with this shared secret.
    #[arg(long)]
    shared_secret: Option<String>,
    /// The server's process id: report its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Report the on-disk size of this file or directory before and after the
    /// measured phase (a file also counts its -wal and -shm siblings, e.g.
    /// DATA_DIR/kith.db). Repeatable.
    #[arg(long, value_name = "PATH", conflicts_with = "pg_url")]
    db_size_path: Vec<PathBuf>,
    /// Report pg_database_size(current_database()) of this PostgreSQL database
    /// before and after the measured phase.
    #[arg(long, value_name = "URL")]
    pg_url: Option<String>,
    /// `send`: number of rooms; worker i sends into room i % ROOMS [default:
    /// 10]. `initial-sync`: rooms the user is in [default: 50].
    #[arg(long)]
    rooms: Option<usize>,
    /// `messages`: messages the setup sends into the room.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// `messages`: events per page (the limit parameter).
    #[arg(long, default_value_t = 100)]
    page: usize,
    /// `join`: members who join the room during setup.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// `join`: fresh users registered during setup, one join each in the
    /// measured phase [default: --requests, else 1000].
    #[arg(long)]
    joiners: Option<u64>,
    /// `sync-latency`, `fanout`: long-polling receivers in the room [default:
    /// 100, fanout 1000].
    #[arg(long)]
    receivers: Option<usize>,
    /// `sync-latency`: messages sent one at a time [default: 200]; `fanout`:
    /// rounds of one message [default: 10].
    #[arg(long)]
    messages: Option<usize>,
    /// `sync-latency`, `fanout`: pause once every receiver polls again, before
    /// the next message [default: 5ms, fanout 50ms].
    #[arg(long, value_parser = parse_duration)]
    gap: Option<Duration>,
    /// `idle-longpolls`: concurrent idle long-polls [default: 10000].
    #[arg(long)]
    polls: Option<usize>,
    /// `idle-longpolls`: distinct users holding them [default: one per poll].
    #[arg(long)]
    users: Option<usize>,
    /// `idle-longpolls`: how long the polls are held idle [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    idle: Option<Duration>,
    /// `initial-sync`: messages in each room [default: 20].
    #[arg(long)]
    room_messages: Option<usize>,
    /// `keys`: devices in one /keys/claim [default: 100].
    #[arg(long)]
    claim_devices: Option<usize>,
    /// `keys`: users in one /keys/query [default: 1000].
    #[arg(long)]
    query_users: Option<usize>,
    /// `media-large`, `media-upload`: file size in MB [default: 100, 500].
    #[arg(long)]
    file_mb: Option<u64>,
    /// `media-thumbnail`: 12-megapixel JPEGs to upload and thumbnail once each.
    #[arg(long, default_value_t = 5)]
    images: usize,
    /// The scenario to run.
    scenario: String,
}

fn scenarios_help() -> String {
    let mut s = String::from("Scenarios (N workers repeat one request for --duration or --requests):\n");
    for def in load::SCENARIOS {
        s.push_str(&format!("  {:<14} {}\n", def.name, def.about));
    }
    s.push_str("Phased scenarios (a bounded workload; --concurrency and --duration do not apply):\n");
    for def in phased::PHASED_SCENARIOS {
        s.push_str(&format!("  {:<14} {}\n", def.name, def.about));
    }
    s
}

/// Raises this process's soft limit on open files to its hard limit (the
/// long-poll scenarios hold thousands of connections); returns the new limit.
fn raise_nofile_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return None;
            }
        }
        Some(limit.rlim_cur as u64)
    }
}

/// Runs a phased scenario; prints its report and writes it as JSON.
async fn run_phased(def: &phased::PhasedDef, args: &Args, ctx: &Ctx) -> ExitCode {
    let opts = PhasedOpts {
        receivers: args.receivers,
        messages: args.messages,
        gap: args.gap,
        polls: args.polls,
        users: args.users,
        idle: args.idle,
        rooms: args.rooms,
        room_messages: args.room_messages,
        requests: args.requests,
        claim_devices: args.claim_devices,
        query_users: args.query_users,
        server_pid: args.server_pid,
    };
    if let Some(limit) = raise_nofile_limit() {
        eprintln!("open files limit: {limit}");
    }
    eprintln!("running scenario {} ...", def.name);
    let start = std::time::Instant::now();
    let report = match (def.run)(ctx, &opts).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{} failed: {e}", def.name);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{} took {:.1} s in all", def.name, start.elapsed().as_secs_f64());
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let phased_def = phased::find(&args.scenario);
    let def = load::find(&args.scenario);
    if def.is_none() && phased_def.is_none() {
        eprintln!("unknown scenario {:?}\n{}", args.scenario, scenarios_help());
        return ExitCode::from(2);
    }
    if args.concurrency == 0 {
        eprintln!("--concurrency must be at least 1");
        return ExitCode::from(2);
    }
    // Phased scenarios hold one connection per long-poll: keep them all alive.
    let pool = if phased_def.is_some() { usize::MAX } else { args.concurrency.max(SETUP_PARALLELISM) };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let ctx = Arc::new(Ctx {
        http,
        base: args.url.trim_end_matches('/').to_owned(),
        concurrency: args.concurrency,
        shared_secret: args.shared_secret.clone(),
        run_id: format!("load{:x}", nanos % 0xffff_ffff),
        opts: ScenarioOpts {
            rooms: args.rooms.unwrap_or(10),
            events: args.events,
            page: args.page,
            members: args.members,
            joiners: args.joiners,
            requests: args.requests,
            file_mb: args.file_mb,
            images: args.images.max(1),
        },
        server_pid: args.server_pid,
    });
    let Some(def) = def else {
        let phased_def = phased_def.expect("checked above");
        return run_phased(phased_def, &args, &ctx).await;
    };
    let db_size = match (&args.pg_url, args.db_size_path.is_empty()) {
        (Some(url), _) => Some(DbSize::Postgres(url.clone())),
        (None, false) => Some(DbSize::Paths(args.db_size_path.clone())),
        (None, true) => None,
    };
    let measure_db = async |when: &str| match &db_size {
        Some(db) => match db.measure().await {
            Ok(sizes) => Ok(Some(sizes)),
            Err(e) => Err(format!("database size {when}: {e}")),
        },
        None => Ok(None),
    };
    let db_before_setup = match measure_db("before setup").await {
        Ok(sizes) => sizes,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };

    eprintln!("setting up scenario {} ...", def.name);
    let setup_start = std::time::Instant::now();
    let scenario = match (def.prepare)(&ctx).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("setup took {:.1} s", setup_start.elapsed().as_secs_f64());
    let db_before = match measure_db("before the run").await {
        Ok(sizes) => sizes,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let max_requests = match (args.requests, scenario.max_requests()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match max_requests {
        Some(n) => eprintln!("running for {:?} or {n} requests with {} workers ...", args.duration, args.concurrency),
        None => eprintln!("running for {:?} with {} workers ...", args.duration, args.concurrency),
    }
    let limits = Limits { duration: args.duration, max_requests };
    let mut report = runner::run(ctx, scenario.clone(), def.name, limits, args.server_pid).await;
    report.notes = scenario.notes();
    if let (Some(db), Some(before_setup), Some(before)) = (&db_size, &db_before_setup, &db_before) {
        match db.measure().await {
            Ok(after) => {
                let ok = report.requests.saturating_sub(report.errors);
                report.db = Some(DbStats::new(db.describe(), before_setup, before, &after, ok));
            }
            Err(e) => eprintln!("database size after the run: {e}"),
        }
    }
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
