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

/// `mi_option_purge_delay` (mimalloc.h, the same index in v2 and v3; the Rust
/// bindings have no constant for it).
#[cfg(not(feature = "system-alloc"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc (v3, the crate's default) gives pages that became free back to the
/// OS only a second later, and only when a later allocation or free gets round
/// to it: what a burst of work freed (an initial sync's responses, a fan-out)
/// stayed resident while the server idled. Purging at once measured 36.5 ->
/// 31.8 MiB after initial syncs of 50 rooms, CPU per request and per event the
/// same within this machine's spread (README). `MIMALLOC_PURGE_DELAY` still
/// overrides it.
#[cfg(not(feature = "system-alloc"))]
fn return_freed_pages_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options; mimalloc reads them at each use.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    #[cfg(not(feature = "system-alloc"))]
    return_freed_pages_at_once();
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

/// Transparent huge pages make every touched 2 MiB of heap resident in full.
/// mimalloc asks for them on its arenas (MADV_HUGEPAGE; built with `no_thp` it
/// does not) and a system set to `always` gives them anyway; Kith's heap is a
/// few MiB of small objects spread over those regions. Measured on a 2-core VM
/// (PostgreSQL): a fresh server 25 -> 18.5 MiB resident, 16 senders over 10
/// rooms for 20 s 85 -> 51 MiB. Disabling them for this process only (children
/// inherit it; Kith starts none) leaves the system's setting alone.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(not(target_os = "linux"))]
fn disable_transparent_huge_pages() {}

#[cfg(all(test, not(feature = "system-alloc")))]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3's default purge delay is 1,000 ms: reading 1,000 at this
        // index shows it is that option (no other option defaults to 1,000).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads and sets one of mimalloc's options.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            return_freed_pages_at_once();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 0);
        }
    }
}
