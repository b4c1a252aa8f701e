//! The room SQL shared by SQLite and PostgreSQL (see `sql.rs` for why a macro).

/// `$first, $first+1, ...` placeholders for an `IN (...)` list.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Most bound parameters in one multi-row statement (both engines allow far more).
const PARAMS_PER_STATEMENT: usize = 1200;

/// `items` in chunks whose lengths are powers of two (largest first), each
/// under `PARAMS_PER_STATEMENT` parameters at `columns` a row. A multi-row
/// statement's text depends on its row count: with few distinct counts, the
/// prepared statements stay in the connection's cache instead of being parsed
/// and planned again for every batch size.
pub(super) fn pow2_chunks<T>(items: &[T], columns: usize) -> Vec<&[T]> {
    let most = 1usize << (PARAMS_PER_STATEMENT / columns.max(1)).max(1).ilog2();
    let mut chunks = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let len = most.min(1 << rest.len().ilog2());
        let (chunk, after) = rest.split_at(len);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// `($1, $2), ($3, $4), ...`: the VALUES of a multi-row INSERT.
pub(super) fn values_sql(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// The DAG edges of a batch, `(stream_ordering, prev_event_id)`: a remote PDU
/// may name a prev event twice; the edge is stored once.
pub(super) fn prev_edges<'a>(batch: &'a [super::NewEvent<'a>]) -> Vec<(i64, &'a str)> {
    batch
        .iter()
        .flat_map(|new| {
            let prevs = new.prev_events;
            prevs
                .iter()
                .enumerate()
                .filter(move |(i, prev)| !prevs[..*i].contains(prev))
                .map(move |(_, prev)| (new.event.stream_ordering, prev.as_str()))
        })
        .collect()
}

/// How a batch changes one room's forward extremities.
pub(super) struct ExtremityChange<'a> {
    /// Extremities stored before the batch that its events name as prev events.
    pub removed: Vec<&'a str>,
    /// The batch's events that no later event of the batch names.
    pub added: Vec<&'a str>,
}

/// Each room's extremity changes, rooms in the order they first appear. Storing
/// events one by one (delete an event's prev events, insert the event) ends
/// with the same set, as no event names a later one.
pub(super) fn extremity_changes<'a>(batch: &'a [super::NewEvent<'a>]) -> Vec<(&'a str, ExtremityChange<'a>)> {
    let in_batch: std::collections::HashSet<&str> = batch.iter().map(|new| new.event.event_id.as_str()).collect();
    let mut rooms: Vec<(&str, ExtremityChange<'_>)> = Vec::new();
    for new in batch {
        let room_id = new.event.room_id.as_str();
        let index = match rooms.iter().position(|(room, _)| *room == room_id) {
            Some(index) => index,
            None => {
                rooms.push((room_id, ExtremityChange { removed: Vec::new(), added: Vec::new() }));
                rooms.len() - 1
            }
        };
        let change = &mut rooms[index].1;
        for prev in new.prev_events {
            if in_batch.contains(prev.as_str()) {
                change.added.retain(|id| id != prev);
            } else if !change.removed.contains(&prev.as_str()) {
                change.removed.push(prev);
            }
        }
        change.added.push(&new.event.event_id);
    }
    rooms
}

/// An ordered read of one room's events: with the engine's probe filter, and
/// again with its exact one when the probe's rows include another room's
/// events (PostgreSQL's probe compares room-id hashes; see `room_filters`).
pub(super) async fn read_room_events<F, Fut>(
    room_id: &str,
    [probe, exact]: [String; 2],
    read: F,
) -> super::Result<Vec<super::StoredEvent>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = super::Result<Vec<super::StoredEvent>>>,
{
    let events = read(probe).await?;
    if events.iter().all(|e| e.room_id == room_id) {
        return Ok(events);
    }
    read(exact).await
}

pub(super) const EVENT_COLUMNS: &str = "stream_ordering, event_id, room_id, event_type, state_key, sender, depth, \
     origin_server_ts, state_group, replaces_state, redacted_by, json";

/// A statement over a VALUES list of `rows` in a transaction: `head VALUES
/// (...), (...) tail` (an INSERT, or an UPDATE / DELETE whose head opens a
/// subquery that the tail closes), in chunks of power-of-two lengths (see
/// `pow2_chunks`), each row bound by the closure-like last argument; evaluates
/// to the rows affected.
macro_rules! execute_values {
    ($tx:ident, $head:expr, $rows:expr, $columns:expr, |$query:ident, $row:pat_param| $bind:expr) => {
        $crate::storage::sql_rooms::execute_values!($tx, $head, "", $rows, $columns, |$query, $row| $bind)
    };
    ($tx:ident, $head:expr, $tail:expr, $rows:expr, $columns:expr, |$query:ident, $row:pat_param| $bind:expr) => {{
        let mut affected = 0u64;
        for chunk in $crate::storage::sql_rooms::pow2_chunks($rows, $columns) {
            let values = $crate::storage::sql_rooms::values_sql(chunk.len(), $columns);
            let sql = format!("{} VALUES {}{}", $head, values, $tail);
            let mut $query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for $row in chunk {
                $query = $bind;
            }
            affected += $query.execute(&mut *$tx).await?.rows_affected();
        }
        affected
    }};
}
pub(crate) use execute_values;

macro_rules! impl_room_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::RoomStore for $store {
            async fn create_room(&self, room: &$crate::storage::RoomRecord, now: i64) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (room_id) DO NOTHING",
                )
                .bind(&room.room_id)
                .bind(&room.room_version)
                .bind(&room.creator)
                .bind(room.is_public)
                .bind(now)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn get_room(&self, room_id: &str) -> $crate::storage::Result<Option<$crate::storage::RoomRecord>> {
                Ok(sqlx::query_as("SELECT room_id, room_version, creator, is_public FROM rooms WHERE room_id = $1")
                    .bind(room_id)
                    .fetch_optional(&self.read)
                    .await?)
            }

            async fn set_room_public(&self, room_id: &str, public: bool) -> $crate::storage::Result<()> {
                sqlx::query("UPDATE rooms SET is_public = $2 WHERE room_id = $1")
                    .bind(room_id)
                    .bind(public)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn public_rooms(&self) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT room_id FROM rooms WHERE is_public ORDER BY room_id")
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn max_ids(&self) -> $crate::storage::Result<(i64, i64)> {
                let stream: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(stream_ordering) FROM events").fetch_one(&self.read).await?;
                let group: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(id) FROM state_groups").fetch_one(&self.read).await?;
                Ok((stream.unwrap_or(0), group.unwrap_or(0)))
            }

            async fn persist_events(
                &self,
                batch: &[$crate::storage::NewEvent<'_>],
            ) -> $crate::storage::Result<()> {
                use $crate::storage::sql_rooms::{execute_values, pow2_chunks};
                // What most sends are may take a shorter way (PostgreSQL: one statement).
                if let Some(done) = self.persist_in_one_statement(batch).await {
                    if done.is_ok() {
                        self.after_events_written().await;
                    }
                    return done;
                }
                // One transaction for the whole batch: all of it is stored, or none.
                // Rows of the same table go in one multi-row INSERT: on SQLite each
                // statement is a round trip to the connection's worker thread.
                let mut tx = self.write.begin().await?;
                // Snapshots first: events name them.
                for new in batch {
                    let Some(group) = new.new_state_group else { continue };
                    sqlx::query("INSERT INTO state_groups (id, room_id, prev_group, position) VALUES ($1, $2, $3, $4)")
                        .bind(group.id)
                        .bind(&new.event.room_id)
                        .bind(group.prev_group)
                        .bind(group.position)
                        .execute(&mut *tx)
                        .await?;
                    execute_values!(
                        tx,
                        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)",
                        &group.delta,
                        4,
                        |query, entry| query.bind(group.id).bind(&entry.event_type).bind(&entry.state_key).bind(&entry.event_id)
                    );
                }
                execute_values!(
                    tx,
                    format!("INSERT INTO events ({})", $crate::storage::sql_rooms::EVENT_COLUMNS),
                    batch,
                    12,
                    |query, new| query
                        .bind(new.event.stream_ordering)
                        .bind(&new.event.event_id)
                        .bind(&new.event.room_id)
                        .bind(&new.event.event_type)
                        .bind(&new.event.state_key)
                        .bind(&new.event.sender)
                        .bind(new.event.depth)
                        .bind(new.event.origin_server_ts)
                        .bind(new.event.state_group)
                        .bind(&new.event.replaces_state)
                        .bind(&new.event.redacted_by)
                        .bind(&new.event.json)
                );
                let edges = $crate::storage::sql_rooms::prev_edges(batch);
                execute_values!(
                    tx,
                    "INSERT INTO event_prev_events (stream_ordering, prev_event_id)",
                    &edges,
                    2,
                    |query, (stream_ordering, prev)| query.bind(*stream_ordering).bind(*prev)
                );
                // Forward extremities, in a few statements whatever the number of
                // rooms (each is a round trip). The usual change, one event replacing
                // its room's only extremity, is an UPDATE: on PostgreSQL it stays on
                // its page (see migration 0012).
                let (swaps, mut others): (Vec<_>, Vec<_>) = $crate::storage::sql_rooms::extremity_changes(batch)
                    .into_iter()
                    .partition(|(_, change)| change.removed.len() == 1 && change.added.len() == 1);
                let swaps: Vec<(&str, &str, &str)> =
                    swaps.iter().map(|(room, change)| (*room, change.removed[0], change.added[0])).collect();
                let swapped = execute_values!(
                    tx,
                    "UPDATE forward_extremities SET event_id = v.column3 FROM (",
                    ") AS v WHERE forward_extremities.room_id = v.column1 AND forward_extremities.event_id = v.column2",
                    &swaps,
                    3,
                    |query, (room, old, new)| query.bind(*room).bind(*old).bind(*new)
                );
                if swapped != swaps.len() as u64 {
                    // Some room's stored extremity was not the one replaced: all of
                    // them the general way, clearing what the update may have set.
                    others.extend(swaps.iter().map(|(room, old, new)| {
                        (*room, $crate::storage::sql_rooms::ExtremityChange { removed: vec![*old, *new], added: vec![*new] })
                    }));
                }
                let removed: Vec<(&str, &str)> =
                    others.iter().flat_map(|(room, change)| change.removed.iter().map(move |id| (*room, *id))).collect();
                execute_values!(
                    tx,
                    "DELETE FROM forward_extremities WHERE (room_id, event_id) IN (",
                    ")",
                    &removed,
                    2,
                    |query, (room, id)| query.bind(*room).bind(*id)
                );
                let added: Vec<(&str, &str)> =
                    others.iter().flat_map(|(room, change)| change.added.iter().map(move |id| (*room, *id))).collect();
                execute_values!(tx, "INSERT INTO forward_extremities (room_id, event_id)", &added, 2, |query, (room, id)| {
                    query.bind(*room).bind(*id)
                });
                // Current state and memberships, in order: a later event of the batch wins.
                for new in batch {
                    let e = new.event;
                    let Some(state_key) = &e.state_key else { continue };
                    sqlx::query(
                        "INSERT INTO current_state (room_id, event_type, state_key, event_id) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id",
                    )
                    .bind(&e.room_id)
                    .bind(&e.event_type)
                    .bind(state_key)
                    .bind(&e.event_id)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(membership) = new.membership {
                        sqlx::query(
                            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering)
                             VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,
                                 event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,
                                 forgotten = FALSE",
                        )
                        .bind(&e.room_id)
                        .bind(state_key)
                        .bind(membership)
                        .bind(&e.event_id)
                        .bind(e.stream_ordering)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let txns: Vec<(i64, [u8; 16], &$crate::storage::TxnKey<'_>)> = batch
                    .iter()
                    .filter_map(|new| new.txn.as_ref().map(|key| (new.event.stream_ordering, key.digest(), key)))
                    .collect();
                let stored = execute_values!(
                    tx,
                    "INSERT INTO client_txns (stream_ordering, txn_key, device_id, txn_id)",
                    " ON CONFLICT (txn_key) DO NOTHING",
                    &txns,
                    4,
                    |query, (stream_ordering, digest, key)| query
                        .bind(*stream_ordering)
                        .bind(digest.as_slice())
                        .bind(key.device_id)
                        .bind(key.txn_id)
                );
                if stored != txns.len() as u64 {
                    // A transaction id used before: dropping the transaction rolls the batch back.
                    return Err($crate::storage::StorageError::DuplicateTxn);
                }
                let relations: Vec<(&$crate::storage::StoredEvent, (&str, &str))> =
                    batch.iter().filter_map(|new| Some((new.event, new.relation?))).collect();
                execute_values!(
                    tx,
                    "INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, event_type, sender,
                         stream_ordering)",
                    &relations,
                    7,
                    |query, (e, (relates_to, rel_type))| query
                        .bind(&e.event_id)
                        .bind(&e.room_id)
                        .bind(*relates_to)
                        .bind(*rel_type)
                        .bind(&e.event_type)
                        .bind(&e.sender)
                        .bind(e.stream_ordering)
                );
                let searchable: Vec<(&$crate::storage::StoredEvent, &str, &str)> =
                    batch.iter().filter_map(|new| new.search.map(|(key, text)| (new.event, key, text))).collect();
                for chunk in pow2_chunks(&searchable, 5) {
                    Self::index_search(&mut tx, chunk).await?;
                }
                let notifications: Vec<(&$crate::storage::StoredEvent, &$crate::storage::PushActionRow)> =
                    batch.iter().flat_map(|new| new.push_actions.iter().map(move |row| (new.event, row))).collect();
                execute_values!(
                    tx,
                    "INSERT INTO event_push_actions (room_id, stream_ordering, ts, user_id, thread_id, highlight, actions)",
                    &notifications,
                    7,
                    |query, (e, row)| query
                        .bind(&e.room_id)
                        .bind(e.stream_ordering)
                        .bind(e.origin_server_ts)
                        .bind(&row.user_id)
                        .bind(&row.thread_id)
                        .bind(row.highlight)
                        .bind(&row.actions)
                );
                // Redactions last, so that a target stored in the same batch is found.
                for new in batch {
                    let Some((target, redacted_json)) = new.redaction else { continue };
                    let e = new.event;
                    Self::unindex_search(&mut tx, target).await?;
                    let sql = format!(
                        "DELETE FROM event_push_actions
                         WHERE {} AND {} AND stream_ordering = (SELECT stream_ordering FROM events WHERE event_id = $1)",
                        Self::key_in("user_id", "user_id", "memberships WHERE room_id = $2"),
                        Self::key_eq("room_id", "$2")
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(target)
                    .bind(&e.room_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE events SET json = $2, redacted_by = $3 WHERE event_id = $1")
                        .bind(target)
                        .bind(redacted_json)
                        .bind(&e.event_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.after_events_written().await;
                Ok(())
            }

            async fn forward_extremities(
                &self,
                room_id: &str,
            ) -> $crate::storage::Result<Vec<$crate::storage::Extremity>> {
                Ok(sqlx::query_as(
                    "SELECT e.event_id, e.depth, e.state_group FROM forward_extremities f
                     JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1 ORDER BY e.depth DESC",
                )
                .bind(room_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn get_event(&self, event_id: &str) -> $crate::storage::Result<Option<$crate::storage::StoredEvent>> {
                let sql = format!("SELECT {} FROM events WHERE event_id = $1", $crate::storage::sql_rooms::EVENT_COLUMNS);
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_optional(&self.read).await?)
            }

            async fn get_events(
                &self,
                event_ids: &[String],
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                if event_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT {} FROM events WHERE event_id IN ({})",
                    $crate::storage::sql_rooms::EVENT_COLUMNS,
                    $crate::storage::sql_rooms::placeholders(1, event_ids.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in event_ids {
                    query = query.bind(id);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn room_events_page(
                &self,
                room_id: &str,
                from: (i64, i64),
                direction: $crate::storage::Direction,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                // Positions sit between events: backward reads what is before the
                // position, forward reads from it on.
                let (comparison, order) = match direction {
                    $crate::storage::Direction::Backward => ("<", "DESC"),
                    $crate::storage::Direction::Forward => (">=", "ASC"),
                };
                let page = |room: String| async move {
                    let sql = format!(
                        "SELECT {} FROM events WHERE {room} AND (depth, stream_ordering) {comparison} ($2, $3)
                         ORDER BY depth {order}, stream_ordering {order} LIMIT $4",
                        $crate::storage::sql_rooms::EVENT_COLUMNS
                    );
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(room_id)
                        .bind(from.0)
                        .bind(from.1)
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await?)
                };
                $crate::storage::sql_rooms::read_room_events(room_id, Self::room_filters(), page).await
            }

            async fn room_events_in_range(
                &self,
                room_id: &str,
                after: i64,
                upto: i64,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                let range = |room: String| async move {
                    let sql = format!(
                        "SELECT {} FROM events WHERE {room} AND stream_ordering > $2 AND stream_ordering <= $3
                         ORDER BY stream_ordering DESC LIMIT $4",
                        $crate::storage::sql_rooms::EVENT_COLUMNS
                    );
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(room_id)
                        .bind(after)
                        .bind(upto)
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await?)
                };
                $crate::storage::sql_rooms::read_room_events(room_id, Self::room_filters(), range).await
            }

            async fn room_state_events_in_range(
                &self,
                room_id: &str,
                after: i64,
                before: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                let sql = format!(
                    "SELECT {} FROM events WHERE {} AND stream_ordering > $2 AND stream_ordering < $3
                       AND state_key IS NOT NULL ORDER BY stream_ordering",
                    $crate::storage::sql_rooms::EVENT_COLUMNS,
                    Self::key_eq("room_id", "$1")
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(room_id)
                    .bind(after)
                    .bind(before)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn user_memberships(
                &self,
                user_id: &str,
            ) -> $crate::storage::Result<Vec<$crate::storage::UserMembership>> {
                Ok(sqlx::query_as(
                    "SELECT room_id, membership, event_id, stream_ordering, forgotten FROM memberships WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn state_group(&self, id: i64) -> $crate::storage::Result<Option<$crate::storage::StateGroupRecord>> {
                Ok(sqlx::query_as("SELECT id, prev_group, position FROM state_groups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?)
            }

            async fn state_group_at_position(&self, room_id: &str, position: i64) -> $crate::storage::Result<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT MAX(id) FROM state_groups WHERE room_id = $1 AND position = $2",
                )
                .bind(room_id)
                .bind(position)
                .fetch_one(&self.read)
                .await?)
            }

            async fn state_group_chain_entries(
                &self,
                group: i64,
            ) -> $crate::storage::Result<Vec<(i64, $crate::storage::StateEntry)>> {
                let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "WITH RECURSIVE chain(id, prev_group) AS (
                         SELECT id, prev_group FROM state_groups WHERE id = $1
                         UNION ALL
                         SELECT g.id, g.prev_group FROM state_groups g JOIN chain c ON g.id = c.prev_group
                     )
                     SELECT e.group_id, e.event_type, e.state_key, e.event_id
                     FROM state_group_entries e JOIN chain c ON e.group_id = c.id
                     ORDER BY e.group_id",
                )
                .bind(group)
                .fetch_all(&self.read)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(g, event_type, state_key, event_id)| {
                        (g, $crate::storage::StateEntry { event_type, state_key, event_id })
                    })
                    .collect())
            }

            async fn state_group_lookup(
                &self,
                group: i64,
                event_type: &str,
                state_key: &str,
            ) -> $crate::storage::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "WITH RECURSIVE chain(id, prev_group) AS (
                         SELECT id, prev_group FROM state_groups WHERE id = $1
                         UNION ALL
                         SELECT g.id, g.prev_group FROM state_groups g JOIN chain c ON g.id = c.prev_group
                     )
                     SELECT e.event_id FROM state_group_entries e JOIN chain c ON e.group_id = c.id
                     WHERE e.event_type = $2 AND e.state_key = $3
                     ORDER BY e.group_id DESC LIMIT 1",
                )
                .bind(group)
                .bind(event_type)
                .bind(state_key)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn current_state(&self, room_id: &str) -> $crate::storage::Result<Vec<$crate::storage::StateEntry>> {
                Ok(sqlx::query_as("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1")
                    .bind(room_id)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn current_state_event_id(
                &self,
                room_id: &str,
                event_type: &str,
                state_key: &str,
            ) -> $crate::storage::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT event_id FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
                )
                .bind(room_id)
                .bind(event_type)
                .bind(state_key)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn membership(
                &self,
                room_id: &str,
                user_id: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::MemberRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, membership, event_id FROM memberships WHERE room_id = $1 AND user_id = $2",
                )
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn rooms_with_membership(&self, user_id: &str, membership: &str) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = $2 AND NOT forgotten
                     ORDER BY room_id",
                )
                .bind(user_id)
                .bind(membership)
                .fetch_all(&self.read)
                .await?)
            }

            async fn room_members(&self, room_id: &str) -> $crate::storage::Result<Vec<$crate::storage::MemberRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, membership, event_id FROM memberships WHERE room_id = $1 ORDER BY user_id",
                )
                .bind(room_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn forget_room(&self, room_id: &str, user_id: &str) -> $crate::storage::Result<()> {
                sqlx::query("UPDATE memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(user_id)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn txn_event_id(&self, key: &$crate::storage::TxnKey<'_>) -> $crate::storage::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT e.event_id FROM client_txns t JOIN events e ON e.stream_ordering = t.stream_ordering
                     WHERE t.txn_key = $1",
                )
                .bind(key.digest().as_slice())
                .fetch_optional(&self.read)
                .await?)
            }

            async fn txn_ids_of_events(
                &self,
                user_id: &str,
                device_id: &str,
                event_ids: &[String],
            ) -> $crate::storage::Result<Vec<(String, String)>> {
                if event_ids.is_empty() {
                    return Ok(Vec::new());
                }
                // The events first (by id), then each one's transaction by its
                // key: as a join, PostgreSQL without statistics scanned all of
                // client_txns for the device (20 ms a room in an initial sync).
                let sql = format!(
                    "SELECT e.event_id,
                            (SELECT t.txn_id FROM client_txns t WHERE t.stream_ordering = e.stream_ordering AND t.device_id = $2)
                     FROM events e WHERE e.event_id IN ({}) AND e.sender = $1",
                    $crate::storage::sql_rooms::placeholders(3, event_ids.len())
                );
                let mut query =
                    sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(device_id);
                for id in event_ids {
                    query = query.bind(id);
                }
                let rows = query.fetch_all(&self.read).await?;
                Ok(rows.into_iter().filter_map(|(event_id, txn_id)| Some((event_id, txn_id?))).collect())
            }

            async fn relations(
                &self,
                parent: &str,
                rel_type: Option<&str>,
                event_type: Option<&str>,
                from: i64,
                direction: $crate::storage::Direction,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                let (comparison, order) = match direction {
                    $crate::storage::Direction::Backward => ("<", "DESC"),
                    $crate::storage::Direction::Forward => (">", "ASC"),
                };
                let columns = $crate::storage::sql_rooms::EVENT_COLUMNS
                    .split(", ")
                    .map(|c| format!("e.{}", c.trim()))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT {columns} FROM event_relations r JOIN events e ON e.event_id = r.event_id
                     WHERE r.relates_to = $1 AND ($2 IS NULL OR r.rel_type = $2) AND ($3 IS NULL OR r.event_type = $3)
                       AND r.stream_ordering {comparison} $4
                     ORDER BY r.stream_ordering {order} LIMIT $5"
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(parent)
                    .bind(rel_type)
                    .bind(event_type)
                    .bind(from)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn relation_rows(
                &self,
                parents: &[String],
                rel_type: &str,
            ) -> $crate::storage::Result<Vec<$crate::storage::RelationRow>> {
                if parents.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT relates_to, event_id, sender, stream_ordering FROM event_relations
                     WHERE rel_type = $1 AND relates_to IN ({}) ORDER BY stream_ordering",
                    $crate::storage::sql_rooms::placeholders(2, parents.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(rel_type);
                for parent in parents {
                    query = query.bind(parent);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn thread_summaries(
                &self,
                parents: &[String],
            ) -> $crate::storage::Result<Vec<$crate::storage::ThreadSummary>> {
                if parents.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT relates_to AS root, COUNT(*) AS count, MAX(stream_ordering) AS latest FROM event_relations
                     WHERE rel_type = 'm.thread' AND relates_to IN ({}) GROUP BY relates_to",
                    $crate::storage::sql_rooms::placeholders(1, parents.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for parent in parents {
                    query = query.bind(parent);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn threads(
                &self,
                room_id: &str,
                participant: Option<&str>,
                before: i64,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::ThreadSummary>> {
                Ok(sqlx::query_as(
                    "SELECT r.relates_to AS root, COUNT(*) AS count, MAX(r.stream_ordering) AS latest
                     FROM event_relations r
                     WHERE r.room_id = $1 AND r.rel_type = 'm.thread'
                     GROUP BY r.relates_to
                     HAVING MAX(r.stream_ordering) < $2
                        AND ($3 IS NULL
                             OR SUM(CASE WHEN r.sender = $3 THEN 1 ELSE 0 END) > 0
                             OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = r.relates_to AND e.sender = $3))
                     ORDER BY latest DESC LIMIT $4",
                )
                .bind(room_id)
                .bind(before)
                .bind(participant)
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }

            async fn event_near_timestamp(
                &self,
                room_id: &str,
                ts: i64,
                direction: $crate::storage::Direction,
            ) -> $crate::storage::Result<Option<$crate::storage::StoredEvent>> {
                let (comparison, order) = match direction {
                    $crate::storage::Direction::Backward => ("<=", "DESC"),
                    $crate::storage::Direction::Forward => (">=", "ASC"),
                };
                let nearest = |room: String| async move {
                    let sql = format!(
                        "SELECT {} FROM events WHERE {room} AND origin_server_ts {comparison} $2
                         ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1",
                        $crate::storage::sql_rooms::EVENT_COLUMNS
                    );
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(room_id).bind(ts).fetch_all(&self.read).await?)
                };
                let found =
                    $crate::storage::sql_rooms::read_room_events(room_id, Self::room_filters(), nearest).await?;
                Ok(found.into_iter().next())
            }

            async fn put_receipt(&self, r: &$crate::storage::ReceiptRow) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (room_id, receipt_type, user_id, thread_id)
                     DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id",
                )
                .bind(&r.room_id)
                .bind(&r.receipt_type)
                .bind(&r.user_id)
                .bind(&r.thread_id)
                .bind(&r.event_id)
                .bind(r.ts)
                .bind(r.stream_id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn receipts_since(
                &self,
                room_id: &str,
                after: i64,
                upto: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::ReceiptRow>> {
                Ok(sqlx::query_as(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id FROM receipts
                     WHERE room_id = $1 AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
                )
                .bind(room_id)
                .bind(after)
                .bind(upto)
                .fetch_all(&self.read)
                .await?)
            }

            async fn latest_receipt_per_room(&self) -> $crate::storage::Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as("SELECT room_id, MAX(stream_id) FROM receipts GROUP BY room_id")
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn max_receipt_stream(&self) -> $crate::storage::Result<i64> {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(stream_id) FROM receipts").fetch_one(&self.read).await?;
                Ok(max.unwrap_or(0))
            }

            async fn add_report(&self, r: &$crate::storage::NewReport<'_>) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO event_reports (room_id, event_id, reporter, reason, score, received_ts)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(r.room_id)
                .bind(r.event_id)
                .bind(r.reporter)
                .bind(r.reason)
                .bind(r.score)
                .bind(r.now)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING",
                )
                .bind(alias)
                .bind(room_id)
                .bind(creator)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn get_alias(&self, alias: &str) -> $crate::storage::Result<Option<(String, String)>> {
                Ok(sqlx::query_as("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
                    .bind(alias)
                    .fetch_optional(&self.read)
                    .await?)
            }

            async fn delete_alias(&self, alias: &str) -> $crate::storage::Result<bool> {
                let result =
                    sqlx::query("DELETE FROM room_aliases WHERE alias = $1").bind(alias).execute(&self.write).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn room_aliases(&self, room_id: &str) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
                    .bind(room_id)
                    .fetch_all(&self.read)
                    .await?)
            }
        }

        impl $store {
            /// Moves the client transactions of a database from before migration
            /// 0011 into `client_txns` (their digest is computed here) and drops
            /// the old table, all in one transaction. `exists_sql` counts the
            /// tables named event_txns. Read at once: done once per database.
            pub(super) async fn move_legacy_txns(&self, exists_sql: &str) -> $crate::storage::Result<()> {
                use $crate::storage::sql_rooms::execute_values;
                let mut tx = self.write.begin().await?;
                let exists: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(exists_sql)).fetch_one(&mut *tx).await?;
                if exists == 0 {
                    return Ok(());
                }
                let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT t.user_id, t.device_id, t.scope, t.txn_id, e.stream_ordering
                     FROM event_txns t JOIN events e ON e.event_id = t.event_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let moved: Vec<(i64, [u8; 16], &str, &str)> = rows
                    .iter()
                    .map(|(user_id, device_id, scope, txn_id, stream_ordering)| {
                        let key = $crate::storage::TxnKey { user_id, device_id, scope, txn_id };
                        (*stream_ordering, key.digest(), device_id.as_str(), txn_id.as_str())
                    })
                    .collect();
                execute_values!(
                    tx,
                    "INSERT INTO client_txns (stream_ordering, txn_key, device_id, txn_id)",
                    " ON CONFLICT DO NOTHING",
                    &moved,
                    4,
                    |query, (stream_ordering, digest, device_id, txn_id)| query
                        .bind(*stream_ordering)
                        .bind(digest.as_slice())
                        .bind(*device_id)
                        .bind(*txn_id)
                );
                sqlx::query("DROP TABLE event_txns").execute(&mut *tx).await?;
                tx.commit().await?;
                tracing::info!(transactions = moved.len(), "client transaction ids moved to client_txns");
                Ok(())
            }
        }
    };
}

pub(crate) use impl_room_sql;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::{plain, stored};
    use crate::storage::{NewEvent, StoredEvent};

    fn event(id: &str, room: &str) -> StoredEvent {
        stored(0, id, room, None, 0)
    }

    fn new<'a>(event: &'a StoredEvent, prev: &'a [String]) -> NewEvent<'a> {
        NewEvent { prev_events: prev, ..plain(event) }
    }

    #[test]
    fn chunks_have_power_of_two_lengths_under_the_parameter_limit() {
        let lengths = |n: usize, columns| pow2_chunks(&vec![0; n], columns).iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lengths(0, 5), Vec::<usize>::new());
        assert_eq!(lengths(1, 5), vec![1]);
        assert_eq!(lengths(7, 5), vec![4, 2, 1]);
        // 1200 / 12 = 100 parameters' worth: at most 64 rows.
        assert_eq!(lengths(200, 12), vec![64, 64, 64, 8]);
        assert_eq!(lengths(3, 2000), vec![1, 1, 1]);
    }

    #[test]
    fn values_are_numbered_row_by_row() {
        assert_eq!(values_sql(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_sql(1, 1), "($1)");
    }

    #[test]
    fn a_chain_replaces_the_extremity_it_grew_from() {
        let (a1, a2, a3, b1) = (event("$a1", "!a"), event("$a2", "!a"), event("$a3", "!a"), event("$b1", "!b"));
        let (p0, p1, p2, q0) = (["$a0".to_owned()], ["$a1".to_owned()], ["$a2".to_owned()], ["$b0".to_owned()]);
        let batch = [new(&a1, &p0), new(&b1, &q0), new(&a2, &p1), new(&a3, &p2)];
        let changes = extremity_changes(&batch);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].0, "!a");
        assert_eq!((changes[0].1.removed.as_slice(), changes[0].1.added.as_slice()), (&["$a0"][..], &["$a3"][..]));
        assert_eq!((changes[1].1.removed.as_slice(), changes[1].1.added.as_slice()), (&["$b0"][..], &["$b1"][..]));
    }

    #[test]
    fn a_merge_removes_every_extremity_it_names() {
        let (m, n) = (event("$m", "!a"), event("$n", "!a"));
        let (pm, pn) = (["$x".to_owned(), "$y".to_owned()], ["$z".to_owned()]);
        // Two events on separate branches, then nothing joins them: both stay extremities.
        let batch = [new(&m, &pm), new(&n, &pn)];
        let changes = extremity_changes(&batch);
        assert_eq!(changes[0].1.removed, vec!["$x", "$y", "$z"]);
        assert_eq!(changes[0].1.added, vec!["$m", "$n"]);
    }
}
