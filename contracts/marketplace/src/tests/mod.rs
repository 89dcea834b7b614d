//! Unit tests on the mocked blockchain. The harness plays the chain: each call gets a fresh
//! context, failed calls are rolled back (as a receipt failure would), outgoing transfers are
//! taken off a modelled balance, and `check_funds` asserts the funds invariant after a step.

mod audit;
mod channels;
mod claims;
mod governance;
mod jobs;
mod model_royalties;
mod requests;
mod results;
mod royalties;

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::{Signer, SigningKey};
use near_sdk::borsh::{self, BorshDeserialize};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::mock::MockAction;
use near_sdk::test_utils::{VMContextBuilder, get_created_receipts, get_logs};
use near_sdk::{AccountId, CurveType, NearToken, PromiseResult, PublicKey, env};

use enclave_cloud_common::events::marketplace::{JobTarget, Settlement};
use enclave_cloud_common::events::{AnyEvent, MarketplaceEvent};
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{
    Asset, AttestationKind, GpuInfo, Hash32, InputRef, JobId, Measurements, ModelId, ModelPrice,
    NodeId, NodeStatus, ReceiptSubject, ResultReceipt, TcbStatus, Usage,
};

use crate::errors::MarketplaceError;
use crate::state::{JobSpec, Receipt as JobReceipt};
pub use crate::{Marketplace, MarketplaceViewApi};

pub const MARKET: &str = "market.near";
pub const OWNER: &str = "owner.near";
pub const REGISTRY: &str = "registry.near";
pub const TREASURY: &str = "treasury.near";
pub const USER: &str = "alice.near";
pub const OPERATOR: &str = "op.near";
pub const RELAYER: &str = "relayer.near";
pub const TOKEN: &str = "usdc.near";
pub const ROYALTY: &str = "royalty.near";

pub const NEAR: u128 = 10u128.pow(24);
pub const MILLI: u128 = 10u128.pow(21);
/// The contract's own funds; the surplus must stay at this (give or take yoctos).
pub const INITIAL_BALANCE: u128 = 50 * NEAR;
pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SECOND: u64 = 1_000_000_000;
pub const NODE: NodeId = NodeId(7);

pub fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

pub fn model() -> ModelId {
    "llama-3-8b".parse().unwrap()
}

pub fn node_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub fn near_key(key: &SigningKey) -> PublicKey {
    PublicKey::from_parts(CurveType::ED25519, key.verifying_key().to_bytes().to_vec()).unwrap()
}

pub fn sign(key: &SigningKey, receipt: &ResultReceipt) -> Base64VecU8 {
    Base64VecU8(key.sign(&receipt.signing_bytes()).to_bytes().to_vec())
}

pub fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: U64(input),
        output_tokens: U64(output),
    }
}

pub fn inline(bytes: &[u8]) -> InputRef {
    InputRef::Inline {
        ciphertext: Base64VecU8(bytes.to_vec()),
    }
}

pub fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(env::sha256_array(bytes))
}

/// 1 NEAR per million input tokens, 2 NEAR per million output tokens.
pub fn price() -> ModelPrice {
    ModelPrice {
        model_id: model(),
        input_per_million: U128(NEAR),
        output_per_million: U128(2 * NEAR),
    }
}

pub fn node_view(status: NodeStatus, expires_ns: u64) -> NodeView {
    NodeView {
        node_id: NODE,
        operator: acc(OPERATOR),
        status,
        kind: AttestationKind::Tdx,
        signer_key: near_key(&node_signing_key()),
        encryption_key: "ab".repeat(32),
        tcb_status: TcbStatus::UpToDate,
        measurements: Measurements::default(),
        gpus: vec![GpuInfo {
            model: "H100".into(),
            device_id: Hash32([9; 32]),
            driver_version: None,
            vbios_version: None,
        }],
        endpoint: None,
        region: Some("eu".into()),
        prices: vec![price()],
        capacity: 4,
        registered_at_ns: U64(T0),
        attestation_expires_at_ns: U64(expires_ns),
        last_heartbeat_ns: U64(T0),
    }
}

/// The model factory's listing of `model()`.
pub fn model_listing(
    status: enclave_cloud_common::interfaces::model_factory::ModelStatus,
    token: &str,
) -> enclave_cloud_common::interfaces::model_factory::ModelView {
    enclave_cloud_common::interfaces::model_factory::ModelView {
        model_id: model(),
        token: acc(token),
        owner: acc(USER),
        creator: acc(USER),
        created_at_ns: U64(T0),
        status,
        code: near_sdk::GlobalContractId::CodeHash(near_sdk::CryptoHash::default()),
    }
}

