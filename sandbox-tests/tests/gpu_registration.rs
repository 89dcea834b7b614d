//! Issue 16 on localnet: a dev node with 8 GPUs and 4 NVSwitches registers through the
//! worker's own register code (`worker::register::register`, the dev GPU provider), stopped
//! after its first transactions and resumed from the chain's pending entry; every device is
//! verified on chain. It re-attests with fresh evidence (its registration's evidence is
//! refused), a second node presenting one of its GPUs is refused, and that second node's
//! pending registration expires and its storage is refunded. Prints the gas and the number
//! of transactions as `BENCH` lines (`scripts/bench.sh`).

use std::sync::Arc;

use anyhow::{Context, ensure};
use attestation::gpu_binding_nonce;
use chain_client::ChainClient;
use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::registry::methods::{
    GET_NODE_SWITCHES, GET_OPERATOR, GET_POLICY, NodeArgs, SET_POLICY, SetPolicyArgs,
};
use enclave_cloud_common::interfaces::registry::{
    AttestationPurpose, NodeUpdate, OperatorView, Policy,
};
use enclave_cloud_common::{Hash32, NodeStatus};
use near_sdk::json_types::U64;
use near_workspaces::Account;
use near_workspaces::types::NearToken;
use sandbox_tests::calls::{call, view};
use sandbox_tests::marketplace::{Suite, succeeded};
use worker::attest::dev::DevProvider;
use worker::attest::dev_gpu::DevGpus;
use worker::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use worker::chain::{NodeChain, node_accounts};
use worker::devices::{DeviceAttestation, Limits, Purpose};
use worker::keys::EnclaveKeys;
use worker::register::{NodeAttestation, Registration, register};

/// The seed of the 8-GPU node's devices (the second node copies one of its GPUs).
const FLEET: [u8; 32] = [42; 32];
const DEV_VALIDITY_SECS: u64 = 24 * 3600;

/// One node as the worker runs it: its keys, chain handles and providers.
struct WorkerNode {
    keys: Arc<EnclaveKeys>,
    chain: NodeChain,
    operator: chain_client::Account,
    provider: DevProvider,
    devices: DevGpus,
}

impl WorkerNode {
    async fn new(s: &Suite, name: &str, devices: DevGpus) -> anyhow::Result<Self> {
        let account: Account = s
            .root
            .create_subaccount(name)
            .initial_balance(NearToken::from_near(300))
            .transact()
            .await?
            .into_result()?;
        let client = Arc::new(ChainClient::new(&s.worker.rpc_addr()));
        let keys = Arc::new(EnclaveKeys::generate()?);
        let (enclave, market) = node_accounts(account.id(), &keys);
        let operator = chain_client::Account::from_secret_key(
            account.id().clone(),
            sandbox_tests::crypto_key(account.secret_key()),
        );
        let ca: [u8; 32] = sandbox_tests::crypto_key(s.dev_ca()).unwrap_as_ed25519().0[..32]
            .try_into()
            .context("ed25519 seed")?;
        Ok(Self {
            keys,
            chain: NodeChain {
                client,
                enclave,
                market,
                registry: s.registry.id().clone(),
                marketplace: s.market.id().clone(),
            },
            operator,
            provider: DevProvider::new(&ca, DEV_VALIDITY_SECS),
            devices,
        })
    }

    async fn register(
        &self,
        limits: Limits,
        lines: &mut Vec<String>,
    ) -> Result<Registration, worker::devices::DeviceError> {
        let mut progress = |line: String| {
            println!("{line}");
            lines.push(line);
        };
        register(
            &self.chain.client,
            &self.operator,
            &self.chain,
            NodeAttestation {
                keys: &self.keys,
                provider: &self.provider,
                devices: Some(&self.devices),
            },
            NodeUpdate::default(),
            NearToken::from_near(10),
            limits,
            &mut progress,
        )
        .await
    }

