//! localnet: a local NEAR chain for development and CI, drop-in for near-sandbox.
//!
//! nearcore's VM (`near-vm-runner`, wasmtime) runs the contracts under the runtime config of
//! the current protocol version; transactions, receipts, views and errors are the protocol
//! types of `near-primitives`. One node, one shard, blocks final as soon as produced.

pub mod chain;
pub mod contract_check;
pub mod home;
pub mod neardata;
pub mod node;
pub mod rpc;
pub mod runtime;
pub mod serve;
pub mod state;
pub mod store;
