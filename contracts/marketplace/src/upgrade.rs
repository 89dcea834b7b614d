//! Versioned state (the scheme of `enclave_cloud_common::state_version`): the stored struct
//! starts with its layout version; `migrate` reads it first and converts older layouts to the
//! current one.
//!
//! Version 2 (issue 15's audit): `Config` gained `min_answer_window_ns` and
//! `default_node_capacity`, the root gained `in_flight`, and `CachedNode` gained `capacity`,
//! so the node cache moved to a new prefix (`StorageKey::NodesV2`). Version 1's cache entries
//! cannot be enumerated to convert them: they stay where they are, unread; their storage stays
//! counted in `locked_storage` (the books balance), and each node is fetched from the registry
//! again on its next claim. Jobs claimed under version 1 were never counted in `in_flight`;
//! settling them frees nothing (`release_slot` never goes below zero).

use near_sdk::{env, near};

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::{MarketplaceError, Result, invalid};
use crate::state::Config;
use crate::storage_keys::StorageKey;
use crate::{Marketplace, STATE_VERSION};

/// Shadows of the layouts this code migrates from.
pub(crate) mod legacy {
    use std::collections::BTreeMap;

    use enclave_cloud_common::{Asset, JobId, ModelId, NodeId, RequestId};
    use near_sdk::collections::{LookupMap, UnorderedMap, UnorderedSet, Vector};
    use near_sdk::json_types::{U64, U128};
    use near_sdk::{AccountId, NearToken, near};

    use crate::state::{CreditKey, Job, Ledger, Receipt, Request, TokenRate};

    /// `Config` of layout version 1.
    #[near(serializers = [borsh])]
    #[derive(Clone)]
    pub struct ConfigV1 {
        pub owner: AccountId,
        pub registry: AccountId,
        pub treasury: AccountId,
        pub model_factory: Option<AccountId>,
        pub protocol_fee_bps: u16,
        pub royalty_bps: u16,
        pub max_inline_bytes: u32,
        pub claim_window_ns: U64,
        pub max_job_duration_ns: U64,
        pub node_cache_ttl_ns: U64,
        pub slash_amount: NearToken,
        pub paused: bool,
    }

    /// The root of layout version 1. `nodes` is kept only to read past it: its entries have
    /// version 1's `CachedNode` layout and are never read again.
    #[near(serializers = [borsh])]
    pub struct MarketplaceV1 {
        pub state_version: u16,
        pub config: ConfigV1,
        pub next_job_id: JobId,
        pub next_request_id: RequestId,
        pub jobs: LookupMap<JobId, Job>,
        pub open_jobs: UnorderedSet<JobId>,
        pub claimed_jobs: UnorderedSet<JobId>,
        pub receipts: LookupMap<JobId, Receipt>,
        pub settled_jobs: Vector<JobId>,
        pub jobs_by_user: LookupMap<AccountId, UnorderedSet<JobId>>,
        pub jobs_by_node: LookupMap<NodeId, UnorderedSet<JobId>>,
        pub nodes: LookupMap<NodeId, Vec<u8>>,
        pub requests: UnorderedMap<RequestId, Request>,
        pub credits: UnorderedMap<CreditKey, U128>,
        pub storage_balances: UnorderedMap<AccountId, U128>,
        pub accepted_tokens: UnorderedMap<AccountId, TokenRate>,
        pub royalty_accounts: LookupMap<ModelId, AccountId>,
        pub ledgers: BTreeMap<Asset, Ledger>,
        pub locked_storage: U128,
    }
}

impl From<legacy::ConfigV1> for Config {
    fn from(c: legacy::ConfigV1) -> Self {
        Self {
            model_factory: c.model_factory,
            protocol_fee_bps: c.protocol_fee_bps,
            royalty_bps: c.royalty_bps,
            max_inline_bytes: c.max_inline_bytes,
            claim_window_ns: c.claim_window_ns,
            max_job_duration_ns: c.max_job_duration_ns,
            node_cache_ttl_ns: c.node_cache_ttl_ns,
            slash_amount: c.slash_amount,
            paused: c.paused,
            // The new parameters start at their defaults.
            ..Config::new(c.owner, c.registry, c.treasury)
        }
    }
}

impl From<legacy::MarketplaceV1> for Marketplace {
    fn from(s: legacy::MarketplaceV1) -> Self {
        Self {
            state_version: STATE_VERSION,
            config: s.config.into(),
            next_job_id: s.next_job_id,
            next_request_id: s.next_request_id,
            jobs: s.jobs,
            open_jobs: s.open_jobs,
            claimed_jobs: s.claimed_jobs,
            receipts: s.receipts,
            settled_jobs: s.settled_jobs,
            jobs_by_user: s.jobs_by_user,
            jobs_by_node: s.jobs_by_node,
            nodes: near_sdk::collections::LookupMap::new(StorageKey::NodesV2),
            requests: s.requests,
            credits: s.credits,
            storage_balances: s.storage_balances,
            accepted_tokens: s.accepted_tokens,
            royalty_accounts: s.royalty_accounts,
            ledgers: s.ledgers,
            locked_storage: s.locked_storage,
            in_flight: near_sdk::collections::LookupMap::new(StorageKey::InFlight),
        }
    }
}

#[near]
impl Marketplace {
    /// The contract account itself (a deploy-and-call batch), no deposit: re-reads the stored
    /// state after a code upgrade, converting older layouts. Gas: 10 Tgas.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        Self::try_migrate().or_panic()
    }
}

