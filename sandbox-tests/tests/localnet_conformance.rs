//! Where real clients notice a difference between nodes: concurrent transactions of one key,
//! the exact JSON of transaction and query errors, global contracts deployed by hash, queries
//! at earlier blocks, and hostile input. Written against behaviour only (JSON-RPC over HTTP,
//! near-workspaces, near-jsonrpc-client), so a real near-sandbox passes it unchanged.

use near_jsonrpc_client::JsonRpcClient;
use near_jsonrpc_client::methods;
use near_jsonrpc_primitives::types::query::RpcQueryError;
use near_jsonrpc_primitives::types::transactions::RpcTransactionError;
use near_primitives::action::{
    Action, DeployGlobalContractAction, FunctionCallAction, GlobalContractDeployMode,
    GlobalContractIdentifier, TransferAction, UseGlobalContractAction,
};
use near_primitives::errors::{InvalidAccessKeyError, InvalidTxError, TxExecutionError};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{BlockReference, Finality};
use near_primitives::views::QueryRequest;
use near_workspaces::network::Sandbox;
use near_workspaces::types::{AccessKey, KeyType, NearToken, SecretKey};
use near_workspaces::{Account, AccountId, Worker};
use sandbox_tests::{commit, crypto_key, key_nonce, post_raw, probe_wasm, rpc, sandbox, signed_tx};
use serde_json::{Value, json};

/// A contract of one method, `trap`, whose body is the `unreachable` instruction.
const TRAP_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x08, 0x01, 0x04, b't', b'r', b'a', b'p', 0x00, 0x00, // export "trap"
    0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: unreachable
];

/// The smallest contract: one exported method `get` that does nothing.
const TINY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x07, 0x01, 0x03, b'g', b'e', b't', 0x00, 0x00, // export "get"
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: an empty body
];

const YOCTO_PER_TRANSFER: u128 = 1_000;

fn transfer(yocto: u128) -> Vec<Action> {
    vec![Action::Transfer(TransferAction {
        deposit: NearToken::from_yoctonear(yocto),
    })]
}

/// A new sub-account of the root account with `near` NEAR.
async fn account(worker: &Worker<Sandbox>, name: &str, near: u128) -> anyhow::Result<Account> {
    Ok(worker
        .root_account()?
        .create_subaccount(name)
        .initial_balance(NearToken::from_near(near))
        .transact()
        .await?
        .into_result()?)
}

fn amount(view: &Value) -> u128 {
    view["amount"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no amount in {view}"))
}

/// The height and hash of the newest block.
async fn head(url: &str) -> anyhow::Result<(u64, String)> {
    let reply = rpc(url, "block", json!({"finality": "final"})).await?;
    let header = &reply["result"]["header"];
    Ok((
        header["height"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("{reply}"))?,
        header["hash"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{reply}"))?
            .to_string(),
    ))
}

/// `query` with `params` at a block (`block_id`: a height or a hash).
async fn query_at(url: &str, block_id: Value, mut params: Value) -> anyhow::Result<Value> {
    params["block_id"] = block_id;
    rpc(url, "query", params).await
}

/// Sends every transaction at once, in the order given; returns the replies in that order.
async fn send_all(url: &str, txs: Vec<SignedTransaction>) -> anyhow::Result<Vec<Value>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, tx) in txs.into_iter().enumerate() {
        let url = url.to_string();
        tasks.spawn(async move { (i, commit(&url, &tx).await) });
    }
    let mut replies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, reply) = done?;
        replies.push((i, reply?));
    }
    replies.sort_by_key(|(i, _)| *i);
    Ok(replies.into_iter().map(|(_, reply)| reply).collect())
}

