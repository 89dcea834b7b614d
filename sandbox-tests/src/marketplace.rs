//! The marketplace suite's chain (`tests/marketplace.rs`): the real registry (a dev CA, nodes
//! registered with `dev` attestation bundles their enclave key signs), the marketplace, a plain
//! NEP-141 token (`contracts/examples/test-token`) and the example AI caller, all from the wasm
//! files `scripts/build-contracts.sh` writes to `$ECLOUD_WASM_DIR` (default
//! `$CARGO_TARGET_DIR/near`).

use anyhow::{Context, ensure};
use enclave_cloud_common::events::marketplace::JobTarget;
use enclave_cloud_common::interfaces::marketplace::methods::{
    CANCEL_JOB, CLAIM_JOB, CREDIT_OF, ClaimJobArgs, CreditArgs, FUNDS, GET_JOB, InputBytesArgs,
    JOB_STORAGE_DEPOSIT, JobArgs, NEW, RESPOND, RespondArgs, SET_ACCEPTED_TOKEN,
    SET_ROYALTY_ACCOUNT, STORAGE_DEPOSIT, SUBMIT_JOB, SUBMIT_RESULT, SetAcceptedTokenArgs,
    SetRoyaltyAccountArgs, StorageDepositArgs, SubmitJobArgs, SubmitResultArgs,
};
use enclave_cloud_common::interfaces::marketplace::{FundsReport, JobView, Ledger, TokenRate};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::NodeUpdate;
use enclave_cloud_common::interfaces::registry::methods as registry_methods;
use enclave_cloud_common::{
    Asset, Hash32, InputRef, JobId, JobSpec, ModelId, ModelPrice, NodeId, ReceiptSubject,
    RequestId, ResultReceipt, Usage,
};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_workspaces::network::Sandbox;
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{Gas, KeyType, NearToken, SecretKey};
use near_workspaces::{Account, AccountId, Contract, Worker};
use serde_json::{Value, json};

use crate::calls::{call, view};

/// The model every node of the suite serves.
pub const MODEL: &str = "llama-3-8b";
/// What the ineligible node serves instead.
pub const OTHER_MODEL: &str = "mistral-7b";
/// Node price per million input / output tokens, yoctoNEAR.
pub const PRICE_IN: u128 = NEAR;
pub const PRICE_OUT: u128 = 2 * NEAR;
pub const NEAR: u128 = 10u128.pow(24);
/// Token units per NEAR of the accepted token (18 decimals, one token per NEAR).
pub const TOKEN_UNITS_PER_NEAR: u128 = 10u128.pow(18);
pub const SEC: u64 = 1_000_000_000;

pub use crate::contract_wasm;

/// A registered node: its operator (a full-access account) and the enclave's ed25519 key, a
/// function-call key of the operator's account that signed the registration and signs results.
pub struct Node {
    pub id: NodeId,
    pub operator: Account,
    pub enclave_key: SecretKey,
}

impl Node {
    /// The node's ed25519 signature (base64) over a result receipt.
    pub fn sign(&self, receipt: &ResultReceipt) -> String {
        sign_receipt(&self.enclave_key, receipt)
    }
}

/// An ed25519 signature by `key` (base64) over `receipt`'s signing bytes.
pub fn sign_receipt(key: &SecretKey, receipt: &ResultReceipt) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(signature(key, receipt).0)
}

/// An ed25519 signature by `key` over `receipt`'s signing bytes, as the contracts take it.
pub fn signature(key: &SecretKey, receipt: &ResultReceipt) -> Base64VecU8 {
    let key = crate::crypto_key(key);
    match key.sign(&receipt.signing_bytes()) {
        near_crypto::Signature::ED25519(sig) => Base64VecU8(sig.to_bytes().to_vec()),
        other => unreachable!("an ed25519 key signs ed25519, got {other:?}"),
    }
}

pub fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(near_primitives::hash::hash(bytes).0)
}

/// An inline `InputRef`/`OutputRef`: `{"kind": "inline", "ciphertext": <base64>}` in JSON.
pub fn inline(bytes: &[u8]) -> InputRef {
    InputRef::Inline {
        ciphertext: Base64VecU8(bytes.to_vec()),
    }
}

