//! Value types that appear in events, views and off-chain DTOs.

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, near};
use std::fmt;
use std::str::FromStr;

use crate::ModelId;

/// A 32-byte digest (SHA-256 unless said otherwise), hex in JSON.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a hex digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a 32-byte hex digest (64 hex characters)")]
pub struct BadHash32(pub String);

impl FromStr for Hash32 {
    type Err = BadHash32;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadHash32(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl near_sdk::serde::Serialize for Hash32 {
    fn serialize<S: near_sdk::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> near_sdk::serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: near_sdk::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as near_sdk::serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(near_sdk::serde::de::Error::custom)
    }
}

/// What a job is paid in: native NEAR or an allow-listed NEP-141 token.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Asset {
    Near,
    Ft { token: AccountId },
}

/// A job's input: small ciphertexts travel inline, larger ones by hash and URI.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputRef {
    /// HPKE ciphertext encrypted to the node's attested x25519 key.
    Inline { ciphertext: Base64VecU8 },
    /// SHA-256 of the ciphertext stored at `uri`.
    Remote { hash: Hash32, uri: String },
}

/// A job's output, encrypted to the user's key; same shapes as the input.
pub type OutputRef = InputRef;

/// The marketplace's default largest inline ciphertext (input or output), in bytes. One sealed
/// MiniLM embedding (384 floats as JSON, ~8.2 KB) fits, and so does the `job_settled` event
/// that carries a settled output in base64 within NEAR's 16 KiB log limit. Larger outputs
/// travel by hash + URI ([`InputRef::Remote`]).
pub const DEFAULT_MAX_INLINE_BYTES: u32 = 10_240;

/// Token usage reported (and signed) by the node.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: U64,
    pub output_tokens: U64,
}

/// A node's price for one model, per one million tokens, in yoctoNEAR.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub model_id: ModelId,
    pub input_per_million: U128,
    pub output_per_million: U128,
}

/// The TDX measurements a node attested, hex in JSON (48-byte registers).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Measurements {
    pub mrtd: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    /// dstack app compose hash (sha256 of the app compose), when the node runs dstack.
    pub compose_hash: Option<Hash32>,
}

/// One attested GPU.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Model as reported by the evidence, e.g. "H100".
    pub model: String,
    /// SHA-256 of the GPU's leaf certificate: a stable identity of the device.
    pub device_id: Hash32,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
}

/// Lifecycle of a node in the registry.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Attested and heartbeating: may take jobs.
    Active,
    /// Missed heartbeats; becomes active again with a heartbeat.
    Inactive,
    /// Attestation expired; needs `reattest`.
    Expired,
    /// Removed by its operator.
    Deregistered,
    /// Registered, but not every GPU and switch it declared is verified yet (`add_gpu`): takes
    /// no jobs. Removed (deregistered) if the registration's challenge expires first.
    Pending,
}

/// How a node proved it runs in a TEE.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    /// Intel TDX DCAP quote (+ NVIDIA GPU evidence).
    Tdx,
    /// Development key signed by a development CA: localnet/testnet only.
    Dev,
}

/// Intel TCB status of the platform at verification time.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// Not applicable (dev attestation).
    None,
}

/// What a user submits: the same shape for NEAR (`submit_job`) and tokens (`ft_on_transfer`).
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub model_id: ModelId,
    /// Most the user pays, in the job's asset. With a token, at most the amount transferred;
    /// the rest is returned.
    pub price_cap: U128,
    /// Absolute deadline for the result, ns since the epoch.
    pub deadline_ns: U64,
    /// Absolute deadline for a claim; defaults to now + the claim window (and never after
    /// `deadline_ns`).
    pub claim_deadline_ns: Option<U64>,
    pub target: crate::events::marketplace::JobTarget,
    pub input: InputRef,
    /// The user's x25519 key, 64 hex characters: the node encrypts the output to it.
    pub user_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash32_is_hex() {
        let h = Hash32([0xab; 32]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
        let err = serde_json::from_str::<Hash32>("\"abcd\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'abcd' is not a 32-byte hex digest"), "{err}");
    }

    #[test]
    fn asset_json_shape() {
        assert_eq!(
            serde_json::to_string(&Asset::Near).unwrap(),
            r#"{"kind":"near"}"#
        );
        let ft = Asset::Ft {
            token: "usdc.near".parse().unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&ft).unwrap(),
            r#"{"kind":"ft","token":"usdc.near"}"#
        );
    }
}