pub fn active_node() -> NodeView {
    node_view(NodeStatus::Active, T0 + 7 * 24 * 3600 * SECOND)
}

pub fn spec(cap: u128) -> JobSpec {
    JobSpec {
        model_id: model(),
        price_cap: U128(cap),
        deadline_ns: U64(T0 + 3600 * SECOND),
        claim_deadline_ns: None,
        target: JobTarget::Any {
            region: None,
            gpu_model: None,
            max_price_per_million: None,
        },
        input: inline(b"ciphertext for the node"),
        user_key: "cd".repeat(32),
    }
}

pub fn ok_result<T: near_sdk::serde::Serialize>(value: &T) -> PromiseResult {
    PromiseResult::Successful(near_sdk::serde_json::to_vec(value).unwrap())
}

/// One thing that left the contract in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outflow {
    Near {
        to: AccountId,
        amount: u128,
    },
    Call {
        to: AccountId,
        method: String,
        args: String,
        deposit: u128,
        /// Static gas attached.
        gas: near_sdk::Gas,
    },
}

pub struct Harness {
    pub contract: Marketplace,
    storage: HashMap<Vec<u8>, Vec<u8>>,
    /// Modelled NEAR balance of the marketplace account.
    pub balance: u128,
    /// Modelled token balances of the marketplace account, per token.
    pub ft: BTreeMap<AccountId, u128>,
    pub now: u64,
    /// What left the contract in the last call (transfers and calls to other accounts).
    pub outflows: Vec<Outflow>,
    /// Calls the last call scheduled on the marketplace itself (callbacks).
    pub self_calls: Vec<String>,
    /// Their JSON arguments.
    pub self_call_args: Vec<String>,
    /// Events of the last call.
    pub events: Vec<MarketplaceEvent>,
    pub logs: Vec<String>,
    signer_pk: Option<PublicKey>,
}

impl Harness {
    pub fn new() -> Self {
        let mut h = Self {
            contract: Marketplace::new(acc(OWNER), acc(REGISTRY), acc(TREASURY)),
            storage: HashMap::new(),
            balance: INITIAL_BALANCE,
            ft: BTreeMap::new(),
            now: T0,
            outflows: vec![],
            self_calls: vec![],
            self_call_args: vec![],
            events: vec![],
            logs: vec![],
            signer_pk: None,
        };
        // `Marketplace::new` above ran without a chain; give it one and configure it.
        h.install(OWNER, 0, vec![]);
        h.call(OWNER, 1, |c| {
            c.try_set_royalty_account(model(), Some(acc(ROYALTY)))
        })
        .unwrap();
        h.call(OWNER, 1, |c| {
            c.try_set_accepted_token(
                acc(TOKEN),
                Some(crate::state::TokenRate {
                    units_per_near: U128(3_000_000),
                }),
            )
        })
        .unwrap();
        h.balance = INITIAL_BALANCE;
        h
    }

    fn context(&self, predecessor: &str, deposit: u128) -> near_sdk::VMContext {
        let mut b = VMContextBuilder::new();
        b.current_account_id(acc(MARKET))
            .predecessor_account_id(acc(predecessor))
            .signer_account_id(acc(predecessor))
            .attached_deposit(NearToken::from_yoctonear(deposit))
            .account_balance(NearToken::from_yoctonear(self.balance + deposit))
            .block_timestamp(self.now)
            .storage_usage(100_000_000)
            .prepaid_gas(near_sdk::Gas::from_tgas(300));
        if let Some(pk) = &self.signer_pk {
            b.signer_account_pk(pk.clone());
        }
        b.build()
    }

    pub fn install(&mut self, predecessor: &str, deposit: u128, results: Vec<PromiseResult>) {
        let ctx = self.context(predecessor, deposit);
        env::set_blockchain_interface(near_sdk::MockedBlockchain::new(
            ctx,
            near_sdk::test_vm_config(),
            near_sdk::RuntimeFeesConfig::test(),
            results,
            self.storage.clone(),
            Default::default(),
            None,
        ));
    }

    /// Runs one function call as `predecessor` with `deposit` attached. An `Err` rolls the
    /// contract and its storage back, like a failed receipt.
    pub fn call_with<T>(
        &mut self,
        predecessor: &str,
        deposit: u128,
        results: Vec<PromiseResult>,
        f: impl FnOnce(&mut Marketplace) -> Result<T, MarketplaceError>,
    ) -> Result<T, MarketplaceError> {
        self.install(predecessor, deposit, results);
        let before = borsh::to_vec(&self.contract).unwrap();
        let result = f(&mut self.contract);
        match &result {
            Ok(_) => {
                self.storage = near_sdk::mock::with_mocked_blockchain(|b| b.take_storage());
                self.balance += deposit;
                self.record_outflows();
            }
            Err(_) => {
                self.contract = Marketplace::try_from_slice(&before).unwrap();
                self.outflows.clear();
                self.self_calls.clear();
                self.self_call_args.clear();
                self.events.clear();
                self.logs.clear();
            }
        }
        self.signer_pk = None;
        result
    }

