//! The encrypted weights format: round trips and every refusal the format promises.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;

use enclave_cloud_common::{Hash32, ModelId, NodeId};
use protocol::envelope::{EncryptionSecret, EnvelopeError};
use protocol::keys::KeyError;
use protocol::weights::{
    Decryptor, EncryptSummary, Expected, HEADER_LEN, Header, ModelKey, TAG_LEN, TRAILER_LEN,
    WeightsError, decrypt, encrypt, open_model_key, read_key_file, seal_model_key,
    write_new_key_file,
};
use sha2::{Digest as _, Sha256};

const CS: u32 = 1000;

fn weights(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn key() -> ModelKey {
    ModelKey::generate().unwrap()
}

fn seal(plain: &[u8], key: &ModelKey) -> (Vec<u8>, EncryptSummary) {
    let mut out = Vec::new();
    let summary = encrypt(plain, plain.len() as u64, &mut out, key, CS, |_| {}).unwrap();
    (out, summary)
}

fn sha(bytes: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(bytes).into())
}

/// Byte ranges of each chunk in an encrypted file of `plain_len` bytes.
fn chunk_ranges(plain_len: usize) -> Vec<std::ops::Range<usize>> {
    let n = plain_len.div_ceil(CS as usize).max(1);
    let mut at = HEADER_LEN;
    (0..n)
        .map(|i| {
            let body = if i + 1 == n {
                plain_len - i * CS as usize + TRAILER_LEN
            } else {
                CS as usize
            };
            let r = at..at + body + TAG_LEN;
            at = r.end;
            r
        })
        .collect()
}

/// Decrypts, collecting the chunks released before any error.
fn open_all(file: &[u8], key: &ModelKey) -> (Vec<u8>, Result<(), WeightsError>) {
    let mut out = Vec::new();
    let mut d = match Decryptor::new(file, key) {
        Ok(d) => d,
        Err(e) => return (out, Err(e)),
    };
    loop {
        match d.next_chunk() {
            Ok(Some(c)) => out.extend_from_slice(c),
            Ok(None) => return (out, Ok(())),
            Err(e) => {
                assert!(matches!(d.next_chunk(), Err(WeightsError::AlreadyFailed)));
                return (out, Err(e));
            }
        }
    }
}

fn round_trip(len: usize) {
    let k = key();
    let plain = weights(len);
    let (file, summary) = seal(&plain, &k);
    assert_eq!(summary.plaintext_sha256, sha(&plain));
    assert_eq!(summary.ciphertext_sha256, sha(&file));
    assert_eq!(summary.bytes, len as u64);
    assert_eq!(summary.ciphertext_bytes, file.len() as u64);
    assert_eq!(chunk_ranges(len).last().unwrap().end, file.len());
    let header = Header::parse(file[..HEADER_LEN].try_into().unwrap()).unwrap();
    assert_eq!(header.ciphertext_len(), file.len() as u64);
    assert_eq!(header.chunk_count(), summary.chunks);

    let mut out = Vec::new();
    let expected = Expected {
        ciphertext_sha256: Some(summary.ciphertext_sha256),
        plaintext_sha256: Some(summary.plaintext_sha256),
    };
    let back = decrypt(&file[..], &mut out, &k, expected).unwrap();
    assert_eq!(out, plain);
    assert_eq!(back.plaintext_sha256, summary.plaintext_sha256);
    assert_eq!(back.ciphertext_sha256, summary.ciphertext_sha256);

    // The `Read` side, in odd-sized reads.
    let mut d = Decryptor::new(&file[..], &k).unwrap();
    let mut via_read = Vec::new();
    let mut small = [0u8; 333];
    loop {
        let n = d.read(&mut small).unwrap();
        if n == 0 {
            break;
        }
        via_read.extend_from_slice(&small[..n]);
    }
    assert_eq!(via_read, plain);
    assert_eq!(d.summary().unwrap().plaintext_sha256, sha(&plain));
}

#[test]
fn round_trip_five_and_a_half_chunks() {
    round_trip(5500);
}

#[test]
fn round_trip_empty_file() {
    round_trip(0);
}

#[test]
fn round_trip_exact_multiple_of_the_chunk_size() {
    round_trip(3000);
    round_trip(1000);
}

