//! `ecloud` against localnet and the real contracts (registry, marketplace, model factory and
//! model token): `model create` / `contribute` / `show` / `claim`, `model encrypt` /
//! `set-weights`, and `job submit` / `status` up to the point where a worker takes over (an
//! open job whose sealed input the node's enclave key opens).
//!
//! Needs the localnet binary (`NEAR_SANDBOX_BIN_PATH`, default `$CARGO_TARGET_DIR/debug/localnet`)
//! and the contracts (`ECLOUD_WASM_DIR`, default `$CARGO_TARGET_DIR/near`, built by
//! `./scripts/build-contracts.sh`); fails with the command to run when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chain_client::contracts::{MarketplaceClient, ModelTokenClient};
use chain_client::near_primitives::account::{AccessKey, AccessKeyPermission};
use chain_client::near_primitives::action::{Action, AddKeyAction};
use chain_client::testkit::{
    Localnet, Suite, SuiteConfig, create_account, create_account_with_key, deploy_contract,
    wasm_path,
};
use chain_client::{Account, ChainClient, FunctionCall, NearToken, credentials_path};
use ed25519_dalek::SigningKey;
use std::os::unix::fs::PermissionsExt as _;

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::marketplace::ConfigPatch;
use enclave_cloud_common::interfaces::model_token::key_grants::DEV_MEASUREMENT;
use enclave_cloud_common::{Hash32, ModelId, NodeId};
use protocol::dev_attestation::dev_bundle;
use protocol::envelope::{EncryptionSecret, Envelope, EnvelopeContext, open};
use protocol::weights::{ModelKey, open_model_key, write_new_key_file};
use serde_json::{Value, json};

const DEV_CA: [u8; 32] = [0x5a; 32];
const MODEL: &str = "minilm";

/// Runs `ecloud`; a text (not `--json`) answer must show amounts for people: no raw
/// yoctoNEAR (a number of 19 to 39 digits, the most a u128 has; hashes are longer) and no
/// "yocto".
fn ecloud(env: &Env, args: &[&str]) -> Output {
    let o = run_ecloud(env, args);
    if !args.contains(&"--json") {
        let out = String::from_utf8_lossy(&o.stdout);
        let raw = out
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| (19..=39).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            raw.is_none() && !out.to_lowercase().contains("yocto"),
            "ecloud {args:?}: a raw amount ({raw:?}) in the text output:\n{out}"
        );
    }
    o
}

fn run_ecloud(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecloud"))
        .args(["--network", "localnet", "--rpc-url", &env.rpc_url])
        .args(["--indexer-url", &env.dead_indexer])
        .args([
            "--registry",
            env.registry.as_str(),
            "--marketplace",
            env.market.as_str(),
        ])
        .args([
            "--factory",
            env.factory.as_str(),
            "--account-id",
            env.alice.as_str(),
        ])
        .args([
            "--credentials-dir",
            s(&env.credentials),
            "--keys-dir",
            s(&env.keys),
        ])
        .args(args)
        .output()
        .expect("run ecloud")
}

fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

struct Env {
    rpc_url: String,
    dead_indexer: String,
    registry: String,
    market: String,
    factory: String,
    alice: String,
    credentials: PathBuf,
    keys: PathBuf,
}

/// The model factory with the model-token code published as its global contract.
async fn deploy_factory(client: &ChainClient, root: &Account, registry: &str) -> Account {
    let factory = create_account(client, root, "models", NearToken::from_near(200))
        .await
        .expect("factory account");
    let init = FunctionCall::new(factory.account_id().clone(), "new")
        .args_json(&json!({ "owner": root.account_id(), "registry": registry }))
        .expect("args");
    deploy_contract(client, &factory, &wasm_path("model_factory"), Some(init))
        .await
        .expect("deploy the factory");
    let code = std::fs::read(wasm_path("model_token")).expect("model_token.wasm");
    let publish = FunctionCall::new(factory.account_id().clone(), "publish_model_code")
        .args_raw(code)
        .gas_tgas(300)
        .deposit(NearToken::from_near(100));
    let published: bool = client
        .call(root, publish)
        .await
        .expect("publish the model code");
    assert!(published, "the factory refused the model-token code");
    factory
}

