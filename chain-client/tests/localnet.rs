//! chain-client against a real localnet node with the registry contract.
//!
//! Needs `nice -n 10 cargo build -p localnet --bin localnet` and `./scripts/build-contracts.sh`
//! (registry.wasm), both with the same CARGO_TARGET_DIR as this test (or NEAR_SANDBOX_BIN_PATH /
//! ECLOUD_WASM_DIR).

use std::sync::Arc;

use chain_client::near_primitives::account::{
    AccessKey, AccessKeyPermission, FunctionCallPermission,
};
use chain_client::near_primitives::action::{Action, AddKeyAction};
use chain_client::testkit::{Localnet, create_account, deploy_contract, wasm_path};
use chain_client::{Account, ChainClient, ChainError, FunctionCall, NearToken, SecretKey};
use serde_json::json;

#[tokio::test]
async fn calls_views_nonces_and_typed_errors_on_localnet() {
    let dir = tempfile::tempdir().unwrap();
    let node = Localnet::start(dir.path()).await.unwrap();
    let client = Arc::new(node.client());

    // Block height moves.
    let h1 = client.block_height().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(client.block_height().await.unwrap() > h1);

    // Accounts and keys.
    let alice = create_account(&client, &node.root, "alice", NearToken::from_near(500))
        .await
        .unwrap();
    let view = client.view_account(alice.account_id()).await.unwrap();
    assert_eq!(view.amount, NearToken::from_near(500));
    let key = client
        .view_access_key(alice.account_id(), alice.public_key())
        .await
        .unwrap();
    assert!(matches!(
        key.permission,
        chain_client::near_primitives::views::AccessKeyPermissionView::FullAccess
    ));
    let missing: chain_client::AccountId = "nobody.test.near".parse().unwrap();
    assert!(matches!(
        client.view_account(&missing).await,
        Err(ChainError::UnknownAccount(id)) if id == missing
    ));
    let stranger = SecretKey::from_random(chain_client::KeyType::ED25519).public_key();
    assert!(matches!(
        client.view_access_key(alice.account_id(), &stranger).await,
        Err(ChainError::UnknownAccessKey { .. })
    ));

    // A contract: typed results, typed panics, views.
    let registry = create_account(&client, &node.root, "registry", NearToken::from_near(30))
        .await
        .unwrap();
    let init = FunctionCall::new(registry.account_id().clone(), "new")
        .args_json(&json!({"owner": node.root.account_id(), "mainnet": false}))
        .unwrap();
    deploy_contract(&client, &registry, &wasm_path("registry"), Some(init))
        .await
        .unwrap();
    let stake = FunctionCall::new(registry.account_id().clone(), "deposit_stake")
        .deposit(NearToken::from_near(100));
    let total: NearToken = client.call(&alice, stake).await.unwrap();
    assert_eq!(total, NearToken::from_near(100));
    let operator: serde_json::Value = client
        .view(
            registry.account_id(),
            "get_operator",
            &json!({"account_id": alice.account_id()}),
        )
        .await
        .unwrap();
    assert!(operator.is_object(), "{operator}");

    let heartbeat = FunctionCall::new(registry.account_id().clone(), "heartbeat")
        .args_json(&json!({"node_id": 4242}))
        .unwrap();
    let err = client.call::<()>(&alice, heartbeat).await.unwrap_err();
    match &err {
        ChainError::ContractPanic {
            contract,
            method,
            message,
            tx_hash,
        } => {
            assert_eq!(contract, registry.account_id());
            assert_eq!(method, "heartbeat");
            assert!(message.contains("4242"), "{message}");
            assert!(!message.starts_with("Smart contract panicked"), "{message}");
            assert!(tx_hash.is_some());
        }
        other => panic!("{other:?}"),
    }
    // A view that panics: a bad argument.
    let err = client
        .view::<serde_json::Value>(registry.account_id(), "get_node", &json!({"node_id": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::ContractPanic { tx_hash: None, .. }),
        "{err:?}"
    );

    // Concurrent senders on one key get distinct nonces.
    let calls = (0..6).map(|_| {
        let client = client.clone();
        let alice = alice.clone();
        let registry = registry.account_id().clone();
        tokio::spawn(async move {
            let call =
                FunctionCall::new(registry, "deposit_stake").deposit(NearToken::from_near(1));
            client.call::<NearToken>(&alice, call).await
        })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Another client (another process) using the same key: its cached nonce is stale, the
    // chain's InvalidNonce moves it forward and the call goes through.
    let other = ChainClient::new(client.url());
    let ping = || {
        FunctionCall::new(registry.account_id().clone(), "deposit_stake")
            .deposit(NearToken::from_near(1))
    };
    other.call::<NearToken>(&alice, ping()).await.unwrap();
    for _ in 0..3 {
        client.call::<NearToken>(&alice, ping()).await.unwrap();
    }
    let total: NearToken = other.call(&alice, ping()).await.unwrap();
    assert_eq!(total, NearToken::from_near(100 + 6 + 5));

    // A function-call key limited to the registry cannot call elsewhere: a typed refusal.
    let limited = SecretKey::from_random(chain_client::KeyType::ED25519);
    let add = Action::AddKey(Box::new(AddKeyAction {
        public_key: limited.public_key(),
        access_key: AccessKey {
            nonce: 0,
            permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                allowance: None,
                receiver_id: registry.account_id().to_string(),
                method_names: vec![],
            }),
        },
    }));
    client
        .send_actions(&alice, alice.account_id(), vec![add])
        .await
        .unwrap();
    let limited = Account::from_secret_key(alice.account_id().clone(), limited);
    let elsewhere = FunctionCall::new(node.root.account_id().clone(), "anything");
    let err = client.call::<()>(&limited, elsewhere).await.unwrap_err();
    assert!(matches!(err, ChainError::InvalidTransaction(_)), "{err:?}");
    let heartbeat = FunctionCall::new(registry.account_id().clone(), "heartbeat")
        .args_json(&json!({"node_id": 1}))
        .unwrap();
    assert!(matches!(
        client.call::<()>(&limited, heartbeat).await,
        Err(ChainError::ContractPanic { .. })
    ));
}
