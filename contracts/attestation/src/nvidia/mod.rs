//! NVIDIA GPU evidence (Hopper and later, confidential-computing mode): the SPDM
//! GET_MEASUREMENTS request/response signed by the GPU's attestation key (ECDSA P-384), and the
//! device certificate chain up to NVIDIA's Device Identity CA.

mod binding;
mod chain;
pub mod golden;
#[cfg(feature = "rim")]
pub mod rim;
mod spdm;
mod topology;

pub use binding::{GPU_BINDING_TAG, gpu_binding_nonce};
pub use chain::{
    CertCache, GpuRoots, LeafIdentity, MAX_CHAIN_DEPTH, NVIDIA_DEVICE_ROOT_PEM,
    NVIDIA_RIM_ROOT_PEM, NoCache, VerifiedChain, leaf_identity, verify_chain, verify_chain_step,
    verify_chain_to_root,
};
pub use golden::{
    GoldenMeasurement, GoldenSet, ReferenceKind, check_golden_measurements, check_gpu_against_sets,
};
pub use spdm::{
    OPAQUE_CHIP_SKU, OPAQUE_DEVICE_PDI, OPAQUE_DRIVER_VERSION, OPAQUE_PROJECT, OPAQUE_PROJECT_SKU,
    OPAQUE_PROTECTED_PCIE_STATUS, OPAQUE_SWITCH_GPU_PDIS, OPAQUE_SWITCH_PDI, OPAQUE_VBIOS_VERSION,
    PDI_LEN, STATUS_DISABLED, STATUS_ENABLED, SWITCH_GPU_SLOTS, SpdmReport, parse_spdm_report,
};
pub use topology::{SwitchVerdict, check_topology, verify_switch_evidence};

use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::bundle::GpuEvidence;
use crate::hexser::to_hex;

/// What a verified GPU report says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuVerdict {
    /// Chip from the leaf certificate's subject, e.g. "GH100" (H100/H200).
    pub model: String,
    /// SHA-256 of the leaf certificate (DER): a stable identity of the device, hex.
    pub device_id: String,
    /// The nonce the report answers, hex.
    pub nonce: String,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    /// Project / SKU / chip SKU strings from the opaque data, when present.
    pub project: Option<String>,
    pub project_sku: Option<String>,
    pub chip_sku: Option<String>,
    /// Measurement values in block order (block index = position + 1), hex.
    pub measurements: Vec<String>,
    /// SHA-256 (hex) of the CA certificates verified by this call (store them as the cache).
    pub verified_intermediates: Vec<String>,
    /// True when the GPU was accepted through its RTMR3 measurement (verified inside the
    /// attested VM) instead of a chain and signature check here.
    pub measured_in_rtmr3: bool,
    /// The GPU runs in protected-PCIe mode (opaque field PROTECTED_PCIE_STATUS set): its
    /// NVSwitches must be attested with it ([`check_topology`]).
    #[serde(default)]
    pub protected_pcie: bool,
    /// The distinct non-zero PDIs of the NVSwitches its NVLinks reach (opaque field
    /// SWITCH_PDI), hex as NVIDIA's verifier prints them, sorted.
    #[serde(default)]
    pub switch_pdis: Vec<String>,
}

/// What kind of NVIDIA device an evidence's leaf certificate names (its chip, the first word
/// of the leaf's common name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClass {
    /// A confidential-computing data-center GPU: Hopper (`GH1..`, H100/H200) or Blackwell
    /// (`GB1..`, B100/B200).
    Gpu,
    /// An NVSwitch (`LS10`): the same certificate chain and report format, but no GPU.
    Switch,
    /// Anything else (consumer chips, future parts): never counted as a GPU.
    Unknown,
}

/// The class of chip `model` (e.g. "GH100").
pub fn device_class(model: &str) -> DeviceClass {
    if model.starts_with("GH1") || model.starts_with("GB1") {
        DeviceClass::Gpu
    } else if model.starts_with("LS") {
        DeviceClass::Switch
    } else {
        DeviceClass::Unknown
    }
}

/// Name of the dstack runtime event a worker emits after verifying a GPU inside the attested VM;
/// its payload is [`gpu_evidence_digest`] of that GPU's evidence.
pub const GPU_EVIDENCE_EVENT: &str = "nvidia-gpu-evidence";