/// A node registered by [`register_node`].
struct Node {
    node_id: u64,
    /// The enclave's x25519 secret (job inputs and model keys are sealed to it).
    x25519: EncryptionSecret,
    /// The enclave's NEAR key, an access key of the operator's account: it signs as the node.
    enclave: Account,
    seed: [u8; 32],
}

impl Node {
    /// A dev attestation of this enclave, valid for `valid_for` seconds from now.
    fn bundle(&self, valid_for: u64) -> attestation::AttestationBundle {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let near_key = SigningKey::from_bytes(&self.seed)
            .verifying_key()
            .to_bytes();
        dev_bundle(
            &SigningKey::from_bytes(&DEV_CA),
            &self.x25519.public_key(),
            &near_key,
            now + valid_for,
        )
    }
}

/// A node as `worker register` makes one: an operator `operator_name` with stake, the
/// enclave's NEAR key (from `seed`) as an access key of the operator, and `register_node`
/// signed by that key with a dev bundle, pricing `model`.
async fn register_node(
    client: &ChainClient,
    root: &Account,
    registry: &str,
    operator_name: &str,
    seed: [u8; 32],
    model: &str,
) -> Node {
    let operator = create_account(client, root, operator_name, NearToken::from_near(500))
        .await
        .expect("operator");
    let stake = FunctionCall::new(registry.parse().expect("id"), "deposit_stake")
        .deposit(NearToken::from_near(200));
    client.call::<Value>(&operator, stake).await.expect("stake");

    // The enclave keys, with a seed we know so the test can sign as the enclave.
    let x25519 = EncryptionSecret::generate();
    let enclave = Account::from_ed25519_seed(operator.account_id().clone(), &seed);
    let add_key = Action::AddKey(Box::new(AddKeyAction {
        public_key: enclave.public_key().clone(),
        access_key: AccessKey {
            nonce: 0,
            permission: AccessKeyPermission::FullAccess,
        },
    }));
    client
        .send_actions(&operator, operator.account_id(), vec![add_key])
        .await
        .expect("add the enclave key");
    let mut node = Node {
        node_id: 0,
        x25519,
        enclave,
        seed,
    };
    let args = json!({
        "bundle": node.bundle(86_400),
        "details": {
            "region": "eu-west",
            "capacity": 4,
            "prices": [{"model_id": model, "input_per_million": "1000000000000000000000",
                        "output_per_million": "2000000000000000000000"}],
        },
    });
    let register = FunctionCall::new(registry.parse().expect("id"), "register_node")
        .args_json(&args)
        .expect("args")
        .gas_tgas(100);
    let node_id: Value = client
        .call(&node.enclave, register)
        .await
        .expect("register_node");
    node.node_id = node_id
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("node id");
    node
}

/// Registry and marketplace, and the model factory the marketplace trusts for model
/// royalties (the suite's own royalty account for the model is lifted: royalties follow
/// the factory).
async fn deploy_suite(client: &ChainClient, root: &Account) -> (Suite, Account) {
    let suite = Suite::deploy(
        client,
        root,
        SuiteConfig {
            model_id: MODEL.into(),
            dev_ca: chain_client::testkit::DevCa::new(DEV_CA),
            ..SuiteConfig::default()
        },
    )
    .await
    .expect("registry and marketplace");
    let factory = deploy_factory(client, root, suite.registry_id().as_str()).await;
    let market = MarketplaceClient::new(client, suite.marketplace_id().clone());
    let model_id: ModelId = MODEL.parse().expect("model id");
    market
        .set_royalty_account(model_id, None)
        .expect("args")
        .send(root)
        .await
        .expect("lift the royalty account");
    let patch = ConfigPatch {
        model_factory: Some(factory.account_id().clone()),
        ..ConfigPatch::default()
    };
    market
        .update_config(patch)
        .expect("args")
        .send(root)
        .await
        .expect("set the model factory");
    (suite, factory)
}

