//! Every real vector in testdata/ (attestation::TESTDATA_DIR): positives at their valid time, negatives
//! and tampered copies rejected with an error naming what failed, bad input never panics.

use attestation::tdx::verify_tdx_quote;
use attestation::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Valid time of the dstack node vector (2026-08-13T00:00:00Z).
const DSTACK_NOW: u64 = 1_786_622_400;
/// Inside the dcap sample's collateral window (2025-06-19 .. 2025-07-19).
const SAMPLE_NOW: u64 = 1_751_328_000; // 2025-07-01
/// Inside the outdated sample's window (2026-02-18 .. 2026-03-20).
const OUTDATED_NOW: u64 = 1_772_323_200; // 2026-03-01
/// Any time inside the NVIDIA chain's validity (certificates valid until 9999).
const GPU_NOW: u64 = DSTACK_NOW;
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
/// The nonce NVIDIA's public H100 sample answers: bound to no enclave. The GPU functions are
/// called with it as the expected nonce to test the sample's signature and chain; in a bundle
/// the sample is refused (`public_hopper_evidence_is_refused_in_any_bundle`).
const HOPPER_NONCE: [u8; 32] = [
    0x93, 0x1d, 0x8d, 0xd0, 0xad, 0xd2, 0x03, 0xac, 0x3d, 0x8b, 0x4f, 0xbd, 0xe7, 0x5e, 0x11, 0x52,
    0x78, 0xee, 0xfc, 0xdc, 0xea, 0xc5, 0xb8, 0x76, 0x71, 0xa7, 0x48, 0xf3, 0x23, 0x64, 0xdf, 0xcb,
];

fn vectors() -> PathBuf {
    PathBuf::from(attestation::TESTDATA_DIR)
}

