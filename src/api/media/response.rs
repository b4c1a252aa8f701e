//! Serving media safely: the security headers of every media response, the
//! `Content-Disposition` (inline only for types a browser cannot run script
//! from), byte ranges, and caching headers.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

/// Sent with every media response: even if a browser opens an uploaded file as a
/// page, it runs nothing.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Adds the security headers (a `map_response` layer over every media route).
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The types the spec lists as safe to serve inline ("Serving inline content").
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Whether a content type may be shown inline (its parameters ignored).
pub fn inline_safe(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// `inline` or `attachment`, with the file name: an ASCII fallback in
/// `filename="..."` and the exact name in RFC 6266 / RFC 8187 `filename*=utf-8''...`.
pub fn content_disposition(inline: bool, filename: Option<&str>) -> HeaderValue {
    let mut value = String::from(if inline { "inline" } else { "attachment" });
    if let Some(name) = filename.filter(|n| !n.is_empty()) {
        let fallback: String = name
            .chars()
            .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' { c } else { '_' })
            .collect();
        value.push_str(&format!("; filename=\"{fallback}\"; filename*=utf-8''{}", rfc8187_encode(name)));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Percent-encodes all but RFC 8187's `attr-char`s.
fn rfc8187_encode(text: &str) -> String {
    const ATTR_CHAR_EXTRA: &[u8] = b"!#$&+-.^_`|~";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || ATTR_CHAR_EXTRA.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No (usable) range: the whole file.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// 416: no byte of the range is in the file.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (`a-b`, `a-`, `-n`). Several ranges, other
/// units and malformed headers read as no range (RFC 9110 lets a server ignore them).
pub fn parse_range(header: Option<&str>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(size.saturating_sub(n), size - 1),
        },
        (start, end) => {
            let Some(start) = number(start) else { return Range::Full };
            let end = if end.is_empty() {
                None
            } else {
                match number(end) {
                    Some(end) if end >= start => Some(end),
                    _ => return Range::Full,
                }
            };
            if start >= size {
                return Range::Unsatisfiable;
            }
            Range::Part(start, end.map_or(size - 1, |e| e.min(size - 1)))
        }
    }
}

/// Whether the request's `If-None-Match` names this entity tag.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// Whether a `Range` applies: there is no `If-Range`, or it names this entity tag.
pub fn if_range_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |h: &str| parse_range(Some(h), 1000);
        assert_eq!(parse_range(None, 1000), Range::Full);
        assert_eq!(r("bytes=0-99"), Range::Part(0, 99));
        assert_eq!(r("bytes=500-"), Range::Part(500, 999));
        assert_eq!(r("bytes=-100"), Range::Part(900, 999));
        assert_eq!(r("bytes=-5000"), Range::Part(0, 999));
        assert_eq!(r("bytes=900-5000"), Range::Part(900, 999));
        assert_eq!(r("bytes=999-999"), Range::Part(999, 999));
        assert_eq!(r("bytes=1000-"), Range::Unsatisfiable);
        assert_eq!(r("bytes=1000-2000"), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Range::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Range::Unsatisfiable);
        // Ignored: malformed, other units, several ranges, reversed.
        for ignored in ["bytes=a-b", "items=0-1", "bytes=0-1,5-6", "bytes=5-1", "bytes=", "bytes=-", "bytes=+1-2"] {
            assert_eq!(r(ignored), Range::Full, "{ignored}");
        }
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition(true, None), "inline");
        assert_eq!(
            content_disposition(false, Some("a b.txt")),
            "attachment; filename=\"a b.txt\"; filename*=utf-8''a%20b.txt"
        );
        assert_eq!(
            content_disposition(true, Some("naïve \"q\";\r\n%.png")),
            "inline; filename=\"na_ve _q_;___.png\"; filename*=utf-8''na%C3%AFve%20%22q%22%3B%0D%0A%25.png"
        );
        assert!(inline_safe("image/png"));
        assert!(inline_safe("Text/Plain; charset=utf-8"));
        assert!(!inline_safe("text/html"));
        assert!(!inline_safe("image/svg+xml"));
        assert!(!inline_safe("application/octet-stream"));
        assert!(!inline_safe(""));
    }
}
