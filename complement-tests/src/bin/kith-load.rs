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
use complement_tests::load::runner::{self, Limits};
use complement_tests::load::{self, Ctx};

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
    /// The scenario to run.
    scenario: String,
}

fn scenarios_help() -> String {
    let mut s = String::from("Scenarios:\n");
    for def in load::SCENARIOS {
        s.push_str(&format!("  {:<10} {}\n", def.name, def.about));
    }
    s
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
    let Some(def) = load::find(&args.scenario) else {
        eprintln!("unknown scenario {:?}\n{}", args.scenario, scenarios_help());
        return ExitCode::from(2);
    };
    if args.concurrency == 0 {
        eprintln!("--concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
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
    });

    eprintln!("setting up scenario {} ...", def.name);
    let scenario = match (def.prepare)(&ctx).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("running for {:?} with {} workers ...", args.duration, args.concurrency);
    let limits = Limits { duration: args.duration, max_requests: args.requests };
    let report = runner::run(ctx, scenario, def.name, limits, args.server_pid).await;
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
