//! Submitting jobs (NEAR or token), cancelling them, and retiring their records.

use near_sdk::borsh::{BorshDeserialize, BorshSerialize};
use near_sdk::collections::{LookupMap, UnorderedSet};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, IntoStorageKey, NearToken, PromiseOrValue, env, near};

use enclave_cloud_common::events::marketplace::{CancelReason, JobTarget, Settlement};
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::ext_registry;
use enclave_cloud_common::{Asset, Hash32, JobId, NodeId, OrPanic, OutputRef, Usage};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::{MarketplaceError, Result, invalid};
use crate::funds::{dec, inc};
use crate::governance::require_one_yocto;
use crate::payouts::push_payout;
use crate::refs::{MAX_FILTER_LEN, check_user_key, checked_hash};
use crate::settlement::{YOCTO_PER_NEAR, mul_div};
use crate::state::{
    FtMessage, Job, JobSpec, Payout, PayoutKind, Receipt, StorageSource, TokenRate,
};
use crate::storage::{JOB_RESERVE_BYTES, StorageMeter, apply_delta, bytes_cost};
use crate::storage_keys::StorageKey;
use crate::{GAS_ON_SLASHED, GAS_SLASH, JobApi, Marketplace};

/// Adds `job_id` (a job or channel id) to the set of `key` in a per-key index.
pub fn index_insert<K: BorshSerialize, T: BorshSerialize + BorshDeserialize>(
    index: &mut LookupMap<K, UnorderedSet<T>>,
    key: &K,
    prefix: impl IntoStorageKey,
    job_id: T,
) {
    let mut set = index.get(key).unwrap_or_else(|| UnorderedSet::new(prefix));
    set.insert(&job_id);
    index.insert(key, &set);
}

/// Removes `job_id` from a per-key index, dropping the key's set when it empties (so the
/// storage of a cancelled job is freed completely).
pub fn index_remove<K: BorshSerialize, T: BorshSerialize + BorshDeserialize>(
    index: &mut LookupMap<K, UnorderedSet<T>>,
    key: &K,
    job_id: T,
) {
    let Some(mut set) = index.get(key) else {
        return;
    };
    set.remove(&job_id);
    if set.is_empty() {
        index.remove(key);
    } else {
        index.insert(key, &set);
    }
}

pub fn user_index_prefix(user: &AccountId) -> StorageKey {
    StorageKey::UserJobs {
        account_hash: env::sha256_array(user.as_bytes()),
    }
}

/// The stake to slash for a missed job: the configured amount, bounded by the job's price
/// cap in NEAR (a token cap converted at the job's rate, rounded down).
pub fn slash_for(slash_amount: NearToken, cap: u128, rate: Option<&TokenRate>) -> NearToken {
    let at_risk = match rate {
        None => cap,
        Some(rate) => mul_div(cap, YOCTO_PER_NEAR, rate.units_per_near.0).unwrap_or(u128::MAX),
    };
    NearToken::from_yoctonear(slash_amount.as_yoctonear().min(at_risk))
}

fn check_filter(field: &'static str, value: &Option<String>) -> Result<()> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_FILTER_LEN => Err(invalid(
            field,
            format!("must be 1..={MAX_FILTER_LEN} bytes, got {}", v.len()),
        )),
        _ => Ok(()),
    }
}

#[near]
impl Marketplace {
    pub(crate) fn try_submit_job(&mut self, spec: JobSpec) -> Result<JobId> {
        self.require_not_paused()?;
        let attached = env::attached_deposit().as_yoctonear();
        let cap = spec.price_cap.0;
        let user = env::predecessor_account_id();
        let (job_id, charge) = self.create_job(
            user.clone(),
            spec,
            Asset::Near,
            None,
            StorageSource::Attached,
        )?;
        let needed = cap
            .checked_add(charge)
            .ok_or(MarketplaceError::Overflow("price cap + storage"))?;
        let excess = attached
            .checked_sub(needed)
            .ok_or(MarketplaceError::InsufficientDeposit { attached, needed })?;
        let ledger = self.ledger_mut(&Asset::Near);
        inc(&mut ledger.held, attached)?;
        inc(&mut ledger.escrow, cap)?;
        inc(&mut ledger.storage, charge)?;
        self.pay(vec![Payout {
            account: user,
            asset: Asset::Near,
            amount: U128(excess),
            kind: PayoutKind::Transfer,
        }])?;
        Ok(job_id)
    }

