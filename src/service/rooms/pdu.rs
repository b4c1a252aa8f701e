//! PDUs: the signed events of the room graph, in their room version's format.

use std::collections::BTreeMap;

use ruma::events::TimelineEventType;
use ruma::room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId,
    RoomId, RoomVersionId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// The rules of a room version this server supports.
pub fn rules_for(version: &str) -> Result<RoomVersionRules> {
    let id = RoomVersionId::try_from(version).map_err(|_| unsupported_version(version))?;
    if !crate::service::room_versions::is_supported(version) {
        return Err(unsupported_version(version));
    }
    id.rules().ok_or_else(|| unsupported_version(version))
}

fn unsupported_version(version: &str) -> Error {
    Error::new(
        axum::http::StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
        format!("Room version {version:?} is not supported"),
    )
}

/// A reference to an earlier event: bare ids (v3+) or `[id, {hashes}]` pairs (v1, v2).
#[derive(Deserialize)]
#[serde(untagged)]
enum EventRef {
    Id(OwnedEventId),
    Pair(OwnedEventId, serde::de::IgnoredAny),
}

impl EventRef {
    fn into_id(self) -> OwnedEventId {
        match self {
            Self::Id(id) | Self::Pair(id, _) => id,
        }
    }
}

#[derive(Deserialize)]
struct RawPdu {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev_events: Vec<EventRef>,
    auth_events: Vec<EventRef>,
    redacts: Option<OwnedEventId>,
    depth: UInt,
}

#[derive(Deserialize)]
struct RedactsInContent {
    redacts: Option<OwnedEventId>,
}

/// A parsed PDU, as ruma's auth rules and state resolution consume it.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: u64,
}

impl Pdu {
    pub fn parse(event_id: OwnedEventId, json: &str, rules: &RoomVersionRules) -> Result<Self> {
        let raw: RawPdu = serde_json::from_str(json).map_err(|e| Error::internal(format!("bad stored PDU: {e}")))?;
        let redacts = if rules.redaction.content_field_redacts {
            serde_json::from_str::<RedactsInContent>(raw.content.get()).ok().and_then(|c| c.redacts)
        } else {
            raw.redacts
        };
        Ok(Self {
            event_id,
            room_id: raw.room_id,
            sender: raw.sender,
            origin_server_ts: raw.origin_server_ts,
            kind: raw.kind,
            content: raw.content,
            state_key: raw.state_key,
            prev_events: raw.prev_events.into_iter().map(EventRef::into_id).collect(),
            auth_events: raw.auth_events.into_iter().map(EventRef::into_id).collect(),
            redacts,
            depth: raw.depth.into(),
        })
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// The JSON form of `prev_events`/`auth_events` in this room version: bare ids,
/// or `[id, {"sha256": reference hash}]` pairs in versions 1 and 2.
pub fn event_refs(rules: &RoomVersionRules, refs: &[(OwnedEventId, String)]) -> CanonicalJsonValue {
    let items = refs
        .iter()
        .map(|(id, reference_hash)| match rules.events_reference_format {
            EventsReferenceFormatVersion::V1 => CanonicalJsonValue::Array(vec![
                CanonicalJsonValue::String(id.to_string()),
                CanonicalJsonValue::Object(BTreeMap::from([(
                    "sha256".to_owned(),
                    CanonicalJsonValue::String(reference_hash.clone()),
                )])),
            ]),
            _ => CanonicalJsonValue::String(id.to_string()),
        })
        .collect();
    CanonicalJsonValue::Array(items)
}

/// Whether event ids in this version are derived from the event's hash (v3+).
pub fn event_id_is_hash(rules: &RoomVersionRules) -> bool {
    !matches!(rules.event_id_format, EventIdFormatVersion::V1)
}

/// The event id computed from a hashed and signed PDU (v3+).
pub fn reference_event_id(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    let hash = ruma::signatures::reference_hash(object, rules).map_err(Error::internal)?;
    OwnedEventId::try_from(format!("${hash}")).map_err(Error::internal)
}

/// The reference hash used in v1/v2 event references.
pub fn reference_hash(json: &str, rules: &RoomVersionRules) -> Result<String> {
    let object: CanonicalJsonObject = serde_json::from_str(json).map_err(Error::internal)?;
    ruma::signatures::reference_hash(&object, rules).map_err(Error::internal)
}
