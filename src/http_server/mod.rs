//! The accept loop: each TCP connection served as HTTP/1.1 (`http1`, our own:
//! it holds no buffers while a connection waits) or, with prior knowledge as
//! reverse proxies speak it, cleartext HTTP/2 (hyper). The protocol is told by
//! peeking at the socket, without consuming anything.

mod body;
mod http1;
mod request;
mod response;

pub use http1::Settings;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a client that sent part of the HTTP/2 preface may take to send the rest.
const PREFACE_WAIT: Duration = Duration::from_secs(10);
/// First pause between peeks at a partial preface; doubled up to `PREFACE_POLL_MAX`.
const PREFACE_POLL: Duration = Duration::from_millis(5);
const PREFACE_POLL_MAX: Duration = Duration::from_millis(500);
/// Keepalive probes after this long without traffic, then at this interval
/// (the kernel gives up after its default count, 9).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(120);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stop` turns true, then lets open
/// connections finish their requests and returns once they have closed.
pub async fn serve(listener: TcpListener, router: axum::Router, stop: watch::Receiver<bool>) {
    serve_with(listener, router, stop, Settings::default()).await
}

/// [`serve`] with the connection settings given.
pub async fn serve_with(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    settings: Settings,
) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        connections.spawn(connection(tcp, remote, router.clone(), stop.clone(), settings));
    }
    // Refuse new connections at once (a proxy fails over) while the open ones finish.
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    settings: Settings,
) {
    // Responses go out at once: no Nagle delay on small JSON bodies.
    let _ = tcp.set_nodelay(true);
    // A client that vanishes without closing (a phone losing its network)
    // is found by keepalive probes, and its held long-poll released.
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE).with_interval(KEEPALIVE_INTERVAL);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    // Boxed: this step is over before the first request, and its size would
    // otherwise stay in every connection's task for the connection's life.
    let http2 = Box::pin(async {
        tokio::select! {
            http2 = speaks_http2(&tcp) => Some(http2),
            () = stopped(&mut stop) => None,
        }
    })
    .await;
    let Some(http2) = http2 else { return };
    if !http2 {
        return http1::serve(tcp, remote, router, stop, settings).await;
    }
    // Boxed: hyper's connection state is large, and an inline one would be
    // carried by every HTTP/1 connection's task as well.
    Box::pin(serve_http2(tcp, remote, router, stop)).await
}

async fn serve_http2(tcp: TcpStream, remote: SocketAddr, router: axum::Router, mut stop: watch::Receiver<bool>) {
    let service = hyper_util::service::TowerToHyperService::new(router.map_request(
        move |request: axum::http::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        },
    ));
    let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Whether the client opened with the HTTP/2 preface, read without consuming
/// it. Anything else (or a connection that closes first) is HTTP/1.
async fn speaks_http2(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut waited = Duration::ZERO;
    let mut pause = PREFACE_POLL;
    loop {
        let n = match tcp.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A prefix of the preface so far. Peeked bytes keep the socket
        // readable, so wait by the clock for the rest.
        if waited >= PREFACE_WAIT {
            return false;
        }
        tokio::time::sleep(pause).await;
        waited += pause;
        pause = (pause * 2).min(PREFACE_POLL_MAX);
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on a free port answering `GET /` with "ok"; returns its address and stop switch.
    async fn start() -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("ok {}", peer.ip()) }),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, router, stop_rx));
        (addr, stop_tx, server)
    }

    async fn read_some(stream: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn http1_requests_are_served_with_the_peer_address() {
        let (addr, stop, server) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Sent in two pieces: the request head may arrive split.
        stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(b"st: x\r\n\r\n").await.unwrap();
        let response = String::from_utf8(read_some(&mut stream).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok 127.0.0.1"), "{response}");
        drop(stream);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_is_spoken_even_when_the_preface_is_split() {
        let (addr, stop, server) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&H2_PREFACE[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.write_all(&H2_PREFACE[5..]).await.unwrap();
        // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
        stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        let reply = read_some(&mut stream).await;
        assert!(reply.len() >= 9, "{reply:?}");
        assert_eq!(reply[3], 4, "the server's first frame is its SETTINGS: {reply:?}");
        drop(stream);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_lets_an_open_request_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                "done"
            }),
        );
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, router, stop_rx));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        let response = String::from_utf8(read_some(&mut stream).await).unwrap();
        assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("done"), "{response}");
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
    }
}
