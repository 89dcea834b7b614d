//! Issue 16 with the dev GPU provider (`attestation::dev_gpu`): an 8-GPU + 4-switch node bound
//! to its enclave verifies through the same code as real NVIDIA evidence; unbound, misplaced,
//! incomplete or tampered evidence is refused.

use attestation::dev_gpu::{DEV_GPU_ROOT_SHA256, DevGpuFleet};
use attestation::dstack::NamedEvent;
use attestation::nvidia::{verify_chain, verify_chain_step};
use attestation::*;
use ed25519_dalek::{Signer, SigningKey};
use std::collections::BTreeSet;

/// Inside the dev certificates' validity (2025..2049) and the dstack vector's window.
const NOW: u64 = 1_786_622_400;
const ENCLAVE: [u8; 32] = [5; 32];
const NEAR: [u8; 32] = [6; 32];
const CHALLENGE: [u8; 32] = [7; 32];
const SEED: [u8; 32] = [42; 32];

fn dev_ca() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn dev_roots() -> GpuRoots {
    GpuRoots {
        dev_root_sha256: Some(DEV_GPU_ROOT_SHA256),
    }
}

/// The policy of a registry with dev attestation enabled.
fn dev_policy() -> VerifyPolicy {
    VerifyPolicy {
        dev_ca_public_key: Some(dev_ca().verifying_key().to_bytes()),
        dev_gpu_root: Some(DEV_GPU_ROOT_SHA256),
        ..VerifyPolicy::default()
    }
}

fn nonce() -> [u8; 32] {
    gpu_binding_nonce(&ENCLAVE, &NEAR, &CHALLENGE)
}

/// A dev-kind bundle of (ENCLAVE, NEAR) carrying `gpus` and `switches`, with CHALLENGE.
fn bundle(gpus: Vec<GpuEvidence>, switches: Vec<GpuEvidence>) -> AttestationBundle {
    let expires_at = NOW + 3600;
    let sig = dev_ca().sign(&dev_attestation_message(&ENCLAVE, &NEAR, expires_at));
    AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Dev,
        enclave_key: ENCLAVE.to_vec(),
        near_public_key: format_near_ed25519_key(&NEAR),
        tdx: None,
        dev: Some(DevEvidence {
            expires_at,
            signature: sig.to_bytes().to_vec(),
            events: Vec::new(),
        }),
        gpus,
        switches,
        gpu_challenge: Some(hex::encode(CHALLENGE)),
    }
}

/// The 8-GPU + 4-switch node's evidence for `nonce`.
fn node(nonce: &[u8; 32]) -> attestation::dev_gpu::DevEvidence {
    DevGpuFleet::new(SEED, 8, 4).evidence(nonce)
}

fn bound_bundle() -> AttestationBundle {
    let ev = node(&nonce());
    bundle(ev.gpus, ev.switches)
}

fn verify(b: &AttestationBundle) -> Result<Verdict, AttestationError> {
    verify_bundle(b, NOW, &dev_policy(), &RustCrypto)
}

#[test]
fn a_bound_dev_node_with_8_gpus_and_4_switches_verifies() {
    let v = verify(&bound_bundle()).expect("bound node verifies");
    assert_eq!((v.gpus.len(), v.switches.len()), (8, 4));
    assert!(
        v.gpus
            .iter()
            .all(|g| g.model == "GH100" && g.protected_pcie)
    );
    assert!(
        v.switches
            .iter()
            .all(|s| s.model == "LS10" && s.gpu_pdis.len() == 8)
    );
    let pdis: BTreeSet<&str> = v.switches.iter().map(|s| s.pdi.as_str()).collect();
    for g in &v.gpus {
        assert_eq!(g.nonce, hex::encode(nonce()));
        assert_eq!(
            g.switch_pdis
                .iter()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            pdis
        );
    }
    let ids: BTreeSet<&str> = v
        .gpus
        .iter()
        .map(|g| g.device_id.as_str())
        .chain(v.switches.iter().map(|s| s.device_id.as_str()))
        .collect();
    assert_eq!(ids.len(), 12, "every device has its own id");
    // Devices are stable per (seed, index): another node from the same seed presents the same
    // GPUs, under another nonce.
    let again = DevGpuFleet::new(SEED, 8, 4).evidence(&[1; 32]);
    let first = verify_gpu_evidence(&again.gpus[3], &[1; 32], NOW, &NoCache, &dev_roots())
        .expect("same fleet");
    assert_eq!(first.device_id, v.gpus[3].device_id);
    // The JSON verdict carries the switches.
    let json = serde_json::to_value(&v).expect("json");
    assert_eq!(json["switches"].as_array().map(Vec::len), Some(4));
}

