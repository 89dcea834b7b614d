//! Revocation of the certificates that sign NVIDIA's RIMs, by OCSP (RFC 6960), as nvtrust's
//! local GPU verifier checks them (`ocsp_certificate_chain_validation`): one request per
//! certificate below the root (the signing certificate and every intermediate), its CertID
//! hashed with SHA-384, a fresh 32-byte nonce in a critical nonce extension, POSTed as
//! `application/ocsp-request`.
//!
//! A response is accepted only if it is a successful basic response, signed by the
//! certificate's issuer or by a responder certificate that issuer signed for
//! id-kp-OCSPSigning (valid at the verification time), echoes the nonce, holds a single
//! response for exactly this CertID that is fresh at the verification time (thisUpdate not in
//! the future, nextUpdate not past) and says `good`. `revoked` (whatever the reason, including
//! certificateHold, which nvtrust only tolerates behind an opt-in) and `unknown` are refused.

use std::time::Duration;

use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, OctetString, UintRef};
use x509_cert::der::{Decode, Encode, Header, Reader, SliceReader, Tag};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, ExtendedKeyUsage};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

/// NVIDIA's OCSP responder, asked when a certificate names none in its AIA extension (NVIDIA's
/// RIM certificates name `http://ocsp.ndis.nvidia.com`).
pub const NVIDIA_OCSP_URL: &str = "https://ocsp.ndis.nvidia.com/";

/// Bytes of the request nonce (nvtrust's `SIZE_OF_NONCE_IN_BYTES`).
pub const NONCE_LEN: usize = 32;

/// How long to wait for the responder.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Clock skew tolerated between the responder and the verification time, seconds.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// A response without nextUpdate is accepted this long after its thisUpdate, seconds.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE_SECS: u64 = 24 * 3600;

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const ID_PE_AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Why a certificate's revocation status was not established as good.
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    #[error("certificate {subject} is REVOKED since {time} (reason: {reason})")]
    Revoked {
        subject: String,
        time: String,
        reason: String,
    },
    #[error(
        "the OCSP responder answers 'unknown' for certificate {subject}: it does not vouch for it"
    )]
    Unknown { subject: String },
    #[error(
        "cannot check the revocation of certificate {subject}: the OCSP responder {url} did not answer ({reason}). \
         Retry when it is reachable, point --ocsp-url at a responder that is, or rerun with \
         --revocation skip to produce the sets without a revocation check"
    )]
    Unreachable {
        subject: String,
        url: String,
        reason: String,
    },
    #[error("OCSP response for certificate {subject} refused: {reason}")]
    BadResponse { subject: String, reason: String },
    #[error("certificate {index} of the RIM chain: {reason}")]
    Certificate { index: usize, reason: String },
}

/// One OCSP request, and what its response must answer.
#[derive(Debug, Clone)]
pub struct Query {
    /// The DER request to POST.
    pub der: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    cert_id: CertId,
}

/// A certificate and its issuer, parsed.
pub struct Pair {
    pub cert: Certificate,
    pub issuer: Certificate,
}

impl Pair {
    /// Parses `cert_der` and `issuer_der` (`index`: the certificate's place in the chain, for
    /// errors).
    pub fn parse(cert_der: &[u8], issuer_der: &[u8], index: usize) -> Result<Self, OcspError> {
        let parse = |der: &[u8], index: usize| {
            Certificate::from_der(der).map_err(|e| OcspError::Certificate {
                index,
                reason: e.to_string(),
            })
        };
        Ok(Self {
            cert: parse(cert_der, index)?,
            issuer: parse(issuer_der, index + 1)?,
        })
    }

