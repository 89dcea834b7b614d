//! Storage prefixes of the model-token contract. Append only: a reordered variant would point
//! a collection at another collection's data.

use near_sdk::{BorshStorageKey, near};

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
pub enum StorageKey {
    Manifest,
    Metadata,
    Holders,
    Grants,
    /// The governance timelock (`enclave_cloud_common::governance`).
    Governance,
}