/// What the [`GPU_EVIDENCE_EVENT`] carries: SHA-256 over a domain tag, the SPDM report
/// (request with the nonce, response, signature) and every certificate of the chain (DER),
/// each length-prefixed. The chain is covered because the device id comes from its leaf: a
/// measured report must not be presented with another device's certificates. The DER, not the
/// PEM text, is measured, so the chain's encoding does not matter.
pub fn gpu_evidence_digest(ev: &GpuEvidence) -> Result<[u8; 32], GpuError> {
    use sha2::Digest;
    let certificates =
        pem::parse_many(ev.certificate_chain.as_bytes()).map_err(|e| GpuError::CertParse {
            index: 0,
            reason: e.to_string(),
        })?;
    let mut h = sha2::Sha256::new();
    h.update(GPU_EVIDENCE_DIGEST_TAG);
    for part in
        std::iter::once(ev.report.as_slice()).chain(certificates.iter().map(|c| c.contents()))
    {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Ok(h.finalize().into())
}

/// Domain tag of [`gpu_evidence_digest`].
pub const GPU_EVIDENCE_DIGEST_TAG: &[u8] = b"enclave-cloud-gpu-evidence-v2";

/// Verifies one GPU's evidence at `now` (unix seconds): the signed request answers
/// `expected_nonce` (the binding nonce, [`gpu_binding_nonce`]), the chain reaches a trusted root
/// of `roots` (stopping at a cached certificate), the report is signed by the leaf key, and the
/// leaf names a GPU.
pub fn verify_gpu_evidence<K: CertCache + ?Sized>(
    ev: &GpuEvidence,
    expected_nonce: &[u8; 32],
    now: u64,
    cache: &K,
    roots: &GpuRoots,
) -> Result<GpuVerdict, GpuError> {
    let (report, leaf, verified) = verify_device(ev, expected_nonce, now, cache, roots)?;
    gpu_verdict(&report, leaf, &verified)
}

/// The checks every device (GPU or switch) passes: bound nonce, chain, report signature.
/// Returns the parsed report, the leaf's identity and the CA certificates verified.
fn verify_device<'a, K: CertCache + ?Sized>(
    ev: &'a GpuEvidence,
    expected_nonce: &[u8; 32],
    now: u64,
    cache: &K,
    roots: &GpuRoots,
) -> Result<(SpdmReport<'a>, LeafIdentity, Vec<[u8; 32]>), GpuError> {
    let report = parse_bound(ev, expected_nonce)?;
    let chain = verify_chain(&ev.certificate_chain, now, cache, roots)?;
    let signature = p384::ecdsa::Signature::from_slice(report.signature)
        .map_err(|_| GpuError::ReportSignature)?;
    crate::p384_verify::verify(&chain.leaf_key, report.signed, &signature)
        .map_err(|_| GpuError::ReportSignature)?;
    let leaf = LeafIdentity {
        leaf_hash: chain.leaf_hash,
        model: chain.model,
    };
    Ok((report, leaf, chain.verified_intermediates))
}

/// The cheaper binding, for registries whose policy allows it: a GPU whose evidence the
/// attested VM verified itself and measured into RTMR3. `events` are the verdict's named events
/// (authenticated by the quote); one must be a [`GPU_EVIDENCE_EVENT`] whose payload is
/// [`gpu_evidence_digest`] of `ev`. The report is parsed and nonce-checked; no chain or
/// signature work is done here. Verify such a bundle with its `gpus` left out of
/// `verify_bundle`, then call this per GPU with the bundle's binding nonce.
pub fn verify_measured_gpu(
    events: &[crate::dstack::NamedEvent],
    ev: &GpuEvidence,
    expected_nonce: &[u8; 32],
    roots: &GpuRoots,
) -> Result<GpuVerdict, GpuError> {
    let digest = to_hex(&gpu_evidence_digest(ev)?);
    if !events
        .iter()
        .any(|e| e.name == GPU_EVIDENCE_EVENT && e.payload == digest)
    {
        return Err(GpuError::NotMeasured { digest });
    }
    let report = parse_bound(ev, expected_nonce)?;
    let leaf = leaf_identity(&ev.certificate_chain, roots)?;
    let mut v = gpu_verdict(&report, leaf, &[])?;
    v.measured_in_rtmr3 = true;
    Ok(v)
}

/// The nonce a report answers, from its signed request, without verifying anything (to refuse
/// unbound evidence before paying for signatures).
pub fn report_nonce(ev: &GpuEvidence) -> Result<[u8; 32], GpuError> {
    Ok(parse_spdm_report(&ev.report)?.nonce)
}

/// Refuses a report whose signed request does not answer `expected_nonce` (not bound), or
/// whose claimed `nonce` field differs from the signed one.
pub fn check_bound(ev: &GpuEvidence, expected_nonce: &[u8; 32]) -> Result<(), GpuError> {
    parse_bound(ev, expected_nonce).map(|_| ())
}

fn parse_bound<'a>(
    ev: &'a GpuEvidence,
    expected_nonce: &[u8; 32],
) -> Result<SpdmReport<'a>, GpuError> {
    let report = parse_spdm_report(&ev.report)?;
    if &report.nonce != expected_nonce {
        return Err(GpuError::NotBound {
            expected: to_hex(expected_nonce),
            found: to_hex(&report.nonce),
        });
    }
    if ev.nonce.as_slice() != report.nonce.as_slice() {
        return Err(GpuError::Nonce {
            expected: to_hex(&ev.nonce),
            found: to_hex(&report.nonce),
        });
    }
    Ok(report)
}

