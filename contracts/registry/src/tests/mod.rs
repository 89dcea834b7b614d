//! Unit tests (`testing_env!`). Helpers here; one module per concern.

mod binding;
mod dstack;
mod governance;
mod nodes;
mod stake;
mod views;

use ed25519_dalek::{Signer, SigningKey};
use enclave_cloud_common::events::{AnyEvent, RegistryEvent};
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::registry::AttestationProgress;
use enclave_cloud_common::{NodeId, NodeStatus};
use near_sdk::json_types::U64;
use near_sdk::test_utils::{VMContextBuilder, get_logs};
use near_sdk::{AccountId, CurveType, Gas, NearToken, PublicKey, testing_env};

pub use crate::{PendingApi, Policy, Registry, RegistryError, RegistryViewApi};

pub const SEC: u64 = 1_000_000_000;
pub const DAY: u64 = 24 * 3600 * SEC;
/// A start time well after zero so "timeouts since 0" never mask a bug.
pub const T0: u64 = 1_700_000_000 * SEC;
pub const MIN_STAKE: u128 = 10;

pub fn acc(s: &str) -> AccountId {
    s.parse().expect("valid account id")
}
pub fn owner() -> AccountId {
    acc("owner.near")
}
pub fn op() -> AccountId {
    acc("op.near")
}
pub fn market() -> AccountId {
    acc("market.near")
}

pub fn near(n: u128) -> NearToken {
    NearToken::from_near(n)
}
pub fn yocto(n: u128) -> NearToken {
    NearToken::from_yoctonear(n)
}

/// An ed25519 key pair from a seed; `.1` is its NEAR public key.
pub fn key(seed: u8) -> (SigningKey, PublicKey) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let pk = PublicKey::from_parts(CurveType::ED25519, sk.verifying_key().to_bytes().to_vec())
        .expect("ed25519");
    (sk, pk)
}

pub fn ed25519_bytes(pk: &PublicKey) -> [u8; 32] {
    pk.as_bytes()[1..].try_into().expect("32 bytes")
}

/// The operator's full access key (not an enclave key).
pub fn full_key() -> PublicKey {
    key(200).1
}

/// Development CA of the test registry.
pub fn dev_ca() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

/// One call's context: who calls, with which key, what deposit, at what time.
#[derive(Clone)]
pub struct Call {
    pub predecessor: AccountId,
    pub signer: AccountId,
    pub key: PublicKey,
    pub deposit: NearToken,
    pub now: u64,
    /// Raw call input, for the methods that read it themselves.
    pub input: Vec<u8>,
}

thread_local! {
    /// The context installed last, so a helper can re-install it with an input.
    static LAST_CALL: std::cell::RefCell<Option<Call>> = const { std::cell::RefCell::new(None) };
}

impl Call {
    pub fn by(account: AccountId) -> Self {
        Self {
            predecessor: account.clone(),
            signer: account,
            key: full_key(),
            deposit: yocto(0),
            now: T0,
            input: Vec::new(),
        }
    }
    pub fn key(mut self, key: PublicKey) -> Self {
        self.key = key;
        self
    }
    pub fn deposit(mut self, d: NearToken) -> Self {
        self.deposit = d;
        self
    }
    pub fn yocto(self) -> Self {
        self.deposit(yocto(1))
    }
    pub fn at(mut self, now: u64) -> Self {
        self.now = now;
        self
    }
    pub fn relayed_by(mut self, signer: AccountId) -> Self {
        self.signer = signer;
        self
    }
    fn builder(&self) -> VMContextBuilder {
        let mut b = VMContextBuilder::new();
        b.context.input = self.input.clone().into();
        b.current_account_id(acc("registry.near"))
            .predecessor_account_id(self.predecessor.clone())
            .signer_account_id(self.signer.clone())
            .signer_account_pk(self.key.clone())
            .attached_deposit(self.deposit)
            .block_timestamp(self.now)
            .account_balance(near(1_000_000))
            .prepaid_gas(Gas::from_tgas(300));
        b
    }
    /// Installs this context (logs start empty).
    pub fn set(self) {
        testing_env!(self.builder().build());
        LAST_CALL.with(|c| *c.borrow_mut() = Some(self));
    }
    /// Installs this context as a callback that received `results`.
    pub fn set_callback(self, results: Vec<near_sdk::PromiseResult>) {
        testing_env!(
            self.builder().build(),
            near_sdk::test_vm_config(),
            near_sdk::RuntimeFeesConfig::test(),
            Default::default(),
            results
        );
    }
}

