//! Helpers of the registry's sandbox tests (`tests/registry.rs`): the registry contract, the
//! real attestation vectors, and a staked operator whose account holds the dstack node's own
//! NEAR key as a function-call access key, so transactions are signed AS the attested node.
//!
//! The chain starts at the vectors' valid time through `LOCALNET_GENESIS_TIME` (see
//! [`crate::localnet::sandbox_at`]). A node binary
//! that ignores it (a real near-sandbox) starts at the wall clock, where the collateral is not
//! valid, and the registration tests fail saying so.

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::method::{Method, NoArgs};
use enclave_cloud_common::interfaces::registry::methods::{
    DEPOSIT_STAKE, GET_NODE, NEW, NOW_NS, NewArgs, NodeArgs, REGISTER_NODE, RegisterNodeArgs,
};
use enclave_cloud_common::interfaces::registry::{PlatformMeasurements, Policy};
use enclave_cloud_common::{Hash32, NodeId, NodeStatus};
use near_sdk::json_types::U64;
use near_workspaces::network::Sandbox;
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{AccessKey, NearToken, SecretKey};
use near_workspaces::{Account, AccountId, Contract, Worker};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The dstack node vector's valid time (the collateral window opens just before it).
pub const VECTOR_TIME_SECS: u64 = 1_786_622_400;
/// The same instant as `localnet init` reads it (unix seconds). It is 2026-08-13T12:00:00Z:
/// the collateral's TCB info is issued after midnight, so a chain started at
/// 2026-08-13T00:00:00Z refuses it ("TCBInfo issue date is in the future").
const GENESIS_TIME: &str = "1786622400";

pub const SEC_NS: u64 = 1_000_000_000;
/// The H100 vector's evidence nonce.
pub const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
/// `policy.min_stake` of the test registries.
pub const MIN_STAKE: NearToken = NearToken::from_near(10);
/// What the test operator stakes.
pub const STAKE: NearToken = NearToken::from_near(20);

/// The attestation vectors committed in the repository (or `ECLOUD_VECTORS_DIR`).
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("ECLOUD_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(attestation::TESTDATA_DIR))
}