    pub fn call<T>(
        &mut self,
        predecessor: &str,
        deposit: u128,
        f: impl FnOnce(&mut Marketplace) -> Result<T, MarketplaceError>,
    ) -> Result<T, MarketplaceError> {
        self.call_with(predecessor, deposit, vec![], f)
    }

    /// A callback: the contract calls itself, with the given promise results.
    pub fn callback<T>(
        &mut self,
        results: Vec<PromiseResult>,
        f: impl FnOnce(&mut Marketplace) -> T,
    ) -> T {
        self.call_with(MARKET, 0, results, |c| Ok(f(c))).unwrap()
    }

    /// The next call's transaction is signed with `key` (an access key of the predecessor).
    pub fn signed_with(&mut self, key: PublicKey) -> &mut Self {
        self.signer_pk = Some(key);
        self
    }

    fn record_outflows(&mut self) {
        self.outflows.clear();
        self.self_calls.clear();
        self.self_call_args.clear();
        for receipt in get_created_receipts() {
            for action in receipt.actions {
                match action {
                    MockAction::Transfer { deposit, .. } => {
                        let amount = deposit.as_yoctonear();
                        self.balance -= amount;
                        self.outflows.push(Outflow::Near {
                            to: receipt.receiver_id.clone(),
                            amount,
                        });
                    }
                    MockAction::FunctionCallWeight {
                        method_name,
                        args,
                        attached_deposit,
                        prepaid_gas,
                        ..
                    } => {
                        let method = String::from_utf8(method_name).unwrap();
                        let args = String::from_utf8(args).unwrap();
                        if receipt.receiver_id.as_str() == MARKET {
                            self.self_calls.push(method);
                            self.self_call_args.push(args);
                            continue;
                        }
                        let deposit = attached_deposit.as_yoctonear();
                        self.balance -= deposit;
                        // Tokens leave with the call; a refund comes back with `ft_refund`.
                        if method == "ft_transfer" || method == "ft_transfer_call" {
                            let v: near_sdk::serde_json::Value =
                                near_sdk::serde_json::from_str(&args).unwrap();
                            let amount: u128 = v["amount"].as_str().unwrap().parse().unwrap();
                            *self.ft.get_mut(&receipt.receiver_id).unwrap() -= amount;
                        }
                        self.outflows.push(Outflow::Call {
                            to: receipt.receiver_id.clone(),
                            method,
                            args,
                            deposit,
                            gas: prepaid_gas,
                        });
                    }
                    _ => {}
                }
            }
        }
        self.logs = get_logs();
        self.events = self
            .logs
            .iter()
            .filter_map(|l| match AnyEvent::parse(l).unwrap() {
                Some(AnyEvent::Marketplace(e)) => Some(e),
                _ => None,
            })
            .collect();
    }

    /// The payouts the last call handed to its `on_payouts` callback.
    pub fn payouts_of_last_call(&self) -> Vec<crate::state::Payout> {
        let index = self
            .self_calls
            .iter()
            .position(|m| m == "on_payouts")
            .expect("no payouts");
        let args: near_sdk::serde_json::Value =
            near_sdk::serde_json::from_str(&self.self_call_args[index]).unwrap();
        near_sdk::serde_json::from_value(args["payouts"].clone()).unwrap()
    }

    /// A NEAR transfer that bounced: the runtime refunds the amount to the contract.
    pub fn bounce(&mut self, amount: u128) {
        self.balance += amount;
    }

    /// `amount` of `token` refunded to the contract (an `ft_transfer_call` the receiver did
    /// not fully use, or that failed).
    pub fn ft_refund(&mut self, token: &str, amount: u128) {
        *self.ft.entry(acc(token)).or_default() += amount;
    }

    /// NEAR sent to `to` in the last call (transfers only).
    pub fn sent_near(&self, to: &str) -> u128 {
        self.outflows
            .iter()
            .map(|o| match o {
                Outflow::Near { to: t, amount } if t.as_str() == to => *amount,
                _ => 0,
            })
            .sum()
    }

