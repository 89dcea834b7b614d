//! Development GPUs and NVSwitches (feature `dev-gpu`, never in the contract wasm): what a node
//! without a GPU presents on localnet and in tests, so that the very verification code (and gas)
//! of real NVIDIA evidence runs.
//!
//! * A fixed P-384 dev root (its key derived from a constant seed, so every build has the same
//!   root, [`DEV_GPU_ROOT_SHA256`]), one intermediate per chip class, one leaf per device (its key
//!   derived from the fleet's seed and the device's index, so a device is the same device in
//!   every fleet built from that seed). Leaf common names start with the chip, like NVIDIA's:
//!   "GH100 ..." for GPUs, "LS10 ..." for switches. Certificates are real DER, valid
//!   2025-01-01 .. 2049-12-31.
//! * Reports are SPDM 1.1 GET_MEASUREMENTS request + MEASUREMENTS response, signed by the leaf
//!   key (ECDSA P-384 / SHA-384 over request || response), with NVIDIA's opaque fields (driver,
//!   VBIOS, project, chip SKU, PROTECTED_PCIE_STATUS, SWITCH_PDI for GPUs, DEVICE_PDI and
//!   SWITCH_GPU_PDIS for switches) and 64 measurement blocks of 48 bytes, the same for every
//!   device of a class (one "firmware").
//!
//! A verifier trusts the dev root only when its caller names it (`GpuRoots::dev_root_sha256`,
//! `VerifyPolicy::dev_gpu_root`), which a registry does only where dev attestation is enabled.
//! The dev root's key is public (derived from a constant): dev evidence proves nothing about
//! hardware.

use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256, Sha384};

use crate::bundle::GpuEvidence;
use crate::nvidia::{
    OPAQUE_CHIP_SKU, OPAQUE_DEVICE_PDI, OPAQUE_DRIVER_VERSION, OPAQUE_PROJECT, OPAQUE_PROJECT_SKU,
    OPAQUE_PROTECTED_PCIE_STATUS, OPAQUE_SWITCH_GPU_PDIS, OPAQUE_SWITCH_PDI, OPAQUE_VBIOS_VERSION,
    STATUS_DISABLED, STATUS_ENABLED, SWITCH_GPU_SLOTS,
};

/// SHA-256 of the dev root certificate's DER (what a dev policy pins); defined at the crate
/// root so verifiers built without this feature (the registry contract) can pin it.
pub use crate::DEV_GPU_ROOT_SHA256;

/// Constant seed of the dev root and intermediates' keys.
const DEV_CA_SEED: &[u8] = b"enclave-cloud dev GPU CA v1";
/// Number of NVLinks of a Hopper GPU (entries of its SWITCH_PDI field).
const NVLINKS: usize = 18;
/// Measurement blocks per report (a Hopper GPU reports 64).
const MEASUREMENT_BLOCKS: u8 = 64;
/// Driver and VBIOS versions of the dev "firmware".
pub const DEV_DRIVER_VERSION: &str = "550.90.07";
/// VBIOS version as `GpuVerdict::vbios_version` prints it.
pub const DEV_VBIOS_VERSION: &str = "96.00.9f.00.01";
const DEV_VBIOS_BYTES: [u8; 8] = [0x00, 0x9f, 0x00, 0x96, 0x01, 0x00, 0x00, 0x00];

/// The dev root certificate's SHA-256 (computed; equals [`DEV_GPU_ROOT_SHA256`]).
pub fn dev_gpu_root_sha256() -> [u8; 32] {
    Sha256::digest(root().der).into()
}

/// The dev root certificate, PEM.
pub fn dev_gpu_root_pem() -> String {
    pem_cert(&root().der)
}

/// The chip class of a dev device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Gpu,
    Switch,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::Gpu => "gpu",
            Class::Switch => "switch",
        }
    }

    fn chip(self) -> &'static str {
        match self {
            Class::Gpu => "GH100",
            Class::Switch => "LS10",
        }
    }
}

/// A certificate and its subject's key.
struct Issued {
    der: Vec<u8>,
    name: Vec<u8>,
    key: SigningKey,
}

