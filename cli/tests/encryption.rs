//! The encryption acceptance, through the client's own code paths: what `prepare` seals, a
//! node (the shared wire format, [`support::TestNode`]) opens and answers; `verify_and_open` checks and opens the answer. A wrong
//! key, tampered ciphertext, a forged receipt and a swapped input are all refused.

mod support;

use ecloud::Error;
use ecloud::input::InputSpec;
use ecloud::jobs::{NodeKey, verify_and_open};
use ecloud::output::Report as _;
use enclave_cloud_common::JobId;
use near_sdk::json_types::{Base64VecU8, U64};
use protocol::envelope::{self, Envelope, EnvelopeContext};
use protocol::job::sha256;
use support::{TestNode, answer, output_mut, prompt, user};

#[tokio::test]
async fn sealed_prompt_round_trips_through_a_node() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let a = answer(&alice, 7, &prompt("what is TDX?")).await;
    let result = verify_and_open(&a.job, &a.key, &alice).expect("opens");
    assert_eq!(result.status_code, 200);
    assert_eq!(
        result.body["choices"][0]["message"]["content"],
        "echo: what is TDX?"
    );
    assert_eq!(
        (result.usage.input_tokens.0, result.usage.output_tokens.0),
        (5, 3)
    );
    assert_eq!(result.verified.receipt, "signature");
    assert!(
        result.human().starts_with("echo: what is TDX?\n"),
        "{}",
        result.human()
    );

    // Only the node's enclave key opens the input: another enclave cannot.
    let other = TestNode::generate();
    let env = Envelope::from_bytes(&a.job.input).expect("envelope");
    let ctx = EnvelopeContext::JobInput {
        model_id: support::model(),
        user_key: alice.public_key(),
    };
    assert!(envelope::open(&other.encryption, &env, &ctx).is_err());
    assert!(envelope::open(&a.keys.encryption, &env, &ctx).is_ok());
}

