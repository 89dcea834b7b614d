//! Who signs: an account id plus a key, from near-cli's credentials files, a secret key, an
//! ed25519 seed (the worker's sealed NEAR key), or any [`TxSigner`] (a key that never leaves
//! its holder, e.g. an enclave).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use near_crypto::{ED25519SecretKey, PublicKey, SecretKey, Signature};
use near_primitives::types::AccountId;
use serde::{Deserialize, Serialize};

use crate::error::{ChainError, Result};

/// Signs transaction hashes. Implemented by [`SecretKey`]; implement it for keys that must not
/// be handed out as bytes.
pub trait TxSigner: Send + Sync {
    fn public_key(&self) -> PublicKey;
    /// Signs `message` (the 32-byte transaction hash).
    fn sign(&self, message: &[u8]) -> Signature;
}

impl TxSigner for SecretKey {
    fn public_key(&self) -> PublicKey {
        SecretKey::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> Signature {
        SecretKey::sign(self, message)
    }
}

/// An account and one of its access keys. Cheap to clone.
#[derive(Clone)]
pub struct Account {
    account_id: AccountId,
    public_key: PublicKey,
    signer: Arc<dyn TxSigner>,
}

impl fmt::Debug for Account {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("account_id", &self.account_id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// near-cli's credentials file (`~/.near-credentials/<network>/<account>.json`). near-cli-rs
/// writes `private_key`; neard's key files and older tools write `secret_key`: both are read.
#[derive(Clone, Serialize, Deserialize)]
pub struct CredentialsFile {
    pub account_id: AccountId,
    pub public_key: PublicKey,
    #[serde(alias = "secret_key")]
    pub private_key: SecretKey,
}

impl Account {
    /// Any signer; the public key is read from it once.
    pub fn new(account_id: AccountId, signer: Arc<dyn TxSigner>) -> Self {
        Self {
            account_id,
            public_key: signer.public_key(),
            signer,
        }
    }

    pub fn from_secret_key(account_id: AccountId, secret_key: SecretKey) -> Self {
        Self::new(account_id, Arc::new(secret_key))
    }

    /// An ed25519 key from its 32-byte seed (how the worker seals its NEAR key).
    pub fn from_ed25519_seed(account_id: AccountId, seed: &[u8; 32]) -> Self {
        Self::from_secret_key(account_id, ed25519_secret_from_seed(seed))
    }

    /// Reads a near-cli credentials file. The file's public key must match its private key.
    pub fn from_credentials_file(path: &Path) -> Result<Self> {
        let err = |message: String| ChainError::Credentials {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: CredentialsFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if file.private_key.public_key() != file.public_key {
            return Err(err(format!(
                "public_key {} is not the public half of private_key",
                file.public_key
            )));
        }
        Ok(Self::from_secret_key(file.account_id, file.private_key))
    }

    /// `<credentials_dir>/<network>/<account_id>.json`, near-cli's layout.
    pub fn from_near_credentials(
        credentials_dir: &Path,
        network: &str,
        account_id: &AccountId,
    ) -> Result<Self> {
        let account =
            Self::from_credentials_file(&credentials_path(credentials_dir, network, account_id))?;
        if account.account_id != *account_id {
            return Err(ChainError::Credentials {
                path: credentials_path(credentials_dir, network, account_id)
                    .display()
                    .to_string(),
                message: format!("the file is for {}", account.account_id),
            });
        }
        Ok(account)
    }

    pub fn account_id(&self) -> &AccountId {
        &self.account_id
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signer.sign(message)
    }
}

/// near-cli's default credentials directory, `$HOME/.near-credentials`.
pub fn default_credentials_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".near-credentials"))
}

/// Where near-cli keeps `account_id`'s key for `network`.
pub fn credentials_path(credentials_dir: &Path, network: &str, account_id: &AccountId) -> PathBuf {
    credentials_dir
        .join(network)
        .join(format!("{account_id}.json"))
}

/// Writes a near-cli credentials file (0600), creating the directories and replacing an
/// existing file. For tests, the demo and operators importing a key.
pub fn write_credentials_file(
    path: &Path,
    account_id: &AccountId,
    secret_key: &SecretKey,
) -> Result<()> {
    store_credentials(path, account_id, secret_key, Existing::Replace)
}

/// Like [`write_credentials_file`], but refuses to touch an existing file: for tools that
/// create accounts and must never overwrite the only copy of another key.
pub fn create_credentials_file(
    path: &Path,
    account_id: &AccountId,
    secret_key: &SecretKey,
) -> Result<()> {
    store_credentials(path, account_id, secret_key, Existing::Refuse)
}

#[derive(Clone, Copy)]
enum Existing {
    Replace,
    Refuse,
}

fn store_credentials(
    path: &Path,
    account_id: &AccountId,
    secret_key: &SecretKey,
    existing: Existing,
) -> Result<()> {
    let err = |message: String| ChainError::Credentials {
        path: path.display().to_string(),
        message,
    };
    let file = CredentialsFile {
        account_id: account_id.clone(),
        public_key: secret_key.public_key(),
        private_key: secret_key.clone(),
    };
    let json = serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    write_private(path, json.as_bytes(), existing).map_err(|e| err(e.to_string()))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    match existing {
        Existing::Replace => options.create(true).truncate(true),
        Existing::Refuse => options.create_new(true),
    };
    options.open(path)?.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    if matches!(existing, Existing::Refuse) && path.exists() {
        return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
    }
    std::fs::write(path, bytes)
}

/// near-crypto keeps ed25519 secret keys as the 64-byte keypair (seed || public key).
pub fn ed25519_secret_from_seed(seed: &[u8; 32]) -> SecretKey {
    let keypair = ed25519_dalek::SigningKey::from_bytes(seed).to_keypair_bytes();
    SecretKey::ED25519(ED25519SecretKey(keypair))
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_crypto::KeyType;

    fn alice() -> AccountId {
        "alice.test.near".parse().unwrap()
    }

    #[test]
    fn credentials_round_trip_and_both_key_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_random(KeyType::ED25519);
        let path = credentials_path(dir.path(), "localnet", &alice());
        write_credentials_file(&path, &alice(), &key).unwrap();
        let account = Account::from_near_credentials(dir.path(), "localnet", &alice()).unwrap();
        assert_eq!(account.account_id(), &alice());
        assert_eq!(account.public_key(), &key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // neard's validator_key.json / localnet: `secret_key`.
        let neard = serde_json::json!({
            "account_id": "test.near",
            "public_key": key.public_key(),
            "secret_key": key,
        });
        let other = dir.path().join("validator_key.json");
        std::fs::write(&other, neard.to_string()).unwrap();
        let account = Account::from_credentials_file(&other).unwrap();
        assert_eq!(account.account_id().as_str(), "test.near");
        assert!(!format!("{account:?}").contains(&key.to_string()));
    }

    #[test]
    fn creating_credentials_never_overwrites_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretKey::from_random(KeyType::ED25519);
        let second = SecretKey::from_random(KeyType::ED25519);
        let path = credentials_path(dir.path(), "localnet", &alice());
        create_credentials_file(&path, &alice(), &first).unwrap();
        let err = create_credentials_file(&path, &alice(), &second).unwrap_err();
        assert!(matches!(err, ChainError::Credentials { .. }), "{err}");
        let kept = Account::from_credentials_file(&path).unwrap();
        assert_eq!(kept.public_key(), &first.public_key());

        write_credentials_file(&path, &alice(), &second).unwrap();
        let replaced = Account::from_credentials_file(&path).unwrap();
        assert_eq!(replaced.public_key(), &second.public_key());
    }