    fn flow(&self) -> DeviceAttestation<'_> {
        DeviceAttestation {
            chain: &self.chain,
            keys: &self.keys,
            provider: &self.provider,
            source: &self.devices,
        }
    }

    fn nonce(&self, challenge: Hash32) -> [u8; 32] {
        let keys = self.keys.public();
        gpu_binding_nonce(&keys.enclave_key, &keys.near_key, &challenge.0)
    }

    /// `reattest` with a bundle carrying `challenge` and these GPUs, as the enclave.
    async fn reattest_with(
        &self,
        node_id: NodeId,
        challenge: Hash32,
        gpus: Vec<attestation::GpuEvidence>,
    ) -> Result<(), chain_client::ChainError> {
        let mut bundle = self
            .provider
            .attest(&self.keys.public(), now_unix_secs())
            .map_err(|e| chain_client::ChainError::Args {
                method: "reattest".into(),
                message: e.to_string(),
            })?;
        bundle.gpu_challenge = Some(challenge.to_string());
        bundle.gpus = gpus;
        self.chain
            .registry_client()
            .reattest(node_id, &bundle)?
            .gas(chain_client::near_primitives::gas::Gas::from_teragas(1_000))
            .send(&self.chain.enclave)
            .await
    }
}

async fn storage_cost(s: &Suite, operator: &chain_client::AccountId) -> anyhow::Result<u128> {
    let view: Option<OperatorView> = view(
        &s.worker,
        s.registry.id(),
        GET_OPERATOR,
        &enclave_cloud_common::interfaces::registry::methods::AccountArgs {
            account_id: operator.clone(),
        },
    )
    .await?;
    Ok(view.context("operator")?.storage_cost.as_yoctonear())
}

