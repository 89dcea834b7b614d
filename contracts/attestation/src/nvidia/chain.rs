//! NVIDIA device certificate chain: leaf (GPU attestation key) -> ... -> pinned NVIDIA Device
//! Identity CA. Every link is checked (issuer name, CA flag of the issuer, validity window,
//! ECDSA P-384 / SHA-384 signature over the exact `tbsCertificate` bytes). A CA certificate
//! whose SHA-256 is in the [`CertCache`] was verified up to the root before: the walk stops there.

use der::Decode;
use der::oid::ObjectIdentifier;
use p384::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use crate::GpuError;
use crate::der_tlv;

/// NVIDIA Device Identity CA (P-384), pinned. From nvtrust's local GPU verifier
/// (`verifier_device_root.pem`, SHA-256 fingerprint 10:2B:F6:59:...:7B:48).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("verifier_device_root.pem");

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Hashes (SHA-256 of DER) of CA certificates already verified up to the pinned root.
pub trait CertCache {
    fn contains(&self, sha256_of_der: &[u8; 32]) -> bool;
}

/// The empty cache: verify every link.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl CertCache for NoCache {
    fn contains(&self, _: &[u8; 32]) -> bool {
        false
    }
}

impl CertCache for std::collections::BTreeSet<[u8; 32]> {
    fn contains(&self, h: &[u8; 32]) -> bool {
        std::collections::BTreeSet::contains(self, h)
    }
}

impl<S: std::hash::BuildHasher> CertCache for std::collections::HashSet<[u8; 32], S> {
    fn contains(&self, h: &[u8; 32]) -> bool {
        std::collections::HashSet::contains(self, h)
    }
}

/// Result of a chain walk.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The GPU attestation key (leaf).
    pub leaf_key: p384::ecdsa::VerifyingKey,
    /// SHA-256 of the leaf DER.
    pub leaf_hash: [u8; 32],
    /// First word of the leaf's common name, e.g. "GH100".
    pub model: String,
    /// SHA-256 of each CA certificate whose signature this walk verified (not the root).
    pub verified_intermediates: Vec<[u8; 32]>,
}

struct Parsed {
    der: Vec<u8>,
    cert: Certificate,
}

fn parse_cert(der: Vec<u8>, index: usize) -> Result<Parsed, GpuError> {
    let cert = Certificate::from_der(&der).map_err(|e| GpuError::CertParse {
        index,
        reason: e.to_string(),
    })?;
    Ok(Parsed { der, cert })
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn pinned_root() -> Result<Parsed, GpuError> {
    let pem = pem::parse(NVIDIA_DEVICE_ROOT_PEM).map_err(|e| GpuError::CertParse {
        index: usize::MAX,
        reason: format!("pinned root: {e}"),
    })?;
    parse_cert(pem.into_contents(), usize::MAX)
}

/// Verifies a PEM chain (leaf first; the root may be included) at `now` (unix seconds).
pub fn verify_chain<K: CertCache + ?Sized>(
    pem_chain: &str,
    now: u64,
    cache: &K,
) -> Result<VerifiedChain, GpuError> {
    let (certs, root) = chain_below_root(pem_chain)?;
    let leaf = leaf_of(&certs)?;
    let leaf_key = ec_p384_key(&leaf.cert, 0)?;
    let LeafIdentity { leaf_hash, model } = identity(leaf);

    let mut verified_intermediates = Vec::new();
    if cache.contains(&leaf_hash) {
        // This very device was verified up to the root before (the registry cached its
        // `device_id`): only its validity window is rechecked.
        check_validity(&leaf.cert, 0, now)?;
        return Ok(VerifiedChain {
            leaf_key,
            leaf_hash,
            model,
            verified_intermediates,
        });
    }
    for index in 0..certs.len() {
        let issuer = verify_certificate(&certs, &root, index, now)?;
        if index + 1 == certs.len() {
            break; // reached the pinned root
        }
        let issuer_hash = sha256(&issuer.der);
        if cache.contains(&issuer_hash) {
            // Verified up to the root before; its validity was checked above (check_link).
            return Ok(VerifiedChain {
                leaf_key,
                leaf_hash,
                model,
                verified_intermediates,
            });
        }
        verified_intermediates.push(issuer_hash);
    }
    Ok(VerifiedChain {
        leaf_key,
        leaf_hash,
        model,
        verified_intermediates,
    })
}

/// SHA-256 and chip name of a chain's leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafIdentity {
    pub leaf_hash: [u8; 32],
    /// First word of the leaf's common name, e.g. "GH100".
    pub model: String,
}

/// The leaf's identity without verifying the chain (for GPUs verified inside the attested VM).
pub fn leaf_identity(pem_chain: &str) -> Result<LeafIdentity, GpuError> {
    let certs = parse_pem_certs(pem_chain)?;
    Ok(identity(leaf_of(&certs)?))
}

fn parse_pem_certs(pem_chain: &str) -> Result<Vec<Parsed>, GpuError> {
    let blocks = pem::parse_many(pem_chain).map_err(|e| GpuError::CertParse {
        index: 0,
        reason: e.to_string(),
    })?;
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            if block.tag() != "CERTIFICATE" {
                return Err(GpuError::CertParse {
                    index,
                    reason: format!("PEM block is a {}, not a CERTIFICATE", block.tag()),
                });
            }
            parse_cert(block.into_contents(), index)
        })
        .collect()
}

fn leaf_of(certs: &[Parsed]) -> Result<&Parsed, GpuError> {
    certs.first().ok_or_else(|| GpuError::CertParse {
        index: 0,
        reason: "no certificate below the root".into(),
    })
}

