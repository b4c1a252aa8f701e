//! Pushers (`GET /pushers`, `POST /pushers/set`): stored and listed. Delivery
//! to push gateways is not implemented yet.

use serde::Deserialize;
use serde_json::{Value, json};

use super::Push;
use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::storage::PusherRow;

/// The spec's limits on the pusher's identifiers.
const MAX_PUSHKEY_BYTES: usize = 512;
const MAX_APP_ID_CHARS: usize = 64;
/// The only path a push gateway's URL may have.
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// The body of `POST /pushers/set`.
#[derive(Debug, Deserialize)]
pub struct PusherRequest {
    pub pushkey: Option<String>,
    /// `null` deletes the pusher; absent is an error.
    #[serde(default, deserialize_with = "present")]
    pub kind: Option<Option<String>>,
    pub app_id: Option<String>,
    pub app_display_name: Option<String>,
    pub device_display_name: Option<String>,
    pub profile_tag: Option<String>,
    pub lang: Option<String>,
    pub data: Option<Value>,
    #[serde(default)]
    pub append: bool,
}

/// Tells a field given as `null` (Some(None)) from a missing one (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Whether `url` is an http(s) URL whose path is the gateway's notify path.
fn valid_gateway_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else { return false };
    let Some(slash) = rest.find('/') else { return false };
    let host = &rest[..slash];
    let path = rest[slash..].split(['?', '#']).next().unwrap_or_default();
    !host.is_empty() && path == NOTIFY_PATH
}

impl Push {
    pub async fn pushers(&self, user_id: &str) -> Result<Value> {
        let mut list = Vec::new();
        for p in self.storage.pushers(user_id).await? {
            let data: Value = serde_json::from_str(&p.data).map_err(Error::internal)?;
            let mut pusher = json!({
                "pushkey": p.pushkey,
                "kind": p.kind,
                "app_id": p.app_id,
                "app_display_name": p.app_display_name,
                "device_display_name": p.device_display_name,
                "lang": p.lang,
                "data": data,
            });
            if let Some(tag) = p.profile_tag {
                pusher["profile_tag"] = json!(tag);
            }
            list.push(pusher);
        }
        Ok(json!({ "pushers": list }))
    }

    pub async fn set_pusher(&self, user_id: &str, request: PusherRequest) -> Result<()> {
        let mut missing = Vec::new();
        for (name, absent) in [
            ("pushkey", request.pushkey.is_none()),
            ("app_id", request.app_id.is_none()),
            ("kind", request.kind.is_none()),
        ] {
            if absent {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Error::missing_param(format!("Missing parameters: {}", missing.join(", "))));
        }
        let pushkey = request.pushkey.unwrap_or_default();
        let app_id = request.app_id.unwrap_or_default();
        if pushkey.len() > MAX_PUSHKEY_BYTES {
            return Err(Error::invalid_param("pushkey is longer than 512 bytes"));
        }
        if app_id.chars().count() > MAX_APP_ID_CHARS {
            return Err(Error::invalid_param("app_id is longer than 64 characters"));
        }
        let Some(kind) = request.kind.flatten() else {
            self.storage.delete_pusher(user_id, &app_id, &pushkey).await?;
            return Ok(());
        };
        let mut missing = Vec::new();
        for (name, absent) in [
            ("app_display_name", request.app_display_name.is_none()),
            ("device_display_name", request.device_display_name.is_none()),
            ("lang", request.lang.is_none()),
            ("data", request.data.is_none()),
        ] {
            if absent {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Error::missing_param(format!("Missing parameters: {}", missing.join(", "))));
        }
        let data = request.data.unwrap_or_default();
        if !data.is_object() {
            return Err(Error::bad_json("data must be an object"));
        }
        match kind.as_str() {
            "http" => {
                let url = data
                    .get("url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::missing_param("An http pusher needs data.url"))?;
                if !valid_gateway_url(url) {
                    return Err(Error::invalid_param(format!(
                        "data.url must be an HTTPS URL with the path {NOTIFY_PATH}"
                    )));
                }
                if let Some(format) = data.get("format")
                    && format.as_str() != Some("event_id_only")
                {
                    return Err(Error::invalid_param("data.format must be \"event_id_only\""));
                }
            }
            "email" => {}
            other => return Err(Error::invalid_param(format!("Unknown pusher kind {other:?}"))),
        }
        let row = PusherRow {
            user_id: user_id.to_owned(),
            app_id,
            pushkey,
            kind,
            app_display_name: request.app_display_name.unwrap_or_default(),
            device_display_name: request.device_display_name.unwrap_or_default(),
            profile_tag: request.profile_tag,
            lang: request.lang.unwrap_or_default(),
            data: data.to_string(),
            created_ts: now_ms(),
        };
        self.storage.set_pusher(&row, request.append).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        assert!(valid_gateway_url("https://push.example.org/_matrix/push/v1/notify"));
        assert!(valid_gateway_url("http://127.0.0.1:5000/_matrix/push/v1/notify"));
        assert!(!valid_gateway_url("https://push.example.org/notify"));
        assert!(!valid_gateway_url("https:///_matrix/push/v1/notify"));
        assert!(!valid_gateway_url("ftp://push.example.org/_matrix/push/v1/notify"));
        assert!(!valid_gateway_url("push.example.org/_matrix/push/v1/notify"));
    }
}
