//! Results: verify the node's signature, settle in the same call, keep a receipt.
//!
//! A receipt that names the encrypted weights that answered keeps their hash beside it, in a
//! map under its own storage key (`receipt_weights`): the stored `Receipt` layout predates the
//! field, so adding it needed no state migration. The entry is part of what the settled job
//! leaves behind, paid from the job's storage deposit like the receipt (`retire_job`).
//! Receipts are never removed, so neither are their entries.

use near_sdk::collections::LookupMap;
use near_sdk::env;
use near_sdk::json_types::{Base64VecU8, U64};

use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::{Hash32, JobId, OutputRef, ReceiptSubject, ResultReceipt, Usage};

use crate::Marketplace;
use crate::errors::{MarketplaceError, Result};
use crate::governance::require_no_deposit;
use crate::payouts::EscrowRelease;
use crate::refs::{checked_hash, verify_node_signature};
use crate::settlement::{split, to_asset_units, usage_cost_yocto};
use crate::state::Receipt;
use crate::storage_keys::StorageKey;

/// The weights hash of each settled job whose receipt names one.
pub fn receipt_weights() -> LookupMap<JobId, Hash32> {
    LookupMap::new(StorageKey::ReceiptWeights)
}

impl Marketplace {
    pub(crate) fn try_submit_result(
        &mut self,
        job_id: JobId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
        weights_hash: Option<Hash32>,
    ) -> Result<Settlement> {
        require_no_deposit()?;
        let job = self
            .jobs
            .get(&job_id)
            .ok_or(MarketplaceError::JobNotFound(job_id))?;
        let claim = job.claim.clone().ok_or(MarketplaceError::WrongJobState {
            job_id,
            state: "open",
            expected: "claimed",
        })?;
        let now = env::block_timestamp();
        if now > job.deadline_ns.0 {
            return Err(MarketplaceError::DeadlinePassed {
                job_id,
                which: "deadline",
                deadline_ns: job.deadline_ns.0,
                now_ns: now,
            });
        }
        let output_hash = checked_hash("output", &output, self.config.max_inline_bytes)?;
        let signed = ResultReceipt {
            subject: ReceiptSubject::Job(job_id),
            model_id: job.model_id.clone(),
            input_hash: job.input_hash,
            output_hash,
            usage,
            weights_hash,
        };
        verify_node_signature(
            claim.node_id,
            &claim.signer_key,
            &claim.operator,
            &signed,
            signature.as_ref().map(|s| s.0.as_slice()),
        )?;

        let cost = to_asset_units(
            usage_cost_yocto(&usage, &claim.price),
            job.token_rate.as_ref(),
        );
        let settlement = split(
            job.price_cap.0,
            cost,
            self.config.protocol_fee_bps,
            self.config.royalty_bps,
        )?;
        let receipt = Receipt {
            job_id,
            user: job.user.clone(),
            node_id: claim.node_id,
            model_id: job.model_id.clone(),
            asset: job.asset.clone(),
            input_hash: job.input_hash,
            output_hash,
            usage,
            settlement: settlement.clone(),
            signature: signature.clone(),
            signer_key: claim.signer_key.clone(),
            settled_ns: U64(now),
            weights_hash,
        };
        let storage_refund = self.retire_job(&job, Some(&receipt))?;
        let mut payouts = Vec::new();
        let escrow = EscrowRelease {
            asset: &job.asset,
            amount: job.price_cap.0,
            model_id: &job.model_id,
            provider: &claim.operator,
            payer: &job.user,
        };
        self.book_split(escrow, &settlement, &mut payouts)?;
        self.return_storage(&job.user, storage_refund, job.storage_source, &mut payouts)?;
        MarketplaceEvent::JobSettled {
            job_id,
            node_id: claim.node_id,
            usage,
            output,
            input_hash: job.input_hash,
            output_hash,
            signature: signature.unwrap_or_else(|| Base64VecU8(Vec::new())),
            settlement: settlement.clone(),
            weights_hash,
        }
        .emit();
        self.pay(payouts)?;
        Ok(settlement)
    }
}
