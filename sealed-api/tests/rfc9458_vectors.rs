//! RFC 9458 Appendix A: the published key configuration, encapsulated request and
//! encapsulated response decode with our code.

use sealed_api::OhttpError;
use sealed_api::bhttp;
use sealed_api::key_config::{AeadId, GatewayKey, KeyConfig};
use sealed_api::limits::Limits;
use sealed_api::ohttp;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector hex")
}

const SK_R: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
const KEY_CONFIG: &str =
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
const REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";
const ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525";
const RESPONSE: &str = "0140c8";
const RESPONSE_NONCE: &str = "c789e7151fcba46158ca84b04464910d";
const ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";

fn gateway_key() -> GatewayKey {
    let sk: [u8; 32] = unhex(SK_R).try_into().expect("32 bytes");
    GatewayKey::from_secret(1, &sk).expect("RFC key")
}

#[test]
fn key_configuration_decodes_and_our_key_encodes_to_the_same_bytes() {
    let cfg = KeyConfig::decode(&unhex(KEY_CONFIG)).expect("decodes");
    assert_eq!(cfg.key_id, 1);
    assert_eq!(
        hex::encode(cfg.public_key),
        "31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155"
    );
    assert_eq!(cfg.aeads, vec![AeadId::Aes128Gcm, AeadId::ChaCha20Poly1305]);
    // The same secret gives the same public configuration.
    assert_eq!(gateway_key().config().encode(), unhex(KEY_CONFIG));
    let list = KeyConfig::encode_list(std::slice::from_ref(&cfg));
    assert_eq!(hex::encode(&list), format!("002d{KEY_CONFIG}"));
}

#[test]
fn published_request_decapsulates_to_get_https_example_com() {
    let (plaintext, _) =
        ohttp::decapsulate_request(&gateway_key(), &unhex(ENC_REQUEST), &Limits::default())
            .expect("decapsulates");
    assert_eq!(plaintext, unhex(REQUEST));
    // Its Binary HTTP is truncated after the path (RFC 9292 §3.8): no headers, no body.
    let req = bhttp::decode_request(&plaintext).expect("binary HTTP");
    assert_eq!(
        (
            req.method.as_str(),
            req.scheme.as_str(),
            req.authority.as_str(),
            req.path.as_str()
        ),
        ("GET", "https", "example.com", "/")
    );
    assert!(req.headers.is_empty() && req.body.is_empty());
}

#[test]
fn published_response_opens_and_sealing_with_its_nonce_reproduces_it() {
    let limits = Limits::default();
    let (_, sealer) =
        ohttp::decapsulate_request(&gateway_key(), &unhex(ENC_REQUEST), &limits).expect("decaps");
    let opened = sealer.open_as_client(&unhex(ENC_RESPONSE)).expect("opens");
    assert_eq!(opened, unhex(RESPONSE));
    let res = bhttp::decode_response(&opened).expect("binary HTTP");
    assert_eq!(res.status, 200);

    let (_, sealer) =
        ohttp::decapsulate_request(&gateway_key(), &unhex(ENC_REQUEST), &limits).expect("decaps");
    let sealed = sealer
        .seal_with_nonce(&unhex(RESPONSE_NONCE), &unhex(RESPONSE))
        .expect("seals");
    assert_eq!(hex::encode(sealed), ENC_RESPONSE);
}

#[test]
fn tampered_or_misaddressed_requests_are_refused() {
    let limits = Limits::default();
    let key = gateway_key();
    let wire = unhex(ENC_REQUEST);
    for at in [7, 20, 45, 60, wire.len() - 1] {
        let mut t = wire.clone();
        t[at] ^= 1;
        assert_eq!(
            ohttp::decapsulate_request(&key, &t, &limits).err(),
            Some(OhttpError::Decrypt),
            "byte {at}"
        );
    }
    let mut other_id = wire.clone();
    other_id[0] = 2;
    assert_eq!(
        ohttp::decapsulate_request(&key, &other_id, &limits).err(),
        Some(OhttpError::UnknownKeyId(2))
    );
    let mut aes256 = wire.clone();
    aes256[6] = 2;
    assert!(matches!(
        ohttp::decapsulate_request(&key, &aes256, &limits),
        Err(OhttpError::UnsupportedSuite { aead: 2, .. })
    ));
    assert!(matches!(
        ohttp::decapsulate_request(&key, &wire[..30], &limits),
        Err(OhttpError::Malformed(_))
    ));
    // Another key cannot open it.
    assert_eq!(
        ohttp::decapsulate_request(&GatewayKey::generate(1), &wire, &limits).err(),
        Some(OhttpError::Decrypt)
    );
    // Limits: a request over the size limit is refused before any work.
    let tiny = Limits {
        max_request_bytes: 8,
        ..limits
    };
    assert!(matches!(
        ohttp::decapsulate_request(&key, &wire, &tiny),
        Err(OhttpError::TooLarge { .. })
    ));
}
