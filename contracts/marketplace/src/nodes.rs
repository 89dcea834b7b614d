//! Claims and the node cache: the registry is asked once per node, its answer is trusted
//! until the cache TTL or the node's attestation expiry, whichever comes first.

use near_sdk::borsh;
use near_sdk::json_types::U64;
use near_sdk::{AccountId, Promise, PromiseError, PromiseOrValue, env, near};

use enclave_cloud_common::events::marketplace::JobTarget;
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::{NodeView, ext_registry};
use enclave_cloud_common::{JobId, NodeId, NodeStatus};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::{MarketplaceError, Result};
use crate::funds::{dec, inc};
use crate::governance::require_no_deposit;
use crate::jobs::index_insert;
use crate::state::{CachedNode, Claim, Job, NodePrice};
use crate::storage::{RECORD_OVERHEAD_BYTES, StorageMeter, apply_delta, bytes_cost};
use crate::storage_keys::StorageKey;
use crate::{GAS_GET_NODE, GAS_ON_NODE, Marketplace, NodeCacheApi};

fn not_eligible(node_id: NodeId, reason: impl Into<String>) -> MarketplaceError {
    MarketplaceError::NodeNotEligible {
        node_id,
        reason: reason.into(),
    }
}

/// Whether the job's target admits the node, before anything about the node is known.
pub fn target_admits(target: &JobTarget, node_id: NodeId) -> bool {
    match target {
        JobTarget::Node { node_id: wanted } => *wanted == node_id,
        JobTarget::Any { .. } => true,
    }
}

/// Whether `node` may take `job` now; returns the price the job will be settled at.
pub fn check_eligible(job: &Job, node: &CachedNode, now_ns: u64) -> Result<NodePrice> {
    let node_id = node.node_id;
    if !node.is_fresh(now_ns) {
        return Err(MarketplaceError::NodeNotCached { node_id });
    }
    if !target_admits(&job.target, node_id) {
        return Err(not_eligible(
            node_id,
            format!("job {} is for another node", job.job_id),
        ));
    }
    let price = node
        .price_of(&job.model_id)
        .ok_or_else(|| MarketplaceError::ModelNotServed {
            node_id,
            model_id: job.model_id.clone(),
        })?;
    if let JobTarget::Any {
        region,
        gpu_model,
        max_price_per_million,
    } = &job.target
    {
        if let Some(region) = region
            && !node
                .region
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(region))
        {
            return Err(not_eligible(
                node_id,
                format!("region {:?} is not {region}", node.region),
            ));
        }
        if let Some(gpu) = gpu_model
            && !node.gpu_models.iter().any(|g| g.eq_ignore_ascii_case(gpu))
        {
            return Err(not_eligible(
                node_id,
                format!("no {gpu} GPU among {:?}", node.gpu_models),
            ));
        }
        // Every token of the job, input or output, is bounded by the filter: a node with a
        // modest output price and a huge input price would otherwise take the whole cap.
        let dearest = price.input_per_million.0.max(price.output_per_million.0);
        if let Some(max) = max_price_per_million
            && dearest > max.0
        {
            return Err(not_eligible(
                node_id,
                format!(
                    "price {dearest} per million (input or output) is above the cap {}",
                    max.0
                ),
            ));
        }
    }
    Ok(price)
}

#[near]
impl Marketplace {
    fn open_job(&self, job_id: JobId, now_ns: u64) -> Result<Job> {
        let job = self
            .jobs
            .get(&job_id)
            .ok_or(MarketplaceError::JobNotFound(job_id))?;
        if job.claim.is_some() {
            return Err(MarketplaceError::WrongJobState {
                job_id,
                state: "claimed",
                expected: "open",
            });
        }
        if now_ns > job.claim_deadline_ns.0 {
            return Err(MarketplaceError::DeadlinePassed {
                job_id,
                which: "claim deadline",
                deadline_ns: job.claim_deadline_ns.0,
                now_ns,
            });
        }
        Ok(job)
    }

