//! A localnet process, a small transaction client on `near-jsonrpc-client`, and the
//! enclave-cloud deployment the localnet tests drive: the real registry (with a dev CA) and
//! marketplace wasm, a staked operator whose account holds the enclave's key, a dev node;
//! and the real model factory publishing the real model-token code.
//!
//! The node binary is `NEAR_SANDBOX_BIN_PATH` (default `$CARGO_TARGET_DIR/debug/localnet`,
//! built with `cargo build -p localnet --bin localnet`); the contracts are
//! `$ECLOUD_WASM_DIR/{registry,marketplace,model_factory,model_token}.wasm` (default `$CARGO_TARGET_DIR/near`, built by
//! `scripts/build-contracts.sh`).
#![allow(dead_code)]

use enclave_cloud_common::{Hash32, JobId, ReceiptSubject, ResultReceipt, Usage};
use near_crypto::{KeyType, PublicKey, SecretKey, Signature, Signer};
use near_jsonrpc_client::JsonRpcClient;
use near_jsonrpc_client::methods;
use near_jsonrpc_client::methods::query::RpcQueryRequest;
use near_primitives::account::AccessKey;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{
    Action, AddKeyAction, CreateAccountAction, DeployContractAction, FunctionCallAction,
    SignedTransaction, Transaction, TransactionV0, TransferAction,
};
use near_primitives::types::{AccountId, Balance, BlockId, BlockReference, Finality, Gas};
use near_primitives::views::{
    ExecutionOutcomeWithIdView, FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest,
    TxExecutionStatus,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const NEAR: u128 = 10u128.pow(24);
pub const MODEL: &str = "llama-3-8b";
pub const REGISTRY: &str = "registry.test.near";
pub const MARKET: &str = "market.test.near";
pub const OPERATOR: &str = "op.test.near";
pub const USER: &str = "alice.test.near";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn localnet_bin() -> PathBuf {
    let path = std::env::var_os("NEAR_SANDBOX_BIN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/localnet"));
    assert!(
        path.exists(),
        "{} does not exist: build it with `cargo build -p localnet --bin localnet` or set NEAR_SANDBOX_BIN_PATH",
        path.display()
    );
    path
}

pub fn wasm(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ECLOUD_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("near"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-contracts.sh first",
            path.display()
        )
    })
}

