//! State migration. The stored state is the `Registry` enum: a new layout adds a variant,
//! and `migrate` converts whatever version is stored to the newest one.

use near_sdk::env;

use crate::Registry;
use crate::errors::{RegistryError, Result};

pub fn migrate() -> Result<Registry> {
    let stored: Registry = env::state_read().ok_or(RegistryError::NoState)?;
    Ok(match stored {
        // V1 is the newest layout: nothing to convert yet.
        Registry::V1(state) => Registry::V1(state),
    })
}