    #[test]
    fn mismatched_or_malformed_credentials_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_random(KeyType::ED25519);
        let other = SecretKey::from_random(KeyType::ED25519);
        let path = dir.path().join("bad.json");
        let json = serde_json::json!({
            "account_id": "alice.test.near",
            "public_key": other.public_key(),
            "private_key": key,
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let err = Account::from_credentials_file(&path).unwrap_err();
        assert!(err.to_string().contains("not the public half"), "{err}");

        std::fs::write(&path, "{\"account_id\": \"alice\"}").unwrap();
        assert!(matches!(
            Account::from_credentials_file(&path),
            Err(ChainError::Credentials { .. })
        ));
        assert!(matches!(
            Account::from_credentials_file(&dir.path().join("missing.json")),
            Err(ChainError::Credentials { .. })
        ));

        // A file under the right name but for another account.
        let path = credentials_path(dir.path(), "localnet", &alice());
        write_credentials_file(&path, &"bob.test.near".parse().unwrap(), &key).unwrap();
        assert!(Account::from_near_credentials(dir.path(), "localnet", &alice()).is_err());
    }

    #[test]
    fn seed_keys_sign_like_near_crypto() {
        let seed = [7u8; 32];
        let account = Account::from_ed25519_seed(alice(), &seed);
        let message = b"hash of a transaction";
        let signature = account.sign(message);
        assert!(signature.verify(message, account.public_key()));
        // Same key as near-crypto's own parsing of the keypair bytes.
        let secret = ed25519_secret_from_seed(&seed);
        let reparsed: SecretKey = secret.to_string().parse().unwrap();
        assert_eq!(reparsed.public_key(), *account.public_key());
    }
}
