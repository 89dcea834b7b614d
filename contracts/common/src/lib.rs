//! Types shared on and off chain by every enclave-cloud component.
//!
//! The contracts emit the NEP-297 events defined in [`events`]; the indexer parses the very
//! same types, so an event can never drift between the writer and the reader. The identifiers
//! in [`ids`] are semantic newtypes: a `JobId` cannot be passed where a `NodeId` is expected.

pub mod deployment;
pub mod events;
pub mod ids;
pub mod interfaces;
pub mod receipt;
pub mod types;

pub use ids::{IdError, JobId, ModelId, NodeId, RequestId};
pub use receipt::{ReceiptSubject, ResultReceipt};
pub use types::{
    Asset, AttestationKind, DEFAULT_MAX_INLINE_BYTES, GpuInfo, Hash32, InputRef, JobSpec,
    Measurements, ModelPrice, NodeStatus, OutputRef, TcbStatus, Usage,
};
