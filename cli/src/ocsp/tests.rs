//! OCSP checks against responses made here: a test CA (P-384) issues a RIM signer and a
//! delegated OCSP responder (rcgen), responses are built with x509-ocsp's types and signed
//! with ring. Nothing reaches the internet: the online path talks to a local axum responder.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair};
use x509_cert::der::asn1::{BitString, GeneralizedTime};
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{OcspGeneralizedTime, ResponderId, ResponseData, RevokedInfo, SingleResponse};

use super::*;

/// 2026-01-01 00:00:00 UTC, the verification time of these tests.
const NOW: u64 = 1_767_225_600;

/// A CA, a RIM signer it issued, a delegated responder it issued, a responder certificate
/// without the OCSP-signing purpose, and a stranger's key (PKCS#8, for ring).
struct Pki {
    ca: Vec<u8>,
    ca_key: Vec<u8>,
    signer: Vec<u8>,
    responder: Vec<u8>,
    responder_key: Vec<u8>,
    plain: Vec<u8>,
    plain_key: Vec<u8>,
    stranger_key: Vec<u8>,
}

fn params(cn: &str, serial: u8) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(vec![serial]));
    p
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key")
}

fn pki() -> Pki {
    let ca_key = key();
    let mut ca = params("Test RIM CA", 1);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_der = ca.self_signed(&ca_key).expect("CA").der().to_vec();
    let ca_pkcs8 = ca_key.serialize_der();
    let issuer = Issuer::new(ca, ca_key);
    let issue = |p: CertificateParams, k: &KeyPair| p.signed_by(k, &issuer).expect("issued");

    let signer_key = key();
    let signer = issue(params("Test RIM Signer", 2), &signer_key);
    let responder_key = key();
    let mut responder = params("Test OCSP Responder", 3);
    responder.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    let responder = issue(responder, &responder_key);
    let plain_key = key();
    let plain = issue(params("Test Not A Responder", 4), &plain_key);
    Pki {
        ca: ca_der,
        ca_key: ca_pkcs8,
        signer: signer.der().to_vec(),
        responder: responder.der().to_vec(),
        responder_key: responder_key.serialize_der(),
        plain: plain.der().to_vec(),
        plain_key: plain_key.serialize_der(),
        stranger_key: key().serialize_der(),
    }
}

impl Pki {
    fn pair(&self) -> Pair {
        Pair::parse(&self.signer, &self.ca, 0).expect("pair")
    }
}

/// What a test responder answers.
struct Answer<'a> {
    status: CertStatus,
    this_update: u64,
    next_update: Option<u64>,
    /// `None`: no nonce extension.
    nonce: Option<Vec<u8>>,
    key: &'a [u8],
    certs: Vec<&'a [u8]>,
}

impl<'a> Answer<'a> {
    fn good(query: &Query, key: &'a [u8]) -> Self {
        Self {
            status: CertStatus::good(),
            this_update: NOW - 3600,
            next_update: Some(NOW + 3600),
            nonce: Some(query.nonce.to_vec()),
            key,
            certs: Vec::new(),
        }
    }
}

fn time(secs: u64) -> OcspGeneralizedTime {
    OcspGeneralizedTime(
        GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).expect("time"),
    )
}

fn respond(pair: &Pair, cert_id: &CertId, a: Answer<'_>) -> Vec<u8> {
    let nonce = a.nonce.map(|n| {
        vec![Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).expect("n").to_der().expect("der"))
                .expect("nonce"),
        }]
    });
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByName(pair.issuer.tbs_certificate.subject.clone()),
        produced_at: time(a.this_update),
        responses: vec![SingleResponse {
            cert_id: cert_id.clone(),
            cert_status: a.status,
            this_update: time(a.this_update),
            next_update: a.next_update.map(time),
            single_extensions: None,
        }],
        response_extensions: nonce,
    };
    let tbs = data.to_der().expect("tbs");
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, a.key, &rng).expect("key");
    let signature = key.sign(&rng, &tbs).expect("sign");
    let certs = (!a.certs.is_empty()).then(|| {
        a.certs
            .iter()
            .map(|der| Certificate::from_der(der).expect("cert"))
            .collect()
    });
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA384,
            parameters: None,
        },
        signature: BitString::from_bytes(signature.as_ref()).expect("bits"),
        certs,
    };
    OcspResponse::successful(basic)
        .expect("response")
        .to_der()
        .expect("der")
}

/// Checks `answer(query)` for the PKI's signer at NOW.
fn check<'a>(pki: &'a Pki, answer: impl FnOnce(&Query) -> Answer<'a>) -> Result<(), OcspError> {
    let pair = pki.pair();
    let query = request(&pair, [7; NONCE_LEN]).expect("request");
    let response = respond(&pair, &query.cert_id, answer(&query));
    check_response(&pair, &query, &response, NOW)
}

