//! The `dev` attestation kind: a development CA vouches for a node's keys until an expiry.
//! Only for localnet/testnet; the registry decides at init whether a dev CA exists at all.

use crate::bundle::{DevEvidence, EventLogEntry, fixed};
use crate::dstack::{DSTACK_RUNTIME_EVENT_TYPE, RUNTIME_IMR, replay_rtmr3};
use crate::{AttestationError, Crypto};

/// Domain separation for dev attestation signatures.
pub const DEV_DOMAIN: &[u8] = b"enclave-cloud-dev-attestation-v1";

/// The bytes the development CA signs:
/// `DEV_DOMAIN || enclave_key || near_key || expires_at (u64 big-endian)`.
pub fn dev_attestation_message(
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DEV_DOMAIN.len() + 72);
    m.extend_from_slice(DEV_DOMAIN);
    m.extend_from_slice(enclave_key);
    m.extend_from_slice(near_key);
    m.extend_from_slice(&expires_at.to_be_bytes());
    m
}

/// The bytes the development CA signs for a bundle carrying runtime `events`:
/// [`dev_attestation_message`] followed, when there are events, by `"rtmr3"` and their RTMR3
/// replay (so a bundle without events is signed as before). Only dstack runtime events (RTMR3,
/// digests matching their payloads) are accepted.
pub fn dev_attestation_message_with_events(
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
    events: &[EventLogEntry],
) -> Result<Vec<u8>, AttestationError> {
    let mut m = dev_attestation_message(enclave_key, near_key, expires_at);
    if events.is_empty() {
        return Ok(m);
    }
    if let Some(e) = events
        .iter()
        .find(|e| e.imr != RUNTIME_IMR || e.event_type != DSTACK_RUNTIME_EVENT_TYPE)
    {
        return Err(AttestationError::EventLog(format!(
            "a dev attestation carries only dstack runtime events, not '{}' (imr {}, type {:#x})",
            e.event, e.imr, e.event_type
        )));
    }
    m.extend_from_slice(b"rtmr3");
    m.extend_from_slice(&replay_rtmr3(events)?);
    Ok(m)
}

/// Verifies a dev attestation (and the runtime events it carries); returns its expiry.
pub fn verify_dev<C: Crypto>(
    ev: &DevEvidence,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    now: u64,
    ca_public_key: &[u8; 32],
    crypto: &C,
) -> Result<u64, AttestationError> {
    let signature: [u8; 64] = fixed(&ev.signature, "dev.signature")?;
    let message =
        dev_attestation_message_with_events(enclave_key, near_key, ev.expires_at, &ev.events)?;
    if !crypto.ed25519_verify(&signature, &message, ca_public_key) {
        return Err(AttestationError::DevSignature);
    }
    if now > ev.expires_at {
        return Err(AttestationError::DevExpired {
            expires_at: ev.expires_at,
            now,
        });
    }
    Ok(ev.expires_at)
}
