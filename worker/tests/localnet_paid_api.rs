//! The node's side of the paid API on localnet, every component a separate process: localnet
//! with the contracts and `worker run --api-listen` (dev attestation, embedded MiniLM). A user
//! opens a payment channel on chain, sends a sealed, paid embeddings request through the
//! node's OHTTP gateway, hands over the voucher for its bill; the node is killed (SIGKILL)
//! before it settles, and once restarted its settlement task settles exactly that amount on
//! chain (`settle_channel`, through the worker's chain client); after a re-attestation the API
//! serves the new bundle.
//!
//! Needs, with the same CARGO_TARGET_DIR: the localnet and worker binaries, the contracts
//! (`./scripts/build-contracts.sh`) and MiniLM (`worker/scripts/fetch-model.sh`); then
//! `cargo test -p worker --features localnet-e2e --test localnet_paid_api`.

mod support;

use std::time::{Duration, Instant};

use chain_client::NearToken;
use chain_client::contracts::function_call;
use chain_client::testkit::{Localnet, Suite, SuiteConfig, WorkerNode, create_account, free_port};
use enclave_cloud_common::interfaces::marketplace::methods::{
    CHANNEL_STORAGE_DEPOSIT, ChannelArgs, GET_CHANNEL, OPEN_CHANNEL, OpenChannelArgs,
};
use enclave_cloud_common::interfaces::marketplace::{Channel, OpenChannelSpec};
use enclave_cloud_common::{Asset, ChannelId, NodeId, Voucher};
use near_sdk::json_types::{Base64VecU8, U128};
use protocol::channel_api::{
    BilledUsage, ChannelPayment, VoucherUpdate, authorization, headers, paths,
};
use sealed_api::bhttp::Request;
use sealed_api::client::CONTENT_TYPE_REQUEST;
use sealed_api::{KeyConfig, Limits, SealedClient};

const ONE_NEAR: u128 = 1_000_000_000_000_000_000_000_000;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

fn sealed_post(path: &str, body: &[u8], extra_headers: Vec<(String, String)>) -> Request {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(extra_headers);
    Request {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "node".into(),
        path: path.into(),
        headers,
        body: body.to_vec(),
    }
}

