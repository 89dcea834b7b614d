//! State migration (the scheme of `enclave_cloud_common::state_version`): the stored root
//! starts with its layout version ([`STATE_VERSION`]); a release that changes the layout keeps
//! a shadow of the previous one here, bumps the version and converts in
//! [`ModelToken::migrate`].
//!
//! Version 1 had no version field (the same fields, untagged); version 2 adds it in front.

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};
use near_sdk::{env, near};

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::errors::ModelTokenError;

/// Layout version of [`ModelToken`]'s state.
pub const STATE_VERSION: u16 = 2;

/// Shadows of the layouts this code migrates from.
pub(crate) mod legacy {
    use enclave_cloud_common::events::model::ModelManifest;
    use enclave_cloud_common::{ModelId, NodeId};
    use near_contract_standards::fungible_token::metadata::FungibleTokenMetadata;
    use near_sdk::store::{IterableMap, LazyOption, LookupMap};
    use near_sdk::{AccountId, near};

    use crate::crowdfund::Crowdfund;
    use crate::keys::KeyGrant;
    use crate::ledger::Holder;
    use crate::rewards::RevenuePool;

    /// Layout version 1: the fields of today's state without the version in front.
    #[near(serializers = [borsh])]
    pub struct ModelTokenV1 {
        pub model_id: ModelId,
        pub owner: AccountId,
        pub registry: AccountId,
        pub key_service: Option<AccountId>,
        pub manifest: LazyOption<ModelManifest>,
        pub metadata: LazyOption<FungibleTokenMetadata>,
        pub holders: LookupMap<AccountId, Holder>,
        pub total_supply: u128,
        pub holder_storage_bytes: u64,
        pub pools: Vec<RevenuePool>,
        pub crowdfund: Option<Crowdfund>,
        pub grants: IterableMap<NodeId, KeyGrant>,
    }
}

impl From<legacy::ModelTokenV1> for ModelToken {
    fn from(s: legacy::ModelTokenV1) -> Self {
        Self {
            state_version: STATE_VERSION,
            model_id: s.model_id,
            owner: s.owner,
            registry: s.registry,
            key_service: s.key_service,
            manifest: s.manifest,
            metadata: s.metadata,
            holders: s.holders,
            total_supply: s.total_supply,
            holder_storage_bytes: s.holder_storage_bytes,
            pools: s.pools,
            crowdfund: s.crowdfund,
            grants: s.grants,
            // Crowdfund tokens of version 1 earned from the start: nothing is locked.
            crowdfund_earnings: Default::default(),
        }
    }
}

#[near]
impl ModelToken {
    /// This contract only (deploy-and-call batch), no deposit: rewrites the stored state in
    /// the current layout. Gas: 10 Tgas.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        Self::try_migrate().or_panic()
    }
}

impl ModelToken {
    pub(crate) fn try_migrate() -> Result<Self, ModelTokenError> {
        let raw = env::storage_read(STATE_KEY).ok_or_else(|| ModelTokenError::Invalid {
            field: "state",
            reason: "no model-token state to migrate".into(),
        })?;
        if stored_version(&raw) == Some(STATE_VERSION)
            && let Some(current) = decode_exact::<Self>(&raw)
        {
            return Ok(current);
        }
        // Version 1 carried no version number: it is recognised by decoding completely.
        decode_exact::<legacy::ModelTokenV1>(&raw)
            .map(Self::from)
            .ok_or_else(|| ModelTokenError::Invalid {
                field: "state",
                reason: "not a layout this code knows".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::NearToken;

    #[test]
    fn migrate_keeps_state_and_is_private() {
        let t = setup_with_holders(&[(ALICE, 5)]);
        env::state_write(&t);
        drop(t); // flushes the collections
        ctx(CONTRACT, NearToken::from_yoctonear(0));
        let m = ModelToken::migrate();
        assert_eq!(m.balance_of(&acc(ALICE)), 5);
    }

    #[test]
    fn migrate_reads_the_untagged_version_1_layout() {
        let t = setup_with_holders(&[(ALICE, 5)]);
        // What the previous code stored: the same fields without the version in front and
        // without the crowdfund earnings appended since.
        let current = near_sdk::borsh::to_vec(&t).expect("borsh");
        let earnings = near_sdk::borsh::to_vec(&t.crowdfund_earnings).expect("borsh");
        assert_eq!(current[..2], STATE_VERSION.to_le_bytes());
        drop(t);
        env::storage_write(STATE_KEY, &current[2..current.len() - earnings.len()]);
        ctx(CONTRACT, NearToken::from_yoctonear(0));
        let m = ModelToken::migrate();
        assert_eq!(m.state_version, STATE_VERSION);
        assert_eq!(m.balance_of(&acc(ALICE)), 5);
        assert_eq!(m.version().1, u32::from(STATE_VERSION));
        env::storage_write(STATE_KEY, &[7, 7, 7]);
        assert!(ModelToken::try_migrate().is_err());
    }
}

#[cfg(test)]
mod state_schema {
    use std::path::Path;

    use enclave_cloud_common::state_version::schema::check;

    use super::*;
    use enclave_cloud_common::NodeId;
    use enclave_cloud_common::events::model::ModelManifest;
    use near_contract_standards::fungible_token::metadata::FungibleTokenMetadata;
    use near_sdk::AccountId;

    use crate::keys::KeyGrant;
    use crate::ledger::Holder;

    /// The stored layout: the root and the keys and values of its collections.
    type Stored<Root> = (
        Root,
        ModelManifest,
        FungibleTokenMetadata,
        AccountId,
        Holder,
        NodeId,
        KeyGrant,
    );

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("state-schema")
    }

    /// A layout change without a new version (and a migration) fails here.
    #[test]
    fn the_stored_layout_is_the_one_recorded_for_its_version() {
        check::<Stored<ModelToken>>(&dir(), STATE_VERSION).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The shadow `migrate` reads must be the layout that version 1 really stored.
    #[test]
    fn the_migration_shadow_is_the_recorded_version_1_layout() {
        check::<Stored<legacy::ModelTokenV1>>(&dir(), 1).unwrap_or_else(|e| panic!("{e}"));
    }
}
