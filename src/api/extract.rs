//! Request extractors that fail with Matrix errors: JSON bodies, access tokens, client IPs.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::error::Error;
use crate::service::auth::Requester;

/// A JSON request body. Not JSON → 400 M_NOT_JSON; wrong shape → 400 M_BAD_JSON;
/// over the size limit → 413 M_TOO_LARGE. An empty body reads as `{}`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::too_large("Request body too large")
            } else {
                Error::not_json(format!("Could not read the request body: {rejection}"))
            }
        })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| Error::not_json(format!("Body is not valid JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(Error::bad_json("The request body must be a JSON object"));
        }
        let parsed = serde_path_to_error::deserialize(value).map_err(|e| Error::bad_json(e.to_string()))?;
        Ok(Self(parsed))
    }
}

/// Query parameters. Missing → 400 M_MISSING_PARAM; malformed → 400 M_INVALID_PARAM.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let parsed = serde_html_form::from_str(query).map_err(|e| {
            let message = e.to_string();
            if message.starts_with("missing field") {
                Error::missing_param(format!("Query parameter {message}"))
            } else {
                Error::invalid_param(format!("Invalid query parameter: {message}"))
            }
        })?;
        Ok(Self(parsed))
    }
}

/// The access token of a request: `Authorization: Bearer`, or the deprecated `access_token` query parameter.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    url_query_value(query, "access_token")
}

fn url_query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The client's address, as seen on the connection.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// An authenticated request: who made it, and with which token.
pub struct Auth {
    pub requester: Requester,
    pub access_token: String,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = access_token(parts).ok_or_else(Error::missing_token)?;
        let requester = state.services.auth.authenticate(&token, client_ip(parts).as_deref()).await?;
        Ok(Self { requester, access_token: token })
    }
}

/// The client's IP address for rate limiting ("unknown" when not known).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(Self(client_ip(parts).unwrap_or_else(|| "unknown".to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token() {
        assert_eq!(url_query_value("a=1&access_token=abc%2Bd", "access_token").as_deref(), Some("abc+d"));
        assert_eq!(url_query_value("a=1", "access_token"), None);
    }
}
