//! `ecloud` against localnet and the real contracts (registry, marketplace, model factory and
//! model token): `model create` / `contribute` / `show` / `claim`, `model encrypt` /
//! `set-weights`, and `job submit` / `status` up to the point where a worker takes over (an
//! open job whose sealed input the node's enclave key opens); `channel open` / `list` /
//! `top-up` / `close` / `finish-close`.
//!
//! Needs the localnet binary (`NEAR_SANDBOX_BIN_PATH`, default `$CARGO_TARGET_DIR/debug/localnet`)
//! and the contracts (`ECLOUD_WASM_DIR`, default `$CARGO_TARGET_DIR/near`, built by
//! `./scripts/build-contracts.sh`); fails with the command to run when they are missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chain_client::contracts::MarketplaceClient;
use chain_client::near_primitives::account::{AccessKey, AccessKeyPermission};
use chain_client::near_primitives::action::{Action, AddKeyAction};
use chain_client::testkit::{
    Localnet, Suite, SuiteConfig, create_account, create_account_with_key, deploy_contract,
    wasm_path,
};
use chain_client::{Account, ChainClient, FunctionCall, NearToken, credentials_path};
use ed25519_dalek::SigningKey;
use enclave_cloud_common::ModelId;
use enclave_cloud_common::interfaces::marketplace::ConfigPatch;
use protocol::dev_attestation::dev_bundle;
use protocol::envelope::{EncryptionSecret, Envelope, EnvelopeContext, open};
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

/// A node as `worker register` makes one: an operator with stake, the enclave's NEAR key as an
/// access key of the operator, and `register_node` signed by that key with a dev bundle.
/// Returns the enclave's x25519 secret (job inputs are sealed to it).
async fn register_node(client: &ChainClient, root: &Account, registry: &str) -> EncryptionSecret {
    let operator = create_account(client, root, "operator", NearToken::from_near(500))
        .await
        .expect("operator");
    let stake = FunctionCall::new(registry.parse().expect("id"), "deposit_stake")
        .deposit(NearToken::from_near(200));
    client.call::<Value>(&operator, stake).await.expect("stake");

    // The enclave keys, with a seed we know so the test can sign as the enclave.
    let seed = [0x42u8; 32];
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

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let near_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let bundle = dev_bundle(
        &SigningKey::from_bytes(&DEV_CA),
        &x25519.public_key(),
        &near_key,
        now + 86_400,
    );
    let args = json!({
        "bundle": bundle,
        "details": {
            "region": "eu-west",
            "capacity": 4,
            "prices": [{"model_id": MODEL, "input_per_million": "1000000000000000000000",
                        "output_per_million": "2000000000000000000000"}],
        },
    });
    let register = FunctionCall::new(registry.parse().expect("id"), "register_node")
        .args_json(&args)
        .expect("args")
        .gas_tgas(100);
    let node_id: Value = client
        .call(&enclave, register)
        .await
        .expect("register_node");
    assert_eq!(node_id, json!("0"), "first node");
    x25519
}

/// Alice, with 100 NEAR and her near-cli credentials in `<dir>/near-credentials`.
async fn user_with_credentials(
    client: &ChainClient,
    root: &Account,
    dir: &Path,
) -> (Account, PathBuf) {
    let (alice, alice_key) =
        create_account_with_key(client, root, "alice", NearToken::from_near(100))
            .await
            .expect("alice");
    let credentials = dir.join("near-credentials");
    chain_client::write_credentials_file(
        &credentials_path(&credentials, "localnet", alice.account_id()),
        alice.account_id(),
        &alice_key,
    )
    .expect("credentials");
    (alice, credentials)
}

/// An address nothing listens on: commands that must not need the indexer get it.
fn dead_indexer() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", l.local_addr().expect("addr"))
}

