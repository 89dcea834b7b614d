//! The user's x25519 key: job inputs name its public half and nodes seal outputs to it, so
//! `ecloud job result` can decrypt. One key per account and network, in
//! `<keys dir>/<network>/<account>.x25519` (32 raw bytes, mode 0600, directory 0700). The file
//! is created once and never replaced: replacing it would make every earlier output unreadable.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use near_sdk::AccountId;

use crate::envelope::EncryptionSecret;
use crate::keys::{FileSealer, KeyError, Sealer as _};

/// The user's key and where it is kept.
#[derive(Debug)]
pub struct UserKey {
    pub secret: EncryptionSecret,
    pub path: PathBuf,
}

impl UserKey {
    pub fn public_key(&self) -> [u8; 32] {
        self.secret.public_key()
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.public_key())
    }
}

fn file_name(account: &AccountId) -> String {
    format!("{account}.x25519")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads `account`'s key from `dir`; `None` if it was never created. A file others can read
/// is refused (mode must be 0600).
pub fn load(dir: &Path, account: &AccountId) -> Result<Option<UserKey>, KeyError> {
    let name = file_name(account);
    let Some(bytes) = FileSealer::new(dir).unseal(&name)? else {
        return Ok(None);
    };
    if bytes.len() != 32 {
        return Err(KeyError::Length {
            name,
            len: bytes.len(),
        });
    }
    Ok(Some(UserKey {
        secret: EncryptionSecret::from_bytes(&bytes)?,
        path: dir.join(file_name(account)),
    }))
}

/// Loads `account`'s key, creating it first if there is none. Creation never overwrites: the
/// new key is written to a private temporary file and hard-linked into place, so of two
/// concurrent first submissions one creates the key and the other reads it.
pub fn load_or_create(dir: &Path, account: &AccountId) -> Result<UserKey, KeyError> {
    if let Some(key) = load(dir, account)? {
        return Ok(key);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let path = dir.join(file_name(account));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name(account),
        std::process::id()
    ));
    let secret = EncryptionSecret::generate();
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&*secret.to_bytes())?;
        f.sync_all()?;
        fs::hard_link(&tmp, &path)
    })();
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(UserKey { secret, path }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load(dir, account)?
            .ok_or_else(|| io(&path)(std::io::Error::other("key file vanished while creating it"))),
        Err(e) => Err(io(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn alice() -> AccountId {
        "alice.test.near".parse().unwrap()
    }

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("localnet");
        assert!(load(&keys, &alice()).unwrap().is_none());
        let a = load_or_create(&keys, &alice()).unwrap();
        let mode = fs::metadata(&a.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let b = load_or_create(&keys, &alice()).unwrap();
        assert_eq!(a.public_key(), b.public_key(), "never replaced");
        assert_eq!(a.public_hex().len(), 64);
        let bob: AccountId = "bob.test.near".parse().unwrap();
        assert_ne!(
            load_or_create(&keys, &bob).unwrap().public_key(),
            a.public_key()
        );
        // No temporary files stay behind.
        let names: Vec<_> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".x25519")), "{names:?}");
    }

    #[test]
    fn loose_permissions_and_wrong_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = load_or_create(dir.path(), &alice()).unwrap();
        fs::set_permissions(&k.path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(dir.path(), &alice()).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        fs::set_permissions(&k.path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&k.path, [1u8; 31]).unwrap();
        let err = load(dir.path(), &alice()).unwrap_err().to_string();
        assert!(err.contains("31 bytes"), "{err}");
    }
}
