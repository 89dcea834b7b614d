//! Read-only views with pagination.

use near_sdk::AccountId;
use near_sdk::collections::UnorderedSet;

use enclave_cloud_common::{JobId, NodeId};

use crate::Marketplace;
use crate::nodes::{check_eligible, target_admits};
use crate::state::{Job, JobStatus, JobView};

/// Most items one page returns.
pub const MAX_PAGE: u64 = 100;

fn page(from_index: Option<u64>, limit: Option<u64>, len: u64) -> std::ops::Range<u64> {
    let from = from_index.unwrap_or(0).min(len);
    let limit = limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    from..from.saturating_add(limit).min(len)
}

fn set_page(set: &UnorderedSet<JobId>, from_index: Option<u64>, limit: Option<u64>) -> Vec<JobId> {
    let ids = set.as_vector();
    page(from_index, limit, ids.len())
        .filter_map(|i| ids.get(i))
        .collect()
}

impl Marketplace {
    pub(crate) fn job_view(&self, job_id: JobId) -> Option<JobView> {
        if let Some(job) = self.jobs.get(&job_id) {
            return Some(if job.claim.is_some() {
                JobView::Claimed(job)
            } else {
                JobView::Open(job)
            });
        }
        self.receipts.get(&job_id).map(JobView::Settled)
    }

    fn views_of(&self, ids: Vec<JobId>) -> Vec<JobView> {
        ids.into_iter().filter_map(|id| self.job_view(id)).collect()
    }

    pub(crate) fn jobs_by_user_view(
        &self,
        user: AccountId,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_user
            .get(&user)
            .map_or_else(Vec::new, |set| self.views_of(set_page(&set, from, limit)))
    }

    pub(crate) fn jobs_by_node_view(
        &self,
        node_id: NodeId,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_node
            .get(&node_id)
            .map_or_else(Vec::new, |set| self.views_of(set_page(&set, from, limit)))
    }

    pub(crate) fn jobs_by_status_view(
        &self,
        status: JobStatus,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        let ids = match status {
            JobStatus::Open => set_page(&self.open_jobs, from, limit),
            JobStatus::Claimed => set_page(&self.claimed_jobs, from, limit),
            JobStatus::Settled => page(from, limit, self.settled_jobs.len())
                .filter_map(|i| self.settled_jobs.get(i))
                .collect(),
        };
        self.views_of(ids)
    }

    /// Pages through all open jobs and keeps those the node may claim; a page can therefore
    /// hold fewer than `limit` jobs even when more follow.
    pub(crate) fn open_jobs_for_node_view(
        &self,
        node_id: NodeId,
        from: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Job> {
        let now = near_sdk::env::block_timestamp();
        let node = self.nodes.get(&node_id).filter(|n| n.is_fresh(now));
        set_page(&self.open_jobs, from, limit)
            .into_iter()
            .filter_map(|id| self.jobs.get(&id))
            .filter(|job| now <= job.claim_deadline_ns.0)
            .filter(|job| match &node {
                Some(node) => check_eligible(job, node, now).is_ok(),
                None => target_admits(&job.target, node_id),
            })
            .collect()
    }
}
