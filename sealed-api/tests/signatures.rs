//! Signed responses and the attestation report, checked by an independent port of NEAR AI
//! Cloud's verifier (nearai/nearai-cloud-verifier, py/chat_verifier.py `verify_chat` and
//! py/model_verifier.py `check_report_data`) and by published Ethereum and RFC 8032 vectors.

use attestation::{AttestationBundle, AttestationKind};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sealed_api::report::{AttestationReport, ReportError, SigningAddresses, report_data};
use sealed_api::signature::{SignatureError, personal_sign_hash, recover_signer, signed_text};
use sealed_api::{GatewayKey, ResponseSignature, ResponseSigner, SigningAlgo};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// web3.js `accounts.sign("Some data", KEY)` (its documentation's example).
const WEB3_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const WEB3_ADDRESS: &str = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";
const WEB3_SOME_DATA: &str = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";
/// RFC 8032 §7.1 TEST 1.
const RFC8032_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

fn key32(h: &str) -> [u8; 32] {
    hex::decode(h).expect("hex").try_into().expect("32 bytes")
}

fn signer() -> ResponseSigner {
    ResponseSigner::from_secrets(&key32(RFC8032_SK), &key32(WEB3_KEY)).expect("keys")
}

/// eth_account's `Account.recover_message(encode_defunct(text=text), signature=sig)`,
/// written out step by step (not through the crate's own `recover_signer`).
fn eth_account_recover(text: &str, signature: &str) -> String {
    let sig = hex::decode(signature.trim_start_matches("0x")).expect("hex");
    assert_eq!(sig.len(), 65);
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", text.len()).into_bytes();
    prefixed.extend_from_slice(text.as_bytes());
    let hash = Keccak256::digest(&prefixed);
    let v = if sig[64] >= 27 { sig[64] - 27 } else { sig[64] };
    let key = VerifyingKey::recover_from_prehash(
        &hash,
        &Signature::from_slice(&sig[..64]).expect("r, s"),
        RecoveryId::from_byte(v).expect("v"),
    )
    .expect("recovers");
    let point = key.to_sec1_point(false);
    format!(
        "0x{}",
        hex::encode(&Keccak256::digest(&point.as_bytes()[1..])[12..])
    )
}

/// `verify_chat`'s checks on a `/v1/signature/{id}` payload: (request hash matches,
/// response hash matches, signature valid).
fn nearai_verify_chat(
    payload: &serde_json::Value,
    request_body: &str,
    response_text: &str,
) -> (bool, bool, bool) {
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let text = payload["text"].as_str().expect("text");
    let parts: Vec<&str> = text.split(':').collect();
    assert!(parts.len() == 2 || parts.len() == 3, "text format");
    let (req, res) = if parts.len() == 3 {
        (parts[1], parts[2])
    } else {
        (parts[0], parts[1])
    };
    let recovered = eth_account_recover(text, payload["signature"].as_str().expect("signature"));
    let address = payload["signing_address"].as_str().expect("address");
    (
        req == sha(request_body),
        res == sha(response_text),
        recovered.to_lowercase() == address.to_lowercase(),
    )
}

#[test]
fn ecdsa_signing_matches_the_published_personal_sign_vector() {
    let s = signer();
    assert_eq!(s.address(SigningAlgo::Ecdsa), WEB3_ADDRESS);
    assert_eq!(
        hex::encode(personal_sign_hash(b"Some data")),
        "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
    );
    assert_eq!(
        recover_signer(b"Some data", WEB3_SOME_DATA),
        Ok(WEB3_ADDRESS.into())
    );
    // Our signature over "Some data" is the published one (RFC 6979, low s, v = 27 + id).
    let sig = s.sign_text(SigningAlgo::Ecdsa, "Some data".into());
    assert_eq!(sig.signature, WEB3_SOME_DATA);
    assert_eq!(sig.signing_address, WEB3_ADDRESS);
    assert_eq!(sig.verify(), Ok(()));
}

#[test]
fn ed25519_matches_rfc8032() {
    let s = signer();
    assert_eq!(s.address(SigningAlgo::Ed25519), RFC8032_PK);
    let sig = s.sign_text(SigningAlgo::Ed25519, String::new());
    assert_eq!(
        sig,
        ResponseSignature {
            text: String::new(),
            signature: RFC8032_SIG.into(),
            signing_address: RFC8032_PK.into(),
            signing_algo: SigningAlgo::Ed25519,
        }
    );
    assert_eq!(sig.verify(), Ok(()));
}

