//! Types shared on and off chain by every enclave-cloud component.
//!
//! The contracts emit the NEP-297 events defined in [`events`]; the indexer parses the very
//! same types, so an event can never drift between the writer and the reader. The identifiers
//! in [`ids`] are semantic newtypes: a `JobId` cannot be passed where a `NodeId` is expected.

#[cfg(feature = "attestation-policy")]
pub mod attestation_policy;
pub mod deployment;
pub mod errors;
pub mod events;
pub mod governance;
pub mod ids;
pub mod interfaces;
pub mod pricing;
pub mod receipt;
pub mod state_version;
pub mod types;
pub mod voucher;

pub use errors::OrPanic;
pub use ids::{ChannelId, IdError, JobId, ModelId, NodeId, RequestId};
pub use receipt::{ReceiptSubject, ResultReceipt};
pub use types::{
    Asset, AttestationKind, DEFAULT_MAX_INLINE_BYTES, GpuInfo, Hash32, InputRef, JobSpec,
    Measurements, ModelPrice, NodeStatus, OutputRef, TcbStatus, Usage,
};
pub use voucher::{RequestAuthorization, Voucher};

/// The JSON schema of the types whose JSON is a string by hand-written serde. Only near-sdk's
/// `abi` feature asks for schemas, and only the contracts' state-layout tests turn it on
/// (feature `state-schema`); wasm builds never compile this.
macro_rules! json_schema_as_string {
    ($($t:ty),* $(,)?) => {$(
        #[cfg(feature = "state-schema")]
        impl near_sdk::schemars::JsonSchema for $t {
            fn schema_name() -> String {
                stringify!($t).to_owned()
            }

            fn json_schema(
                generator: &mut near_sdk::schemars::r#gen::SchemaGenerator,
            ) -> near_sdk::schemars::schema::Schema {
                <String as near_sdk::schemars::JsonSchema>::json_schema(generator)
            }
        }
    )*};
}

json_schema_as_string!(NodeId, JobId, RequestId, ChannelId, ModelId, Hash32);
