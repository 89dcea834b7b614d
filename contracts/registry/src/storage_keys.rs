//! Storage prefixes. Append-only: a variant is never removed or reordered, since its index is
//! the byte prefix of data already on chain.

use near_sdk::{BorshStorageKey, near};

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
pub enum StorageKey {
    Operators,
    Nodes,
    NodeBySignerKey,
    GpuOwner,
    UsedGpuNonces,
    CertCache,
    Credits,
    /// The governance timelock (`enclave_cloud_common::governance`).
    Governance,
    /// What each self-paid credit entry locked for its storage.
    CreditLocks,
    /// GPU devices governance revoked.
    RevokedGpus,
}
