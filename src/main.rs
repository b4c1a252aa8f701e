use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kith::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

// glibc's allocator keeps each freed 19 MiB argon2 buffer and grows by one per
// password hash; mimalloc reuses them (and is faster for many small allocations).
// The `system-alloc` feature keeps the system allocator, for heap profilers
// (heaptrack) that watch malloc.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.generate_config {
        print!("{}", kith::config::EXAMPLE);
        return ExitCode::SUCCESS;
    }
    let config = match kith::config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kith: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal()).init();

    // Every long-poll holds a socket: lift the soft file limit to the hard one
    // (often 1024 → far more), so that tens of thousands of clients fit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kith: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::User(command)) => kith::cli::run_user_command(config, command).await,
            Some(Command::Media(command)) => kith::cli::run_media_command(config, command).await,
            None => kith::app::run(config, kith::app::shutdown_signal()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kith: {e:#}");
            ExitCode::FAILURE
        }
    }
}
