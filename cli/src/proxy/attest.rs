//! Deciding whether a node may see a prompt: its attestation report, made for a nonce this
//! client just drew, must bind the nonce, the OHTTP key and both signing keys
//! (`AttestationReport::check_binding`); its bundle must verify under the registry's policy
//! as `ecloud attestation verify` does (`attestation::verify_bundle`); and what the bundle
//! attests (enclave key, NEAR key, kind, measurements) must be the registry's record of that
//! node. Anything else and nothing is sent to it.

use attestation::{RustCrypto, Verdict, VerifyPolicy, verify_bundle};
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{AttestationKind, Hash32, ModelId, NodeStatus};
use sealed_api::{AttestationReport, KeyConfig, Limits, SealedClient};

/// A node that passed every check: where to reach it and the keys its answers must carry.
#[derive(Debug, Clone)]
pub struct AttestedNode {
    pub node: NodeView,
    /// The node's API base URL (the registry's `endpoint`), without a trailing slash.
    pub endpoint: String,
    pub sealed: SealedClient,
    /// The attested `ecdsa` signing address (0x...), bound by the NEAR key's signer binding.
    pub ecdsa_address: String,
    /// The attested `ed25519` signing address: the node's NEAR key, hex.
    pub ed25519_address: String,
    /// The model weights its attestation measures (`ecloud-model-weights` events), hex.
    pub measured_weights: Vec<String>,
}

impl AttestedNode {
    /// The node's attestation must measure `weights_hash` (the model manifest's encrypted
    /// weights) for it to serve the model: a node that did not decrypt and measure them, or
    /// measured others, is refused.
    pub fn check_measures(&self, weights_hash: &Hash32) -> Result<(), String> {
        let wanted = weights_hash.to_string();
        if self
            .measured_weights
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&wanted))
        {
            return Ok(());
        }
        Err(format!(
            "its attestation does not measure the model's encrypted weights {wanted} \
             (ecloud-model-weights events: {})",
            if self.measured_weights.is_empty() {
                "none".to_owned()
            } else {
                self.measured_weights.join(", ")
            }
        ))
    }
}

/// A fresh 32-byte nonce, hex.
pub fn fresh_nonce() -> Result<String, getrandom::Error> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)?;
    Ok(hex::encode(nonce))
}

/// The registry's record must let this node serve `model` now.
pub fn check_record(node: &NodeView, model: &ModelId, now_secs: u64) -> Result<String, String> {
    if node.status != NodeStatus::Active {
        return Err(format!("is {:?} in the registry, not active", node.status));
    }
    if node.attestation_expires_at_ns.0 / 1_000_000_000 <= now_secs {
        return Err("its attestation in the registry has expired".into());
    }
    if !node.prices.iter().any(|p| &p.model_id == model) {
        return Err(format!("does not serve model '{model}'"));
    }
    let endpoint = node
        .endpoint
        .as_deref()
        .filter(|e| e.starts_with("http://") || e.starts_with("https://"))
        .ok_or("has no http(s) endpoint in the registry")?;
    Ok(endpoint.trim_end_matches('/').to_owned())
}

/// The checks on a report fetched with `nonce_hex`, against the registry's record `node` and
/// its `policy`, at `now_secs`.
pub fn check_report(
    report: &AttestationReport,
    nonce_hex: &str,
    node: &NodeView,
    endpoint: String,
    policy: &VerifyPolicy,
    now_secs: u64,
) -> Result<AttestedNode, String> {
    report
        .check_binding(nonce_hex)
        .map_err(|e| format!("its attestation report does not bind: {e}"))?;
    let verdict = verify_bundle(&report.attestation, now_secs, policy, &RustCrypto)
        .map_err(|e| format!("its attestation does not verify: {e}"))?;
    matches_record(&verdict, node)?;
    let config = hex::decode(&report.ohttp_key_config)
        .ok()
        .and_then(|b| KeyConfig::decode(&b).ok())
        .ok_or("its OHTTP key configuration does not decode")?;
    let sealed =
        SealedClient::for_attested_key(config, &report.attestation.enclave_key, Limits::default())
            .map_err(|e| format!("its OHTTP key: {e}"))?;
    Ok(AttestedNode {
        node: node.clone(),
        endpoint,
        sealed,
        ecdsa_address: report.signing_addresses.ecdsa.clone(),
        ed25519_address: report.signing_addresses.ed25519.clone(),
        measured_weights: verdict.model_weights.clone(),
    })
}

/// The verified bundle attests the registry's node: same keys, same kind, same measurements.
fn matches_record(verdict: &Verdict, node: &NodeView) -> Result<(), String> {
    if !verdict
        .bound_keys
        .enclave_key
        .eq_ignore_ascii_case(node.encryption_key.trim())
    {
        return Err(format!(
            "its attested enclave key {} is not the registry's {}",
            verdict.bound_keys.enclave_key, node.encryption_key
        ));
    }
    if verdict.bound_keys.near_public_key != String::from(&node.signer_key) {
        return Err(format!(
            "its attested NEAR key {} is not the registry's {}",
            verdict.bound_keys.near_public_key,
            String::from(&node.signer_key)
        ));
    }
    let kind = match verdict.kind {
        attestation::AttestationKind::Tdx => AttestationKind::Tdx,
        attestation::AttestationKind::Dev => AttestationKind::Dev,
    };
    if kind != node.kind {
        return Err(format!(
            "it attests as {kind:?} but the registry holds a {:?} node",
            node.kind
        ));
    }
    if let Some(m) = &verdict.measurements {
        let r = &node.measurements;
        let same = m.mrtd.eq_ignore_ascii_case(&r.mrtd)
            && m.rtmr0.eq_ignore_ascii_case(&r.rtmr0)
            && m.rtmr1.eq_ignore_ascii_case(&r.rtmr1)
            && m.rtmr2.eq_ignore_ascii_case(&r.rtmr2)
            && m.rtmr3.eq_ignore_ascii_case(&r.rtmr3)
            && m.compose_hash.as_deref().map(str::to_ascii_lowercase)
                == r.compose_hash.map(|h| h.to_string());
        if !same {
            return Err("its measurements are not the ones the registry attested".into());
        }
    }
    Ok(())
}