#[tokio::test(flavor = "multi_thread")]
async fn models_and_jobs_on_localnet() {
    let dir = tempfile::tempdir().expect("tmp");
    let localnet = Localnet::start(dir.path()).await.expect("localnet");
    let client = localnet.client();
    let root = localnet.root.clone();
    let suite = Suite::deploy(
        &client,
        &root,
        SuiteConfig {
            model_id: MODEL.into(),
            dev_ca: chain_client::testkit::DevCa::new(DEV_CA),
            ..SuiteConfig::default()
        },
    )
    .await
    .expect("registry and marketplace");
    let registry = suite.registry_id().to_string();
    // Royalties follow the factory: the suite's own royalty account for the model is lifted,
    // so the model's royalties are protocol fees until the marketplace confirms it exists.
    let factory = suite
        .deploy_factory(&client)
        .await
        .expect("the model factory");
    let enclave = register_node(&client, &root, &registry).await;
    let (alice, credentials) = user_with_credentials(&client, &root, dir.path()).await;
    let trainer = create_account(&client, &root, "trainer", NearToken::from_near(1))
        .await
        .expect("trainer");
    let env = Env {
        rpc_url: localnet.rpc_url.clone(),
        // No indexer: every command must get what it needs from the chain.
        dead_indexer: dead_indexer(),
        registry,
        market: suite.marketplace_id().to_string(),
        factory: factory.account_id().to_string(),
        alice: alice.account_id().to_string(),
        credentials,
        keys: dir.path().join("ecloud-keys"),
    };

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

/// What `ecloud proxy` checks before it sends a node anything, against this registry's record
/// and policy (read through `ChainMarket`, as the proxy does): a report of the registered keys
/// passes; the same report against a record with another enclave key does not.
async fn proxy_accepts_the_registered_node(
    localnet: &Localnet,
    suite: &Suite,
    enclave: &EncryptionSecret,
) {
    use ecloud::proxy::attest::{check_report, fresh_nonce};
    use ecloud::proxy::market::{ChainMarket, Market as _};
    let settings = ecloud::config::Settings::resolve(
        ecloud::config::Network::Localnet,
        ecloud::config::Overrides {
            rpc_url: Some(localnet.rpc_url.clone()),
            registry: Some(suite.registry_id().clone()),
            marketplace: Some(suite.marketplace_id().clone()),
            ..ecloud::config::Overrides::default()
        },
    );
    let market = ChainMarket {
        chain: ecloud::chain::Chain::new(&settings),
        indexer: ecloud::indexer::Indexer::new(&dead_indexer()),
    };
    let policy = market.verify_policy().await.expect("the registry's policy");
    assert!(
        policy.dev_ca_public_key.is_some(),
        "localnet enables dev attestation"
    );
    let node = market
        .node(enclave_cloud_common::NodeId(0))
        .await
        .expect("get_node")
        .expect("node 0");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // The keys register_node used: the enclave's NEAR key seed and its x25519 secret.
    let signer = sealed_api::ResponseSigner::from_secrets(&[0x42; 32], &[0x43; 32]).expect("keys");
    let gateway = sealed_api::GatewayKey::from_secret(1, &enclave.to_bytes()).expect("x25519");
    let bundle = dev_bundle(
        &SigningKey::from_bytes(&DEV_CA),
        &enclave.public_key(),
        &signer.ed25519_public(),
        now + 3600,
    );
    let nonce = fresh_nonce().expect("nonce");
    let report = support::attestation_report(&signer, gateway.config(), bundle, &nonce);
    let attested = check_report(&report, &nonce, &node, "http://node".into(), &policy, now)
        .expect("the registered node verifies");
    assert_eq!(
        attested.ed25519_address,
        hex::encode(signer.ed25519_public())
    );
    let mut other = node.clone();
    other.encryption_key = hex::encode([7u8; 32]);
    let refused = check_report(&report, &nonce, &other, "http://node".into(), &policy, now)
        .expect_err("another enclave key");
    assert!(refused.contains("not the registry's"), "{refused}");
}

/// `ecloud channel open | list | top-up | close | finish-close` against the real marketplace:
/// the channel key's state file is written (0600) with the channel's id, the chain and the
/// local state are listed together, and a unilateral close refunds the whole deposit after the
/// challenge period (nothing was settled).
#[tokio::test(flavor = "multi_thread")]
async fn channels_on_localnet() {
    let dir = tempfile::tempdir().expect("tmp");
    let localnet = Localnet::start(dir.path()).await.expect("localnet");
    let client = localnet.client();
    let root = localnet.root.clone();
    let suite = Suite::deploy(
        &client,
        &root,
        SuiteConfig {
            model_id: MODEL.into(),
            dev_ca: chain_client::testkit::DevCa::new(DEV_CA),
            ..SuiteConfig::default()
        },
    )
    .await
    .expect("registry and marketplace");
    let registry = suite.registry_id().to_string();
    let market = MarketplaceClient::new(&client, suite.marketplace_id().clone());
    let patch = ConfigPatch {
        channel_challenge_period_ns: Some(near_sdk::json_types::U64(3_000_000_000)),
        ..ConfigPatch::default()
    };
    market
        .update_config(patch)
        .expect("args")
        .send(&root)
        .await
        .expect("a short challenge period");
    let enclave = register_node(&client, &root, &registry).await;
    proxy_accepts_the_registered_node(&localnet, &suite, &enclave).await;
    // The marketplace caches the node on the first channel: its operator pays that storage
    // (the worker does this at startup).
    market
        .storage_deposit(
            Some("operator.test.near".parse().expect("id")),
            NearToken::from_millinear(100),
        )
        .expect("args")
        .send(&root)
        .await
        .expect("the operator's storage balance");
    let (alice, credentials) = user_with_credentials(&client, &root, dir.path()).await;
    let env = Env {
        rpc_url: localnet.rpc_url.clone(),
        dead_indexer: dead_indexer(),
        registry,
        market: suite.marketplace_id().to_string(),
        factory: "models.test.near".into(),
        alice: alice.account_id().to_string(),
        credentials,
        keys: dir.path().join("ecloud-keys"),
    };
    const HALF: &str = "500000000000000000000000";

    let opened = ok_json(&ecloud(
        &env,
        &[
            "--json",
            "channel",
            "open",
            "--node",
            "0",
            "--model",
            MODEL,
            "--deposit",
            "0.5",
        ],
    ));
    let id = opened["channel_id"]
        .as_str()
        .expect("channel id")
        .to_owned();
    let id = id.as_str();
    assert_eq!(opened["deposit"], HALF, "{opened}");
    let state = PathBuf::from(opened["state_file"].as_str().expect("state file"));
    assert!(
        state.starts_with(env.keys.join("localnet").join("channels")),
        "{state:?}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state)
            .expect("state file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let listed = ok_json(&ecloud(&env, &["--json", "channel", "list"]));
    let row = &listed["channels"][0];
    assert_eq!(
        (
            &row["state"],
            &row["deposit"],
            &row["owed"],
            &row["settled"]
        ),
        (&json!("open"), &json!(HALF), &json!("0"), &json!("0")),
        "{listed}"
    );
    // Text output: a table with amounts for people.
    let text = ecloud(&env, &["channel", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("0.5 NEAR"));

    ok_json(&ecloud(
        &env,
        &["--json", "channel", "top-up", id, "--amount", "0.25"],
    ));
    let listed = ok_json(&ecloud(&env, &["--json", "channel", "list"]));
    assert_eq!(listed["channels"][0]["deposit"], "750000000000000000000000");

    let closing = ok_json(&ecloud(&env, &["--json", "channel", "close", id]));
    assert_eq!(closing["action"], "closing", "{closing}");
    let listed = ok_json(&ecloud(&env, &["--json", "channel", "list"]));
    assert_eq!(listed["channels"][0]["state"], "closing");
    // Too early: the marketplace refuses (exit 4 with its message), then it succeeds.
    let mut refund = None;
    for _ in 0..30 {
        let o = run_ecloud(&env, &["--json", "channel", "finish-close", id]);
        if o.status.success() {
            refund = Some(ok_json(&o));
            break;
        }
        assert_eq!(
            o.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let refund = refund.expect("finish_close after the challenge period");
    assert_eq!(refund["amount"], "750000000000000000000000", "{refund}");
    let listed = ok_json(&ecloud(&env, &["--json", "channel", "list"]));
    assert_eq!(listed["channels"][0]["state"], "closed", "{listed}");
}