/// `count` items in a scrambled but fixed order (a stride coprime with the count).
fn scrambled<T>(items: Vec<T>) -> Vec<T> {
    let count = items.len();
    let stride = (2..count).find(|s| gcd(*s, count) == 1).unwrap_or(1);
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    (0..count)
        .filter_map(|i| slots[(i * stride) % count].take())
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn assert_all_succeeded(replies: &[Value]) {
    for reply in replies {
        assert!(
            reply["result"]["status"].get("SuccessValue").is_some(),
            "a transaction did not land: {reply}"
        );
    }
}

#[tokio::test]
async fn twenty_concurrent_transfers_of_one_key_all_land() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let alice = account(&worker, "alice", 10).await?;
    let bob = account(&worker, "bob", 1).await?;
    let key = crypto_key(alice.secret_key());
    let nonce = key_nonce(&url, alice.id(), &key.public_key()).await?;
    let before = bob.view_account().await?.balance;

    let mut txs = Vec::new();
    for i in 1..=20 {
        let actions = transfer(YOCTO_PER_TRANSFER);
        txs.push(signed_tx(&url, alice.id(), &key, bob.id(), nonce + i, actions).await?);
    }
    let replies = send_all(&url, scrambled(txs)).await?;
    assert_all_succeeded(&replies);

    assert_eq!(
        key_nonce(&url, alice.id(), &key.public_key()).await?,
        nonce + 20
    );
    let after = bob.view_account().await?.balance;
    assert_eq!(
        after.as_yoctonear() - before.as_yoctonear(),
        20 * YOCTO_PER_TRANSFER
    );
    Ok(())
}

#[tokio::test]
async fn twelve_concurrent_transfers_over_three_keys_of_one_account_all_land() -> anyhow::Result<()>
{
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let alice = account(&worker, "alice", 10).await?;
    let bob = account(&worker, "bob", 1).await?;
    let mut keys = vec![crypto_key(alice.secret_key())];
    for _ in 0..2 {
        let extra = SecretKey::from_random(KeyType::ED25519);
        alice
            .batch(alice.id())
            .add_key(extra.public_key(), AccessKey::full_access())
            .transact()
            .await?
            .into_result()?;
        keys.push(crypto_key(&extra));
    }
    let before = bob.view_account().await?.balance;

    let mut txs = Vec::new();
    let mut first_nonces = Vec::new();
    for key in &keys {
        let nonce = key_nonce(&url, alice.id(), &key.public_key()).await?;
        first_nonces.push(nonce);
        for i in 1..=4 {
            let actions = transfer(YOCTO_PER_TRANSFER);
            txs.push(signed_tx(&url, alice.id(), key, bob.id(), nonce + i, actions).await?);
        }
    }
    let replies = send_all(&url, scrambled(txs)).await?;
    assert_all_succeeded(&replies);

    for (key, nonce) in keys.iter().zip(first_nonces) {
        assert_eq!(
            key_nonce(&url, alice.id(), &key.public_key()).await?,
            nonce + 4
        );
    }
    let after = bob.view_account().await?.balance;
    assert_eq!(
        after.as_yoctonear() - before.as_yoctonear(),
        12 * YOCTO_PER_TRANSFER
    );
    Ok(())
}

/// The `error` of a JSON-RPC reply, checked to be neard's handler error around an invalid
/// transaction (`cause.info` is empty on neard: the detail is in `data`).
fn invalid_tx_error(reply: &Value, expected: InvalidTxError) -> anyhow::Result<()> {
    let data = serde_json::to_value(
        near_jsonrpc_primitives::errors::ServerError::TxExecutionError(
            TxExecutionError::InvalidTxError(expected),
        ),
    )?;
    assert_eq!(
        reply["error"],
        json!({
            "name": "HANDLER_ERROR",
            "cause": {"name": "INVALID_TRANSACTION", "info": {}},
            "code": -32000,
            "message": "Server error",
            "data": data,
        }),
        "{reply}"
    );
    Ok(())
}

/// What near-jsonrpc-client makes of a refused `broadcast_tx_commit`.
async fn client_tx_error(url: &str, tx: SignedTransaction) -> anyhow::Result<InvalidTxError> {
    let client = JsonRpcClient::connect(url);
    let request = methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
        signed_transaction: tx,
    };
    match client.call(request).await {
        Ok(outcome) => anyhow::bail!("accepted: {outcome:?}"),
        Err(e) => match e.handler_error() {
            Some(RpcTransactionError::InvalidTransaction { context }) => Ok(context.clone()),
            _ => anyhow::bail!("not an invalid-transaction handler error: {e:?}"),
        },
    }
}