/// The verdict of a GPU's verified report; evidence of anything but a GPU (an NVSwitch) is
/// refused, on every path.
fn gpu_verdict(
    report: &SpdmReport<'_>,
    leaf: LeafIdentity,
    verified: &[[u8; 32]],
) -> Result<GpuVerdict, GpuError> {
    if device_class(&leaf.model) != DeviceClass::Gpu {
        return Err(GpuError::NotAGpu { model: leaf.model });
    }
    Ok(GpuVerdict {
        model: leaf.model,
        device_id: to_hex(&leaf.leaf_hash),
        nonce: to_hex(&report.nonce),
        driver_version: report.driver_version(),
        vbios_version: report.vbios_version(),
        project: report.opaque_string(spdm::OPAQUE_PROJECT),
        project_sku: report.opaque_string(spdm::OPAQUE_PROJECT_SKU),
        chip_sku: report.opaque_string(spdm::OPAQUE_CHIP_SKU),
        measurements: report.measurements.iter().map(|m| to_hex(m)).collect(),
        verified_intermediates: verified.iter().map(|h| to_hex(h)).collect(),
        measured_in_rtmr3: false,
        protected_pcie: report.protected_pcie()?,
        switch_pdis: report.switch_pdis()?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::RustCrypto;
    use crate::bundle::EventLogEntry;
    use crate::dstack::{DSTACK_RUNTIME_EVENT_TYPE, runtime_event_digest};

    fn vector(rel: &str) -> Vec<u8> {
        let p = format!("{}/{rel}", crate::TESTDATA_DIR);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// The nonce NVIDIA's public H100 sample answers.
    pub(crate) const HOPPER_NONCE: [u8; 32] = [
        0x93, 0x1d, 0x8d, 0xd0, 0xad, 0xd2, 0x03, 0xac, 0x3d, 0x8b, 0x4f, 0xbd, 0xe7, 0x5e, 0x11,
        0x52, 0x78, 0xee, 0xfc, 0xdc, 0xea, 0xc5, 0xb8, 0x76, 0x71, 0xa7, 0x48, 0xf3, 0x23, 0x64,
        0xdf, 0xcb,
    ];

    fn hopper() -> GpuEvidence {
        let report = String::from_utf8(vector("nvidia-hopper-single/hopperAttestationReport.txt"))
            .expect("utf8");
        GpuEvidence {
            report: hex::decode(report.trim()).expect("hex"),
            nonce: hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
                .expect("hex"),
            certificate_chain: String::from_utf8(vector(
                "nvidia-hopper-single/hopperCertChain.txt",
            ))
            .expect("utf8"),
        }
    }

    #[test]
    fn measured_gpu_needs_a_matching_event() {
        let mut gpu = hopper();
        // A broken signature: acceptable only through the RTMR3 path.
        let n = gpu.report.len();
        gpu.report[n - 1] ^= 1;
        let summary = measured(&gpu);
        let v = verify_measured_gpu(&summary.events, &gpu, &HOPPER_NONCE, &GpuRoots::NVIDIA)
            .expect("measured");
        assert!(v.measured_in_rtmr3);
        assert_eq!(v.model, "GH100");
        assert!(
            verify_gpu_evidence(
                &gpu,
                &HOPPER_NONCE,
                1_786_622_400,
                &NoCache,
                &GpuRoots::NVIDIA
            )
            .is_err()
        );

        // The chain the device id comes from must have the accepted shape (here: the leaf
        // twice), even when it is the one measured.
        let mut dup = gpu.clone();
        let leaf_end = dup
            .certificate_chain
            .find("-----END CERTIFICATE-----")
            .expect("pem")
            + "-----END CERTIFICATE-----".len();
        dup.certificate_chain = format!(
            "{}\n{}",
            &dup.certificate_chain[..leaf_end],
            dup.certificate_chain
        );
        // (Measured as it is: the digest covers the chain, so it must be the chain measured.)
        let err = verify_measured_gpu(
            &measured(&dup).events,
            &dup,
            &HOPPER_NONCE,
            &GpuRoots::NVIDIA,
        )
        .unwrap_err();
        assert_eq!(err, GpuError::CertDuplicate { index: 1, first: 0 });

        let other = hopper();
        let err = verify_measured_gpu(&summary.events, &other, &HOPPER_NONCE, &GpuRoots::NVIDIA)
            .unwrap_err();
        assert_eq!(err.code(), "gpu_not_measured");
        let mut wrong_nonce = gpu.clone();
        wrong_nonce.nonce[0] ^= 1;
        let err = verify_measured_gpu(
            &summary.events,
            &wrong_nonce,
            &HOPPER_NONCE,
            &GpuRoots::NVIDIA,
        )
        .unwrap_err();
        assert_eq!(err.code(), "gpu_nonce");
    }

    /// `chain` with the leaf's chip (the start of its subject's common name, "GH100") replaced
    /// by `chip` (5 bytes): the issuer side is untouched, so the chain's linkage still holds;
    /// its signatures do not.
    fn with_leaf_chip(chain: &str, chip: &[u8; 5]) -> String {
        let pems = pem::parse_many(chain.as_bytes()).expect("pem");
        let mut leaf = pems[0].contents().to_vec();
        // The subject comes after the issuer in the certificate: rename the last common name
        // (OID 2.5.4.3, a UTF8String) that starts with "GH100".
        let at = leaf
            .windows(12)
            .rposition(|w| {
                w[..5] == [0x06, 0x03, 0x55, 0x04, 0x03] && w[5] == 0x0c && &w[7..] == b"GH100"
            })
            .expect("the leaf names its chip")
            + 7;
        leaf[at..at + 5].copy_from_slice(chip);
        let mut out = pem::encode(&pem::Pem::new("CERTIFICATE", leaf));
        for p in &pems[1..] {
            out.push_str(&pem::encode(p));
        }
        out
    }

    /// The measured event as a verified event log would list it.
    fn measured(gpu: &GpuEvidence) -> crate::dstack::EventLogSummary {
        let digest = gpu_evidence_digest(gpu).expect("digest");
        let event = EventLogEntry {
            imr: 3,
            event_type: DSTACK_RUNTIME_EVENT_TYPE,
            digest: runtime_event_digest(DSTACK_RUNTIME_EVENT_TYPE, GPU_EVIDENCE_EVENT, &digest)
                .to_vec(),
            event: GPU_EVIDENCE_EVENT.into(),
            event_payload: digest.to_vec(),
        };
        let log = std::slice::from_ref(&event);
        let rtmr3 = crate::replay_rtmr3(log).expect("replay");
        crate::dstack::verify_event_log(log, &rtmr3, None, false, &RustCrypto).expect("log")
    }

    /// Issue 16 item 5: the RTMR3 payload covered the report only, so a node could present
    /// its measured report with another certificate chain of the same shape and claim another
    /// device id (here: the leaf renamed, a different certificate).
    #[test]
    fn the_measured_digest_covers_the_certificate_chain() {
        let gpu = hopper();
        let summary = measured(&gpu);
        let honest = verify_measured_gpu(&summary.events, &gpu, &HOPPER_NONCE, &GpuRoots::NVIDIA)
            .expect("measured");
        let mut swapped = gpu.clone();
        swapped.certificate_chain = with_leaf_chip(&gpu.certificate_chain, b"GH101");
        let err = verify_measured_gpu(&summary.events, &swapped, &HOPPER_NONCE, &GpuRoots::NVIDIA)
            .map(|v| v.device_id)
            .unwrap_err();
        assert_eq!(
            err.code(),
            "gpu_not_measured",
            "device {}",
            honest.device_id
        );
        // The PEM text is not what is measured: the same certificates re-encoded still match.
        let mut reencoded = gpu.clone();
        reencoded.certificate_chain = gpu.certificate_chain.replace('\n', "\r\n");
        assert!(
            verify_measured_gpu(
                &summary.events,
                &reencoded,
                &HOPPER_NONCE,
                &GpuRoots::NVIDIA
            )
            .is_ok()
        );
    }

    #[test]
    fn device_classes() {
        assert_eq!(device_class("GH100"), DeviceClass::Gpu);
        assert_eq!(device_class("GB100"), DeviceClass::Gpu);
        assert_eq!(device_class("LS10"), DeviceClass::Switch);
        assert_eq!(device_class("AD102"), DeviceClass::Unknown);
        assert_eq!(device_class(""), DeviceClass::Unknown);
    }

    /// Issue 16: NVSwitch evidence (LS10) chains to the same NVIDIA Device Identity CA and has
    /// the same report format; it was accepted as a GPU of model "LS_10". Here the H100's leaf
    /// is renamed to a switch (its subject only: the chain's linkage still holds) and presented
    /// through the measured path, which checks the chain's shape but not its signatures.
    #[test]
    fn switch_evidence_is_never_a_gpu() {
        let mut gpu = hopper();
        gpu.certificate_chain = with_leaf_chip(&gpu.certificate_chain, b"LS10 ");
        let summary = measured(&gpu);
        assert_eq!(
            verify_measured_gpu(&summary.events, &gpu, &HOPPER_NONCE, &GpuRoots::NVIDIA)
                .map(|v| v.model),
            Err(GpuError::NotAGpu {
                model: "LS10".to_owned()
            })
        );
    }
}
