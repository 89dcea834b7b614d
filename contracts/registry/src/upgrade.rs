//! State migration (the scheme of `enclave_cloud_common::state_version`): the stored root
//! starts with its layout version and `migrate` converts older layouts to the current one.
//!
//! Version 1 was stored as the enum `Registry::V1(StateV1)` (borsh tag 0, then the fields);
//! version 2 is the same fields behind the `u16` layout version every contract now uses.
//! Version 3 (GPU binding, issue 16) drops the set of used GPU nonces from the root (its
//! entries stay under their reserved prefix), adds the pending attestations and the nodes'
//! NVSwitches, and the policy's `challenge_lifetime_ns` (default one hour).

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};
use near_sdk::{env, near};

use near_sdk::store::LookupMap;

use crate::errors::{RegistryError, Result};
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{Registry, STATE_VERSION};
use crate::storage_keys::StorageKey;

/// Shadows of the layouts this code migrates from.
pub(crate) mod legacy {
    use near_sdk::store::{LookupMap, LookupSet};
    use near_sdk::{AccountId, NearToken, PublicKey, near};

    use enclave_cloud_common::{Hash32, NodeId};

    use enclave_cloud_common::interfaces::registry::{
        DEFAULT_CHALLENGE_LIFETIME_NS, GpuPolicy, PlatformMeasurements, TcbGrace,
    };
    use near_sdk::json_types::U64;

    use crate::state::{Node, Operator};

    /// The policy of versions 1 and 2 (no `challenge_lifetime_ns`). Named `Policy` like the
    /// type it shadows, so its recorded schema is the one those versions stored.
    #[near(serializers = [borsh])]
    pub struct Policy {
        pub platforms: Vec<PlatformMeasurements>,
        pub compose_hashes: Vec<Hash32>,
        pub image_digests: Vec<Hash32>,
        pub image_digest_event: String,
        pub tcb_grace: Vec<TcbGrace>,
        pub attestation_lifetime_ns: U64,
        pub heartbeat_interval_ns: U64,
        pub missed_heartbeats: u32,
        pub min_stake: NearToken,
        pub unbonding_delay_ns: U64,
        pub gpu: GpuPolicy,
        pub dev_mode: bool,
        pub dev_ca_key: Option<PublicKey>,
    }

    impl From<Policy> for crate::policy::Policy {
        fn from(p: Policy) -> Self {
            Self {
                platforms: p.platforms,
                compose_hashes: p.compose_hashes,
                image_digests: p.image_digests,
                image_digest_event: p.image_digest_event,
                tcb_grace: p.tcb_grace,
                attestation_lifetime_ns: p.attestation_lifetime_ns,
                heartbeat_interval_ns: p.heartbeat_interval_ns,
                missed_heartbeats: p.missed_heartbeats,
                min_stake: p.min_stake,
                unbonding_delay_ns: p.unbonding_delay_ns,
                gpu: p.gpu,
                dev_mode: p.dev_mode,
                dev_ca_key: p.dev_ca_key,
                challenge_lifetime_ns: U64(DEFAULT_CHALLENGE_LIFETIME_NS),
            }
        }
    }

    /// Layout version 2: the version number, then the fields of version 1 (named `Registry`
    /// like the root it shadows).
    #[near(serializers = [borsh])]
    pub struct Registry {
        pub state_version: u16,
        pub owner: AccountId,
        pub mainnet: bool,
        pub dev_mode_available: bool,
        pub marketplace: Option<AccountId>,
        pub policy: Policy,
        pub operators: LookupMap<AccountId, Operator>,
        pub nodes: LookupMap<NodeId, Node>,
        pub next_node_id: NodeId,
        pub node_by_signer_key: LookupMap<PublicKey, NodeId>,
        pub gpu_owner: LookupMap<Hash32, NodeId>,
        pub used_gpu_nonces: LookupSet<[u8; 32]>,
        pub cert_cache: LookupSet<[u8; 32]>,
        pub credits: LookupMap<AccountId, NearToken>,
    }

    impl From<StateV1> for Registry {
        fn from(s: StateV1) -> Self {
            Self {
                state_version: 2,
                owner: s.owner,
                mainnet: s.mainnet,
                dev_mode_available: s.dev_mode_available,
                marketplace: s.marketplace,
                policy: s.policy,
                operators: s.operators,
                nodes: s.nodes,
                next_node_id: s.next_node_id,
                node_by_signer_key: s.node_by_signer_key,
                gpu_owner: s.gpu_owner,
                used_gpu_nonces: s.used_gpu_nonces,
                cert_cache: s.cert_cache,
                credits: s.credits,
            }
        }
    }

