//! Bad input gets neard's error kinds, changes nothing, and the server keeps serving.

use near_primitives::action::{Action, TransferAction};
use near_workspaces::types::NearToken;
use sandbox_tests::{commit, crypto_key, key_nonce, post_raw, rpc, sandbox, signed_tx};
use serde_json::{Value, json};

fn error_text(reply: &Value) -> String {
    assert!(
        reply.get("result").is_none(),
        "expected an error, got {reply}"
    );
    reply["error"].to_string()
}

fn transfer(yocto: u128) -> Vec<Action> {
    vec![Action::Transfer(TransferAction {
        deposit: NearToken::from_yoctonear(yocto),
    })]
}

#[tokio::test]
async fn malformed_requests_get_request_validation_errors() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();

    let reply = post_raw(&url, b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ").await?;
    assert_eq!(reply["error"]["cause"]["name"], "PARSE_ERROR", "{reply}");

    let reply = rpc(&url, "no_such_method", json!([])).await?;
    assert_eq!(
        reply["error"]["cause"]["name"], "METHOD_NOT_FOUND",
        "{reply}"
    );
    assert_eq!(reply["error"]["code"], -32601);

    let reply = rpc(
        &url,
        "query",
        json!({"request_type": "view_account", "finality": "final"}),
    )
    .await?;
    assert_eq!(
        reply["error"]["name"], "REQUEST_VALIDATION_ERROR",
        "{reply}"
    );

    let reply = rpc(
        &url,
        "query",
        json!({"request_type": "view_account", "finality": "final", "account_id": "nobody.test.near"}),
    )
    .await?;
    assert_eq!(
        reply["error"]["cause"]["name"], "UNKNOWN_ACCOUNT",
        "{reply}"
    );

    // Still serving.
    let status = rpc(&url, "status", json!([])).await?;
    assert!(
        status["result"]["sync_info"]["latest_block_height"]
            .as_u64()
            .is_some()
    );
    Ok(())
}

#[tokio::test]
async fn invalid_transactions_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let alice = worker.dev_create_account().await?;
    let bob = worker.dev_create_account().await?;
    let key = crypto_key(alice.secret_key());
    let before = alice.view_account().await?.balance;
    let nonce = key_nonce(&url, alice.id(), &key.public_key()).await?;

    // Reused nonce.
    let tx = signed_tx(&url, alice.id(), &key, bob.id(), nonce, transfer(1)).await?;
    let text = error_text(&commit(&url, &tx).await?);
    assert!(text.contains("InvalidNonce"), "{text}");

    // Signed by another key than the one it names.
    let mut tx = signed_tx(&url, alice.id(), &key, bob.id(), nonce + 1, transfer(1)).await?;
    let other = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519);
    tx.signature = other.sign(tx.get_hash().as_ref());
    let text = error_text(&commit(&url, &tx).await?);
    assert!(text.contains("InvalidSignature"), "{text}");

    // More than the balance.
    let tx = signed_tx(
        &url,
        alice.id(),
        &key,
        bob.id(),
        nonce + 1,
        transfer(u128::MAX / 2),
    )
    .await?;
    let text = error_text(&commit(&url, &tx).await?);
    assert!(text.contains("NotEnoughBalance"), "{text}");

    // A signer that does not exist.
    let ghost: near_workspaces::AccountId = "ghost-of-nobody.test.near".parse()?;
    let tx = signed_tx(&url, &ghost, &key, bob.id(), 1, transfer(1)).await?;
    let text = error_text(&commit(&url, &tx).await?);
    assert!(text.contains("SignerDoesNotExist"), "{text}");

    assert_eq!(alice.view_account().await?.balance, before);
    assert_eq!(key_nonce(&url, alice.id(), &key.public_key()).await?, nonce);

    // The next valid transaction goes through.
    let tx = signed_tx(&url, alice.id(), &key, bob.id(), nonce + 1, transfer(7)).await?;
    let reply = commit(&url, &tx).await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    Ok(())
}
