//! Builds a bundle from a dstack node's public attestation as near/mpc nodes serve it
//! (`public_data.json`: `near_signer_public_key`, `near_p2p_public_key`,
//! `tee_participant_info.Dstack { quote, collateral, tcb_info { app_compose, event_log } }`).
//! The p2p (TLS) key is the 32-byte enclave key the quote binds (see README.md).

use serde::Deserialize;
use serde_json::Value;

use crate::bundle::{
    AttestationBundle, AttestationKind, BUNDLE_VERSION, EventLogEntry, TdxEvidence,
};
use crate::{AttestationError, QuoteCollateralV3, parse_near_ed25519_key};

#[derive(Deserialize)]
struct PublicData {
    near_signer_public_key: String,
    near_p2p_public_key: String,
    tee_participant_info: TeeInfo,
}

#[derive(Deserialize)]
struct TeeInfo {
    #[serde(rename = "Dstack")]
    dstack: DstackInfo,
}

#[derive(Deserialize)]
struct DstackInfo {
    #[serde(with = "crate::hexser")]
    quote: Vec<u8>,
    collateral: Value,
    tcb_info: TcbInfo,
}

#[derive(Deserialize)]
struct TcbInfo {
    app_compose: String,
    event_log: Vec<EventLogEntry>,
}

/// Byte fields of dcap-qvl's collateral, which near/mpc serializes as arrays of numbers.
const COLLATERAL_BYTE_FIELDS: [&str; 4] = [
    "root_ca_crl",
    "pck_crl",
    "tcb_info_signature",
    "qe_identity_signature",
];

/// Converts `public_data.json` into a `tdx` bundle (no GPUs).
pub fn bundle_from_dstack_public_data(json: &[u8]) -> Result<AttestationBundle, AttestationError> {
    let malformed = |reason: String| AttestationError::Malformed {
        what: "dstack public data",
        reason,
    };
    let data: PublicData = serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
    let p2p = parse_near_ed25519_key(&data.near_p2p_public_key)?;
    parse_near_ed25519_key(&data.near_signer_public_key)?;
    let dstack = data.tee_participant_info.dstack;
    let mut collateral = dstack.collateral;
    for field in COLLATERAL_BYTE_FIELDS {
        if let Some(v) = collateral.get_mut(field)
            && let Some(arr) = v.as_array()
        {
            let bytes = arr
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| malformed(format!("collateral.{field} is not a byte array")))?;
            *v = Value::String(hex::encode(bytes));
        }
    }
    let collateral: QuoteCollateralV3 =
        serde_json::from_value(collateral).map_err(|e| malformed(format!("collateral: {e}")))?;
    Ok(AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Tdx,
        enclave_key: p2p.to_vec(),
        near_public_key: data.near_signer_public_key,
        tdx: Some(TdxEvidence {
            quote: dstack.quote,
            collateral,
            event_log: dstack.tcb_info.event_log,
            app_compose: Some(dstack.tcb_info.app_compose),
        }),
        dev: None,
        gpus: Vec::new(),
        switches: Vec::new(),
        gpu_challenge: None,
    })
}
