//! Our contracts' methods as near-workspaces calls, from the interfaces' method tables
//! (`enclave_cloud_common::interfaces::*::methods`): the name, the gas and the fixed deposit
//! come from the table, the arguments are the shared argument structs. A payable method's
//! deposit is the caller's to add (`.deposit(..)`).
//!
//! Tests that send malformed or hostile arguments on purpose keep building them by hand.

use anyhow::Context;
use near_workspaces::network::NetworkClient;
use near_workspaces::{AccountId, Worker};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `method` on `contract` from `account` with JSON `args`: the table's name and gas, and its
/// deposit when the table fixes one (none, or one yoctoNEAR). A payable method has no deposit
/// yet: add it with `.deposit(..)`. The deployment tool's own helper, so both call alike.
pub use ecloud_deploy::deployer::contract_call as call;

/// A view (`name` from the table) with JSON `args`, its result decoded into `T`.
pub async fn view<T, N>(
    worker: &Worker<N>,
    contract: &AccountId,
    name: &str,
    args: &impl Serialize,
) -> anyhow::Result<T>
where
    T: DeserializeOwned,
    N: NetworkClient + ?Sized,
{
    worker
        .view(contract, name)
        .args_json(args)
        .await
        .with_context(|| format!("view {contract}.{name}"))?
        .json()
        .with_context(|| format!("decode {contract}.{name}"))
}
