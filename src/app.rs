//! Start-up and shutdown: open storage, build services, serve until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::Services;
use crate::service::signing_key::SigningKey;
use crate::storage;

/// Pending connections the kernel may queue (it caps this at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;

/// Runs the server until `shutdown` completes, then finishes in-flight requests
/// and closes the database.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let storage = storage::open(&config.database_url(), config.database.pool_size()).await?;
    tracing::info!(engine = storage.engine(), "database ready");
    let signing_key = SigningKey::load_or_generate(&config.data_dir.join("signing.key"))?;
    let services = Arc::new(Services::new(config.clone(), storage.clone(), signing_key).await?);

    if let Some(token) = services.registration.bootstrap_token().await? {
        announce_bootstrap_token(&token);
    }

    let metrics = Arc::new(Metrics::new(storage.clone(), services.notifier.clone()));
    let state = AppState { services: services.clone(), metrics };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();

    let client = bind(config.listen.client, "client").await?;
    servers.spawn(serve(client, api::router(state.clone()), stop_rx.clone()));
    if let Some(addr) = config.listen.metrics {
        let listener = bind(addr, "metrics").await?;
        servers.spawn(serve(listener, api::metrics_router(state.clone()), stop_rx.clone()));
    }
    tracing::info!(server_name = %config.server_name, ms = started.elapsed().as_millis() as u64, "Kith is ready");

    tokio::select! {
        () = shutdown => tracing::info!("shutting down: finishing in-flight requests"),
        Some(result) = servers.join_next() => {
            result.context("listener task failed")??;
        }
    }
    let _ = stop_tx.send(true);
    services.notifier.shutdown();
    while let Some(result) = servers.join_next().await {
        result.context("listener task failed")??;
    }
    storage.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr, name: &str) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr).with_context(|| format!("cannot listen on {addr} ({name})"))?;
    // A deep accept queue: thousands of clients reconnecting at once (a restart,
    // a network change) must not overflow it and wait for SYN retries.
    let listener = socket.listen(LISTEN_BACKLOG).with_context(|| format!("cannot listen on {addr} ({name})"))?;
    // Test harnesses read the bound port (for port 0) from this line.
    tracing::info!("listening on http://{} ({name})", listener.local_addr()?);
    Ok(listener)
}

async fn serve(listener: TcpListener, router: axum::Router, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    crate::http_server::serve(listener, router, stop).await;
    Ok(())
}

fn announce_bootstrap_token(token: &str) {
    let rule = "=".repeat(78);
    tracing::warn!("{rule}");
    tracing::warn!("No account exists yet. Register the first one with this one-time");
    tracing::warn!("registration token; that account becomes a server admin.");
    tracing::warn!("registration token: {token}");
    tracing::warn!("{rule}");
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
