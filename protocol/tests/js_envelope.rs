//! The explorer page seals job inputs and opens outputs in the browser (explorer/src/seal.js,
//! @hpke/* from npm). This checks, with that very file run by Node, that the page and this
//! crate speak the same envelope both ways, and that a context mismatch fails on each side.
//!
//! Needs Node and the explorer's npm packages: `explorer/build.sh` (scripts/test.sh runs it
//! before the Rust tests).

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclave_cloud_common::{JobId, ModelId, ReceiptSubject};
use protocol::envelope::{self, EncryptionSecret, Envelope, EnvelopeContext};
use protocol::job::{JobRequest, seal_job_input};

fn explorer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../explorer")
}

/// Runs explorer/test/envelope.mjs; `Err(stderr)` when it exits non-zero.
fn page(args: &[&str]) -> Result<String, String> {
    let dir = explorer();
    assert!(
        dir.join("node_modules/@hpke/core").exists(),
        "the explorer's npm packages are missing: run explorer/build.sh"
    );
    let out = Command::new("node")
        .arg(dir.join("test/envelope.mjs"))
        .args(args)
        .output()
        .expect("node (explorer/build.sh installs it)");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn model() -> ModelId {
    "minilm".parse().expect("model id")
}

#[test]
fn an_input_sealed_by_the_page_opens_in_the_enclave_and_only_for_its_context() {
    let node = EncryptionSecret::generate();
    let user_key = [0x42u8; 32];
    let request = serde_json::json!({
        "method": "POST", "url": "/v1/embeddings",
        "body": {"model": "minilm", "input": ["a private text"]}
    });
    let sealed = page(&[
        "seal-input",
        &hex::encode(node.public_key()),
        model().as_str(),
        &hex::encode(user_key),
        &request.to_string(),
    ])
    .expect("the page seals");
    let envelope = Envelope::from_bytes(&B64.decode(sealed.trim()).unwrap()).unwrap();
    let opened = envelope::open(
        &node,
        &envelope,
        &EnvelopeContext::JobInput {
            model_id: model(),
            user_key,
        },
    )
    .expect("the node opens what the page sealed");
    let parsed: JobRequest = serde_json::from_slice(&opened).unwrap();
    assert_eq!(parsed.url, "/v1/embeddings");
    assert_eq!(parsed.body["input"][0], "a private text");

    // Bound to the user key and the model, as the crate's own envelopes are.
    for ctx in [
        EnvelopeContext::JobInput {
            model_id: model(),
            user_key: [0x43; 32],
        },
        EnvelopeContext::JobInput {
            model_id: "other".parse().unwrap(),
            user_key,
        },
    ] {
        assert!(envelope::open(&node, &envelope, &ctx).is_err());
    }

    // And the crate's own sealing is what the page produces, byte layout included.
    let ours = seal_job_input(
        &node.public_key(),
        &model(),
        &user_key,
        &serde_json::from_value(request).unwrap(),
    )
    .unwrap();
    assert_eq!(ours.to_bytes()[0], envelope.to_bytes()[0], "version byte");
}

#[test]
fn an_output_sealed_by_the_node_opens_in_the_page_for_its_job_only() {
    let keys: serde_json::Value =
        serde_json::from_str(&page(&["keypair"]).expect("keypair")).unwrap();
    let secret = keys["secret"].as_str().unwrap();
    let public: [u8; 32] = hex::decode(keys["public"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let output = serde_json::json!({"status_code": 200, "body": {"object": "list"}});
    let sealed = envelope::seal_to(
        &public,
        output.to_string().as_bytes(),
        &EnvelopeContext::JobOutput {
            subject: ReceiptSubject::Job(JobId(17)),
            model_id: model(),
        },
    )
    .unwrap();
    let b64 = B64.encode(sealed.to_bytes());
    let opened = page(&["open-output", secret, "17", model().as_str(), &b64])
        .expect("the page opens the node's output");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&opened).unwrap(),
        output
    );
    // Another job's context, or another key, does not open it.
    assert!(page(&["open-output", secret, "18", model().as_str(), &b64]).is_err());
    let other = hex::encode(EncryptionSecret::generate().to_bytes().as_slice());
    assert!(page(&["open-output", &other, "17", model().as_str(), &b64]).is_err());
}
