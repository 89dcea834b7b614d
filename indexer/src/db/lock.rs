//! One indexer per data directory. Two followers writing one SQLite database would race on
//! its checkpoint, and the second one's API would fail only after it had started indexing;
//! an exclusive lock, taken before anything is opened, makes the second one stop at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held for as long as the indexer runs; the operating system releases it when the process
/// ends, however it ends (no stale lock after a `kill -9`).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another indexer is already using the database {database} (it holds {lock}); stop it, or give this one another --data-dir"
    )]
    Held { database: String, lock: String },
    #[error("cannot create the lock file {lock}: {source}")]
    Io {
        lock: String,
        source: std::io::Error,
    },
}

/// The lock file of a SQLite database: beside it, in the data directory.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock of the database at `url`, or fails at once if another process
/// holds it. PostgreSQL and in-memory databases have no data directory: `None`.
pub fn acquire(url: &str) -> Result<Option<DataDirLock>, LockError> {
    let Some(database) = super::sqlite_file(url) else {
        return Ok(None);
    };
    let path = lock_path(database);
    let io = |source| LockError::Io {
        lock: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DataDirLock { _file: file, path })),
        Err(TryLockError::WouldBlock) => Err(LockError::Held {
            database: database.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let url = super::super::sqlite_url_in(&dir.path().join("data"));
        let first = acquire(&url).unwrap().expect("a SQLite file is locked");
        let e = acquire(&url).unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert!(e.to_string().contains("another indexer"), "{e}");
        drop(first);
        assert!(acquire(&url).unwrap().is_some(), "released with its holder");
        assert!(acquire("postgres://u@h/db").unwrap().is_none());
        assert!(acquire("sqlite::memory:").unwrap().is_none());
    }
}
