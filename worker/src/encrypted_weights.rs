//! Encrypted model weights inside the enclave (issue 18): fetch the ciphertext the manifest
//! names (resumable, its SHA-256 checked against the manifest's `weights_hash` before anything
//! uses it), open the model key from the node's grant with the enclave's x25519 secret, and
//! decrypt into memory only: plaintext weights never touch the disk.
//!
//! The ciphertext is public (it is encrypted), so it is cached on disk under its hash:
//! `<cache>/<sha256>.enc`, downloaded into `<sha256>.part` first and renamed once its hash
//! matched. An interrupted download resumes with an HTTP range request.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use enclave_cloud_common::{Hash32, ModelId, NodeId};
use protocol::envelope::EncryptionSecret;
use protocol::weights::{self, DecryptSummary, Decryptor, Expected, ModelKey, WeightsError};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Why encrypted weights could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum EncryptedWeightsError {
    #[error("weights URI '{0}' is neither file://, a path, http:// nor https://")]
    Uri(String),
    #[error("fetching {uri}: {message}")]
    Fetch { uri: String, message: String },
    #[error(
        "the ciphertext at {uri} hashes to {actual}, not the manifest's weights_hash {expected}"
    )]
    HashMismatch {
        uri: String,
        expected: Hash32,
        actual: Hash32,
    },
    #[error("the grant does not open with this enclave's key: {0}")]
    Grant(String),
    #[error("decrypting the weights: {0}")]
    Decrypt(#[from] WeightsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EncryptedWeightsError {
    let what = what.into();
    move |source| EncryptedWeightsError::Io { what, source }
}

/// SHA-256 of a file, read in 1 MiB pieces.
fn file_sha256(path: &Path) -> Result<Hash32, EncryptedWeightsError> {
    let mut file = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io(path.display().to_string()))?;
        if n == 0 {
            return Ok(Hash32(hash.finalize().into()));
        }
        hash.update(&buf[..n]);
    }
}

