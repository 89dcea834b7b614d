//! Job plaintexts and the user's half of a job: what `ecloud` seals to a node and opens from
//! it, and what the worker opens and answers.
//!
//! The input is one line of OpenAI's Batch API: `{"method": "POST", "url": "/v1/embeddings",
//! "body": {...}}` (or `/v1/chat/completions`; the bodies are [`crate::openai`]'s shapes). The
//! output is `{"status_code": 200, "body": {...}}` with the OpenAI response, or an OpenAI error
//! body and a 4xx status when the request itself was at fault (then the usage, hence the
//! charge, is zero).
//!
//! Jobs (`ReceiptSubject::Job`) are sealed both ways ([`crate::envelope`]); agent requests
//! (`ReceiptSubject::Request`) come from contracts, which hold no keys: plaintext both ways.

use enclave_cloud_common::{Hash32, ModelId, ReceiptSubject};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::envelope::{self, EncryptionSecret, Envelope, EnvelopeContext, EnvelopeError};

/// The chat completions endpoint of a job request.
pub const CHAT_URL: &str = "/v1/chat/completions";
/// The embeddings endpoint of a job request.
pub const EMBEDDINGS_URL: &str = "/v1/embeddings";

/// A job's input plaintext (one OpenAI Batch API line, without `custom_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    #[serde(default = "post")]
    pub method: String,
    pub url: String,
    pub body: serde_json::Value,
}

fn post() -> String {
    "POST".into()
}

/// A job's output plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResponse {
    pub status_code: u16,
    pub body: serde_json::Value,
    /// The encrypted weights that answered (the model manifest's `weights_hash`), when the
    /// model is served from encrypted weights. It is inside the output whose hash the node's
    /// receipt signs, so the receipt vouches for it; absent for plain weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_hash: Option<Hash32>,
}

/// Why a job's answer is refused for its weights.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsMismatch {
    #[error("the node answered with weights {answered}, but the model's manifest names {expected}")]
    Other { answered: String, expected: String },
}

/// Checks the weights an answer names against the manifest's (`expected`: its encrypted
/// weights hash, `None` for plain weights); the same rule as the API's signatures.
pub fn check_weights(
    answered: Option<&Hash32>,
    expected: Option<&Hash32>,
) -> Result<(), WeightsMismatch> {
    if answered == expected {
        return Ok(());
    }
    let shown = |h: Option<&Hash32>| h.map_or_else(|| "none".to_owned(), ToString::to_string);
    Err(WeightsMismatch::Other {
        answered: shown(answered),
        expected: shown(expected),
    })
}

/// SHA-256, as the marketplace hashes inline inputs and outputs.
pub fn sha256(bytes: &[u8]) -> Hash32 {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(bytes));
    Hash32(out)
}

/// User side: seals a job request to the node's attested key, bound to the model and to the
/// user key the output will come back to.
pub fn seal_job_input(
    node_key: &[u8; 32],
    model_id: &ModelId,
    user_key: &[u8; 32],
    request: &JobRequest,
) -> Result<Envelope, EnvelopeError> {
    let plaintext = serde_json::to_vec(request).unwrap_or_default();
    envelope::seal_to(
        node_key,
        &plaintext,
        &EnvelopeContext::JobInput {
            model_id: model_id.clone(),
            user_key: *user_key,
        },
    )
}