#[test]
fn each_encryption_is_fresh() {
    let k = key();
    let plain = weights(2500);
    let (a, sa) = seal(&plain, &k);
    let (b, sb) = seal(&plain, &k);
    assert_ne!(a, b);
    assert_ne!(sa.ciphertext_sha256, sb.ciphertext_sha256);
    assert_eq!(sa.plaintext_sha256, sb.plaintext_sha256);
}

#[test]
fn truncations_are_refused() {
    let k = key();
    let plain = weights(5500);
    let (file, _) = seal(&plain, &k);
    let r = chunk_ranges(5500);
    assert_eq!(r.len(), 6);

    // A middle chunk dropped: chunk 2 then holds chunk 3's bytes.
    let mut dropped = file[..r[2].start].to_vec();
    dropped.extend_from_slice(&file[r[3].start..]);
    let (got, e) = open_all(&dropped, &k);
    assert!(
        matches!(e, Err(WeightsError::ChunkAuth { chunk: 2 })),
        "{e:?}"
    );
    assert_eq!(got, plain[..2000]);

    // The last chunk dropped.
    let (got, e) = open_all(&file[..r[5].start], &k);
    assert!(
        matches!(e, Err(WeightsError::Truncated { chunk: 5, total: 6 })),
        "{e:?}"
    );
    assert_eq!(got, plain[..5000]);

    // Cut in the middle of a chunk, of the final chunk, right after the header, and in it.
    for cut in [r[3].start + 10, file.len() - 1, HEADER_LEN] {
        let (_, e) = open_all(&file[..cut], &k);
        assert!(
            matches!(e, Err(WeightsError::Truncated { .. })),
            "{cut}: {e:?}"
        );
    }
    for cut in [HEADER_LEN - 1, 0] {
        let (_, e) = open_all(&file[..cut], &k);
        assert!(matches!(e, Err(WeightsError::ShortHeader)), "{cut}: {e:?}");
    }
}

#[test]
fn reordered_chunks_are_refused() {
    let k = key();
    let (file, _) = seal(&weights(5500), &k);
    let r = chunk_ranges(5500);
    let mut swapped = file.clone();
    swapped[r[1].clone()].copy_from_slice(&file[r[2].clone()]);
    swapped[r[2].clone()].copy_from_slice(&file[r[1].clone()]);
    let (got, e) = open_all(&swapped, &k);
    assert!(
        matches!(e, Err(WeightsError::ChunkAuth { chunk: 1 })),
        "{e:?}"
    );
    assert_eq!(got.len(), 1000);
}

#[test]
fn a_chunk_from_another_file_with_the_same_key_is_refused() {
    let k = key();
    let plain = weights(5500);
    let (file, _) = seal(&plain, &k);
    let (other, _) = seal(&plain, &k);
    let r = chunk_ranges(5500);
    let mut mixed = file.clone();
    mixed[r[3].clone()].copy_from_slice(&other[r[3].clone()]);
    let (_, e) = open_all(&mixed, &k);
    assert!(
        matches!(e, Err(WeightsError::ChunkAuth { chunk: 3 })),
        "{e:?}"
    );
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let k = key();
    let plain = weights(5500);
    let (file, _) = seal(&plain, &k);
    // Every header byte: a typed header error or chunk 0 fails; nothing is released.
    for i in 0..HEADER_LEN {
        let mut t = file.clone();
        t[i] ^= 0x01;
        let (got, e) = open_all(&t, &k);
        assert!(e.is_err(), "header byte {i}");
        assert!(got.is_empty(), "header byte {i}");
    }
    // A byte in each chunk's body and in each tag.
    for (c, range) in chunk_ranges(5500).into_iter().enumerate() {
        for at in [range.start, range.start + 7, range.end - 1] {
            let mut t = file.clone();
            t[at] ^= 0x80;
            let (got, e) = open_all(&t, &k);
            assert!(
                matches!(e, Err(WeightsError::ChunkAuth { chunk }) if chunk == c as u64),
                "chunk {c} byte {at}: {e:?}"
            );
            assert_eq!(got, plain[..c * CS as usize]);
        }
    }
}

