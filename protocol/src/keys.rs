//! Key files: where and how the enclave's secrets and a user's x25519 key are kept.
//!
//! A [`Sealer`] stores secrets only their owner can read back. [`FileSealer`] writes plain
//! files (32 raw bytes, mode 0600, directory 0700, written atomically) in a directory: inside a
//! TDX CVM the worker's data dir is on the encrypted, measured disk; a TEE sealing backend
//! (e.g. dstack's KMS derived keys) implements the same trait. The node's two secrets are the
//! items [`ENCRYPTION_KEY_NAME`] and [`NEAR_KEY_NAME`]; the user's key file is
//! [`crate::user_key`]. Generating and using the node's keys is the worker's business.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::envelope::EnvelopeError;

/// Sealed item holding the x25519 secret (32 bytes).
pub const ENCRYPTION_KEY_NAME: &str = "enclave-x25519.key";
/// Sealed item holding the ed25519 NEAR key seed (32 bytes).
pub const NEAR_KEY_NAME: &str = "near-ed25519.key";

/// Why keys could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("sealed key storage {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sealed key {path} is readable by others (mode {mode:o}); expected 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("sealed key {name} has {len} bytes, expected 32")]
    Length { name: String, len: usize },
    #[error("only one of the two enclave keys is sealed ({present} present, {missing} missing)")]
    Incomplete {
        present: &'static str,
        missing: &'static str,
    },
    #[error("no randomness from the operating system: {0}")]
    Rng(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("invalid sealed item name '{0}'")]
    BadName(String),
}

/// Storage of secrets that only this enclave can read back.
pub trait Sealer: Send + Sync {
    /// Stores `secret` under `name` (replacing it atomically).
    fn seal(&self, name: &str, secret: &[u8]) -> Result<(), KeyError>;
    /// Reads the secret under `name`, `None` if it was never sealed.
    fn unseal(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError>;
}

/// Plain files in a directory, mode 0600, written atomically (temp file, fsync, rename).
#[derive(Debug, Clone)]
pub struct FileSealer {
    dir: PathBuf,
}

impl FileSealer {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> Result<PathBuf, KeyError> {
        let simple = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if simple {
            Ok(self.dir.join(name))
        } else {
            Err(KeyError::BadName(name.to_owned()))
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Sealer for FileSealer {
    fn seal(&self, name: &str, secret: &[u8]) -> Result<(), KeyError> {
        let path = self.path(name)?;
        // A data dir we create is private to the worker (an existing one is left as it is).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(secret).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }

    fn unseal(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
        let path = self.path(name)?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path, mode });
        }
        fs::read(&path)
            .map(|b| Some(Zeroizing::new(b)))
            .map_err(io_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path().join("data"));
        assert!(sealer.unseal(NEAR_KEY_NAME).unwrap().is_none());
        sealer.seal(NEAR_KEY_NAME, &[7; 32]).unwrap();
        assert_eq!(
            sealer.unseal(NEAR_KEY_NAME).unwrap().unwrap().as_slice(),
            &[7; 32]
        );
        let dir_mode = fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let meta = fs::metadata(dir.path().join("data").join(NEAR_KEY_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Replaced atomically, no temporary file left behind.
        sealer.seal(NEAR_KEY_NAME, &[8; 32]).unwrap();
        assert_eq!(
            sealer.unseal(NEAR_KEY_NAME).unwrap().unwrap().as_slice(),
            &[8; 32]
        );
        assert_eq!(fs::read_dir(dir.path().join("data")).unwrap().count(), 1);
    }

    #[test]
    fn loose_permissions_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path());
        sealer.seal(NEAR_KEY_NAME, &[1; 32]).unwrap();
        let path = dir.path().join(NEAR_KEY_NAME);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            sealer.unseal(NEAR_KEY_NAME),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
        for bad in ["../escape", "", ".hidden", "a/b"] {
            assert!(
                matches!(sealer.seal(bad, b"x"), Err(KeyError::BadName(_))),
                "{bad}"
            );
        }
    }
}