#[tokio::test]
async fn invalid_transactions_carry_nearcores_error_structures() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let alice = account(&worker, "alice", 10).await?;
    let bob = account(&worker, "bob", 1).await?;
    let key = crypto_key(alice.secret_key());
    let nonce = key_nonce(&url, alice.id(), &key.public_key()).await?;

    // A used nonce: InvalidNonce with both nonces.
    let tx = signed_tx(&url, alice.id(), &key, bob.id(), nonce, transfer(1)).await?;
    let expected = InvalidTxError::InvalidNonce {
        tx_nonce: nonce,
        ak_nonce: nonce,
    };
    invalid_tx_error(&commit(&url, &tx).await?, expected.clone())?;
    assert_eq!(client_tx_error(&url, tx).await?, expected);

    // A signature by another key than the one the transaction names.
    let mut tx = signed_tx(&url, alice.id(), &key, bob.id(), nonce + 1, transfer(1)).await?;
    let other = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519);
    tx.signature = other.sign(tx.get_hash().as_ref());
    invalid_tx_error(&commit(&url, &tx).await?, InvalidTxError::InvalidSignature)?;

    // A signer that does not exist.
    let ghost: AccountId = "ghost-of-nobody.test.near".parse()?;
    let tx = signed_tx(&url, &ghost, &key, bob.id(), 1, transfer(1)).await?;
    let expected = InvalidTxError::SignerDoesNotExist {
        signer_id: ghost.as_str().parse()?,
    };
    invalid_tx_error(&commit(&url, &tx).await?, expected.clone())?;
    assert_eq!(client_tx_error(&url, tx).await?, expected);

    // A key the account does not have.
    let stranger = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519);
    let tx = signed_tx(&url, alice.id(), &stranger, bob.id(), 1, transfer(1)).await?;
    let expected =
        InvalidTxError::InvalidAccessKeyError(InvalidAccessKeyError::AccessKeyNotFound {
            account_id: alice.id().as_str().parse()?,
            public_key: stranger.public_key().into(),
        });
    invalid_tx_error(&commit(&url, &tx).await?, expected)?;

    // More than the balance: the signer, its balance and the cost.
    let balance = alice.view_account().await?.balance;
    let tx = signed_tx(
        &url,
        alice.id(),
        &key,
        bob.id(),
        nonce + 1,
        transfer(u128::MAX / 2),
    )
    .await?;
    match client_tx_error(&url, tx).await? {
        InvalidTxError::NotEnoughBalance {
            signer_id,
            balance: reported,
            cost,
        } => {
            assert_eq!(signer_id.as_str(), alice.id().as_str());
            assert_eq!(reported.as_yoctonear(), balance.as_yoctonear());
            assert!(cost.as_yoctonear() > u128::MAX / 2);
        }
        other => panic!("expected NotEnoughBalance, got {other:?}"),
    }

    // A block hash the chain never had.
    let signer = near_crypto::InMemorySigner::from_secret_key(alice.id().as_str().parse()?, key);
    let tx = SignedTransaction::from_actions(
        nonce + 1,
        alice.id().as_str().parse()?,
        bob.id().as_str().parse()?,
        &signer,
        transfer(1),
        CryptoHash::hash_bytes(b"no such block"),
    );
    invalid_tx_error(&commit(&url, &tx).await?, InvalidTxError::Expired)?;
    Ok(())
}

/// A `query` at a fixed block, sent through near-jsonrpc-client; its typed error.
async fn client_query_error(
    url: &str,
    height: u64,
    request: QueryRequest,
) -> anyhow::Result<RpcQueryError> {
    let client = JsonRpcClient::connect(url);
    let request = methods::query::RpcQueryRequest {
        block_reference: BlockReference::BlockId(near_primitives::types::BlockId::Height(height)),
        request,
    };
    match client.call(request).await {
        Ok(response) => anyhow::bail!("answered: {response:?}"),
        Err(e) => match e.handler_error() {
            Some(error) => Ok(error.clone()),
            None => anyhow::bail!("not a query handler error: {e:?}"),
        },
    }
}