    /// Layout version 1: the state was the enum's only variant.
    #[near(serializers = [borsh])]
    pub enum RegistryV1 {
        V1(StateV1),
    }

    /// The fields of version 1, in their order.
    #[near(serializers = [borsh])]
    pub struct StateV1 {
        pub owner: AccountId,
        pub mainnet: bool,
        pub dev_mode_available: bool,
        pub marketplace: Option<AccountId>,
        pub policy: Policy,
        pub operators: LookupMap<AccountId, Operator>,
        pub nodes: LookupMap<NodeId, Node>,
        pub next_node_id: NodeId,
        pub node_by_signer_key: LookupMap<PublicKey, NodeId>,
        pub gpu_owner: LookupMap<Hash32, NodeId>,
        pub used_gpu_nonces: LookupSet<[u8; 32]>,
        pub cert_cache: LookupSet<[u8; 32]>,
        pub credits: LookupMap<AccountId, NearToken>,
    }
}

impl From<legacy::Registry> for Registry {
    /// `used_gpu_nonces` is dropped: its entries stay under the reserved prefix, unread.
    fn from(s: legacy::Registry) -> Self {
        Self {
            state_version: STATE_VERSION,
            owner: s.owner,
            mainnet: s.mainnet,
            dev_mode_available: s.dev_mode_available,
            marketplace: s.marketplace,
            policy: s.policy.into(),
            operators: s.operators,
            nodes: s.nodes,
            next_node_id: s.next_node_id,
            node_by_signer_key: s.node_by_signer_key,
            gpu_owner: s.gpu_owner,
            cert_cache: s.cert_cache,
            credits: s.credits,
            pending: LookupMap::new(StorageKey::PendingAttestations),
            node_switches: LookupMap::new(StorageKey::NodeSwitches),
        }
    }
}

#[near]
impl Registry {
    /// The contract account itself (e.g. in the deploy transaction), no deposit: converts the
    /// stored state to the newest layout after a code upgrade. Gas: 10 Tgas.
    #[init(ignore_state)]
    #[private]
    pub fn migrate() -> Self {
        Self::try_migrate().or_panic()
    }
}

impl Registry {
    pub(crate) fn try_migrate() -> Result<Self> {
        let raw = env::storage_read(STATE_KEY).ok_or(RegistryError::NoState)?;
        if stored_version(&raw) == Some(STATE_VERSION)
            && let Some(current) = decode_exact::<Self>(&raw)
        {
            return Ok(current);
        }
        if stored_version(&raw) == Some(2)
            && let Some(v2) = decode_exact::<legacy::Registry>(&raw)
        {
            return Ok(Self::from(v2));
        }
        // Version 1 carried no version number: it is recognised by decoding completely.
        decode_exact::<legacy::RegistryV1>(&raw)
            .map(|legacy::RegistryV1::V1(s)| Self::from(legacy::Registry::from(s)))
            .ok_or_else(|| RegistryError::invalid("state", "not a layout this code knows"))
    }
}

#[cfg(test)]
mod state_schema {
    use std::path::Path;

    use enclave_cloud_common::state_version::schema::check;

    use super::*;
    use enclave_cloud_common::{Hash32, NodeId};
    use near_sdk::{AccountId, NearToken, PublicKey};

    use crate::state::{Node, Operator, PendingAttestation, SwitchInfo};

    /// The stored layout of versions 1 and 2: the root and the keys and values of its
    /// collections.
    type StoredV2<Root> = (
        Root,
        AccountId,
        Operator,
        NodeId,
        Node,
        PublicKey,
        Hash32,
        [u8; 32],
        NearToken,
    );

    /// Version 3 adds the pending attestations and the nodes' switches.
    type Stored<Root> = (StoredV2<Root>, PendingAttestation, Vec<SwitchInfo>);

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("state-schema")
    }

    /// A layout change without a new version (and a migration) fails here.
    #[test]
    fn the_stored_layout_is_the_one_recorded_for_its_version() {
        check::<Stored<Registry>>(&dir(), STATE_VERSION).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The shadows `migrate` reads must be the layouts that versions 1 and 2 really stored.
    #[test]
    fn the_migration_shadows_are_the_recorded_older_layouts() {
        check::<StoredV2<legacy::RegistryV1>>(&dir(), 1).unwrap_or_else(|e| panic!("{e}"));
        check::<StoredV2<legacy::Registry>>(&dir(), 2).unwrap_or_else(|e| panic!("{e}"));
    }
}
