//! Job outputs too large to travel inline: stored in the data dir and served over HTTP, so the
//! result goes on chain as `OutputRef::Remote { hash, uri }`.
//!
//! The stored bytes are the sealed envelope itself (opened only with the user's key); the
//! receipt signs its SHA-256, which the marketplace records as the output hash and
//! `ecloud job result` checks after fetching `uri`. Nothing here needs to be trusted: a wrong
//! or missing file fails the user's hash check, it cannot forge an answer.
//!
//! `GET /v1/outputs/{job_id}`: the bytes (`application/octet-stream`), or a JSON
//! `{error, message}` with 400 (not a job id) or 404 (no such output). Files older than
//! [`OUTPUT_RETENTION`] are deleted, so the disk use stays bounded.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use enclave_cloud_common::{InputRef, JobId};

use crate::job::sha256;

/// How long a stored output stays available after it was written.
pub const OUTPUT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The marketplace's longest URI of a remote output (`refs::MAX_URI_LEN`).
pub const MAX_URI_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum OutputStoreError {
    #[error("output store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("outputs URL '{0}' must be an http:// or https:// URL without query or fragment")]
    BadBaseUrl(String),
    #[error("an output URI would be {len} bytes, the marketplace takes at most {MAX_URI_LEN}")]
    UriTooLong { len: usize },
}

/// Where large outputs are kept and the public base URL they are served under.
#[derive(Debug, Clone)]
pub struct OutputStore {
    dir: PathBuf,
    /// e.g. `https://node.example.org` (no trailing slash).
    base_url: String,
}

impl OutputStore {
    /// Creates `dir` if needed; `base_url` is where users reach [`router`].
    pub fn new(dir: &Path, base_url: &str) -> Result<Self, OutputStoreError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let valid = (base_url.starts_with("http://") || base_url.starts_with("https://"))
            && base_url.len() > "https://".len()
            && !base_url.contains(['?', '#', ' ']);
        if !valid {
            return Err(OutputStoreError::BadBaseUrl(base_url));
        }
        let store = Self {
            dir: dir.to_owned(),
            base_url,
        };
        let longest = store.uri(JobId(u64::MAX)).len();
        if longest > MAX_URI_LEN {
            return Err(OutputStoreError::UriTooLong { len: longest });
        }
        fs::create_dir_all(dir).map_err(|source| OutputStoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(store)
    }

    pub fn uri(&self, job_id: JobId) -> String {
        format!("{}/v1/outputs/{job_id}", self.base_url)
    }

    fn file(&self, job_id: JobId) -> PathBuf {
        self.dir.join(format!("{job_id}.out"))
    }

    /// Stores `output` (atomically: temp file, fsync, rename) and returns the reference to
    /// submit. Storing the same job again replaces the file with the same bytes.
    pub fn put(&self, job_id: JobId, output: &[u8]) -> Result<InputRef, OutputStoreError> {
        let path = self.file(job_id);
        let tmp = path.with_extension("tmp");
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OutputStoreError::Io { path, source }
        };
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(output).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(InputRef::Remote {
            hash: sha256(output),
            uri: self.uri(job_id),
        })
    }

    /// The stored output of `job_id`, if any.
    pub fn get(&self, job_id: JobId) -> Option<Vec<u8>> {
        fs::read(self.file(job_id)).ok()
    }

    /// Deletes outputs written longer than `keep` ago; returns how many.
    pub fn prune(&self, keep: Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > keep);
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

async fn get_output(State(store): State<OutputStore>, UrlPath(id): UrlPath<String>) -> Response {
    // Digits only: `+1`, `01x` or a path are not job ids.
    let job_id = match id.parse::<u64>() {
        Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => JobId(n),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_job_id",
                format!("'{id}' is not a job id (decimal digits)"),
            );
        }
    };
    match store.get(job_id) {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no stored output for job {job_id}"),
        ),
    }
}

