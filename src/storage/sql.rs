//! The SQL that SQLite and PostgreSQL share, written once.
//!
//! `impl_shared_sql!` is instantiated for each engine's store type, which has a
//! `read` pool and a `write` pool (SQLite: one writer connection; PostgreSQL: the
//! same pool twice). Queries use `$n` placeholders, which both engines accept.
//! A macro rather than code generic over `sqlx::Database`, because the trait
//! bounds of generic sqlx code grow faster than the code they cover.

macro_rules! impl_shared_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::UserStore for $store {
            async fn create_user(&self, u: &$crate::storage::NewUser<'_>) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "INSERT INTO users (user_id, password_hash, is_admin, is_guest, displayname, created_ts)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(u.user_id)
                .bind(u.password_hash)
                .bind(u.is_admin)
                .bind(u.is_guest)
                .bind(u.displayname)
                .bind(u.created_ts)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn get_user(&self, user_id: &str) -> $crate::storage::Result<Option<$crate::storage::UserRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, password_hash, is_admin, is_guest, deactivated, displayname, avatar_url, created_ts
                     FROM users WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn count_users(&self) -> $crate::storage::Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.read).await?)
            }

            async fn set_password_hash(&self, user_id: &str, hash: &str) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "UPDATE users SET password_hash = $2 WHERE user_id = $1 AND NOT deactivated",
                )
                .bind(user_id)
                .bind(hash)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn deactivate_user(&self, user_id: &str) -> $crate::storage::Result<Vec<String>> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "UPDATE users SET deactivated = TRUE, password_hash = NULL, displayname = NULL, avatar_url = NULL
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                let revoked: Vec<String> =
                    sqlx::query_scalar("DELETE FROM access_tokens WHERE user_id = $1 RETURNING token_hash")
                        .bind(user_id)
                        .fetch_all(&mut *tx)
                        .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
                for table in $crate::storage::DEVICE_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1")))
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            async fn set_displayname(&self, user_id: &str, name: Option<&str>) -> $crate::storage::Result<()> {
                sqlx::query("UPDATE users SET displayname = $2 WHERE user_id = $1")
                    .bind(user_id)
                    .bind(name)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn set_avatar_url(&self, user_id: &str, url: Option<&str>) -> $crate::storage::Result<()> {
                sqlx::query("UPDATE users SET avatar_url = $2 WHERE user_id = $1")
                    .bind(user_id)
                    .bind(url)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::DeviceStore for $store {
            async fn start_session(
                &self,
                s: &$crate::storage::NewSession<'_>,
                display_name: Option<&str>,
            ) -> $crate::storage::Result<Vec<String>> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    // A known device keeps its name: the spec has `initial_device_display_name`
                    // ignored when `device_id` names one.
                    "INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (user_id, device_id) DO NOTHING",
                )
                .bind(s.user_id)
                .bind(s.device_id)
                .bind(display_name)
                .bind(s.now)
                .execute(&mut *tx)
                .await?;
                let revoked: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 RETURNING token_hash",
                )
                .bind(s.user_id)
                .bind(s.device_id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2")
                    .bind(s.user_id)
                    .bind(s.device_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, created_ts)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(s.access_token_hash)
                .bind(s.user_id)
                .bind(s.device_id)
                .bind(s.expires_ts)
                .bind(s.now)
                .execute(&mut *tx)
                .await?;
                if let Some(refresh) = s.refresh_token_hash {
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(refresh)
                    .bind(s.user_id)
                    .bind(s.device_id)
                    .bind(s.now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            async fn lookup_access_token(
                &self,
                hash: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::TokenOwner>> {
                Ok(sqlx::query_as(
                    "SELECT t.user_id, t.device_id, u.is_guest, t.expires_ts
                     FROM access_tokens t JOIN users u ON u.user_id = t.user_id
                     WHERE t.token_hash = $1 AND NOT u.deactivated",
                )
                .bind(hash)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn take_refresh_token(&self, hash: &str) -> $crate::storage::Result<Option<(String, String)>> {
                Ok(sqlx::query_as(
                    "DELETE FROM refresh_tokens WHERE token_hash = $1 RETURNING user_id, device_id",
                )
                .bind(hash)
                .fetch_optional(&self.write)
                .await?)
            }

            async fn get_device(
                &self,
                user_id: &str,
                device_id: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::DeviceRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip
                     FROM devices WHERE user_id = $1 AND device_id = $2",
                )
                .bind(user_id)
                .bind(device_id)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn list_devices(&self, user_id: &str) -> $crate::storage::Result<Vec<$crate::storage::DeviceRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip
                     FROM devices WHERE user_id = $1 ORDER BY device_id",
                )
                .bind(user_id)
                .fetch_all(&self.read)
                .await?)
            }

            async fn set_device_display_name(
                &self,
                user_id: &str,
                device_id: &str,
                name: Option<&str>,
            ) -> $crate::storage::Result<bool> {
                let result =
                    sqlx::query("UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2")
                        .bind(user_id)
                        .bind(device_id)
                        .bind(name)
                        .execute(&self.write)
                        .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn touch_device(
                &self,
                user_id: &str,
                device_id: &str,
                ts: i64,
                ip: Option<&str>,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(ts)
                .bind(ip)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn delete_devices(
                &self,
                user_id: &str,
                device_ids: &[String],
            ) -> $crate::storage::Result<Vec<String>> {
                let mut tx = self.write.begin().await?;
                let mut revoked = Vec::new();
                for device_id in device_ids {
                    let hashes: Vec<String> = sqlx::query_scalar(
                        "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 RETURNING token_hash",
                    )
                    .bind(user_id)
                    .bind(device_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    revoked.extend(hashes);
                    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2")
                        .bind(user_id)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await?;
                    // The device's keys and undelivered messages go with it.
                    for table in $crate::storage::DEVICE_TABLES {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
                        )))
                        .bind(user_id)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("DELETE FROM e2e_signatures WHERE target_user_id = $1 AND target_key_id = $2")
                        .bind(user_id)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(revoked)
            }

            async fn revoke_sessions_except(
                &self,
                user_id: &str,
                keep_device: Option<&str>,
            ) -> $crate::storage::Result<Vec<String>> {
                let keep = keep_device.unwrap_or("");
                let mut tx = self.write.begin().await?;
                let revoked: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM access_tokens WHERE user_id = $1 AND device_id <> $2 RETURNING token_hash",
                )
                .bind(user_id)
                .bind(keep)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id <> $2")
                    .bind(user_id)
                    .bind(keep)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(revoked)
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::AccountDataStore for $store {
            async fn put_account_data(
                &self,
                user_id: &str,
                room_id: &str,
                data_type: &str,
                content: &str,
                stream_id: i64,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_id) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id, room_id, data_type)
                     DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
                )
                .bind(user_id)
                .bind(room_id)
                .bind(data_type)
                .bind(content)
                .bind(stream_id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn account_data_since(
                &self,
                user_id: &str,
                after: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::AccountDataRow>> {
                Ok(sqlx::query_as(
                    "SELECT room_id, data_type, content, stream_id FROM account_data
                     WHERE user_id = $1 AND stream_id > $2 ORDER BY stream_id",
                )
                .bind(user_id)
                .bind(after)
                .fetch_all(&self.read)
                .await?)
            }

            async fn max_account_data_stream(&self) -> $crate::storage::Result<i64> {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(stream_id) FROM account_data").fetch_one(&self.read).await?;
                Ok(max.unwrap_or(0))
            }

            async fn get_account_data(
                &self,
                user_id: &str,
                room_id: &str,
                data_type: &str,
            ) -> $crate::storage::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
                )
                .bind(user_id)
                .bind(room_id)
                .bind(data_type)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn create_filter(&self, user_id: &str, filter_json: &str) -> $crate::storage::Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO filters (user_id, filter_json) VALUES ($1, $2) RETURNING filter_id",
                )
                .bind(user_id)
                .bind(filter_json)
                .fetch_one(&self.write)
                .await?)
            }

            async fn get_filter(&self, user_id: &str, filter_id: i64) -> $crate::storage::Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2")
                    .bind(user_id)
                    .bind(filter_id)
                    .fetch_optional(&self.read)
                    .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::RegistrationTokenStore for $store {
            async fn add_registration_token(
                &self,
                t: &$crate::storage::NewRegistrationToken<'_>,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO registration_tokens (token_hash, uses_allowed, expiry_ts, grants_admin)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(t.token_hash)
                .bind(t.uses_allowed)
                .bind(t.expiry_ts)
                .bind(t.grants_admin)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn remove_unused_admin_tokens(&self) -> $crate::storage::Result<()> {
                sqlx::query("DELETE FROM registration_tokens WHERE grants_admin AND completed = 0")
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn registration_token_valid(&self, token_hash: &str, now: i64) -> $crate::storage::Result<bool> {
                let found: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM registration_tokens WHERE token_hash = $1
                     AND (uses_allowed IS NULL OR completed < uses_allowed)
                     AND (expiry_ts IS NULL OR expiry_ts > $2)",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_one(&self.read)
                .await?;
                Ok(found > 0)
            }

            async fn use_registration_token(
                &self,
                token_hash: &str,
                now: i64,
            ) -> $crate::storage::Result<Option<bool>> {
                Ok(sqlx::query_scalar(
                    "UPDATE registration_tokens SET completed = completed + 1 WHERE token_hash = $1
                     AND (uses_allowed IS NULL OR completed < uses_allowed)
                     AND (expiry_ts IS NULL OR expiry_ts > $2)
                     RETURNING grants_admin",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.write)
                .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::storage::PresenceStore for $store {
            async fn put_presence(&self, row: &$crate::storage::PresenceRow) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
                         last_active_ts = excluded.last_active_ts, stream_id = excluded.stream_id",
                )
                .bind(&row.user_id)
                .bind(&row.state)
                .bind(&row.status_msg)
                .bind(row.last_active_ts)
                .bind(row.stream_id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn get_presence(
                &self,
                user_id: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::PresenceRow>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, state, status_msg, last_active_ts, stream_id FROM presence WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn presence_since(
                &self,
                after: i64,
                upto: i64,
            ) -> $crate::storage::Result<Vec<$crate::storage::PresenceRow>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, state, status_msg, last_active_ts, stream_id FROM presence
                     WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id",
                )
                .bind(after)
                .bind(upto)
                .fetch_all(&self.read)
                .await?)
            }

            async fn max_presence_stream(&self) -> $crate::storage::Result<i64> {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(stream_id) FROM presence").fetch_one(&self.read).await?;
                Ok(max.unwrap_or(0))
            }
        }
    };
}

pub(crate) use impl_shared_sql;