#[tokio::test]
async fn an_8_gpu_4_switch_dev_node_registers_resumes_reattests_and_keeps_its_gpus()
-> anyhow::Result<()> {
    let s = Suite::start().await?;
    let node = WorkerNode::new(&s, "gpuop", DevGpus::new(FLEET, 8, 4)).await?;

    // Interrupted after its first device transactions (begin_attestation, register_node).
    let mut lines = Vec::new();
    let first = node
        .register(
            Limits {
                max_transactions: Some(2),
            },
            &mut lines,
        )
        .await?;
    ensure!(!first.complete, "stopped half-way: {first:?}");
    let node_id = first.node_id.context("register_node ran")?;
    let registry = node.chain.registry_client();
    let view = registry.get_node(node_id).await?.context("node")?;
    ensure!(view.status == NodeStatus::Pending, "{view:?}");
    let pending = node.flow().pending().await?.context("pending entry")?;
    ensure!(pending.bundle_verified && pending.purpose == AttestationPurpose::Register);
    let registration_challenge = pending.challenge;

    // Resumed: the rest only.
    let second = node.register(Limits::default(), &mut lines).await?;
    ensure!(second.complete, "{second:?}");
    ensure!(
        lines.iter().any(|l| l.starts_with("resuming: GPU ")),
        "{lines:#?}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("GPU 8/8 and switch 4/4 verified,")),
        "{lines:#?}"
    );
    let view = registry.get_node(node_id).await?.context("node")?;
    ensure!(view.status == NodeStatus::Active, "{view:?}");
    ensure!(view.gpus.len() == 8 && view.gpus.iter().all(|g| g.model == "GH100"));
    let switches: Vec<Hash32> = view_json(&s, GET_NODE_SWITCHES, &NodeArgs { node_id }).await?;
    ensure!(switches.len() == 4, "{switches:?}");
    ensure!(node.flow().pending().await?.is_none(), "entry removed");
    let transactions = first.device_transactions + second.device_transactions;
    let gas = first.device_gas_tgas + second.device_gas_tgas;
    println!(
        "BENCH registry.sandbox.register_8gpu_4switch_interrupted.transactions {transactions} tx"
    );
    println!("BENCH registry.sandbox.register_8gpu_4switch_interrupted.gas {gas} Tgas");

    // The same registration in one run (another node, its own devices): what it costs.
    let other = WorkerNode::new(&s, "gpuop2", DevGpus::new([43; 32], 8, 4)).await?;
    let once = other.register(Limits::default(), &mut Vec::new()).await?;
    ensure!(once.complete, "{once:?}");
    println!(
        "BENCH registry.sandbox.register_8gpu_4switch.transactions {} tx",
        once.device_transactions
    );
    println!(
        "BENCH registry.sandbox.register_8gpu_4switch.gas {} Tgas",
        once.device_gas_tgas
    );

    // Re-attestation: the registration's evidence is refused, fresh evidence is accepted.
    let expires = view.attestation_expires_at_ns.0;
    let begun = registry
        .begin_attestation(8, 4, Some(node_id))?
        .send(&node.chain.enclave)
        .await?;
    let old = node.devices.evidence(node.nonce(registration_challenge))?;
    let err = node
        .reattest_with(node_id, begun.challenge, old.gpus[..2].to_vec())
        .await
        .expect_err("old evidence");
    ensure!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    let mut lines = Vec::new();
    let mut progress = |line: String| lines.push(line);
    let again = node
        .flow()
        .run(
            Purpose::Reattest { node_id },
            Limits::default(),
            &mut progress,
        )
        .await?;
    ensure!(again.complete && again.resumed, "{again:?}");
    println!(
        "BENCH registry.sandbox.reattest_8gpu_4switch.transactions {} tx",
        again.transactions
    );
    println!(
        "BENCH registry.sandbox.reattest_8gpu_4switch.gas {} Tgas",
        again.gas_burnt.as_teragas()
    );
    let view = registry.get_node(node_id).await?.context("node")?;
    ensure!(
        view.attestation_expires_at_ns.0 > expires,
        "renewed: {view:?}"
    );
    ensure!(view.gpus.len() == 8 && view.status == NodeStatus::Active);

    // The second node's registrations expire fast from here on.
    let mut policy: Policy = view_json(&s, GET_POLICY, &serde_json::json!({})).await?;
    policy.challenge_lifetime_ns = U64(20_000_000_000);
    succeeded(
        call(
            &s.owner,
            s.registry.id(),
            SET_POLICY,
            &SetPolicyArgs { policy },
        )
        .transact()
        .await?,
    )?;

    // A second node presenting one of those GPUs.
    let thief = WorkerNode::new(&s, "thief", DevGpus::new(FLEET, 1, 0)).await?;
    let before = storage_cost(&s, thief.operator.account_id()).await.ok();
    let err = thief
        .register(Limits::default(), &mut Vec::new())
        .await
        .expect_err("GPU in use");
    ensure!(
        err.to_string()
            .contains(&format!("is already attached to node {node_id}")),
        "{err}"
    );
    let charged = storage_cost(&s, thief.operator.account_id()).await?;
    let pending = thief.flow().pending().await?.context("its begun entry")?;
    ensure!(pending.node_id.is_none());

    // It expires; anyone prunes it; the operator's storage is refunded.
    let mut waited = 0;
    while s.worker.view_block().await?.timestamp() < pending.expires_at_ns.0 {
        ensure!(waited < 120, "the chain clock did not reach the expiry");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        waited += 1;
    }
    let key: near_sdk::PublicKey = thief.chain.enclave.public_key().to_string().parse()?;
    let removed: u32 = call(
        &s.user,
        s.registry.id(),
        enclave_cloud_common::interfaces::registry::methods::PRUNE_PENDING,
        &enclave_cloud_common::interfaces::registry::methods::PrunePendingArgs {
            signer_keys: vec![key],
        },
    )
    .transact()
    .await?
    .into_result()?
    .json()?;
    ensure!(removed == 1);
    let after = storage_cost(&s, thief.operator.account_id()).await?;
    ensure!(
        after < charged,
        "refunded: {charged} -> {after} (before any: {before:?})"
    );
    ensure!(thief.flow().pending().await?.is_none());
    Ok(())
}

async fn view_json<T: serde::de::DeserializeOwned>(
    s: &Suite,
    method: &str,
    args: &impl serde::Serialize,
) -> anyhow::Result<T> {
    view(&s.worker, s.registry.id(), method, args).await
}