/// A P-384 key derived from `parts` (SHA-384, re-hashed with a counter in the negligible case
/// the digest is not a valid scalar).
fn derive_key(parts: &[&[u8]]) -> SigningKey {
    for counter in 0u32.. {
        let mut h = Sha384::new();
        h.update(b"enclave-cloud dev GPU key");
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.update(counter.to_le_bytes());
        if let Ok(key) = SigningKey::from_slice(&h.finalize()) {
            return key;
        }
    }
    unreachable!("a SHA-384 digest is a valid P-384 scalar within a few tries")
}

fn root() -> Issued {
    let key = derive_key(&[DEV_CA_SEED, b"root"]);
    let name = der::name("enclave-cloud dev GPU Root CA");
    let der = der::certificate(1, &name, &name, &key, &key, true);
    Issued { der, name, key }
}

fn intermediate(root: &Issued, class: Class) -> Issued {
    let key = derive_key(&[DEV_CA_SEED, class.label().as_bytes()]);
    let name = der::name(&format!("enclave-cloud dev {} Identity CA", class.chip()));
    let der = der::certificate(2, &name, &root.name, &key, &root.key, true);
    Issued { der, name, key }
}

/// One dev device: its leaf key, its chain (leaf, intermediate, root; PEM) and its PDI.
#[derive(Clone)]
struct Device {
    key: SigningKey,
    chain: String,
    pdi: u64,
}

/// A node's dev GPUs and NVSwitches, derived from a seed.
pub struct DevGpuFleet {
    seed: [u8; 32],
    gpus: Vec<Device>,
    switches: Vec<Device>,
}

/// Evidence of every device of a fleet for one nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevEvidence {
    pub gpus: Vec<GpuEvidence>,
    pub switches: Vec<GpuEvidence>,
}

impl DevGpuFleet {
    /// `gpus` GPUs and `switches` NVSwitches; with switches, the node runs in protected-PCIe
    /// mode, every GPU's NVLinks reach all of them and every switch lists the GPUs (8 slots, as
    /// on an HGX board: a node with switches and more than 8 GPUs fails the topology check).
    pub fn new(seed: [u8; 32], gpus: usize, switches: usize) -> Self {
        let root = root();
        let make = |class: Class, count: usize| -> Vec<Device> {
            let ica = intermediate(&root, class);
            (0..count)
                .map(|index| {
                    let index_bytes = (index as u64).to_le_bytes();
                    let key = derive_key(&[&seed, class.label().as_bytes(), &index_bytes]);
                    let pdi = pdi(&seed, class, index);
                    let name = der::name(&format!(
                        "{} A01 dev {} {pdi:016x}",
                        class.chip(),
                        class.label()
                    ));
                    let serial = 0x1000 + index as u64;
                    let leaf = der::certificate(serial, &name, &ica.name, &key, &ica.key, false);
                    let chain = [&leaf, &ica.der, &root.der]
                        .iter()
                        .map(|d| pem_cert(d))
                        .collect();
                    Device { key, chain, pdi }
                })
                .collect()
        };
        Self {
            seed,
            gpus: make(Class::Gpu, gpus),
            switches: make(Class::Switch, switches),
        }
    }

    /// The dev root certificate, PEM (every device chain ends with it).
    pub fn root_pem(&self) -> String {
        dev_gpu_root_pem()
    }

    /// Evidence of every GPU and switch answering `nonce`.
    pub fn evidence(&self, nonce: &[u8; 32]) -> DevEvidence {
        let protected = !self.switches.is_empty();
        let switch_pdis: Vec<u64> = self.switches.iter().map(|s| s.pdi).collect();
        let gpu_pdis: Vec<u64> = self.gpus.iter().map(|g| g.pdi).collect();
        let gpus = self
            .gpus
            .iter()
            .map(|d| {
                let mut opaque = firmware_fields(Class::Gpu, protected);
                if protected {
                    // Link i reaches switch i mod n (4 switches: 5, 5, 4, 4 links), little-endian.
                    let links: Vec<u8> = (0..NVLINKS)
                        .flat_map(|i| switch_pdis[i % switch_pdis.len()].to_le_bytes())
                        .collect();
                    opaque.push((OPAQUE_SWITCH_PDI, links));
                }
                self.report(d, Class::Gpu, nonce, opaque)
            })
            .collect();
        let switches = self
            .switches
            .iter()
            .map(|d| {
                let mut opaque = firmware_fields(Class::Switch, protected);
                // The switch's own PDI in byte order, as NVIDIA's topology check prints it.
                opaque.push((OPAQUE_DEVICE_PDI, d.pdi.to_be_bytes().to_vec()));
                opaque.push((OPAQUE_SWITCH_GPU_PDIS, switch_gpu_pdis(&gpu_pdis)));
                self.report(d, Class::Switch, nonce, opaque)
            })
            .collect();
        DevEvidence { gpus, switches }
    }

