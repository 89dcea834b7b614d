//! The durable part of each channel the node serves: the newest voucher (what the node is
//! owed, settled or not), what it billed, what was settled, and the sequence numbers served.
//! One JSON file per channel under `<data dir>/channels/`, replaced atomically (temp file,
//! fsync, rename, fsync of the directory) before the response that depends on it is sent: a
//! crash never loses a voucher (earnings) nor forgets a served sequence number (a replayed
//! request would be billed twice).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclave_cloud_common::ChannelId;
use near_sdk::json_types::U128;
use serde::{Deserialize, Serialize};

/// Served sequence numbers remembered individually; beyond it the lowest are folded into the
/// floor (everything below the floor is refused), so a record stays small however many
/// requests a channel carries, while requests sent concurrently may still arrive out of order.
pub const MAX_TRACKED_SEQUENCES: usize = 1024;

/// A voucher signature as stored (base64 of the 64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherSignature(pub [u8; 64]);

impl Serialize for VoucherSignature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for VoucherSignature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("expected base64 of 64 bytes"))
    }
}

/// The newest voucher of a channel: its cumulative amount and the channel key's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVoucher {
    pub amount: U128,
    pub signature: VoucherSignature,
}

/// What the node keeps of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub channel_id: ChannelId,
    /// The largest valid voucher received.
    pub voucher: Option<StoredVoucher>,
    /// Cumulative cost of every response billed on this channel (in the channel's asset).
    pub billed: U128,
    /// The voucher amount settled on chain (as far as this node knows).
    pub settled: U128,
    /// Every sequence number below it counts as served.
    pub sequence_floor: u64,
    /// Served sequence numbers at or above the floor.
    pub served: BTreeSet<u64>,
}

impl ChannelRecord {
    pub fn new(channel_id: ChannelId) -> Self {
        Self {
            channel_id,
            voucher: None,
            billed: U128(0),
            settled: U128(0),
            sequence_floor: 0,
            served: BTreeSet::new(),
        }
    }

    /// The newest voucher's amount (0 before any).
    pub fn paid(&self) -> u128 {
        self.voucher.map_or(0, |v| v.amount.0)
    }

    /// Billed work no voucher covers yet.
    pub fn unpaid(&self) -> u128 {
        self.billed.0.saturating_sub(self.paid())
    }

    /// Whether `sequence` was served (or is below the floor).
    pub fn was_served(&self, sequence: u64) -> bool {
        sequence < self.sequence_floor || self.served.contains(&sequence)
    }

    /// Records `sequence` as served.
    pub fn mark_served(&mut self, sequence: u64) {
        self.served.insert(sequence);
        while self.served.len() > MAX_TRACKED_SEQUENCES {
            if let Some(lowest) = self.served.pop_first() {
                self.sequence_floor = self.sequence_floor.max(lowest.saturating_add(1));
            }
        }
    }

    /// Keeps `voucher` if it is larger than the one held; returns whether it was.
    pub fn offer_voucher(&mut self, voucher: StoredVoucher) -> bool {
        if voucher.amount.0 > self.paid() {
            self.voucher = Some(voucher);
            true
        } else {
            false
        }
    }
}

/// Why the store failed (the request is refused: nothing is served unrecorded).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("channel store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("channel store {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// The records on disk.
#[derive(Debug, Clone)]
pub struct ChannelStore {
    dir: PathBuf,
}

impl ChannelStore {
    /// The store in `dir` (created, mode 0700).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, channel_id: ChannelId) -> PathBuf {
        self.dir.join(format!("{}.json", channel_id.0))
    }

    /// Every record (after a restart).
    pub fn load_all(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let record = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                out.push(record);
            }
        }
        out.sort_by_key(|r: &ChannelRecord| r.channel_id);
        Ok(out)
    }

    /// Replaces the record atomically and durably.
    pub fn save(&self, record: &ChannelRecord) -> Result<(), StoreError> {
        let path = self.path(record.channel_id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_sequences_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChannelStore::open(&dir.path().join("channels")).unwrap();
        let mut record = ChannelRecord::new(ChannelId(3));
        assert!(record.offer_voucher(StoredVoucher {
            amount: U128(50),
            signature: VoucherSignature([1; 64]),
        }));
        assert!(!record.offer_voucher(StoredVoucher {
            amount: U128(40),
            signature: VoucherSignature([2; 64]),
        }));
        for seq in (0..(MAX_TRACKED_SEQUENCES as u64 + 10)).rev() {
            record.mark_served(seq);
        }
        assert_eq!(record.served.len(), MAX_TRACKED_SEQUENCES);
        assert_eq!(record.sequence_floor, 10);
        assert!(record.was_served(0) && record.was_served(12));
        assert!(!record.was_served(MAX_TRACKED_SEQUENCES as u64 + 10));
        record.billed = U128(70);
        assert_eq!(record.unpaid(), 20);
        store.save(&record).unwrap();
        let again = ChannelStore::open(&dir.path().join("channels")).unwrap();
        assert_eq!(again.load_all().unwrap(), vec![record]);
    }
}