#[test]
fn our_signatures_pass_near_ai_clouds_verifier_steps() {
    let s = signer();
    let request_body = r#"{"model":"m","messages":[{"role":"user","content":"Hello, how are you?"}],"stream":true,"max_tokens":1}"#;
    let response_text = "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
    let [ecdsa, ed25519] = s.sign_both(request_body.as_bytes(), response_text.as_bytes());

    // The JSON shape of /v1/signature/{id}, field for field.
    let payload = serde_json::to_value(&ecdsa).expect("json");
    let mut keys: Vec<&str> = payload
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["signature", "signing_address", "signing_algo", "text"]
    );
    assert_eq!(payload["signing_algo"], "ecdsa");
    assert!(
        payload["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("0x") && s.len() == 132)
    );
    assert_eq!(
        nearai_verify_chat(&payload, request_body, response_text),
        (true, true, true)
    );
    // A different response body, or a signature by another key, fails their checks.
    assert_eq!(
        nearai_verify_chat(&payload, request_body, "data: [DONE]\n\n"),
        (true, false, true)
    );
    let mut forged = payload.clone();
    forged["signing_address"] = serde_json::json!("0x0000000000000000000000000000000000000001");
    assert!(!nearai_verify_chat(&forged, request_body, response_text).2);

    // ed25519: hex signature over the text's bytes, hex public key as the address.
    let ed = serde_json::to_value(&ed25519).expect("json");
    assert_eq!(ed["signing_algo"], "ed25519");
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&key32(ed["signing_address"].as_str().expect("a")))
            .expect("key");
    let sig: [u8; 64] = hex::decode(ed["signature"].as_str().expect("s"))
        .expect("hex")
        .try_into()
        .expect("64");
    assert!(
        vk.verify_strict(
            ed["text"].as_str().expect("t").as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig)
        )
        .is_ok()
    );

    // The crate's own client-side check agrees, and refuses every mismatch.
    for sig in [&ecdsa, &ed25519] {
        let attested = s.address(sig.signing_algo);
        assert_eq!(
            sig.verify_exchange(request_body.as_bytes(), response_text.as_bytes(), &attested),
            Ok(())
        );
        assert!(matches!(
            sig.verify_exchange(b"{}", response_text.as_bytes(), &attested),
            Err(SignatureError::RequestHash { .. })
        ));
        assert!(matches!(
            sig.verify_exchange(request_body.as_bytes(), b"", &attested),
            Err(SignatureError::ResponseHash { .. })
        ));
        assert!(matches!(
            sig.verify_exchange(request_body.as_bytes(), response_text.as_bytes(), "0xabc"),
            Err(SignatureError::WrongSigner { .. })
        ));
    }
    let mut tampered = ecdsa.clone();
    tampered.text = signed_text(b"other", response_text.as_bytes());
    assert!(tampered.verify().is_err());
    let mut tampered = ed25519.clone();
    tampered.text = signed_text(b"other", response_text.as_bytes());
    assert!(tampered.verify().is_err());
    // Garbage never panics.
    for bad in ["", "0x", "0x00", &"ff".repeat(65), "zz"] {
        let mut s = ecdsa.clone();
        s.signature = bad.into();
        assert!(s.verify().is_err());
        let mut s = ed25519.clone();
        s.signature = bad.into();
        assert!(s.verify().is_err());
    }
}

