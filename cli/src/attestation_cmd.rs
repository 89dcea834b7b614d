//! `ecloud attestation ...`: verify a bundle, build one from a dstack node's public data.

use std::path::{Path, PathBuf};

use attestation::{
    AttestationBundle, GpuEvidence, RustCrypto, Verdict, VerifyPolicy,
    bundle_from_dstack_public_data, parse_bundle, verify_bundle,
};
use serde::Serialize;

use crate::{Error, read_file};

/// The JSON printed by `ecloud attestation verify`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum VerifyOutput {
    Valid {
        valid: bool,
        verified_at: u64,
        #[serde(flatten)]
        verdict: Box<Verdict>,
    },
    Invalid {
        valid: bool,
        verified_at: u64,
        error: ErrorOutput,
    },
}

#[derive(Debug, Serialize)]
pub struct ErrorOutput {
    /// Stable machine-readable name (`AttestationError::code`).
    pub code: &'static str,
    pub message: String,
}

impl VerifyOutput {
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

/// Reads a bundle (and optional policy) and verifies it at `at` (unix seconds).
/// Unreadable or non-JSON files are an `Error` (exit 2); a JSON bundle that is malformed or
/// fails a check is an invalid verdict (exit 1).
pub fn verify_file(
    bundle_path: &Path,
    policy_path: Option<&Path>,
    at: u64,
) -> Result<VerifyOutput, Error> {
    let policy = match policy_path {
        None => VerifyPolicy::default(),
        Some(p) => serde_json::from_slice(&read_file(p)?).map_err(|e| Error::Invalid {
            path: p.to_owned(),
            message: format!("not a verification policy: {e}"),
        })?,
    };
    let bytes = read_file(bundle_path)?;
    // A file that is not JSON at all is bad input (exit 2), not a bundle that failed a check.
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| Error::Invalid {
        path: bundle_path.to_owned(),
        message: format!("not JSON, so not an attestation bundle: {e}"),
    })?;
    let result = parse_bundle(&bytes).and_then(|b| verify_bundle(&b, at, &policy, &RustCrypto));
    Ok(match result {
        Ok(verdict) => VerifyOutput::Valid {
            valid: true,
            verified_at: at,
            verdict: Box::new(verdict),
        },
        Err(e) => VerifyOutput::Invalid {
            valid: false,
            verified_at: at,
            error: ErrorOutput {
                code: e.code(),
                message: e.to_string(),
            },
        },
    })
}

/// GPU evidence files to attach to a bundle.
#[derive(Debug, Clone)]
pub struct GpuFiles {
    /// Hex of the SPDM request + response (nvtrust's attestation report format).
    pub report_hex: PathBuf,
    /// PEM certificate chain, leaf first.
    pub chain_pem: PathBuf,
    /// Expected nonce, 64 hex characters.
    pub nonce_hex: String,
}

/// Builds a bundle from a dstack node's `public_data.json`, optionally with one GPU.
pub fn bundle_from_dstack(
    public_data: &Path,
    gpu: Option<&GpuFiles>,
) -> Result<AttestationBundle, Error> {
    let mut bundle =
        bundle_from_dstack_public_data(&read_file(public_data)?).map_err(|e| Error::Invalid {
            path: public_data.to_owned(),
            message: e.to_string(),
        })?;
    if let Some(g) = gpu {
        bundle.gpus.push(gpu_evidence(g)?);
    }
    Ok(bundle)
}

fn gpu_evidence(g: &GpuFiles) -> Result<GpuEvidence, Error> {
    let text = read_file(&g.report_hex)?;
    let report =
        hex::decode(String::from_utf8_lossy(&text).trim()).map_err(|e| Error::Invalid {
            path: g.report_hex.clone(),
            message: format!("not hex: {e}"),
        })?;
    let nonce = hex::decode(g.nonce_hex.trim()).map_err(|e| Error::Invalid {
        path: PathBuf::from("--gpu-nonce"),
        message: format!("not hex: {e}"),
    })?;
    let chain = String::from_utf8(read_file(&g.chain_pem)?).map_err(|_| Error::Invalid {
        path: g.chain_pem.clone(),
        message: "not UTF-8 PEM text".into(),
    })?;
    Ok(GpuEvidence {
        report,
        nonce,
        certificate_chain: chain,
    })
}
