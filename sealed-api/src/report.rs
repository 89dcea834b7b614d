//! The attestation report (`GET /v1/attestation/report?nonce=<64 hex>&signing_algo=...`), in
//! NEAR AI Cloud's flat per-signer shape (what its `chat_verifier` reads when the report has
//! no `model_attestations` list). Field names are theirs where the meaning is the same; the
//! differences are listed in the crate README.
//!
//! Produced by the node (worker), fresh for each nonce (rate-limited there); checked by the
//! client (`ecloud proxy`) and by anyone: the bundle verifies as on chain
//! (`attestation::verify_bundle`), `report_data` binds the signing address and the nonce, and
//! the OHTTP key configuration carries the bundle's `enclave_key`.

use attestation::AttestationBundle;
use serde::{Deserialize, Serialize};

use crate::key_config::KeyConfig;
use crate::signature::SigningAlgo;

/// Body of `GET /v1/attestation/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationReport {
    /// The signer this report attests (as in `/v1/signature/{id}`).
    pub signing_address: String,
    pub signing_algo: SigningAlgo,
    /// The client's nonce, 64 hex digits (32 bytes), echoed.
    pub request_nonce: String,
    /// Hex of the 64 bytes the evidence commits to, laid out as NEAR AI Cloud's
    /// ([`report_data`]): signing address right-padded to 32 bytes, then the nonce.
    pub report_data: String,
    /// Our evidence, in place of NEAR AI Cloud's `intel_quote`, `event_log`, `info` and
    /// `nvidia_payload`: the node's attestation bundle (TDX quote, dstack event log, GPU
    /// evidence, or the dev kind on localnet), made for this nonce.
    pub attestation: AttestationBundle,
    /// Every signing address of the node, so one report covers both algorithms.
    pub signing_addresses: SigningAddresses,
    /// Hex of the OHTTP key configuration (RFC 9458 §3.1) of the enclave key, as NEAR AI
    /// Cloud's `ohttp_key_config`.
    pub ohttp_key_config: String,
    /// Hex of the 64-byte ed25519 signature of the bundle's NEAR key over
    /// [`signer_binding_message`] (the ecdsa address and this nonce): binds the secp256k1
    /// signing key to the attested enclave, and proves the enclave answered this nonce. The
    /// ed25519 signing address *is* the bundle's NEAR key, bound by the evidence itself.
    pub signer_binding: String,
}

/// Domain tag of [`signer_binding_message`] (never the start of a voucher, a request
/// authorization, a receipt or a NEAR transaction: ASCII, and longer than an account id's u32
/// length prefix could make it).
pub const SIGNER_BINDING_TAG: &[u8] = b"ecloud-signer-binding-v1";

/// What the NEAR key signs in a report: tag || 20-byte ecdsa address || 32-byte nonce.
pub fn signer_binding_message(
    ecdsa_address: &str,
    nonce_hex: &str,
) -> Result<Vec<u8>, ReportError> {
    let addr = address_bytes(ecdsa_address, SigningAlgo::Ecdsa)?;
    if addr.len() != 20 {
        return Err(ReportError::Address);
    }
    let nonce = nonce_bytes(nonce_hex)?;
    let mut out = SIGNER_BINDING_TAG.to_vec();
    out.extend(addr);
    out.extend(nonce);
    Ok(out)
}

/// The node's signing addresses (`signing_address` for each `signing_algo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningAddresses {
    pub ecdsa: String,
    pub ed25519: String,
}

/// Why a report does not bind what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("request_nonce is not 64 hex digits")]
    Nonce,
    #[error("signing_address is not hex of at most 32 bytes")]
    Address,
    #[error("report_data does not bind the signing address")]
    AddressNotBound,
    #[error("report_data does not carry the request nonce")]
    NonceNotBound,
    #[error("the OHTTP key configuration does not carry the attested enclave key")]
    OhttpKey,
    #[error("the ed25519 signing address is not the bundle's NEAR key")]
    Ed25519NotNearKey,
    #[error("the signer binding is not the NEAR key's signature over the ecdsa address and nonce")]
    SignerBinding,
}

fn address_bytes(address: &str, algo: SigningAlgo) -> Result<Vec<u8>, ReportError> {
    let hex_part = match algo {
        SigningAlgo::Ecdsa => address.strip_prefix("0x").unwrap_or(address),
        SigningAlgo::Ed25519 => address,
    };
    let raw = hex::decode(hex_part).map_err(|_| ReportError::Address)?;
    if raw.len() > 32 {
        return Err(ReportError::Address);
    }
    Ok(raw)
}

fn nonce_bytes(nonce: &str) -> Result<[u8; 32], ReportError> {
    hex::decode(nonce)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(ReportError::Nonce)
}

/// NEAR AI Cloud's `report_data` layout: `address (right-padded with zeros to 32 bytes) ||
/// nonce (32 bytes)`.
pub fn report_data(
    signing_address: &str,
    algo: SigningAlgo,
    nonce_hex: &str,
) -> Result<[u8; 64], ReportError> {
    let addr = address_bytes(signing_address, algo)?;
    let nonce = nonce_bytes(nonce_hex)?;
    let mut out = [0u8; 64];
    out[..addr.len()].copy_from_slice(&addr);
    out[32..].copy_from_slice(&nonce);
    Ok(out)
}

impl AttestationReport {
    /// The binding checks of NEAR AI Cloud's `check_report_data` (address in the first 32
    /// bytes, nonce in the last 32) plus ours (the OHTTP key is the bundle's enclave key).
    /// Verifying the bundle itself is `attestation::verify_bundle`'s job.
    pub fn check_binding(&self, expected_nonce: &str) -> Result<(), ReportError> {
        let rd = hex::decode(&self.report_data).map_err(|_| ReportError::AddressNotBound)?;
        let expected = report_data(&self.signing_address, self.signing_algo, expected_nonce)?;
        if rd.len() != 64 || rd[..32] != expected[..32] {
            return Err(ReportError::AddressNotBound);
        }
        if rd[32..] != expected[32..] || !self.request_nonce.eq_ignore_ascii_case(expected_nonce) {
            return Err(ReportError::NonceNotBound);
        }
        let config = hex::decode(&self.ohttp_key_config)
            .ok()
            .and_then(|b| KeyConfig::decode(&b).ok())
            .ok_or(ReportError::OhttpKey)?;
        if config.public_key.as_slice() != self.attestation.enclave_key.as_slice() {
            return Err(ReportError::OhttpKey);
        }
        self.check_signers(expected_nonce)
    }

    /// The ed25519 signing address is the bundle's NEAR key, and that key signed the ecdsa
    /// address with this nonce ([`signer_binding_message`]).
    fn check_signers(&self, nonce_hex: &str) -> Result<(), ReportError> {
        let near_key = attestation::parse_near_ed25519_key(&self.attestation.near_public_key)
            .map_err(|_| ReportError::Ed25519NotNearKey)?;
        if !self
            .signing_addresses
            .ed25519
            .eq_ignore_ascii_case(&hex::encode(near_key))
        {
            return Err(ReportError::Ed25519NotNearKey);
        }
        let message = signer_binding_message(&self.signing_addresses.ecdsa, nonce_hex)?;
        let sig: [u8; 64] = hex::decode(&self.signer_binding)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ReportError::SignerBinding)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&near_key)
            .map_err(|_| ReportError::Ed25519NotNearKey)?;
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| ReportError::SignerBinding)
    }
}
