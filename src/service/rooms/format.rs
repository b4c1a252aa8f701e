//! Events as clients see them (the spec's "ClientEvent" format).

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::service::now_ms;
use crate::storage::StoredEvent;

/// The `content` of a stored event.
pub fn content(event: &StoredEvent) -> Result<Value> {
    Ok(event.content().map_err(Error::internal)?.clone())
}

/// A stored event in client format. `redacted_because` is the redaction event in
/// client format when the event was redacted.
pub fn client_event(event: &StoredEvent, redacted_because: Option<Value>) -> Result<Value> {
    let pdu = event.pdu().map_err(Error::internal)?;
    let mut out = Map::new();
    out.insert("content".into(), event.content().map_err(Error::internal)?.clone());
    out.insert("event_id".into(), json!(event.event_id));
    out.insert("origin_server_ts".into(), json!(event.origin_server_ts));
    out.insert("room_id".into(), json!(event.room_id));
    out.insert("sender".into(), json!(event.sender));
    out.insert("type".into(), json!(event.event_type));
    if let Some(state_key) = &event.state_key {
        out.insert("state_key".into(), json!(state_key));
    }
    // Redactions name their target at the top level in every room version for
    // clients, as well as in content from v11 on.
    if event.event_type == "m.room.redaction" {
        let redacts = pdu.get("redacts").or_else(|| pdu.get("content").and_then(|c| c.get("redacts")));
        if let Some(redacts) = redacts {
            out.insert("redacts".into(), redacts.clone());
        }
    }
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!(now_ms() - event.origin_server_ts));
    if let Some(because) = redacted_because {
        unsigned.insert("redacted_because".into(), because);
    }
    out.insert("unsigned".into(), Value::Object(unsigned));
    Ok(Value::Object(out))
}
