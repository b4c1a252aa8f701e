//! URL previews: fetching a page (or image) within size, time and redirect
//! limits and only from allowed addresses, and reading its OpenGraph data.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::ssrf::{self, GuardedResolver, IpRange};
use crate::config::UrlPreview;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Failed(String),
}

/// What a fetch returned.
pub struct Fetched {
    pub content_type: Option<String>,
    pub bytes: Bytes,
    /// The URL after redirects (relative links resolve against it).
    pub url: reqwest::Url,
}

pub struct Fetcher {
    client: reqwest::Client,
    allowed: Arc<Vec<IpRange>>,
    max_bytes: u64,
}

impl Fetcher {
    pub fn new(config: &UrlPreview) -> Fetcher {
        let allowed: Arc<Vec<IpRange>> =
            Arc::new(config.allowed_ip_ranges.iter().filter_map(|r| IpRange::parse(r)).collect());
        let redirect_allowed = allowed.clone();
        let max_redirects = config.max_redirects as usize;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error("too many redirects");
            }
            match target_check(attempt.url(), &redirect_allowed) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allowed: allowed.clone() }))
            .redirect(policy)
            .no_proxy()
            .timeout(Duration::from_secs(config.timeout_secs))
            .connect_timeout(Duration::from_secs(config.timeout_secs))
            .user_agent(concat!("Kith/", env!("CARGO_PKG_VERSION"), " (URL preview)"))
            .build()
            .expect("the URL preview HTTP client builds");
        Fetcher { client, allowed, max_bytes: config.max_bytes }
    }

    /// Fetches `url`; reads at most `max_bytes` of the body (a page cut there is
    /// still previewed; an image cut there is not used).
    pub async fn fetch(&self, url: &str) -> Result<(Fetched, bool), FetchError> {
        let url = reqwest::Url::parse(url).map_err(|_| FetchError::Failed("not a valid URL".into()))?;
        target_check(&url, &self.allowed).map_err(|e| FetchError::Forbidden(e.to_string()))?;
        let mut response = self.client.get(url).send().await.map_err(classify)?;
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!("the server answered {}", response.status())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase());
        let final_url = response.url().clone();
        let mut body = Vec::new();
        let mut complete = true;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let room = (self.max_bytes as usize).saturating_sub(body.len());
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                complete = false;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Fetched { content_type, bytes: Bytes::from(body), url: final_url }, complete))
    }
}

/// Only http(s), and an IP-literal host only when allowed (host names are checked by the resolver).
fn target_check(url: &reqwest::Url, allowed: &[IpRange]) -> Result<(), &'static str> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https URLs can be previewed");
    }
    let ip: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        Some(url::Host::Domain(_)) => None,
        None => return Err("the URL has no host"),
    };
    match ip {
        Some(ip) if !ssrf::address_allowed(ip, allowed) => Err("the address may not be fetched"),
        _ => Ok(()),
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(err) = source {
        if err.is::<ssrf::Forbidden>() {
            return FetchError::Forbidden(err.to_string());
        }
        if err.to_string().contains("the address may not be fetched") {
            return FetchError::Forbidden("a redirect led to an address that may not be fetched".into());
        }
        source = err.source();
    }
    if e.is_timeout() {
        FetchError::Failed("the fetch timed out".into())
    } else {
        FetchError::Failed(format!("the fetch failed: {e}"))
    }
}

/// The OpenGraph properties of a page (`og:*` meta tags), with `<title>` and the
/// description meta tag as fallbacks. `og:image` is returned as written (maybe relative).
pub fn opengraph(html: &str) -> Map<String, Value> {
    let mut og = Map::new();
    let mut title: Option<String> = None;
    let mut description: Option<String> = None;
    let lower = html.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find('<').map(|i| pos + i) {
        let rest = &lower[start + 1..];
        if rest.starts_with("meta") && rest[4..].starts_with(|c: char| c.is_ascii_whitespace() || c == '/') {
            let end = tag_end(html, start);
            let attrs = attributes(&html[start + 5..end]);
            let key = attrs.iter().find(|(k, _)| k == "property" || k == "name").map(|(_, v)| v.to_ascii_lowercase());
            let content = attrs.iter().find(|(k, _)| k == "content").map(|(_, v)| v.clone());
            if let (Some(key), Some(content)) = (key, content) {
                if key.starts_with("og:") && !og.contains_key(&key) {
                    og.insert(key, Value::String(content));
                } else if key == "description" && description.is_none() {
                    description = Some(content);
                }
            }
            pos = end;
        } else if rest.starts_with("title") && title.is_none() {
            let open_end = tag_end(html, start);
            let close = lower[open_end..].find("</title").map_or(html.len(), |i| open_end + i);
            let text = decode_entities(html[(open_end + 1).min(close)..close].trim());
            if !text.is_empty() {
                title = Some(text);
            }
            pos = close;
        } else {
            pos = start + 1;
        }
        if pos >= html.len() {
            break;
        }
    }
    if !og.contains_key("og:title")
        && let Some(title) = title
    {
        og.insert("og:title".into(), Value::String(title));
    }
    if !og.contains_key("og:description")
        && let Some(description) = description
    {
        og.insert("og:description".into(), Value::String(description));
    }
    og
}

/// The index of the `>` that ends the tag opened at `start` (quotes respected).
fn tag_end(html: &str, start: usize) -> usize {
    let mut quote: Option<u8> = None;
    for (i, &b) in html.as_bytes()[start..].iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return start + i,
            _ => {}
        }
    }
    html.len()
}

/// The attributes of a tag body: lowercased names, entity-decoded values.
fn attributes(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !b"=/>".contains(&bytes[i]) {
            i += 1;
        }
        let name = body[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let q = bytes[i];
                let start = i + 1;
                let end = body[start..].find(q as char).map_or(body.len(), |e| start + e);
                value = decode_entities(&body[start..end]);
                i = end + 1;
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&body[start..i]);
            }
        }
        if name.is_empty() {
            i += 1;
        } else {
            out.push((name, value));
        }
    }
    out
}

/// Decodes the common named entities and numeric character references.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opengraph_tags_and_fallbacks() {
        let html = r#"<html><head><TITLE>Plain &amp; simple</TITLE>
            <meta property="og:title" content="The &quot;Title&quot;">
            <meta name=description content='A page'>
            <meta property="og:image" content="/img.png" />
            <meta property="og:title" content="second is ignored">
            </head></html>"#;
        let og = opengraph(html);
        assert_eq!(og["og:title"], "The \"Title\"");
        assert_eq!(og["og:description"], "A page");
        assert_eq!(og["og:image"], "/img.png");
        let og = opengraph("<title>Only a title</title><metadata>");
        assert_eq!(og["og:title"], "Only a title");
        assert_eq!(og.len(), 1);
        assert!(opengraph("<meta").is_empty());
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a &lt;b&gt; &#65;&#x42; &unknown; &"), "a <b> AB &unknown; &");
    }

    #[test]
    fn literal_addresses_are_checked() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(target_check(&url("http://127.0.0.1/"), &[]).is_err());
        assert!(target_check(&url("http://[::1]:8080/"), &[]).is_err());
        assert!(target_check(&url("http://169.254.169.254/latest"), &[]).is_err());
        assert!(target_check(&url("file:///etc/passwd"), &[]).is_err());
        assert!(target_check(&url("http://1.1.1.1/"), &[]).is_ok());
        assert!(target_check(&url("http://127.0.0.1/"), &[IpRange::parse("127.0.0.0/8").unwrap()]).is_ok());
    }
}
