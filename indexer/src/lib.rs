//! enclave-cloud indexer: follows final NEAR blocks, stores the enclave-cloud contracts'
//! NEP-297 events in SQLite or PostgreSQL, and serves them as a REST API and a
//! server-sent-event feed per node.
//!
//! Layout: [`source`] (where blocks come from) -> [`follower`] (in-order, retrying) ->
//! [`ingest`] (events -> tables, one transaction per block with the checkpoint) ->
//! [`db`] (sqlx `Any`, migrations) <- [`api`] (axum) ; [`app`] wires it for the binary.

pub mod api;
pub mod app;
pub mod block;
pub mod config;
pub mod db;
pub mod fixture;
pub mod follower;
pub mod ingest;
pub mod metrics;
pub mod source;
