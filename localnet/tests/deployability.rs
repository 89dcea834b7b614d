//! Every contract the project ships must be accepted by nearcore's VM. The wasm files come
//! from `scripts/build-contracts.sh` (run by `scripts/test.sh` before the tests).

use localnet::contract_check::check_deployable;
use std::path::PathBuf;
use std::process::Command;

/// The contracts every build must produce.
const CONTRACTS: &[&str] = &[
    "registry",
    "marketplace",
    "model_token",
    "model_factory",
    "ai_caller",
    "test_token",
];

fn wasm_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ECLOUD_WASM_DIR") {
        return dir.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("near")
}

#[test]
fn every_built_contract_is_deployable() {
    let dir = wasm_dir();
    for name in CONTRACTS {
        let path = dir.join(format!("{name}.wasm"));
        let code = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/build-contracts.sh first",
                path.display()
            )
        });
        match check_deployable(&code) {
            Ok(d) => println!(
                "deployable {name}: {} bytes (protocol {} limit {})",
                d.size, d.protocol_version, d.max_size
            ),
            Err(e) => panic!("{name} would be rejected: {e}"),
        }
    }
}

#[test]
fn cli_rejects_a_broken_wasm_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("ecloud-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.wasm");
    // Deterministic pseudo-random bytes: not a wasm module.
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&broken, bytes).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_localnet"))
        .arg("check-contract")
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken wasm must fail the check");
    assert!(
        stderr.contains("REJECTED") && stderr.contains("not a valid NEAR wasm"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
