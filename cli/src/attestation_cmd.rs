//! `ecloud attestation ...`: verify a bundle, build one from a dstack node's public data.

use std::path::{Path, PathBuf};

use attestation::nvidia::{GoldenSet, check_gpu_against_sets};
use attestation::{
    AttestationBundle, AttestationError, GpuEvidence, RustCrypto, Verdict, VerifyPolicy,
    bundle_from_dstack_public_data, bundle_gpu_nonce, parse_bundle, parse_near_ed25519_key,
    verify_bundle,
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
        /// How the GPUs and switches are bound to this enclave (absent without devices).
        #[serde(skip_serializing_if = "Option::is_none")]
        gpu_binding: Option<GpuBinding>,
        /// The golden measurement comparison (absent without `--golden`).
        #[serde(skip_serializing_if = "Option::is_none")]
        golden: Option<GoldenCheck>,
        #[serde(flatten)]
        verdict: Box<Verdict>,
    },
    Invalid {
        valid: bool,
        verified_at: u64,
        error: ErrorOutput,
    },
}

/// Every GPU of a valid bundle matched the golden sets of its chip and firmware versions.
#[derive(Debug, Serialize)]
pub struct GoldenCheck {
    /// The reference sets file (`ecloud attestation gpu-reference` output).
    pub sets: PathBuf,
    /// GPUs compared (all of the bundle's).
    pub gpus_matched: usize,
}

/// The binding verdict: every GPU and switch of the bundle answered this nonce in its signed
/// report.
#[derive(Debug, Serialize)]
pub struct GpuBinding {
    /// The registry's challenge the bundle names (hex).
    pub challenge: String,
    /// SHA-256("enclave-cloud-gpu-v1" || enclave key || NEAR key || challenge), hex.
    pub nonce: String,
    pub gpus: usize,
    pub switches: usize,
    /// What the binding proves, and what it does not.
    pub meaning: &'static str,
}