    pub(crate) fn try_claim_job(
        &mut self,
        job_id: JobId,
        node_id: NodeId,
    ) -> Result<PromiseOrValue<bool>> {
        self.require_not_paused()?;
        require_no_deposit()?;
        let now = env::block_timestamp();
        let job = self.open_job(job_id, now)?;
        if !target_admits(&job.target, node_id) {
            return Err(not_eligible(
                node_id,
                format!("job {job_id} is for another node"),
            ));
        }
        let caller = env::predecessor_account_id();
        if let Some(node) = self.nodes.get(&node_id).filter(|n| n.is_fresh(now)) {
            self.claim_with(job, &node, &caller, now)?;
            return Ok(PromiseOrValue::Value(true));
        }
        let promise = ext_registry::ext(self.config.registry.clone())
            .with_static_gas(GAS_GET_NODE)
            .get_node(node_id)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_NODE)
                    .on_node_for_claim(job_id, node_id, caller),
            );
        Ok(PromiseOrValue::Promise(promise))
    }

    /// Callback of a claim that needed the registry. Never panics: the node cache keeps what
    /// the registry said, and a refused claim leaves the job open and logs why.
    #[private]
    pub fn on_node_for_claim(
        &mut self,
        job_id: JobId,
        node_id: NodeId,
        claimer: AccountId,
        #[callback_result] answer: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        let now = env::block_timestamp();
        let outcome = self
            .cache_from_registry(node_id, answer, now)
            .and_then(|node| self.open_job(job_id, now).map(|job| (job, node)))
            .and_then(|(job, node)| self.claim_with(job, &node, &claimer, now));
        match outcome {
            Ok(()) => true,
            Err(e) => {
                env::log_str(&format!(
                    "claim of job {job_id} by node {node_id} refused: {e}"
                ));
                false
            }
        }
    }

    /// Every check happens before the first write, so a refusal leaves no trace.
    fn claim_with(
        &mut self,
        mut job: Job,
        node: &CachedNode,
        caller: &AccountId,
        now: u64,
    ) -> Result<()> {
        if node.operator != *caller {
            return Err(MarketplaceError::NotNodeOperator {
                node_id: node.node_id,
                operator: node.operator.clone(),
                caller: caller.clone(),
            });
        }
        let price = check_eligible(&job, node, now)?;
        let job_id = job.job_id;
        let left = job.deadline_ns.0.saturating_sub(now);
        let window = self.config.min_answer_window_ns.0;
        if left < window {
            return Err(MarketplaceError::TooLateToClaim {
                job_id,
                left_ns: left,
                window_ns: window,
            });
        }
        let in_flight = self.in_flight.get(&node.node_id).unwrap_or(0);
        if in_flight >= node.capacity {
            return Err(MarketplaceError::NodeAtCapacity {
                node_id: node.node_id,
                in_flight,
                capacity: node.capacity,
            });
        }
        let meter = StorageMeter::start();
        self.in_flight.insert(&node.node_id, &(in_flight + 1));
        job.claim = Some(Claim {
            node_id: node.node_id,
            operator: node.operator.clone(),
            signer_key: node.signer_key.clone(),
            price,
            claimed_ns: U64(now),
        });
        self.jobs.insert(&job_id, &job);
        self.open_jobs.remove(&job_id);
        self.claimed_jobs.insert(&job_id);
        index_insert(
            &mut self.jobs_by_node,
            &node.node_id,
            StorageKey::NodeJobs {
                node_id: node.node_id,
            },
            job_id,
        );
        job.storage_bytes = U64(apply_delta(job.storage_bytes.0, meter.delta())?);
        self.jobs.insert(&job_id, &job);
        MarketplaceEvent::JobClaimed {
            job_id,
            node_id: node.node_id,
            operator: node.operator.clone(),
        }
        .emit();
        Ok(())
    }

    /// Callback of `refresh_node`. Private. Returns whether the node is now cached.
    #[private]
    pub fn on_node_refreshed(
        &mut self,
        node_id: NodeId,
        #[callback_result] answer: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        match self.cache_from_registry(node_id, answer, env::block_timestamp()) {
            Ok(_) => true,
            Err(e) => {
                env::log_str(&format!("node {node_id} not cached: {e}"));
                false
            }
        }
    }

    /// Turns the registry's answer into a cache entry (or an eviction). The entry's storage is
    /// paid from the operator's storage balance.
    pub(crate) fn cache_from_registry(
        &mut self,
        node_id: NodeId,
        answer: std::result::Result<Option<NodeView>, PromiseError>,
        now: u64,
    ) -> Result<CachedNode> {
        let view = match answer {
            Err(_) => return Err(MarketplaceError::RegistryCallFailed(node_id)),
            Ok(None) => {
                self.evict_node(node_id)?;
                return Err(MarketplaceError::NodeUnknown(node_id));
            }
            Ok(Some(view)) if view.node_id != node_id => {
                return Err(not_eligible(
                    node_id,
                    format!("the registry answered for node {}", view.node_id),
                ));
            }
            Ok(Some(view)) => view,
        };
        let expires = view.attestation_expires_at_ns.0;
        let refusal = if view.status != NodeStatus::Active {
            Some(format!("status is {:?}", view.status))
        } else if expires <= now {
            Some(format!("attestation expired at {expires} ns"))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.evict_node(node_id)?;
            return Err(not_eligible(node_id, reason));
        }
        let mut node = CachedNode {
            node_id,
            operator: view.operator,
            signer_key: view.signer_key,
            encryption_key: view.encryption_key,
            region: view.region,
            gpu_models: view.gpus.into_iter().map(|g| g.model).collect(),
            prices: view.prices,
            attestation_expires_ns: U64(expires),
            valid_until_ns: U64(now
                .saturating_add(self.config.node_cache_ttl_ns.0)
                .min(expires)),
            storage_bytes: U64(0),
            capacity: match view.capacity {
                0 => self.config.default_node_capacity,
                published => published,
            },
        };
        node.storage_bytes = U64(node_entry_bytes(&node));
        let old = self.nodes.get(&node_id);
        let old_bytes = old.as_ref().map_or(0, |n| n.storage_bytes.0);
        let new_bytes = node.storage_bytes.0;
        if new_bytes > old_bytes {
            let cost = bytes_cost(new_bytes - old_bytes);
            self.charge_storage_balance(&node.operator, cost)?;
            inc(&mut self.locked_storage, cost)?;
        } else if let Some(old) = &old {
            let refund = bytes_cost(old_bytes - new_bytes);
            dec(&mut self.locked_storage, refund)?;
            self.refund_storage_balance(&old.operator, refund);
        }
        self.nodes.insert(&node_id, &node);
        Ok(node)
    }

    /// Frees the slot a claimed job held on its node (settled or cancelled).
    pub(crate) fn release_slot(&mut self, node_id: NodeId) {
        match self.in_flight.get(&node_id) {
            Some(n) if n > 1 => {
                self.in_flight.insert(&node_id, &(n - 1));
            }
            // Jobs claimed before state version 2 were never counted: nothing to free.
            _ => {
                self.in_flight.remove(&node_id);
            }
        }
    }

    pub(crate) fn evict_node(&mut self, node_id: NodeId) -> Result<()> {
        if let Some(old) = self.nodes.remove(&node_id) {
            let refund = bytes_cost(old.storage_bytes.0);
            dec(&mut self.locked_storage, refund)?;
            self.refund_storage_balance(&old.operator, refund);
        }
        Ok(())
    }
}

/// Bytes a cache entry occupies: NEAR charges key + value + a fixed record overhead.
fn node_entry_bytes(node: &CachedNode) -> u64 {
    let key = borsh::to_vec(&StorageKey::NodesV2).map_or(0, |k| k.len()) + 8;
    let value = borsh::to_vec(node).map_or(0, |v| v.len());
    RECORD_OVERHEAD_BYTES + (key + value) as u64
}

#[near]
impl NodeCacheApi for Marketplace {
    fn refresh_node(&mut self, node_id: NodeId) -> Promise {
        ext_registry::ext(self.config.registry.clone())
            .with_static_gas(GAS_GET_NODE)
            .get_node(node_id)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_NODE)
                    .on_node_refreshed(node_id),
            )
    }
}
