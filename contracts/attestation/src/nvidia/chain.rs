//! NVIDIA device certificate chain: leaf (GPU attestation key) -> ... -> pinned NVIDIA Device
//! Identity CA. One shape check serves every path (uncached, cached, step by step): no
//! certificate twice, no extra certificate, every issuer name linked up to the pinned root,
//! issuers are CAs, every certificate inside its validity window. Then each certificate's
//! ECDSA P-384 / SHA-384 signature over the exact `tbsCertificate` bytes is verified, unless its
//! SHA-256 is in the [`CertCache`] (verified against its issuer before; still presented and
//! rechecked for shape and validity).

use der::Decode;
use der::oid::ObjectIdentifier;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

use crate::GpuError;
use crate::der_tlv;

/// NVIDIA Device Identity CA (P-384), pinned. From nvtrust's local GPU verifier
/// (`verifier_device_root.pem`, SHA-256 fingerprint 10:2B:F6:59:...:7B:48).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("verifier_device_root.pem");

/// NVIDIA's RIM signing root (P-384), pinned: reference integrity manifests (signed SWID tags of
/// VBIOS and driver measurements) chain up to it. From nvtrust's local GPU verifier
/// (`verifier_RIM_root.pem`).
pub const NVIDIA_RIM_ROOT_PEM: &str = include_str!("verifier_rim_root.pem");

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// The roots a chain may end at. NVIDIA's Device Identity CA is always trusted (pinned); a
/// development root only when the caller names it here (its SHA-256), which a verifier does only
/// where dev attestation is enabled ([`crate::VerifyPolicy::dev_gpu_root`]). A chain ending at
/// the dev root must present it as its last certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuRoots {
    /// SHA-256 of the DER of a development root certificate (`attestation::dev_gpu`).
    pub dev_root_sha256: Option<[u8; 32]>,
}

impl GpuRoots {
    /// NVIDIA's pinned root only.
    pub const NVIDIA: GpuRoots = GpuRoots {
        dev_root_sha256: None,
    };
}

/// Hashes (SHA-256 of DER) of certificates whose signature was already verified against an
/// issuer trusted up to the pinned root. A hash stands for the exact certificate bytes, so a
/// cached certificate is still presented in every chain and its validity window is read from
/// it and checked at every use.
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
    parse_root(NVIDIA_DEVICE_ROOT_PEM)
}

fn parse_root(root_pem: &str) -> Result<Parsed, GpuError> {
    let pem = pem::parse(root_pem).map_err(|e| GpuError::CertParse {
        index: usize::MAX,
        reason: format!("pinned root: {e}"),
    })?;
    parse_cert(pem.into_contents(), usize::MAX)
}

/// Most certificates a chain may hold below the pinned root (NVIDIA's device chains hold 4).
pub const MAX_CHAIN_DEPTH: usize = 6;

/// Verifies a PEM chain (leaf first; the root may be included) at `now` (unix seconds).
///
/// The chain must have the one shape every path accepts (see [`checked_chain`]); then every
/// certificate that is not in `cache` has its signature verified against its issuer, from the
/// root down. A cached certificate was verified against its issuer before; it is still
/// presented, so its validity and its place in the chain are checked again here.
pub fn verify_chain<K: CertCache + ?Sized>(
    pem_chain: &str,
    now: u64,
    cache: &K,
    roots: &GpuRoots,
) -> Result<VerifiedChain, GpuError> {
    let chain = checked_chain(pem_chain, now, roots, pinned_root()?)?;
    verified_chain(&chain, cache)
}

/// [`verify_chain`] up to another pinned NVIDIA root (`root_pem`, e.g. [`NVIDIA_RIM_ROOT_PEM`]
/// for the certificates that sign reference integrity manifests): the same shape, validity and
/// signature checks, nothing cached.
pub fn verify_chain_to_root(
    pem_chain: &str,
    root_pem: &str,
    now: u64,
) -> Result<VerifiedChain, GpuError> {
    let chain = checked_chain(pem_chain, now, &GpuRoots::NVIDIA, parse_root(root_pem)?)?;
    verified_chain(&chain, &NoCache)
}