pub fn model() -> ModelId {
    MODEL
        .parse()
        .unwrap_or_else(|e| unreachable!("{MODEL} is a model id: {e:?}"))
}

/// The receipt a node signs for a job or request.
pub fn result_receipt(
    subject: ReceiptSubject,
    input: &[u8],
    output: &[u8],
    usage: Usage,
) -> ResultReceipt {
    ResultReceipt {
        subject,
        model_id: model(),
        input_hash: sha256(input),
        output_hash: sha256(output),
        usage,
        weights_hash: None,
    }
}

pub fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    Usage {
        input_tokens: input_tokens.into(),
        output_tokens: output_tokens.into(),
    }
}

/// What `usage` costs at the suite's node price, yoctoNEAR (rounded down per part, as the
/// marketplace does).
pub fn cost_yocto(usage: &Usage) -> u128 {
    u128::from(usage.input_tokens.0) * PRICE_IN / 1_000_000
        + u128::from(usage.output_tokens.0) * PRICE_OUT / 1_000_000
}

/// A number sent as a JSON string (`U128`, `NearToken`, ids).
pub fn num(v: &Value) -> anyhow::Result<u128> {
    v.as_str()
        .with_context(|| format!("{v} is not a string number"))?
        .parse()
        .with_context(|| format!("{v} is not a number"))
}

/// Fails with the outcome's failures unless every receipt succeeded.
pub fn ok(outcome: ExecutionFinalResult) -> anyhow::Result<ExecutionFinalResult> {
    ensure!(
        outcome.is_success() && outcome.receipt_failures().is_empty(),
        "transaction failed: {:?}",
        outcome.failures()
    );
    Ok(outcome)
}

/// Fails with the outcome's failures unless every receipt succeeded.
pub fn succeeded(outcome: ExecutionFinalResult) -> anyhow::Result<()> {
    ok(outcome).map(drop)
}

/// Fails unless the transaction failed with a message containing `expected`.
pub fn refused(outcome: ExecutionFinalResult, expected: &str) -> anyhow::Result<()> {
    let failure = format!("{:?}", outcome.failures());
    ensure!(
        outcome.is_failure(),
        "expected a failure with '{expected}', got success"
    );
    ensure!(
        failure.contains(expected),
        "expected '{expected}' in {failure}"
    );
    Ok(())
}

/// The chain: registry, marketplace, token, AI caller and the accounts that use them.
pub struct Suite {
    pub worker: Worker<Sandbox>,
    pub root: Account,
    pub owner: Account,
    pub treasury: Account,
    pub royalty: Account,
    pub user: Account,
    pub relayer: Account,
    pub registry: Contract,
    pub market: Contract,
    pub token: Contract,
    pub caller: Contract,
    /// Serves `MODEL`.
    pub node: Node,
    /// Serves only `OTHER_MODEL`: ineligible for the suite's jobs.
    pub other_node: Node,
    dev_ca: SecretKey,
}

/// See [`Suite::payee_balances`].
pub struct PayeeBalances {
    operator: u128,
    royalty: u128,
}

impl Suite {
    /// The registry's development CA (its key signs `dev` attestations).
    pub fn dev_ca(&self) -> &SecretKey {
        &self.dev_ca
    }