    /// The certificate's subject, for messages.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// The SHA-384 CertID of the certificate (RFC 6960 4.1.1: hashes of the issuer's DER name
    /// and of its public key's BIT STRING contents, and the serial number).
    fn cert_id(&self) -> Result<CertId, OcspError> {
        let issuer = &self.issuer.tbs_certificate;
        let name = issuer
            .subject
            .to_der()
            .map_err(|e| self.bad(format!("issuer name: {e}")))?;
        let key = issuer
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let octets = |bytes: &[u8]| {
            OctetString::new(bytes).map_err(|e| self.bad(format!("CertID hash: {e}")))
        };
        Ok(CertId {
            // With NULL parameters, as OpenSSL and nvtrust (python cryptography) send it.
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA384,
                parameters: Some(x509_cert::der::asn1::Null.into()),
            },
            issuer_name_hash: octets(&Sha384::digest(&name))?,
            issuer_key_hash: octets(&Sha384::digest(key))?,
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        })
    }

    fn bad(&self, reason: impl Into<String>) -> OcspError {
        OcspError::BadResponse {
            subject: self.subject(),
            reason: reason.into(),
        }
    }
}

/// The OCSP responder a certificate's AIA extension names (the first HTTP(S) one).
pub fn responder_url(cert: &Certificate) -> Option<String> {
    let ext = find_extension(cert, ID_PE_AUTHORITY_INFO_ACCESS)?;
    let aia = AuthorityInfoAccessSyntax::from_der(ext.extn_value.as_bytes()).ok()?;
    aia.0.iter().find_map(|ad| match &ad.access_location {
        GeneralName::UniformResourceIdentifier(uri)
            if ad.access_method == ID_AD_OCSP
                && (uri.as_str().starts_with("http://")
                    || uri.as_str().starts_with("https://")) =>
        {
            Some(uri.as_str().to_owned())
        }
        _ => None,
    })
}

fn find_extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&Extension> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
}

/// Builds the request for `pair.cert` with `nonce` (critical nonce extension, as nvtrust).
pub fn request(pair: &Pair, nonce: [u8; NONCE_LEN]) -> Result<Query, OcspError> {
    let cert_id = pair.cert_id()?;
    let encode_err = |e: x509_cert::der::Error| pair.bad(format!("encoding the request: {e}"));
    let nonce_value = OctetString::new(nonce.as_slice())
        .and_then(|n| n.to_der())
        .and_then(OctetString::new)
        .map_err(encode_err)?;
    let request = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: true,
                extn_value: nonce_value,
            }]),
        },
        optional_signature: None,
    };
    Ok(Query {
        der: request.to_der().map_err(encode_err)?,
        nonce,
        cert_id,
    })
}

/// Checks `response_der` answers `query` about `pair.cert` with `good`, at `now` (unix
/// seconds). See the module documentation for every check.
pub fn check_response(
    pair: &Pair,
    query: &Query,
    response_der: &[u8],
    now: u64,
) -> Result<(), OcspError> {
    let bad = |reason: String| pair.bad(reason);
    let response = OcspResponse::from_der(response_der)
        .map_err(|e| bad(format!("not a DER OCSP response: {e}")))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(bad(format!(
            "the responder answered {:?}",
            response.response_status
        )));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| bad("a successful response without a body".into()))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(bad(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der)
        .map_err(|e| bad(format!("not a basic OCSP response: {e}")))?;
    // The signature covers the bytes the responder sent, not a re-encoding.
    let tbs = first_element(basic_der).map_err(|e| bad(format!("response data: {e}")))?;
    check_signer(pair, &basic, tbs, now)?;

    let echoed = basic
        .nonce()
        .ok_or_else(|| bad("the responder did not echo the request's nonce".into()))?;
    if echoed.0.as_bytes() != query.nonce {
        return Err(bad(
            "the nonce differs from the request's (a replayed or misdirected response)".into(),
        ));
    }

    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| same_cert_id(&r.cert_id, &query.cert_id))
        .ok_or_else(|| bad("no status for this certificate in the response".into()))?;
    let this_update = unix(&single.this_update.0);
    if this_update > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(bad(format!(
            "thisUpdate {} is after the verification time",
            single.this_update.0.to_date_time()
        )));
    }
    match &single.next_update {
        Some(next) if unix(&next.0).saturating_add(CLOCK_SKEW_SECS) < now => {
            return Err(bad(format!(
                "stale: nextUpdate {} is before the verification time",
                next.0.to_date_time()
            )));
        }
        None if now.saturating_sub(this_update) > MAX_AGE_WITHOUT_NEXT_UPDATE_SECS => {
            return Err(bad(format!(
                "stale: thisUpdate {} is more than a day before the verification time and no \
                 nextUpdate is given",
                single.this_update.0.to_date_time()
            )));
        }
        _ => {}
    }

    match &single.cert_status {
        CertStatus::Good(_) => Ok(()),
        CertStatus::Revoked(info) => Err(OcspError::Revoked {
            subject: pair.subject(),
            time: info.revocation_time.0.to_date_time().to_string(),
            reason: info
                .revocation_reason
                .map_or_else(|| "not given".to_owned(), |r| format!("{r:?}")),
        }),
        CertStatus::Unknown(_) => Err(OcspError::Unknown {
            subject: pair.subject(),
        }),
    }
}