/// neard's legacy `query` answer for a failed view call: a result with an `error` text.
fn legacy_query_error(text: String, height: u64, hash: &str) -> Value {
    json!({"error": text, "logs": [], "block_height": height, "block_hash": hash})
}

#[tokio::test]
async fn query_errors_are_answered_in_neards_json() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let plain = account(&worker, "plain", 5).await?;
    let trap = worker.dev_deploy(TRAP_WASM).await?;
    let probe = worker.dev_deploy(probe_wasm()).await?;
    let (height, hash) = head(&url).await?;
    let at = json!(height);

    // A view call on an account without code: the CodeDoesNotExist execution error.
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "call_function", "account_id": plain.id(),
               "method_name": "get", "args_base64": ""}),
    )
    .await?;
    let text = format!(
        "wasm execution failed with error: CompilationError(CodeDoesNotExist {{ account_id: AccountId({:?}) }})",
        plain.id().as_str()
    );
    assert_eq!(
        reply["result"],
        legacy_query_error(text, height, &hash),
        "{reply}"
    );
    let call = |account_id: &AccountId, method: &str| -> anyhow::Result<QueryRequest> {
        Ok(QueryRequest::CallFunction {
            account_id: account_id.as_str().parse()?,
            method_name: method.to_string(),
            args: Vec::new().into(),
        })
    };
    match client_query_error(&url, height, call(plain.id(), "get")?).await? {
        RpcQueryError::ContractExecutionError { vm_error, .. } => {
            assert!(vm_error.contains("CodeDoesNotExist"), "{vm_error}");
        }
        other => panic!("expected ContractExecutionError, got {other:?}"),
    }

    // A trap in the contract, and a method it does not have.
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "call_function", "account_id": trap.id(),
               "method_name": "trap", "args_base64": ""}),
    )
    .await?;
    // nearcore reports a trap as an ExecutionError with the VM's text.
    let text = reply["result"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.starts_with("wasm execution failed with error: ") && text.contains("unreachable"),
        "{reply}"
    );
    assert_eq!(
        reply["result"],
        legacy_query_error(text, height, &hash),
        "{reply}"
    );
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "call_function", "account_id": trap.id(),
               "method_name": "missing", "args_base64": ""}),
    )
    .await?;
    let text = "wasm execution failed with error: MethodResolveError(MethodNotFound)".to_string();
    assert_eq!(
        reply["result"],
        legacy_query_error(text, height, &hash),
        "{reply}"
    );

    // A contract panic.
    use base64::Engine;
    let args = base64::engine::general_purpose::STANDARD.encode(br#"{"message":"view boom"}"#);
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "call_function", "account_id": probe.id(),
               "method_name": "fail", "args_base64": args}),
    )
    .await?;
    // nearcore hands a guest panic to the view as an ExecutionError with its message.
    let text =
        r#"wasm execution failed with error: ExecutionError("Smart contract panicked: view boom")"#
            .to_string();
    assert_eq!(
        reply["result"],
        legacy_query_error(text, height, &hash),
        "{reply}"
    );

    // An access key the account does not have.
    let stranger = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519);
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "view_access_key", "account_id": plain.id(),
               "public_key": stranger.public_key()}),
    )
    .await?;
    let text = format!(
        "access key {} does not exist while viewing",
        stranger.public_key()
    );
    assert_eq!(
        reply["result"],
        legacy_query_error(text, height, &hash),
        "{reply}"
    );
    let request = QueryRequest::ViewAccessKey {
        account_id: plain.id().as_str().parse()?,
        public_key: stranger.public_key(),
    };
    match client_query_error(&url, height, request).await? {
        RpcQueryError::UnknownAccessKey { public_key, .. } => {
            assert_eq!(public_key, stranger.public_key());
        }
        other => panic!("expected UnknownAccessKey, got {other:?}"),
    }

    // An account that does not exist.
    let nobody = "nobody-here.test.near";
    let reply = query_at(
        &url,
        at.clone(),
        json!({"request_type": "view_account", "account_id": nobody}),
    )
    .await?;
    assert_eq!(
        reply["error"],
        json!({
            "name": "HANDLER_ERROR",
            "cause": {"name": "UNKNOWN_ACCOUNT", "info": {
                "requested_account_id": nobody, "block_height": height, "block_hash": hash}},
            "code": -32000,
            "message": "Server error",
            "data": format!("account {nobody} does not exist while viewing"),
        }),
        "{reply}"
    );
    let request = QueryRequest::ViewAccount {
        account_id: nobody.parse()?,
    };
    match client_query_error(&url, height, request).await? {
        RpcQueryError::UnknownAccount {
            requested_account_id,
            block_height,
            ..
        } => {
            assert_eq!(requested_account_id.as_str(), nobody);
            assert_eq!(block_height, height);
        }
        other => panic!("expected UnknownAccount, got {other:?}"),
    }

    // The code of an account without code.
    let reply = query_at(
        &url,
        at,
        json!({"request_type": "view_code", "account_id": plain.id()}),
    )
    .await?;
    assert_eq!(
        reply["error"],
        json!({
            "name": "HANDLER_ERROR",
            "cause": {"name": "NO_CONTRACT_CODE", "info": {
                "contract_account_id": plain.id(), "block_height": height, "block_hash": hash}},
            "code": -32000,
            "message": "Server error",
            "data": format!(
                "Contract code for contract ID #{} has never been observed on the node",
                plain.id()
            ),
        }),
        "{reply}"
    );
    Ok(())
}