    /// A fresh chain with everything deployed and configured, both nodes registered.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(crate::Build::Current).await
    }

    /// [`Suite::start`] with the registry and the marketplace of `build` (the example token
    /// and caller are always the current build's).
    pub async fn start_with(build: crate::Build) -> anyhow::Result<Self> {
        let worker = crate::sandbox().await?;
        let root = worker.root_account()?;
        let account = |name: &'static str, near: u128| {
            let root = root.clone();
            async move {
                root.create_subaccount(name)
                    .initial_balance(NearToken::from_near(near))
                    .transact()
                    .await?
                    .into_result()
                    .with_context(|| format!("create {name}"))
            }
        };
        let owner = account("owner", 50).await?;
        let treasury = account("treasury", 10).await?;
        let royalty = account("royalty", 10).await?;
        let user = account("alice", 100).await?;
        let relayer = account("relayer", 50).await?;
        let deploy = |name: &'static str, wasm: &'static str| {
            let account = account(name, 50);
            let ours = matches!(wasm, "registry" | "marketplace");
            async move {
                let code = if ours {
                    build.wasm(wasm)?
                } else {
                    contract_wasm(wasm)?
                };
                account
                    .await?
                    .deploy(&code)
                    .await?
                    .into_result()
                    .with_context(|| format!("deploy {wasm}"))
            }
        };
        let registry = deploy("registry", "registry").await?;
        let market = deploy("market", "marketplace").await?;
        let token = deploy("token", "test_token").await?;
        let caller = deploy("caller", "ai_caller").await?;

        let dev_ca = SecretKey::from_seed(KeyType::ED25519, "marketplace-suite-dev-ca");
        let registry_init = registry_methods::NewArgs::<Value> {
            owner: owner.id().clone(),
            mainnet: false,
            dev_ca_key: Some(dev_ca.public_key().to_string().parse()?),
            policy: None,
        };
        succeeded(
            call(
                registry.as_account(),
                registry.id(),
                registry_methods::NEW,
                &registry_init,
            )
            .transact()
            .await?,
        )?;
        let set_marketplace = registry_methods::SetMarketplaceArgs {
            marketplace: market.id().clone(),
        };
        succeeded(
            call(
                &owner,
                registry.id(),
                registry_methods::SET_MARKETPLACE,
                &set_marketplace,
            )
            .transact()
            .await?,
        )?;
        let market_init = enclave_cloud_common::interfaces::marketplace::methods::NewArgs {
            owner: owner.id().clone(),
            registry: registry.id().clone(),
            treasury: treasury.id().clone(),
        };
        succeeded(
            call(market.as_account(), market.id(), NEW, &market_init)
                .transact()
                .await?,
        )?;
        let royalty_account = SetRoyaltyAccountArgs {
            model_id: model(),
            account: Some(royalty.id().clone()),
        };
        succeeded(
            call(&owner, market.id(), SET_ROYALTY_ACCOUNT, &royalty_account)
                .transact()
                .await?,
        )?;
        let accept = SetAcceptedTokenArgs {
            token: token.id().clone(),
            rate: Some(TokenRate {
                units_per_near: U128(TOKEN_UNITS_PER_NEAR),
            }),
        };
        succeeded(
            call(&owner, market.id(), SET_ACCEPTED_TOKEN, &accept)
                .transact()
                .await?,
        )?;
        succeeded(token
            .call("new")
            .args_json(json!({ "owner": owner.id(), "symbol": "TST", "decimals": 18, "total_supply": (1_000 * TOKEN_UNITS_PER_NEAR).to_string() }))
            .transact()
            .await?)?;
        succeeded(
            caller
                .call("new")
                .args_json(json!({ "marketplace": market.id() }))
                .transact()
                .await?,
        )?;

        let mut suite = Self {
            node: Node {
                id: NodeId(0),
                operator: account("op", 300).await?,
                enclave_key: SecretKey::from_seed(KeyType::ED25519, "enclave-a"),
            },
            other_node: Node {
                id: NodeId(0),
                operator: account("op2", 300).await?,
                enclave_key: SecretKey::from_seed(KeyType::ED25519, "enclave-b"),
            },
            worker,
            root,
            owner,
            treasury,
            royalty,
            user,
            relayer,
            registry,
            market,
            token,
            caller,
            dev_ca,
        };
        suite.node.id = suite.register_node(&suite.node, MODEL).await?;
        suite.other_node.id = suite.register_node(&suite.other_node, OTHER_MODEL).await?;
        Ok(suite)
    }

    /// Stakes for the node's operator, adds the enclave key to the operator's account, and
    /// registers the node with a dev bundle (signed by the suite's dev CA) from the enclave key;
    /// the operator also funds a marketplace storage balance (the node cache entry).
    async fn register_node(&self, node: &Node, serves: &str) -> anyhow::Result<NodeId> {
        let near_key: [u8; 32] = node
            .enclave_key
            .public_key()
            .key_data()
            .try_into()
            .context("ed25519 public keys are 32 bytes")?;
        let details = NodeUpdate {
            endpoint: Some("https://node.example/v1".to_owned()),
            region: Some("eu-west".to_owned()),
            capacity: Some(4),
            prices: Some(vec![ModelPrice {
                model_id: serves
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{serves}: {e:?}"))?,
                input_per_million: U128(PRICE_IN),
                output_per_million: U128(PRICE_OUT),
            }]),
        };
        let (id, _enclave) = crate::dev_node::enroll(
            &self.worker,
            crate::dev_node::Enrolment {
                registry: self.registry.id(),
                operator: &node.operator,
                stake: NearToken::from_near(150),
                ca: &self.dev_ca,
                enclave_key: &node.enclave_key,
                // The enclave's x25519 key: any 32 bytes serve a dev node.
                tee_key: sha256(near_key.as_slice()).0,
                details: Some(details),
            },
        )
        .await?;
        succeeded(
            call(
                &node.operator,
                self.market.id(),
                STORAGE_DEPOSIT,
                &StorageDepositArgs::default(),
            )
            .deposit(NearToken::from_millinear(100))
            .transact()
            .await?,
        )?;
        Ok(id)
    }

    /// Sends the suite model's royalties to `ghost.<root>`, an account that does not exist:
    /// each royalty transfer then fails into a credit. Returns that account.
    pub async fn royalties_to_a_missing_account(&self) -> anyhow::Result<AccountId> {
        let ghost: AccountId = format!("ghost.{}", self.root.id()).parse()?;
        let to_ghost = SetRoyaltyAccountArgs {
            model_id: model(),
            account: Some(ghost.clone()),
        };
        succeeded(
            call(
                &self.owner,
                self.market.id(),
                SET_ROYALTY_ACCOUNT,
                &to_ghost,
            )
            .transact()
            .await?,
        )?;
        Ok(ghost)
    }

    /// A heartbeat of `node` to the registry, signed by its enclave key (after the chain's
    /// clock was moved past the heartbeat interval).
    pub async fn heartbeat(&self, node: &Node) -> anyhow::Result<()> {
        let enclave = Account::from_secret_key(
            node.operator.id().clone(),
            node.enclave_key.clone(),
            &self.worker,
        );
        succeeded(
            call(
                &enclave,
                self.registry.id(),
                registry_methods::HEARTBEAT,
                &registry_methods::NodeArgs { node_id: node.id },
            )
            .transact()
            .await?,
        )
    }

    /// The chain's clock: the latest block's timestamp.
    pub async fn now_ns(&self) -> anyhow::Result<u64> {
        Ok(self.worker.view_block().await?.timestamp())
    }

    /// The marketplace's `funds` report; fails unless it is balanced, and unless the
    /// marketplace's balance in every token equals what its ledger says it holds in it.
    pub async fn check_funds(&self, step: &str) -> anyhow::Result<FundsReport> {
        let report: FundsReport = self.view(FUNDS, &NoArgs {}).await?;
        ensure!(
            report.balanced,
            "after {step}: funds are not balanced: {report:#?}"
        );
        for asset in &report.assets {
            if let Asset::Ft { token } = &asset.asset {
                let held = asset.ledger.held.0;
                let balance = self.ft_balance(token, self.market.id()).await?;
                ensure!(
                    balance == held,
                    "after {step}: the marketplace holds {balance} of {token} but its ledger says {held}: {report:#?}"
                );
            }
        }
        Ok(report)
    }

    /// The ledger of `asset` (all zero if the marketplace never held it).
    pub async fn ledger(&self, asset: &Asset) -> anyhow::Result<Ledger> {
        let report: FundsReport = self.view(FUNDS, &NoArgs {}).await?;
        Ok(report
            .assets
            .into_iter()
            .find(|a| &a.asset == asset)
            .map(|a| a.ledger)
            .unwrap_or_default())
    }

    /// A marketplace view decoded into `T`.
    pub async fn view<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        args: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        view(&self.worker, self.market.id(), name, args).await
    }

    /// The NEAR balances a settlement pays into (the node's operator, the model's royalty
    /// account), taken before it to compare with [`Suite::check_near_payouts`].
    pub async fn payee_balances(&self) -> anyhow::Result<PayeeBalances> {
        Ok(PayeeBalances {
            operator: self.near_balance(self.node.operator.id()).await?,
            royalty: self.near_balance(self.royalty.id()).await?,
        })
    }

    /// After a settlement in NEAR: the operator received `provider`, the royalty account
    /// `royalty`, the fees ledger holds `fee` and nothing is left in escrow.
    pub async fn check_near_payouts(
        &self,
        before: &PayeeBalances,
        provider: u128,
        royalty: u128,
        fee: u128,
    ) -> anyhow::Result<()> {
        let now = self.payee_balances().await?;
        ensure!(
            now.operator - before.operator == provider,
            "operator received {}, expected {provider}",
            now.operator - before.operator
        );
        ensure!(
            now.royalty - before.royalty == royalty,
            "royalty account received {}, expected {royalty}",
            now.royalty - before.royalty
        );
        let ledger = self.ledger(&Asset::Near).await?;
        ensure!(
            ledger.fees.0 == fee,
            "fees ledger {}, expected {fee}",
            ledger.fees.0
        );
        ensure!(ledger.escrow.0 == 0, "{} left in escrow", ledger.escrow.0);
        Ok(())
    }

    pub async fn near_balance(&self, account: &AccountId) -> anyhow::Result<u128> {
        Ok(self
            .worker
            .view_account(account)
            .await?
            .balance
            .as_yoctonear())
    }

    /// `account`'s balance once nothing more is arriving: gas refunds of earlier transactions
    /// are receipts of their own that can land blocks after the transaction's outcome, so a
    /// balance read straight after one may still grow. Waits (a block at a time) until the
    /// balance is the same over three blocks.
    pub async fn settled_near_balance(&self, account: &AccountId) -> anyhow::Result<u128> {
        let mut last = self.near_balance(account).await?;
        let mut unchanged = 0;
        for _ in 0..60 {
            self.worker.fast_forward(1).await?;
            let now = self.near_balance(account).await?;
            if now == last {
                unchanged += 1;
                if unchanged == 3 {
                    return Ok(now);
                }
            } else {
                unchanged = 0;
                last = now;
            }
        }
        anyhow::bail!("the balance of {account} kept changing for 60 blocks")
    }

    pub async fn ft_balance(&self, token: &AccountId, account: &AccountId) -> anyhow::Result<u128> {
        let v: Value = self
            .worker
            .view(token, "ft_balance_of")
            .args_json(json!({ "account_id": account }))
            .await?
            .json()?;
        num(&v)
    }

    /// Registers `account` with the token (NEP-145, the minimum deposit).
    pub async fn register_on_token(&self, account: &AccountId) -> anyhow::Result<()> {
        succeeded(
            self.relayer
                .call(self.token.id(), "storage_deposit")
                .args_json(json!({ "account_id": account, "registration_only": true }))
                .deposit(NearToken::from_millinear(10))
                .transact()
                .await?,
        )?;
        Ok(())
    }

    /// The suite's token as an asset.
    pub fn token_asset(&self) -> Asset {
        Asset::Ft {
            token: self.token.id().clone(),
        }
    }

    /// `get_job`: the job or its receipt, `None` once gone (cancelled, or never there).
    pub async fn job(&self, job_id: JobId) -> anyhow::Result<Option<JobView>> {
        self.view(GET_JOB, &JobArgs { job_id }).await
    }

    pub async fn credit(&self, account: &AccountId, asset: &Asset) -> anyhow::Result<u128> {
        let args = CreditArgs {
            account_id: account.clone(),
            asset: asset.clone(),
        };
        let credit: U128 = self.view(CREDIT_OF, &args).await?;
        Ok(credit.0)
    }

    /// A job spec for `MODEL` open to any node, with `input` inline.
    pub fn job_spec(
        &self,
        price_cap: u128,
        input: &[u8],
        claim_deadline_ns: Option<u64>,
        deadline_ns: u64,
    ) -> JobSpec {
        JobSpec {
            model_id: model(),
            price_cap: U128(price_cap),
            deadline_ns: U64(deadline_ns),
            claim_deadline_ns: claim_deadline_ns.map(U64),
            target: JobTarget::Any {
                region: None,
                gpu_model: None,
                max_price_per_million: None,
            },
            input: inline(input),
            user_key: "cd".repeat(32),
        }
    }

    /// The user submits a NEAR-paid job (cap plus the storage estimate attached).
    pub async fn submit_near_job(&self, spec: &JobSpec, input_len: u32) -> anyhow::Result<JobId> {
        let storage: NearToken = self
            .view(
                JOB_STORAGE_DEPOSIT,
                &InputBytesArgs {
                    input_bytes: input_len,
                },
            )
            .await?;
        let deposit = spec.price_cap.0 + storage.as_yoctonear();
        let args = SubmitJobArgs { job: spec.clone() };
        let outcome = ok(call(&self.user, self.market.id(), SUBMIT_JOB, &args)
            .deposit(NearToken::from_yoctonear(deposit))
            .transact()
            .await?)?;
        gas_within("submit_job", &outcome, 10)?;
        Ok(outcome.json()?)
    }

    /// `who` claims `job_id` for node `node_id`, whatever comes of it.
    pub async fn try_claim(
        &self,
        who: &Account,
        job_id: JobId,
        node_id: NodeId,
    ) -> anyhow::Result<ExecutionFinalResult> {
        let args = ClaimJobArgs { job_id, node_id };
        Ok(call(who, self.market.id(), CLAIM_JOB, &args)
            .transact()
            .await?)
    }

    /// `node`'s operator claims `job_id`; returns the contract's answer (claimed or not).
    pub async fn claim(&self, node: &Node, job_id: JobId) -> anyhow::Result<bool> {
        let outcome = ok(self.try_claim(&node.operator, job_id, node.id).await?)?;
        gas_within("claim_job", &outcome, 20)?;
        Ok(outcome.json()?)
    }

    /// The relayer (anyone) asks to cancel `job_id`, with gas for a slash.
    pub async fn cancel(&self, job_id: JobId) -> anyhow::Result<ExecutionFinalResult> {
        Ok(call(
            &self.relayer,
            self.market.id(),
            CANCEL_JOB,
            &JobArgs { job_id },
        )
        .transact()
        .await?)
    }

    /// The relayer posts `node`'s result for `job_id`, signed with `key` (plain weights: the
    /// arguments without `weights_hash`, as before receipts named weights).
    pub async fn submit_result(
        &self,
        job_id: JobId,
        key: &SecretKey,
        input: &[u8],
        output: &[u8],
        used: Usage,
    ) -> anyhow::Result<ExecutionFinalResult> {
        self.submit_result_naming(job_id, key, input, output, used, None, None)
            .await
    }

    /// [`Self::submit_result`] with a receipt signed naming `signed_weights` and relayed
    /// naming `weights` (the same, unless a test plays a dishonest relayer).
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_result_naming(
        &self,
        job_id: JobId,
        key: &SecretKey,
        input: &[u8],
        output: &[u8],
        used: Usage,
        signed_weights: Option<Hash32>,
        weights: Option<Hash32>,
    ) -> anyhow::Result<ExecutionFinalResult> {
        let receipt = ResultReceipt {
            weights_hash: signed_weights,
            ..result_receipt(ReceiptSubject::Job(job_id), input, output, used)
        };
        let args = SubmitResultArgs {
            job_id,
            output: inline(output),
            usage: used,
            signature: Some(signature(key, &receipt)),
            weights_hash: weights,
        };
        Ok(call(&self.relayer, self.market.id(), SUBMIT_RESULT, &args)
            .transact()
            .await?)
    }

    /// The relayer posts `node`'s answer to an agent request.
    pub async fn respond(
        &self,
        request_id: RequestId,
        node: &Node,
        input: &[u8],
        output: &[u8],
        used: Usage,
    ) -> anyhow::Result<ExecutionFinalResult> {
        let receipt = result_receipt(ReceiptSubject::Request(request_id), input, output, used);
        let args = RespondArgs {
            request_id,
            node_id: node.id,
            output: inline(output),
            usage: used,
            signature: Some(signature(&node.enclave_key, &receipt)),
        };
        Ok(call(&self.relayer, self.market.id(), RESPOND, &args)
            .transact()
            .await?)
    }
}

/// Fails if the whole transaction burnt more than `budget_tgas`; prints what it burnt.
pub fn gas_within(
    what: &str,
    outcome: &ExecutionFinalResult,
    budget_tgas: u64,
) -> anyhow::Result<()> {
    let burnt = outcome.total_gas_burnt;
    println!(
        "gas {what}: {:.2} Tgas (budget {budget_tgas})",
        burnt.as_gas() as f64 / 1e12
    );
    ensure!(
        burnt <= Gas::from_tgas(budget_tgas),
        "{what} burnt {burnt} gas, over its {budget_tgas} Tgas budget"
    );
    Ok(())
}