fn refusal(result: Result<(), OcspError>) -> String {
    result.expect_err("refused").to_string()
}

#[test]
fn the_request_asks_by_sha384_cert_id_with_a_critical_nonce() {
    let pki = pki();
    let pair = pki.pair();
    let query = request(&pair, [9; NONCE_LEN]).expect("request");
    let parsed = OcspRequest::from_der(&query.der).expect("DER request");
    let [one] = parsed.tbs_request.request_list.as_slice() else {
        panic!("one certificate per request");
    };
    assert_eq!(one.req_cert.hash_algorithm.oid, ID_SHA384);
    assert_eq!(one.req_cert.issuer_name_hash.as_bytes().len(), 48);
    assert_eq!(
        one.req_cert.serial_number,
        pair.cert.tbs_certificate.serial_number
    );
    let nonce = parsed
        .tbs_request
        .request_extensions
        .as_ref()
        .and_then(|e| e.iter().find(|e| e.extn_id == ID_PKIX_OCSP_NONCE))
        .expect("nonce extension");
    assert!(nonce.critical);
    assert_eq!(parsed.nonce().expect("nonce").0.as_bytes(), [9; NONCE_LEN]);
}

#[test]
fn good_from_the_issuer_is_accepted() {
    let pki = pki();
    check(&pki, |q| Answer::good(q, &pki.ca_key)).expect("good");
}

#[test]
fn good_from_a_delegated_responder_is_accepted() {
    let pki = pki();
    check(&pki, |q| Answer {
        certs: vec![&pki.responder],
        ..Answer::good(q, &pki.responder_key)
    })
    .expect("good from the delegated responder");
}

#[test]
fn revoked_is_refused_naming_the_certificate_the_time_and_the_reason() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer {
        status: CertStatus::Revoked(RevokedInfo {
            revocation_time: time(NOW - 86_400),
            revocation_reason: Some(CrlReason::KeyCompromise),
        }),
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("CN=Test RIM Signer"), "{message}");
    assert!(
        message.contains("REVOKED since 2025-12-31T00:00:00Z"),
        "{message}"
    );
    assert!(message.contains("KeyCompromise"), "{message}");
}

#[test]
fn certificate_hold_is_refused_too() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer {
        status: CertStatus::Revoked(RevokedInfo {
            revocation_time: time(NOW - 60),
            revocation_reason: Some(CrlReason::CertificateHold),
        }),
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("CertificateHold"), "{message}");
}

#[test]
fn unknown_is_refused() {
    let pki = pki();
    let error = check(&pki, |q| Answer {
        status: CertStatus::unknown(),
        ..Answer::good(q, &pki.ca_key)
    })
    .expect_err("refused");
    assert!(matches!(error, OcspError::Unknown { .. }), "{error}");
}

#[test]
fn a_response_signed_by_an_unrelated_key_is_refused() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer::good(q, &pki.stranger_key)));
    assert!(
        message.contains("not signed by the certificate's issuer"),
        "{message}"
    );
    // The stranger includes the genuine responder's certificate: it does not sign for it.
    let message = refusal(check(&pki, |q| Answer {
        certs: vec![&pki.responder],
        ..Answer::good(q, &pki.stranger_key)
    }));
    assert!(message.contains("does not verify"), "{message}");
}

#[test]
fn a_responder_certificate_without_the_ocsp_signing_purpose_is_refused() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer {
        certs: vec![&pki.plain],
        ..Answer::good(q, &pki.plain_key)
    }));
    assert!(message.contains("id-kp-OCSPSigning"), "{message}");
}

