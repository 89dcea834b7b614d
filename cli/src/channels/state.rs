//! The client's half of a payment channel, kept in a file of its own (mode 0600, written
//! atomically: temp file, fsync, rename) under `<keys-dir>/<network>/channels/`:
//!
//! * the channel key (ed25519 seed): signs every voucher and request authorization;
//! * `owed`: the cumulative amount of every response verified so far, and the channel key's
//!   signature over the voucher of exactly that amount (the newest voucher);
//! * `next_sequence`: the next request sequence number.
//!
//! Rules that keep the user's money safe: the file is written *before* anything it covers is
//! sent (a key before `open_channel`, a sequence number before its request, a voucher before
//! it is delivered), so a crash never reuses a sequence number nor signs a voucher below one
//! already handed out; and [`ChannelStore::save`] refuses to write a state whose `owed` or
//! `next_sequence` is below the one on disk.
//!
//! A channel being opened is kept as `pending-<key>.json` until the marketplace returned its
//! id, then as `<marketplace>-<id>.json`. One proxy at a time uses them
//! ([`ChannelStore::lock`]); it holds their state in memory and writes each change through.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclave_cloud_common::voucher::ChannelSigningKey;
use enclave_cloud_common::{Asset, ChannelId, ModelId, NodeId, Voucher};
use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, CurveType, PublicKey};
use protocol::keys::{FileSealer, KeyError, Sealer as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why a channel's state could not be used or kept.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    File(#[from] KeyError),
    #[error("channel state {name}: {message}")]
    Corrupt { name: String, message: String },
    #[error(
        "channel state {name} on disk is ahead of this one (owed {} > {} or sequence {disk_seq} > {seq}): refusing to go backwards",
        shown(*.disk_owed, .asset),
        shown(*.owed, .asset)
    )]
    Regressed {
        name: String,
        asset: Asset,
        disk_owed: u128,
        owed: u128,
        disk_seq: u64,
        seq: u64,
    },
    #[error(
        "paying {} more would owe {}, over the channel's deposit {}",
        shown(*.cost, .asset),
        shown(*.owed, .asset),
        shown(*.deposit, .asset)
    )]
    OverDeposit {
        asset: Asset,
        cost: u128,
        owed: u128,
        deposit: u128,
    },
    #[error("no randomness from the operating system: {0}")]
    Rng(String),
    #[error(
        "another ecloud proxy is using the channels in {dir}: stop it first, or give this one its own --keys-dir"
    )]
    Busy { dir: String },
}

/// An amount of a channel's asset in a message: NEAR for people (`0.011 NEAR`); a token's
/// smallest units and its account, since a channel record does not know the token's
/// decimals.
fn shown(units: u128, asset: &Asset) -> String {
    match asset {
        Asset::Near => chain_client::amount::format_near(units),
        Asset::Ft { token } => format!("{units} (smallest units of {token})"),
    }
}

/// Held by the one process that may send requests on this network's channels (see
/// [`ChannelStore::lock`]); released when dropped or when the process dies.
#[derive(Debug)]
pub struct ChannelsLock {
    _file: std::fs::File,
}

/// One channel's client state (the file's JSON).
#[derive(Clone, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub marketplace: AccountId,
    /// `None` while `open_channel` has not returned.
    pub channel_id: Option<ChannelId>,
    pub node_id: NodeId,
    pub model_id: ModelId,
    pub asset: Asset,
    /// The channel key's ed25519 seed, hex.
    channel_key_seed: String,
    /// Cumulative amount of the verified responses (smallest units of the asset).
    pub owed: U128,
    /// Base64 of the channel key's signature over the voucher for `owed` (`None` while 0).
    pub voucher_signature: Option<String>,
    /// The next request sequence number (never reused).
    pub next_sequence: U64,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("marketplace", &self.marketplace)
            .field("channel_id", &self.channel_id)
            .field("node_id", &self.node_id)
            .field("model_id", &self.model_id)
            .field("owed", &self.owed)
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

