//! The real dstack node (Intel TDX quote, collateral, event log) and the real H100 evidence.

use super::*;
use crate::PlatformMeasurements;
use enclave_cloud_common::{AttestationKind, Hash32, TcbStatus};
use std::path::PathBuf;

/// The dstack vector's collateral is valid at this time (2026-08-13T00:00:00Z).
const DSTACK_NOW: u64 = 1_786_622_400 * SEC;
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn read(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(attestation::TESTDATA_DIR).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn text(rel: &str) -> String {
    String::from_utf8(read(rel))
        .expect("utf8")
        .trim()
        .to_owned()
}

fn tcb_info() -> serde_json::Value {
    serde_json::from_slice(&read("intel-tdx-dstack-node/tcb_info.json")).expect("tcb_info")
}

/// The node's own NEAR key, which the quote binds.
fn node_key() -> PublicKey {
    text("intel-tdx-dstack-node/near_account_public_key.pub")
        .parse()
        .expect("near key")
}

fn dstack_bundle() -> String {
    let b = attestation::bundle_from_dstack_public_data(&read(
        "intel-tdx-dstack-node/public_data.json",
    ))
    .expect("public data converts");
    serde_json::to_string(&b).expect("bundle json")
}

fn platform() -> PlatformMeasurements {
    let t = tcb_info();
    let field = |k: &str| t[k].as_str().expect("hex").to_owned();
    PlatformMeasurements {
        mrtd: field("mrtd"),
        rtmr0: field("rtmr0"),
        rtmr1: field("rtmr1"),
        rtmr2: field("rtmr2"),
    }
}

fn compose_hash() -> Hash32 {
    tcb_info()["compose_hash"]
        .as_str()
        .expect("hex")
        .parse()
        .expect("hash")
}

fn hopper_evidence() -> String {
    serde_json::json!({
        "report": text("nvidia-hopper-single/hopperAttestationReport.txt"),
        "nonce": GPU_NONCE,
        "certificate_chain": text("nvidia-hopper-single/hopperCertChain.txt"),
    })
    .to_string()
}

/// A registry (mainnet-style: no dev) allowing the dstack node's platform and compose hash.
fn tdx_registry(edit: impl FnOnce(&mut Policy)) -> Registry {
    fresh_chain();
    Call::by(owner()).at(DSTACK_NOW).set();
    let mut policy = Policy {
        platforms: vec![platform()],
        compose_hashes: vec![compose_hash()],
        ..test_policy()
    };
    edit(&mut policy);
    let mut r = Registry::try_new(owner(), true, None, Some(policy)).expect("init");
    Call::by(op()).deposit(near(100)).at(DSTACK_NOW).set();
    r.try_deposit_stake().expect("stake");
    r
}

fn as_node(r: &mut Registry) -> Result<NodeId, RegistryError> {
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    r.register_node_json(dstack_bundle(), None)
}

#[test]
fn dstack_node_registers_with_its_real_quote_and_own_key() {
    let mut r = tdx_registry(|_| {});
    let id = as_node(&mut r).expect("registers");
    let v = node(&r, id);
    assert_eq!(v.status, NodeStatus::Active);
    assert_eq!(v.kind, AttestationKind::Tdx);
    assert_eq!(v.tcb_status, TcbStatus::UpToDate);
    assert_eq!(v.signer_key, node_key());
    assert_eq!(v.measurements.mrtd, platform().mrtd);
    assert_eq!(
        v.measurements.rtmr3,
        tcb_info()["rtmr3"].as_str().expect("hex")
    );
    assert_eq!(v.measurements.compose_hash, Some(compose_hash()));
    let p2p: PublicKey = text("intel-tdx-dstack-node/near_p2p_public_key.pub")
        .parse()
        .expect("p2p key");
    assert_eq!(v.encryption_key, hex::encode(ed25519_bytes(&p2p)));
    assert!(matches!(
        &events()[..],
        [RegistryEvent::NodeRegistered {
            tcb_status: TcbStatus::UpToDate,
            ..
        }]
    ));
}

#[test]
fn dstack_bundle_sent_by_another_key_is_refused() {
    let mut r = tdx_registry(|_| {});
    let before = snapshot(&r);
    Call::by(op()).key(key(3).1).at(DSTACK_NOW).set();
    let err = r
        .register_node_json(dstack_bundle(), None)
        .expect_err("other key");
    assert!(
        matches!(err, RegistryError::SignerKeyMismatch { .. }),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
}

#[test]
fn allowlists_are_enforced() {
    let mut r = tdx_registry(|p| p.compose_hashes = vec![Hash32([1; 32])]);
    let before = snapshot(&r);
    let err = as_node(&mut r).expect_err("compose hash");
    assert_eq!(
        err,
        RegistryError::ComposeHashNotAllowed(compose_hash().to_string())
    );
    assert_eq!(snapshot(&r), before);

    let mut r = tdx_registry(|p| p.platforms[0].rtmr1 = "00".repeat(48));
    assert!(matches!(
        as_node(&mut r),
        Err(RegistryError::PlatformNotAllowed { .. })
    ));
    let mut r = tdx_registry(|p| p.platforms.clear());
    assert!(matches!(
        as_node(&mut r),
        Err(RegistryError::PlatformNotAllowed { .. })
    ));

    // The launched image digest, measured as an RTMR3 event.
    let digest: Hash32 = text("intel-tdx-dstack-node/mpc_image_digest.txt")
        .parse()
        .expect("digest");
    let mut r = tdx_registry(|p| {
        p.image_digest_event = "mpc-image-digest".into();
        p.image_digests = vec![Hash32([2; 32])];
    });
    assert_eq!(
        as_node(&mut r).expect_err("digest"),
        RegistryError::ImageDigestNotAllowed(digest.to_string())
    );
    let mut r = tdx_registry(|p| p.image_digests = vec![digest]);
    assert_eq!(
        as_node(&mut r).expect_err("no such event"),
        RegistryError::ImageDigestMissing
    );
    let mut r = tdx_registry(|p| {
        p.image_digest_event = "mpc-image-digest".into();
        p.image_digests = vec![digest];
    });
    as_node(&mut r).expect("allowed digest");
}

#[test]
fn quote_outside_its_collateral_window_is_refused() {
    let mut r = tdx_registry(|_| {});
    Call::by(op())
        .key(node_key())
        .at(DSTACK_NOW + 60 * DAY)
        .set();
    let err = r
        .register_node_json(dstack_bundle(), None)
        .expect_err("collateral expired");
    assert!(matches!(err, RegistryError::Attestation(_)), "{err}");
}

#[test]
fn tampered_quote_is_refused_and_changes_nothing() {
    let mut r = tdx_registry(|_| {});
    let mut bundle: serde_json::Value = serde_json::from_str(&dstack_bundle()).expect("json");
    let quote = bundle["tdx"]["quote"].as_str().expect("hex").to_owned();
    for (name, q) in [
        ("truncated", quote[..600].to_owned()),
        ("flipped", flip_hex(&quote, 700)),
        ("empty", String::new()),
    ] {
        bundle["tdx"]["quote"] = q.into();
        let before = snapshot(&r);
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        let err = r
            .register_node_json(bundle.to_string(), None)
            .expect_err(name);
        assert!(
            matches!(err, RegistryError::Attestation(_)),
            "{name}: {err}"
        );
        assert_eq!(snapshot(&r), before, "{name}");
    }
}

/// A bundle's `gpus` field holding one GPU evidence (JSON text).
fn gpu_list(evidence: &str) -> serde_json::Value {
    serde_json::json!([serde_json::from_str::<serde_json::Value>(evidence).expect("json")])
}

/// The certificates the events say were cached.
fn cached_certificates(evs: &[RegistryEvent]) -> Vec<Hash32> {
    evs.iter()
        .filter_map(|e| match e {
            RegistryEvent::CertificateCached { hash } => Some(*hash),
            _ => None,
        })
        .collect()
}

fn flip_hex(h: &str, byte: usize) -> String {
    let mut bytes = hex::decode(h).expect("hex");
    bytes[byte] ^= 1;
    hex::encode(bytes)
}

/// Issue 16 item 1: NVIDIA's public H100 sample (a real, correctly signed report) answers a
/// nonce no enclave key hashes to: refused in a bundle without a challenge, in a bundle with
/// the registry's challenge and in `add_gpu`, and nothing changes.
#[test]
fn public_h100_evidence_is_never_bound_to_a_node() {
    let mut r = tdx_registry(|_| {});
    // Devices without a challenge.
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let before = snapshot(&r);
    let err = r
        .register_node_json(bundle_with_hopper().to_string(), None)
        .expect_err("no challenge");
    assert!(
        matches!(err, RegistryError::NoPendingAttestation(_)),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
    // With the registry's challenge: the report does not answer the binding nonce.
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let challenge = r
        .try_begin_attestation(2, 0, None)
        .expect("begins")
        .challenge;
    let mut bundle = bundle_with_hopper();
    bundle["gpu_challenge"] = challenge.to_string().into();
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let before = snapshot(&r);
    let err = r
        .register_node_json(bundle.to_string(), None)
        .expect_err("not bound");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
    // Registered without it, then in add_gpu.
    bundle["gpus"] = serde_json::json!([]);
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let id = r
        .register_node_json(bundle.to_string(), None)
        .expect("registers, pending");
    assert_eq!(status(&r, id), NodeStatus::Pending);
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let err = r
        .add_gpu_json(id, gpu_list(&hopper_evidence()).to_string(), "[]".into())
        .expect_err("not bound");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    // Malformed arguments are typed errors.
    for bad in ["garbage", "[{\"report\":\"00\"}]"] {
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        let err = expect_err(
            r.add_gpu_json(id, bad.into(), "[]".into()),
            "not valid JSON for this method",
        );
        assert!(matches!(err, RegistryError::BadArguments(_)));
    }
}

/// Issue 16 item 5: governance can drop cached certificates (e.g. one NVIDIA revoked); a
/// chain through them is verified in full again. Only the owner, with one yocto.
#[test]
fn governance_forgets_cached_certificates() {
    let mut r = tdx_registry(|p| p.gpu.min_gpus = 1);
    let id = as_node(&mut r).expect("registers");
    let chain = text("nvidia-hopper-single/hopperCertChain.txt");
    let mut cached = Vec::new();
    loop {
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        let step = r
            .try_cache_gpu_certificates(id, chain.clone(), Some(3))
            .expect("caches");
        if step.is_empty() {
            break;
        }
        cached.extend(cached_certificates(&events()));
    }
    assert!(!cached.is_empty());
    assert!(cached.iter().all(|h| r.is_certificate_cached(*h)));

    Call::by(op()).yocto().at(DSTACK_NOW).set();
    assert!(matches!(
        r.try_forget_certificates(cached.clone()),
        Err(RegistryError::NotOwner { .. })
    ));
    Call::by(owner()).at(DSTACK_NOW).set();
    assert!(
        r.try_forget_certificates(cached.clone()).is_err(),
        "one yocto"
    );
    Call::by(owner()).yocto().at(DSTACK_NOW).set();
    let too_many = vec![Hash32([7; 32]); 101];
    assert!(r.try_forget_certificates(too_many).is_err());
    Call::by(owner()).yocto().at(DSTACK_NOW).set();
    let mut with_unknown = cached.clone();
    with_unknown.push(Hash32([7; 32]));
    assert_eq!(
        r.try_forget_certificates(with_unknown).expect("owner"),
        cached.len() as u32
    );
    assert!(cached.iter().all(|h| !r.is_certificate_cached(*h)));
    assert!(events().iter().any(|e| matches!(
        e,
        RegistryEvent::PolicyUpdated { field, .. } if field == "cert_cache.removed"
    )));
}

/// The dstack node's bundle with the real H100 in its `gpus`.
fn bundle_with_hopper() -> serde_json::Value {
    let mut bundle: serde_json::Value = serde_json::from_str(&dstack_bundle()).expect("json");
    bundle["gpus"] = gpu_list(&hopper_evidence());
    bundle
}

/// A change of policy that revokes what the dstack node attested.
type Revoke = fn(&mut Policy);

#[test]
fn governance_revocation_retires_registered_nodes() {
    let mut r = tdx_registry(|_| {});
    let id = as_node(&mut r).expect("registers");
    assert_eq!(status(&r, id), NodeStatus::Active);
    let allowed = r.get_policy();
    let revocations: [(&str, Revoke); 3] = [
        ("compose hash", |p| p.compose_hashes.clear()),
        ("platform", |p| p.platforms[0].mrtd = "11".repeat(48)),
        ("image digest", |p| p.image_digests = vec![Hash32([3; 32])]),
    ];
    for (what, revoke) in revocations {
        let mut p = allowed.clone();
        revoke(&mut p);
        Call::by(owner()).yocto().at(DSTACK_NOW).set();
        r.try_set_policy(p).expect("owner");
        assert_eq!(status(&r, id), NodeStatus::Expired, "{what} revoked");
        Call::by(owner()).yocto().at(DSTACK_NOW).set();
        r.try_set_policy(allowed.clone()).expect("owner");
        assert_eq!(status(&r, id), NodeStatus::Active, "{what} allowed again");
    }
}

#[test]
fn gpu_chain_is_cached_in_steps_then_only_the_report_is_verified() {
    let mut r = tdx_registry(|_| {});
    let id = as_node(&mut r).expect("registers");
    let chain = text("nvidia-hopper-single/hopperCertChain.txt");
    let step = |r: &mut Registry, max: Option<u8>| {
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        r.try_cache_gpu_certificates(id, chain.clone(), max)
    };
    // Bounds on the work per call; only the enclave key.
    assert!(matches!(
        step(&mut r, Some(0)),
        Err(RegistryError::InvalidInput { .. })
    ));
    assert!(matches!(
        step(&mut r, Some(4)),
        Err(RegistryError::InvalidInput { .. })
    ));
    Call::by(op()).at(DSTACK_NOW).set();
    assert!(matches!(
        r.try_cache_gpu_certificates(id, chain.clone(), None),
        Err(RegistryError::NotNodeKey { .. })
    ));
    Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
    let err = r.try_cache_gpu_certificates(
        id,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        None,
    );
    assert!(matches!(err, Err(RegistryError::Gpu(_))), "{err:?}");

    let first = step(&mut r, Some(2)).expect("two certificates");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|h| r.is_certificate_cached(*h)));
    assert_eq!(events().len(), 2, "one certificate_cached per new hash");
    let second = step(&mut r, None).expect("the rest");
    assert_eq!(second.len(), 2, "device CA and leaf");
    assert!(step(&mut r, None).expect("nothing left").is_empty());
}

/// The real H100 chain's PEM blocks in the given order (0 = leaf, 1 = BROM, 2 = Provisioner
/// ICA, 3 = GH100 Identity, 4 = the NVIDIA Device Identity CA root).
fn hopper_chain(order: &[usize]) -> String {
    const END: &str = "-----END CERTIFICATE-----";
    let all = text("nvidia-hopper-single/hopperCertChain.txt");
    let blocks: Vec<String> = all
        .split_inclusive(END)
        .filter(|b| b.contains(END))
        .map(|b| format!("{}\n", b.trim()))
        .collect();
    assert_eq!(blocks.len(), 5, "leaf, BROM, ICA, Identity, root");
    order.iter().map(|&i| blocks[i].as_str()).collect()
}

/// The duplicated-leaf chain on the registry's chain-caching path (the library's tests cover
/// the bundle and device paths, where an unbound report is refused before its chain).
#[test]
fn a_duplicated_leaf_chain_is_never_cached() {
    let mut r = tdx_registry(|_| {});
    let dup = hopper_chain(&[0, 0, 1, 2, 3]);
    let duplicate = |e: &RegistryError| matches!(e, RegistryError::Gpu(m) if m.contains("repeats"));
    let id = as_node(&mut r).expect("registers");
    let step = |r: &mut Registry, chain: &str| {
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        r.try_cache_gpu_certificates(id, chain.to_owned(), Some(3))
    };
    // Stepwise from nothing cached: the first step already refuses, nothing is cached.
    let err = step(&mut r, &dup).expect_err("the duplicated leaf chain is refused");
    assert!(duplicate(&err), "{err:?}");
    assert!(events().is_empty(), "nothing cached");

    // With the honest chain cached, a step still refuses the duplicated chain, and an extra
    // copy of an intermediate.
    while !step(&mut r, &hopper_chain(&[0, 1, 2, 3]))
        .expect("honest chain")
        .is_empty()
    {}
    let err = step(&mut r, &dup).expect_err("refused over the cached chain");
    assert!(duplicate(&err), "{err:?}");
    let err = step(&mut r, &hopper_chain(&[0, 1, 1, 2, 3])).expect_err("a repeated BROM");
    assert!(duplicate(&err), "{err:?}");
}

#[test]
fn cached_certificates_are_rechecked_against_their_validity() {
    // Every certificate of the cached chain is presented again and its validity checked at
    // the time of use: a cached chain is never trusted outside any of its certificates'
    // windows. The real chain's notAfter is 9999-12-31 (beyond a NEAR timestamp), so the
    // window is exercised through notBefore: 2021-06-01 is after the leaf's and the BROM's
    // notBefore, before the Provisioner ICA's (2022-03-01).
    const BEFORE_ICA: u64 = 1_622_505_600 * SEC;
    let mut r = tdx_registry(|_| {});
    let id = as_node(&mut r).expect("registers");
    loop {
        Call::by(op()).key(node_key()).at(DSTACK_NOW).set();
        let chain = text("nvidia-hopper-single/hopperCertChain.txt");
        if r.try_cache_gpu_certificates(id, chain, Some(3))
            .expect("caches")
            .is_empty()
        {
            break;
        }
    }
    Call::by(op()).key(node_key()).at(BEFORE_ICA).set();
    let chain = text("nvidia-hopper-single/hopperCertChain.txt");
    let err = r
        .try_cache_gpu_certificates(id, chain, Some(3))
        .expect_err("the cached ICA is not valid yet");
    assert!(
        matches!(&err, RegistryError::Gpu(m) if m.contains("not valid at")),
        "{err:?}"
    );
}