    pub(crate) fn try_ft_on_transfer(
        &mut self,
        sender: AccountId,
        amount: U128,
        msg: String,
    ) -> Result<PromiseOrValue<U128>> {
        self.require_not_paused()?;
        let token = env::predecessor_account_id();
        let rate = self
            .accepted_tokens
            .get(&token)
            .ok_or_else(|| MarketplaceError::TokenNotAccepted(token.clone()))?;
        let spec = match near_sdk::serde_json::from_str(&msg)
            .map_err(|e| MarketplaceError::BadTransferMessage(e.to_string()))?
        {
            FtMessage::SubmitJob(spec) => spec,
            FtMessage::OpenChannel(spec) => {
                return self.try_ft_open_channel(sender, token, rate, amount, spec);
            }
            FtMessage::TopUpChannel { channel_id } => {
                self.try_top_up(channel_id, &sender, Asset::Ft { token }, amount.0)?;
                return Ok(PromiseOrValue::Value(U128(0)));
            }
        };
        let cap = spec.price_cap.0;
        let unused = amount.0.checked_sub(cap).ok_or_else(|| {
            invalid(
                "price_cap",
                format!("{cap} is more than the {} transferred", amount.0),
            )
        })?;
        let asset = Asset::Ft { token };
        let (_, charge) = self.create_job(
            sender.clone(),
            spec,
            asset.clone(),
            Some(rate),
            StorageSource::Balance,
        )?;
        self.charge_storage_balance(&sender, charge)?;
        let ledger = self.ledger_mut(&asset);
        inc(&mut ledger.held, cap)?;
        inc(&mut ledger.escrow, cap)?;
        Ok(PromiseOrValue::Value(U128(unused)))
    }

    /// Validates `spec`, stores the job and its index entries, and returns the job id and the
    /// storage deposit it needs (its measured bytes plus the reserve for claim and receipt).
    fn create_job(
        &mut self,
        user: AccountId,
        spec: JobSpec,
        asset: Asset,
        token_rate: Option<TokenRate>,
        storage_source: StorageSource,
    ) -> Result<(JobId, u128)> {
        let now = env::block_timestamp();
        if spec.price_cap.0 == 0 {
            return Err(MarketplaceError::ZeroPriceCap);
        }
        // Every claim leaves the node at least the answer window before the deadline, so no
        // job can be set up to be missed (and its node slashed) whoever claims it.
        let window = self.config.min_answer_window_ns.0;
        let deadline = spec.deadline_ns.0;
        let earliest = now.saturating_add(window);
        let latest = now.saturating_add(self.config.max_job_duration_ns.0);
        if deadline <= earliest || deadline > latest {
            return Err(invalid(
                "deadline_ns",
                format!(
                    "{deadline} must be in ({earliest}, {latest}]: more than the answer window \
                     of {window} ns from now"
                ),
            ));
        }
        let last_claim = deadline - window;
        let claim_deadline = spec.claim_deadline_ns.map_or(
            now.saturating_add(self.config.claim_window_ns.0)
                .min(last_claim),
            |d| d.0,
        );
        if claim_deadline <= now || claim_deadline > last_claim {
            return Err(invalid(
                "claim_deadline_ns",
                format!(
                    "{claim_deadline} must be in ({now}, {last_claim}]: the deadline minus the \
                     answer window of {window} ns"
                ),
            ));
        }
        if let JobTarget::Any {
            region, gpu_model, ..
        } = &spec.target
        {
            check_filter("target.region", region)?;
            check_filter("target.gpu_model", gpu_model)?;
        }
        check_user_key(&spec.user_key)?;
        let input_hash = checked_hash("input", &spec.input, self.config.max_inline_bytes)?;

        let job_id = self.next_job_id;
        self.next_job_id = job_id.next();
        let mut job = Job {
            job_id,
            user: user.clone(),
            model_id: spec.model_id,
            asset,
            token_rate,
            price_cap: spec.price_cap,
            storage_deposit: NearToken::from_yoctonear(0),
            storage_source,
            storage_bytes: U64(0),
            created_ns: U64(now),
            claim_deadline_ns: U64(claim_deadline),
            deadline_ns: U64(deadline),
            target: spec.target,
            input: spec.input,
            input_hash,
            user_key: spec.user_key,
            claim: None,
        };
        let meter = StorageMeter::start();
        self.jobs.insert(&job_id, &job);
        self.open_jobs.insert(&job_id);
        index_insert(
            &mut self.jobs_by_user,
            &user,
            user_index_prefix(&user),
            job_id,
        );
        let bytes = apply_delta(0, meter.delta())?;
        let charge = bytes_cost(bytes.saturating_add(JOB_RESERVE_BYTES));
        // Same encoded size: the two fixed-width fields only change value.
        job.storage_bytes = U64(bytes);
        job.storage_deposit = NearToken::from_yoctonear(charge);
        self.jobs.insert(&job_id, &job);

        MarketplaceEvent::JobSubmitted {
            job_id,
            user,
            model_id: job.model_id,
            asset: job.asset,
            price_cap: job.price_cap,
            claim_deadline_ns: job.claim_deadline_ns,
            deadline_ns: job.deadline_ns,
            target: job.target,
            input: job.input,
            user_key: job.user_key,
        }
        .emit();
        Ok((job_id, charge))
    }