#[test]
fn a_node_without_switches_is_not_in_protected_pcie_mode() {
    let ev = DevGpuFleet::new(SEED, 2, 0).evidence(&nonce());
    let v = verify(&bundle(ev.gpus, ev.switches)).expect("verifies");
    assert!(
        v.gpus
            .iter()
            .all(|g| !g.protected_pcie && g.switch_pdis.is_empty())
    );
}

/// The TDX path of the library: the dstack node's real quote binds its keys; dev GPUs answering
/// the binding nonce of those keys verify under a policy trusting the dev root.
#[test]
fn a_tdx_bundle_with_bound_dev_gpus_verifies() {
    let vectors = std::path::Path::new(TESTDATA_DIR);
    let mut b = bundle_from_dstack_public_data(
        &std::fs::read(vectors.join("intel-tdx-dstack-node/public_data.json")).expect("read"),
    )
    .expect("public data");
    let enclave: [u8; 32] = b.enclave_key.clone().try_into().expect("32 bytes");
    let near = parse_near_ed25519_key(&b.near_public_key).expect("key");
    let ev = node(&gpu_binding_nonce(&enclave, &near, &CHALLENGE));
    b.gpus = ev.gpus;
    b.switches = ev.switches;
    b.gpu_challenge = Some(hex::encode(CHALLENGE));
    let policy = VerifyPolicy {
        dev_gpu_root: Some(DEV_GPU_ROOT_SHA256),
        ..VerifyPolicy::default()
    };
    let v = verify_bundle(&b, NOW, &policy, &RustCrypto).expect("tdx + dev GPUs");
    assert_eq!(
        (v.kind, v.gpus.len(), v.switches.len()),
        (AttestationKind::Tdx, 8, 4)
    );
    // NVIDIA's root only (a production policy): the dev GPUs are refused.
    let err = verify_bundle(&b, NOW, &VerifyPolicy::default(), &RustCrypto).expect_err("no dev");
    assert_eq!(
        err,
        AttestationError::Gpu {
            index: 0,
            error: GpuError::UntrustedRoot
        }
    );
}

fn hopper() -> GpuEvidence {
    let dir = std::path::Path::new(TESTDATA_DIR).join("nvidia-hopper-single");
    let report = std::fs::read_to_string(dir.join("hopperAttestationReport.txt")).expect("read");
    GpuEvidence {
        report: hex::decode(report.trim()).expect("hex"),
        nonce: hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .expect("hex"),
        certificate_chain: std::fs::read_to_string(dir.join("hopperCertChain.txt")).expect("read"),
    }
}

fn gpu_error(err: &AttestationError) -> &GpuError {
    match err {
        AttestationError::Gpu { error, .. }
        | AttestationError::Switch { error, .. }
        | AttestationError::Topology(error) => error,
        other => panic!("not a GPU error: {other}"),
    }
}

