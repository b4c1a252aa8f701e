//! PostgreSQL: a batch of plain events stored in one statement.
//!
//! Every statement is a round trip to a PostgreSQL backend, and on a loaded
//! machine each one switches the sending thread out for the backend and back.
//! The general path (`sql_rooms.rs`) takes about seven for a batch of messages
//! (BEGIN, one per table, COMMIT). Here each table's rows go as arrays into one
//! statement of data-modifying CTEs, which PostgreSQL runs as a transaction of
//! its own: all of it is stored, or none. Its text does not depend on the
//! batch's size, so it is prepared once per connection.
//!
//! Plain means what most sends are: no state event (no snapshot, no current
//! state or membership change), no redaction, and in each room one forward
//! extremity replaced by one new event. Anything else, or a room whose stored
//! extremity is not the one replaced (each room's row must be updated exactly
//! once), is stored the general way.

use sqlx::postgres::PgPool;

use super::sql_rooms::{extremity_changes, prev_edges};
use super::{NewEvent, Result, StorageError};

const STATEMENT: &str = "WITH
  new_events AS (
    INSERT INTO events (stream_ordering, event_id, room_id, event_type, state_key, sender, depth,
        origin_server_ts, state_group, replaces_state, redacted_by, json)
    SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[],
        $8::int8[], $9::int8[], $10::text[], $11::text[], $12::text[])),
  edges AS (
    INSERT INTO event_prev_events (stream_ordering, prev_event_id)
    SELECT * FROM UNNEST($13::int8[], $14::text[])),
  swapped AS (
    UPDATE forward_extremities f SET event_id = v.new_id
    FROM UNNEST($15::text[], $16::text[], $17::text[]) AS v(room_id, old_id, new_id)
    WHERE f.room_id = v.room_id AND f.event_id = v.old_id
    RETURNING f.room_id),
  txns AS (
    INSERT INTO client_txns (stream_ordering, txn_key, device_id, txn_id)
    SELECT * FROM UNNEST($18::int8[], $19::bytea[], $20::text[], $21::text[])),
  relations AS (
    INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, event_type, sender, stream_ordering)
    SELECT * FROM UNNEST($22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[],
        $28::int8[])),
  notifications AS (
    INSERT INTO event_push_actions (room_id, stream_ordering, ts, user_id, thread_id, highlight, actions)
    SELECT * FROM UNNEST($29::text[], $30::int8[], $31::int8[], $32::text[], $33::text[], $34::bool[],
        $35::text[]))
SELECT kith_assert((SELECT COUNT(*) = $36 AND COUNT(DISTINCT room_id) = $36 FROM swapped),
    'a forward extremity is not the one replaced')";

/// The unique constraint on `client_txns.txn_key` (migration 0011).
const TXN_KEY_CONSTRAINT: &str = "client_txns_txn_key_key";

/// The SQLSTATE raised by `kith_assert` (migration 0017).
const ASSERTION_FAILED: &str = "KX001";

/// Stores `batch` in one statement if it is plain; `None` if it is not, or if
/// a room's stored extremity was not the one replaced (then nothing was
/// stored and the caller stores the batch the general way).
pub(super) async fn persist_plain(pool: &PgPool, batch: &[NewEvent<'_>]) -> Option<Result<()>> {
    if batch.iter().any(|new| new.event.state_key.is_some() || new.new_state_group.is_some() || new.redaction.is_some())
    {
        return None;
    }
    let changes = extremity_changes(batch);
    if !changes.iter().all(|(_, change)| change.removed.len() == 1 && change.added.len() == 1) {
        return None;
    }

    let edges = prev_edges(batch);
    let txns: Vec<(i64, [u8; 16], &str, &str)> = batch
        .iter()
        .filter_map(|new| {
            new.txn.as_ref().map(|key| (new.event.stream_ordering, key.digest(), key.device_id, key.txn_id))
        })
        .collect();
    let relations: Vec<_> = batch.iter().filter_map(|new| Some((new.event, new.relation?))).collect();
    let notifications: Vec<_> =
        batch.iter().flat_map(|new| new.push_actions.iter().map(move |row| (new.event, row))).collect();

    let events = batch.iter().map(|new| new.event);
    let query = sqlx::query(STATEMENT)
        .bind(events.clone().map(|e| e.stream_ordering).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.event_id.as_str()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.room_id.as_str()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.state_key.as_deref()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.sender.as_str()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.depth).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.origin_server_ts).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.state_group).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.replaces_state.as_deref()).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.redacted_by.as_deref()).collect::<Vec<_>>())
        .bind(events.map(|e| e.json.as_str()).collect::<Vec<_>>())
        .bind(edges.iter().map(|(stream, _)| *stream).collect::<Vec<_>>())
        .bind(edges.iter().map(|(_, prev)| *prev).collect::<Vec<_>>())
        .bind(changes.iter().map(|(room, _)| *room).collect::<Vec<_>>())
        .bind(changes.iter().map(|(_, change)| change.removed[0]).collect::<Vec<_>>())
        .bind(changes.iter().map(|(_, change)| change.added[0]).collect::<Vec<_>>())
        .bind(txns.iter().map(|t| t.0).collect::<Vec<_>>())
        .bind(txns.iter().map(|t| t.1.to_vec()).collect::<Vec<_>>())
        .bind(txns.iter().map(|t| t.2).collect::<Vec<_>>())
        .bind(txns.iter().map(|t| t.3).collect::<Vec<_>>())
        .bind(relations.iter().map(|(e, _)| e.event_id.as_str()).collect::<Vec<_>>())
        .bind(relations.iter().map(|(e, _)| e.room_id.as_str()).collect::<Vec<_>>())
        .bind(relations.iter().map(|(_, (to, _))| *to).collect::<Vec<_>>())
        .bind(relations.iter().map(|(_, (_, rel))| *rel).collect::<Vec<_>>())
        .bind(relations.iter().map(|(e, _)| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(relations.iter().map(|(e, _)| e.sender.as_str()).collect::<Vec<_>>())
        .bind(relations.iter().map(|(e, _)| e.stream_ordering).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(e, _)| e.room_id.as_str()).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(e, _)| e.stream_ordering).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(e, _)| e.origin_server_ts).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(_, row)| row.user_id.as_str()).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(_, row)| row.thread_id.as_str()).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(_, row)| row.highlight).collect::<Vec<_>>())
        .bind(notifications.iter().map(|(_, row)| row.actions.as_str()).collect::<Vec<_>>())
        .bind(changes.len() as i64);
    match query.execute(pool).await {
        Ok(_) => Some(Ok(())),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(ASSERTION_FAILED) => None,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some(TXN_KEY_CONSTRAINT) => {
            Some(Err(StorageError::DuplicateTxn))
        }
        Err(e) => Some(Err(e.into())),
    }
}