    /// Calls to `method` made in the last call.
    pub fn calls(&self, method: &str) -> Vec<&Outflow> {
        self.outflows
            .iter()
            .filter(|o| matches!(o, Outflow::Call { method: m, .. } if m == method))
            .collect()
    }

    /// The funds invariant, recomputed from the records, and the modelled balances.
    pub fn check_funds(&mut self) {
        self.install(RELAYER, 0, vec![]);
        let report = self.contract.funds();
        assert!(report.balanced, "books do not balance: {report:#?}");
        self.check_storage_paid();
        assert_eq!(report.near_balance.0, self.balance);
        let surplus = report.near_surplus.0;
        assert!(
            surplus.abs_diff(INITIAL_BALANCE) <= 20,
            "the contract's own balance moved: {surplus} vs {INITIAL_BALANCE}; {report:#?}"
        );
        for funds in &report.assets {
            if let Asset::Ft { token } = &funds.asset {
                assert_eq!(
                    funds.ledger.held.0,
                    self.ft.get(token).copied().unwrap_or(0),
                    "{token}"
                );
            }
        }
    }

    /// Audit finding 7's invariant, beside `funds()`: every byte the marketplace stores for
    /// someone is paid for (the NEAR ledger's storage bucket: job deposits, storage balances,
    /// locked storage), except what it stores for itself by design: governance's settings
    /// (accepted tokens, royalty accounts, the timelock) and the credits that cannot pay for
    /// their entry (token credits, dust). Job deposits are upper bounds, so paid >= stored.
    fn check_storage_paid(&self) {
        use crate::storage::{RECORD_OVERHEAD_BYTES, bytes_cost};
        use crate::storage_keys::StorageKey;
        let prefix = |k: StorageKey| borsh::to_vec(&k).unwrap();
        let own = [
            prefix(StorageKey::AcceptedTokens),
            prefix(StorageKey::RoyaltyAccounts),
            prefix(StorageKey::Governance),
            // The channels' id counter and settings.
            prefix(StorageKey::ChannelBook),
        ];
        let credits = prefix(StorageKey::Credits);
        let locks = prefix(StorageKey::CreditLocks);
        // The credit a record of the credits map (an UnorderedMap: index `i`, keys `k`,
        // values `v`) belongs to, as its borsh key.
        let credit_of = |key: &[u8], value: &[u8]| -> Vec<u8> {
            let rest = &key[credits.len() + 1..];
            match key[credits.len()] {
                b'i' => rest.to_vec(),
                b'k' => value.to_vec(),
                _ => {
                    let mut k = credits.clone();
                    k.push(b'k');
                    k.extend_from_slice(rest);
                    self.storage.get(&k).cloned().unwrap_or_default()
                }
            }
        };
        let mut paid = 0u64;
        let mut own_bytes = 0u64;
        for (key, value) in &self.storage {
            let bytes = (key.len() + value.len()) as u64 + RECORD_OVERHEAD_BYTES;
            let self_paid = if own.iter().any(|p| key.starts_with(p)) {
                false
            } else if key.starts_with(&credits) {
                let mut lock = locks.clone();
                lock.extend(credit_of(key, value));
                self.storage.contains_key(&lock)
            } else {
                true
            };
            if self_paid {
                paid += bytes;
            } else {
                own_bytes += bytes;
            }
        }
        // What pays for stored bytes: the storage bucket without the storage balances' unspent
        // deposits (they pay for nothing yet).
        let unspent: u128 = self.contract.storage_balances.values().map(|b| b.0).sum();
        let bucket = self
            .contract
            .ledgers
            .get(&Asset::Near)
            .map_or(0, |l| l.storage.0)
            - unspent;
        assert!(
            bytes_cost(paid) <= bucket,
            "{paid} stored bytes cost {} but only {bucket} was paid for storage \
             ({own_bytes} bytes are the marketplace's own)",
            bytes_cost(paid)
        );
    }

    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    // ----- common steps -----

    /// Submits `spec` in NEAR with enough deposit; returns the job id.
    pub fn submit(&mut self, spec: JobSpec) -> JobId {
        let deposit = spec.price_cap.0 + self.storage_estimate();
        self.call(USER, deposit, |c| c.try_submit_job(spec))
            .unwrap()
    }

    pub fn storage_estimate(&mut self) -> u128 {
        self.install(USER, 0, vec![]);
        self.contract.job_storage_deposit(64).0
    }

    pub fn fund_storage(&mut self, who: &str, amount: u128) {
        self.call(who, amount, |c| c.try_storage_deposit(None))
            .unwrap();
    }

