//! The end-to-end encryption SQL shared by SQLite and PostgreSQL (see `sql.rs` for why a macro).

macro_rules! impl_e2ee_sql {
    // `$row_lock`: what a SELECT appends to lock the row it reads, skipping rows other
    // transactions hold (PostgreSQL); nothing on SQLite, whose one writer runs one
    // transaction at a time. `$list_placeholders(n)`: the placeholders of a statement
    // whose only parameters are an n-item list (see `sqlite::list_placeholders`).
    ($store:ty, $row_lock:expr, $list_placeholders:path) => {
        #[async_trait::async_trait]
        impl $crate::storage::E2eeStore for $store {
            async fn put_device_keys(
                &self,
                user_id: &str,
                device_id: &str,
                key_json: &str,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(key_json)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn device_keys_of(
                &self,
                user_ids: &[String],
            ) -> $crate::storage::Result<Vec<$crate::storage::DeviceKeysRow>> {
                if user_ids.is_empty() {
                    return Ok(Vec::new());
                }
                // Only devices that still exist: a deleted device's keys go with it.
                let sql = format!(
                    "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k
                     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                     WHERE k.user_id IN ({})",
                    $list_placeholders(user_ids.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in user_ids {
                    query = query.bind(id);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn add_one_time_keys(
                &self,
                user_id: &str,
                device_id: &str,
                keys: &[$crate::storage::NewKey],
            ) -> $crate::storage::Result<()> {
                let mut tx = self.write.begin().await?;
                for key in keys {
                    sqlx::query(
                        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(user_id)
                    .bind(device_id)
                    .bind(&key.algorithm)
                    .bind(&key.key_id)
                    .bind(&key.key_json)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn one_time_key_counts(
                &self,
                user_id: &str,
                device_id: &str,
            ) -> $crate::storage::Result<Vec<(String, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2
                     GROUP BY algorithm",
                )
                .bind(user_id)
                .bind(device_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn put_fallback_key(
                &self,
                user_id: &str,
                device_id: &str,
                key: &$crate::storage::NewKey,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
                     VALUES ($1, $2, $3, $4, $5, FALSE)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
                         used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id
                                      AND e2e_fallback_keys.key_json = excluded.key_json
                                     THEN e2e_fallback_keys.used ELSE FALSE END,
                         key_id = excluded.key_id,
                         key_json = excluded.key_json",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(&key.algorithm)
                .bind(&key.key_id)
                .bind(&key.key_json)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn unused_fallback_key_types(
                &self,
                user_id: &str,
                device_id: &str,
            ) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used
                     ORDER BY algorithm",
                )
                .bind(user_id)
                .bind(device_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn claim_keys(
                &self,
                wanted: &[(String, String, String)],
            ) -> $crate::storage::Result<Vec<Option<(String, String)>>> {
                // One transaction for the whole request: one commit, not one per device.
                let mut tx = self.write.begin().await?;
                let mut claimed: Vec<Option<(String, String)>> = vec![None; wanted.len()];
                // Every wanted device's lowest one-time key, in one statement per chunk
                // rather than one round trip per device. On PostgreSQL a key that a
                // concurrent claim holds is skipped (`$row_lock`): the next key is taken,
                // so no claim hands out a key twice, none waits for another, and claims
                // of overlapping devices cannot deadlock.
                let position: std::collections::HashMap<(&str, &str, &str), usize> = wanted
                    .iter()
                    .enumerate()
                    .map(|(i, (u, d, a))| ((u.as_str(), d.as_str(), a.as_str()), i))
                    .collect();
                for chunk in $crate::storage::sql_rooms::pow2_chunks(wanted, 3) {
                    // The lowest key is looked up once (materialized; inline, PostgreSQL
                    // ran the lookup twice, and it walks past the index entries of keys
                    // claimed before and not yet vacuumed); the DELETE finds each by its key.
                    let sql = format!(
                        "WITH picked AS MATERIALIZED (
                             SELECT w.column1 AS user_id, w.column2 AS device_id, w.column3 AS algorithm, (
                                 SELECT m.key_id FROM e2e_one_time_keys m
                                 WHERE m.user_id = w.column1 AND m.device_id = w.column2
                                     AND m.algorithm = w.column3
                                 ORDER BY m.key_id LIMIT 1{}) AS key_id
                             FROM (VALUES {}) AS w)
                         DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) IN (
                             SELECT user_id, device_id, algorithm, key_id FROM picked)
                         RETURNING user_id, device_id, algorithm, key_id, key_json",
                        $row_lock,
                        $crate::storage::sql_rooms::values_sql(chunk.len(), 3)
                    );
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                    for (user_id, device_id, algorithm) in chunk {
                        query = query.bind(user_id).bind(device_id).bind(algorithm);
                    }
                    let rows: Vec<(String, String, String, String, String)> = query.fetch_all(&mut *tx).await?;
                    for (user_id, device_id, algorithm, key_id, key_json) in rows {
                        if let Some(&i) = position.get(&(user_id.as_str(), device_id.as_str(), algorithm.as_str())) {
                            claimed[i] = Some((format!("{algorithm}:{key_id}"), key_json));
                        }
                    }
                }
                // Devices without a one-time key get their fallback key (marked used),
                // in the callers' sorted order: concurrent claims wait for each other's
                // fallback rows in one order.
                for ((user_id, device_id, algorithm), slot) in wanted.iter().zip(claimed.iter_mut()) {
                    if slot.is_some() {
                        continue;
                    }
                    let fallback: Option<(String, String)> = sqlx::query_as(
                        "UPDATE e2e_fallback_keys SET used = TRUE
                         WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                         RETURNING key_id, key_json",
                    )
                    .bind(user_id)
                    .bind(device_id)
                    .bind(algorithm)
                    .fetch_optional(&mut *tx)
                    .await?;
                    *slot = fallback.map(|(key_id, json)| (format!("{algorithm}:{key_id}"), json));
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn put_cross_signing_key(
                &self,
                user_id: &str,
                key_type: &str,
                key_json: &str,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
                )
                .bind(user_id)
                .bind(key_type)
                .bind(key_json)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn cross_signing_keys_of(
                &self,
                user_ids: &[String],
            ) -> $crate::storage::Result<Vec<$crate::storage::CrossSigningKeyRow>> {
                if user_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys WHERE user_id IN ({})",
                    $list_placeholders(user_ids.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in user_ids {
                    query = query.bind(id);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn add_signatures(&self, signatures: &[$crate::storage::SignatureRow]) -> $crate::storage::Result<()> {
                let mut tx = self.write.begin().await?;
                for s in signatures {
                    sqlx::query(
                        "INSERT INTO e2e_signatures
                             (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
                         DO UPDATE SET signature = excluded.signature",
                    )
                    .bind(&s.target_user_id)
                    .bind(&s.target_key_id)
                    .bind(&s.signer_user_id)
                    .bind(&s.signer_key_id)
                    .bind(&s.signature)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn signatures_on(
                &self,
                user_ids: &[String],
            ) -> $crate::storage::Result<Vec<$crate::storage::SignatureRow>> {
                if user_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
                     FROM e2e_signatures WHERE target_user_id IN ({})",
                    $list_placeholders(user_ids.len())
                );
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in user_ids {
                    query = query.bind(id);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn mark_device_list_changed(&self, user_id: &str, stream_id: i64) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO device_list_stream (user_id, stream_id) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                )
                .bind(user_id)
                .bind(stream_id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn device_list_changes(&self, after: i64, upto: i64) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM device_list_stream WHERE stream_id > $1 AND stream_id <= $2",
                )
                .bind(after)
                .bind(upto)
                .fetch_all(&self.read)
                .await?)
            }

            async fn max_device_list_stream(&self) -> $crate::storage::Result<i64> {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(stream_id) FROM device_list_stream").fetch_one(&self.read).await?;
                Ok(max.unwrap_or(0))
            }

            async fn users_sharing_a_room(
                &self,
                user_id: &str,
                candidates: &[String],
            ) -> $crate::storage::Result<Vec<String>> {
                if candidates.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT DISTINCT b.user_id FROM memberships a
                     JOIN memberships b ON b.room_id = a.room_id AND b.membership = 'join'
                     WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id IN ({})",
                    $crate::storage::sql_rooms::placeholders(2, candidates.len())
                );
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(user_id);
                for id in candidates {
                    query = query.bind(id);
                }
                Ok(query.fetch_all(&self.read).await?)
            }

            async fn room_mates(&self, user_id: &str) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT b.user_id FROM memberships a
                     JOIN memberships b ON b.room_id = a.room_id AND b.membership = 'join'
                     WHERE a.user_id = $1 AND a.membership = 'join'",
                )
                .bind(user_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn member_events_in_rooms_of(
                &self,
                user_id: &str,
                after: i64,
                upto: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::StoredEvent>> {
                let sql = format!(
                    "SELECT {} FROM events
                     WHERE {} AND event_type = 'm.room.member' AND stream_ordering > $2 AND stream_ordering <= $3
                     ORDER BY stream_ordering",
                    $crate::storage::sql_rooms::EVENT_COLUMNS,
                    Self::key_in("room_id", "room_id", "memberships WHERE user_id = $1")
                );
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(user_id)
                    .bind(after)
                    .bind(upto)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn add_to_device(
                &self,
                sender: &str,
                sender_device: &str,
                txn_id: &str,
                messages: &[$crate::storage::NewToDevice<'_>],
                stream_id: i64,
            ) -> $crate::storage::Result<bool> {
                let mut tx = self.write.begin().await?;
                let fresh = sqlx::query(
                    "INSERT INTO to_device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(sender)
                .bind(sender_device)
                .bind(txn_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !fresh {
                    return Ok(false);
                }
                for m in messages {
                    sqlx::query(
                        "INSERT INTO to_device_messages (user_id, device_id, stream_id, sender, event_type, content)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(m.user_id)
                    .bind(m.device_id)
                    .bind(stream_id)
                    .bind(sender)
                    .bind(m.event_type)
                    .bind(&m.content)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO stream_positions (stream, position) VALUES ('to_device', $1)
                     ON CONFLICT (stream) DO UPDATE SET position = excluded.position",
                )
                .bind(stream_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn to_device_messages(
                &self,
                user_id: &str,
                device_id: &str,
                after: i64,
                upto: i64,
                limit: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::ToDeviceRow>> {
                Ok(sqlx::query_as(
                    "SELECT stream_id, sender, event_type, content FROM to_device_messages
                     WHERE user_id = $1 AND device_id = $2 AND stream_id > $3 AND stream_id <= $4
                     ORDER BY stream_id LIMIT $5",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(after)
                .bind(upto)
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }

            async fn delete_to_device(&self, user_id: &str, device_id: &str, upto: i64) -> $crate::storage::Result<()> {
                sqlx::query("DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_id <= $3")
                    .bind(user_id)
                    .bind(device_id)
                    .bind(upto)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn max_to_device_stream(&self) -> $crate::storage::Result<i64> {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT position FROM stream_positions WHERE stream = 'to_device'")
                        .fetch_optional(&self.read)
                        .await?;
                Ok(max.unwrap_or(0))
            }

            async fn create_backup_version(
                &self,
                user_id: &str,
                algorithm: &str,
                auth_data: &str,
            ) -> $crate::storage::Result<i64> {
                let mut tx = self.write.begin().await?;
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM room_key_backup_versions WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let version = last.unwrap_or(0) + 1;
                sqlx::query(
                    "INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)",
                )
                .bind(user_id)
                .bind(version)
                .bind(algorithm)
                .bind(auth_data)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn backup_version(
                &self,
                user_id: &str,
                version: Option<i64>,
            ) -> $crate::storage::Result<Option<$crate::storage::BackupVersionRow>> {
                let query = match version {
                    Some(v) => sqlx::query_as(
                        "SELECT version, algorithm, auth_data, etag FROM room_key_backup_versions
                         WHERE user_id = $1 AND version = $2 AND NOT deleted",
                    )
                    .bind(user_id)
                    .bind(v),
                    None => sqlx::query_as(
                        "SELECT version, algorithm, auth_data, etag FROM room_key_backup_versions
                         WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1",
                    )
                    .bind(user_id),
                };
                // Read from the writer: a client reads its backup right after changing it.
                Ok(query.fetch_optional(&self.write).await?)
            }

            async fn update_backup_version(
                &self,
                user_id: &str,
                version: i64,
                auth_data: &str,
            ) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "UPDATE room_key_backup_versions SET auth_data = $3
                     WHERE user_id = $1 AND version = $2 AND NOT deleted",
                )
                .bind(user_id)
                .bind(version)
                .bind(auth_data)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn delete_backup_version(&self, user_id: &str, version: i64) -> $crate::storage::Result<bool> {
                let mut tx = self.write.begin().await?;
                // Deleting again succeeds (a client may retry); a version never created is not found.
                let result = sqlx::query(
                    "UPDATE room_key_backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2",
                )
                .bind(user_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM room_key_backups WHERE user_id = $1 AND version = $2")
                    .bind(user_id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(result.rows_affected() == 1)
            }

            async fn backup_keys(
                &self,
                user_id: &str,
                version: i64,
                room_id: Option<&str>,
                session_id: Option<&str>,
            ) -> $crate::storage::Result<Vec<$crate::storage::BackupKeyRow>> {
                Ok(sqlx::query_as(
                    "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
                     FROM room_key_backups
                     WHERE user_id = $1 AND version = $2 AND ($3 IS NULL OR room_id = $3)
                       AND ($4 IS NULL OR session_id = $4)
                     ORDER BY room_id, session_id",
                )
                .bind(user_id)
                .bind(version)
                .bind(room_id)
                .bind(session_id)
                .fetch_all(&self.write)
                .await?)
            }

            async fn put_backup_keys(
                &self,
                user_id: &str,
                version: i64,
                keys: &[$crate::storage::BackupKeyRow],
            ) -> $crate::storage::Result<i64> {
                let mut tx = self.write.begin().await?;
                for k in keys {
                    sqlx::query(
                        "INSERT INTO room_key_backups (user_id, version, room_id, session_id, first_message_index,
                             forwarded_count, is_verified, session_data)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                             first_message_index = excluded.first_message_index,
                             forwarded_count = excluded.forwarded_count,
                             is_verified = excluded.is_verified,
                             session_data = excluded.session_data",
                    )
                    .bind(user_id)
                    .bind(version)
                    .bind(&k.room_id)
                    .bind(&k.session_id)
                    .bind(k.first_message_index)
                    .bind(k.forwarded_count)
                    .bind(k.is_verified)
                    .bind(&k.session_data)
                    .execute(&mut *tx)
                    .await?;
                }
                let etag: i64 = sqlx::query_scalar(
                    "UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2
                     RETURNING etag",
                )
                .bind(user_id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(etag)
            }

            async fn delete_backup_keys(
                &self,
                user_id: &str,
                version: i64,
                room_id: Option<&str>,
                session_id: Option<&str>,
            ) -> $crate::storage::Result<i64> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "DELETE FROM room_key_backups WHERE user_id = $1 AND version = $2
                       AND ($3 IS NULL OR room_id = $3) AND ($4 IS NULL OR session_id = $4)",
                )
                .bind(user_id)
                .bind(version)
                .bind(room_id)
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
                let etag: i64 = sqlx::query_scalar(
                    "UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2
                     RETURNING etag",
                )
                .bind(user_id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(etag)
            }

            async fn count_backup_keys(&self, user_id: &str, version: i64) -> $crate::storage::Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM room_key_backups WHERE user_id = $1 AND version = $2")
                    .bind(user_id)
                    .bind(version)
                    .fetch_one(&self.write)
                    .await?)
            }
        }
    };
}

pub(crate) use impl_e2ee_sql;