/// A vector file's text, trimmed.
pub fn vector(rel: &str) -> String {
    let path = vectors_dir().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The registry contract: `$ECLOUD_WASM_DIR/registry.wasm` (default `$CARGO_TARGET_DIR/near`,
/// as `scripts/build-contracts.sh` writes it), else a fresh `cargo build` of it.
pub fn registry_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let dir = std::env::var_os("ECLOUD_WASM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::target_dir().join("near"));
        let mut path = dir.join("registry.wasm");
        if !path.exists() {
            crate::cargo_build(&[
                "-p",
                "registry",
                "--target",
                "wasm32-unknown-unknown",
                "--release",
            ]);
            path = crate::target_dir().join("wasm32-unknown-unknown/release/registry.wasm");
        }
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// A fresh chain whose clock starts at the vectors' time.
pub async fn sandbox_at_vector_time() -> anyhow::Result<Worker<Sandbox>> {
    crate::localnet::sandbox_at(GENESIS_TIME).await
}

/// The dstack node's NEAR key (the one its quote binds).
pub fn dstack_node_key() -> SecretKey {
    vector("intel-tdx-dstack-node/near_account_secret_key")
        .parse()
        .unwrap_or_else(|e| panic!("the vector's secret key parses: {e}"))
}

/// The dstack node's attestation bundle, as the worker would build it from its public data.
pub fn dstack_bundle() -> Value {
    let data = vector("intel-tdx-dstack-node/public_data.json");
    let bundle = attestation::bundle_from_dstack_public_data(data.as_bytes())
        .unwrap_or_else(|e| panic!("the dstack vector converts to a bundle: {e}"));
    serde_json::to_value(bundle).unwrap_or_else(|e| panic!("a bundle serializes: {e}"))
}

/// The H100 vector's evidence (`add_gpu`'s `evidence`).
pub fn hopper_evidence() -> Value {
    json!({
        "report": vector("nvidia-hopper-single/hopperAttestationReport.txt"),
        "nonce": GPU_NONCE,
        "certificate_chain": vector("nvidia-hopper-single/hopperCertChain.txt"),
    })
}

/// A mainnet-style policy that allows exactly the dstack node's platform and compose hash;
/// lifetime 2 h, heartbeats every 5 min (3 may be missed), unbonding 1 day.
pub fn dstack_policy() -> Policy {
    #[derive(serde::Deserialize)]
    struct TcbInfo {
        mrtd: String,
        rtmr0: String,
        rtmr1: String,
        rtmr2: String,
        compose_hash: Hash32,
    }
    let tcb: TcbInfo = serde_json::from_str(&vector("intel-tdx-dstack-node/tcb_info.json"))
        .unwrap_or_else(|e| panic!("tcb_info.json: {e}"));
    Policy {
        platforms: vec![PlatformMeasurements {
            mrtd: tcb.mrtd,
            rtmr0: tcb.rtmr0,
            rtmr1: tcb.rtmr1,
            rtmr2: tcb.rtmr2,
        }],
        compose_hashes: vec![tcb.compose_hash],
        attestation_lifetime_ns: U64(2 * 3600 * SEC_NS),
        min_stake: MIN_STAKE,
        unbonding_delay_ns: U64(24 * 3600 * SEC_NS),
        ..Policy::default()
    }
}

/// A deployed registry, its owner, and an operator with [`STAKE`] whose account carries the
/// dstack node's key (`node` signs with it).
pub struct Registry {
    pub worker: Worker<Sandbox>,
    pub contract: Contract,
    pub operator: Account,
    pub node: Account,
}

impl Registry {
    /// Chain at the vectors' time, registry initialised (mainnet) with `policy`, operator
    /// staked, node key added to the operator's account for calls to the registry.
    pub async fn start(policy: Policy) -> anyhow::Result<Self> {
        let worker = sandbox_at_vector_time().await?;
        let contract = worker.dev_deploy(registry_wasm()).await?;
        let init = NewArgs {
            owner: contract.id().clone(),
            mainnet: true,
            dev_ca_key: None,
            policy: Some(policy),
        };
        let init = crate::calls::call(contract.as_account(), contract.id(), NEW, &init)
            .transact()
            .await?;
        anyhow::ensure!(init.is_success(), "init failed: {init:?}");
        let operator = worker.dev_create_account().await?;
        let staked = crate::calls::call(&operator, contract.id(), DEPOSIT_STAKE, &NoArgs {})
            .deposit(STAKE)
            .transact()
            .await?;
        anyhow::ensure!(staked.is_success(), "deposit_stake failed: {staked:?}");
        let key = dstack_node_key();
        let added = operator
            .batch(operator.id())
            .add_key(
                key.public_key(),
                AccessKey::function_call_access(contract.id(), &[], None),
            )
            .transact()
            .await?;
        anyhow::ensure!(added.is_success(), "add_key failed: {added:?}");
        let node = Account::from_secret_key(operator.id().clone(), key, &worker);
        Ok(Self {
            worker,
            contract,
            operator,
            node,
        })
    }

    pub fn id(&self) -> &AccountId {
        self.contract.id()
    }

    /// `method` (from the registry's method table) called by `signer` with typed `args`: the
    /// table's gas and fixed deposit.
    pub async fn call_method(
        &self,
        signer: &Account,
        method: Method,
        args: &impl serde::Serialize,
    ) -> anyhow::Result<ExecutionFinalResult> {
        Ok(crate::calls::call(signer, self.id(), method, args)
            .transact()
            .await?)
    }

    /// `method` called by `signer` with JSON `args`, all the gas a transaction may have: for
    /// arguments a client would not send (malformed, extra or wrongly typed fields).
    pub async fn call(
        &self,
        signer: &Account,
        method: &str,
        args: Value,
    ) -> anyhow::Result<ExecutionFinalResult> {
        self.call_raw(signer, method, args.to_string().into_bytes())
            .await
    }

    /// `method` called by `signer` with `input` as the raw arguments (any bytes).
    pub async fn call_raw(
        &self,
        signer: &Account,
        method: &str,
        input: Vec<u8>,
    ) -> anyhow::Result<ExecutionFinalResult> {
        Ok(signer
            .call(self.id(), method)
            .args(input)
            .max_gas()
            .transact()
            .await?)
    }

    /// The node registers itself with the dstack bundle; returns the node id.
    pub async fn register_dstack_node(&self) -> anyhow::Result<NodeId> {
        let args = RegisterNodeArgs {
            bundle: dstack_bundle(),
            details: None,
        };
        let outcome = self.call_method(&self.node, REGISTER_NODE, &args).await?;
        anyhow::ensure!(outcome.is_success(), "register_node failed: {outcome:?}");
        Ok(outcome.json()?)
    }

    /// A view (`name` from the method table) decoded into `T`.
    pub async fn view<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        args: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        crate::calls::view(&self.worker, self.id(), name, args).await
    }

    /// `get_node(node_id)`, `None` when unknown.
    pub async fn node_view(&self, node_id: NodeId) -> anyhow::Result<Option<NodeView>> {
        self.view(GET_NODE, &NodeArgs { node_id }).await
    }

    /// The node's computed status; fails if the node is unknown.
    pub async fn status(&self, node_id: NodeId) -> anyhow::Result<NodeStatus> {
        let view = self.node_view(node_id).await?;
        view.map(|v| v.status)
            .ok_or_else(|| anyhow::anyhow!("no node {node_id}"))
    }

    /// The contract's whole storage, to show a refused call changed nothing.
    pub async fn state(&self) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut state: Vec<_> = self
            .worker
            .view_state(self.id())
            .await?
            .into_iter()
            .collect();
        state.sort();
        Ok(state)
    }

    /// The chain's time as the contract sees it, ns.
    pub async fn now_ns(&self) -> anyhow::Result<u64> {
        let now: U64 = self.view(NOW_NS, &NoArgs {}).await?;
        Ok(now.0)
    }
}

/// The failure text of a transaction that must have failed in the contract. Checks that the
/// contract failed with its own typed message, not a Rust panic with a location.
pub fn contract_error(outcome: ExecutionFinalResult) -> String {
    let text = match outcome.into_result() {
        Ok(ok) => panic!("the call succeeded: {ok:?}"),
        Err(failure) => format!("{failure:?}"),
    };
    assert!(
        text.contains("Smart contract panicked: "),
        "not a contract error: {text}"
    );
    assert!(
        !text.contains("panicked at"),
        "a panic with a trace: {text}"
    );
    text
}