    pub(crate) fn try_cancel_job(&mut self, job_id: JobId) -> Result<()> {
        let job = self
            .jobs
            .get(&job_id)
            .ok_or(MarketplaceError::JobNotFound(job_id))?;
        let now = env::block_timestamp();
        let caller = env::predecessor_account_id();
        let attached = env::attached_deposit();
        let reason = match &job.claim {
            None if now > job.claim_deadline_ns.0 => CancelReason::Unclaimed,
            None if caller == job.user => {
                require_one_yocto()?;
                CancelReason::ByUser
            }
            None => {
                return Err(MarketplaceError::NotCancellable {
                    job_id,
                    reason: "it is open until its claim deadline; only its user may cancel it before",
                });
            }
            Some(_) if now > job.deadline_ns.0 => CancelReason::DeadlineMissed,
            Some(_) => {
                return Err(MarketplaceError::NotCancellable {
                    job_id,
                    reason: "it is claimed and its deadline has not passed",
                });
            }
        };
        // One yoctoNEAR is tolerated (it joins the contract's own balance); more would strand.
        if attached > NearToken::from_yoctonear(1) {
            return Err(MarketplaceError::UnexpectedDeposit(attached));
        }

        let storage_refund = self.retire_job(&job, None)?;
        let cap = job.price_cap.0;
        dec(&mut self.ledger_mut(&job.asset).escrow, cap)?;
        let mut payouts = Vec::new();
        push_payout(
            &mut payouts,
            Payout {
                account: job.user.clone(),
                asset: job.asset.clone(),
                amount: U128(cap),
                kind: PayoutKind::Transfer,
            },
        );
        self.return_storage(&job.user, storage_refund, job.storage_source, &mut payouts)?;
        self.pay(payouts)?;

        match (reason, &job.claim) {
            (CancelReason::DeadlineMissed, Some(claim)) => {
                // The node answers to the registry again before its next claim: the slash may
                // leave it under-staked.
                self.evict_node(claim.node_id)?;
                // The user is compensated up to what the job put at risk, so a cheap job
                // aimed at a node can never earn its user the whole `slash_amount`.
                let slash = slash_for(self.config.slash_amount, cap, job.token_rate.as_ref());
                // The event waits for the registry's answer, so it reports what was slashed.
                let _ = ext_registry::ext(self.config.registry.clone())
                    .with_static_gas(GAS_SLASH)
                    .slash(claim.node_id, slash, job.user.clone())
                    .then(
                        Self::ext(env::current_account_id())
                            .with_static_gas(GAS_ON_SLASHED)
                            .on_slashed(job_id, U128(cap)),
                    );
            }
            _ => MarketplaceEvent::JobCancelled {
                job_id,
                reason,
                refund: U128(cap),
                slashed: None,
            }
            .emit(),
        }
        Ok(())
    }

