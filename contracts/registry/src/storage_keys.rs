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
    /// Reserved: the set of used GPU nonces (layout versions 1-2). Device nonces are now bound
    /// to a challenge (`PendingAttestations`); the old entries stay under this prefix.
    UsedGpuNonces,
    CertCache,
    Credits,
    /// The governance timelock (`enclave_cloud_common::governance`).
    Governance,
    /// What each self-paid credit entry locked for its storage.
    CreditLocks,
    /// GPU devices governance revoked.
    RevokedGpus,
    /// Registrations and re-attestations in progress, by enclave key.
    PendingAttestations,
    /// The NVSwitches of each node (its GPUs are in the node record).
    NodeSwitches,
    /// Golden GPU measurement sets pinned by governance, by chip.
    GoldenSets,
}