fn read(rel: &str) -> Vec<u8> {
    let p = vectors().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn collateral(rel: &str) -> QuoteCollateralV3 {
    serde_json::from_slice(&read(rel)).expect("collateral JSON")
}

fn dstack_bundle() -> AttestationBundle {
    bundle_from_dstack_public_data(&read("intel-tdx-dstack-node/public_data.json"))
        .expect("public_data converts")
}

fn hopper() -> GpuEvidence {
    let hex_report =
        String::from_utf8(read("nvidia-hopper-single/hopperAttestationReport.txt")).expect("utf8");
    GpuEvidence {
        report: hex::decode(hex_report.trim()).expect("hex report"),
        nonce: hex::decode(GPU_NONCE).expect("hex nonce"),
        certificate_chain: String::from_utf8(read("nvidia-hopper-single/hopperCertChain.txt"))
            .expect("utf8"),
    }
}

fn policy() -> VerifyPolicy {
    VerifyPolicy::default()
}

// ---------------------------------------------------------------- Intel DCAP sample

#[test]
fn dcap_sample_tdx_quote_is_up_to_date() {
    let quote = read("intel-tdx-dcap-sample/tdx_quote");
    let col = collateral("intel-tdx-dcap-sample/tdx_quote_collateral.json");
    let v = verify_tdx_quote(&quote, &col, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
        .expect("sample quote verifies");
    assert_eq!(v.tcb_status, "UpToDate");
    assert_ne!(v.mrtd, [0u8; 48]);
}

#[test]
fn dcap_sample_rejected_outside_its_window() {
    let quote = read("intel-tdx-dcap-sample/tdx_quote");
    let col = collateral("intel-tdx-dcap-sample/tdx_quote_collateral.json");
    for (now, expect) in [
        (1_750_291_200, "in the future"), // 2025-06-19T00:00Z, before issueDate
        (1_752_969_600, "expired"),       // 2025-07-20, after nextUpdate
    ] {
        let err = verify_tdx_quote(&quote, &col, now, &TcbPolicy::default(), &RustCrypto)
            .expect_err("outside the window");
        let msg = err.to_string();
        assert!(matches!(err, AttestationError::Quote(_)), "{msg}");
        assert!(msg.contains(expect), "at {now}: {msg}");
    }
}

#[test]
fn outdated_quote_has_no_matching_tcb_level() {
    let quote = read("intel-tdx-dcap-sample/tdx_quote_outdated");
    let col = collateral("intel-tdx-dcap-sample/tdx_quote_outdated_collateral.json");
    let err = verify_tdx_quote(
        &quote,
        &col,
        OUTDATED_NOW,
        &TcbPolicy::default(),
        &RustCrypto,
    )
    .expect_err("outdated platform");
    assert!(err.to_string().contains("No matching TCB level"), "{err}");
}

#[test]
fn sgx_quote_is_refused_by_the_tdx_verifier() {
    let quote = read("intel-tdx-dcap-sample/sgx_quote");
    let col = collateral("intel-tdx-dcap-sample/sgx_quote_collateral.json");
    let err = verify_tdx_quote(&quote, &col, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
        .expect_err("SGX is not TDX");
    assert_eq!(err, AttestationError::NotTdx { tee_type: 0 });
}

#[test]
fn sgx_quote_itself_is_genuine_for_dcap_qvl() {
    // The negative above is about the TEE type, not a broken quote: dcap-qvl accepts it as SGX
    // with ConfigurationAndSWHardeningNeeded, which our default TCB policy would refuse too.
    let quote = read("intel-tdx-dcap-sample/sgx_quote");
    let col = collateral("intel-tdx-dcap-sample/sgx_quote_collateral.json");
    let r = dcap_qvl::verify::rustcrypto::verify(&quote, &col, SAMPLE_NOW).expect("valid SGX");
    assert_eq!(r.status, "ConfigurationAndSWHardeningNeeded");
    assert!(TcbPolicy::default().check(&r.status, SAMPLE_NOW).is_err());
}

#[test]
fn flipped_quote_bytes_are_rejected() {
    let quote = read("intel-tdx-dcap-sample/tdx_quote");
    let col = collateral("intel-tdx-dcap-sample/tdx_quote_collateral.json");
    // Header, TD report (MRTD, RTMR3, report_data), quote signature, attestation key, QE report,
    // QE report signature, QE auth data, PCK chain (PEM inside the quote), last byte.
    let positions = [
        10,
        60,
        200,
        500,
        600,
        640,
        700,
        760,
        900,
        1100,
        1300,
        1500,
        2500,
        4000,
        quote.len() - 40,
    ];
    // Plus a sweep over the whole quote, padding included.
    let sweep = (0..quote.len()).step_by(41);
    for pos in positions.into_iter().chain(sweep) {
        let mut q = quote.clone();
        q[pos] ^= 0x01;
        let err = verify_tdx_quote(&q, &col, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
            .expect_err("tampered quote");
        assert!(!err.to_string().is_empty(), "byte {pos}");
    }
}

#[test]
fn flipped_collateral_signatures_are_rejected() {
    let col = collateral("intel-tdx-dcap-sample/tdx_quote_collateral.json");
    let quote = read("intel-tdx-dcap-sample/tdx_quote");
    for pos in [0, 13, 31, 32, 47, 63] {
        let mut c = col.clone();
        c.tcb_info_signature[pos] ^= 0x80;
        let err = verify_tdx_quote(&quote, &c, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
            .expect_err("tampered TCB info signature");
        assert!(err.to_string().contains("tcb_info"), "{err}");

        let mut c = col.clone();
        c.qe_identity_signature[pos] ^= 0x80;
        let err = verify_tdx_quote(&quote, &c, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
            .expect_err("tampered QE identity signature");
        assert!(err.to_string().contains("qe_identity"), "{err}");
    }
    // A changed TCB info body no longer matches its signature.
    let mut c = col.clone();
    c.tcb_info = c.tcb_info.replacen("UpToDate", "UpToDatX", 1);
    let err = verify_tdx_quote(&quote, &c, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto)
        .expect_err("tampered TCB info");
    assert!(
        err.to_string().contains("tcb_info") || err.to_string().contains("TcbInfo"),
        "{err}"
    );
    // CRLs are signed too.
    let mut c = col.clone();
    let n = c.pck_crl.len();
    c.pck_crl[n - 10] ^= 0x01;
    assert!(verify_tdx_quote(&quote, &c, SAMPLE_NOW, &TcbPolicy::default(), &RustCrypto).is_err());
}

// ---------------------------------------------------------------- dstack node

#[test]
fn dstack_node_bundle_verifies_and_binds_its_keys() {
    let b = dstack_bundle();
    let v = verify_bundle(&b, DSTACK_NOW, &policy(), &RustCrypto).expect("dstack node verifies");
    assert_eq!(v.kind, AttestationKind::Tdx);
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    let m = v.measurements.expect("measurements");
    let tcb: serde_json::Value =
        serde_json::from_slice(&read("intel-tdx-dstack-node/tcb_info.json")).expect("tcb_info");
    for reg in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"] {
        let got = match reg {
            "mrtd" => &m.mrtd,
            "rtmr0" => &m.rtmr0,
            "rtmr1" => &m.rtmr1,
            "rtmr2" => &m.rtmr2,
            _ => &m.rtmr3,
        };
        assert_eq!(Some(got.as_str()), tcb[reg].as_str(), "{reg}");
    }
    assert_eq!(m.compose_hash.as_deref(), tcb["compose_hash"].as_str());
    // The NEAR key bound is the node's account key; the enclave key is its p2p (TLS) key.
    let account =
        String::from_utf8(read("intel-tdx-dstack-node/near_account_public_key.pub")).expect("utf8");
    let p2p =
        String::from_utf8(read("intel-tdx-dstack-node/near_p2p_public_key.pub")).expect("utf8");
    assert_eq!(v.bound_keys.near_public_key, account.trim());
    let p2p = parse_near_ed25519_key(p2p.trim()).expect("p2p key");
    assert_eq!(v.bound_keys.enclave_key, hex::encode(p2p));
    let digest =
        String::from_utf8(read("intel-tdx-dstack-node/mpc_image_digest.txt")).expect("utf8");
    assert!(
        v.events
            .iter()
            .any(|e| e.name == "mpc-image-digest" && e.payload == digest.trim()),
        "{:?}",
        v.events
    );
}

#[test]
fn dstack_quote_report_data_is_the_mpc_layout() {
    let b = dstack_bundle();
    let td = tdx::parse_td_report(&b.tdx.as_ref().expect("tdx").quote).expect("parses");
    let enclave: [u8; 32] = b.enclave_key.clone().try_into().expect("32 bytes");
    let near = parse_near_ed25519_key(&b.near_public_key).expect("key");
    assert_eq!(td.report_data, report_data_for(&enclave, &near));
    // Swapping the two keys does not bind.
    assert_ne!(td.report_data, report_data_for(&near, &enclave));
}

#[test]
fn dstack_bundle_refused_with_another_near_key() {
    let mut b = dstack_bundle();
    b.near_public_key = format_near_ed25519_key(&[7u8; 32]);
    let err = verify_bundle(&b, DSTACK_NOW, &policy(), &RustCrypto).expect_err("other signer");
    assert!(
        matches!(err, AttestationError::ReportDataMismatch { .. }),
        "{err}"
    );
}

#[test]
fn dstack_bundle_refused_outside_its_window() {
    let b = dstack_bundle();
    for now in [DSTACK_NOW - 3 * 86_400, DSTACK_NOW + 40 * 86_400] {
        let err = verify_bundle(&b, now, &policy(), &RustCrypto).expect_err("wrong time");
        assert!(matches!(err, AttestationError::Quote(_)), "{now}: {err}");
    }
}

#[test]
fn dstack_event_log_and_compose_tampering_is_caught() {
    let b = dstack_bundle();
    let mut t = b.clone();
    t.tdx.as_mut().expect("tdx").app_compose = Some("{}".into());
    let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("compose");
    assert!(
        matches!(err, AttestationError::ComposeHashMismatch { .. }),
        "{err}"
    );

    let mut t = b.clone();
    let log = &mut t.tdx.as_mut().expect("tdx").event_log;
    let i = log
        .iter()
        .position(|e| e.event == "mpc-image-digest")
        .expect("event");
    log[i].event_payload[0] ^= 1;
    let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("payload");
    assert!(matches!(err, AttestationError::EventLog(_)), "{err}");

    let mut t = b.clone();
    t.tdx
        .as_mut()
        .expect("tdx")
        .event_log
        .retain(|e| e.event != "system-ready");
    let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("dropped event");
    assert!(
        matches!(err, AttestationError::Rtmr3Mismatch { .. }),
        "{err}"
    );
}

#[test]
fn dstack_flipped_collateral_signature_names_it() {
    let b = dstack_bundle();
    for pos in [0, 20, 40, 63] {
        let mut t = b.clone();
        t.tdx.as_mut().expect("tdx").collateral.tcb_info_signature[pos] ^= 0x40;
        let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("tcb sig");
        assert!(err.to_string().contains("tcb_info"), "{err}");
    }
}

#[test]
fn dstack_flipped_quote_bytes_are_rejected() {
    let b = dstack_bundle();
    let len = b.tdx.as_ref().expect("tdx").quote.len();
    for pos in [2, 100, 250, 530, 600, 700, 1000, 2000, 3000, 4500, len - 1] {
        let mut t = b.clone();
        t.tdx.as_mut().expect("tdx").quote[pos] ^= 0x02;
        let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("tampered");
        eprintln!("dstack quote byte {pos}: {err}");
    }
}

// ---------------------------------------------------------------- NVIDIA

#[test]
fn hopper_evidence_verifies() {
    let v = verify_gpu_evidence(
        &hopper(),
        &HOPPER_NONCE,
        GPU_NOW,
        &NoCache,
        &GpuRoots::NVIDIA,
    )
    .expect("hopper verifies");
    assert_eq!(v.model, "GH100");
    assert_eq!(v.nonce, GPU_NONCE);
    assert_eq!(v.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(v.vbios_version.as_deref(), Some("96.00.9f.00.01"));
    assert_eq!(v.measurements.len(), 64);
    assert!(v.measurements.iter().all(|m| m.len() == 96));
    // A single GPU: PROTECTED_PCIE_STATUS is 0x55 (disabled), no NVSwitch links.
    assert!(!v.protected_pcie);
    assert!(v.switch_pdis.is_empty());
    // Three CA certificates below the root: BROM, Provisioner ICA, GH100 Identity.
    assert_eq!(v.verified_intermediates.len(), 3);
}

#[test]
fn hopper_cache_skips_known_intermediates() {
    let first = verify_gpu_evidence(
        &hopper(),
        &HOPPER_NONCE,
        GPU_NOW,
        &NoCache,
        &GpuRoots::NVIDIA,
    )
    .expect("first");
    let cache: BTreeSet<[u8; 32]> = first
        .verified_intermediates
        .iter()
        .map(|h| hex::decode(h).expect("hex").try_into().expect("32"))
        .collect();
    let second = verify_gpu_evidence(&hopper(), &HOPPER_NONCE, GPU_NOW, &cache, &GpuRoots::NVIDIA)
        .expect("second");
    assert!(second.verified_intermediates.is_empty());
    assert_eq!(second.device_id, first.device_id);
}

#[test]
fn hopper_chain_verified_in_steps_then_leaf_and_report() {
    let ev = hopper();
    let mut cache = BTreeSet::new();
    let mut steps = Vec::new();
    loop {
        let step = attestation::nvidia::verify_chain_step(
            &ev.certificate_chain,
            GPU_NOW,
            &cache,
            1,
            &GpuRoots::NVIDIA,
        )
        .expect("CA step");
        if step.is_empty() {
            break;
        }
        cache.extend(step.iter().copied());
        steps.push(step);
    }
    assert_eq!(
        steps.len(),
        4,
        "three CA certificates and the leaf, one per call"
    );
    let full = verify_gpu_evidence(&ev, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
        .expect("full");
    // Top first: the leaf (the device id) comes last, the CA next to it before.
    let mut bottom_up: Vec<String> = steps.iter().map(|s| hex::encode(s[0])).collect();
    bottom_up.reverse();
    assert_eq!(bottom_up[0], full.device_id);
    assert_eq!(bottom_up[1..], full.verified_intermediates[..]);
    let v = verify_gpu_evidence(&ev, &HOPPER_NONCE, GPU_NOW, &cache, &GpuRoots::NVIDIA)
        .expect("cached chain");
    assert!(v.verified_intermediates.is_empty());

    // A tampered CA certificate is caught by the step that reaches it.
    let blocks = pem::parse_many(&ev.certificate_chain).expect("pem");
    let mut tampered = blocks.clone();
    let mut der = tampered[2].contents().to_vec();
    let n = der.len();
    der[n - 70] ^= 1;
    tampered[2] = pem::Pem::new("CERTIFICATE", der);
    let chain = pem::encode_many(&tampered);
    let err =
        attestation::nvidia::verify_chain_step(&chain, GPU_NOW, &NoCache, 4, &GpuRoots::NVIDIA)
            .expect_err("tampered CA");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn known_device_pays_only_for_its_report() {
    let ev = hopper();
    let first = verify_gpu_evidence(&ev, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
        .expect("first");
    let device: [u8; 32] = hex::decode(&first.device_id)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let cache = BTreeSet::from([device]);
    verify_gpu_evidence(&ev, &HOPPER_NONCE, GPU_NOW, &cache, &GpuRoots::NVIDIA)
        .expect("known device");
    // The report signature is still checked.
    let mut t = ev.clone();
    let n = t.report.len();
    t.report[n - 3] ^= 1;
    assert_eq!(
        verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &cache, &GpuRoots::NVIDIA)
            .expect_err("bad report"),
        GpuError::ReportSignature
    );
    // And the leaf's validity window.
    assert!(matches!(
        verify_gpu_evidence(&ev, &HOPPER_NONCE, 1_500_000_000, &cache, &GpuRoots::NVIDIA),
        Err(GpuError::CertValidity { index: 0, .. })
    ));
}

#[test]
fn hopper_wrong_nonce_is_rejected() {
    let mut ev = hopper();
    ev.nonce[0] ^= 1;
    let err = verify_gpu_evidence(&ev, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
        .expect_err("nonce");
    assert!(matches!(err, GpuError::Nonce { .. }), "{err}");
    // Any other expected nonce: the sample is not bound to it, whatever it claims.
    let mut expected = HOPPER_NONCE;
    expected[31] ^= 1;
    for claimed in [hopper().nonce, expected.to_vec()] {
        let mut ev = hopper();
        ev.nonce = claimed;
        let err = verify_gpu_evidence(&ev, &expected, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
            .expect_err("not bound");
        assert!(matches!(err, GpuError::NotBound { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("GPU nonce not bound to this enclave"),
            "{err}"
        );
    }
}

#[test]
fn hopper_flipped_report_bytes_are_rejected() {
    let ev = hopper();
    let len = ev.report.len();
    // request, measurement blocks, responder nonce, opaque data (driver version), signature.
    for pos in [
        0,
        1,
        3,
        10,
        36,
        37,
        45,
        100,
        2000,
        3500,
        3560,
        3600,
        3700,
        3900,
        len - 50,
        len - 1,
    ] {
        let mut t = ev.clone();
        t.report[pos] ^= 0x01;
        if (4..36).contains(&pos) {
            t.nonce[pos - 4] ^= 0x01; // keep the nonce checks passing: the signature must fail
        }
        let expected: [u8; 32] = t.nonce.clone().try_into().expect("32 bytes");
        let err = verify_gpu_evidence(&t, &expected, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
            .expect_err("tampered report");
        assert!(
            matches!(err, GpuError::ReportSignature | GpuError::Report(_)),
            "byte {pos}: {err}"
        );
    }
}

#[test]
fn hopper_flipped_certificate_bytes_are_rejected() {
    let ev = hopper();
    let blocks = pem::parse_many(&ev.certificate_chain).expect("pem");
    for (ci, _) in blocks.iter().enumerate().take(4) {
        let der_len = blocks[ci].contents().len();
        for pos in [20, 100, der_len / 2, der_len - 60, der_len - 5] {
            let mut tampered = blocks.clone();
            let mut der = tampered[ci].contents().to_vec();
            der[pos] ^= 0x01;
            tampered[ci] = pem::Pem::new("CERTIFICATE", der);
            let mut t = ev.clone();
            t.certificate_chain = pem::encode_many(&tampered);
            let err = verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
                .expect_err("tampered cert");
            let msg = err.to_string();
            assert!(
                msg.contains("certificate") || msg.contains("signature"),
                "cert {ci} byte {pos}: {msg}"
            );
            eprintln!("cert {ci} byte {pos}: {msg}");
        }
    }
}

#[test]
fn hopper_chain_must_reach_the_pinned_root() {
    let ev = hopper();
    let blocks = pem::parse_many(&ev.certificate_chain).expect("pem");
    // Without the two top CAs the walk ends at the pinned root with a wrong issuer.
    let mut t = ev.clone();
    t.certificate_chain = pem::encode_many(&blocks[..2]);
    let err = verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
        .expect_err("short chain");
    assert_eq!(err, GpuError::UntrustedRoot);
    // A missing middle certificate breaks the issuer link below it.
    t.certificate_chain =
        pem::encode_many(&[blocks[0].clone(), blocks[2].clone(), blocks[3].clone()]);
    let err = verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
        .expect_err("gap");
    assert_eq!(err, GpuError::CertIssuer { index: 0 });
    // Leaf only, swapped order.
    let mut swapped = blocks.clone();
    swapped.swap(0, 1);
    t.certificate_chain = pem::encode_many(&swapped);
    assert!(verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA).is_err());
}

#[test]
fn hopper_chain_time_window() {
    // The leaf's notBefore is 2020-10-17.
    let err = verify_gpu_evidence(
        &hopper(),
        &HOPPER_NONCE,
        1_500_000_000,
        &NoCache,
        &GpuRoots::NVIDIA,
    )
    .expect_err("before");
    assert!(
        matches!(err, GpuError::CertValidity { index: 0, .. }),
        "{err}"
    );
    let err = verify_gpu_evidence(
        &hopper(),
        &HOPPER_NONCE,
        253_402_300_800,
        &NoCache,
        &GpuRoots::NVIDIA,
    )
    .expect_err("after 9999");
    assert!(matches!(err, GpuError::CertValidity { .. }), "{err}");
}

/// Issue 16: NVIDIA's public H100 evidence verified inside any bundle, so a node without a GPU
/// registered it as its own. Its nonce is no enclave's binding nonce: refused in every bundle,
/// as a GPU or as a switch, with or without a challenge, before any signature is checked.
#[test]
fn public_hopper_evidence_is_refused_in_any_bundle() {
    let b = dstack_bundle();
    for challenge in [[0u8; 32], [7; 32], HOPPER_NONCE] {
        for as_switch in [false, true] {
            let mut t = b.clone();
            t.gpu_challenge = Some(hex::encode(challenge));
            if as_switch {
                t.switches.push(hopper());
            } else {
                t.gpus.push(hopper());
            }
            let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("public");
            let GpuError::NotBound { .. } = (match &err {
                AttestationError::Gpu { index: 0, error } if !as_switch => error,
                AttestationError::Switch { index: 0, error } if as_switch => error,
                other => panic!("{other}"),
            }) else {
                panic!("{err}");
            };
            assert!(
                err.to_string()
                    .contains("GPU nonce not bound to this enclave"),
                "{err}"
            );
            assert_eq!(err.code(), "gpu_not_bound");
        }
    }
    // Without a challenge the bundle cannot name a binding nonce at all.
    let mut t = b.clone();
    t.gpus.push(hopper());
    let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("no challenge");
    assert!(
        matches!(
            err,
            AttestationError::Malformed {
                what: "gpu_challenge",
                ..
            }
        ),
        "{err}"
    );
    t.gpu_challenge = Some("zz".into());
    let err = verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).expect_err("bad challenge");
    assert!(
        matches!(
            err,
            AttestationError::Malformed {
                what: "gpu_challenge",
                ..
            }
        ),
        "{err}"
    );
    // The refusal costs no DCAP verification: a bundle out of its quote's window fails on the
    // binding first.
    let mut t = b.clone();
    t.gpu_challenge = Some(hex::encode([1u8; 32]));
    t.gpus.push(hopper());
    let err =
        verify_bundle(&t, DSTACK_NOW + 400 * 86_400, &policy(), &RustCrypto).expect_err("public");
    assert_eq!(err.code(), "gpu_not_bound");
}

// ---------------------------------------------------------------- dev kind

fn dev_bundle(ca: &ed25519_dalek::SigningKey, expires_at: u64) -> AttestationBundle {
    use ed25519_dalek::Signer;
    let enclave = [5u8; 32];
    let near = [6u8; 32];
    let sig = ca.sign(&dev_attestation_message(&enclave, &near, expires_at));
    AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Dev,
        enclave_key: enclave.to_vec(),
        near_public_key: format_near_ed25519_key(&near),
        tdx: None,
        dev: Some(DevEvidence {
            expires_at,
            signature: sig.to_bytes().to_vec(),
            events: Vec::new(),
        }),
        gpus: Vec::new(),
        switches: Vec::new(),
        gpu_challenge: None,
    }
}

#[test]
fn dev_attestation_only_with_a_ca_in_policy() {
    let ca = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let b = dev_bundle(&ca, 1_000);
    let err = verify_bundle(&b, 500, &policy(), &RustCrypto).expect_err("no dev CA");
    assert_eq!(err, AttestationError::DevNotAllowed);

    let p = VerifyPolicy {
        dev_ca_public_key: Some(ca.verifying_key().to_bytes()),
        ..policy()
    };
    let v = verify_bundle(&b, 500, &p, &RustCrypto).expect("dev verifies");
    assert_eq!((v.kind, v.expires_at), (AttestationKind::Dev, Some(1_000)));
    assert_eq!(
        verify_bundle(&b, 1_001, &p, &RustCrypto).expect_err("expired"),
        AttestationError::DevExpired {
            expires_at: 1_000,
            now: 1_001
        }
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let forged = dev_bundle(&other, 1_000);
    assert_eq!(
        verify_bundle(&forged, 500, &p, &RustCrypto).expect_err("wrong CA"),
        AttestationError::DevSignature
    );
    let mut swapped = b.clone();
    swapped.near_public_key = format_near_ed25519_key(&[7u8; 32]);
    assert_eq!(
        verify_bundle(&swapped, 500, &p, &RustCrypto).expect_err("other key"),
        AttestationError::DevSignature
    );
}

// ---------------------------------------------------------------- bad input

#[test]
fn garbage_and_truncated_input_gives_typed_errors() {
    let b = dstack_bundle();
    let quote = b.tdx.as_ref().expect("tdx").quote.clone();
    // The quote structure ends at byte 4936; the 70 bytes after it are zero padding.
    for n in [0, 3, 7, 47, 48, 100, 631, 632, 1000, 4000, 4935] {
        let mut t = b.clone();
        t.tdx.as_mut().expect("tdx").quote.truncate(n);
        assert!(
            verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).is_err(),
            "len {n}"
        );
    }
    let mut t = b.clone();
    t.tdx.as_mut().expect("tdx").quote.truncate(4936);
    verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto)
        .expect("padding is not part of the quote");
    assert_eq!(quote.len(), 5006);
    let mut t = b.clone();
    t.tdx.as_mut().expect("tdx").quote = vec![0xff; 5006];
    assert!(verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).is_err());

    for json in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"{\"kind\":\"tdx\"}",
        b"\xff\xfe",
    ] {
        let err = parse_bundle(json).expect_err("bad JSON");
        assert!(matches!(err, AttestationError::Malformed { .. }), "{err}");
    }
    let mut t = b.clone();
    t.enclave_key.pop();
    assert!(matches!(
        verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto),
        Err(AttestationError::Malformed {
            what: "enclave_key",
            ..
        })
    ));
    let mut t = b.clone();
    t.tdx = None;
    assert!(matches!(
        verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto),
        Err(AttestationError::MissingSection { .. })
    ));

    let ev = hopper();
    for n in [0, 10, 36, 37, 41, 1000, ev.report.len() - 1] {
        let mut t = ev.clone();
        t.report.truncate(n);
        let err = verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA)
            .expect_err("truncated");
        assert!(matches!(err, GpuError::Report(_)), "len {n}: {err}");
    }
    let mut t = ev.clone();
    t.report.push(0);
    assert!(matches!(
        verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA),
        Err(GpuError::Report(_))
    ));
    let mut t = ev.clone();
    t.certificate_chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    assert!(matches!(
        verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA),
        Err(GpuError::CertParse { index: 0, .. })
    ));
    t.certificate_chain = String::new();
    assert!(verify_gpu_evidence(&t, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA).is_err());
}

#[test]
fn bundle_json_roundtrip() {
    let mut b = dstack_bundle();
    b.gpus.push(hopper());
    b.switches.push(hopper());
    b.gpu_challenge = Some(hex::encode([9u8; 32]));
    let json = serde_json::to_vec(&b).expect("serializes");
    assert_eq!(parse_bundle(&json).expect("parses"), b);
}

// ---------------------------------------------------------------- random mutations

/// Deterministic xorshift: reproducible "random" mutations without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random byte mutations, truncations and junk: parsers return errors, nothing panics.
#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let b = dstack_bundle();
    let quote = b.tdx.as_ref().expect("tdx").quote.clone();
    let gpu = hopper();
    let json = serde_json::to_vec(&b).expect("json");
    for _ in 0..3000 {
        let mut q = quote.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(q.len());
            q[i] = rng.next() as u8;
        }
        q.truncate(rng.below(quote.len() + 1));
        let _ = tdx::parse_td_report(&q);

        let mut r = gpu.report.clone();
        let i = rng.below(r.len());
        r[i] = rng.next() as u8;
        r.truncate(rng.below(gpu.report.len() + 1));
        let _ = attestation::nvidia::parse_spdm_report(&r);

        let mut j = json.clone();
        let i = rng.below(j.len());
        j[i] = rng.next() as u8;
        let _ = parse_bundle(&j);
    }
    // Full verifications of a few mutated quotes and chains (slower: crypto runs).
    for _ in 0..20 {
        let mut t = b.clone();
        let q = &mut t.tdx.as_mut().expect("tdx").quote;
        let i = rng.below(q.len());
        q[i] ^= 1 << rng.below(8);
        assert!(verify_bundle(&t, DSTACK_NOW, &policy(), &RustCrypto).is_err());

        let mut g = gpu.clone();
        let mut chain = g.certificate_chain.into_bytes();
        let i = rng.below(chain.len());
        chain[i] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\n-"[rng.below(66)];
        g.certificate_chain = String::from_utf8(chain).expect("ascii");
        let _ = verify_gpu_evidence(&g, &HOPPER_NONCE, GPU_NOW, &NoCache, &GpuRoots::NVIDIA);
    }
}

