//! Versioned state. The stored struct starts with its layout version; `migrate` reads it
//! first and converts older layouts to the current one.

use near_sdk::borsh::BorshDeserialize;
use near_sdk::env;

use crate::errors::{MarketplaceError, Result, invalid};
use crate::{Marketplace, STATE_VERSION};

const STATE_KEY: &[u8] = b"STATE";

impl Marketplace {
    pub(crate) fn migrate_state() -> Result<Self> {
        let raw =
            env::storage_read(STATE_KEY).ok_or_else(|| invalid("state", "no state to migrate"))?;
        let version = raw
            .get(..2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_le_bytes)
            .ok_or_else(|| invalid("state", "shorter than its version tag"))?;
        match version {
            // Version 1 is the current layout: decoding it checks it is intact.
            STATE_VERSION => Self::try_from_slice(&raw)
                .map_err(|e| invalid("state", format!("version {version} does not decode: {e}"))),
            other => Err(MarketplaceError::InvalidArgument {
                field: "state",
                reason: format!(
                    "unknown state version {other} (this code knows up to {STATE_VERSION})"
                ),
            }),
        }
    }
}
