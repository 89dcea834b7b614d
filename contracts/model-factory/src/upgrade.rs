//! State migration (the scheme of `enclave_cloud_common::state_version`): the stored root
//! starts with its layout version ([`STATE_VERSION`]); a release that changes the layout keeps
//! a shadow of the previous one here, bumps the version and converts in
//! [`ModelFactory::migrate`].
//!
//! Version 1 had no version field (the same fields, untagged); version 2 adds it in front.

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};
use near_sdk::{env, near};

use crate::errors::FactoryError;
use crate::state::ModelFactory;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::ModelFactoryExt;

/// Layout version of [`ModelFactory`]'s state.
pub const STATE_VERSION: u16 = 2;

/// Shadows of the layouts this code migrates from.
pub(crate) mod legacy {
    use enclave_cloud_common::ModelId;
    use near_sdk::store::IterableMap;
    use near_sdk::{AccountId, GlobalContractId, near};

    use crate::state::ModelRecord;

    /// Layout version 1: the fields of today's state without the version in front.
    #[near(serializers = [borsh])]
    pub struct ModelFactoryV1 {
        pub owner: AccountId,
        pub registry: AccountId,
        pub model_code: Option<GlobalContractId>,
        pub models: IterableMap<ModelId, ModelRecord>,
    }
}

impl From<legacy::ModelFactoryV1> for ModelFactory {
    fn from(s: legacy::ModelFactoryV1) -> Self {
        Self {
            state_version: STATE_VERSION,
            owner: s.owner,
            registry: s.registry,
            model_code: s.model_code,
            models: s.models,
            reservations: near_sdk::store::LookupMap::new(
                crate::storage_keys::StorageKey::Reservations,
            ),
        }
    }
}

#[near]
impl ModelFactory {
    /// This contract only (deploy-and-call batch), no deposit: rewrites the state in the
    /// current layout. Gas: 10 Tgas.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        Self::try_migrate().or_panic()
    }

    /// Contract version, from Cargo, and the layout version of its state.
    pub fn version(&self) -> (String, u32) {
        (
            env!("CARGO_PKG_VERSION").to_owned(),
            u32::from(STATE_VERSION),
        )
    }
}

impl ModelFactory {
    pub(crate) fn try_migrate() -> Result<Self, FactoryError> {
        let raw = env::storage_read(STATE_KEY).ok_or(FactoryError::UnknownState)?;
        if stored_version(&raw) == Some(STATE_VERSION)
            && let Some(current) = decode_exact::<Self>(&raw)
        {
            return Ok(current);
        }
        // Version 1 carried no version number: it is recognised by decoding completely.
        decode_exact::<legacy::ModelFactoryV1>(&raw)
            .map(Self::from)
            .ok_or(FactoryError::UnknownState)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::NearToken;

    #[test]
    fn migrate_keeps_state() {
        let f = factory_with_code();
        env::state_write(&f);
        drop(f);
        ctx(FACTORY, NearToken::from_yoctonear(0));
        let m = ModelFactory::migrate();
        assert!(m.model_code.is_some());
        assert_eq!(m.version().1, u32::from(STATE_VERSION));
    }

    #[test]
    fn migrate_reads_the_untagged_version_1_layout() {
        let f = factory_with_code();
        // What the previous code stored: the same fields without the version in front and
        // without the reservations appended since.
        let current = near_sdk::borsh::to_vec(&f).expect("borsh");
        let reservations = near_sdk::borsh::to_vec(&f.reservations).expect("borsh");
        assert_eq!(current[..2], STATE_VERSION.to_le_bytes());
        drop(f);
        env::storage_write(STATE_KEY, &current[2..current.len() - reservations.len()]);
        ctx(FACTORY, NearToken::from_yoctonear(0));
        let m = ModelFactory::migrate();
        assert_eq!(m.state_version, STATE_VERSION);
        assert!(m.model_code.is_some());
        env::storage_write(STATE_KEY, &[7, 7, 7]);
        assert_eq!(
            ModelFactory::try_migrate().err(),
            Some(FactoryError::UnknownState)
        );
    }
}

#[cfg(test)]
mod state_schema {
    use std::path::Path;

    use enclave_cloud_common::state_version::schema::check;

    use super::*;
    use enclave_cloud_common::ModelId;

    use crate::state::ModelRecord;

    /// The stored layout: the root and the keys and values of its collections.
    type Stored<Root> = (Root, ModelId, ModelRecord);

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("state-schema")
    }

    /// A layout change without a new version (and a migration) fails here.
    #[test]
    fn the_stored_layout_is_the_one_recorded_for_its_version() {
        check::<Stored<ModelFactory>>(&dir(), STATE_VERSION).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The shadow `migrate` reads must be the layout that version 1 really stored.
    #[test]
    fn the_migration_shadow_is_the_recorded_version_1_layout() {
        check::<Stored<legacy::ModelFactoryV1>>(&dir(), 1).unwrap_or_else(|e| panic!("{e}"));
    }
}