/// Deploys `TINY_WASM` as global code from `owner` in `mode`, with a transaction.
async fn deploy_global(
    url: &str,
    owner: &Account,
    mode: GlobalContractDeployMode,
) -> anyhow::Result<()> {
    let key = crypto_key(owner.secret_key());
    let nonce = key_nonce(url, owner.id(), &key.public_key()).await?;
    let actions = vec![Action::DeployGlobalContract(DeployGlobalContractAction {
        code: TINY_WASM.to_vec().into(),
        deploy_mode: mode,
    })];
    let tx = signed_tx(url, owner.id(), &key, owner.id(), nonce + 1, actions).await?;
    let reply = commit(url, &tx).await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    Ok(())
}

/// `user` switches to the global contract `id` and calls its `get` in the same transaction.
async fn use_global(
    url: &str,
    user: &Account,
    id: GlobalContractIdentifier,
) -> anyhow::Result<Value> {
    let key = crypto_key(user.secret_key());
    let nonce = key_nonce(url, user.id(), &key.public_key()).await?;
    let actions = vec![
        Action::UseGlobalContract(Box::new(UseGlobalContractAction {
            contract_identifier: id,
        })),
        Action::FunctionCall(Box::new(FunctionCallAction {
            method_name: "get".into(),
            args: vec![],
            gas: near_primitives::types::Gas::from_teragas(10),
            deposit: near_primitives::types::Balance::ZERO,
        })),
    ];
    let tx = signed_tx(url, user.id(), &key, user.id(), nonce + 1, actions).await?;
    commit(url, &tx).await
}

#[tokio::test]
async fn global_contracts_by_hash_are_there_as_soon_as_their_deployment_is_done()
-> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let owner = account(&worker, "owner", 20).await?;
    let user = account(&worker, "user", 5).await?;
    let hash = CryptoHash::hash_bytes(TINY_WASM);

    deploy_global(&url, &owner, GlobalContractDeployMode::CodeHash).await?;
    // Right after the deployment returned: viewable by hash, and usable.
    let reply = rpc(
        &url,
        "query",
        json!({"request_type": "view_global_contract_code", "code_hash": hash,
               "finality": "final"}),
    )
    .await?;
    assert_eq!(reply["result"]["hash"], json!(hash), "{reply}");
    let reply = use_global(&url, &user, GlobalContractIdentifier::CodeHash(hash)).await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    let view = rpc(
        &url,
        "query",
        json!({"request_type": "view_account", "account_id": user.id(), "finality": "final"}),
    )
    .await?;
    assert_eq!(
        view["result"]["global_contract_hash"],
        json!(hash),
        "{view}"
    );

    // The same by account id.
    deploy_global(&url, &owner, GlobalContractDeployMode::AccountId).await?;
    let reply = rpc(
        &url,
        "query",
        json!({"request_type": "view_global_contract_code_by_account_id",
               "account_id": owner.id(), "finality": "final"}),
    )
    .await?;
    assert_eq!(reply["result"]["hash"], json!(hash), "{reply}");
    let other = account(&worker, "other", 5).await?;
    let reply = use_global(
        &url,
        &other,
        GlobalContractIdentifier::AccountId(owner.id().as_str().parse()?),
    )
    .await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    Ok(())
}

