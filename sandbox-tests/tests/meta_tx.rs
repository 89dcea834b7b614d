//! NEP-366 meta transactions: a relayer pays for a user's signed delegate action.

use near_primitives::action::delegate::{DelegateAction, NonDelegateAction, SignedDelegateAction};
use near_primitives::action::{Action, FunctionCallAction};
use near_workspaces::types::NearToken;
use sandbox_tests::{commit, crypto_key, key_nonce, rpc, signed_tx, with_probe};
use serde_json::json;

fn set_call(value: &str) -> anyhow::Result<NonDelegateAction> {
    let action = Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: "set".to_string(),
        args: json!({"key": "meta", "value": value})
            .to_string()
            .into_bytes(),
        gas: near_primitives::types::Gas::from_teragas(30),
        deposit: NearToken::from_yoctonear(0),
    }));
    NonDelegateAction::try_from(action).map_err(|_| anyhow::anyhow!("not a delegable action"))
}

#[tokio::test]
async fn a_relayer_pays_for_a_delegate_action() -> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    let url = worker.rpc_addr();
    let user = worker.dev_create_account().await?;
    let relayer = worker.dev_create_account().await?;
    let user_key = crypto_key(user.secret_key());
    let relayer_key = crypto_key(relayer.secret_key());
    let head = rpc(&url, "block", json!({"finality": "final"})).await?;
    let height = head["result"]["header"]["height"].as_u64().unwrap_or(0);

    let user_nonce = key_nonce(&url, user.id(), &user_key.public_key()).await?;
    let delegate = DelegateAction {
        sender_id: user.id().as_str().parse()?,
        receiver_id: contract.id().as_str().parse()?,
        actions: vec![set_call("relayed")?],
        nonce: user_nonce + 1,
        max_block_height: height + 100,
        public_key: user_key.public_key(),
    };
    let signer =
        near_crypto::InMemorySigner::from_secret_key(user.id().as_str().parse()?, user_key.clone());
    let signed = SignedDelegateAction::sign(&signer, delegate.clone());

    let user_before = user.view_account().await?.balance;
    let relayer_nonce = key_nonce(&url, relayer.id(), &relayer_key.public_key()).await?;
    let tx = signed_tx(
        &url,
        relayer.id(),
        &relayer_key,
        user.id(),
        relayer_nonce + 1,
        vec![Action::Delegate(Box::new(signed.clone()))],
    )
    .await?;
    let reply = commit(&url, &tx).await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    let failures: Vec<_> = reply["result"]["receipts_outcome"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["outcome"]["status"].get("Failure").is_some())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");

    let value: Option<String> = contract
        .view("get")
        .args_json(json!({"key": "meta"}))
        .await?
        .json()?;
    assert_eq!(value.as_deref(), Some("relayed"));
    // The relayer paid the gas; the user paid nothing.
    assert_eq!(user.view_account().await?.balance, user_before);
    assert_eq!(
        key_nonce(&url, user.id(), &user_key.public_key()).await?,
        user_nonce + 1
    );

    // Replaying the same delegate action is refused (its nonce is used).
    let tx = signed_tx(
        &url,
        relayer.id(),
        &relayer_key,
        user.id(),
        relayer_nonce + 2,
        vec![Action::Delegate(Box::new(signed))],
    )
    .await?;
    let reply = commit(&url, &tx).await?;
    let text = reply.to_string();
    assert!(text.contains("DelegateActionInvalidNonce"), "{text}");
    Ok(())
}
