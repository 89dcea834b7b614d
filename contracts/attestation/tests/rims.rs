//! NVIDIA's signed reference integrity manifests (testdata/nvidia-rims, from nvtrust's local GPU
//! verifier samples): they verify up to the pinned RIM root and yield golden sets; a byte
//! changed in a measurement, the signature or the chain is refused; the golden comparison
//! accepts measurements built from a real RIM and refuses one off it.

use attestation::nvidia::rim::verify_rim;
use attestation::nvidia::{GoldenSet, ReferenceKind, check_golden_measurements};

/// Inside the sample RIMs' certificates' validity (2024-01-01).
const NOW: u64 = 1_704_067_200;

fn rim(name: &str) -> String {
    let path = format!("{}/testdata/nvidia-rims/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const VBIOS: &str = "1010_0200_882_96005E0001_PROD.swidtag";
const DRIVER: &str = "Driver_RIM_test_no_gpu.swidtag";
const VBIOS_H20: &str = "g520_0200_885_9600740001_PROD.swidtag";
const VBIOS_TEST: &str = "1010_0200_882_96005E0001_test_no_gpu.swidtag";

#[test]
fn real_rims_verify_and_yield_golden_sets() {
    let vbios = verify_rim(&rim(VBIOS), ReferenceKind::Vbios, NOW).expect("VBIOS RIM verifies");
    assert_eq!(vbios.kind, ReferenceKind::Vbios);
    assert_eq!(vbios.product, "GH100");
    assert_eq!(vbios.version, "96.00.5e.00.01");
    let fsp = vbios
        .measurements
        .iter()
        .find(|m| m.index == 1)
        .expect("index 1");
    assert!(fsp.active);
    assert_eq!(
        fsp.alternatives,
        [
            "c3f65ef79a19c029868cd7ce54b10e44f192444edb3506dde29cef2aac4e916c90a4f438e55aa7581a9e384c74d82db6"
        ]
    );
    let driver = verify_rim(&rim(DRIVER), ReferenceKind::Driver, NOW).expect("driver RIM verifies");
    assert_eq!(driver.kind, ReferenceKind::Driver);
    assert_eq!(driver.version, "545.00");
    verify_rim(&rim(VBIOS_H20), ReferenceKind::Vbios, NOW).expect("another chip's RIM verifies");
}

#[test]
fn a_changed_byte_in_a_measurement_the_signature_or_the_chain_is_refused() {
    let xml = rim(VBIOS);
    let measurement = xml.replacen("c3f65ef79a19", "c3f65ef79a18", 1);
    assert!(
        verify_rim(&measurement, ReferenceKind::Vbios, NOW).is_err(),
        "measurement"
    );
    let at = xml.find("<ds:SignatureValue>").expect("signature") + 25;
    let mut sig = xml.clone();
    let flipped = if &sig[at..at + 1] == "A" { "B" } else { "A" };
    sig.replace_range(at..at + 1, flipped);
    assert!(
        verify_rim(&sig, ReferenceKind::Vbios, NOW).is_err(),
        "signature"
    );
    let at = xml.find("<ds:X509Certificate>").expect("certificate") + 120;
    let mut cert = xml.clone();
    let flipped = if &cert[at..at + 1] == "A" { "B" } else { "A" };
    cert.replace_range(at..at + 1, flipped);
    assert!(
        verify_rim(&cert, ReferenceKind::Vbios, NOW).is_err(),
        "certificate"
    );
    let unsigned = {
        let a = xml.find("<ds:Signature").expect("signature");
        let b = xml.find("</ds:Signature>").expect("end") + "</ds:Signature>".len();
        format!("{}{}", &xml[..a], &xml[b..])
    };
    assert!(
        verify_rim(&unsigned, ReferenceKind::Vbios, NOW).is_err(),
        "unsigned"
    );
    assert!(verify_rim("<not xml", ReferenceKind::Vbios, NOW).is_err());
    // Certificates outside their validity window.
    assert!(
        verify_rim(&xml, ReferenceKind::Vbios, 4_102_444_800).is_err(),
        "2100"
    );
}

#[test]
fn measurements_built_from_a_real_rim_pass_and_one_off_it_does_not() {
    // No published RIM matches our GPU evidence vector (VBIOS 96.00.9f.00.01, driver 550.90.07,
    // served by NVIDIA's online RIM service), so the GPU side is built from the real RIMs.
    let vbios: GoldenSet = verify_rim(&rim(VBIOS), ReferenceKind::Vbios, NOW).expect("vbios");
    let driver: GoldenSet = verify_rim(&rim(DRIVER), ReferenceKind::Driver, NOW).expect("driver");
    let top = vbios
        .measurements
        .iter()
        .chain(&driver.measurements)
        .map(|m| m.index)
        .max()
        .expect("indexes");
    let mut measured = vec!["00".repeat(48); usize::from(top) + 1];
    for m in vbios.measurements.iter().chain(&driver.measurements) {
        if m.active {
            measured[usize::from(m.index)] = m.alternatives[0].clone();
        }
    }
    let check = |measured: &[String]| {
        check_golden_measurements(
            "GH100",
            measured,
            Some("96.00.5e.00.01"),
            Some("545.00"),
            &vbios,
            &driver,
        )
    };
    assert_eq!(check(&measured), Ok(()));
    let active = vbios
        .measurements
        .iter()
        .find(|m| m.active)
        .expect("an active index");
    let mut off = measured.clone();
    off[usize::from(active.index)] = "11".repeat(48);
    assert!(check(&off).is_err());
}

/// NVIDIA's RIM PKI has signed two different value sets under one identity: nvtrust's
/// test-mode VBIOS RIM and the production one have the same tagId, chip and VBIOS version, both
/// verify up to the RIM root, and their hashes differ. Nothing in a verified set says which one
/// it is, so whoever pins a set must take it from NVIDIA's RIM service (the contract cannot
/// tell); a GPU measured against the production values is refused by the test set.
#[test]
fn two_validly_signed_rims_share_an_identity_with_different_values() {
    let prod = verify_rim(&rim(VBIOS), ReferenceKind::Vbios, NOW).expect("production RIM");
    let test = verify_rim(&rim(VBIOS_TEST), ReferenceKind::Vbios, NOW).expect("test-mode RIM");
    assert_eq!(
        (&prod.product, &prod.version, &prod.tag_id),
        (&test.product, &test.version, &test.tag_id)
    );
    assert_ne!(prod.measurements, test.measurements);

    let driver = verify_rim(&rim(DRIVER), ReferenceKind::Driver, NOW).expect("driver");
    let mut measured = vec!["00".repeat(48); 64];
    for m in prod.measurements.iter().chain(&driver.measurements) {
        if m.active {
            measured[usize::from(m.index)] = m.alternatives[0].clone();
        }
    }
    let check = |vbios: &GoldenSet| {
        check_golden_measurements(
            "GH100",
            &measured,
            Some("96.00.5e.00.01"),
            Some("545.00"),
            vbios,
            &driver,
        )
    };
    assert_eq!(check(&prod), Ok(()));
    let e = check(&test).expect_err("production values are off the test set");
    assert!(e.to_string().contains("not a golden value"), "{e}");
}

#[test]
fn the_verified_chain_is_handed_back_for_revocation_leaf_first_ending_with_the_root() {
    use attestation::nvidia::NVIDIA_RIM_ROOT_PEM;
    use attestation::nvidia::rim::verify_rim_chain;
    let rim = verify_rim_chain(&rim(VBIOS), ReferenceKind::Vbios, NVIDIA_RIM_ROOT_PEM, NOW)
        .expect("VBIOS RIM verifies");
    assert_eq!(rim.set.product, "GH100");
    // HCC RIM L4 Signer, Reference Value L3 GH100 001, Reference Value GH100 CA, the root
    // (which this RIM's KeyInfo also carries: it is not repeated).
    assert_eq!(rim.chain.len(), 4);
    let root = pem::parse(NVIDIA_RIM_ROOT_PEM)
        .expect("pem")
        .into_contents();
    assert_eq!(rim.chain.last(), Some(&root));
    assert_eq!(rim.chain.iter().filter(|c| **c == root).count(), 1);
}
