//! `GET /v1/signature/{id}?signing_algo=ecdsa|ed25519` (NEAR AI Cloud's path and body): the
//! signatures of the last [`MAX_KEPT`] paid responses, by response id (default algorithm
//! `ecdsa`, as NEAR AI Cloud's; 404 for an id not kept).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use sealed_api::{ResponseSignature, SigningAlgo};
use serde::Deserialize;

use crate::api::ApiError;

/// Responses whose signatures are kept.
pub const MAX_KEPT: usize = 10_000;

/// The signatures of recent responses, oldest dropped first.
#[derive(Default)]
pub struct SignatureStore {
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, [ResponseSignature; 2]>,
    order: VecDeque<String>,
}

impl SignatureStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Keeps `signatures` ([ecdsa, ed25519]) under `id`.
    pub fn insert(&self, id: &str, signatures: [ResponseSignature; 2]) {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if kept.by_id.insert(id.to_owned(), signatures).is_none() {
            kept.order.push_back(id.to_owned());
        }
        while kept.order.len() > MAX_KEPT {
            if let Some(old) = kept.order.pop_front() {
                kept.by_id.remove(&old);
            }
        }
    }

    pub fn get(&self, id: &str, algo: SigningAlgo) -> Option<ResponseSignature> {
        let kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        kept.by_id
            .get(id)
            .and_then(|pair| pair.iter().find(|s| s.signing_algo == algo).cloned())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignatureQuery {
    signing_algo: Option<String>,
}

/// Parses `signing_algo` (default `ecdsa`).
pub(crate) fn signing_algo(value: Option<&str>) -> Result<SigningAlgo, ApiError> {
    match value.map(str::trim) {
        None | Some("") | Some("ecdsa") => Ok(SigningAlgo::Ecdsa),
        Some("ed25519") => Ok(SigningAlgo::Ed25519),
        Some(other) => Err(ApiError::Invalid {
            param: "signing_algo",
            message: format!("'{other}': use ecdsa or ed25519"),
        }),
    }
}

pub(crate) async fn get_signature(
    State(store): State<Arc<SignatureStore>>,
    Path(id): Path<String>,
    Query(query): Query<SignatureQuery>,
) -> Response {
    let algo = match signing_algo(query.signing_algo.as_deref()) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    match store.get(&id, algo) {
        Some(sig) => Json(sig).into_response(),
        None => {
            ApiError::NotFound(format!("no signature kept for response '{id}'")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_answers_each_algorithm() {
        let signer = sealed_api::ResponseSigner::from_secrets(&[1; 32], &[2; 32]).unwrap();
        let store = SignatureStore::default();
        for i in 0..=MAX_KEPT {
            store.insert(&format!("r{i}"), signer.sign_both(b"q", b"a"));
        }
        assert!(
            store.get("r0", SigningAlgo::Ecdsa).is_none(),
            "oldest dropped"
        );
        let last = format!("r{MAX_KEPT}");
        assert_eq!(
            store.get(&last, SigningAlgo::Ed25519).unwrap().signing_algo,
            SigningAlgo::Ed25519
        );
        assert_eq!(
            store
                .get(&last, SigningAlgo::Ecdsa)
                .unwrap()
                .signing_address,
            signer.address(SigningAlgo::Ecdsa)
        );
        assert!(signing_algo(Some("rsa")).is_err());
    }
}