impl ChannelRecord {
    /// A new channel's state with a fresh channel key.
    pub fn generate(
        marketplace: AccountId,
        node_id: NodeId,
        model_id: ModelId,
        asset: Asset,
    ) -> Result<Self, StateError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| StateError::Rng(e.to_string()))?;
        Ok(Self {
            marketplace,
            channel_id: None,
            node_id,
            model_id,
            asset,
            channel_key_seed: hex::encode(seed.as_ref()),
            owed: U128(0),
            voucher_signature: None,
            next_sequence: U64(0),
        })
    }

    pub fn signing_key(&self) -> Result<ChannelSigningKey, StateError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&self.channel_key_seed, seed.as_mut()).map_err(|_| {
            StateError::Corrupt {
                name: self.file_name(),
                message: "channel_key_seed is not 32 bytes of hex".into(),
            }
        })?;
        Ok(ChannelSigningKey::from_bytes(&seed))
    }

    /// The channel key as the marketplace names it.
    pub fn public_key(&self) -> Result<PublicKey, StateError> {
        let key = self.signing_key()?.verifying_key().to_bytes();
        PublicKey::from_parts(CurveType::ED25519, key.to_vec()).map_err(|e| StateError::Corrupt {
            name: self.file_name(),
            message: e.to_string(),
        })
    }

    /// The file this state lives in.
    pub fn file_name(&self) -> String {
        match self.channel_id {
            Some(id) => format!("{}-{id}.json", self.marketplace),
            None => format!(
                "pending-{}.json",
                self.channel_key_seed_fingerprint().unwrap_or_default()
            ),
        }
    }

    /// A short name of the key for the pending file (not the secret itself).
    fn channel_key_seed_fingerprint(&self) -> Option<String> {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.channel_key_seed.as_bytes());
        Some(hex::encode(&digest[..8]))
    }

    /// Takes the next sequence number. Save the record before sending the request it numbers.
    pub fn reserve_sequence(&mut self) -> u64 {
        let seq = self.next_sequence.0;
        self.next_sequence = U64(seq.saturating_add(1));
        seq
    }

    /// The newest voucher (amount, signature), `None` before the first paid response.
    pub fn newest_voucher(&self) -> Option<(u128, [u8; 64])> {
        let sig = self.voucher_signature.as_deref()?;
        let sig: [u8; 64] = B64.decode(sig).ok()?.try_into().ok()?;
        Some((self.owed.0, sig))
    }

    fn voucher_for(&self, amount: u128) -> Option<Voucher> {
        Some(Voucher {
            marketplace: self.marketplace.clone(),
            channel_id: self.channel_id?,
            asset: self.asset.clone(),
            amount: U128(amount),
        })
    }

    /// Adds a verified response's `cost` to what is owed and signs the voucher for the new
    /// total; refuses to owe more than `deposit`. Save the record before delivering the
    /// voucher. Returns the voucher and its signature.
    pub fn pay(&mut self, cost: u128, deposit: u128) -> Result<(Voucher, [u8; 64]), StateError> {
        let owed = self
            .owed
            .0
            .checked_add(cost)
            .filter(|o| *o <= deposit)
            .ok_or_else(|| StateError::OverDeposit {
                asset: self.asset.clone(),
                cost,
                owed: self.owed.0.saturating_add(cost),
                deposit,
            })?;
        let voucher = self.voucher_for(owed).ok_or_else(|| StateError::Corrupt {
            name: self.file_name(),
            message: "a channel without an id cannot pay".into(),
        })?;
        let signature = voucher.sign(&self.signing_key()?);
        self.owed = U128(owed);
        self.voucher_signature = Some(B64.encode(signature));
        Ok((voucher, signature))
    }
}

/// The channel state files of one network: `<keys-dir>/<network>/channels/`.
#[derive(Debug, Clone)]
pub struct ChannelStore {
    dir: PathBuf,
    files: FileSealer,
}