#[tokio::test]
async fn embeddings_round_trip() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let input = InputSpec::Embed(vec!["a".into(), "b".into()]);
    let a = answer(&alice, 3, &input).await;
    let result = verify_and_open(&a.job, &a.key, &alice).expect("opens");
    assert_eq!(result.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(result.usage.input_tokens, U64(4));
    let text = result.human();
    assert!(
        text.contains("embedding 1: 3 dims [0.5000, -0.2500, 1.0000, ...]"),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_key_fails_to_decrypt() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let mallory = user(dir.path(), "mallory.test.near");
    let a = answer(&alice, 7, &prompt("secret question")).await;
    // Mallory has the indexer's copy of the job and a valid receipt, but not Alice's key.
    let mut stolen = a.job.clone();
    stolen.user_key = mallory.public_hex();
    let err = verify_and_open(&stolen, &a.key, &mallory).expect_err("must not open");
    assert!(matches!(err, Error::Verification(_)), "{err}");
    assert!(
        err.to_string().contains("does not open with your key"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    // A key file that is not the one the job named is refused before trying.
    let err = verify_and_open(&a.job, &a.key, &mallory).expect_err("wrong key file");
    assert!(err.to_string().contains("is sealed to key"), "{err}");
}

#[tokio::test]
async fn tampered_ciphertext_is_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let a = answer(&alice, 7, &prompt("hello")).await;
    let len = output_mut(&mut a.job.clone()).len();
    for i in [0, 1, 20, 33, len / 2, len - 1] {
        // Flipped in transit: the receipt's output hash no longer matches.
        let mut t = a.job.clone();
        output_mut(&mut t)[i] ^= 0x01;
        let err = verify_and_open(&t, &a.key, &alice).expect_err("hash");
        assert!(err.to_string().contains("does not hash"), "byte {i}: {err}");
        // A dishonest indexer that recomputes the hash: the signature no longer verifies.
        t.settled.output_hash = sha256(output_mut(&mut t));
        let err = verify_and_open(&t, &a.key, &alice).expect_err("signature");
        assert!(
            err.to_string().contains("signature does not verify"),
            "byte {i}: {err}"
        );
        // Even if the receipt were accepted (a result transaction signed by the node's key),
        // the AEAD refuses the bytes (byte 0 is the version: refused as malformed).
        t.settled.signature = Base64VecU8(vec![]);
        let chain_checked = NodeKey {
            key: a.key.key.clone(),
            source: "marketplace",
            transaction_signed: true,
        };
        let err = verify_and_open(&t, &chain_checked, &alice).expect_err("aead");
        assert!(matches!(err, Error::Verification(_)), "byte {i}: {err}");
        assert!(err.to_string().contains("does not open"), "byte {i}: {err}");
    }
    let mut truncated = a.job.clone();
    output_mut(&mut truncated).truncate(10);
    assert!(verify_and_open(&truncated, &a.key, &alice).is_err());
    // The untouched job still opens, also when the chain vouches for the transaction instead.
    let mut unsigned = a.job.clone();
    unsigned.settled.signature = Base64VecU8(vec![]);
    let chain_checked = NodeKey {
        key: a.key.key.clone(),
        source: "marketplace",
        transaction_signed: true,
    };
    let r = verify_and_open(&unsigned, &chain_checked, &alice).expect("opens");
    assert_eq!(r.verified.receipt, "transaction");
}

#[tokio::test]
async fn forged_receipts_and_swapped_inputs_are_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let a = answer(&alice, 7, &prompt("hello")).await;
    let check = |job: &ecloud::jobs::SettledJob, key: &NodeKey| {
        verify_and_open(job, key, &alice)
            .expect_err("must be refused")
            .to_string()
    };
    // Usage inflated after signing.
    let mut t = a.job.clone();
    t.settled.usage.output_tokens = U64(1_000_000);
    assert!(check(&t, &a.key).contains("signature"));
    // Signed by another node.
    let other = TestNode::generate();
    let wrong = NodeKey {
        key: other.near_public_key(),
        source: "registry",
        transaction_signed: false,
    };
    assert!(check(&a.job, &wrong).contains("signature does not verify"));
    // The receipt covers another input.
    let mut t = a.job.clone();
    t.input.push(0);
    assert!(check(&t, &a.key).contains("input hash"));
    // A signature of the wrong length; none, and no chain to vouch for the transaction.
    let mut t = a.job.clone();
    t.settled.signature = Base64VecU8(vec![1; 10]);
    assert!(check(&t, &a.key).contains("10 bytes"));
    t.settled.signature = Base64VecU8(vec![]);
    assert!(check(&t, &a.key).contains("no signature"));
    // Presented as another job's result.
    let mut t = a.job.clone();
    t.job_id = JobId(8);
    assert!(check(&t, &a.key).contains("signature"));
}

/// A model served from encrypted weights: the signed receipt names them, and the answer must
/// name the same ones. Neither an indexer (dropping or swapping the receipt's weights) nor a
/// node (naming others in its answer than in its receipt) gets a different set past the check.
#[tokio::test]
async fn the_receipt_and_the_answer_name_the_same_weights() {
    use enclave_cloud_common::Hash32;
    use support::{Weights, answer_naming};
    let dir = tempfile::tempdir().expect("tmp");
    let alice = user(dir.path(), "alice.test.near");
    let w = Hash32([0xab; 32]);
    let a = answer_naming(&alice, 7, &prompt("hello"), Weights::served(w)).await;
    let r = verify_and_open(&a.job, &a.key, &alice).expect("opens");
    assert_eq!(
        (r.weights_hash, r.verified.weights_hash),
        (Some(w), Some(w))
    );
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["verified"]["weights_hash"], w.to_string());
    assert!(r.human().contains(&format!("encrypted weights {w}")));

    // The indexer drops the receipt's weights, or swaps them: the signature fails.
    for forged in [None, Some(Hash32([0xcd; 32]))] {
        let mut t = a.job.clone();
        t.settled.weights_hash = forged;
        let err = verify_and_open(&t, &a.key, &alice).expect_err("forged weights");
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );
    }

    // A node whose receipt and answer disagree: refused, whichever side names what.
    for weights in [
        Weights {
            answer: None,
            receipt: Some(w),
        },
        Weights {
            answer: Some(w),
            receipt: None,
        },
        Weights {
            answer: Some(Hash32([0xcd; 32])),
            receipt: Some(w),
        },
    ] {
        let a = answer_naming(&alice, 7, &prompt("hello"), weights).await;
        let err = verify_and_open(&a.job, &a.key, &alice).expect_err("disagreeing node");
        assert!(matches!(err, Error::Verification(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("receipt names the weights") && msg.contains("answer names"),
            "{msg}"
        );
    }

    // Plain weights: none on either side, none shown.
    let plain = answer(&alice, 8, &prompt("hello")).await;
    let r = verify_and_open(&plain.job, &plain.key, &alice).expect("opens");
    assert_eq!((r.weights_hash, r.verified.weights_hash), (None, None));
    assert!(!r.human().contains("encrypted weights"));
}
