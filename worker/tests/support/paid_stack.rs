//! The private, paid API's processes on localnet, for its acceptance test and its benchmark:
//! localnet with the contracts, the indexer, `worker run` serving its API behind the OHTTP
//! gateway (registered with that API as its endpoint), and `ecloud proxy` for a funded user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chain_client::testkit::{
    IndexerProcess, Localnet, Process, Suite, SuiteConfig, WorkerNode, binary,
    create_account_with_key, free_port, wait_for_http,
};
use chain_client::{Account, ChainClient, NearToken};
use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::marketplace::Channel;
use enclave_cloud_common::interfaces::marketplace::methods::{CHANNELS_BY_USER, UserChannelsArgs};

pub struct PaidStack {
    pub localnet: Localnet,
    pub client: ChainClient,
    pub suite: Suite,
    pub indexer: IndexerProcess,
    pub worker: WorkerNode,
    pub node_id: NodeId,
    /// The worker's API (registered as the node's endpoint).
    pub endpoint: String,
    pub user: Account,
    pub proxy: Process,
    /// The proxy's OpenAI base URL (`.../v1`).
    pub proxy_url: String,
}

/// What the node runs and asks.
pub struct NodeSetup<'a> {
    /// `worker run` backend arguments with their `--model ID=BACKEND_MODEL` mappings.
    pub backend: Vec<String>,
    /// `--price MODEL:IN:OUT` beyond the suite's model.
    pub prices: &'a [&'a str],
    pub worker_extra: &'a [&'a str],
    pub proxy_extra: &'a [&'a str],
}

impl PaidStack {
    pub async fn start(dir: &Path, setup: NodeSetup<'_>) -> Self {
        let localnet = Localnet::start(dir).await.expect("localnet");
        let client = localnet.client();
        let suite = Suite::deploy(&client, &localnet.root, SuiteConfig::default())
            .await
            .expect("contracts");
        let indexer = IndexerProcess::start(dir, &localnet, &suite)
            .await
            .expect("indexer");

        let api_port = free_port().expect("port");
        let endpoint = format!("http://127.0.0.1:{api_port}");
        let mut worker = WorkerNode::create(dir, "op", &localnet, &client, &suite)
            .await
            .expect("worker");
        let mut register: Vec<&str> = vec!["--endpoint", &endpoint];
        for price in setup.prices {
            register.extend(["--price", price]);
        }
        let node_id = NodeId(worker.register_with(&suite, &register).expect("register"));
        let listen = format!("127.0.0.1:{api_port}");
        let mut extra: Vec<&str> = vec!["--api-listen", &listen];
        extra.extend(setup.worker_extra);
        let backend: Vec<&str> = setup.backend.iter().map(String::as_str).collect();
        worker
            .start_with_backend(Some(&indexer), &backend, &extra)
            .expect("worker run");
        let process = worker.process.as_mut().expect("worker process");
        wait_for_http(
            &format!("{endpoint}/v1/models"),
            process,
            Duration::from_secs(300),
        )
        .await
        .expect("the worker's API");

        let (user, creds) = account_with_credentials(&client, &localnet, dir, "user").await;
        let ecloud = ecloud(dir, &localnet, &suite, &indexer, &user, &creds);
        let (proxy, proxy_url) = start_proxy(dir, ecloud, setup.proxy_extra).await;
        Self {
            localnet,
            client,
            suite,
            indexer,
            worker,
            node_id,
            endpoint,
            user,
            proxy,
            proxy_url,
        }
    }

    /// The user's channels, from the chain.
    pub async fn channels(&self) -> Vec<Channel> {
        self.client
            .view(
                self.suite.marketplace_id(),
                CHANNELS_BY_USER,
                &UserChannelsArgs {
                    account_id: self.user.account_id().clone(),
                    from_index: None,
                    limit: None,
                },
            )
            .await
            .expect("channels_by_user")
    }
}

/// A new account `name` with 100 NEAR and its near-cli credentials in `<dir>/<name>-credentials`
/// (what `ecloud --credentials-dir` reads).
pub async fn account_with_credentials(
    client: &ChainClient,
    localnet: &Localnet,
    dir: &Path,
    name: &str,
) -> (Account, PathBuf) {
    let (account, key) =
        create_account_with_key(client, &localnet.root, name, NearToken::from_near(100))
            .await
            .expect("account");
    let creds = dir.join(format!("{name}-credentials"));
    std::fs::create_dir_all(creds.join("localnet")).expect("credentials dir");
    chain_client::write_credentials_file(
        &creds
            .join("localnet")
            .join(format!("{}.json", account.account_id())),
        account.account_id(),
        &key,
    )
    .expect("credentials");
    (account, creds)
}

/// `ecloud proxy` (`ecloud`: the command with its global flags) with `args`; its base URL.
pub async fn start_proxy(dir: &Path, mut ecloud: Command, args: &[&str]) -> (Process, String) {
    let proxy_port = free_port().expect("port");
    ecloud
        .args(["proxy", "--listen", &format!("127.0.0.1:{proxy_port}")])
        .args(args);
    let cmd = ecloud;
    let mut proxy = Process::spawn("ecloud proxy", cmd, &dir.join("proxy.log")).expect("proxy");
    let proxy_url = format!("http://127.0.0.1:{proxy_port}/v1");
    wait_for_http(
        &format!("{proxy_url}/models"),
        &mut proxy,
        Duration::from_secs(60),
    )
    .await
    .expect("the proxy");
    (proxy, proxy_url)
}

/// `ecloud` with `user`'s global flags for this localnet.
pub fn ecloud(
    dir: &Path,
    localnet: &Localnet,
    suite: &Suite,
    indexer: &IndexerProcess,
    user: &Account,
    creds: &Path,
) -> Command {
    let mut cmd = Command::new(binary("ecloud", &["ECLOUD_BIN"]));
    cmd.args(["--network", "localnet", "--rpc-url", &localnet.rpc_url])
        .args(["--indexer-url", &indexer.url])
        .args(["--account-id", user.account_id().as_str()])
        .args(["--registry", suite.registry_id().as_str()])
        .args(["--marketplace", suite.marketplace_id().as_str()])
        .arg("--credentials-dir")
        .arg(creds)
        .arg("--keys-dir")
        .arg(dir.join("user-keys"));
    cmd
}

/// The gemma GGUF (`worker/scripts/fetch-gemma.sh`).
pub fn gemma_gguf() -> PathBuf {
    std::env::var_os("ECLOUD_GEMMA_GGUF")
        .map(PathBuf::from)
        .expect("ECLOUD_GEMMA_GGUF (worker/scripts/fetch-gemma.sh)")
}