/// `worker run` serving the paid API on `listen` and settling every `settle_interval` (a
/// voucher below the 1000 NEAR threshold waits that long); returns once the API answers.
async fn start_worker(
    worker: &mut WorkerNode,
    suite: &Suite,
    listen: &str,
    settle_interval: &str,
) -> Result<(), String> {
    // The test price is 0.1 NEAR a token and a request reserves a token per body byte.
    let args = [
        "--api-listen",
        listen,
        "--channel-credit-limit",
        "20",
        "--settle-interval",
        settle_interval,
        "--settle-min-amount",
        "1000",
        // Short attestations: the node re-attests while the test runs.
        "--dev-validity-secs",
        "30",
        "--heartbeat-secs",
        "1",
    ];
    worker
        .start(suite, None, &support::model_dir(), &args)
        .map_err(|e| e.to_string())?;
    let process = worker.process.as_mut().expect("started");
    chain_client::testkit::wait_for_http(
        &format!("http://{listen}{}", paths::MODELS),
        process,
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_request_on_localnet_is_served_sealed_and_its_voucher_settled_on_chain() {
    let mut dir = tempfile::tempdir().unwrap();
    dir.disable_cleanup(std::env::var_os("ECLOUD_TEST_KEEP").is_some());
    eprintln!("processes run in {}", dir.path().display());
    let node = Localnet::start(dir.path()).await.unwrap();
    let client = node.client();
    let suite = Suite::deploy(&client, &node.root, SuiteConfig::default())
        .await
        .unwrap();
    let mut worker = WorkerNode::create(dir.path(), "op", &node, &client, &suite)
        .await
        .unwrap();
    let node_id = NodeId(worker.register(&suite).unwrap());
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    // The first run settles nothing small (an hour's interval): it is killed holding an
    // unsettled voucher, and the second run settles it.
    start_worker(&mut worker, &suite, &listen, "1h")
        .await
        .unwrap_or_else(|e| panic!("the worker's API: {e}\n{}", worker.log()));
    let http = reqwest::Client::new();
    let models: serde_json::Value = http
        .get(format!("{base}{}", paths::MODELS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], suite.config.model_id.as_str());
    let attestation_url = format!("{base}/v1/attestation");
    let first_bundle = http
        .get(&attestation_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // The user opens a channel to the node for the suite's model.
    let user = create_account(&client, &node.root, "user", NearToken::from_near(100))
        .await
        .unwrap();
    let channel_key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let storage: U128 = client
        .view(
            suite.marketplace_id(),
            CHANNEL_STORAGE_DEPOSIT,
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let deposit = 30 * ONE_NEAR;
    let open = OpenChannelArgs {
        channel: OpenChannelSpec {
            node_id,
            model_id: suite.config.model_id.parse().unwrap(),
            channel_key: attestation::format_near_ed25519_key(
                &channel_key.verifying_key().to_bytes(),
            )
            .parse()
            .unwrap(),
        },
        deposit: U128(deposit),
    };
    let call = function_call(
        suite.marketplace_id(),
        OPEN_CHANNEL,
        &open,
        Some(NearToken::from_yoctonear(deposit + storage.0)),
    )
    .unwrap();
    let channel_id: Option<ChannelId> = client.call(&user, call).await.unwrap();
    let channel_id = channel_id.expect("the channel opened");

    // A sealed, paid embeddings request.
    let config = http
        .get(format!("{base}/.well-known/ohttp-gateway"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let config = KeyConfig::decode_list(&config).unwrap().remove(0);
    let enclave_key = support::node_encryption_key(&client, &suite, node_id).await;
    let sealed = SealedClient::for_attested_key(config, &enclave_key, Limits::default()).unwrap();
    let send = |request: Request| {
        let (wire, pending) = sealed.seal(&request).unwrap();
        let post = http
            .post(format!("{base}/ohttp"))
            .header("content-type", CONTENT_TYPE_REQUEST)
            .body(wire);
        async move {
            let res = post.send().await.unwrap();
            pending.open(&res.bytes().await.unwrap()).unwrap()
        }
    };
    let body = format!(
        r#"{{"model":"{}","input":"hello world"}}"#,
        suite.config.model_id
    );
    let marketplace = suite.marketplace_id().clone();
    let payment = ChannelPayment {
        channel_id,
        sequence: 1,
        request_signature: authorization(&marketplace, channel_id, 1, body.as_bytes())
            .sign(&channel_key),
        voucher: None,
    };
    let res = send(sealed_post(
        paths::EMBEDDINGS,
        body.as_bytes(),
        payment.to_headers(),
    ))
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let embedding: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(
        embedding["data"][0]["embedding"].as_array().unwrap().len(),
        384
    );
    let bill = res
        .headers
        .iter()
        .find(|(n, _)| n == headers::BILL)
        .map(|(_, v)| serde_json::from_str::<BilledUsage>(v).unwrap())
        .expect("the bill");
    assert!(bill.cost.0 > 0);
    // The same sequence again: refused.
    let res = send(sealed_post(
        paths::EMBEDDINGS,
        body.as_bytes(),
        payment.to_headers(),
    ))
    .await;
    assert_eq!(res.status, 409);

    // The voucher for the bill, handed over alone; the node settles it on chain.
    let voucher = Voucher {
        marketplace,
        channel_id,
        asset: Asset::Near,
        amount: bill.cost,
    };
    let update = VoucherUpdate {
        channel_id,
        signature: Base64VecU8(voucher.sign(&channel_key).to_vec()),
        voucher,
    };
    let res = send(sealed_post(
        paths::CHANNEL_VOUCHER,
        &serde_json::to_vec(&update).unwrap(),
        Vec::new(),
    ))
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let settled = || async {
        let channel: Option<Channel> = client
            .view(
                suite.marketplace_id(),
                GET_CHANNEL,
                &ChannelArgs { channel_id },
            )
            .await
            .unwrap();
        channel.expect("the channel is open").settled.0
    };

    // The node is killed after serving and before settling (below its threshold, within its
    // interval): nothing is settled, and the restarted node settles the voucher it kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        settled().await,
        0,
        "settled before its interval\n{}",
        worker.log()
    );
    worker.kill();
    start_worker(&mut worker, &suite, &listen, "1s")
        .await
        .unwrap_or_else(|e| panic!("the restarted worker's API: {e}\n{}", worker.log()));
    let started = Instant::now();
    loop {
        let settled = settled().await;
        if settled == bill.cost.0 {
            break;
        }
        assert!(settled < bill.cost.0, "settled {settled} > {}", bill.cost.0);
        assert!(
            started.elapsed() < SETTLE_TIMEOUT,
            "not settled: {settled}\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // After a re-attestation `/v1/attestation` serves the new attestation's bundle.
    let started = Instant::now();
    while http
        .get(&attestation_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        == first_bundle
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the served bundle never changed\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
