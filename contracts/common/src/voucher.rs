//! A payment channel's voucher: the channel key's promise that the user owes the node a
//! cumulative amount.
//!
//! The marketplace verifies the channel key's ed25519 signature over
//! [`Voucher::signing_bytes`] (`env::ed25519_verify`); the client (`ecloud proxy`) signs the
//! same bytes and the worker checks them before it serves, so the byte layout is defined once,
//! here. The amount is cumulative: each voucher replaces the previous one, so a node only ever
//! needs the newest, and settling it pays the difference to what was already settled.

use near_sdk::borsh;
use near_sdk::json_types::U128;
use near_sdk::{AccountId, near};

use crate::{Asset, ChannelId};

/// The channel key's signing key, for clients that sign vouchers ([`Voucher::sign`]).
#[cfg(feature = "voucher-signing")]
pub use ed25519_dalek::SigningKey as ChannelSigningKey;

/// The first 32 bytes of every signed voucher.
///
/// The channel key is an ed25519 key the user holds; if it were also (or became) a NEAR access
/// key, a signature over a voucher must never be usable as a signature over a transaction, a
/// delegate action or another message of ours, and the other way round. The tag is the u32
/// 2^31 + 10_017 in little endian, then `ecloud-channel-voucher-v1` padded with zeros:
/// - A NEAR transaction (`Transaction` V0) starts with its `signer_id`, a borsh string whose
///   u32 length is at most 64; a V1 transaction starts with the byte 1. Our first u32 is above
///   2^31 and our first byte is 0x21: no transaction decodes from these bytes.
/// - NEP-461 reserves u32 prefixes from 2^30 for on-chain actions (NEP-366 delegate actions use
///   2^30 + 366) and from 2^31 for off-chain messages (NEP-413 uses 2^31 + 413): ours is an
///   off-chain message with its own number, so it never equals another NEP's prefix.
/// - Our other signed message, the result receipt, starts with the ASCII `ecloud-result`
///   (0x65...): it can never be read as a voucher nor a voucher as a receipt.
///
/// Bumping `-v1` (a new layout) changes the tag, so old signatures never verify new layouts.
pub const VOUCHER_TAG: [u8; 32] = tag(VOUCHER_PREFIX, b"ecloud-channel-voucher-v1");

/// NEP-461 style prefix of the tag: an off-chain message (>= 2^31), our number 10_017.
pub const VOUCHER_PREFIX: u32 = (1 << 31) + 10_017;

/// A 32-byte tag: the u32 prefix in little endian, then the name padded with zeros.
const fn tag(prefix: u32, name: &[u8]) -> [u8; 32] {
    let mut tag = [0u8; 32];
    let prefix = prefix.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        tag[i] = prefix[i];
        i += 1;
    }
    let mut j = 0;
    while j < name.len() {
        tag[4 + j] = name[j];
        j += 1;
    }
    tag
}

/// What the channel key signs: (marketplace account, channel id, asset, cumulative amount owed
/// in the channel's asset's smallest units).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The marketplace contract the channel lives in: a voucher of one deployment (testnet,
    /// another marketplace) is worthless in any other.
    pub marketplace: AccountId,
    pub channel_id: ChannelId,
    /// The channel's asset: NEAR or the NEP-141 token it was opened with.
    pub asset: Asset,
    /// Everything the user owes the node on this channel so far (not a delta).
    pub amount: U128,
}

impl Voucher {
    /// The exact bytes the channel key signs: `VOUCHER_TAG || borsh(self)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        tagged_bytes(&VOUCHER_TAG, self)
    }

    /// The channel key's ed25519 signature over [`Self::signing_bytes`] (64 bytes).
    #[cfg(feature = "voucher-signing")]
    pub fn sign(&self, channel_key: &ed25519_dalek::SigningKey) -> [u8; 64] {
        sign_ed25519(&self.signing_bytes(), channel_key)
    }

    /// Whether `signature` is `public_key`'s (32 raw ed25519 bytes) over this voucher: what the
    /// node checks before it serves a request paid by this voucher.
    #[cfg(feature = "voucher-signing")]
    pub fn verify(&self, public_key: &[u8; 32], signature: &[u8; 64]) -> bool {
        verify_ed25519(&self.signing_bytes(), public_key, signature)
    }
}

/// The first 32 bytes of a request authorization ([`RequestAuthorization`]): NEP-461 style
/// off-chain prefix 2^31 + 10_018, then `ecloud-channel-request-v1` padded with zeros. The same
/// argument as [`VOUCHER_TAG`]: no transaction, delegate action, voucher or receipt starts
/// with these bytes, and a voucher signature never verifies as a request's or the other way.
pub const REQUEST_TAG: [u8; 32] = tag(REQUEST_PREFIX, b"ecloud-channel-request-v1");

/// NEP-461 style prefix of [`REQUEST_TAG`].
pub const REQUEST_PREFIX: u32 = (1 << 31) + 10_018;