fn verified_chain<K: CertCache + ?Sized>(
    chain: &Chain,
    cache: &K,
) -> Result<VerifiedChain, GpuError> {
    let verified = verify_uncached(chain, cache, usize::MAX)?;
    let leaf = &chain.certs[0];
    let leaf_key = ec_p384_key(&leaf.cert, 0)?;
    let LeafIdentity { leaf_hash, model } = identity(leaf);
    // Intermediates only (the leaf is the device id, not a CA), leaf side first.
    let verified_intermediates = verified
        .iter()
        .rev()
        .filter(|&&index| index != 0)
        .map(|&index| chain.hashes[index])
        .collect();
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

/// The leaf's identity without verifying signatures or validity (for GPUs verified inside the
/// attested VM). The chain must still have the accepted shape (no certificate twice, names
/// linked up to the pinned root, issuers are CAs).
pub fn leaf_identity(pem_chain: &str, roots: &GpuRoots) -> Result<LeafIdentity, GpuError> {
    let chain = shaped_chain(pem_chain, roots, pinned_root()?)?;
    Ok(identity(&chain.certs[0]))
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
///
/// The whole chain is checked first exactly as [`verify_chain`] checks it ([`checked_chain`]:
/// no certificate twice, no extra certificate, names linked, every certificate valid at `now`),
/// before any signature and whatever is cached, so a chain refused in one call is refused
/// step by step too.
pub fn verify_chain_step<K: CertCache + ?Sized>(
    pem_chain: &str,
    now: u64,
    cache: &K,
    max_signatures: usize,
    roots: &GpuRoots,
) -> Result<Vec<[u8; 32]>, GpuError> {
    let chain = checked_chain(pem_chain, now, roots, pinned_root()?)?;
    let verified = verify_uncached(&chain, cache, max_signatures)?;
    Ok(verified.iter().map(|&index| chain.hashes[index]).collect())
}

/// A chain of the accepted shape: `certs[0]` is the leaf, each certificate is issued by the
/// next, the last one by the pinned `root` (not in `certs`).
struct Chain {
    certs: Vec<Parsed>,
    /// SHA-256 of each certificate's DER (the cache key).
    hashes: Vec<[u8; 32]>,
    root: Parsed,
}

/// The one shape check of every path (uncached walk, cached walk, each step, the RTMR3 path),
/// before any signature: the certificates parse; the pinned root may end the chain and is then
/// dropped (it is trusted only as the pinned copy); 1 to [`MAX_CHAIN_DEPTH`] certificates remain
/// below it; none appears twice or is the pinned root; each one's issuer name is the next one's
/// subject, the last one's the pinned root's; every issuer is a CA; the leaf key is P-384.
/// With a dev root in `roots`, a chain whose last certificate is that root ends there instead.
fn shaped_chain(pem_chain: &str, roots: &GpuRoots, pinned: Parsed) -> Result<Chain, GpuError> {
    let mut certs = parse_pem_certs(pem_chain)?;
    let dev_root = roots.dev_root_sha256.and_then(|pinned| {
        certs
            .last()
            .is_some_and(|c| sha256(&c.der) == pinned)
            .then(|| certs.pop())
            .flatten()
    });
    let root = match dev_root {
        Some(dev) => dev,
        None => {
            let root = pinned;
            if certs.last().is_some_and(|c| c.der == root.der) {
                certs.pop();
            }
            root
        }
    };
    if certs.is_empty() || certs.len() > MAX_CHAIN_DEPTH {
        return Err(GpuError::CertParse {
            index: certs.len().saturating_sub(1),
            reason: format!(
                "{} certificates below the pinned root, expected 1 to {MAX_CHAIN_DEPTH}",
                certs.len()
            ),
        });
    }
    let hashes: Vec<[u8; 32]> = certs.iter().map(|c| sha256(&c.der)).collect();
    let root_hash = sha256(&root.der);
    for (index, hash) in hashes.iter().enumerate() {
        if *hash == root_hash {
            // The pinned root anywhere but at the end (where it was dropped above).
            return Err(GpuError::CertDuplicate {
                index,
                first: certs.len(),
            });
        }
        if let Some(first) = hashes[..index].iter().position(|h| h == hash) {
            return Err(GpuError::CertDuplicate { index, first });
        }
    }
    ec_p384_key(&certs[0].cert, 0)?;
    let chain = Chain {
        certs,
        hashes,
        root,
    };
    for index in 0..chain.certs.len() {
        let (issuer, issuer_index, is_root) = chain.issuer(index);
        let child = &chain.certs[index];
        if child.cert.tbs_certificate().issuer() != issuer.cert.tbs_certificate().subject() {
            return Err(if is_root {
                GpuError::UntrustedRoot
            } else {
                GpuError::CertIssuer { index }
            });
        }
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
    }
    Ok(chain)
}

/// [`shaped_chain`], and every certificate (cached or not, the pinned root included) valid at
/// `now`: nothing cached is trusted outside its certificate's validity window.
fn checked_chain(
    pem_chain: &str,
    now: u64,
    roots: &GpuRoots,
    pinned: Parsed,
) -> Result<Chain, GpuError> {
    let chain = shaped_chain(pem_chain, roots, pinned)?;
    for (index, c) in chain.certs.iter().enumerate() {
        check_validity(&c.cert, index, now)?;
    }
    check_validity(&chain.root.cert, chain.certs.len(), now)?;
    Ok(chain)
}

impl Chain {
    /// The issuer of `certs[index]`, its index (`certs.len()` for the root), and whether it is
    /// the pinned root.
    fn issuer(&self, index: usize) -> (&Parsed, usize, bool) {
        let issuer_index = index + 1;
        match self.certs.get(issuer_index) {
            Some(issuer) => (issuer, issuer_index, false),
            None => (&self.root, issuer_index, true),
        }
    }
}

/// Verifies the signature of every certificate of `chain` not in `cache`, from the top (next to
/// the root) down, at most `max_signatures` of them; returns their indexes, top first. Each one
/// is verified against an issuer that is the pinned root, cached, or verified just before.
fn verify_uncached<K: CertCache + ?Sized>(
    chain: &Chain,
    cache: &K,
    max_signatures: usize,
) -> Result<Vec<usize>, GpuError> {
    let mut verified = Vec::new();
    for index in (0..chain.certs.len()).rev() {
        if cache.contains(&chain.hashes[index]) {
            continue;
        }
        if verified.len() == max_signatures {
            break;
        }
        let (issuer, issuer_index, _) = chain.issuer(index);
        check_signature(&chain.certs[index], issuer, index, issuer_index)?;
        verified.push(index);
    }
    Ok(verified)
}

/// `child` is signed (ECDSA P-384 / SHA-384) by `issuer`'s key; names, CA flag and validity
/// were checked by [`checked_chain`].
fn check_signature(
    child: &Parsed,
    issuer: &Parsed,
    index: usize,
    issuer_index: usize,
) -> Result<(), GpuError> {
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
    crate::p384_verify::verify(&key, tbs_bytes(&child.der, index)?, &sig)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::GpuEvidence;
    use std::collections::BTreeSet;

    /// Inside every certificate's validity window, and after every notBefore of the chain.
    const NOW: u64 = 1_786_622_400;
    /// 2021-06-01: after the leaf's and the BROM's notBefore (2020-10-17), before the
    /// Provisioner ICA's (2022-03-01) and the GH100 Identity's (2022-01-12).
    const BEFORE_ICA: u64 = 1_622_505_600;
    /// One second after 9999-12-31T23:59:59Z, every certificate's notAfter.
    const AFTER_ALL: u64 = 253_402_300_800;
    /// The nonce NVIDIA's public sample answers (bound to no enclave: verified here as the
    /// expected nonce, to test the chain and signature).
    const HOPPER_NONCE: [u8; 32] = crate::nvidia::tests::HOPPER_NONCE;

    fn vector(rel: &str) -> String {
        let p = format!("{}/{rel}", crate::TESTDATA_DIR);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// The real H100 chain's PEM blocks: leaf, BROM, Provisioner ICA, GH100 Identity, and the
    /// pinned root (NVIDIA Device Identity CA).
    fn blocks() -> Vec<String> {
        pem::parse_many(vector("nvidia-hopper-single/hopperCertChain.txt"))
            .expect("pem")
            .iter()
            .map(pem::encode)
            .collect()
    }

    fn chain(order: &[usize]) -> String {
        let b = blocks();
        order.iter().map(|&i| b[i].as_str()).collect()
    }

    fn honest() -> String {
        chain(&[0, 1, 2, 3])
    }

    fn evidence(certificate_chain: String) -> GpuEvidence {
        GpuEvidence {
            report: hex::decode(vector("nvidia-hopper-single/hopperAttestationReport.txt").trim())
                .expect("hex"),
            nonce: hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
                .expect("hex"),
            certificate_chain,
        }
    }

    /// Caches a chain the way the registry does: one step at a time, each step's hashes added
    /// before the next.
    fn cache_in_steps(pem_chain: &str, max: usize) -> Result<BTreeSet<[u8; 32]>, GpuError> {
        let mut cache = BTreeSet::new();
        loop {
            let step = verify_chain_step(pem_chain, NOW, &cache, max, &GpuRoots::NVIDIA)?;
            if step.is_empty() {
                return Ok(cache);
            }
            cache.extend(step);
        }
    }

    /// Every way to check `pem_chain`: stepwise with each budget from empty and from the
    /// honest chain fully cached, the walk and the evidence check with and without the cache.
    fn refused_everywhere(pem_chain: &str, what: &str) -> Vec<GpuError> {
        let mut errors = Vec::new();
        let full = cache_in_steps(&honest(), 5).expect("the honest chain caches");
        for max in 1..=6 {
            errors.push(
                cache_in_steps(pem_chain, max)
                    .map(|_| ())
                    .expect_err(&format!("{what}: stepwise caching with {max} per step")),
            );
            errors.push(
                verify_chain_step(pem_chain, NOW, &full, max, &GpuRoots::NVIDIA)
                    .map(|_| ())
                    .expect_err(&format!("{what}: step {max} over the cached chain")),
            );
        }
        for (cache, name) in [(&BTreeSet::new(), "uncached"), (&full, "cached")] {
            errors.push(
                verify_chain(pem_chain, NOW, cache, &GpuRoots::NVIDIA)
                    .map(|_| ())
                    .expect_err(&format!("{what}: {name} walk")),
            );
            errors.push(
                crate::nvidia::verify_gpu_evidence(
                    &evidence(pem_chain.into()),
                    &HOPPER_NONCE,
                    NOW,
                    cache,
                    &GpuRoots::NVIDIA,
                )
                .map(|_| ())
                .expect_err(&format!("{what}: {name} evidence")),
            );
        }
        errors
    }

    #[test]
    fn the_honest_chain_verifies_uncached_stepwise_and_cached() {
        let full = cache_in_steps(&honest(), 1).expect("steps");
        assert_eq!(full.len(), 4, "leaf and three CAs");
        for cache in [&BTreeSet::new(), &full] {
            crate::nvidia::verify_gpu_evidence(
                &evidence(honest()),
                &HOPPER_NONCE,
                NOW,
                cache,
                &GpuRoots::NVIDIA,
            )
            .expect("verifies");
        }
        // The pinned root may be sent along.
        let with_root = format!("{}{NVIDIA_DEVICE_ROOT_PEM}", honest());
        assert_eq!(cache_in_steps(&with_root, 2).expect("steps"), full);
        verify_chain(&with_root, NOW, &full, &GpuRoots::NVIDIA).expect("cached walk");
    }

    #[test]
    fn a_duplicated_leaf_is_refused_on_every_path() {
        let dup = chain(&[0, 0, 1, 2, 3]);
        for e in refused_everywhere(&dup, "leaf twice") {
            assert!(
                matches!(
                    e,
                    GpuError::CertDuplicate { index: 1, first: 0 } | GpuError::CertIssuer { .. }
                ),
                "{e:?}"
            );
        }
        // The step path names the duplicate before paying for any signature.
        let err = verify_chain_step(&dup, NOW, &BTreeSet::new(), 1, &GpuRoots::NVIDIA).unwrap_err();
        assert_eq!(err, GpuError::CertDuplicate { index: 1, first: 0 });
        assert_eq!(err.code(), "gpu_cert_duplicate");
    }

    #[test]
    fn duplicated_or_extra_certificates_are_refused_on_every_path() {
        let rim_root = vector("nvidia-hopper-single/verifier_RIM_root.pem");
        let b = blocks();
        let cases = [
            ("BROM twice", chain(&[0, 1, 1, 2, 3])),
            ("ICA twice", chain(&[0, 1, 2, 2, 3])),
            ("Identity twice", chain(&[0, 1, 2, 3, 3])),
            (
                "unrelated CA in the middle",
                format!("{}{}{rim_root}{}{}", b[0], b[1], b[2], b[3]),
            ),
            ("unrelated CA on top", format!("{}{rim_root}", honest())),
            (
                "pinned root twice",
                format!(
                    "{}{NVIDIA_DEVICE_ROOT_PEM}{NVIDIA_DEVICE_ROOT_PEM}",
                    honest()
                ),
            ),
            ("leaf only", chain(&[0])),
            ("an intermediate missing", chain(&[0, 1, 3])),
        ];
        for (what, pem_chain) in cases {
            for e in refused_everywhere(&pem_chain, what) {
                assert!(
                    matches!(
                        e,
                        GpuError::CertDuplicate { .. }
                            | GpuError::CertIssuer { .. }
                            | GpuError::UntrustedRoot
                    ),
                    "{what}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn cached_certificates_are_not_trusted_outside_their_validity() {
        let full = cache_in_steps(&honest(), 4).expect("steps");
        let ev = evidence(honest());
        for now in [BEFORE_ICA, AFTER_ALL] {
            for cache in [&BTreeSet::new(), &full] {
                let err = crate::nvidia::verify_gpu_evidence(
                    &ev,
                    &HOPPER_NONCE,
                    now,
                    cache,
                    &GpuRoots::NVIDIA,
                )
                .unwrap_err();
                assert!(
                    matches!(err, GpuError::CertValidity { .. }),
                    "{now}: {err:?}"
                );
                let err =
                    verify_chain_step(&honest(), now, cache, 3, &GpuRoots::NVIDIA).unwrap_err();
                assert!(
                    matches!(err, GpuError::CertValidity { .. }),
                    "{now}: {err:?}"
                );
            }
        }
    }
}