    /// The SPDM report of `device` for `nonce`, signed by its leaf key.
    fn report(
        &self,
        device: &Device,
        class: Class,
        nonce: &[u8; 32],
        opaque: Vec<(u16, Vec<u8>)>,
    ) -> GpuEvidence {
        let mut report = spdm_request(nonce);
        report.extend(spdm_response(
            class,
            &responder_nonce(&self.seed, device.pdi, nonce),
            &opaque,
        ));
        let signature: Signature = device.key.sign(&report);
        report.extend_from_slice(&signature.to_bytes());
        GpuEvidence {
            report,
            nonce: nonce.to_vec(),
            certificate_chain: device.chain.clone(),
        }
    }
}

/// A switch's SWITCH_GPU_PDIS field: [`SWITCH_GPU_SLOTS`] 8-byte slots (the first GPUs' PDIs,
/// zero for unused slots: a node with switches has at most 8 GPUs, like an HGX board), then one
/// port id per slot.
fn switch_gpu_pdis(gpu_pdis: &[u64]) -> Vec<u8> {
    let mut field: Vec<u8> = (0..SWITCH_GPU_SLOTS)
        .flat_map(|slot| gpu_pdis.get(slot).copied().unwrap_or(0).to_le_bytes())
        .collect();
    field.extend((0..SWITCH_GPU_SLOTS as u8).map(|port| port * 2));
    field
}

/// A device's PDI: 8 non-zero bytes derived from the seed, class and index.
fn pdi(seed: &[u8; 32], class: Class, index: usize) -> u64 {
    let h = Sha256::new()
        .chain_update(b"enclave-cloud dev PDI")
        .chain_update(seed)
        .chain_update(class.label())
        .chain_update((index as u64).to_le_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b) | 1
}

fn responder_nonce(seed: &[u8; 32], pdi: u64, nonce: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"enclave-cloud dev responder nonce")
        .chain_update(seed)
        .chain_update(pdi.to_le_bytes())
        .chain_update(nonce)
        .finalize()
        .into()
}

/// The opaque fields every device of a class shares.
fn firmware_fields(class: Class, protected_pcie: bool) -> Vec<(u16, Vec<u8>)> {
    let text = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    let (project, sku, chip_sku) = match class {
        Class::Gpu => ("G520-0200", "0001", "882"),
        Class::Switch => ("G5600-0000", "0000", "100"),
    };
    vec![
        (OPAQUE_DRIVER_VERSION, text(DEV_DRIVER_VERSION)),
        (OPAQUE_VBIOS_VERSION, DEV_VBIOS_BYTES.to_vec()),
        (OPAQUE_CHIP_SKU, text(chip_sku)),
        (OPAQUE_PROJECT, text(project)),
        (OPAQUE_PROJECT_SKU, text(sku)),
        (
            OPAQUE_PROTECTED_PCIE_STATUS,
            vec![if protected_pcie {
                STATUS_ENABLED
            } else {
                STATUS_DISABLED
            }],
        ),
    ]
}

/// GET_MEASUREMENTS (SPDM 1.1): version, code, param1 = signature requested, param2 = all
/// measurements, nonce, slot 0.
fn spdm_request(nonce: &[u8; 32]) -> Vec<u8> {
    let mut r = vec![0x11, 0xE0, 0x01, 0xFF];
    r.extend_from_slice(nonce);
    r.push(0);
    r
}

