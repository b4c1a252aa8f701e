//! The push SQL shared by SQLite and PostgreSQL (see `sql.rs` for why a macro).

/// The read positions of user `$1` in room `$2` per thread ("" for unthreaded
/// receipts): their latest m.read / m.read.private receipts and their own latest events.
const READ_POSITIONS: &str = "SELECT thread_id, MAX(pos) AS pos FROM (
         SELECT r.thread_id AS thread_id, e.stream_ordering AS pos FROM receipts r
         JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = $2 AND r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private')
         UNION ALL
         SELECT thread_id, stream_ordering AS pos FROM push_own_events WHERE user_id = $1 AND room_id = $2
     ) positions GROUP BY thread_id";

/// `member` selects the rows of user `$1` in room `$2` (the engine's `key_eq`s).
pub(super) fn unread_counts_sql(member: &str) -> String {
    // A row is unread when it is after both the unthreaded receipt and its own thread's receipt.
    format!(
        "SELECT a.thread_id, COUNT(*) AS notifications,
             SUM(CASE WHEN a.highlight THEN 1 ELSE 0 END) AS highlights
         FROM event_push_actions a
         LEFT JOIN ({READ_POSITIONS}) t ON t.thread_id = a.thread_id
         WHERE {member} AND a.stream_ordering <= $3
           AND a.stream_ordering > COALESCE(t.pos, 0)
           AND a.stream_ordering > COALESCE((SELECT u.pos FROM ({READ_POSITIONS}) u WHERE u.thread_id = ''), 0)
         GROUP BY a.thread_id"
    )
}

pub(super) fn read_positions_sql() -> &'static str {
    READ_POSITIONS
}

macro_rules! impl_push_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::PushStore for $store {
            async fn unread_counts(
                &self,
                user_id: &str,
                room_id: &str,
                upto: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::ThreadCounts>> {
                let member = format!("{} AND {}", Self::key_eq("a.user_id", "$1"), Self::key_eq("a.room_id", "$2"));
                let sql = $crate::storage::sql_push::unread_counts_sql(&member);
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(user_id)
                    .bind(room_id)
                    .bind(upto)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn notifications(
                &self,
                user_id: &str,
                before: i64,
                only_highlight: bool,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::NotificationRow>> {
                let sql = format!(
                    "SELECT a.room_id, a.stream_ordering, e.event_id, a.thread_id, a.highlight, a.actions, a.ts
                     FROM event_push_actions a JOIN events e ON e.stream_ordering = a.stream_ordering
                     WHERE {} AND a.stream_ordering < $2 AND (a.highlight OR NOT $3)
                     ORDER BY a.stream_ordering DESC LIMIT $4",
                    Self::key_eq("a.user_id", "$1")
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(user_id)
                    .bind(before)
                    .bind(only_highlight)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn read_positions(
                &self,
                user_id: &str,
                room_id: &str,
            ) -> $crate::storage::Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as($crate::storage::sql_push::read_positions_sql())
                    .bind(user_id)
                    .bind(room_id)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn global_account_data_of(
                &self,
                user_ids: &[String],
                data_type: &str,
            ) -> $crate::storage::Result<Vec<(String, String)>> {
                let mut found = Vec::new();
                for chunk in user_ids.chunks(500) {
                    let sql = format!(
                        "SELECT user_id, content FROM account_data
                         WHERE room_id = '' AND data_type = $1 AND user_id IN ({})",
                        $crate::storage::sql_rooms::placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(data_type);
                    for user_id in chunk {
                        query = query.bind(user_id);
                    }
                    found.extend(query.fetch_all(&self.read).await?);
                }
                Ok(found)
            }

            async fn joined_member_events(&self, room_id: &str) -> $crate::storage::Result<Vec<(String, String)>> {
                Ok(sqlx::query_as(
                    "SELECT m.user_id, e.json FROM memberships m JOIN events e ON e.event_id = m.event_id
                     WHERE m.room_id = $1 AND m.membership = 'join'",
                )
                .bind(room_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn pushers(&self, user_id: &str) -> $crate::storage::Result<Vec<$crate::storage::PusherRow>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag,
                         lang, data, created_ts
                     FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey",
                )
                .bind(user_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn set_pusher(&self, p: &$crate::storage::PusherRow, append: bool) -> $crate::storage::Result<()> {
                let mut tx = self.write.begin().await?;
                if !append {
                    sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                        .bind(&p.app_id)
                        .bind(&p.pushkey)
                        .bind(&p.user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name,
                         profile_tag, lang, data, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind,
                         app_display_name = excluded.app_display_name,
                         device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,
                         lang = excluded.lang, data = excluded.data",
                )
                .bind(&p.user_id)
                .bind(&p.app_id)
                .bind(&p.pushkey)
                .bind(&p.kind)
                .bind(&p.app_display_name)
                .bind(&p.device_display_name)
                .bind(&p.profile_tag)
                .bind(&p.lang)
                .bind(&p.data)
                .bind(p.created_ts)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> $crate::storage::Result<bool> {
                let result = sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
                    .bind(user_id)
                    .bind(app_id)
                    .bind(pushkey)
                    .execute(&self.write)
                    .await?;
                Ok(result.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_push_sql;