/// Re-installs the last context with `input` as the raw call input.
fn with_input(input: String) {
    let call = LAST_CALL
        .with(|c| c.borrow().clone())
        .expect("a context was installed");
    Call {
        input: input.into_bytes(),
        ..call
    }
    .set();
}

/// The evidence-carrying methods read their JSON arguments from the raw input; these build
/// that input around bundle / evidence JSON text (which may be deliberately malformed).
pub trait JsonCalls {
    fn register_node_json(
        &mut self,
        bundle: String,
        details: Option<crate::NodeUpdate>,
    ) -> Result<NodeId, RegistryError>;
    fn reattest_json(&mut self, node_id: NodeId, bundle: String) -> Result<(), RegistryError>;
    /// `gpus` and `switches`: JSON arrays of evidence.
    fn add_gpu_json(
        &mut self,
        node_id: NodeId,
        gpus: String,
        switches: String,
    ) -> Result<AttestationProgress, RegistryError>;
}

impl JsonCalls for Registry {
    fn register_node_json(
        &mut self,
        bundle: String,
        details: Option<crate::NodeUpdate>,
    ) -> Result<NodeId, RegistryError> {
        let details = serde_json::to_string(&details).expect("details serialize");
        with_input(format!(r#"{{"bundle":{bundle},"details":{details}}}"#));
        self.try_register_node()
    }
    fn reattest_json(&mut self, node_id: NodeId, bundle: String) -> Result<(), RegistryError> {
        with_input(format!(r#"{{"node_id":"{node_id}","bundle":{bundle}}}"#));
        self.try_reattest()
    }
    fn add_gpu_json(
        &mut self,
        node_id: NodeId,
        gpus: String,
        switches: String,
    ) -> Result<AttestationProgress, RegistryError> {
        with_input(format!(
            r#"{{"node_id":"{node_id}","gpus":{gpus},"switches":{switches}}}"#
        ));
        self.try_add_gpu()
    }
}

/// Test policy: small stake, short intervals.
pub fn test_policy() -> Policy {
    Policy {
        min_stake: near(MIN_STAKE),
        heartbeat_interval_ns: U64(60 * SEC),
        missed_heartbeats: 3,
        attestation_lifetime_ns: U64(7 * DAY),
        unbonding_delay_ns: U64(DAY),
        ..Policy::default()
    }
}

/// Starts from an empty chain: a test may build several registries one after another.
pub fn fresh_chain() {
    near_sdk::mock::with_mocked_blockchain(|b| drop(b.take_storage()));
}

/// A registry on localnet with the test dev CA.
pub fn registry() -> Registry {
    fresh_chain();
    Call::by(owner()).set();
    let ca = PublicKey::from_parts(
        CurveType::ED25519,
        dev_ca().verifying_key().to_bytes().to_vec(),
    )
    .expect("ed25519");
    Registry::try_new(owner(), false, Some(ca), Some(test_policy())).expect("init")
}

pub fn stake(r: &mut Registry, who: AccountId, amount: NearToken) {
    Call::by(who).deposit(amount).set();
    r.try_deposit_stake().expect("stake");
}

/// A dev bundle binding `enclave_key` to `near_key`, signed by `ca`.
pub fn dev_bundle_with(
    ca: &SigningKey,
    enclave_key: [u8; 32],
    near_key: &PublicKey,
    expires_at_s: u64,
) -> String {
    let near = ed25519_bytes(near_key);
    let sig = ca.sign(&attestation::dev_attestation_message(
        &enclave_key,
        &near,
        expires_at_s,
    ));
    serde_json::json!({
        "version": 1,
        "kind": "dev",
        "enclave_key": hex::encode(enclave_key),
        "near_public_key": attestation::format_near_ed25519_key(&near),
        "dev": { "expires_at": expires_at_s, "signature": hex::encode(sig.to_bytes()) },
    })
    .to_string()
}

/// A dev bundle for the enclave with key seed `seed` (enclave key = [seed; 32]), valid long.
pub fn dev_bundle(seed: u8) -> String {
    dev_bundle_with(
        &dev_ca(),
        [seed; 32],
        &key(seed).1,
        T0 / SEC + 365 * 24 * 3600,
    )
}

/// Registers a dev node whose enclave key has seed `seed`, operated by `who`.
pub fn register_dev(r: &mut Registry, who: AccountId, seed: u8) -> NodeId {
    Call::by(who).key(key(seed).1).set();
    r.register_node_json(dev_bundle(seed), None)
        .expect("register")
}

/// A staked operator with one dev node (seed 1).
pub fn with_node() -> (Registry, NodeId) {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    let id = register_dev(&mut r, op(), 1);
    (r, id)
}

pub fn node(r: &Registry, id: NodeId) -> NodeView {
    r.get_node(id).expect("node exists")
}

pub fn status(r: &Registry, id: NodeId) -> NodeStatus {
    node(r, id).status
}

/// The registry events logged by the current context.
pub fn events() -> Vec<RegistryEvent> {
    get_logs()
        .iter()
        .filter_map(|l| match AnyEvent::parse(l).expect("well-formed event") {
            Some(AnyEvent::Registry(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// Everything observable, to prove a refused call changed nothing.
pub fn snapshot(r: &Registry) -> String {
    let ops: Vec<_> = [op(), acc("other.near")]
        .into_iter()
        .map(|a| r.get_operator(a))
        .collect();
    format!(
        "{:?}|{:?}|{:?}|{:?}",
        r.get_config(),
        ops,
        r.list_nodes(None, None, Some(100)),
        r.get_policy()
    )
}

/// Asserts `result` is the error `expected` (by message) and returns it.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    result: Result<T, RegistryError>,
    contains: &str,
) -> RegistryError {
    let err = result.expect_err("call must fail");
    assert!(
        err.to_string().contains(contains),
        "error '{err}' should contain '{contains}'"
    );
    err
}

/// Where the storage accounting stands: the contract's storage usage with every collection
/// flushed, and the bytes charged to the operators the tests use. The mocked chain restarts
/// `storage_usage` with every context, so compare marks taken in the same context only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageMark {
    pub usage: u64,
    pub charged: u64,
}

/// Flushes every collection of the registry (independently of the contract's own flushing,
/// so a collection the contract forgets shows up here) and reads the accounting.
pub fn storage_mark(r: &mut Registry) -> StorageMark {
    r.operators.flush();
    r.nodes.flush();
    r.node_by_signer_key.flush();
    r.gpu_owner.flush();
    r.credits.flush();
    r.pending.flush();
    r.node_switches.flush();
    // `cert_cache` (store::LookupSet) writes through: nothing to flush.
    let charged = [op(), acc("other.near")]
        .iter()
        .filter_map(|a| r.operators.get(a))
        .map(|o| o.storage_bytes)
        .sum();
    StorageMark {
        usage: near_sdk::env::storage_usage(),
        charged,
    }
}

/// The storage invariant (beside the marketplace's `funds()`): since `before` (same context),
/// the bytes charged to operators equal the change in the contract's storage usage, once every
/// pending write is flushed.
pub fn assert_storage_paid(r: &mut Registry, before: StorageMark, what: &str) {
    let after = storage_mark(r);
    let grown = i128::from(after.usage) - i128::from(before.usage);
    let charged = i128::from(after.charged) - i128::from(before.charged);
    assert_eq!(
        charged, grown,
        "{what}: operators were charged {charged} bytes, storage changed by {grown}"
    );
}

/// Runs `call` in the current context and checks the storage invariant around it.
pub fn paid<T>(r: &mut Registry, what: &str, call: impl FnOnce(&mut Registry) -> T) -> T {
    let before = storage_mark(r);
    let out = call(r);
    assert_storage_paid(r, before, what);
    out
}