/// Alice, whose credentials `ecloud` uses, and the settings it runs with.
async fn user(dir: &Path, localnet: &Localnet, suite: &Suite, factory: &Account) -> (Account, Env) {
    let client = localnet.client();
    let (alice, alice_key) =
        create_account_with_key(&client, &localnet.root, "alice", NearToken::from_near(100))
            .await
            .expect("alice");
    let credentials = dir.join("near-credentials");
    chain_client::write_credentials_file(
        &credentials_path(&credentials, "localnet", alice.account_id()),
        alice.account_id(),
        &alice_key,
    )
    .expect("credentials");
    let env = Env {
        rpc_url: localnet.rpc_url.clone(),
        // No indexer: every command must get what it needs from the chain.
        dead_indexer: {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        },
        registry: suite.registry_id().to_string(),
        market: suite.marketplace_id().to_string(),
        factory: factory.account_id().to_string(),
        alice: alice.account_id().to_string(),
        credentials,
        keys: dir.join("ecloud-keys"),
    };
    (alice, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn models_and_jobs_on_localnet() {
    let dir = tempfile::tempdir().expect("tmp");
    let localnet = Localnet::start(dir.path()).await.expect("localnet");
    let client = localnet.client();
    let root = localnet.root.clone();
    let (suite, factory) = deploy_suite(&client, &root).await;
    let registry = suite.registry_id().to_string();
    let node = register_node(&client, &root, &registry, "operator", [0x42; 32], MODEL).await;
    assert_eq!(node.node_id, 0, "first node");
    let enclave = node.x25519;
    let (alice, env) = user(dir.path(), &localnet, &suite, &factory).await;
    let trainer = create_account(&client, &root, "trainer", NearToken::from_near(1))
        .await
        .expect("trainer");

    // ----- models -----
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({
            "name": "all-MiniLM-L6-v2",
            "weights_hash": "11".repeat(32),
            "encrypted_weights_uri": "https://example.org/minilm.enc",
            "training_data_manifest_hash": "22".repeat(32),
            "training_data_manifest_uri": "",
            "training_image_measurement": "",
            "allowed_enclave_measurements": [],
            "licence": "apache-2.0"
        })
        .to_string(),
    )
    .expect("manifest");
    // Before the model exists, the marketplace refuses to confirm it: its royalties stay fees.
    let unconfirmed = ok_json(&ecloud(&env, &["--json", "model", "confirm", MODEL]));
    assert_eq!(unconfirmed["royalty_account"], Value::Null, "{unconfirmed}");
    assert!(
        unconfirmed["refused"]
            .as_str()
            .is_some_and(|r| r.contains("never created")),
        "{unconfirmed}"
    );
    let created = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "model",
            "create",
            MODEL,
            "--manifest",
            s(&manifest),
            "--name",
            "MiniLM revenue",
            "--symbol",
            "MINI",
            "--decimals",
            "6",
            "--goal",
            "10",
            "--token-price",
            "1",
            "--crowdfund-duration",
            "1d",
            "--beneficiary",
            trainer.account_id().as_str(),
        ],
    ));
    let token = format!("{MODEL}.{}", env.factory);
    assert_eq!(created["token"], token);
    assert_eq!(created["owner"], env.alice);
    // `model create` had the marketplace confirm the new model: royalties go to its token.
    assert_eq!(created["royalties"]["royalty_account"], token, "{created}");

    // Creating it again is refused by the factory: exit 4 with its message.
    let again = ecloud(
        &env,
        &[
            "model",
            "create",
            MODEL,
            "--manifest",
            s(&manifest),
            "--name",
            "x",
            "--symbol",
            "X",
        ],
    );
    assert_eq!(
        again.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let contributed = ok_json(&ecloud(
        &env,
        &["--json", "model", "contribute", MODEL, "--amount", "3"],
    ));
    let tokens: u128 = contributed["tokens"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("tokens");
    // 3 NEAR at 1 NEAR per token, less the holder's storage registration.
    assert!(tokens > 2_000_000 && tokens <= 3_000_000, "{contributed}");

    let shown = ok_json(&ecloud(&env, &["--json", "model", "show", MODEL]));
    assert_eq!(shown["symbol"], "MINI");
    assert_eq!(shown["holder"]["balance"], contributed["tokens"]);
    assert_eq!(shown["crowdfund"]["status"], "active");
    assert_eq!(shown["manifest"]["licence"], "apache-2.0");
    let text = ecloud(&env, &["model", "show", MODEL]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("crowdfund    active"),
        "{:?}",
        text
    );

    // ----- encrypted weights: encrypt locally, point the manifest at them -----
    let weights = dir.path().join("weights.bin");
    std::fs::write(&weights, vec![5u8; 100_000]).expect("weights");
    let enc = dir.path().join("weights.enc");
    let model_key = dir.path().join("model.key");
    let encrypted = ecloud(
        &env,
        &[
            "--json",
            "model",
            "encrypt",
            "--weights",
            s(&weights),
            "--out",
            s(&enc),
            "--new-key",
            s(&model_key),
        ],
    );
    let summary = ok_json(&encrypted);
    let summary_file = dir.path().join("weights.summary.json");
    std::fs::write(&summary_file, &encrypted.stdout).expect("summary");
    let uri = format!("file://{}", enc.display());
    let set = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "model",
            "set-weights",
            "--model",
            MODEL,
            "--uri",
            &uri,
            "--summary",
            s(&summary_file),
        ],
    ));
    assert_eq!(set["weights_hash"], summary["ciphertext_sha256"]);
    assert_eq!(set["plaintext_sha256"], summary["plaintext_sha256"]);
    let shown = ok_json(&ecloud(&env, &["--json", "model", "show", MODEL]));
    assert_eq!(
        shown["manifest"]["weights_hash"],
        summary["ciphertext_sha256"]
    );
    assert_eq!(shown["manifest"]["encrypted_weights_uri"], uri.as_str());
    assert_eq!(
        shown["manifest"]["licence"], "apache-2.0",
        "other fields kept"
    );
    let bad_uri = ecloud(
        &env,
        &[
            "model",
            "set-weights",
            "--model",
            MODEL,
            "--uri",
            "s3://bucket/w.enc",
            "--summary",
            s(&summary_file),
        ],
    );
    assert_eq!(bad_uri.status.code(), Some(2));

    let claimed = ok_json(&ecloud(&env, &["--json", "model", "claim", MODEL]));
    assert_eq!(claimed["amount"], "0", "no job has paid royalties yet");
    let unknown = ecloud(&env, &["model", "show", "no-such-model"]);
    assert_eq!(unknown.status.code(), Some(3));

    // ----- jobs -----
    let submitted = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "0",
            "--embed",
            "confidential computing",
            "--max-cost",
            "0.01",
            "--deadline",
            "30m",
        ],
    ));
    let job_id = submitted["job_id"].as_str().expect("job id").to_owned();
    assert_eq!(submitted["node_id"], "0");
    let key_file = PathBuf::from(submitted["key_file"].as_str().expect("key file"));
    assert!(key_file.starts_with(&env.keys));

    let status = ok_json(&ecloud(&env, &["--json", "job", "status", &job_id]));
    assert_eq!(status["status"], "open");
    assert_eq!(status["source"], "marketplace");
    assert_eq!(status["price_cap"], "10000000000000000000000");

    // What the worker sees on claim: the job names alice's key, and the node opens the input.
    let market: chain_client::AccountId = env.market.parse().expect("id");
    let job: Value = client
        .view(&market, "get_job", &json!({ "job_id": job_id }))
        .await
        .expect("get_job");
    assert_eq!(job["user_key"], submitted["user_key"]);
    let ciphertext = job["input"]["ciphertext"].as_str().expect("inline input");
    let envelope = Envelope::from_base64(ciphertext).expect("envelope");
    let mut user_key = [0u8; 32];
    hex::decode_to_slice(submitted["user_key"].as_str().expect("hex"), &mut user_key).expect("hex");
    let plaintext = open(
        &enclave,
        &envelope,
        &EnvelopeContext::JobInput {
            model_id: MODEL.parse::<ModelId>().expect("model"),
            user_key,
        },
    )
    .expect("the node opens the input");
    let request: Value = serde_json::from_slice(&plaintext).expect("json request");
    assert_eq!(request["url"], "/v1/embeddings");
    assert_eq!(request["body"]["input"], "confidential computing");

    // Outputs are read from the indexer, which is down here: exit 4, naming it.
    let result = ecloud(&env, &["job", "result", &job_id]);
    assert_eq!(result.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&result.stderr).contains("unreachable"));

    // A second job reuses the same user key file.
    let second = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "0",
            "--prompt",
            "hi",
            "--max-cost",
            "0.01",
        ],
    ));
    assert_eq!(second["user_key"], submitted["user_key"]);
    assert_ne!(second["job_id"], submitted["job_id"]);

    // ----- cancel -----
    // The user takes her open job back before any claim (1 yocto attached): cap and storage
    // come back.
    let second_id = second["job_id"].as_str().expect("id").to_owned();
    let balance = |account: chain_client::AccountId| {
        let client = &client;
        async move {
            client
                .view_account(&account)
                .await
                .expect("account")
                .amount
                .as_yoctonear()
        }
    };
    let before = balance(alice.account_id().clone()).await;
    let cancelled = ok_json(&ecloud(&env, &["--json", "job", "cancel", &second_id]));
    assert_eq!(cancelled["reason"], "by_user", "{cancelled}");
    assert_eq!(cancelled["refund"], "10000000000000000000000");
    assert_eq!(cancelled["refunded_to"], env.alice);
    let gained = balance(alice.account_id().clone()).await as i128 - before as i128;
    assert!(
        gained > NearToken::from_millinear(9).as_yoctonear() as i128,
        "gained {gained}"
    );
    // It is gone: cancelling it again exits 3.
    let again = ecloud(&env, &["job", "cancel", &second_id]);
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Nobody claimed it within its claim window: cancellable with nothing attached.
    let unclaimed = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "0",
            "--prompt",
            "too slow",
            "--max-cost",
            "0.01",
            "--claim-window",
            "1s",
        ],
    ));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let text = ecloud(
        &env,
        &["job", "cancel", unclaimed["job_id"].as_str().expect("id")],
    );
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(
        out.contains("cancelled (unclaimed): 0.01 NEAR refunded to"),
        "{out}"
    );
    // ----- a job paid with a NEP-141 token (ft_transfer_call) -----
    let usdt = create_account(&client, &root, "usdt", NearToken::from_near(20))
        .await
        .expect("token account");
    let init = FunctionCall::new(usdt.account_id().clone(), "new")
        .args_json(
            &json!({"owner": root.account_id(), "symbol": "USDT", "decimals": 6,
                           "total_supply": "1000000000000"}),
        )
        .expect("args");
    deploy_contract(&client, &usdt, &wasm_path("test_token"), Some(init))
        .await
        .expect("deploy the test token");
    for account in [alice.account_id().as_str(), env.market.as_str()] {
        let register = FunctionCall::new(usdt.account_id().clone(), "storage_deposit")
            .args_json(&json!({ "account_id": account }))
            .expect("args")
            .deposit(NearToken::from_millinear(100));
        client
            .call::<Value>(&root, register)
            .await
            .expect("storage_deposit");
    }
    let mint = FunctionCall::new(usdt.account_id().clone(), "mint")
        .args_json(&json!({ "account_id": alice.account_id(), "amount": "100000000" }))
        .expect("args")
        .deposit(NearToken::from_yoctonear(1));
    client.call::<()>(&root, mint).await.expect("mint");
    // Not accepted yet: refused before any transfer (exit 2), nothing leaves alice.
    let refused = ecloud(
        &env,
        &[
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "0",
            "--embed",
            "tokens",
            "--max-cost",
            "5000000",
            "--token",
            usdt.account_id().as_str(),
        ],
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("does not accept"), "{err}");
    let untouched: String = client
        .view(
            usdt.account_id(),
            "ft_balance_of",
            &json!({ "account_id": alice.account_id() }),
        )
        .await
        .expect("balance");
    assert_eq!(untouched, "100000000");
    let accept = FunctionCall::new(market.clone(), "set_accepted_token")
        .args_json(&json!({ "token": usdt.account_id(), "rate": {"units_per_near": "1000000"} }))
        .expect("args")
        .deposit(NearToken::from_yoctonear(1));
    client
        .call::<()>(&root, accept)
        .await
        .expect("accept the token");
    let paid = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "0",
            "--embed",
            "tokens",
            "--max-cost",
            "5000000",
            "--token",
            usdt.account_id().as_str(),
        ],
    ));
    assert_eq!(
        paid["asset"],
        json!({"kind": "ft", "token": usdt.account_id()})
    );
    let paid_status = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "job",
            "status",
            paid["job_id"].as_str().expect("id"),
        ],
    ));
    assert_eq!(paid_status["status"], "open");
    assert_eq!(paid_status["asset"], format!("ft:{}", usdt.account_id()));
    assert_eq!(paid_status["price_cap"], "5000000");
    // The text shows the token's amount with its metadata's decimals and symbol.
    let text = ecloud(
        &env,
        &["job", "status", paid["job_id"].as_str().expect("id")],
    );
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("price cap   5 USDT"), "{out}");
    let left: String = client
        .view(
            usdt.account_id(),
            "ft_balance_of",
            &json!({ "account_id": alice.account_id() }),
        )
        .await
        .expect("balance");
    assert_eq!(left, "95000000", "the cap is escrowed, nothing more");

    // A node that does not exist, and a model the node does not serve: exit 3.
    let o = ecloud(
        &env,
        &[
            "job",
            "submit",
            "--model",
            MODEL,
            "--node",
            "9",
            "--prompt",
            "x",
            "--max-cost",
            "0.01",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ecloud(
        &env,
        &[
            "job",
            "submit",
            "--model",
            "llama",
            "--node",
            "0",
            "--prompt",
            "x",
            "--max-cost",
            "0.01",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not serve model 'llama'"));
}

/// `ecloud model keeper --once --json` as alice (the model's owner), with its stderr.
fn keeper_pass(env: &Env, key_file: &Path) -> (Value, String) {
    let o = ecloud(
        env,
        &[
            "--json",
            "model",
            "keeper",
            "--model",
            MODEL,
            "--key-file",
            s(key_file),
            "--once",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let report = ok_json(&o);
    // The indexer is down: the only error is that, and the registry's list serves.
    for e in report["last_pass"]["errors"].as_array().expect("errors") {
        assert!(
            e.as_str().is_some_and(|e| e.starts_with("indexer")),
            "{report}\n{stderr}"
        );
    }
    (report, stderr)
}

fn ids(report: &Value, field: &str) -> Vec<u64> {
    report["last_pass"][field]
        .as_array()
        .expect("node ids")
        .iter()
        .map(|id| id.as_str().and_then(|id| id.parse().ok()).expect("node id"))
        .collect()
}

/// Every node's verdict in the last pass, as `(node, action)`.
fn actions(report: &Value) -> Vec<(u64, String)> {
    report["last_pass"]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            (
                d["node_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .expect("node id"),
                d["verdict"]["action"].as_str().expect("action").to_owned(),
            )
        })
        .collect()
}

/// The keeper against the real registry and model token: it grants the model key only to
/// nodes the manifest allows, sealed so that the node's x25519 secret opens it, revokes the
/// grant of a node that left, grants again on re-attestation, and a repeated run (a restarted
/// keeper) finds nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn model_keeper_on_localnet() {
    let dir = tempfile::tempdir().expect("tmp");
    let localnet = Localnet::start(dir.path()).await.expect("localnet");
    let client = localnet.client();
    let root = localnet.root.clone();
    let (suite, factory) = deploy_suite(&client, &root).await;
    let registry = suite.registry_id().to_string();
    let (alice, env) = user(dir.path(), &localnet, &suite, &factory).await;
    let a = register_node(&client, &root, &registry, "op-a", [0x41; 32], MODEL).await;
    let b = register_node(&client, &root, &registry, "op-b", [0x42; 32], MODEL).await;
    // Node c serves another model only: never the key of this one.
    let c = register_node(&client, &root, &registry, "op-c", [0x43; 32], "llama").await;

    // The manifest allows no enclave yet.
    let mut manifest = ModelManifest {
        name: "all-MiniLM-L6-v2".into(),
        weights_hash: Hash32([0x11; 32]),
        encrypted_weights_uri: "https://example.org/minilm.enc".into(),
        training_data_manifest_hash: Hash32([0x22; 32]),
        training_data_manifest_uri: String::new(),
        training_image_measurement: String::new(),
        allowed_enclave_measurements: vec![],
        licence: "apache-2.0".into(),
    };
    let manifest_file = dir.path().join("manifest.json");
    std::fs::write(
        &manifest_file,
        serde_json::to_string(&manifest).expect("json"),
    )
    .expect("manifest");
    ok_json(&ecloud(
        &env,
        &[
            "--json",
            "model",
            "create",
            MODEL,
            "--manifest",
            s(&manifest_file),
            "--name",
            "MiniLM revenue",
            "--symbol",
            "MINI",
        ],
    ));
    let token_id: chain_client::AccountId = format!("{MODEL}.{}", env.factory).parse().expect("id");
    let token = ModelTokenClient::new(&client, token_id);
    let model_id: ModelId = MODEL.parse().expect("model id");

    // The key file: refused while others may read it.
    let key = ModelKey::from_bytes([0x77; 32]);
    let key_file = dir.path().join("model.key");
    write_new_key_file(&key_file, &key).expect("key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let open_key = ecloud(
        &env,
        &[
            "model",
            "keeper",
            "--model",
            MODEL,
            "--key-file",
            s(&key_file),
            "--once",
        ],
    );
    assert_eq!(open_key.status.code(), Some(2));
    let err = String::from_utf8_lossy(&open_key.stderr);
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // Not allowed by the manifest: no grant for anyone.
    let (report, _) = keeper_pass(&env, &key_file);
    assert_eq!(
        actions(&report),
        vec![
            (a.node_id, "skip".to_owned()),
            (b.node_id, "skip".to_owned()),
        ],
        "{report}"
    );
    assert!(token.key_grants().await.expect("grants").is_empty());

    // The manifest allows dev enclaves: a and b get the key, c (another model) does not.
    manifest.allowed_enclave_measurements = vec![DEV_MEASUREMENT.to_owned()];
    token
        .update_manifest(manifest.clone(), NearToken::from_millinear(10))
        .expect("args")
        .send(&alice)
        .await
        .expect("allow dev enclaves");
    let (report, stderr) = keeper_pass(&env, &key_file);
    assert_eq!(
        ids(&report, "granted"),
        vec![a.node_id, b.node_id],
        "{report}"
    );
    assert!(stderr.contains("keeper: "), "{stderr}");
    assert!(
        stderr.contains(&format!("granted node={}", a.node_id)),
        "{stderr}"
    );
    let grants = token.key_grants().await.expect("grants");
    assert_eq!(
        grants.iter().map(|g| g.node_id.0).collect::<Vec<_>>(),
        vec![a.node_id, b.node_id]
    );
    assert!(
        token
            .key_grant(NodeId(c.node_id))
            .await
            .expect("view")
            .is_none()
    );
    for (node, grant) in [&a, &b].into_iter().zip(&grants) {
        let opened = open_model_key(
            &node.x25519,
            &model_id,
            NodeId(node.node_id),
            &grant.encrypted_key.0,
            &grant.key_hash,
        )
        .expect("the node's enclave opens its grant");
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert_eq!(grant.key_hash, key.key_hash());
        assert_eq!(grant.granted_by, *alice.account_id());
    }
    // Sealed to one enclave: the other's secret does not open it.
    assert!(
        open_model_key(
            &b.x25519,
            &model_id,
            NodeId(a.node_id),
            &grants[0].encrypted_key.0,
            &grants[0].key_hash,
        )
        .is_err()
    );

    // Run again (a restarted keeper): nothing to do, no transaction, the grants unchanged.
    let (report, _) = keeper_pass(&env, &key_file);
    assert!(ids(&report, "granted").is_empty(), "{report}");
    assert!(ids(&report, "revoked").is_empty(), "{report}");
    assert_eq!(
        actions(&report),
        vec![
            (a.node_id, "keep".to_owned()),
            (b.node_id, "keep".to_owned()),
        ]
    );
    assert_eq!(token.key_grants().await.expect("grants"), grants);

    // b leaves the registry: its grant is revoked, and it gets no new one.
    let deregister = FunctionCall::new(registry.parse().expect("id"), "deregister")
        .args_json(&json!({ "node_id": b.node_id.to_string() }))
        .expect("args");
    client
        .call::<()>(&b.enclave, deregister)
        .await
        .expect("deregister b");
    let (report, stderr) = keeper_pass(&env, &key_file);
    assert_eq!(ids(&report, "revoked"), vec![b.node_id], "{report}");
    assert!(
        stderr.contains(&format!("revoked node={}", b.node_id)),
        "{stderr}"
    );
    assert!(
        token
            .key_grant(NodeId(b.node_id))
            .await
            .expect("view")
            .is_none()
    );
    let (report, _) = keeper_pass(&env, &key_file);
    assert!(ids(&report, "granted").is_empty(), "{report}");
    assert!(
        token
            .key_grant(NodeId(b.node_id))
            .await
            .expect("view")
            .is_none()
    );

    // a re-attests (a later expiry): its grant belongs to the old attestation, so it gets a
    // fresh one, which its enclave opens.
    let reattest = FunctionCall::new(registry.parse().expect("id"), "reattest")
        .args_json(&json!({ "node_id": a.node_id.to_string(), "bundle": a.bundle(2 * 86_400) }))
        .expect("args")
        .gas_tgas(100);
    client
        .call::<()>(&a.enclave, reattest)
        .await
        .expect("reattest a");
    let (report, _) = keeper_pass(&env, &key_file);
    assert_eq!(ids(&report, "granted"), vec![a.node_id], "{report}");
    let fresh = token
        .key_grant(NodeId(a.node_id))
        .await
        .expect("view")
        .expect("a's grant");
    assert!(fresh.expires_at_ns.0 > grants[0].expires_at_ns.0);
    let opened = open_model_key(
        &a.x25519,
        &model_id,
        NodeId(a.node_id),
        &fresh.encrypted_key.0,
        &fresh.key_hash,
    )
    .expect("a opens its fresh grant");
    assert_eq!(opened.as_bytes(), key.as_bytes());
    let (report, _) = keeper_pass(&env, &key_file);
    assert!(ids(&report, "granted").is_empty(), "{report}");
}