    /// Callback of a deadline-missed cancel: records what the registry slashed. Private.
    #[private]
    pub fn on_slashed(
        &mut self,
        job_id: JobId,
        refund: U128,
        #[callback_result] slashed: Result<NearToken, near_sdk::PromiseError>,
    ) {
        let slashed = match slashed {
            Ok(amount) => Some(U128(amount.as_yoctonear())),
            Err(_) => {
                env::log_str(&format!("the registry refused to slash for job {job_id}"));
                None
            }
        };
        MarketplaceEvent::JobCancelled {
            job_id,
            reason: CancelReason::DeadlineMissed,
            refund,
            slashed,
        }
        .emit();
    }

    /// Removes a finished job's records (keeping `receipt`, its weights hash if it names one,
    /// and the index entries that point at it, if settled) and returns the storage deposit to
    /// give back. What the job still occupies is paid from its deposit and locked for good.
    pub(crate) fn retire_job(&mut self, job: &Job, receipt: Option<&Receipt>) -> Result<u128> {
        let meter = StorageMeter::start();
        self.jobs.remove(&job.job_id);
        self.open_jobs.remove(&job.job_id);
        self.claimed_jobs.remove(&job.job_id);
        if let Some(claim) = &job.claim {
            self.release_slot(claim.node_id);
        }
        match receipt {
            Some(receipt) => {
                self.receipts.insert(&job.job_id, receipt);
                // Inside the meter: the entry is paid like the receipt it belongs to.
                if let Some(weights) = &receipt.weights_hash {
                    crate::results::receipt_weights().insert(&job.job_id, weights);
                }
                self.settled_jobs.push(&job.job_id);
            }
            None => {
                index_remove(&mut self.jobs_by_user, &job.user, job.job_id);
                if let Some(claim) = &job.claim {
                    index_remove(&mut self.jobs_by_node, &claim.node_id, job.job_id);
                }
            }
        }
        let delta = meter.delta();
        let (remaining, released) = match job.storage_bytes.0.checked_add_signed(delta) {
            Some(remaining) => (remaining, 0),
            // The job freed more than it was charged: it was the last entry of an index set
            // (a user's or a node's jobs) whose header an earlier job paid for and locked
            // when it retired. That lock is released with this job's refund.
            None => {
                let extra = delta.unsigned_abs().saturating_sub(job.storage_bytes.0);
                (0, bytes_cost(extra).min(self.locked_storage.0))
            }
        };
        let paid = job.storage_deposit.as_yoctonear();
        // The reserve is sized so the receipt always fits (tested with the longest account
        // ids); should it ever not, the contract's own balance covers the difference rather
        // than blocking the settlement.
        let keep = bytes_cost(remaining).min(paid);
        // Locked storage stays inside the ledger's storage bucket: only the refund leaves it.
        inc(&mut self.locked_storage, keep)?;
        dec(&mut self.locked_storage, released)?;
        Ok(paid - keep + released)
    }
}

#[near]
impl JobApi for Marketplace {
    #[payable]
    fn submit_job(&mut self, job: JobSpec) -> JobId {
        self.try_submit_job(job).or_panic()
    }

    fn ft_on_transfer(
        &mut self,
        sender_id: AccountId,
        amount: U128,
        msg: String,
    ) -> PromiseOrValue<U128> {
        self.try_ft_on_transfer(sender_id, amount, msg).or_panic()
    }

    fn claim_job(&mut self, job_id: JobId, node_id: NodeId) -> PromiseOrValue<bool> {
        self.try_claim_job(job_id, node_id).or_panic()
    }

    fn submit_result(
        &mut self,
        job_id: JobId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
        weights_hash: Option<Hash32>,
    ) -> Settlement {
        self.try_submit_result(job_id, output, usage, signature, weights_hash)
            .or_panic()
    }

    #[payable]
    fn cancel_job(&mut self, job_id: JobId) {
        self.try_cancel_job(job_id).or_panic()
    }
}
