//! Stored records: configuration, jobs, receipts, cached nodes, agent requests, the ledger.
//! They are the marketplace's interface types too (views return them as they are), so they
//! are defined once, in `enclave_cloud_common::interfaces::marketplace`, for the contract and
//! its clients alike.

pub use enclave_cloud_common::interfaces::marketplace::*;