/// A response answered by a model served from encrypted weights names the manifest's weights
/// hash as the text's third part: the signature covers it, the client checks it against the
/// manifest, and a plain signature or another hash is refused.
#[test]
fn a_signature_names_the_encrypted_weights_that_answered() {
    let s = signer();
    let (req, res) = (br#"{"model":"m"}"#.as_slice(), b"{}".as_slice());
    let weights = [0xab; 32];
    let served = s.sign_both_served(req, res, Some(&weights));
    let plain = s.sign_both(req, res);
    for (sig, plain) in served.iter().zip(&plain) {
        let attested = s.address(sig.signing_algo);
        assert_eq!(
            sig.text,
            format!("{}:{}", signed_text(req, res), hex::encode(weights))
        );
        assert_eq!(
            sig.signed_weights_hash(),
            Ok(Some(hex::encode(weights).as_str()))
        );
        assert_eq!(plain.signed_weights_hash(), Ok(None));
        assert_eq!(
            sig.verify_exchange_served(req, res, &attested, Some(&weights)),
            Ok(())
        );
        // Other weights than the manifest's, weights where the manifest names none, none
        // where it names some: refused.
        for (signature, expected) in [
            (sig, Some(&[0xac; 32])),
            (sig, None),
            (plain, Some(&weights)),
        ] {
            assert!(matches!(
                signature.verify_exchange_served(req, res, &attested, expected),
                Err(SignatureError::WeightsHash { .. })
            ));
        }
        // The weights are signed: swapping them in the text breaks the signature.
        let mut swapped = sig.clone();
        swapped.text = format!("{}:{}", signed_text(req, res), hex::encode([0xac; 32]));
        assert!(swapped.verify().is_err());
        let mut extra = sig.clone();
        extra.text.push_str(":00");
        assert_eq!(extra.signed_weights_hash(), Err(SignatureError::Text));
    }
}

fn dev_bundle(enclave_key: [u8; 32], near_key: [u8; 32]) -> AttestationBundle {
    AttestationBundle {
        version: 1,
        kind: AttestationKind::Dev,
        enclave_key: enclave_key.to_vec(),
        near_public_key: attestation::format_near_ed25519_key(&near_key),
        tdx: None,
        dev: None,
        gpus: Vec::new(),
        gpu_challenge: None,
        switches: Vec::new(),
    }
}

/// `check_report_data` (standard mode): the first 32 bytes are the right-padded signing
/// address, the last 32 the raw nonce.
fn nearai_check_report_data(report: &serde_json::Value, nonce: &str) -> (bool, bool) {
    let rd = hex::decode(report["report_data"].as_str().expect("report_data")).expect("hex");
    let algo = report["signing_algo"].as_str().unwrap_or("ecdsa");
    let addr = report["signing_address"].as_str().expect("address");
    let addr_hex = if algo == "ecdsa" {
        addr.trim_start_matches("0x")
    } else {
        addr
    };
    let mut padded = hex::decode(addr_hex).expect("hex");
    padded.resize(32, 0);
    (
        rd[..32] == padded[..],
        rd[32..64] == hex::decode(nonce).expect("nonce")[..],
    )
}

#[test]
fn the_attestation_report_binds_signer_nonce_and_ohttp_key() {
    let s = signer();
    let key = GatewayKey::generate(1);
    let nonce = "ab".repeat(32);
    for algo in [SigningAlgo::Ecdsa, SigningAlgo::Ed25519] {
        let address = s.address(algo);
        let report = AttestationReport {
            report_data: hex::encode(report_data(&address, algo, &nonce).expect("layout")),
            signing_address: address,
            signing_algo: algo,
            request_nonce: nonce.clone(),
            attestation: dev_bundle(key.config().public_key, s.ed25519_public()),
            signing_addresses: SigningAddresses {
                ecdsa: s.address(SigningAlgo::Ecdsa),
                ed25519: s.address(SigningAlgo::Ed25519),
            },
            ohttp_key_config: hex::encode(key.config().encode()),
            signer_binding: s.signer_binding(&nonce).expect("binding"),
        };
        assert_eq!(report.check_binding(&nonce), Ok(()));
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(
            nearai_check_report_data(&json, &nonce),
            (true, true),
            "{algo}"
        );
        assert!(
            json.get("model_attestations").is_none(),
            "flat, as the verifier reads it"
        );
        let back: AttestationReport = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, report);

        assert_eq!(
            report.check_binding(&"cd".repeat(32)),
            Err(ReportError::NonceNotBound)
        );
        let mut other_key = report.clone();
        other_key.attestation.enclave_key = vec![5; 32];
        assert_eq!(other_key.check_binding(&nonce), Err(ReportError::OhttpKey));
        let mut other_signer = report.clone();
        other_signer.signing_address = s.address(match algo {
            SigningAlgo::Ecdsa => SigningAlgo::Ed25519,
            SigningAlgo::Ed25519 => SigningAlgo::Ecdsa,
        });
        assert!(other_signer.check_binding(&nonce).is_err());

        // A binding for another nonce (a replayed report) or by another key is refused.
        let mut replayed = report.clone();
        replayed.signer_binding = s.signer_binding(&"cd".repeat(32)).expect("binding");
        assert_eq!(
            replayed.check_binding(&nonce),
            Err(ReportError::SignerBinding)
        );
        let mut foreign_ecdsa = report.clone();
        foreign_ecdsa.signing_addresses.ecdsa = format!("0x{}", "11".repeat(20));
        assert_eq!(
            foreign_ecdsa.check_binding(&nonce),
            Err(ReportError::SignerBinding)
        );
        let mut not_near = report.clone();
        not_near.attestation.near_public_key = attestation::format_near_ed25519_key(&[4; 32]);
        assert_eq!(
            not_near.check_binding(&nonce),
            Err(ReportError::Ed25519NotNearKey)
        );
    }
    assert_eq!(
        report_data("0x00", SigningAlgo::Ecdsa, "ab"),
        Err(ReportError::Nonce)
    );
}