/// The value of measurement block `index` (1-based) of a dev device's "firmware".
fn dev_measurement(class: Class, index: u8) -> [u8; 48] {
    Sha384::new()
        .chain_update(b"enclave-cloud dev firmware")
        .chain_update(class.label())
        .chain_update([index])
        .finalize()
        .into()
}

/// Golden sets of the dev GPUs' firmware, as `ecloud attestation gpu-reference` would make
/// them from RIMs: the VBIOS set covers RIM indexes 0-31, the driver set 32-63 (RIM index `i`
/// is block `i + 1`), for [`DEV_VBIOS_VERSION`] and [`DEV_DRIVER_VERSION`] of chip GH100.
pub fn dev_gpu_golden_sets() -> (crate::nvidia::GoldenSet, crate::nvidia::GoldenSet) {
    use crate::nvidia::{GoldenMeasurement, GoldenSet, ReferenceKind};
    let set = |kind, version: &str, indexes: std::ops::Range<u8>| GoldenSet {
        kind,
        product: Class::Gpu.chip().to_owned(),
        version: version.to_owned(),
        tag_id: format!("dev-{version}"),
        measurements: indexes
            .map(|i| GoldenMeasurement {
                index: u16::from(i),
                name: format!("dev_{i}"),
                active: true,
                alternatives: vec![hex::encode(dev_measurement(Class::Gpu, i + 1))],
            })
            .collect(),
    };
    (
        set(ReferenceKind::Vbios, DEV_VBIOS_VERSION, 0..32),
        set(
            ReferenceKind::Driver,
            DEV_DRIVER_VERSION,
            32..MEASUREMENT_BLOCKS,
        ),
    )
}

/// MEASUREMENTS (SPDM 1.1) up to the signature: header, blocks (DMTF, SHA-384 digests of the
/// class's dev firmware), responder nonce, opaque data.
fn spdm_response(class: Class, responder_nonce: &[u8; 32], opaque: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut record = Vec::new();
    for index in 1..=MEASUREMENT_BLOCKS {
        let value = dev_measurement(class, index);
        record.push(index);
        record.push(0x01); // DMTF measurement specification
        record.extend_from_slice(&(3 + value.len() as u16).to_le_bytes());
        record.push(0x01); // DMTF value type: firmware, digest
        record.extend_from_slice(&(value.len() as u16).to_le_bytes());
        record.extend_from_slice(&value);
    }
    let mut opaque_data = Vec::new();
    for (ty, value) in opaque {
        opaque_data.extend_from_slice(&ty.to_le_bytes());
        opaque_data.extend_from_slice(&(value.len() as u16).to_le_bytes());
        opaque_data.extend_from_slice(value);
    }
    let mut r = vec![0x11, 0x60, 0x00, 0x00, MEASUREMENT_BLOCKS];
    r.extend_from_slice(&(record.len() as u32).to_le_bytes()[..3]);
    r.extend(record);
    r.extend_from_slice(responder_nonce);
    r.extend_from_slice(&(opaque_data.len() as u16).to_le_bytes());
    r.extend(opaque_data);
    r
}

fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Just enough DER to write X.509 v3 certificates.
mod der {
    use p384::ecdsa::signature::Signer;
    use p384::ecdsa::{Signature, SigningKey};

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(value);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// A non-negative INTEGER from big-endian bytes.
    fn uint(be: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
        let mut v = if trimmed.is_empty() { vec![0] } else { trimmed };
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        tlv(0x02, &v)
    }

