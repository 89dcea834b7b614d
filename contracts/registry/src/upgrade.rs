//! State migration (the scheme of `enclave_cloud_common::state_version`): the stored root
//! starts with its layout version and `migrate` converts older layouts to the current one.
//!
//! Version 1 was stored as the enum `Registry::V1(StateV1)` (borsh tag 0, then the fields);
//! version 2 is the same fields behind the `u16` layout version every contract now uses.

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};
use near_sdk::{env, near};

use crate::errors::{RegistryError, Result};
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{Registry, STATE_VERSION};

/// Shadows of the layouts this code migrates from.
pub(crate) mod legacy {
    use near_sdk::store::{LookupMap, LookupSet};
    use near_sdk::{AccountId, NearToken, PublicKey, near};

    use enclave_cloud_common::{Hash32, NodeId};

    use crate::policy::Policy;
    use crate::state::{Node, Operator};

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

impl From<legacy::RegistryV1> for Registry {
    fn from(old: legacy::RegistryV1) -> Self {
        let legacy::RegistryV1::V1(s) = old;
        Self {
            state_version: STATE_VERSION,
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
        // Version 1 carried no version number: it is recognised by decoding completely.
        decode_exact::<legacy::RegistryV1>(&raw)
            .map(Self::from)
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

    use crate::state::{Node, Operator};

    /// The stored layout: the root and the keys and values of its collections.
    type Stored<Root> = (
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

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("state-schema")
    }

    /// A layout change without a new version (and a migration) fails here.
    #[test]
    fn the_stored_layout_is_the_one_recorded_for_its_version() {
        check::<Stored<Registry>>(&dir(), STATE_VERSION).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The shadow `migrate` reads must be the layout that version 1 really stored.
    #[test]
    fn the_migration_shadow_is_the_recorded_version_1_layout() {
        check::<Stored<legacy::RegistryV1>>(&dir(), 1).unwrap_or_else(|e| panic!("{e}"));
    }
}