impl ChannelStore {
    pub fn new(network_keys_dir: &Path) -> Self {
        let dir = network_keys_dir.join("channels");
        Self {
            files: FileSealer::new(&dir),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exclusive lock a proxy holds while it runs: two proxies on the same channels would
    /// each hand the node sequence numbers and vouchers from their own copy of the state (the
    /// node refuses one's sequences, and a voucher below the other's is never settled). An OS
    /// file lock, so a killed proxy never leaves it behind.
    pub fn lock(&self) -> Result<ChannelsLock, StateError> {
        let io = |source| {
            StateError::File(KeyError::Io {
                path: self.dir.clone(),
                source,
            })
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(ChannelsLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy {
                dir: self.dir.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    fn read(&self, name: &str) -> Result<Option<ChannelRecord>, StateError> {
        let Some(bytes) = self.files.unseal(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                name: name.to_owned(),
                message: e.to_string(),
            })
    }

    /// Writes `record` (atomically, 0600), refusing to move `owed` or the sequence backwards.
    pub fn save(&self, record: &ChannelRecord) -> Result<(), StateError> {
        let name = record.file_name();
        if let Some(disk) = self.read(&name)?
            && (disk.owed.0 > record.owed.0 || disk.next_sequence.0 > record.next_sequence.0)
        {
            return Err(StateError::Regressed {
                name,
                asset: record.asset.clone(),
                disk_owed: disk.owed.0,
                owed: record.owed.0,
                disk_seq: disk.next_sequence.0,
                seq: record.next_sequence.0,
            });
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| StateError::Corrupt {
            name: name.clone(),
            message: e.to_string(),
        })?;
        Ok(self.files.seal(&name, &json)?)
    }

    /// Records the id the marketplace gave a pending channel: the state moves to its final
    /// file (written first), then the pending file goes.
    pub fn opened(&self, record: &mut ChannelRecord, id: ChannelId) -> Result<(), StateError> {
        let pending = self.dir.join(record.file_name());
        record.channel_id = Some(id);
        self.save(record)?;
        let _ = std::fs::remove_file(pending);
        Ok(())
    }

    /// Forgets a pending channel that was never opened (the transaction failed).
    pub fn discard_pending(&self, record: &ChannelRecord) {
        if record.channel_id.is_none() {
            let _ = std::fs::remove_file(self.dir.join(record.file_name()));
        }
    }

    /// Every channel state of `marketplace` (pending ones too), by id.
    pub fn all(&self, marketplace: &AccountId) -> Result<Vec<ChannelRecord>, StateError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(KeyError::Io {
                    path: self.dir.clone(),
                    source,
                }
                .into());
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            if let Some(r) = self.read(&name)?
                && &r.marketplace == marketplace
            {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.channel_id.map_or(u64::MAX, |c| c.0));
        Ok(out)
    }

    /// The state of channel `id` of `marketplace`.
    pub fn get(
        &self,
        marketplace: &AccountId,
        id: ChannelId,
    ) -> Result<Option<ChannelRecord>, StateError> {
        self.read(&format!("{marketplace}-{id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn one_proxy_at_a_time_per_channels_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChannelStore::new(dir.path());
        let held = store.lock().expect("the first lock");
        let err = ChannelStore::new(dir.path())
            .lock()
            .expect_err("a second proxy");
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another ecloud proxy"), "{err}");
        drop(held);
        store.lock().expect("free again once the first is gone");
    }

    fn record() -> ChannelRecord {
        ChannelRecord::generate(
            "market.test.near".parse().unwrap(),
            NodeId(3),
            "llm".parse().unwrap(),
            Asset::Near,
        )
        .unwrap()
    }

    #[test]
    fn pending_then_opened_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChannelStore::new(dir.path());
        let mut r = record();
        store.save(&r).unwrap();
        let pending = store.dir().join(r.file_name());
        assert!(r.file_name().starts_with("pending-"));
        assert!(pending.exists());
        store.opened(&mut r, ChannelId(9)).unwrap();
        assert!(!pending.exists(), "the pending file is gone once opened");
        let path = store.dir().join("market.test.near-9.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = store
            .get(&"market.test.near".parse().unwrap(), ChannelId(9))
            .unwrap()
            .unwrap();
        assert_eq!(back.public_key().unwrap(), r.public_key().unwrap());
        assert_eq!(
            store
                .all(&"market.test.near".parse().unwrap())
                .unwrap()
                .len(),
            1
        );
        assert!(
            store
                .all(&"other.test.near".parse().unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn sequence_numbers_are_never_reused_and_owed_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChannelStore::new(dir.path());
        let mut r = record();
        store.opened(&mut r, ChannelId(1)).unwrap();
        let stale = r.clone();
        assert_eq!(r.reserve_sequence(), 0);
        assert_eq!(r.reserve_sequence(), 1);
        store.save(&r).unwrap();
        // A copy that did not see the reservations (another process, an old snapshot).
        let err = store.save(&stale).unwrap_err();
        assert!(matches!(err, StateError::Regressed { .. }), "{err}");
        r.pay(100, 1_000).unwrap();
        store.save(&r).unwrap();
        let mut behind = r.clone();
        behind.owed = U128(50);
        assert!(matches!(
            store.save(&behind),
            Err(StateError::Regressed { .. })
        ));
        let back = store
            .get(&r.marketplace, ChannelId(1))
            .unwrap()
            .expect("saved");
        assert_eq!(back.next_sequence.0, 2);
        assert_eq!(back.owed.0, 100);
    }

    #[test]
    fn vouchers_are_cumulative_signed_and_bounded_by_the_deposit() {
        let mut r = record();
        r.channel_id = Some(ChannelId(4));
        assert_eq!(r.newest_voucher(), None);
        let key = r.signing_key().unwrap().verifying_key().to_bytes();
        let (v1, s1) = r.pay(30, 100).unwrap();
        let (v2, s2) = r.pay(50, 100).unwrap();
        assert_eq!((v1.amount.0, v2.amount.0), (30, 80));
        assert!(v1.verify(&key, &s1) && v2.verify(&key, &s2));
        assert_eq!(v2.channel_id, ChannelId(4));
        assert_eq!(r.newest_voucher(), Some((80, s2)));
        let err = r.pay(21, 100).unwrap_err();
        assert!(matches!(err, StateError::OverDeposit { .. }), "{err}");
        assert_eq!(r.owed.0, 80, "a refused payment changes nothing");
        assert!(r.pay(u128::MAX, u128::MAX).is_err(), "no overflow");
        // Amounts a person can read: NEAR as NEAR, a token's units named as such.
        let near = 10u128.pow(24);
        let mut big = record();
        big.channel_id = Some(ChannelId(5));
        big.pay(near / 2, 2 * near).unwrap();
        let err = big.pay(2 * near, 2 * near).unwrap_err();
        assert_eq!(
            err.to_string(),
            "paying 2 NEAR more would owe 2.5 NEAR, over the channel's deposit 2 NEAR"
        );
        big.asset = Asset::Ft {
            token: "usdc.test.near".parse().unwrap(),
        };
        let err = big.pay(7, 8).unwrap_err().to_string();
        assert!(
            err.starts_with("paying 7 (smallest units of usdc.test.near) more"),
            "{err}"
        );
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let r = record();
        let text = format!("{r:?}");
        assert!(!text.contains(&r.channel_key_seed), "{text}");
    }
}
