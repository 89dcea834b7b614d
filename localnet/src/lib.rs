//! localnet: a local NEAR chain for development and CI, drop-in for near-sandbox.
//!
//! Today it carries the deployability check every contract passes in CI; the chain itself
//! (blocks, RPC, near-workspaces compatibility) grows here.

pub mod contract_check;
