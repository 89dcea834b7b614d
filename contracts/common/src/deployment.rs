//! Where a deployment puts its contracts: `ecloud-deploy` creates these sub-accounts of the
//! deployer, and `ecloud` derives its per-network defaults from the same names, so the two
//! can never disagree.

/// Sub-account name of the node registry (`registry.<deployer>`).
pub const REGISTRY: &str = "registry";
/// Sub-account name of the marketplace (`marketplace.<deployer>`).
pub const MARKETPLACE: &str = "marketplace";
/// Sub-account name of the model factory (`models.<deployer>`); models are `<id>.models.<deployer>`.
pub const MODEL_FACTORY: &str = "models";

/// The deployer account of each public deployment (`scripts/deploy.sh localnet` signs as
/// `test.near`, localnet's root account).
pub const LOCALNET_DEPLOYER: &str = "test.near";
pub const TESTNET_DEPLOYER: &str = "ecloud.testnet";
pub const MAINNET_DEPLOYER: &str = "ecloud.near";

/// `<prefix><name>.<deployer>`: the account of one contract of a deployment.
pub fn contract_account(prefix: &str, name: &str, deployer: &str) -> String {
    format!("{prefix}{name}.{deployer}")
}