#[test]
fn wrong_key_trailing_bytes_and_unexpected_hashes_are_refused() {
    let k = key();
    let plain = weights(2500);
    let (file, summary) = seal(&plain, &k);
    let (got, e) = open_all(&file, &key());
    assert!(
        matches!(e, Err(WeightsError::ChunkAuth { chunk: 0 })),
        "{e:?}"
    );
    assert!(got.is_empty());

    let mut longer = file.clone();
    longer.push(0);
    let (got, e) = open_all(&longer, &k);
    assert!(matches!(e, Err(WeightsError::TrailingData)), "{e:?}");
    assert_eq!(got, plain[..2000], "the final chunk is held back");

    let wrong = Expected {
        ciphertext_sha256: Some(Hash32([1; 32])),
        plaintext_sha256: None,
    };
    let e = decrypt(&file[..], &mut Vec::new(), &k, wrong).unwrap_err();
    assert!(matches!(e, WeightsError::CiphertextHash { .. }), "{e:?}");
    let wrong = Expected {
        ciphertext_sha256: Some(summary.ciphertext_sha256),
        plaintext_sha256: Some(Hash32([2; 32])),
    };
    let e = decrypt(&file[..], &mut Vec::new(), &k, wrong).unwrap_err();
    assert!(matches!(e, WeightsError::PlaintextHash { .. }), "{e:?}");

    // Errors reach `Read` callers as InvalidData.
    let mut d = Decryptor::new(&longer[..], &k).unwrap();
    let e = std::io::copy(&mut d, &mut std::io::sink()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn input_of_another_length_than_declared_is_refused() {
    let k = key();
    let plain = weights(2500);
    let e = encrypt(&plain[..], 2600, &mut Vec::new(), &k, CS, |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            WeightsError::InputLength {
                declared: 2600,
                actual: 2500
            }
        ),
        "{e:?}"
    );
    let e = encrypt(&plain[..], 2400, &mut Vec::new(), &k, CS, |_| {}).unwrap_err();
    assert!(
        matches!(e, WeightsError::InputLonger { declared: 2400 }),
        "{e:?}"
    );
    let e = encrypt(&plain[..], 2500, &mut Vec::new(), &k, 0, |_| {}).unwrap_err();
    assert!(matches!(e, WeightsError::BadChunkSize(0)), "{e:?}");
}

#[test]
fn progress_reports_every_chunk() {
    let k = key();
    let plain = weights(5500);
    let mut seen = Vec::new();
    encrypt(&plain[..], 5500, &mut Vec::new(), &k, CS, |d| seen.push(d)).unwrap();
    assert_eq!(seen, [1000, 2000, 3000, 4000, 5000, 5500]);
}

#[test]
fn key_files_are_private_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.key");
    let k = key();
    write_new_key_file(&path, &k).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(read_key_file(&path).unwrap(), k);
    assert!(matches!(
        write_new_key_file(&path, &key()),
        Err(KeyError::Io { .. })
    ));
    assert_eq!(read_key_file(&path).unwrap(), k, "not replaced");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        read_key_file(&path),
        Err(KeyError::Permissions { mode: 0o640, .. })
    ));
    let short = dir.path().join("short.key");
    fs::write(&short, [1u8; 31]).unwrap();
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        read_key_file(&short),
        Err(KeyError::Length { len: 31, .. })
    ));
    let dbg = format!("{k:?}");
    assert!(dbg.contains("redacted"));
    assert!(!dbg.contains(&hex::encode(k.as_bytes())));
}

#[test]
fn model_key_sealed_to_a_node_opens_only_there() {
    let node = EncryptionSecret::generate();
    let model: ModelId = "minilm".parse().unwrap();
    let k = key();
    let hash = k.key_hash();
    assert_ne!(hash, sha(k.as_bytes()), "domain separated");
    let sealed = seal_model_key(&node.public_key(), &model, NodeId(3), &k).unwrap();
    assert!(sealed.len() < 200, "fits MAX_ENCRYPTED_KEY easily");
    let opened = open_model_key(&node, &model, NodeId(3), &sealed, &hash).unwrap();
    assert_eq!(opened, k);

    let other: ModelId = "other".parse().unwrap();
    assert_eq!(
        open_model_key(&node, &other, NodeId(3), &sealed, &hash).unwrap_err(),
        EnvelopeError::Decrypt
    );
    assert_eq!(
        open_model_key(&node, &model, NodeId(4), &sealed, &hash).unwrap_err(),
        EnvelopeError::Decrypt
    );
    assert_eq!(
        open_model_key(
            &EncryptionSecret::generate(),
            &model,
            NodeId(3),
            &sealed,
            &hash
        )
        .unwrap_err(),
        EnvelopeError::Decrypt
    );
    assert!(matches!(
        open_model_key(&node, &model, NodeId(3), &sealed, &Hash32([0; 32])),
        Err(EnvelopeError::Malformed(_))
    ));
}