fn same_cert_id(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

fn unix(t: &x509_cert::der::asn1::GeneralizedTime) -> u64 {
    t.to_unix_duration().as_secs()
}

/// The raw first element of a DER SEQUENCE (a signed structure's to-be-signed part).
fn first_element(der: &[u8]) -> Result<&[u8], x509_cert::der::Error> {
    let mut reader = SliceReader::new(der)?;
    let header = Header::decode(&mut reader)?;
    header.tag.assert_eq(Tag::Sequence)?;
    reader.tlv_bytes()
}

/// The response is signed by the certificate's issuer, or by a responder certificate in the
/// response that the issuer signed, for id-kp-OCSPSigning, valid at `now`.
fn check_signer(
    pair: &Pair,
    basic: &BasicOcspResponse,
    tbs: &[u8],
    now: u64,
) -> Result<(), OcspError> {
    let signature = basic.signature.raw_bytes();
    let algorithm = &basic.signature_algorithm.oid;
    let issuer_key = &pair.issuer.tbs_certificate.subject_public_key_info;
    if verify_ecdsa(issuer_key, algorithm, tbs, signature).is_ok() {
        return Ok(());
    }
    let mut refusals = Vec::new();
    for responder in basic.certs.iter().flatten() {
        match delegated_responder(pair, responder, now)
            .and_then(|key| verify_ecdsa(key, algorithm, tbs, signature))
        {
            Ok(()) => return Ok(()),
            Err(why) => refusals.push(format!("{}: {why}", responder.tbs_certificate.subject)),
        }
    }
    Err(pair.bad(if refusals.is_empty() {
        "not signed by the certificate's issuer, and no responder certificate is included".into()
    } else {
        format!(
            "not signed by the certificate's issuer nor by a responder it delegated ({})",
            refusals.join("; ")
        )
    }))
}

/// The key of `responder` if the issuer delegated OCSP signing to it (RFC 6960 4.2.2.2).
fn delegated_responder<'a>(
    pair: &Pair,
    responder: &'a Certificate,
    now: u64,
) -> Result<&'a SubjectPublicKeyInfoOwned, String> {
    let tbs = &responder.tbs_certificate;
    if tbs.issuer != pair.issuer.tbs_certificate.subject {
        return Err("not issued by the certificate's issuer".into());
    }
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    verify_ecdsa(
        &pair.issuer.tbs_certificate.subject_public_key_info,
        &responder.signature_algorithm.oid,
        &tbs_der,
        responder.signature.raw_bytes(),
    )
    .map_err(|e| format!("its certificate's signature: {e}"))?;
    let eku = find_extension(responder, ID_CE_EXT_KEY_USAGE)
        .and_then(|ext| ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).ok());
    if !eku.is_some_and(|eku| eku.0.contains(&ID_KP_OCSP_SIGNING)) {
        return Err("its certificate is not for OCSP signing (id-kp-OCSPSigning)".into());
    }
    let not_before = tbs.validity.not_before.to_unix_duration().as_secs();
    let not_after = tbs.validity.not_after.to_unix_duration().as_secs();
    if now < not_before || now > not_after {
        return Err("its certificate is not valid at the verification time".into());
    }
    Ok(&tbs.subject_public_key_info)
}