fn identity(leaf: &Parsed) -> LeafIdentity {
    LeafIdentity {
        leaf_hash: sha256(&leaf.der),
        model: common_name(&leaf.cert)
            .and_then(|cn| cn.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// Verifies at most `max_signatures` certificates of `pem_chain`, from the top (next to the
/// pinned root) down to the leaf, skipping cached ones, and returns the SHA-256 of each
/// certificate it verified, top first. Lets a registry spread an expensive chain over several
/// calls (one P-384 signature costs about 80 Tgas on NEAR): store the returned hashes in the
/// cache and call again until it returns nothing; then [`super::verify_gpu_evidence`] only
/// verifies the report signature. The last hash returned is the leaf's, i.e. the `device_id`.
pub fn verify_chain_step<K: CertCache + ?Sized>(
    pem_chain: &str,
    now: u64,
    cache: &K,
    max_signatures: usize,
) -> Result<Vec<[u8; 32]>, GpuError> {
    let (certs, root) = chain_below_root(pem_chain)?;
    ec_p384_key(&leaf_of(&certs)?.cert, 0)?;
    let mut verified = Vec::new();
    for index in (0..certs.len()).rev() {
        let hash = sha256(&certs[index].der);
        if cache.contains(&hash) {
            continue;
        }
        if verified.len() == max_signatures {
            break;
        }
        verify_certificate(&certs, &root, index, now)?;
        verified.push(hash);
    }
    Ok(verified)
}

/// The chain's certificates below the pinned root, and the root. The root may be sent along;
/// it is trusted only as the pinned copy.
fn chain_below_root(pem_chain: &str) -> Result<(Vec<Parsed>, Parsed), GpuError> {
    let root = pinned_root()?;
    let mut certs = parse_pem_certs(pem_chain)?;
    if certs.last().is_some_and(|c| c.der == root.der) {
        certs.pop();
    }
    Ok((certs, root))
}

/// Checks `certs[index]` (validity, issuer, signature) against its issuer, the next certificate
/// or the pinned root above the last one; returns the issuer.
fn verify_certificate<'a>(
    certs: &'a [Parsed],
    root: &'a Parsed,
    index: usize,
    now: u64,
) -> Result<&'a Parsed, GpuError> {
    let child = certs.get(index).ok_or(GpuError::CertParse {
        index,
        reason: "no such certificate".into(),
    })?;
    check_validity(&child.cert, index, now)?;
    let issuer_index = index + 1;
    let issuer = certs.get(issuer_index).unwrap_or(root);
    check_link(
        child,
        issuer,
        index,
        issuer_index,
        issuer_index == certs.len(),
        now,
    )?;
    Ok(issuer)
}

/// `child` is issued and signed by `issuer`, which is a CA valid at `now`.
fn check_link(
    child: &Parsed,
    issuer: &Parsed,
    index: usize,
    issuer_index: usize,
    is_root: bool,
    now: u64,
) -> Result<(), GpuError> {
    if child.cert.tbs_certificate().issuer() != issuer.cert.tbs_certificate().subject() {
        return Err(if is_root {
            GpuError::UntrustedRoot
        } else {
            GpuError::CertIssuer { index }
        });
    }
    check_validity(&issuer.cert, issuer_index, now)?;
    let is_ca = issuer
        .cert
        .tbs_certificate()
        .get_extension::<BasicConstraints>()
        .ok()
        .flatten()
        .is_some_and(|(_, bc)| bc.ca);
    if !is_ca {
        return Err(GpuError::CertNotCa {
            index: issuer_index,
        });
    }
    if child.cert.signature_algorithm().oid != ECDSA_WITH_SHA384 {
        return Err(GpuError::Algorithm {
            index,
            what: "signature is not ecdsa-with-SHA384",
        });
    }
    let key = ec_p384_key(&issuer.cert, issuer_index)?;
    let sig_der = child
        .cert
        .signature()
        .as_bytes()
        .ok_or(GpuError::CertSignature { index })?;
    let sig =
        p384::ecdsa::Signature::from_der(sig_der).map_err(|_| GpuError::CertSignature { index })?;
    key.verify(tbs_bytes(&child.der, index)?, &sig)
        .map_err(|_| GpuError::CertSignature { index })
}

/// The exact signed bytes: the first element of the outer certificate SEQUENCE.
fn tbs_bytes(der: &[u8], index: usize) -> Result<&[u8], GpuError> {
    let bad = || GpuError::CertParse {
        index,
        reason: "cannot locate tbsCertificate".into(),
    };
    let (tag, body, _) = der_tlv::split(der).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (tbs, _) = der_tlv::split_raw(body).ok_or_else(bad)?;
    Ok(tbs)
}

fn ec_p384_key(cert: &Certificate, index: usize) -> Result<p384::ecdsa::VerifyingKey, GpuError> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(GpuError::Algorithm {
            index,
            what: "key is not EC P-384",
        });
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or(GpuError::Algorithm {
            index,
            what: "public key bit string is not byte aligned",
        })?;
    p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| GpuError::Algorithm {
        index,
        what: "public key is not a P-384 point",
    })
}

fn check_validity(cert: &Certificate, index: usize, now: u64) -> Result<(), GpuError> {
    let v = cert.tbs_certificate().validity();
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err(GpuError::CertValidity {
            index,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn common_name(cert: &Certificate) -> Option<String> {
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate()
        .subject()
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            atv.value
                .decode_as::<der::asn1::Utf8StringRef>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::PrintableStringRef>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}
