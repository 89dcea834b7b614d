//! Storage: one `sqlx::AnyPool`, SQLite by default, PostgreSQL by URL.
//!
//! Why the `Any` driver rather than a storage trait with two implementations: every query
//! the indexer runs is plain portable SQL (`$n` placeholders work on both backends,
//! `ON CONFLICT .. DO UPDATE` too), so one code path serves both and the PostgreSQL tests
//! exercise exactly the code SQLite runs. The price is `Any`'s small type set (i64, f64,
//! text, bytes): u128 amounts are stored as zero-padded text (see [`amount`]), which also
//! keeps them sortable on both backends.

pub mod amount;
pub mod checkpoint;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL '{0}' is neither sqlite: nor postgres:")]
    UnsupportedUrl(String),
    #[error("cannot open database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The pool and the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// The schema, embedded so the binary needs no files beside it.
fn migrator() -> Migrator {
    let migrations = vec![Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        Cow::Borrowed(include_str!("../../migrations/0001_init.sql")),
        false,
    )];
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The default database: `indexer.sqlite` in the data directory.
pub fn sqlite_url_in(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("indexer.sqlite").display()
    )
}

impl Db {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        if backend == Backend::Sqlite {
            create_parent_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url).map_err(|source| DbError::Connect {
            url: redact(url),
            source,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: API readers never block the follower's writes. NORMAL sync is
                        // still atomic per transaction, which is all the checkpoint needs.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        migrator().run(&pool).await?;
        Ok(Self { pool, backend })
    }
}

/// SQLite creates the file but not its directory.
fn create_parent_dir(url: &str) -> Result<(), DbError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|source| DbError::DataDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// A URL safe to log: the password (if any) is replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn refuses_unknown_urls_and_creates_the_data_dir() {
        assert!(matches!(
            Db::open("mysql://x").await,
            Err(DbError::UnsupportedUrl(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_in(&dir.path().join("nested/data"));
        let db = Db::open(&url).await.unwrap();
        assert_eq!(db.backend, Backend::Sqlite);
        // Running the migrations twice is a no-op.
        Db::open(&url).await.unwrap();
    }
}
