//! State migration. The state layout carries [`STATE_VERSION`]; a release that changes the
//! layout keeps the previous struct here, bumps the version and converts in [`ModelToken::migrate`].

use near_sdk::{env, near};

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;

/// Layout version of [`ModelToken`]'s state.
pub const STATE_VERSION: u32 = 1;

#[near]
impl ModelToken {
    /// This contract only (deploy-and-call batch): rewrites the stored state in the current
    /// layout. Version 1 is the first layout, so it reads the state as is.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        env::state_read::<Self>()
            .unwrap_or_else(|| env::panic_str("no model-token state to migrate"))
    }
}

#[cfg(test)]
mod tests {
    use crate::ModelToken;
    use crate::test_utils::*;
    use near_sdk::NearToken;

    #[test]
    fn migrate_keeps_state_and_is_private() {
        let t = setup_with_holders(&[(ALICE, 5)]);
        near_sdk::env::state_write(&t);
        drop(t); // flushes the collections
        ctx(CONTRACT, NearToken::from_yoctonear(0));
        let m = ModelToken::migrate();
        assert_eq!(m.balance_of(&acc(ALICE)), 5);
    }
}