/// What a verified binding means (printed with the verdict).
pub const GPU_BINDING_MEANING: &str = "every GPU and NVSwitch signed a report answering this \
enclave's binding nonce, so the evidence was made for this enclave and this challenge; that the \
devices sit in this VM rests on the measured worker reading its local GPUs, and on a device \
never being in two live nodes (the registry's check)";

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
    golden_path: Option<&Path>,
    at: u64,
) -> Result<VerifyOutput, Error> {
    let policy = match policy_path {
        None => VerifyPolicy::default(),
        Some(p) => serde_json::from_slice(&read_file(p)?).map_err(|e| Error::Invalid {
            path: p.to_owned(),
            message: format!("not a verification policy: {e}"),
        })?,
    };
    let golden: Option<Vec<GoldenSet>> = match golden_path {
        None => None,
        Some(p) => Some(
            serde_json::from_slice(&read_file(p)?).map_err(|e| Error::Invalid {
                path: p.to_owned(),
                message: format!(
                    "not golden measurement sets (ecloud attestation gpu-reference output): {e}"
                ),
            })?,
        ),
    };
    let bytes = read_file(bundle_path)?;
    // A file that is not JSON at all is bad input (exit 2), not a bundle that failed a check.
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| Error::Invalid {
        path: bundle_path.to_owned(),
        message: format!("not JSON, so not an attestation bundle: {e}"),
    })?;
    let result = parse_bundle(&bytes).and_then(|b| {
        let verdict = verify_bundle(&b, at, &policy, &RustCrypto)?;
        if let Some(sets) = &golden {
            check_golden(&verdict, sets)?;
        }
        Ok((gpu_binding(&b)?, verdict))
    });
    Ok(match result {
        Ok((gpu_binding, verdict)) => VerifyOutput::Valid {
            valid: true,
            verified_at: at,
            gpu_binding,
            golden: golden_path.map(|p| GoldenCheck {
                sets: p.to_owned(),
                gpus_matched: verdict.gpus.len(),
            }),
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

/// Every verified GPU against the reference sets (`attestation::nvidia::check_gpu_against_sets`,
/// the comparison the registry makes with its pinned sets).
fn check_golden(verdict: &Verdict, sets: &[GoldenSet]) -> Result<(), AttestationError> {
    for (index, gpu) in verdict.gpus.iter().enumerate() {
        check_gpu_against_sets(gpu, sets)
            .map_err(|error| AttestationError::Gpu { index, error })?;
    }
    Ok(())
}

/// The binding of a verified bundle's devices (the nonce `verify_bundle` checked them against).
fn gpu_binding(b: &AttestationBundle) -> Result<Option<GpuBinding>, AttestationError> {
    let enclave_key: [u8; 32] =
        b.enclave_key
            .as_slice()
            .try_into()
            .map_err(|_| AttestationError::Malformed {
                what: "enclave_key",
                reason: "not 32 bytes".into(),
            })?;
    let near_key = parse_near_ed25519_key(&b.near_public_key)?;
    let Some(nonce) = bundle_gpu_nonce(b, &enclave_key, &near_key)? else {
        return Ok(None);
    };
    Ok(Some(GpuBinding {
        challenge: b.gpu_challenge.clone().unwrap_or_default(),
        nonce: hex::encode(nonce),
        gpus: b.gpus.len(),
        switches: b.switches.len(),
        meaning: GPU_BINDING_MEANING,
    }))
}

/// GPU evidence files to attach to a bundle.
#[derive(Debug, Clone)]
pub struct GpuFiles {
    /// Hex of the SPDM request + response (nvtrust's attestation report format).
    pub report_hex: PathBuf,
    /// PEM certificate chain, leaf first.
    pub chain_pem: PathBuf,
    /// The nonce the report claims to answer, 64 hex characters.
    pub nonce_hex: String,
    /// The registry's challenge the GPU is bound with, 64 hex characters.
    pub challenge_hex: Option<String>,
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
        if let Some(challenge) = &g.challenge_hex {
            attestation::parse_challenge(challenge.trim()).map_err(|e| Error::Invalid {
                path: PathBuf::from("--gpu-challenge"),
                message: e.to_string(),
            })?;
            bundle.gpu_challenge = Some(challenge.trim().to_owned());
        }
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

/// One RIM given to `ecloud attestation gpu-reference`: its file and which firmware it is for.
#[derive(Debug, Clone)]
pub struct RimFile {
    pub path: PathBuf,
    pub kind: attestation::nvidia::ReferenceKind,
}

/// `gpu-reference --revocation`: whether the RIM chains' revocation is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Revocation {
    /// Ask the OCSP responder about every certificate below the root.
    Online,
    /// Do not check revocation (warned about on stderr).
    Skip,
}

/// How `gpu_reference` checks revocation.
#[derive(Debug, Clone)]
pub enum RevocationCheck {
    /// By OCSP, at this responder (or each certificate's own).
    Online(crate::ocsp::Responder),
    Skip,
}

/// Verifies NVIDIA RIMs (signature, chain to the pinned RIM root or to `root_pem_path`'s
/// certificate, validity at `at`, and, unless skipped, every chain certificate below the root
/// `good` by OCSP at `at`) and returns their golden measurement sets, in the order given.
/// A RIM that does not verify, or whose chain holds a revoked or unknown certificate, is an
/// `Error::Invalid` naming the file (exit 2), never a set; a responder that cannot be asked is
/// an `Error::Revocation` (exit 4) that says how to proceed.
pub async fn gpu_reference(
    rims: &[RimFile],
    root_pem_path: Option<&Path>,
    at: u64,
    revocation: &RevocationCheck,
) -> Result<Vec<attestation::nvidia::GoldenSet>, Error> {
    let root = match root_pem_path {
        None => attestation::nvidia::NVIDIA_RIM_ROOT_PEM.to_owned(),
        Some(p) => String::from_utf8(read_file(p)?).map_err(|_| Error::Invalid {
            path: p.to_owned(),
            message: "not UTF-8, so not a PEM root certificate".into(),
        })?,
    };
    let http = reqwest::Client::new();
    let mut sets = Vec::with_capacity(rims.len());
    for rim in rims {
        let bytes = read_file(&rim.path)?;
        let xml = String::from_utf8(bytes).map_err(|_| Error::Invalid {
            path: rim.path.clone(),
            message: "not UTF-8, so not a RIM (SWID tag XML)".into(),
        })?;
        let verified = attestation::nvidia::rim::verify_rim_chain(&xml, rim.kind, &root, at)
            .map_err(|e| Error::Invalid {
                path: rim.path.clone(),
                message: e.to_string(),
            })?;
        if let RevocationCheck::Online(responder) = revocation {
            crate::ocsp::check_chain(&http, responder, &verified.chain, at)
                .await
                .map_err(|e| match e {
                    crate::ocsp::OcspError::Unreachable { .. } => Error::Revocation {
                        path: rim.path.clone(),
                        message: e.to_string(),
                    },
                    _ => Error::Invalid {
                        path: rim.path.clone(),
                        message: format!("revocation: {e}"),
                    },
                })?;
        }
        sets.push(verified.set);
    }
    Ok(sets)
}
