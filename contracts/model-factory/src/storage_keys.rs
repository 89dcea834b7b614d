//! Storage prefixes of the factory. Append only.

use near_sdk::{BorshStorageKey, near};

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
pub enum StorageKey {
    Models,
    Reservations,
    /// The governance timelock (`enclave_cloud_common::governance`).
    Governance,
}
