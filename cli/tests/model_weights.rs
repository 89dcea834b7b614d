//! `ecloud model encrypt | decrypt` through the binary on temporary files.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

fn ecloud(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecloud"))
        .args(args)
        .output()
        .expect("run ecloud")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const CHUNK: &str = "65536";

#[test]
fn encrypt_prints_both_hashes_and_decrypt_restores_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.bin");
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&weights, &plain).unwrap();
    let enc = dir.path().join("w.enc");
    let key = dir.path().join("model.key");

    // Text output, with a new key.
    let o = ecloud(&[
        "model",
        "encrypt",
        "--weights",
        s(&weights),
        "--out",
        s(&enc),
        "--new-key",
        s(&key),
        "--chunk-size",
        CHUNK,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    let ciphertext = std::fs::read(&enc).unwrap();
    assert!(text.contains(&sha_hex(&plain)), "{text}");
    assert!(text.contains(&sha_hex(&ciphertext)), "{text}");
    assert!(
        stderr(&o).contains("encrypting:"),
        "progress: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("(100%)"), "progress: {}", stderr(&o));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // --json, with the existing key: same plaintext hash, a fresh ciphertext.
    let enc2 = dir.path().join("w2.enc");
    let o = ecloud(&[
        "--json",
        "model",
        "encrypt",
        "--weights",
        s(&weights),
        "--out",
        s(&enc2),
        "--key",
        s(&key),
        "--chunk-size",
        CHUNK,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ciphertext2 = std::fs::read(&enc2).unwrap();
    assert_eq!(summary["plaintext_sha256"], sha_hex(&plain));
    assert_eq!(summary["ciphertext_sha256"], sha_hex(&ciphertext2));
    assert_ne!(ciphertext, ciphertext2);
    assert_eq!(summary["bytes"], 300_000);
    assert_eq!(summary["chunks"], 5);
    assert_eq!(summary["key_created"], false);
    assert_eq!(summary["ciphertext_bytes"], ciphertext2.len());

    // Decrypt, checking the manifest's hash.
    let out = dir.path().join("w.out");
    let o = ecloud(&[
        "--json",
        "model",
        "decrypt",
        "--input",
        s(&enc2),
        "--out",
        s(&out),
        "--key",
        s(&key),
        "--ciphertext-sha256",
        summary["ciphertext_sha256"].as_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), plain);

    // The other file's hash: refused (exit 1), and no output file appears.
    let refused = dir.path().join("refused.out");
    let o = ecloud(&[
        "model",
        "decrypt",
        "--input",
        s(&enc),
        "--out",
        s(&refused),
        "--key",
        s(&key),
        "--ciphertext-sha256",
        summary["ciphertext_sha256"].as_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!refused.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        5,
        "no partial file left"
    );

    // A flipped byte: refused at its chunk.
    let mut tampered = ciphertext.clone();
    tampered[100_000] ^= 1;
    let bad = dir.path().join("bad.enc");
    std::fs::write(&bad, tampered).unwrap();
    let o = ecloud(&[
        "model",
        "decrypt",
        "--input",
        s(&bad),
        "--out",
        s(&refused),
        "--key",
        s(&key),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("chunk 1 does not authenticate"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
}

#[test]
fn key_files_are_never_replaced_nor_read_when_others_can() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.bin");
    std::fs::write(&weights, b"tiny").unwrap();
    let key = dir.path().join("model.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let enc = dir.path().join("w.enc");
    let args = |flag: &'static str| {
        vec![
            "model".to_owned(),
            "encrypt".into(),
            "--weights".into(),
            s(&weights).into(),
            "--out".into(),
            s(&enc).into(),
            flag.into(),
            s(&key).into(),
        ]
    };
    let run = |a: Vec<String>| ecloud(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args("--new-key"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap(), [7u8; 32]);
    let o = run(args("--key"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    assert!(!enc.exists());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(args("--key"));
    assert!(o.status.success(), "{}", stderr(&o));
}
