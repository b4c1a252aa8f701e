//! Writing an HTTP/1.1 response: the head, then the body framed by its
//! length when known, chunked otherwise. Small responses leave in one write.

use std::cell::RefCell;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Body data up to this size is copied next to the head (or chunk framing)
/// and sent in the same write; larger pieces are written as they are.
const COALESCE: usize = 16 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Ended by closing the connection (an HTTP/1.0 client and no length).
    Close,
}

/// What the request said that shapes the response.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub head_request: bool,
    pub version: Version,
    pub keep_alive: bool,
}

/// Writes `response`; returns whether the connection may carry another request.
pub async fn write<W: AsyncWrite + Unpin>(io: &mut W, response: Response, exchange: Exchange) -> io::Result<bool> {
    let (mut parts, body) = response.into_parts();
    let (framing, keep_alive) =
        frame(&mut parts.headers, parts.status, http_body::Body::size_hint(&body).exact(), exchange);
    let mut out = Vec::with_capacity(256);
    head(&mut out, parts.status, &parts.headers);
    if framing == Framing::None {
        io.write_all(&out).await?;
        return Ok(keep_alive);
    }
    let complete = write_body(io, out, body, framing).await?;
    Ok(keep_alive && complete)
}

/// Chooses the framing and fixes the headers that say it; returns it with
/// whether the connection stays open afterwards.
fn frame(headers: &mut HeaderMap, status: StatusCode, exact: Option<u64>, exchange: Exchange) -> (Framing, bool) {
    let mut keep_alive = exchange.keep_alive;
    // The handler may ask to close (an upload refused before its body was read).
    if headers.get_all(header::CONNECTION).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"close")) {
        keep_alive = false;
    }
    headers.remove(header::TRANSFER_ENCODING);
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        if status != StatusCode::NOT_MODIFIED {
            headers.remove(header::CONTENT_LENGTH);
        }
        Framing::None
    } else if exchange.head_request {
        // The length of the GET answer may be given; nothing follows the head.
        Framing::None
    } else if let Some(length) = declared.or(exact) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Framing::Length(length)
    } else if exchange.version == Version::HTTP_11 {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Framing::Chunked
    } else {
        headers.remove(header::CONTENT_LENGTH);
        keep_alive = false;
        Framing::Close
    };
    headers.remove(header::CONNECTION);
    if !keep_alive {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if exchange.version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, now());
    }
    (framing, keep_alive)
}

fn head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the body after `out` (which holds the head); returns whether the
/// body matched its framing (a length mismatch leaves the connection unusable).
async fn write_body<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut out: Vec<u8>,
    mut body: Body,
    framing: Framing,
) -> io::Result<bool> {
    let mut written = 0u64;
    loop {
        // A frame that is ready joins `out`; otherwise what is pending goes
        // out first, so that a slow stream is not held back.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(io, &mut out).await?;
                body.frame().await
            }
        };
        let data: Bytes = match frame {
            None => break,
            Some(Err(e)) => {
                flush(io, &mut out).await?;
                return Err(io::Error::other(e));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue, // trailers or an empty frame
            },
        };
        let data = match framing {
            Framing::Length(length) => {
                // Never more than announced: the client would read it as the next response.
                let room = length - written;
                if data.len() as u64 > room {
                    let data = data.slice(..room as usize);
                    put(io, &mut out, &data).await?;
                    flush(io, &mut out).await?;
                    return Ok(false);
                }
                data
            }
            _ => data,
        };
        written += data.len() as u64;
        if framing == Framing::Chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            put(io, &mut out, &data).await?;
            out.extend_from_slice(b"\r\n");
        } else {
            put(io, &mut out, &data).await?;
        }
    }
    let complete = match framing {
        Framing::Length(length) => written == length,
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            true
        }
        Framing::Close => false,
        Framing::None => true,
    };
    flush(io, &mut out).await?;
    Ok(complete)
}

/// Appends small data to `out`; writes large data directly after it.
async fn put<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if data.len() <= COALESCE {
        out.extend_from_slice(data);
        if out.len() >= COALESCE {
            flush(io, out).await?;
        }
        return Ok(());
    }
    flush(io, out).await?;
    io.write_all(data).await
}

async fn flush<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// The Date header, formatted once a second per thread.
fn now() -> HeaderValue {
    thread_local! {
        static DATE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let time = SystemTime::now();
    let second = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with_borrow_mut(|(cached_second, value)| match value {
        Some(value) if *cached_second == second => value.clone(),
        _ => {
            let fresh =
                HeaderValue::from_str(&httpdate::fmt_http_date(time)).expect("an HTTP date is a valid header value");
            *cached_second = second;
            *value = Some(fresh.clone());
            fresh
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    const KEEP: Exchange = Exchange { head_request: false, version: Version::HTTP_11, keep_alive: true };

    async fn wire(response: Response, exchange: Exchange) -> (String, bool) {
        let mut out = Vec::new();
        let keep = write(&mut out, response, exchange).await.unwrap();
        (String::from_utf8(out).unwrap(), keep)
    }

    fn streamed(pieces: &[&'static str]) -> Body {
        let pieces: Vec<io::Result<Bytes>> = pieces.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect();
        Body::from_stream(stream::iter(pieces))
    }

    #[tokio::test]
    async fn a_known_length_is_announced() {
        let (text, keep) = wire(Response::new(Body::from("hello")), KEEP).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 5\r\n") && text.contains("date: "), "{text}");
        assert!(text.ends_with("\r\n\r\nhello") && keep, "{text}");
    }

    #[tokio::test]
    async fn a_stream_is_chunked_for_http11_and_closes_for_http10() {
        let (text, keep) = wire(Response::new(streamed(&["ab", "", "cde"])), KEEP).await;
        assert!(text.contains("transfer-encoding: chunked\r\n") && keep, "{text}");
        assert!(text.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"), "{text}");
        let old = Exchange { version: Version::HTTP_10, keep_alive: true, ..KEEP };
        let (text, keep) = wire(Response::new(streamed(&["ab", "cde"])), old).await;
        assert!(!keep && text.contains("connection: close\r\n") && text.ends_with("\r\n\r\nabcde"), "{text}");
    }

    #[tokio::test]
    async fn bodiless_answers_carry_no_body() {
        let mut no_content = Response::new(Body::from("ignored"));
        *no_content.status_mut() = StatusCode::NO_CONTENT;
        let (text, keep) = wire(no_content, KEEP).await;
        assert!(text.ends_with("\r\n\r\n") && !text.contains("content-length") && keep, "{text}");
        let head = Exchange { head_request: true, ..KEEP };
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        let (text, _) = wire(response, head).await;
        assert!(text.contains("content-length: 42\r\n") && text.ends_with("\r\n\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_declared_length_is_never_exceeded() {
        let mut response = Response::new(streamed(&["abc", "def"]));
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        let (text, keep) = wire(response, KEEP).await;
        assert!(text.ends_with("\r\n\r\nabcd") && !keep, "{text}");
        let mut short = Response::new(streamed(&["ab"]));
        short.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        assert!(!wire(short, KEEP).await.1, "a body shorter than announced ends the connection");
    }

    #[tokio::test]
    async fn asking_to_close_or_a_closing_request_ends_the_connection() {
        let mut response = Response::new(Body::from("x"));
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        let (text, keep) = wire(response, KEEP).await;
        assert!(!keep && text.contains("connection: close\r\n"), "{text}");
        let closing = Exchange { keep_alive: false, ..KEEP };
        let (text, keep) = wire(Response::new(Body::from("x")), closing).await;
        assert!(!keep && text.contains("connection: close\r\n"), "{text}");
    }
}
