//! localnet-only settings of the chains near-workspaces starts.
//!
//! near-workspaces runs `<NEAR_SANDBOX_BIN_PATH> init` itself, so a test cannot pass flags to
//! it; localnet reads what it needs from the environment of that process instead. A real
//! near-sandbox binary ignores these variables.

use near_workspaces::Worker;
use near_workspaces::network::Sandbox;
use std::sync::OnceLock;

/// The variable `localnet init` reads its genesis time from (unix seconds or RFC 3339).
pub const GENESIS_TIME_ENV: &str = "LOCALNET_GENESIS_TIME";

/// A fresh chain whose first block is at `genesis_time` (unix seconds or RFC 3339, such as
/// `2026-08-13T00:00:00Z`); its clock runs in real time from there.
///
/// The time is set for the whole test process, once: every chain the process starts, through
/// this or through [`crate::sandbox`], begins at it. A different time in a later call panics,
/// since the chains of one test binary share one environment.
pub async fn sandbox_at(genesis_time: &str) -> anyhow::Result<Worker<Sandbox>> {
    static SET: OnceLock<String> = OnceLock::new();
    let set = SET.get_or_init(|| {
        // SAFETY: written once under the OnceLock, before this process starts a chain with it.
        unsafe { std::env::set_var(GENESIS_TIME_ENV, genesis_time) };
        genesis_time.to_string()
    });
    assert_eq!(
        set, genesis_time,
        "{GENESIS_TIME_ENV} is already {set}: one genesis time per test process"
    );
    crate::sandbox().await
}