/// A localnet node in a temporary home, killed on drop.
pub struct Localnet {
    child: Child,
    pub home: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`: JSON-RPC on `/`, neardata on `/v0/...`.
    pub url: String,
}

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Localnet {
    /// `localnet init`, a block every `block_ms`, then `localnet run` on a free port.
    pub async fn start(block_ms: u64) -> Self {
        let bin = localnet_bin();
        let home = tempfile::tempdir().unwrap();
        let status = Command::new(&bin)
            .arg("--home")
            .arg(home.path())
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "localnet init failed");
        let config_path = home.path().join("config.json");
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        config["consensus"]["min_block_production_delay"] =
            json!({ "secs": block_ms / 1000, "nanos": (block_ms % 1000) * 1_000_000 });
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .arg("--home")
            .arg(home.path())
            .arg("run")
            .arg("--rpc-addr")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let node = Self { child, home, url };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{}/status", node.url)).send().await
                && r.status().is_success()
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("localnet did not answer /status at {}", node.url);
    }

    /// `test.near`, the validator account with the genesis supply.
    pub fn root_signer(&self) -> Signer {
        let key: Value = serde_json::from_slice(
            &std::fs::read(self.home.path().join("validator_key.json")).unwrap(),
        )
        .unwrap();
        let secret = key["secret_key"]
            .as_str()
            .or(key["private_key"].as_str())
            .unwrap();
        let account: AccountId = key["account_id"].as_str().unwrap().parse().unwrap();
        near_crypto::InMemorySigner::from_secret_key(account, secret.parse().unwrap())
    }
}

/// Signs and sends transactions, runs views.
pub struct Chain {
    pub client: JsonRpcClient,
}

/// What a successful transaction did.
pub struct Outcome {
    pub view: FinalExecutionOutcomeView,
}

impl Outcome {
    /// The receipt outcome that wrote a log containing `needle`.
    pub fn outcome_logging(&self, needle: &str) -> &ExecutionOutcomeWithIdView {
        self.view
            .receipts_outcome
            .iter()
            .find(|o| o.outcome.logs.iter().any(|l| l.contains(needle)))
            .unwrap_or_else(|| panic!("no receipt logged {needle:?}: {:#?}", self.logs()))
    }

    /// The receipt outcomes that failed.
    pub fn failed_receipts(&self) -> impl Iterator<Item = &ExecutionOutcomeWithIdView> {
        self.view.receipts_outcome.iter().filter(|o| {
            matches!(
                o.outcome.status,
                near_primitives::views::ExecutionStatusView::Failure(_)
            )
        })
    }

    pub fn logs(&self) -> Vec<&str> {
        self.view
            .receipts_outcome
            .iter()
            .flat_map(|o| o.outcome.logs.iter().map(String::as_str))
            .collect()
    }

    /// The JSON the call returned.
    pub fn json(&self) -> Value {
        match &self.view.status {
            FinalExecutionStatus::SuccessValue(v) => serde_json::from_slice(v).unwrap(),
            other => panic!("not a success: {other:?}"),
        }
    }
}

pub fn function_call(method: &str, args: &Value, deposit: u128, tgas: u64) -> Action {
    Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: method.to_owned(),
        args: serde_json::to_vec(args).unwrap(),
        gas: Gas::from_teragas(tgas),
        deposit: Balance::from_yoctonear(deposit),
    }))
}

impl Chain {
    pub fn new(url: &str) -> Self {
        Self {
            client: JsonRpcClient::connect(url),
        }
    }

    /// Sends `actions` from `signer` to `receiver`, waits for every receipt to be final and
    /// fails the test if any failed.
    pub async fn send(&self, signer: &Signer, receiver: &str, actions: Vec<Action>) -> Outcome {
        let out = self.send_settled(signer, receiver, actions).await;
        let failed: Vec<_> = out.failed_receipts().collect();
        assert!(
            failed.is_empty(),
            "transaction to {receiver} failed: {:#?}",
            out.view
        );
        out
    }

    /// Like [`Self::send`], but a receipt the transaction spawned may fail (a payout to a
    /// deleted account, which the contract turns into a credit); the transaction itself must
    /// succeed.
    pub async fn send_settled(
        &self,
        signer: &Signer,
        receiver: &str,
        actions: Vec<Action>,
    ) -> Outcome {
        let key = self
            .client
            .call(RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: signer.get_account_id(),
                    public_key: signer.public_key(),
                },
            })
            .await
            .unwrap();
        let near_jsonrpc_primitives::types::query::QueryResponseKind::AccessKey(access_key) =
            key.kind
        else {
            panic!("not an access key: {:?}", key.kind)
        };
        let tx = Transaction::V0(TransactionV0 {
            signer_id: signer.get_account_id(),
            public_key: signer.public_key(),
            nonce: access_key.nonce + 1,
            receiver_id: receiver.parse().unwrap(),
            block_hash: key.block_hash,
            actions,
        });
        let (hash, _) = tx.get_hash_and_size();
        let signed = SignedTransaction::new(signer.sign(hash.as_ref()), tx);
        let response = self
            .client
            .call(methods::send_tx::RpcSendTransactionRequest {
                signed_transaction: signed,
                wait_until: TxExecutionStatus::Final,
            })
            .await
            .unwrap();
        let view = response.final_execution_outcome.unwrap().into_outcome();
        assert!(
            matches!(view.status, FinalExecutionStatus::SuccessValue(_)),
            "transaction to {receiver} failed: {view:#?}"
        );
        Outcome { view }
    }

    pub async fn call(
        &self,
        signer: &Signer,
        contract: &str,
        method: &str,
        args: Value,
        deposit: u128,
    ) -> Outcome {
        self.send(
            signer,
            contract,
            vec![function_call(method, &args, deposit, 100)],
        )
        .await
    }

    /// Creates `name` (a sub-account of the root) with `balance` NEAR, optionally deploying
    /// `code`; returns its signer.
    pub async fn create_account(
        &self,
        root: &Signer,
        name: &str,
        balance: u128,
        code: Option<Vec<u8>>,
        mut extra: Vec<Action>,
    ) -> Signer {
        let key = SecretKey::from_random(KeyType::ED25519);
        let mut actions = vec![
            Action::CreateAccount(CreateAccountAction {}),
            Action::Transfer(TransferAction {
                deposit: Balance::from_near(balance),
            }),
            Action::AddKey(Box::new(AddKeyAction {
                public_key: key.public_key(),
                access_key: AccessKey::full_access(),
            })),
        ];
        if let Some(code) = code {
            actions.push(Action::DeployContract(DeployContractAction { code }));
        }
        actions.append(&mut extra);
        self.send(root, name, actions).await;
        near_crypto::InMemorySigner::from_secret_key(name.parse().unwrap(), key)
    }

    pub async fn view(&self, contract: &str, method: &str, args: Value) -> Value {
        let response = self
            .client
            .call(RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::CallFunction {
                    account_id: contract.parse().unwrap(),
                    method_name: method.to_owned(),
                    args: serde_json::to_vec(&args).unwrap().into(),
                },
            })
            .await
            .unwrap();
        let near_jsonrpc_primitives::types::query::QueryResponseKind::CallResult(result) =
            response.kind
        else {
            panic!("not a call result")
        };
        serde_json::from_slice(&result.result).unwrap()
    }

    pub async fn height_of(&self, block_hash: CryptoHash) -> u64 {
        self.client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::BlockId(BlockId::Hash(block_hash)),
            })
            .await
            .unwrap()
            .header
            .height
    }

    pub async fn final_head(&self) -> (u64, u64) {
        let block = self
            .client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .unwrap();
        (block.header.height, block.header.timestamp_nanosec)
    }
}

/// The deployed suite and its actors.
pub struct Suite {
    pub root: Signer,
    pub operator: Signer,
    /// The enclave's NEAR key: an access key of the operator's account.
    pub enclave: Signer,
    pub enclave_secret: SecretKey,
    pub user: Signer,
    pub node_id: String,
    /// Height of the block whose receipt registered the node.
    pub registered_height: u64,
}

/// The registered node's x25519 secret (its attested `enclave_key` is the public half).
pub fn tee_secret() -> protocol::envelope::EncryptionSecret {
    protocol::envelope::EncryptionSecret::from_bytes(&[7u8; 32]).expect("x25519 secret")
}

fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(near_primitives::hash::hash(bytes).0)
}

pub fn inline(bytes: &[u8]) -> Value {
    json!({ "kind": "inline", "ciphertext": near_primitives::serialize::to_base64(bytes) })
}

pub const INPUT: &[u8] = &[0x5a; 256];
pub const OUTPUT: &[u8] = &[0xa5; 512];

/// Deploys the registry (dev CA) and the marketplace, stakes an operator and registers one
/// dev node serving [`MODEL`].
pub async fn deploy(chain: &Chain, localnet: &Localnet) -> Suite {
    let root = localnet.root_signer();
    let ca = SecretKey::from_random(KeyType::ED25519);
    let owner = root.get_account_id().to_string();
    let registry_init = function_call(
        "new",
        &json!({ "owner": owner, "mainnet": false, "dev_ca_key": ca.public_key().to_string() }),
        0,
        100,
    );
    chain
        .create_account(
            &root,
            REGISTRY,
            50,
            Some(wasm("registry")),
            vec![registry_init],
        )
        .await;
    let market_init = function_call(
        "new",
        &json!({ "owner": owner, "registry": REGISTRY, "treasury": owner }),
        0,
        100,
    );
    chain
        .create_account(
            &root,
            MARKET,
            50,
            Some(wasm("marketplace")),
            vec![market_init],
        )
        .await;
    chain
        .call(
            &root,
            REGISTRY,
            "set_marketplace",
            json!({ "marketplace": MARKET }),
            1,
        )
        .await;
    // Royalties of the model go to a plain account (no model token in this test).
    chain
        .call(
            &root,
            MARKET,
            "set_royalty_account",
            json!({ "model_id": MODEL, "account": owner }),
            1,
        )
        .await;

    let operator = chain
        .create_account(&root, OPERATOR, 500, None, vec![])
        .await;
    let user = chain.create_account(&root, USER, 100, None, vec![]).await;
    let enclave_secret = SecretKey::from_random(KeyType::ED25519);
    chain
        .send(
            &operator,
            OPERATOR,
            vec![Action::AddKey(Box::new(AddKeyAction {
                public_key: enclave_secret.public_key(),
                access_key: AccessKey::full_access(),
            }))],
        )
        .await;
    let enclave = near_crypto::InMemorySigner::from_secret_key(
        OPERATOR.parse().unwrap(),
        enclave_secret.clone(),
    );
    chain
        .call(&operator, REGISTRY, "deposit_stake", json!({}), 150 * NEAR)
        .await;
    chain
        .call(&operator, MARKET, "storage_deposit", json!({}), NEAR / 10)
        .await;

    // A dev attestation: the CA signs (enclave key, NEAR key, expiry).
    let (_, now_ns) = chain.final_head().await;
    let expires = now_ns / 1_000_000_000 + 24 * 3600;
    // The enclave's x25519 key: a known secret, so tests can open what the page seals to it.
    let tee_key = tee_secret().public_key();
    let PublicKey::ED25519(near_key) = enclave_secret.public_key() else {
        panic!("ed25519 key")
    };
    let Signature::ED25519(sig) = ca.sign(&attestation::dev_attestation_message(
        &tee_key,
        &near_key.0,
        expires,
    )) else {
        panic!("ed25519 CA")
    };
    let bundle = json!({
        "version": 1, "kind": "dev", "enclave_key": hex(&tee_key),
        "near_public_key": enclave_secret.public_key().to_string(),
        "dev": { "expires_at": expires, "signature": hex(&sig.to_bytes()) },
    });
    let details = json!({
        "endpoint": "https://node.example/v1", "region": "eu-west", "capacity": 8,
        "prices": [{ "model_id": MODEL, "input_per_million": NEAR.to_string(),
                     "output_per_million": (2 * NEAR).to_string() }],
    });
    let registered = chain
        .call(
            &enclave,
            REGISTRY,
            "register_node",
            json!({ "bundle": bundle, "details": details }),
            0,
        )
        .await;
    let node_id = match registered.json() {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let registered_height = chain
        .height_of(registered.outcome_logging("node_registered").block_hash)
        .await;
    Suite {
        root,
        operator,
        enclave,
        enclave_secret,
        user,
        node_id,
        registered_height,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `submit_job` by the user for any node serving [`MODEL`]; returns the job id and the
/// height of the block whose receipt created it.
pub async fn submit_job(chain: &Chain, suite: &Suite) -> (String, u64) {
    let storage: Value = chain
        .view(
            MARKET,
            "job_storage_deposit",
            json!({ "input_bytes": INPUT.len() }),
        )
        .await;
    let storage: u128 = storage.as_str().unwrap().parse().unwrap();
    let (_, now_ns) = chain.final_head().await;
    let job = json!({ "job": {
        "model_id": MODEL, "price_cap": NEAR.to_string(),
        "deadline_ns": (now_ns + 3600 * 1_000_000_000).to_string(),
        "target": { "kind": "any", "region": null, "gpu_model": null, "max_price_per_million": null },
        "input": inline(INPUT), "user_key": "cd".repeat(32) } });
    let out = chain
        .call(&suite.user, MARKET, "submit_job", job, NEAR + storage)
        .await;
    let job_id = match out.json() {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let height = chain
        .height_of(out.outcome_logging("job_submitted").block_hash)
        .await;
    (job_id, height)
}

/// The operator claims the job for its node.
pub async fn claim(chain: &Chain, suite: &Suite, job_id: &str) -> Outcome {
    let out = chain
        .call(
            &suite.operator,
            MARKET,
            "claim_job",
            json!({ "job_id": job_id, "node_id": suite.node_id }),
            0,
        )
        .await;
    assert_eq!(out.json(), json!(true), "claim refused: {:?}", out.logs());
    out
}

pub const USAGE: Usage = Usage {
    input_tokens: near_sdk::json_types::U64(1_000),
    output_tokens: near_sdk::json_types::U64(2_000),
};

/// The node posts the result: the transaction is signed by the enclave's attested key, and
/// the receipt carries its ed25519 signature.
pub async fn submit_result(chain: &Chain, suite: &Suite, job_id: &str) -> Outcome {
    let receipt = ResultReceipt {
        subject: ReceiptSubject::Job(JobId(job_id.parse().unwrap())),
        model_id: MODEL.parse().unwrap(),
        input_hash: sha256(INPUT),
        output_hash: sha256(OUTPUT),
        usage: USAGE,
        weights_hash: None,
    };
    let Signature::ED25519(sig) = suite.enclave_secret.sign(&receipt.signing_bytes()) else {
        panic!("ed25519 enclave key")
    };
    chain
        .call(
            &suite.enclave,
            MARKET,
            "submit_result",
            json!({ "job_id": job_id, "output": inline(OUTPUT), "usage": USAGE,
                    "signature": near_primitives::serialize::to_base64(&sig.to_bytes()) }),
            0,
        )
        .await
}

/// The model factory's account in the localnet tests.
pub const FACTORY: &str = "factory.test.near";

/// Deploys the real model factory and publishes the real model-token code through it.
pub async fn deploy_factory(chain: &Chain, localnet: &Localnet) {
    let root = localnet.root_signer();
    let init = function_call(
        "new",
        &json!({ "owner": root.get_account_id().to_string(), "registry": REGISTRY }),
        0,
        100,
    );
    // The published code is paid by the factory (storage of a global contract).
    chain
        .create_account(&root, FACTORY, 200, Some(wasm("model_factory")), vec![init])
        .await;
    let publish = Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: "publish_model_code".to_owned(),
        args: wasm("model_token"),
        gas: Gas::from_teragas(300),
        deposit: Balance::from_yoctonear(0),
    }));
    chain.send(&root, FACTORY, vec![publish]).await;
}

/// Creates `model_id` through the factory (as the root account) with a crowdfund; returns
/// the `create_model` outcome.
pub async fn create_model(
    chain: &Chain,
    localnet: &Localnet,
    model_id: &str,
    args: &Value,
) -> Outcome {
    let root = localnet.root_signer();
    let deposit: String = serde_json::from_value(
        chain
            .view(FACTORY, "create_deposit", json!({ "args": args }))
            .await,
    )
    .unwrap();
    chain
        .send(
            &root,
            FACTORY,
            vec![function_call(
                "create_model",
                &json!({ "model_id": model_id, "args": args }),
                deposit.parse().unwrap(),
                50,
            )],
        )
        .await
}
