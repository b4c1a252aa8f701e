//! Reading an HTTP/1 request head: the request line and headers, parsed by
//! `httparse` and copied into `http` types, and the body's framing.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header};

/// Most headers a request may carry (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// A request head refused before it reaches the router.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed: the connection cannot be trusted to continue (400).
    Malformed(&'static str),
    /// More headers than [`MAX_HEADERS`] (431).
    TooManyHeaders,
    /// A transfer coding other than `chunked` (501).
    UnsupportedCoding,
}

/// How the request's body is delimited (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// A parsed head: the request without its body, and what follows it.
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before the body.
    pub expects_continue: bool,
}

/// Parses a request head from the start of `buf`: `Ok(None)` while it is
/// incomplete, otherwise the head and the number of bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    // Parsed on the thread's stack, in a plain function: the header array
    // never becomes part of a connection's (long-lived) future.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let length = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let uri: Uri =
        parsed.path.unwrap_or_default().parse().map_err(|_| HeadError::Malformed("invalid request target"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Malformed("invalid header value"))?;
        map.append(name, value);
    }
    let framing = framing(version, &map)?;
    let keep_alive = keep_alive(version, &map);
    let expects_continue = version == Version::HTTP_11
        && map.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(Some((Head { request, framing, keep_alive, expects_continue }, length)))
}

/// The body's framing. Both headers at once, differing lengths, or a coding
/// we cannot undo make the body's end ambiguous: refused (request smuggling).
fn framing(version: Version, headers: &HeaderMap) -> Result<Framing, HeadError> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // HTTP/1.0 has no transfer codings: an intermediary of that version
        // would see a different body (RFC 9112, section 6.1).
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::Malformed("both Content-Length and Transfer-Encoding"));
        }
        let mut codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty());
        let last = codings.next_back();
        if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            // Without `chunked` last, a request's body length cannot be known.
            return Err(HeadError::Malformed("Transfer-Encoding must end with chunked"));
        }
        if codings.next().is_some() {
            return Err(HeadError::UnsupportedCoding);
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HeadError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("differing Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it
/// unless told `keep-alive`.
fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &[u8]| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 { has(b"keep-alive") } else { !has(b"close") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse(raw.as_bytes())
    }

    #[test]
    fn a_complete_head_is_parsed_with_its_length() {
        let raw =
            "PUT /_matrix/client/v3/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody";
        let (head, used) = head(raw).unwrap().unwrap();
        assert_eq!(used, raw.len() - 4);
        assert_eq!(head.request.method(), Method::PUT);
        assert_eq!(head.request.uri().path(), "/_matrix/client/v3/x");
        assert_eq!(head.request.uri().query(), Some("y=1"));
        assert_eq!(head.request.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.keep_alive);
        assert!(!head.expects_continue);
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        assert!(head("GE").unwrap().is_none());
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let both = "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(both), Err(HeadError::Malformed(_))));
        let differing = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(matches!(head(differing), Err(HeadError::Malformed(_))));
        let listed = "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n";
        assert!(matches!(head(listed), Err(HeadError::Malformed(_))));
        let signed = "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n";
        assert!(matches!(head(signed), Err(HeadError::Malformed(_))));
        let not_last = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
        assert!(matches!(head(not_last), Err(HeadError::Malformed(_))));
        let gzip = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(head(gzip).err(), Some(HeadError::UnsupportedCoding));
        let repeated = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(head(repeated).unwrap().unwrap().0.framing, Framing::Length(3));
        let old = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(head(old), Err(HeadError::Malformed(_))));
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(head(chunked).unwrap().unwrap().0.framing, Framing::Chunked);
    }

    #[test]
    fn connection_persistence_follows_the_version_and_header() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").unwrap().unwrap().0.keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().0.keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().0.keep_alive);
        let expect = "PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
        assert!(head(expect).unwrap().unwrap().0.expects_continue);
    }

    #[test]
    fn garbage_and_header_floods_are_refused() {
        assert!(matches!(head("GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(head("\x16\x03\x01 TLS hello\r\n\r\n"), Err(HeadError::Malformed(_))));
        let flood: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(head(&format!("GET / HTTP/1.1\r\n{flood}\r\n")).err(), Some(HeadError::TooManyHeaders));
    }
}