#[tokio::test]
async fn queries_answer_from_the_state_of_the_block_they_name() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let alice = account(&worker, "alice", 10).await?;
    let probe = worker.dev_deploy(probe_wasm()).await?;
    let (height, hash) = head(&url).await?;
    let view_alice = json!({"request_type": "view_account", "account_id": alice.id()});
    let then = amount(&query_at(&url, json!(height), view_alice.clone()).await?["result"]);

    // Changes after that block: a transfer, a new account, contract state.
    let bob = account(&worker, "bob", 1).await?;
    alice
        .transfer_near(bob.id(), NearToken::from_near(2))
        .await?
        .into_result()?;
    probe
        .call("set")
        .args_json(json!({"key": "color", "value": "blue"}))
        .transact()
        .await?
        .into_result()?;
    let now = amount(
        &rpc(&url, "query", {
            let mut p = view_alice.clone();
            p["finality"] = json!("final");
            p
        })
        .await?["result"],
    );
    assert!(now < then);

    for at in [json!(height), json!(hash)] {
        let reply = query_at(&url, at.clone(), view_alice.clone()).await?;
        assert_eq!(amount(&reply["result"]), then, "{reply}");
        assert_eq!(reply["result"]["block_height"], json!(height));
        assert_eq!(reply["result"]["block_hash"], json!(hash));
        let reply = query_at(
            &url,
            at.clone(),
            json!({"request_type": "view_account", "account_id": bob.id()}),
        )
        .await?;
        assert_eq!(
            reply["error"]["cause"]["name"], "UNKNOWN_ACCOUNT",
            "{reply}"
        );
        let args = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(br#"{"key":"color"}"#)
        };
        let reply = query_at(
            &url,
            at,
            json!({"request_type": "call_function", "account_id": probe.id(),
                   "method_name": "get", "args_base64": args}),
        )
        .await?;
        assert_eq!(
            reply["result"]["result"],
            json!(b"null".to_vec()),
            "{reply}"
        );
    }

    // A height past the head, and a hash no block has: UNKNOWN_BLOCK, as neard writes it.
    let (head_height, _) = head(&url).await?;
    let missing = head_height + 1_000_000;
    let reply = query_at(&url, json!(missing), view_alice.clone()).await?;
    assert_eq!(
        reply["error"],
        json!({
            "name": "HANDLER_ERROR",
            "cause": {"name": "UNKNOWN_BLOCK", "info": {"block_reference": {"block_id": missing}}},
            "code": -32000,
            "message": "Server error",
            "data": format!("DB Not Found Error: BLOCK HEIGHT: {missing} \n Cause: Unknown"),
        }),
        "{reply}"
    );
    let nowhere = CryptoHash::hash_bytes(b"no such block").to_string();
    let reply = query_at(&url, json!(nowhere), view_alice).await?;
    assert_eq!(reply["error"]["cause"]["name"], "UNKNOWN_BLOCK", "{reply}");
    assert_eq!(
        reply["error"]["data"],
        json!(format!("DB Not Found Error: BLOCK HEADER: {nowhere}")),
        "{reply}"
    );
    Ok(())
}