#[test]
fn a_wrong_or_missing_nonce_is_refused() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer {
        nonce: Some(vec![8; NONCE_LEN]),
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("nonce differs"), "{message}");
    let message = refusal(check(&pki, |q| Answer {
        nonce: None,
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("did not echo"), "{message}");
}

#[test]
fn a_stale_or_future_response_is_refused() {
    let pki = pki();
    let message = refusal(check(&pki, |q| Answer {
        this_update: NOW - 7 * 86_400,
        next_update: Some(NOW - 86_400),
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("stale: nextUpdate"), "{message}");
    let message = refusal(check(&pki, |q| Answer {
        this_update: NOW - 2 * 86_400,
        next_update: None,
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("no nextUpdate"), "{message}");
    let message = refusal(check(&pki, |q| Answer {
        this_update: NOW + 86_400,
        next_update: Some(NOW + 2 * 86_400),
        ..Answer::good(q, &pki.ca_key)
    }));
    assert!(message.contains("after the verification time"), "{message}");
}

#[test]
fn a_status_for_another_certificate_is_refused() {
    let pki = pki();
    let pair = pki.pair();
    let query = request(&pair, [7; NONCE_LEN]).expect("request");
    let other = Pair::parse(&pki.plain, &pki.ca, 0).expect("pair");
    let other_id = request(&other, [7; NONCE_LEN]).expect("other").cert_id;
    let response = respond(&pair, &other_id, Answer::good(&query, &pki.ca_key));
    let message = refusal(check_response(&pair, &query, &response, NOW));
    assert!(
        message.contains("no status for this certificate"),
        "{message}"
    );
}

#[test]
fn a_flipped_byte_in_the_signed_response_data_is_refused() {
    let pki = pki();
    let pair = pki.pair();
    let query = request(&pair, [7; NONCE_LEN]).expect("request");
    let response = respond(&pair, &query.cert_id, Answer::good(&query, &pki.ca_key));
    check_response(&pair, &query, &response, NOW).expect("the unflipped response");
    // A byte of the CertID's issuer key hash: the response still parses, its signature fails.
    let hash = query.cert_id.issuer_key_hash.as_bytes();
    let at = response
        .windows(hash.len())
        .position(|w| w == hash)
        .expect("the CertID in the response");
    let mut flipped = response.clone();
    flipped[at + 5] ^= 1;
    let message = refusal(check_response(&pair, &query, &flipped, NOW));
    assert!(
        message.contains("not signed by the certificate's issuer"),
        "{message}"
    );
}

#[test]
fn nvidia_rim_certificates_name_nvidia_s_responder() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/attestation/testdata/nvidia-rims/1010_0200_882_96005E0001_PROD.swidtag"
    );
    let xml = std::fs::read_to_string(path).expect("RIM");
    let rim = attestation::nvidia::rim::verify_rim_chain(
        &xml,
        attestation::nvidia::ReferenceKind::Vbios,
        attestation::nvidia::NVIDIA_RIM_ROOT_PEM,
        1_704_067_200,
    )
    .expect("RIM verifies");
    for der in &rim.chain[..rim.chain.len() - 1] {
        let cert = Certificate::from_der(der).expect("cert");
        assert_eq!(
            responder_url(&cert).as_deref(),
            Some("http://ocsp.ndis.nvidia.com")
        );
    }
}

/// A local responder for the PKI's signer: answers `good`, signed by the CA, to any request.
async fn serve(pki: std::sync::Arc<Pki>) -> String {
    use axum::body::Bytes;
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: Bytes| {
            let pki = pki.clone();
            async move {
                let parsed = OcspRequest::from_der(&body).expect("a DER OCSP request");
                let nonce: [u8; NONCE_LEN] = parsed
                    .nonce()
                    .expect("nonce")
                    .0
                    .as_bytes()
                    .try_into()
                    .expect("32 bytes");
                let cert_id = parsed.tbs_request.request_list[0].req_cert.clone();
                let query = Query {
                    der: Vec::new(),
                    nonce,
                    cert_id: cert_id.clone(),
                };
                respond(&pki.pair(), &cert_id, Answer::good(&query, &pki.ca_key))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn the_chain_is_checked_online_against_the_responder() {
    let pki = std::sync::Arc::new(pki());
    let url = serve(pki.clone()).await;
    let checked = check_chain(
        &reqwest::Client::new(),
        &Responder {
            url_override: Some(url),
        },
        &[pki.signer.clone(), pki.ca.clone()],
        NOW,
    )
    .await
    .expect("good");
    assert_eq!(checked, ["CN=Test RIM Signer"]);
}

#[tokio::test]
async fn an_unreachable_responder_says_how_to_proceed() {
    let pki = pki();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let error = check_chain(
        &reqwest::Client::new(),
        &Responder {
            url_override: Some(url.clone()),
        },
        &[pki.signer.clone(), pki.ca.clone()],
        NOW,
    )
    .await
    .expect_err("unreachable");
    let message = error.to_string();
    assert!(matches!(error, OcspError::Unreachable { .. }), "{message}");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("--revocation skip"), "{message}");
}

#[tokio::test]
async fn a_responder_that_never_stops_talking_is_cut_off_at_the_limit() {
    let pki = pki();
    // A streamed body with no Content-Length, far over the limit: read chunk by chunk and
    // abandoned, never held whole.
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|| async {
            let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(vec![0u8; 64 << 10]));
            axum::body::Body::from_stream(futures_util::stream::iter(chunks))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let error = check_chain(
        &reqwest::Client::new(),
        &Responder {
            url_override: Some(url),
        },
        &[pki.signer.clone(), pki.ca.clone()],
        NOW,
    )
    .await
    .expect_err("too large");
    let message = error.to_string();
    assert!(
        message.contains(&format!("over {MAX_RESPONSE_BYTES} bytes")),
        "{message}"
    );
}