/// The real Hopper evidence against golden sets from NVIDIA's real signed RIMs
/// (testdata/nvidia-rims). No published RIM is for this GPU's firmware (VBIOS 96.00.9f.00.01,
/// driver 550.90.07: NVIDIA serves those from its online RIM service only), so: the GPU is
/// refused for want of a set of its versions, and the real 96.00.5e.00.01 / 545.00 values,
/// relabelled with this GPU's versions, do not match its measurements (other firmware).
#[test]
fn hopper_evidence_is_refused_by_golden_sets_of_other_firmware() {
    use attestation::nvidia::rim::verify_rim;
    use attestation::nvidia::{ReferenceKind, check_gpu_against_sets};
    const RIM_NOW: u64 = 1_704_067_200; // inside the sample RIMs' certificates' validity
    let rim =
        |name: &str| String::from_utf8(read(&format!("nvidia-rims/{name}"))).expect("utf8 RIM");
    let vbios = verify_rim(
        &rim("1010_0200_882_96005E0001_PROD.swidtag"),
        ReferenceKind::Vbios,
        RIM_NOW,
    )
    .expect("vbios RIM verifies");
    let driver = verify_rim(
        &rim("Driver_RIM_test_no_gpu.swidtag"),
        ReferenceKind::Driver,
        RIM_NOW,
    )
    .expect("driver RIM verifies");
    let gpu = verify_gpu_evidence(
        &hopper(),
        &HOPPER_NONCE,
        GPU_NOW,
        &NoCache,
        &GpuRoots::NVIDIA,
    )
    .expect("hopper verifies");

    let sets = [vbios.clone(), driver.clone()];
    let e = check_gpu_against_sets(&gpu, &sets).expect_err("no set for 96.00.9f.00.01");
    assert!(
        e.to_string()
            .contains("no Vbios reference set for GH100 version 96.00.9f.00.01"),
        "{e}"
    );

    let mut relabelled = sets;
    relabelled[0].version = "96.00.9f.00.01".into();
    relabelled[1].version = "550.90.07".into();
    let e = check_gpu_against_sets(&gpu, &relabelled).expect_err("other firmware's values");
    assert!(e.to_string().contains("not a golden value"), "{e}");
}