    /// `claim_job`: `Some(claimed)` when answered from the cache, `None` when the registry is
    /// asked.
    pub fn claim(
        &mut self,
        who: &str,
        deposit: u128,
        job_id: JobId,
        node_id: NodeId,
    ) -> Result<Option<bool>, MarketplaceError> {
        self.call(who, deposit, |c| {
            c.try_claim_job(job_id, node_id).map(|v| match v {
                near_sdk::PromiseOrValue::Value(v) => Some(v),
                near_sdk::PromiseOrValue::Promise(_) => None,
            })
        })
    }

    /// Claims `job_id` for NODE through the registry round trip.
    pub fn claim_via_registry(&mut self, job_id: JobId, view: &NodeView) -> bool {
        assert_eq!(
            self.claim(OPERATOR, 0, job_id, NODE).unwrap(),
            None,
            "expected a registry call"
        );
        assert_eq!(self.calls("get_node").len(), 1);
        self.callback(vec![ok_result(&Some(view.clone()))], |c| {
            c.on_node_for_claim(job_id, NODE, acc(OPERATOR), Ok(Some(view.clone())))
        })
    }

    /// `confirm_model(model())` by `who`, answered by the model factory `factory` with
    /// `answer`. Returns the callback's result.
    pub fn confirm_model(
        &mut self,
        who: &str,
        factory: &str,
        answer: Option<enclave_cloud_common::interfaces::model_factory::ModelView>,
    ) -> bool {
        use crate::ModelRoyaltyApi;
        self.call(who, 0, |c| {
            let _ = c.confirm_model(model());
            Ok::<_, MarketplaceError>(())
        })
        .unwrap();
        assert_eq!(self.calls("model").len(), 1, "the factory is asked");
        self.callback(vec![ok_result(&answer)], |c| {
            c.on_model_confirmed(model(), acc(factory), Ok(answer.clone()))
        })
    }

    /// Governance routes royalties by `factory`: the model's royalty account lifted, the
    /// factory set (royalties are fees until the model is confirmed).
    pub fn use_model_factory(&mut self, factory: &str) {
        self.call(OWNER, 1, |c| c.try_set_royalty_account(model(), None))
            .unwrap();
        let patch = crate::state::ConfigPatch {
            model_factory: Some(acc(factory)),
            ..Default::default()
        };
        self.call(OWNER, 1, |c| c.try_update_config(patch)).unwrap();
    }

    /// The factory `factory` confirms `model()` created, its token `<model>.<factory>`.
    pub fn confirm_created_model(&mut self, factory: &str) {
        let token = format!("{}.{factory}", model());
        let listing = model_listing(
            enclave_cloud_common::interfaces::model_factory::ModelStatus::Created,
            &token,
        );
        assert!(self.confirm_model(USER, factory, Some(listing)));
    }

    /// Submits, funds the operator's storage, and claims: the state most result tests start from.
    pub fn claimed_job(&mut self, cap: u128) -> JobId {
        let job_id = self.submit(spec(cap));
        self.fund_storage(OPERATOR, 100 * MILLI);
        assert!(self.claim_via_registry(job_id, &active_node()));
        job_id
    }

    pub fn receipt_for(&self, job_id: JobId, output: &[u8], usage: Usage) -> ResultReceipt {
        ResultReceipt {
            subject: ReceiptSubject::Job(job_id),
            model_id: model(),
            input_hash: sha256(b"ciphertext for the node"),
            output_hash: sha256(output),
            usage,
            weights_hash: None,
        }
    }

    pub fn settle(
        &mut self,
        job_id: JobId,
        output: &[u8],
        usage: Usage,
    ) -> Result<Settlement, MarketplaceError> {
        self.settle_with_weights(job_id, output, usage, None)
    }

    /// `settle` with the node's receipt naming `weights_hash`, relayed as signed.
    pub fn settle_with_weights(
        &mut self,
        job_id: JobId,
        output: &[u8],
        usage: Usage,
        weights_hash: Option<Hash32>,
    ) -> Result<Settlement, MarketplaceError> {
        let receipt = ResultReceipt {
            weights_hash,
            ..self.receipt_for(job_id, output, usage)
        };
        let signature = sign(&node_signing_key(), &receipt);
        self.call(RELAYER, 0, |c| {
            c.try_submit_result(job_id, inline(output), usage, Some(signature), weights_hash)
        })
    }

    pub fn stored_receipt(&mut self, job_id: JobId) -> Option<JobReceipt> {
        self.install(RELAYER, 0, vec![]);
        match self.contract.get_job(job_id) {
            Some(crate::state::JobView::Settled(r)) => Some(r),
            _ => None,
        }
    }
}
