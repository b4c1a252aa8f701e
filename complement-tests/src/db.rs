//! A throw-away PostgreSQL database per test server (when `TEST_DATABASE_URL` is set).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

/// A database created for one test server and dropped with it.
#[derive(Debug)]
pub struct TempPgDatabase {
    /// `postgres://user@host:port` without a database path.
    server: String,
    name: String,
    dropped: bool,
}

/// Splits `postgres://user@host:port/db?x=y` into `postgres://user@host:port` and `?x=y`.
fn split_server_url(url: &str) -> (String, String) {
    let (scheme, rest) =
        url.split_once("://").unwrap_or_else(|| panic!("TEST_DATABASE_URL={url:?} is not a postgres:// URL"));
    let query = rest.find('?').map(|i| rest[i..].to_owned()).unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    (format!("{scheme}://{}", &rest[..end]), query)
}

impl TempPgDatabase {
    /// The database URL from `TEST_DATABASE_URL`, if set.
    pub fn configured() -> Option<String> {
        std::env::var("TEST_DATABASE_URL").ok().filter(|s| !s.trim().is_empty())
    }

    /// Creates a database with a unique name on the server of `server_url`.
    /// Panics (never skips) when the server cannot be reached.
    pub async fn create(server_url: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let (server, _) = split_server_url(server_url);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("kith_test_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos);
        let mut conn = admin_connection(server_url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = conn.close().await;
        Self { server, name, dropped: false }
    }

    /// The URL of the created database, with the query string of `TEST_DATABASE_URL`.
    pub fn url(&self) -> String {
        let query = Self::configured().map(|u| split_server_url(&u).1).unwrap_or_default();
        format!("{}/{}{}", self.server, self.name, query)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database (`WITH (FORCE)`), blocking this thread.
    pub fn drop_now(&mut self) {
        if self.dropped {
            return;
        }
        self.dropped = true;
        let server = self.server.clone();
        let name = self.name.clone();
        // Runs on its own thread and runtime: Drop may be called inside a runtime.
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async move {
                let mut conn = admin_connection(&server).await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: dropping test database {} failed: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

impl Drop for TempPgDatabase {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// A connection to the `postgres` maintenance database of the server.
pub async fn admin_connection(server_url: &str) -> PgConnection {
    let (server, query) = split_server_url(server_url);
    let url = format!("{server}/postgres{query}");
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("TEST_DATABASE_URL is set but its PostgreSQL server ({server}) cannot be reached: {e}")
    })
}

/// A connection to the named database on the server of `TEST_DATABASE_URL`.
pub async fn connect(db_url: &str) -> PgConnection {
    PgConnection::connect(db_url).await.unwrap_or_else(|e| panic!("cannot connect to {db_url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::split_server_url;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_server_url("postgres://postgres@127.0.0.1:5432"),
            ("postgres://postgres@127.0.0.1:5432".to_owned(), String::new())
        );
        assert_eq!(
            split_server_url("postgres://u:p@h:1/db?sslmode=disable"),
            ("postgres://u:p@h:1".to_owned(), "?sslmode=disable".to_owned())
        );
        assert_eq!(split_server_url("postgresql://h/"), ("postgresql://h".to_owned(), String::new()));
    }
}