/// `GET /v1/outputs/{job_id}`.
pub fn router(store: OutputStore) -> Router {
    Router::new()
        .route("/v1/outputs/{job_id}", get(get_output))
        .with_state(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_references_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let store = OutputStore::new(&tmp.path().join("outputs"), "http://127.0.0.1:9/").unwrap();
        let out = vec![7u8; 20_000];
        let r = store.put(JobId(12), &out).unwrap();
        assert_eq!(
            r,
            InputRef::Remote {
                hash: sha256(&out),
                uri: "http://127.0.0.1:9/v1/outputs/12".into()
            }
        );
        assert_eq!(store.get(JobId(12)), Some(out));
        assert_eq!(store.get(JobId(13)), None);
        assert_eq!(store.prune(OUTPUT_RETENTION), 0);
        assert_eq!(store.prune(Duration::ZERO), 1);
        assert_eq!(store.get(JobId(12)), None);
        for bad in ["ftp://x", "not a url", "http://", "http://h/?q=1"] {
            assert!(OutputStore::new(tmp.path(), bad).is_err(), "{bad}");
        }
        let long = format!("https://{}", "a".repeat(500));
        assert!(matches!(
            OutputStore::new(tmp.path(), &long),
            Err(OutputStoreError::UriTooLong { .. })
        ));
    }

    /// The marketplace's default inline limit takes one sealed embedding, with floats of the
    /// longest form JSON gives them (f32 values through f64, 17 significant digits).
    #[test]
    fn one_sealed_embedding_fits_the_default_inline_limit() {
        use crate::envelope::{EncryptionSecret, EnvelopeContext, seal_to};
        use crate::job::JobResponse;
        use enclave_cloud_common::{DEFAULT_MAX_INLINE_BYTES, ReceiptSubject};
        let embedding: Vec<f64> = (0..384)
            .map(|i| f64::from(-0.012_345_679_f32 - i as f32 * 1.7e-7))
            .collect();
        let response = JobResponse {
            status_code: 200,
            body: serde_json::json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                "model": "all-minilm-l6-v2",
                "usage": {"prompt_tokens": 256, "total_tokens": 256},
            }),
            // Served from encrypted weights: the answer names them too.
            weights_hash: Some(enclave_cloud_common::Hash32([0xab; 32])),
        };
        let plaintext = serde_json::to_vec(&response).unwrap();
        let user = EncryptionSecret::generate();
        let ctx = EnvelopeContext::JobOutput {
            subject: ReceiptSubject::Job(JobId(u64::MAX)),
            model_id: "minilm".parse().unwrap(),
        };
        let sealed = seal_to(&user.public_key(), &plaintext, &ctx)
            .unwrap()
            .to_bytes();
        assert!(sealed.len() > 8_000, "{} bytes", sealed.len());
        assert!(
            sealed.len() <= DEFAULT_MAX_INLINE_BYTES as usize,
            "{} bytes",
            sealed.len()
        );
    }

    #[tokio::test]
    async fn serves_stored_outputs_and_refuses_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let store = OutputStore::new(tmp.path(), &base).unwrap();
        let Ok(InputRef::Remote { uri, hash }) = store.put(JobId(5), b"sealed bytes") else {
            panic!("not remote")
        };
        tokio::spawn(async move { axum::serve(listener, router(store)).await });
        let got = reqwest::get(&uri).await.unwrap();
        assert_eq!(got.status(), 200);
        let body = got.bytes().await.unwrap();
        assert_eq!(sha256(&body), hash);
        for (path, status) in [
            ("/v1/outputs/6", 404),
            ("/v1/outputs/%2B5", 400),
            ("/v1/outputs/5x", 400),
            ("/v1/outputs/99999999999999999999999", 400),
        ] {
            let r = reqwest::get(format!("{base}{path}")).await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert!(v["error"].is_string(), "{path}: {v}");
        }
    }
}