#[tokio::test]
async fn fast_forward_chunk_and_validators_answer_bad_parameters_with_errors() -> anyhow::Result<()>
{
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let (height, hash) = head(&url).await?;

    // A fast-forward past the largest height is refused, and the node goes on.
    let reply = rpc(
        &url,
        "sandbox_fast_forward",
        json!({"delta_height": u64::MAX}),
    )
    .await?;
    assert!(reply.get("error").is_some(), "{reply}");
    worker.fast_forward(3).await?;
    let (after, _) = head(&url).await?;
    assert!(after >= height + 3);

    // A shard that does not exist: an error, not a chunk.
    let reply = rpc(&url, "chunk", json!({"block_id": height, "shard_id": 7})).await?;
    assert_eq!(
        reply["error"],
        json!({
            "name": "HANDLER_ERROR",
            "cause": {"name": "INVALID_SHARD_ID", "info": {"shard_id": 7}},
            "code": -32000,
            "message": "Server error",
            "data": "Shard id 7 does not exist",
        }),
        "{reply}"
    );
    let reply = rpc(&url, "chunk", json!({"block_id": height, "shard_id": 0})).await?;
    assert_eq!(reply["result"]["header"]["shard_id"], json!(0), "{reply}");

    // validators: the latest epoch; an epoch by id; a block that is not an epoch's last;
    // blocks and epochs that do not exist.
    let latest = rpc(&url, "validators", json!([null])).await?;
    assert!(
        latest["result"]["current_validators"].is_array(),
        "{latest}"
    );
    let block = rpc(&url, "block", json!({"block_id": hash})).await?;
    let epoch_id = block["result"]["header"]["epoch_id"].clone();
    let by_epoch = rpc(&url, "validators", json!({"epoch_id": epoch_id})).await?;
    assert_eq!(
        by_epoch["result"]["epoch_start_height"], latest["result"]["epoch_start_height"],
        "{by_epoch}"
    );
    let reply = rpc(&url, "validators", json!([height])).await?;
    assert_eq!(
        reply["error"]["cause"]["name"], "VALIDATOR_INFO_UNAVAILABLE",
        "{reply}"
    );
    for params in [
        json!([after + 1_000_000]),
        json!({"block_id": CryptoHash::hash_bytes(b"no block").to_string()}),
        json!({"epoch_id": CryptoHash::hash_bytes(b"no epoch").to_string()}),
    ] {
        let reply = rpc(&url, "validators", params).await?;
        assert_eq!(reply["error"]["cause"]["name"], "UNKNOWN_EPOCH", "{reply}");
    }
    Ok(())
}

#[tokio::test]
async fn hostile_requests_get_json_rpc_errors_and_the_node_stays_up() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();

    // A large body (near-workspaces raises json_payload_max_size): a JSON-RPC reply, never
    // plain text.
    let padding = "x".repeat(11 * 1024 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "status", "params": [padding]});
    let reply = post_raw(&url, body.to_string().as_bytes()).await?;
    assert!(
        reply.get("error").is_some() || reply.get("result").is_some(),
        "{reply}"
    );

    let hostile = [
        (
            "query",
            json!({"request_type": "view_account", "account_id": "a", "block_id": u64::MAX}),
        ),
        (
            "query",
            json!({"request_type": "call_function", "account_id": "test.near",
                         "method_name": "", "args_base64": "!!", "finality": "final"}),
        ),
        ("chunk", json!({"block_id": u64::MAX, "shard_id": u64::MAX})),
        ("chunk", json!([null, null])),
        ("validators", json!([u64::MAX])),
        ("validators", json!({"epoch_id": "not a hash"})),
        ("sandbox_fast_forward", json!({"delta_height": -1})),
        ("block", json!({"block_id": -5})),
        (
            "EXPERIMENTAL_changes",
            json!({"changes_type": "account_changes",
                                        "account_ids": [], "block_id": u64::MAX}),
        ),
        ("gas_price", json!([u64::MAX])),
        ("tx", json!(["11111111111111111111111111111111", "x"])),
    ];
    for (method, params) in hostile {
        let reply = rpc(&url, method, params.clone()).await?;
        assert!(
            reply.get("error").is_some(),
            "{method} {params}: expected an error, got {reply}"
        );
    }
    let status = rpc(&url, "status", json!([])).await?;
    assert!(
        status["result"]["sync_info"]["latest_block_height"]
            .as_u64()
            .is_some(),
        "{status}"
    );
    let finality = BlockReference::Finality(Finality::Final);
    let client = JsonRpcClient::connect(&url);
    client
        .call(methods::block::RpcBlockRequest {
            block_reference: finality,
        })
        .await?;
    Ok(())
}
