//! Crypto providers. Quote verification is dominated by P-256 ECDSA (certificate chains, CRLs,
//! TCB info / QE identity, QE report, quote) and SHA-256; on NEAR both go through host functions,
//! which cost a fraction of the same work in wasm. P-384 (NVIDIA), SHA-384 (RTMR replay) and
//! SHA3-384 (key binding) have no NEAR host function and always run in Rust.

use dcap_qvl::config::Config;

/// The primitives the verifiers need. Implementations are zero-sized marker types.
pub trait Crypto {
    /// dcap-qvl configuration (X.509 parser, signature encoder, P-256 + SHA-256 provider).
    type Dcap: Config;
    /// SHA-256 of `data`.
    fn sha256(&self, data: &[u8]) -> [u8; 32];
    /// Ed25519 signature check (dev attestations).
    fn ed25519_verify(&self, signature: &[u8; 64], message: &[u8], public_key: &[u8; 32]) -> bool;
}

/// Pure-Rust crypto (RustCrypto crates): host builds and any wasm runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

impl Crypto for RustCrypto {
    type Dcap = dcap_qvl::configs::RustCryptoConfig;

    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }

    fn ed25519_verify(&self, signature: &[u8; 64], message: &[u8], public_key: &[u8; 32]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

#[cfg(feature = "near")]
pub use near::NearCrypto;

/// What contracts use: [`NearCrypto`] with the `near` feature, else [`RustCrypto`].
#[cfg(feature = "near")]
pub type DefaultCrypto = NearCrypto;
/// What contracts use: [`NearCrypto`] with the `near` feature, else [`RustCrypto`].
#[cfg(not(feature = "near"))]
pub type DefaultCrypto = RustCrypto;

#[cfg(feature = "near")]
mod near {
    use super::{Crypto, PrehashP256Sha256};
    use dcap_qvl::config::{Config, CryptoProvider};
    use rustls_pki_types::SignatureVerificationAlgorithm;

    /// P-256 through `env::p256_verify`, SHA-256 through `env::sha256_array`, Ed25519 through
    /// `env::ed25519_verify` (NEAR host functions; near-sdk's mocked blockchain in unit tests).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct NearCrypto;

    impl Crypto for NearCrypto {
        type Dcap = NearDcapConfig;

        fn sha256(&self, data: &[u8]) -> [u8; 32] {
            near_sdk::env::sha256_array(data)
        }

        fn ed25519_verify(
            &self,
            signature: &[u8; 64],
            message: &[u8],
            public_key: &[u8; 32],
        ) -> bool {
            near_sdk::env::ed25519_verify(signature, message, public_key)
        }
    }

    /// dcap-qvl config: the audited X.509 parser and signature encoder, NEAR host crypto.
    pub struct NearDcapConfig;

    impl Config for NearDcapConfig {
        type X509 = dcap_qvl::x509::X509CertBackend;
        type SigEncoder = dcap_qvl::signature::DerSigEncoder;
        type Crypto = NearDcapCrypto;
    }

    pub struct NearDcapCrypto;

    fn near_sha256(data: &[u8]) -> [u8; 32] {
        near_sdk::env::sha256_array(data)
    }

    static NEAR_P256: PrehashP256Sha256 = PrehashP256Sha256 {
        verify_prehash: near_sdk::env::p256_verify,
        sha256: near_sha256,
    };

    impl CryptoProvider for NearDcapCrypto {
        fn sig_algo() -> &'static dyn SignatureVerificationAlgorithm {
            &NEAR_P256
        }

        fn sha256(data: &[u8]) -> [u8; 32] {
            near_sha256(data)
        }

        fn sha384(data: &[u8]) -> [u8; 48] {
            use sha2::Digest;
            sha2::Sha384::digest(data).into()
        }
    }
}

#[cfg(any(feature = "near", test))]
/// ECDSA P-256 / SHA-256 for webpki on top of a prehash verifier that takes what NEAR's
/// `p256_verify` takes: raw `r || s`, a 32-byte digest and a compressed SEC1 key.
pub(crate) struct PrehashP256Sha256 {
    pub verify_prehash: fn(&[u8; 64], &[u8; 32], &[u8; 33]) -> bool,
    pub sha256: fn(&[u8]) -> [u8; 32],
}

#[cfg(any(feature = "near", test))]
impl core::fmt::Debug for PrehashP256Sha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrehashP256Sha256")
    }
}

#[cfg(any(feature = "near", test))]
impl rustls_pki_types::SignatureVerificationAlgorithm for PrehashP256Sha256 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), rustls_pki_types::InvalidSignature> {
        use rustls_pki_types::InvalidSignature;
        let key = compress_p256_point(public_key).ok_or(InvalidSignature)?;
        let sig = der_ecdsa_to_raw_p256(signature).ok_or(InvalidSignature)?;
        if (self.verify_prehash)(&sig, &(self.sha256)(message), &key) {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
        rustls_pki_types::alg_id::ECDSA_P256
    }

    fn signature_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
        rustls_pki_types::alg_id::ECDSA_SHA256
    }
}

#[cfg(any(feature = "near", test))]
/// SEC1 uncompressed P-256 point (`04 || x || y`) to compressed (`02|03 || x`), as
/// `env::p256_verify` wants. `None` for any other encoding.
pub(crate) fn compress_p256_point(sec1: &[u8]) -> Option<[u8; 33]> {
    let (&tag, xy) = sec1.split_first()?;
    if tag != 0x04 || xy.len() != 64 {
        return None;
    }
    let (x, y) = xy.split_at(32);
    let mut out = [0u8; 33];
    out[0] = 0x02 | (y[31] & 1);
    out[1..].copy_from_slice(x);
    Some(out)
}

