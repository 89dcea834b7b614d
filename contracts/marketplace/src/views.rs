//! Read-only views with pagination.

use near_sdk::collections::UnorderedSet;
use near_sdk::json_types::U128;
use near_sdk::{AccountId, near};

use enclave_cloud_common::{Asset, JobId, ModelId, NodeId, RequestId};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::nodes::{check_eligible, target_admits};
use crate::state::{CachedNode, Config, CreditKey, Job, JobStatus, JobView, Request, TokenRate};
use crate::storage::job_storage_estimate;
use crate::{FundsReport, Marketplace, MarketplaceViewApi};

/// Most items one page returns.
pub const MAX_PAGE: u64 = 100;

pub(crate) fn page(from_index: Option<u64>, limit: Option<u64>, len: u64) -> std::ops::Range<u64> {
    let from = from_index.unwrap_or(0).min(len);
    let limit = limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    from..from.saturating_add(limit).min(len)
}

pub(crate) fn set_page<T: near_sdk::borsh::BorshSerialize + near_sdk::borsh::BorshDeserialize>(
    set: &UnorderedSet<T>,
    from_index: Option<u64>,
    limit: Option<u64>,
) -> Vec<T> {
    let ids = set.as_vector();
    page(from_index, limit, ids.len())
        .filter_map(|i| ids.get(i))
        .collect()
}

#[near]
impl MarketplaceViewApi for Marketplace {
    fn get_config(&self) -> Config {
        self.config.clone()
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    fn get_job(&self, job_id: JobId) -> Option<JobView> {
        if let Some(job) = self.jobs.get(&job_id) {
            return Some(if job.claim.is_some() {
                JobView::Claimed(job)
            } else {
                JobView::Open(job)
            });
        }
        self.receipts.get(&job_id).map(|mut receipt| {
            receipt.weights_hash = crate::results::receipt_weights().get(&job_id);
            JobView::Settled(receipt)
        })
    }

    fn jobs_by_user(
        &self,
        account_id: AccountId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_user
            .get(&account_id)
            .map_or_else(Vec::new, |set| {
                self.views_of(set_page(&set, from_index, limit))
            })
    }

    fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_node
            .get(&node_id)
            .map_or_else(Vec::new, |set| {
                self.views_of(set_page(&set, from_index, limit))
            })
    }

    fn jobs_by_status(
        &self,
        status: JobStatus,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        let ids = match status {
            JobStatus::Open => set_page(&self.open_jobs, from_index, limit),
            JobStatus::Claimed => set_page(&self.claimed_jobs, from_index, limit),
            JobStatus::Settled => page(from_index, limit, self.settled_jobs.len())
                .filter_map(|i| self.settled_jobs.get(i))
                .collect(),
        };
        self.views_of(ids)
    }

    /// Pages through all open jobs and keeps those the node may claim; a page can therefore
    /// hold fewer than `limit` jobs even when more follow.
    fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Job> {
        let now = near_sdk::env::block_timestamp();
        let node = self.nodes.get(&node_id).filter(|n| n.is_fresh(now));
        set_page(&self.open_jobs, from_index, limit)
            .into_iter()
            .filter_map(|id| self.jobs.get(&id))
            .filter(|job| now <= job.claim_deadline_ns.0)
            .filter(|job| match &node {
                Some(node) => check_eligible(job, node, now).is_ok(),
                None => target_admits(&job.target, node_id),
            })
            .collect()
    }

    fn get_request(&self, request_id: RequestId) -> Option<Request> {
        self.requests.get(&request_id)
    }

    fn get_cached_node(&self, node_id: NodeId) -> Option<CachedNode> {
        self.nodes.get(&node_id)
    }

    fn accepted_tokens(&self) -> Vec<(AccountId, TokenRate)> {
        self.accepted_tokens.to_vec()
    }

    fn royalty_account(&self, model_id: ModelId) -> Option<AccountId> {
        self.royalty_destination(&model_id)
            .map(|(account, _)| account)
    }

    fn credit_of(&self, account_id: AccountId, asset: Asset) -> U128 {
        self.credits
            .get(&CreditKey {
                account: account_id,
                asset,
            })
            .unwrap_or(U128(0))
    }

    fn storage_balance_of(&self, account_id: AccountId) -> U128 {
        self.storage_balances.get(&account_id).unwrap_or(U128(0))
    }

    fn job_storage_deposit(&self, input_bytes: u32) -> U128 {
        U128(job_storage_estimate(input_bytes))
    }

    fn request_deposit(&self, input_bytes: u32) -> U128 {
        U128(self.request_storage_estimate(input_bytes))
    }

    fn funds(&self) -> FundsReport {
        self.funds_report()
    }
}

impl Marketplace {
    fn views_of(&self, ids: Vec<JobId>) -> Vec<JobView> {
        ids.into_iter().filter_map(|id| self.get_job(id)).collect()
    }
}
