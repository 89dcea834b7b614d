//! Deploys the enclave-cloud contracts: registry, marketplace, model factory (with the
//! model-token code published as a global contract) and, off mainnet, a NEP-141 test token.
//!
//! One sub-account of the deployer per contract, each created, funded, keyed to the deployer,
//! deployed and initialised in one transaction (so a failure never leaves a half-initialised
//! contract), then wired together. Last the governance delay is set on the registry, the
//! marketplace and the factory (`--governance-delay`, a day on mainnet) and the deployer's
//! full-access keys are deleted from their accounts (unless `--keep-access-keys`, off mainnet
//! only), so that from then on only governance, with its delay, changes them. The test token
//! keeps its key. Used by `scripts/deploy.sh` and `scripts/demo.sh`.

pub mod accounts;
pub mod deployer;
pub mod network;
pub mod plan;
pub mod record;

pub use accounts::create_accounts;
pub use deployer::{Connected, DeployError, Progress, connect, deploy};
pub use network::{Network, ProtocolCheck};
pub use plan::Plan;
pub use record::Deployment;