/// Where the ciphertext named by `uri` is, on this machine, once its hash matched `expected`:
/// a local file (`file://` or a path) is used in place; an http(s) URI is downloaded into
/// `cache_dir` (resuming a partial download). `progress(bytes_so_far, total)` is called as
/// bytes arrive.
pub async fn fetch_ciphertext(
    uri: &str,
    cache_dir: &Path,
    expected: &Hash32,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, EncryptedWeightsError> {
    let (path, downloaded) = if uri.starts_with("http://") || uri.starts_with("https://") {
        (
            download(uri, cache_dir, expected, &mut progress).await?,
            true,
        )
    } else if let Some(p) = uri.strip_prefix("file://") {
        (PathBuf::from(p), false)
    } else if uri.starts_with('/') {
        (PathBuf::from(uri), false)
    } else {
        return Err(EncryptedWeightsError::Uri(uri.into()));
    };
    let actual = file_sha256(&path)?;
    if actual != *expected {
        if downloaded {
            // A corrupted cache entry must not be found again; a file the operator named
            // is theirs.
            let _ = std::fs::remove_file(&path);
        }
        return Err(EncryptedWeightsError::HashMismatch {
            uri: uri.into(),
            expected: *expected,
            actual,
        });
    }
    Ok(path)
}

async fn download(
    uri: &str,
    cache_dir: &Path,
    expected: &Hash32,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, EncryptedWeightsError> {
    let fetch_err = |message: String| EncryptedWeightsError::Fetch {
        uri: uri.into(),
        message,
    };
    std::fs::create_dir_all(cache_dir).map_err(io(cache_dir.display().to_string()))?;
    let done = cache_dir.join(format!("{expected}.enc"));
    if done.exists() {
        return Ok(done);
    }
    let part = cache_dir.join(format!("{expected}.part"));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let http = reqwest::Client::new();
    let mut request = http.get(uri);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(|e| fetch_err(e.to_string()))?;
    let status = response.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !(status.is_success() || resumed) {
        return Err(fetch_err(format!("HTTP {status}")));
    }
    // A server that ignores the range sends everything again: start over.
    let start = if resumed { have } else { 0 };
    let total = response.content_length().map(|n| n + start);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .map_err(io(part.display().to_string()))?;
    let mut written = start;
    progress(written, total);
    while let Some(bytes) = response
        .chunk()
        .await
        .map_err(|e| fetch_err(format!("after {written} bytes: {e}")))?
    {
        file.write_all(&bytes)
            .map_err(io(part.display().to_string()))?;
        written += bytes.len() as u64;
        progress(written, total);
    }
    file.sync_all().map_err(io(part.display().to_string()))?;
    drop(file);
    if file_sha256(&part)? != *expected {
        let actual = file_sha256(&part)?;
        let _ = std::fs::remove_file(&part);
        return Err(EncryptedWeightsError::HashMismatch {
            uri: uri.into(),
            expected: *expected,
            actual,
        });
    }
    std::fs::rename(&part, &done).map_err(io(done.display().to_string()))?;
    Ok(done)
}

/// The model key of a grant: `sealed` (the grant's `encrypted_key`) opened with the enclave's
/// x25519 secret for this model and node, checked against the grant's `key_hash`.
pub fn open_grant(
    enclave_secret: &EncryptionSecret,
    model_id: &ModelId,
    node_id: NodeId,
    sealed: &[u8],
    key_hash: &Hash32,
) -> Result<ModelKey, EncryptedWeightsError> {
    weights::open_model_key(enclave_secret, model_id, node_id, sealed, key_hash)
        .map_err(|e| EncryptedWeightsError::Grant(e.to_string()))
}

/// Decrypts the ciphertext at `path` into memory (zeroized when dropped). Every chunk is
/// authenticated, the whole file must be there in order, and its hashes must be `expected`:
/// a tampered, truncated or reordered file is refused before any weights are returned.
pub fn decrypt_in_memory(
    path: &Path,
    key: &ModelKey,
    expected: Expected,
) -> Result<(Zeroizing<Vec<u8>>, DecryptSummary), EncryptedWeightsError> {
    let file = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let mut decryptor = Decryptor::with_expected(std::io::BufReader::new(file), key, expected)?;
    let capacity = usize::try_from(decryptor.header().plaintext_len).unwrap_or(0);
    let mut plain = Zeroizing::new(Vec::with_capacity(capacity));
    while let Some(chunk) = decryptor.next_chunk()? {
        plain.extend_from_slice(chunk);
    }
    let summary = decryptor.summary().ok_or(WeightsError::AlreadyFailed)?;
    Ok((plain, summary))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    use super::*;

    fn encrypt(plain: &[u8], key: &ModelKey) -> Vec<u8> {
        let mut out = Vec::new();
        weights::encrypt(plain, plain.len() as u64, &mut out, key, 1024, |_| {}).expect("encrypt");
        out
    }

    fn sha(b: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(b).into())
    }

    /// Serves `body` with range support; the first full request is cut after half the bytes.
    async fn serve(body: Vec<u8>) -> String {
        let body = Arc::new(body);
        let cut_once = Arc::new(AtomicBool::new(true));
        let app = Router::new().route(
            "/w.enc",
            get(move |headers: HeaderMap| {
                let (body, cut_once) = (body.clone(), cut_once.clone());
                async move {
                    let start = headers
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes="))
                        .and_then(|v| v.trim_end_matches('-').parse::<usize>().ok());
                    match start {
                        Some(s) => (
                            StatusCode::PARTIAL_CONTENT,
                            [(header::CONTENT_RANGE, format!("bytes {s}-/{}", body.len()))],
                            body[s..].to_vec(),
                        )
                            .into_response(),
                        None if cut_once.swap(false, Ordering::SeqCst) => {
                            // Announce everything, send half, drop the connection.
                            let half = body[..body.len() / 2].to_vec();
                            let stream = futures_util::stream::iter([
                                Ok::<_, std::io::Error>(half),
                                Err(std::io::Error::other("cut")),
                            ]);
                            (
                                [(header::CONTENT_LENGTH, body.len().to_string())],
                                axum::body::Body::from_stream(stream),
                            )
                                .into_response()
                        }
                        None => body.to_vec().into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/w.enc")
    }

    #[tokio::test]
    async fn a_cut_download_resumes_and_decrypts_to_the_weights() {
        let key = ModelKey::from_bytes([7; 32]);
        let plain: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let cipher = encrypt(&plain, &key);
        let uri = serve(cipher.clone()).await;
        let cache = tempfile::tempdir().unwrap();
        let first = fetch_ciphertext(&uri, cache.path(), &sha(&cipher), |_, _| {}).await;
        assert!(
            matches!(first, Err(EncryptedWeightsError::Fetch { .. })),
            "{first:?}"
        );
        let mut calls = 0;
        let path = fetch_ciphertext(&uri, cache.path(), &sha(&cipher), |_, _| calls += 1)
            .await
            .expect("resumed");
        assert!(calls > 0, "progress reported");
        let (weights, summary) = decrypt_in_memory(
            &path,
            &key,
            Expected {
                ciphertext_sha256: Some(sha(&cipher)),
                plaintext_sha256: Some(sha(&plain)),
            },
        )
        .expect("decrypt");
        assert_eq!(weights.as_slice(), plain.as_slice());
        assert_eq!(summary.plaintext_sha256, sha(&plain));
    }

    #[tokio::test]
    async fn a_ciphertext_off_the_manifest_hash_is_refused_and_not_kept() {
        let key = ModelKey::from_bytes([7; 32]);
        let cipher = encrypt(b"weights", &key);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.enc");
        std::fs::write(&file, &cipher).unwrap();
        let uri = format!("file://{}", file.display());
        let wrong = sha(b"something else");
        let e = fetch_ciphertext(&uri, dir.path(), &wrong, |_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(e, EncryptedWeightsError::HashMismatch { .. }),
            "{e}"
        );
        assert!(file.exists(), "a file the operator named is never deleted");
        let e = fetch_ciphertext("ftp://x/w.enc", dir.path(), &wrong, |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(e, EncryptedWeightsError::Uri(_)), "{e}");
    }

    #[test]
    fn tampered_truncated_or_reordered_ciphertexts_are_refused() {
        let key = ModelKey::from_bytes([7; 32]);
        let plain = vec![5u8; 4000];
        let cipher = encrypt(&plain, &key);
        let dir = tempfile::tempdir().unwrap();
        let header = weights::HEADER_LEN;
        let chunk = 1024 + 16;
        let mut tampered = cipher.clone();
        tampered[header + 10] ^= 1;
        let truncated = cipher[..cipher.len() - chunk].to_vec();
        let mut reordered = cipher.clone();
        let (a, b) = (header, header + chunk);
        let first: Vec<u8> = reordered[a..b].to_vec();
        let second: Vec<u8> = reordered[b..b + chunk].to_vec();
        reordered[a..b].copy_from_slice(&second);
        reordered[b..b + chunk].copy_from_slice(&first);
        for (name, bytes) in [
            ("tampered", tampered),
            ("truncated", truncated),
            ("reordered", reordered),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let r = decrypt_in_memory(&path, &key, Expected::default());
            assert!(
                matches!(r, Err(EncryptedWeightsError::Decrypt(_))),
                "{name}"
            );
        }
        let other = ModelKey::from_bytes([8; 32]);
        let path = dir.path().join("ok");
        std::fs::write(&path, &cipher).unwrap();
        assert!(decrypt_in_memory(&path, &other, Expected::default()).is_err());
    }

    #[test]
    fn a_grant_opens_only_for_its_node_and_model() {
        let secret = EncryptionSecret::generate();
        let key = ModelKey::from_bytes([3; 32]);
        let model: ModelId = "gemma".parse().unwrap();
        let sealed =
            weights::seal_model_key(&secret.public_key(), &model, NodeId(4), &key).unwrap();
        let opened = open_grant(&secret, &model, NodeId(4), &sealed, &key.key_hash()).unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert!(open_grant(&secret, &model, NodeId(5), &sealed, &key.key_hash()).is_err());
        let other: ModelId = "minilm".parse().unwrap();
        assert!(open_grant(&secret, &other, NodeId(4), &sealed, &key.key_hash()).is_err());
        assert!(open_grant(&secret, &model, NodeId(4), &sealed, &Hash32([0; 32])).is_err());
    }
}