/// What the channel key signs for each request it sends a node (inside the sealed request):
/// the channel, a sequence number the node serves once, and the SHA-256 of the exact request
/// body. A voucher carried by a request pays the node; this signature is what stops a captured
/// voucher from buying anyone else's request. Never verified on chain.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuthorization {
    pub marketplace: AccountId,
    pub channel_id: ChannelId,
    /// Unique per channel; the node refuses a sequence number it has served.
    pub sequence: u64,
    /// SHA-256 of the exact (plaintext) request body.
    #[serde(with = "hex_bytes32")]
    // The schema (host builds with `near-sdk/abi`) of the hex string `with` writes.
    #[cfg_attr(feature = "state-schema", schemars(with = "String"))]
    pub request_sha256: [u8; 32],
}

mod hex_bytes32 {
    use near_sdk::serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| D::Error::custom("expected 64 hex digits"))
    }
}

impl RequestAuthorization {
    /// `REQUEST_TAG || borsh(self)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        tagged_bytes(&REQUEST_TAG, self)
    }

    #[cfg(feature = "voucher-signing")]
    pub fn sign(&self, channel_key: &ed25519_dalek::SigningKey) -> [u8; 64] {
        sign_ed25519(&self.signing_bytes(), channel_key)
    }

    #[cfg(feature = "voucher-signing")]
    pub fn verify(&self, public_key: &[u8; 32], signature: &[u8; 64]) -> bool {
        verify_ed25519(&self.signing_bytes(), public_key, signature)
    }
}

/// `tag || borsh(message)`: what a channel key signs. The tag keeps each kind of message from
/// ever verifying as another (or as a transaction).
fn tagged_bytes<T: borsh::BorshSerialize>(tag: &[u8; 32], message: &T) -> Vec<u8> {
    let mut out = tag.to_vec();
    // Borsh into a Vec cannot fail.
    out.extend(borsh::to_vec(message).unwrap_or_default());
    out
}

#[cfg(feature = "voucher-signing")]
fn sign_ed25519(bytes: &[u8], key: &ed25519_dalek::SigningKey) -> [u8; 64] {
    use ed25519_dalek::Signer;
    key.sign(bytes).to_bytes()
}

#[cfg(feature = "voucher-signing")]
fn verify_ed25519(message: &[u8], public_key: &[u8; 32], signature: &[u8; 64]) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voucher() -> Voucher {
        Voucher {
            marketplace: "market.near".parse().unwrap(),
            channel_id: ChannelId(7),
            asset: Asset::Near,
            amount: U128(1_000),
        }
    }

    #[test]
    fn signing_bytes_are_the_tag_then_borsh_and_fixed() {
        let bytes = voucher().signing_bytes();
        assert_eq!(&bytes[..4], &[0x21, 0x27, 0x00, 0x80]);
        assert_eq!(&bytes[4..29], b"ecloud-channel-voucher-v1");
        assert_eq!(&bytes[29..32], &[0, 0, 0]);
        let mut expected = 11u32.to_le_bytes().to_vec();
        expected.extend(b"market.near");
        expected.extend(7u64.to_le_bytes());
        expected.push(0); // Asset::Near
        expected.extend(1_000u128.to_le_bytes());
        assert_eq!(&bytes[32..], expected.as_slice());
    }

    #[test]
    fn the_tag_cannot_start_a_transaction_or_a_receipt() {
        let len = u32::from_le_bytes(VOUCHER_TAG[..4].try_into().unwrap());
        assert!(len > 64, "a V0 transaction's signer id is at most 64 bytes");
        assert_ne!(VOUCHER_TAG[0], 1, "a V1 transaction starts with 1");
        assert_ne!(len, (1 << 31) + 413, "NEP-413");
        assert_ne!(len, (1 << 30) + 366, "NEP-366");
        assert!(!VOUCHER_TAG.starts_with(&crate::ResultReceipt::DOMAIN[..4]));
        assert_eq!(&REQUEST_TAG[..4], &REQUEST_PREFIX.to_le_bytes());
        assert_ne!(REQUEST_TAG, VOUCHER_TAG);
        assert_eq!(&REQUEST_TAG[4..29], b"ecloud-channel-request-v1");
    }

    #[cfg(feature = "voucher-signing")]
    #[test]
    fn a_voucher_signature_is_not_a_request_signature() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let public = key.verifying_key().to_bytes();
        let auth = RequestAuthorization {
            marketplace: "market.near".parse().unwrap(),
            channel_id: ChannelId(7),
            sequence: 1,
            request_sha256: [3; 32],
        };
        let sig = auth.sign(&key);
        assert!(auth.verify(&public, &sig));
        assert!(!voucher().verify(&public, &sig));
        let replay = RequestAuthorization {
            sequence: 2,
            ..auth.clone()
        };
        assert!(!replay.verify(&public, &sig));
    }

    #[cfg(feature = "voucher-signing")]
    #[test]
    fn a_signature_verifies_only_for_its_own_voucher_and_key() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let public = key.verifying_key().to_bytes();
        let v = voucher();
        let sig = v.sign(&key);
        assert!(v.verify(&public, &sig));
        let more = Voucher {
            amount: U128(1_001),
            ..v.clone()
        };
        assert!(!more.verify(&public, &sig));
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(!v.verify(&other.verifying_key().to_bytes(), &sig));
    }
}