#[cfg(any(feature = "near", test))]
/// DER `SEQUENCE { INTEGER r, INTEGER s }` to raw `r || s`, each left-padded to 32 bytes.
pub(crate) fn der_ecdsa_to_raw_p256(der: &[u8]) -> Option<[u8; 64]> {
    const N: usize = 32;
    let (tag, body, rest) = crate::der_tlv::split(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (rt, r, body) = crate::der_tlv::split(body)?;
    let (st, s, body) = crate::der_tlv::split(body)?;
    if rt != 0x02 || st != 0x02 || !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, int) in [r, s].into_iter().enumerate() {
        let int = strip_leading_zeros(int);
        if int.len() > N {
            return None;
        }
        let start = i * N + (N - int.len());
        out[start..start + int.len()].copy_from_slice(int);
    }
    Some(out)
}

#[cfg(any(feature = "near", test))]
fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcap_qvl::config::{Config, CryptoProvider};

    /// The NEAR adaptor with RustCrypto's prehash verifier in place of the host function:
    /// proves the key compression, signature conversion and prehashing on real quotes.
    struct PrehashCrypto;
    struct PrehashConfig;
    struct PrehashProvider;

    fn rc_verify_prehash(sig: &[u8; 64], digest: &[u8; 32], key: &[u8; 33]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let (Ok(key), Ok(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key),
            p256::ecdsa::Signature::from_slice(sig),
        ) else {
            return false;
        };
        key.verify_prehash(digest, &sig).is_ok()
    }

    fn rc_sha256(data: &[u8]) -> [u8; 32] {
        RustCrypto.sha256(data)
    }

    static PREHASH_P256: PrehashP256Sha256 = PrehashP256Sha256 {
        verify_prehash: rc_verify_prehash,
        sha256: rc_sha256,
    };

    impl CryptoProvider for PrehashProvider {
        fn sig_algo() -> &'static dyn rustls_pki_types::SignatureVerificationAlgorithm {
            &PREHASH_P256
        }
        fn sha256(data: &[u8]) -> [u8; 32] {
            rc_sha256(data)
        }
        fn sha384(data: &[u8]) -> [u8; 48] {
            use sha2::Digest;
            sha2::Sha384::digest(data).into()
        }
    }

    impl Config for PrehashConfig {
        type X509 = dcap_qvl::x509::X509CertBackend;
        type SigEncoder = dcap_qvl::signature::DerSigEncoder;
        type Crypto = PrehashProvider;
    }

    impl Crypto for PrehashCrypto {
        type Dcap = PrehashConfig;
        fn sha256(&self, data: &[u8]) -> [u8; 32] {
            rc_sha256(data)
        }
        fn ed25519_verify(&self, s: &[u8; 64], m: &[u8], k: &[u8; 32]) -> bool {
            RustCrypto.ed25519_verify(s, m, k)
        }
    }

    #[test]
    fn prehash_adaptor_verifies_the_dstack_node_like_rustcrypto() {
        let path = format!(
            "{}/intel-tdx-dstack-node/public_data.json",
            crate::TESTDATA_DIR
        );
        let json = std::fs::read(path).expect("dstack vector");
        let bundle = crate::bundle_from_dstack_public_data(&json).expect("bundle");
        let policy = crate::VerifyPolicy::default();
        let now = 1_786_622_400;
        let a = crate::verify_bundle(&bundle, now, &policy, &PrehashCrypto).expect("adaptor");
        let b = crate::verify_bundle(&bundle, now, &policy, &RustCrypto).expect("rustcrypto");
        assert_eq!(a, b);
        let mut bad = bundle.clone();
        if let Some(t) = bad.tdx.as_mut() {
            t.collateral.qe_identity_signature[5] ^= 1;
        }
        let err = crate::verify_bundle(&bad, now, &policy, &PrehashCrypto).unwrap_err();
        assert!(err.to_string().contains("qe_identity"), "{err}");
    }

    #[test]
    fn der_signature_roundtrip_through_p256() {
        use p256::ecdsa::{Signature, SigningKey, signature::Signer};
        let key = SigningKey::from_slice(&[7u8; 32]).expect("valid scalar");
        let sig: Signature = key.sign(b"message");
        let der = sig.to_der();
        let raw = der_ecdsa_to_raw_p256(der.as_bytes()).expect("parses");
        assert_eq!(&raw[..], &sig.to_bytes()[..]);
        // A truncated DER signature is refused, never panics.
        for n in 0..der.as_bytes().len() {
            let _ = der_ecdsa_to_raw_p256(&der.as_bytes()[..n]);
        }
        assert!(der_ecdsa_to_raw_p256(&der.as_bytes()[..5]).is_none());
    }

    #[test]
    fn compresses_uncompressed_points() {
        use p256::ecdsa::SigningKey;
        let key = SigningKey::from_slice(&[9u8; 32]).expect("valid scalar");
        let vk = key.verifying_key();
        let uncompressed = vk.to_sec1_point(false);
        let compressed = vk.to_sec1_point(true);
        assert_eq!(
            compress_p256_point(uncompressed.as_bytes()).expect("uncompressed")[..],
            compressed.as_bytes()[..]
        );
        assert!(compress_p256_point(compressed.as_bytes()).is_none());
        assert!(compress_p256_point(&[]).is_none());
    }
}
