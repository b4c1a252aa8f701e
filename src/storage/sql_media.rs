//! The media SQL, shared by SQLite and PostgreSQL (see `sql.rs`).

macro_rules! impl_media_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::MediaStore for $store {
            async fn insert_media(
                &self,
                media_id: &str,
                user_id: &str,
                c: &$crate::storage::UploadedContent<'_>,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO media (media_id, user_id, created_ts, uploaded_ts, sha256, size, content_type, filename)
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
                )
                .bind(media_id)
                .bind(user_id)
                .bind(c.now)
                .bind(c.sha256)
                .bind(c.size)
                .bind(c.content_type)
                .bind(c.filename)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn create_pending_media(
                &self,
                media_id: &str,
                user_id: &str,
                now: i64,
                expires_ts: i64,
            ) -> $crate::storage::Result<()> {
                sqlx::query("INSERT INTO media (media_id, user_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4)")
                    .bind(media_id)
                    .bind(user_id)
                    .bind(now)
                    .bind(expires_ts)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn count_pending_media(&self, user_id: &str, now: i64) -> $crate::storage::Result<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts IS NULL AND expires_ts > $2",
                )
                .bind(user_id)
                .bind(now)
                .fetch_one(&self.read)
                .await?)
            }

            async fn complete_pending_media(
                &self,
                media_id: &str,
                c: &$crate::storage::UploadedContent<'_>,
            ) -> $crate::storage::Result<bool> {
                let result = sqlx::query(
                    "UPDATE media SET uploaded_ts = $2, sha256 = $3, size = $4, content_type = $5, filename = $6,
                     expires_ts = NULL WHERE media_id = $1 AND uploaded_ts IS NULL",
                )
                .bind(media_id)
                .bind(c.now)
                .bind(c.sha256)
                .bind(c.size)
                .bind(c.content_type)
                .bind(c.filename)
                .execute(&self.write)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn get_media(&self, media_id: &str) -> $crate::storage::Result<Option<$crate::storage::MediaRecord>> {
                Ok(sqlx::query_as(
                    "SELECT media_id, user_id, created_ts, expires_ts, uploaded_ts, sha256, size, content_type, filename
                     FROM media WHERE media_id = $1",
                )
                .bind(media_id)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn media_usage(&self, user_id: &str) -> $crate::storage::Result<i64> {
                let total: Option<i64> =
                    sqlx::query_scalar("SELECT CAST(SUM(size) AS BIGINT) FROM media WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_one(&self.read)
                        .await?;
                Ok(total.unwrap_or(0))
            }

            async fn get_thumbnail(
                &self,
                media_id: &str,
                width: i64,
                height: i64,
                method: &str,
                animated: bool,
            ) -> $crate::storage::Result<Option<$crate::storage::ThumbnailRecord>> {
                Ok(sqlx::query_as(
                    "SELECT media_id, width, height, method, animated, sha256, size, content_type
                     FROM media_thumbnails
                     WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4 AND animated = $5",
                )
                .bind(media_id)
                .bind(width)
                .bind(height)
                .bind(method)
                .bind(animated)
                .fetch_optional(&self.read)
                .await?)
            }

            async fn put_thumbnail(&self, t: &$crate::storage::ThumbnailRecord) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO media_thumbnails (media_id, width, height, method, animated, sha256, size, content_type)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (media_id, width, height, method, animated) DO NOTHING",
                )
                .bind(&t.media_id)
                .bind(t.width)
                .bind(t.height)
                .bind(&t.method)
                .bind(t.animated)
                .bind(&t.sha256)
                .bind(t.size)
                .bind(&t.content_type)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn delete_media(&self, media_id: &str) -> $crate::storage::Result<Vec<String>> {
                let mut tx = self.write.begin().await?;
                let mut hashes: Vec<String> =
                    sqlx::query_scalar("DELETE FROM media_thumbnails WHERE media_id = $1 RETURNING sha256")
                        .bind(media_id)
                        .fetch_all(&mut *tx)
                        .await?;
                let content: Option<Option<String>> =
                    sqlx::query_scalar("DELETE FROM media WHERE media_id = $1 RETURNING sha256")
                        .bind(media_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.commit().await?;
                hashes.extend(content.flatten());
                hashes.sort();
                hashes.dedup();
                Ok(hashes)
            }

            async fn list_user_media(&self, user_id: &str) -> $crate::storage::Result<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT media_id FROM media WHERE user_id = $1 ORDER BY created_ts")
                    .bind(user_id)
                    .fetch_all(&self.read)
                    .await?)
            }

            async fn content_referenced(&self, sha256: &str) -> $crate::storage::Result<bool> {
                Ok(sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1)
                     OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)",
                )
                .bind(sha256)
                .fetch_one(&self.write)
                .await?)
            }

            async fn delete_lapsed_pending_media(&self, now: i64) -> $crate::storage::Result<u64> {
                let result = sqlx::query("DELETE FROM media WHERE uploaded_ts IS NULL AND expires_ts <= $1")
                    .bind(now)
                    .execute(&self.write)
                    .await?;
                Ok(result.rows_affected())
            }
        }
    };
}

pub(crate) use impl_media_sql;
