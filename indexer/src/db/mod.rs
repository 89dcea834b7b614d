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
pub mod lock;
mod value;

pub use value::BadValue;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The pools and the backend they talk to.
///
/// Two pools, so that API load can never starve the follower (nor the follower the API):
/// `pool` is the writer's (ingest, checkpoint, migrations; tests read through it too) and
/// `read` serves the HTTP API. On SQLite the read connections are `query_only` with a
/// larger page cache and memory-mapped reads; WAL lets them read while the writer commits.
/// On PostgreSQL both are ordinary pools on the same server.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub read: AnyPool,
    pub backend: Backend,
    /// Moves on after every committed block that applied contract events: what readers
    /// key caches on (see [`Db::generation`]).
    pub generation: Arc<AtomicU64>,
}

/// How the pools are sized and how long a request may wait for a connection.
///
/// SQLite runs each connection's statements on its own thread and the API's queries are
/// short and CPU-bound: more readers than cores only adds switching, a few more than cores
/// keep a slow query from holding everyone up. A request that has waited `read_acquire`
/// for a connection gets a 503 with `Retry-After` (the server is overloaded), not a 500.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    pub write: u32,
    pub read: u32,
    pub read_acquire: Duration,
}

impl PoolSizes {
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self {
                write: 2,
                read: 4,
                read_acquire: Duration::from_secs(3),
            },
            Backend::Postgres => Self {
                write: 4,
                read: 16,
                read_acquire: Duration::from_secs(3),
            },
        }
    }
}

/// SQLite settings of every connection. WAL: API readers never block the follower's writes.
/// NORMAL sync is still atomic per transaction, which is all the checkpoint needs.
/// busy_timeout: a writer waits for a checkpointing reader instead of failing.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
];

/// SQLite settings of the API's connections: they cannot write (a bug in a handler cannot
/// touch the index) and keep up to 32 MiB of pages each (default 2 MiB), so a hot index is
/// read from their own cache rather than with a read() per page. (A memory mapping
/// measured no faster on a cached index: pages read through it are parsed on every use.)
const SQLITE_READ_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 10000",
    "PRAGMA query_only = ON",
    "PRAGMA cache_size = -32768",
];

/// The schema, embedded so the binary needs no files beside it.
fn migrator() -> Migrator {
    let migrations = vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("node filter indexes"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(
                "../../migrations/0002_node_filter_indexes.sql"
            )),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("pending token events"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!(
                "../../migrations/0003_pending_token_events.sql"
            )),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("governance changes"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/0004_governance_changes.sql")),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("payment channels"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/0005_channels.sql")),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("job receipt weights"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../../migrations/0006_job_weights.sql")),
            false,
        ),
    ];
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
        let sizes = PoolSizes::for_backend(backend);
        let sqlite = backend == Backend::Sqlite;
        let pool = pool_options(sizes.write, Duration::from_secs(10), sqlite, SQLITE_PRAGMAS)
            .connect_with(options.clone())
            .await
            .map_err(|source| DbError::Connect {
                url: redact(url),
                source,
            })?;
        migrator().run(&pool).await?;
        // Every connection to an in-memory SQLite database is a database of its own: the API
        // must read through the writer's pool there.
        let read = if sqlite && (url.contains(":memory:") || url.contains("mode=memory")) {
            pool.clone()
        } else {
            pool_options(sizes.read, sizes.read_acquire, sqlite, SQLITE_READ_PRAGMAS)
                .connect_with(options)
                .await
                .map_err(|source| DbError::Connect {
                    url: redact(url),
                    source,
                })?
        };
        Ok(Self {
            pool,
            read,
            backend,
            generation: Arc::default(),
        })
    }

    /// The index's generation: read it *before* a query whose result is cached, so the
    /// result is never older than the generation it is stored under.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called after a commit that changed indexed state.
    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A pool of `max` connections that runs `pragmas` on each new SQLite connection.
fn pool_options(
    max: u32,
    acquire: Duration,
    sqlite: bool,
    pragmas: &'static [&'static str],
) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire)
        // A SQLite file cannot go away under an open connection, so the liveness ping sqlx
        // sends before handing one out is a wasted round trip to its thread per query. A
        // PostgreSQL connection can (server restart): keep the check there.
        .test_before_acquire(!sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    for pragma in pragmas {
                        conn.execute(*pragma).await?;
                    }
                }
                Ok(())
            })
        })
}

/// The file of a SQLite URL; `None` for other databases and in-memory ones.
pub fn sqlite_file(url: &str) -> Option<&Path> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(Path::new(path))
}

/// SQLite creates the file but not its directory.
fn create_parent_dir(url: &str) -> Result<(), DbError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
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
