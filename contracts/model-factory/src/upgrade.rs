//! State migration. The layout carries [`STATE_VERSION`]; a release that changes it keeps the
//! previous struct here, bumps the version and converts in [`ModelFactory::migrate`].

use near_sdk::{env, near};

use crate::state::ModelFactory;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::ModelFactoryExt;

/// Layout version of [`ModelFactory`]'s state.
pub const STATE_VERSION: u32 = 1;

#[near]
impl ModelFactory {
    /// This contract only (deploy-and-call batch): rewrites the state in the current layout.
    /// Version 1 is the first layout, so it reads the state as is.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        env::state_read::<Self>().unwrap_or_else(|| env::panic_str("no factory state to migrate"))
    }

    /// Contract version, from Cargo, and the layout version of its state.
    pub fn version(&self) -> (String, u32) {
        (env!("CARGO_PKG_VERSION").to_owned(), STATE_VERSION)
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
        assert_eq!(m.version().1, STATE_VERSION);
    }
}