#[test]
fn public_evidence_is_refused_in_a_dev_bundle() {
    let mut b = bound_bundle();
    b.gpus.push(hopper());
    let err = verify(&b).expect_err("public H100");
    assert!(
        matches!(
            err,
            AttestationError::Gpu {
                index: 8,
                error: GpuError::NotBound { .. }
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
}

#[test]
fn evidence_for_another_enclave_near_key_or_challenge_is_refused() {
    for (what, other) in [
        (
            "enclave key",
            gpu_binding_nonce(&[8; 32], &NEAR, &CHALLENGE),
        ),
        (
            "NEAR key",
            gpu_binding_nonce(&ENCLAVE, &[8; 32], &CHALLENGE),
        ),
        ("challenge", gpu_binding_nonce(&ENCLAVE, &NEAR, &[8; 32])),
    ] {
        let ev = node(&other);
        // All devices for the other binding, or one GPU, or one switch.
        let honest = node(&nonce());
        let mut one_gpu = honest.gpus.clone();
        one_gpu[5] = ev.gpus[5].clone();
        let mut one_switch = honest.switches.clone();
        one_switch[2] = ev.switches[2].clone();
        for (b, expect_index, switch) in [
            (bundle(ev.gpus.clone(), ev.switches.clone()), 0, false),
            (bundle(one_gpu, honest.switches.clone()), 5, false),
            (bundle(honest.gpus.clone(), one_switch), 2, true),
        ] {
            let err = verify(&b).expect_err(what);
            let index = match &err {
                AttestationError::Gpu { index, .. } if !switch => *index,
                AttestationError::Switch { index, .. } if switch => *index,
                other => panic!("{what}: {other}"),
            };
            assert_eq!(index, expect_index, "{what}");
            assert!(
                matches!(gpu_error(&err), GpuError::NotBound { .. }),
                "{what}: {err}"
            );
        }
        // The same evidence with its bundle's challenge changed to match is still refused for
        // another enclave or NEAR key.
        if what != "challenge" {
            let mut b = bundle(ev.gpus, ev.switches);
            b.gpu_challenge = Some(hex::encode([8u8; 32]));
            assert_eq!(verify(&b).expect_err(what).code(), "gpu_not_bound");
        }
    }
    // A bundle whose claimed `nonce` fields are rewritten to the expected one: the signed
    // request still answers the other nonce.
    let ev = node(&gpu_binding_nonce(&[8; 32], &NEAR, &CHALLENGE));
    let mut gpus = ev.gpus;
    for g in &mut gpus {
        g.nonce = nonce().to_vec();
    }
    let err = verify(&bundle(gpus, ev.switches)).expect_err("claims");
    assert!(
        matches!(gpu_error(&err), GpuError::NotBound { .. }),
        "{err}"
    );
}

#[test]
fn a_switch_is_never_a_gpu_and_a_gpu_never_a_switch() {
    let ev = node(&nonce());
    let mut gpus = ev.gpus.clone();
    gpus.push(ev.switches[0].clone());
    let err = verify(&bundle(gpus, ev.switches.clone())).expect_err("switch as GPU");
    assert_eq!(
        err,
        AttestationError::Gpu {
            index: 8,
            error: GpuError::NotAGpu {
                model: "LS10".into()
            }
        }
    );
    let mut switches = ev.switches.clone();
    switches.push(ev.gpus[0].clone());
    let err = verify(&bundle(ev.gpus.clone(), switches)).expect_err("GPU as switch");
    assert_eq!(
        err,
        AttestationError::Switch {
            index: 4,
            error: GpuError::NotASwitch {
                model: "GH100".into()
            }
        }
    );
}

#[test]
fn the_topology_must_match() {
    let ev = node(&nonce());
    let refused = |gpus: Vec<GpuEvidence>, switches: Vec<GpuEvidence>, what: &str| {
        let err = verify(&bundle(gpus, switches)).expect_err(what);
        assert!(
            matches!(err, AttestationError::Topology(GpuError::Topology(_))),
            "{what}: {err}"
        );
        eprintln!("{what}: {err}");
    };
    // A switch missing, every one in turn.
    for i in 0..4 {
        let mut switches = ev.switches.clone();
        switches.remove(i);
        refused(ev.gpus.clone(), switches, "a switch missing");
    }
    refused(ev.gpus.clone(), Vec::new(), "no switch");
    // Another node's switch instead of one of ours (its PDI is in no GPU's list).
    let other = DevGpuFleet::new([43; 32], 8, 4).evidence(&nonce());
    let mut switches = ev.switches.clone();
    switches[1] = other.switches[1].clone();
    refused(ev.gpus.clone(), switches, "a foreign switch");
    // One GPU whose NVLinks reach other switches (a wrong PDI in its list).
    let mut gpus = ev.gpus.clone();
    gpus[6] = other.gpus[6].clone();
    refused(gpus, ev.switches.clone(), "a GPU of another topology");
    // A switch twice.
    let mut switches = ev.switches.clone();
    switches[3] = switches[0].clone();
    refused(ev.gpus.clone(), switches, "a switch twice");
    // A protected-PCIe node and a GPU that is not.
    let mut gpus = ev.gpus.clone();
    gpus[0] = DevGpuFleet::new(SEED, 1, 0).evidence(&nonce()).gpus[0].clone();
    refused(gpus, ev.switches.clone(), "mixed modes");
    // The partial verification (a registry receiving devices over several calls) does not
    // check the topology; check_topology does once all are in.
    let partial = verify_bundle_partial(
        &bundle(ev.gpus.clone(), ev.switches[..2].to_vec()),
        NOW,
        &dev_policy(),
        &RustCrypto,
        &NoCache,
    )
    .expect("partial");
    assert!(check_topology(&partial.gpus, &partial.switches).is_err());
}

#[test]
fn the_dev_root_is_trusted_only_when_named() {
    let b = bound_bundle();
    for (what, policy) in [
        (
            "no dev root",
            VerifyPolicy {
                dev_gpu_root: None,
                ..dev_policy()
            },
        ),
        (
            "another dev root",
            VerifyPolicy {
                dev_gpu_root: Some([1; 32]),
                ..dev_policy()
            },
        ),
    ] {
        let err = verify_bundle(&b, NOW, &policy, &RustCrypto).expect_err(what);
        assert_eq!(
            err,
            AttestationError::Gpu {
                index: 0,
                error: GpuError::UntrustedRoot
            },
            "{what}"
        );
    }
    let chain = &b.gpus[0].certificate_chain;
    assert_eq!(
        verify_chain(chain, NOW, &NoCache, &GpuRoots::NVIDIA).err(),
        Some(GpuError::UntrustedRoot)
    );
    assert_eq!(
        verify_chain_step(chain, NOW, &NoCache, 1, &GpuRoots::NVIDIA).err(),
        Some(GpuError::UntrustedRoot)
    );
    // A chain without the root certificate cannot name the dev root either.
    let pems = pem::parse_many(chain).expect("pem");
    let without_root = pem::encode_many(&pems[..2]);
    assert_eq!(
        verify_chain(&without_root, NOW, &NoCache, &dev_roots()).err(),
        Some(GpuError::UntrustedRoot)
    );
    // The dev chain is valid 2025-01-01 .. 2049-12-31.
    assert!(matches!(
        verify_chain(chain, 1_700_000_000, &NoCache, &dev_roots()),
        Err(GpuError::CertValidity { .. })
    ));
    assert!(matches!(
        verify_chain(chain, 2_600_000_000, &NoCache, &dev_roots()),
        Err(GpuError::CertValidity { .. })
    ));
}

/// The measured event of `gpu` as a verified event log lists it.
fn measured(gpu: &GpuEvidence) -> Vec<NamedEvent> {
    vec![NamedEvent {
        name: GPU_EVIDENCE_EVENT.into(),
        payload: hex::encode(gpu_evidence_digest(gpu).expect("digest")),
    }]
}

#[test]
fn a_duplicated_leaf_is_refused_on_every_path() {
    let gpu = node(&nonce()).gpus.remove(0);
    let pems = pem::parse_many(&gpu.certificate_chain).expect("pem");
    assert_eq!(pems.len(), 3, "leaf, intermediate, dev root");
    let dup = pem::encode_many(&[
        pems[0].clone(),
        pems[0].clone(),
        pems[1].clone(),
        pems[2].clone(),
    ]);
    let dup_err = GpuError::CertDuplicate { index: 1, first: 0 };
    // The honest chain cached in steps, so the cached paths are exercised too.
    let mut full = BTreeSet::new();
    loop {
        let step =
            verify_chain_step(&gpu.certificate_chain, NOW, &full, 1, &dev_roots()).expect("step");
        if step.is_empty() {
            break;
        }
        full.extend(step);
    }
    assert_eq!(full.len(), 2, "intermediate and leaf");
    for cache in [&BTreeSet::new(), &full] {
        assert_eq!(
            verify_chain(&dup, NOW, cache, &dev_roots()).err(),
            Some(dup_err.clone())
        );
        for max in 1..=4 {
            assert_eq!(
                verify_chain_step(&dup, NOW, cache, max, &dev_roots()).err(),
                Some(dup_err.clone())
            );
        }
        let mut ev = gpu.clone();
        ev.certificate_chain = dup.clone();
        assert_eq!(
            verify_gpu_evidence(&ev, &nonce(), NOW, cache, &dev_roots()).err(),
            Some(dup_err.clone())
        );
        // The measured path, with the duplicated chain measured as it is.
        assert_eq!(
            verify_measured_gpu(&measured(&ev), &ev, &nonce(), &dev_roots()).err(),
            Some(dup_err.clone())
        );
        // The honest chain verifies on every one of these paths.
        verify_gpu_evidence(&gpu, &nonce(), NOW, cache, &dev_roots()).expect("honest");
    }
    verify_measured_gpu(&measured(&gpu), &gpu, &nonce(), &dev_roots()).expect("measured");
    // And the measured path needs the binding too.
    assert_eq!(
        verify_measured_gpu(&measured(&gpu), &gpu, &[0; 32], &dev_roots())
            .map(|_| ())
            .unwrap_err()
            .code(),
        "gpu_not_bound"
    );
}

/// Every byte of one dev GPU report, flipped, is refused: the request's nonce (bytes 4..36) no
/// longer answers the binding nonce; every other byte up to the signature is signed; the
/// signature's own bytes break it. (Nothing in the report is outside the signature's coverage.)
#[test]
fn every_flipped_byte_of_a_report_is_refused() {
    let gpu = node(&nonce()).gpus.remove(0);
    // A known device: only the report's signature is verified per flip (the real path of a
    // re-attestation), so the loop stays fast.
    let mut known = BTreeSet::new();
    loop {
        let step =
            verify_chain_step(&gpu.certificate_chain, NOW, &known, 2, &dev_roots()).expect("step");
        if step.is_empty() {
            break;
        }
        known.extend(step);
    }
    verify_gpu_evidence(&gpu, &nonce(), NOW, &known, &dev_roots()).expect("honest");
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for pos in 0..gpu.report.len() {
        let mut t = gpu.clone();
        t.report[pos] ^= 0x01;
        let err = verify_gpu_evidence(&t, &nonce(), NOW, &known, &dev_roots())
            .expect_err(&format!("byte {pos} flipped"));
        if (4..36).contains(&pos) {
            assert!(
                matches!(err, GpuError::NotBound { .. }),
                "byte {pos}: {err}"
            );
        }
        *kinds.entry(err.code()).or_default() += 1;
    }
    eprintln!("{} report bytes flipped: {kinds:?}", gpu.report.len());
}

/// Every byte of the leaf certificate (and of the intermediate), flipped, is refused: the
/// certificate no longer parses, or no longer links, or its signature fails.
#[test]
fn every_flipped_byte_of_a_certificate_is_refused() {
    let gpu = node(&nonce()).gpus.remove(0);
    let pems = pem::parse_many(&gpu.certificate_chain).expect("pem");
    for ci in 0..2 {
        let der = pems[ci].contents().to_vec();
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        for pos in 0..der.len() {
            let mut tampered = pems.clone();
            let mut d = der.clone();
            d[pos] ^= 0x01;
            tampered[ci] = pem::Pem::new("CERTIFICATE", d);
            let mut t = gpu.clone();
            t.certificate_chain = pem::encode_many(&tampered);
            let err = verify_gpu_evidence(&t, &nonce(), NOW, &NoCache, &dev_roots())
                .expect_err(&format!("certificate {ci} byte {pos} flipped"));
            *kinds.entry(err.code()).or_default() += 1;
        }
        eprintln!("certificate {ci}: {} bytes flipped: {kinds:?}", der.len());
    }
}