impl Marketplace {
    pub(crate) fn try_migrate() -> Result<Self> {
        let raw =
            env::storage_read(STATE_KEY).ok_or_else(|| invalid("state", "no state to migrate"))?;
        match stored_version(&raw) {
            // The current layout: decoding it checks it is intact.
            Some(STATE_VERSION) => decode_exact(&raw).ok_or_else(|| {
                invalid("state", format!("version {STATE_VERSION} does not decode"))
            }),
            Some(1) => decode_exact::<legacy::MarketplaceV1>(&raw)
                .map(Self::from)
                .ok_or_else(|| invalid("state", "version 1 does not decode")),
            Some(other) => Err(MarketplaceError::InvalidArgument {
                field: "state",
                reason: format!(
                    "unknown state version {other} (this code knows up to {STATE_VERSION})"
                ),
            }),
            None => Err(invalid("state", "shorter than its version tag")),
        }
    }
}

#[cfg(test)]
mod state_schema {
    use std::path::Path;

    use enclave_cloud_common::state_version::schema::check;

    use super::*;
    use enclave_cloud_common::{JobId, ModelId, NodeId, RequestId};
    use near_sdk::AccountId;
    use near_sdk::collections::UnorderedSet;
    use near_sdk::json_types::U128;

    use crate::state::{CachedNode, CreditKey, Job, Receipt, Request, TokenRate};

    /// The stored layout: the root and the keys and values of its collections.
    type Stored<Root> = (
        Root,
        JobId,
        Job,
        Receipt,
        AccountId,
        UnorderedSet<JobId>,
        NodeId,
        CachedNode,
        RequestId,
        Request,
        CreditKey,
        U128,
        TokenRate,
        ModelId,
    );

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("state-schema")
    }

    /// A layout change without a new version (and a migration) fails here.
    #[test]
    fn the_stored_layout_is_the_one_recorded_for_its_version() {
        check::<Stored<Marketplace>>(&dir(), STATE_VERSION).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[cfg(test)]
mod migration {
    use enclave_cloud_common::NodeId;
    use near_sdk::borsh;

    use crate::state::CachedNode;

    use super::*;
    use crate::tests::*;

    fn cache_at(key: StorageKey) -> near_sdk::collections::LookupMap<NodeId, CachedNode> {
        near_sdk::collections::LookupMap::new(key)
    }

    /// What version 1 stored for `contract`: its fields in version 1's layout, the node cache
    /// under version 1's prefix.
    fn as_version_1(contract: &mut Marketplace) -> Vec<u8> {
        let v2_cache = std::mem::replace(&mut contract.nodes, cache_at(StorageKey::Nodes));
        let current = borsh::to_vec(&*contract).unwrap();
        contract.nodes = v2_cache;
        let config = borsh::to_vec(&contract.config).unwrap();
        let in_flight = borsh::to_vec(&contract.in_flight).unwrap();
        let c = contract.config.clone();
        let config_v1 = legacy::ConfigV1 {
            owner: c.owner,
            registry: c.registry,
            treasury: c.treasury,
            model_factory: c.model_factory,
            protocol_fee_bps: c.protocol_fee_bps,
            royalty_bps: c.royalty_bps,
            max_inline_bytes: c.max_inline_bytes,
            claim_window_ns: c.claim_window_ns,
            max_job_duration_ns: c.max_job_duration_ns,
            node_cache_ttl_ns: c.node_cache_ttl_ns,
            slash_amount: c.slash_amount,
            paused: c.paused,
        };
        let mut v1 = 1u16.to_le_bytes().to_vec();
        v1.extend(borsh::to_vec(&config_v1).unwrap());
        v1.extend(&current[2 + config.len()..current.len() - in_flight.len()]);
        v1
    }

    #[test]
    fn version_1_is_converted_with_its_jobs_funds_and_settings() {
        let mut h = Harness::new();
        let open = h.submit(spec(NEAR));
        let claimed = h.claimed_job(NEAR);
        h.call(OWNER, 1, |c| {
            c.try_update_config(crate::state::ConfigPatch {
                protocol_fee_bps: Some(300),
                ..Default::default()
            })
        })
        .unwrap();
        h.check_funds();

        h.install(MARKET, 0, vec![]);
        env::storage_write(STATE_KEY, &as_version_1(&mut h.contract));
        let migrated = Marketplace::try_migrate().unwrap();
        assert_eq!(migrated.state_version, STATE_VERSION);
        assert_eq!(migrated.config.protocol_fee_bps, 300);
        assert_eq!(
            migrated.config.min_answer_window_ns.0,
            Config::DEFAULT_MIN_ANSWER_WINDOW_NS
        );
        assert_eq!(
            migrated.config.default_node_capacity,
            Config::DEFAULT_NODE_CAPACITY
        );
        h.contract = migrated;
        h.check_funds();
        h.install(USER, 0, vec![]);
        assert!(matches!(
            h.contract.get_job(open),
            Some(crate::state::JobView::Open(_))
        ));
        // Version 1's cache entries are left behind: the cache lives under a new prefix.
        assert_eq!(
            borsh::to_vec(&h.contract.nodes).unwrap(),
            borsh::to_vec(&cache_at(StorageKey::NodesV2)).unwrap()
        );
        // A job claimed under version 1 settles; its node's slot count never goes negative.
        h.settle(claimed, b"answer", usage(10, 10)).unwrap();
        h.check_funds();

        h.install(MARKET, 0, vec![]);
        env::storage_write(STATE_KEY, &[9, 0, 1]);
        assert!(Marketplace::try_migrate().is_err());
    }
}
