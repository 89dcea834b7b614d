//! Versioned state (the scheme of `enclave_cloud_common::state_version`): the stored struct
//! starts with its layout version; `migrate` reads it first and converts older layouts to the
//! current one. Version 1 is the current layout, so there is nothing to convert yet.

use near_sdk::{env, near};

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::state_version::{STATE_KEY, decode_exact, stored_version};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::{MarketplaceError, Result, invalid};
use crate::{Marketplace, STATE_VERSION};

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
