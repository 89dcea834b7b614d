//! Reads dcap-qvl's `QuoteCollateralV3` from JSON with our hex decoder for its byte fields
//! (CRLs and signatures: ~4 KB of bytes in a real collateral). Same JSON shape as dcap-qvl's
//! own `Deserialize` (hex strings, unknown fields ignored); arrays of numbers are accepted
//! too, as everywhere in the bundle. Serialization stays dcap-qvl's (lowercase hex).

use dcap_qvl::QuoteCollateralV3;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    #[serde(with = "crate::hexser")]
    root_ca_crl: Vec<u8>,
    #[serde(with = "crate::hexser")]
    pck_crl: Vec<u8>,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    #[serde(with = "crate::hexser")]
    tcb_info_signature: Vec<u8>,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    #[serde(with = "crate::hexser")]
    qe_identity_signature: Vec<u8>,
    #[serde(default)]
    pck_certificate_chain: Option<String>,
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QuoteCollateralV3, D::Error> {
    let c = CollateralJson::deserialize(d)?;
    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain: c.pck_crl_issuer_chain,
        root_ca_crl: c.root_ca_crl,
        pck_crl: c.pck_crl,
        tcb_info_issuer_chain: c.tcb_info_issuer_chain,
        tcb_info: c.tcb_info,
        tcb_info_signature: c.tcb_info_signature,
        qe_identity_issuer_chain: c.qe_identity_issuer_chain,
        qe_identity: c.qe_identity,
        qe_identity_signature: c.qe_identity_signature,
        pck_certificate_chain: c.pck_certificate_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "deserialize")] QuoteCollateralV3);

    fn vector(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{}/{rel}", crate::TESTDATA_DIR)).expect("vector")
    }

    #[test]
    fn reads_what_dcap_qvl_reads_and_writes() {
        for rel in [
            "intel-tdx-dcap-sample/tdx_quote_collateral.json",
            "intel-tdx-dcap-sample/sgx_quote_collateral.json",
        ] {
            let json = vector(rel);
            let theirs: QuoteCollateralV3 = serde_json::from_slice(&json).expect("dcap-qvl");
            let ours: Wrapped = serde_json::from_slice(&json).expect("ours");
            assert_eq!(ours.0, theirs);
            let rewritten = serde_json::to_vec(&theirs).expect("serializes");
            let again: Wrapped = serde_json::from_slice(&rewritten).expect("roundtrip");
            assert_eq!(again.0, theirs);
        }
        let dstack = crate::bundle_from_dstack_public_data(&vector(
            "intel-tdx-dstack-node/public_data.json",
        ))
        .expect("bundle");
        let collateral = dstack.tdx.expect("tdx").collateral;
        assert!(collateral.pck_certificate_chain.is_some());
        let json = serde_json::to_vec(&collateral).expect("serializes");
        let ours: Wrapped = serde_json::from_slice(&json).expect("ours");
        assert_eq!(ours.0, collateral);
    }

    #[test]
    fn bad_hex_and_missing_fields_are_errors() {
        let json = vector("intel-tdx-dcap-sample/tdx_quote_collateral.json");
        let mut value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        value["pck_crl"] = "0g".into();
        let err = serde_json::from_value::<Wrapped>(value.clone())
            .err()
            .expect("bad hex");
        assert!(err.to_string().contains("invalid hex"), "{err}");
        if let Some(map) = value.as_object_mut() {
            map.remove("pck_crl");
        }
        let err = serde_json::from_value::<Wrapped>(value)
            .err()
            .expect("missing");
        assert!(err.to_string().contains("pck_crl"), "{err}");
    }
}