/// Verifies an ECDSA (P-256 or P-384; SHA-256, -384 or -512) DER signature over `message`.
fn verify_ecdsa(
    key: &SubjectPublicKeyInfoOwned,
    algorithm: &ObjectIdentifier,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), String> {
    use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
    let digest: Vec<u8> = match *algorithm {
        ECDSA_WITH_SHA256 => Sha256::digest(message).to_vec(),
        ECDSA_WITH_SHA384 => Sha384::digest(message).to_vec(),
        ECDSA_WITH_SHA512 => Sha512::digest(message).to_vec(),
        other => return Err(format!("unsupported signature algorithm {other}")),
    };
    if key.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(format!("unsupported key algorithm {}", key.algorithm.oid));
    }
    let curve = key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or("an EC key without a named curve")?;
    let point = key.subject_public_key.raw_bytes();
    let bad = |_| "the signature does not verify".to_owned();
    match curve {
        SECP384R1 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| "not a P-384 point")?;
            let sig = p384::ecdsa::Signature::from_slice(&fixed_rs(der_signature, 48)?)
                .map_err(|_| "not a P-384 signature")?;
            key.verify_prehash(&digest, &sig).map_err(bad)
        }
        SECP256R1 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| "not a P-256 point")?;
            let sig = p256::ecdsa::Signature::from_slice(&fixed_rs(der_signature, 32)?)
                .map_err(|_| "not a P-256 signature")?;
            key.verify_prehash(&digest, &sig).map_err(bad)
        }
        other => Err(format!("unsupported curve {other}")),
    }
}

/// An ECDSA-Sig-Value (`SEQUENCE { r INTEGER, s INTEGER }`) as `r || s`, `size` bytes each.
fn fixed_rs(der_signature: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let not_der = |_| "the signature is not a DER ECDSA-Sig-Value".to_owned();
    let mut reader = SliceReader::new(der_signature).map_err(not_der)?;
    let (r, s) = reader
        .sequence(|seq| Ok((UintRef::decode(seq)?, UintRef::decode(seq)?)))
        .map_err(not_der)?;
    reader.finish(()).map_err(not_der)?;
    let mut out = Vec::with_capacity(2 * size);
    for scalar in [r.as_bytes(), s.as_bytes()] {
        if scalar.len() > size {
            return Err("a signature scalar is too long for the curve".into());
        }
        out.resize(out.len() + size - scalar.len(), 0);
        out.extend_from_slice(scalar);
    }
    Ok(out)
}

/// Where to ask about a chain's certificates.
#[derive(Debug, Clone, Default)]
pub struct Responder {
    /// Ask this URL for every certificate, whatever their AIA says (`--ocsp-url`).
    pub url_override: Option<String>,
}

/// Checks the revocation of every certificate of `chain` (DER, leaf first, each followed by
/// its issuer, ending with the trusted root, which is not checked) online, at `now`. Returns
/// the subjects checked, leaf first.
pub async fn check_chain(
    http: &reqwest::Client,
    responder: &Responder,
    chain: &[Vec<u8>],
    now: u64,
) -> Result<Vec<String>, OcspError> {
    let mut checked = Vec::new();
    for (index, pair) in chain.windows(2).enumerate() {
        let pair = Pair::parse(&pair[0], &pair[1], index)?;
        let url = responder
            .url_override
            .clone()
            .or_else(|| responder_url(&pair.cert))
            .unwrap_or_else(|| NVIDIA_OCSP_URL.to_owned());
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| pair.bad(format!("no randomness: {e}")))?;
        let query = request(&pair, nonce)?;
        let answer = post(http, &url, query.der.clone())
            .await
            .map_err(|reason| OcspError::Unreachable {
                subject: pair.subject(),
                url: url.clone(),
                reason,
            })?;
        check_response(&pair, &query, &answer, now)?;
        checked.push(pair.subject());
    }
    Ok(checked)
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/ocsp-request")
        .header(reqwest::header::ACCEPT, "application/ocsp-response")
        .timeout(TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    crate::http_read::read_limited(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| error_chain(&e))
}

/// Largest OCSP response read: NVIDIA's are about 2 KB (a signature, perhaps a responder
/// certificate); a responder sending more is not believed.
pub const MAX_RESPONSE_BYTES: usize = 64 << 10;

/// `e` and its sources ("error sending request: ... Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