/// User side: opens a job's output with the user's secret.
pub fn open_job_output(
    user_secret: &EncryptionSecret,
    subject: ReceiptSubject,
    model_id: &ModelId,
    output: &[u8],
) -> Result<JobResponse, EnvelopeError> {
    let env = Envelope::from_bytes(output)?;
    let ctx = EnvelopeContext::JobOutput {
        subject,
        model_id: model_id.clone(),
    };
    let plaintext = envelope::open(user_secret, &env, &ctx)?;
    serde_json::from_slice(&plaintext)
        .map_err(|e| EnvelopeError::Malformed(format!("output is not a job response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::JobId;

    fn model() -> ModelId {
        "llama".parse().unwrap()
    }

    fn request() -> JobRequest {
        JobRequest {
            method: "POST".into(),
            url: EMBEDDINGS_URL.into(),
            body: serde_json::json!({"model": "x", "input": "hello"}),
        }
    }

    #[test]
    fn plaintexts_keep_their_wire_shape() {
        let line: JobRequest =
            serde_json::from_str(r#"{"url": "/v1/chat/completions", "body": {}}"#).unwrap();
        assert_eq!(line.method, "POST", "the method defaults to POST");
        assert_eq!(
            serde_json::to_value(request()).unwrap(),
            serde_json::json!({"method": "POST", "url": "/v1/embeddings",
                "body": {"model": "x", "input": "hello"}})
        );
        let response = JobResponse {
            status_code: 200,
            body: serde_json::json!({"ok": true}),
            weights_hash: None,
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"status_code":200,"body":{"ok":true}}"#
        );
    }

    #[test]
    fn an_input_opens_only_for_its_node_model_and_user() {
        let node = EncryptionSecret::generate();
        let user = EncryptionSecret::generate();
        let env =
            seal_job_input(&node.public_key(), &model(), &user.public_key(), &request()).unwrap();
        let ctx = EnvelopeContext::JobInput {
            model_id: model(),
            user_key: user.public_key(),
        };
        let plaintext = envelope::open(&node, &env, &ctx).unwrap();
        let back: JobRequest = serde_json::from_slice(&plaintext).unwrap();
        assert_eq!(back, request());
        let other_user = EnvelopeContext::JobInput {
            model_id: model(),
            user_key: [9; 32],
        };
        assert_eq!(
            envelope::open(&node, &env, &other_user),
            Err(EnvelopeError::Decrypt)
        );
    }

    #[test]
    fn an_output_opens_only_as_its_own_job() {
        let user = EncryptionSecret::generate();
        let subject = ReceiptSubject::Job(JobId(7));
        let response = JobResponse {
            status_code: 200,
            body: serde_json::json!({"data": []}),
            weights_hash: None,
        };
        let ctx = EnvelopeContext::JobOutput {
            subject,
            model_id: model(),
        };
        let sealed = envelope::seal_to(
            &user.public_key(),
            &serde_json::to_vec(&response).unwrap(),
            &ctx,
        )
        .unwrap()
        .to_bytes();
        assert_eq!(
            open_job_output(&user, subject, &model(), &sealed).unwrap(),
            response
        );
        assert_eq!(
            open_job_output(&user, ReceiptSubject::Job(JobId(8)), &model(), &sealed),
            Err(EnvelopeError::Decrypt)
        );
        // A sealed non-response is malformed, not a panic.
        let junk = envelope::seal_to(&user.public_key(), b"not json", &ctx)
            .unwrap()
            .to_bytes();
        assert!(matches!(
            open_job_output(&user, subject, &model(), &junk),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        assert_eq!(
            sha256(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_answer_names_its_encrypted_weights_and_old_answers_still_read() {
        let old: JobResponse =
            serde_json::from_str(r#"{"status_code":200,"body":{"ok":true}}"#).unwrap();
        assert_eq!(old.weights_hash, None);
        assert!(
            !serde_json::to_string(&old)
                .unwrap()
                .contains("weights_hash")
        );
        let w = Hash32([0xab; 32]);
        let new = JobResponse {
            weights_hash: Some(w),
            ..old
        };
        let back: JobResponse =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back.weights_hash, Some(w));

        assert_eq!(check_weights(Some(&w), Some(&w)), Ok(()));
        assert_eq!(check_weights(None, None), Ok(()));
        let other = Hash32([0xcd; 32]);
        for (answered, expected) in [(Some(&other), Some(&w)), (None, Some(&w)), (Some(&w), None)] {
            let e = check_weights(answered, expected).unwrap_err().to_string();
            assert!(e.contains("manifest"), "{e}");
        }
    }
}