    // OIDs, encoded.
    const ECDSA_WITH_SHA384: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const ID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    const ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
    const BASIC_CONSTRAINTS: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x13];
    const KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0f];

    /// `O=enclave-cloud dev, CN=<cn>`.
    pub fn name(cn: &str) -> Vec<u8> {
        let rdn = |oid: &[u8], value: &str| tlv(0x31, &seq(&[oid, &tlv(0x0c, value.as_bytes())]));
        seq(&[
            &rdn(ORGANIZATION, "enclave-cloud dev"),
            &rdn(COMMON_NAME, cn),
        ])
    }

    /// A v3 certificate of `subject_key` named `subject`, issued by `issuer` with `issuer_key`
    /// (ECDSA P-384 / SHA-384), valid 2025-01-01 .. 2049-12-31, with basic constraints (and key
    /// usage: certificate signing for a CA, digital signature for a leaf).
    pub fn certificate(
        serial: u64,
        subject: &[u8],
        issuer: &[u8],
        subject_key: &SigningKey,
        issuer_key: &SigningKey,
        ca: bool,
    ) -> Vec<u8> {
        let version = tlv(0xa0, &uint(&[2]));
        let algorithm = seq(&[ECDSA_WITH_SHA384]);
        let validity = seq(&[&tlv(0x17, b"250101000000Z"), &tlv(0x17, b"491231235959Z")]);
        let point = subject_key.verifying_key().to_sec1_point(false);
        let mut bits = vec![0u8];
        bits.extend_from_slice(point.as_bytes());
        let spki = seq(&[&seq(&[ID_EC_PUBLIC_KEY, SECP384R1]), &tlv(0x03, &bits)]);
        let critical = tlv(0x01, &[0xff]);
        let basic = if ca {
            seq(&[&tlv(0x01, &[0xff])])
        } else {
            seq(&[])
        };
        // KeyUsage BIT STRING: keyCertSign (bit 5) for a CA, digitalSignature (bit 0) for a leaf.
        let usage = if ca {
            tlv(0x03, &[0x02, 0x04])
        } else {
            tlv(0x03, &[0x07, 0x80])
        };
        let extensions = tlv(
            0xa3,
            &seq(&[
                &seq(&[BASIC_CONSTRAINTS, &critical, &tlv(0x04, &basic)]),
                &seq(&[KEY_USAGE, &critical, &tlv(0x04, &usage)]),
            ]),
        );
        let tbs = seq(&[
            &version,
            &uint(&serial.to_be_bytes()),
            &algorithm,
            issuer,
            &validity,
            subject,
            &spki,
            &extensions,
        ]);
        let signature: Signature = issuer_key.sign(&tbs);
        let rs = signature.to_bytes();
        let sig_der = seq(&[&uint(&rs[..48]), &uint(&rs[48..])]);
        let mut sig_bits = vec![0u8];
        sig_bits.extend(sig_der);
        seq(&[&tbs, &algorithm, &tlv(0x03, &sig_bits)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpuRoots, NoCache, check_topology, verify_gpu_evidence, verify_switch_evidence};

    const NOW: u64 = 1_786_622_400;

    #[test]
    fn the_dev_root_is_fixed() {
        assert_eq!(
            hex::encode(dev_gpu_root_sha256()),
            hex::encode(DEV_GPU_ROOT_SHA256)
        );
    }

    #[test]
    fn a_fleet_verifies_under_the_dev_root_only() {
        let fleet = DevGpuFleet::new([1; 32], 2, 2);
        let nonce = [5u8; 32];
        let ev = fleet.evidence(&nonce);
        let roots = GpuRoots {
            dev_root_sha256: Some(DEV_GPU_ROOT_SHA256),
        };
        let gpus: Vec<_> = ev
            .gpus
            .iter()
            .map(|g| verify_gpu_evidence(g, &nonce, NOW, &NoCache, &roots).expect("dev GPU"))
            .collect();
        let switches: Vec<_> = ev
            .switches
            .iter()
            .map(|s| verify_switch_evidence(s, &nonce, NOW, &NoCache, &roots).expect("switch"))
            .collect();
        assert_eq!(gpus[0].model, "GH100");
        assert_eq!(gpus[0].driver_version.as_deref(), Some(DEV_DRIVER_VERSION));
        assert_eq!(gpus[0].vbios_version.as_deref(), Some(DEV_VBIOS_VERSION));
        assert!(gpus[0].protected_pcie);
        assert_eq!(gpus[0].switch_pdis.len(), 2);
        assert_eq!(switches[0].model, "LS10");
        check_topology(&gpus, &switches).expect("topology");
        let err = verify_gpu_evidence(&ev.gpus[0], &nonce, NOW, &NoCache, &GpuRoots::NVIDIA)
            .expect_err("dev root not trusted by default");
        assert_eq!(err, crate::GpuError::UntrustedRoot);
    }
}
