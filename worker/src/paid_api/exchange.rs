//! Signing and billing one paid exchange: the signatures over the exact request and response
//! bodies, kept for `GET /v1/signature/{id}` and sent as the response's headers (or a
//! stream's trailers).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use enclave_cloud_common::Hash32;
use protocol::channel_api::{BilledUsage, headers};

use super::signatures::SignatureStore;
use crate::keys::EnclaveKeys;

/// What signs and keeps the signatures of paid responses.
#[derive(Clone)]
pub struct Signing {
    pub keys: Arc<EnclaveKeys>,
    pub signatures: Arc<SignatureStore>,
}

impl Signing {
    /// Signs the exchange with both algorithms (naming `weights_hash`, the encrypted weights
    /// that answered, if any), keeps the signatures under `response_id`, and returns the
    /// header (or trailer) fields: response id, bill, signatures.
    pub fn seal_exchange(
        &self,
        response_id: &str,
        request_body: &[u8],
        response_body: &[u8],
        weights_hash: Option<Hash32>,
        bill: &BilledUsage,
    ) -> HeaderMap {
        let signatures = self.keys.response_signer().sign_both_served(
            request_body,
            response_body,
            weights_hash.as_ref().map(|h| &h.0),
        );
        let mut fields = HeaderMap::new();
        if let Ok(id) = HeaderValue::from_str(response_id) {
            fields.insert(headers::RESPONSE_ID, id);
        }
        if let Some(v) = json_value(bill) {
            fields.insert(headers::BILL, v);
        }
        if let Some(v) = json_value(&signatures) {
            fields.insert(headers::SIGNATURES, v);
        }
        self.signatures.insert(response_id, signatures);
        fields
    }
}

/// A value as JSON text in a header value (ours are numbers and hex: visible ASCII).
fn json_value<T: serde::Serialize>(value: &T) -> Option<HeaderValue> {
    HeaderValue::from_str(&serde_json::to_string(value).ok()?).ok()
}

/// A fresh response id for responses that carry none of their own (embeddings).
pub fn response_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    // An id only needs to be unique; a failed RNG read leaves zeros, and then the time helps.
    let _ = getrandom::fill(&mut bytes);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}{nanos:08x}", hex::encode(bytes))
}
