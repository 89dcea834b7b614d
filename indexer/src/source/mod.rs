//! Where final blocks come from. Every source answers the same two questions: what is the
//! newest final height, and what is the block at height `h` (or `None` when the chain
//! skipped that height). The follower never asks past the final head, so `None` always
//! means "no block was produced at this height", never "not yet".

mod fixtures;
#[cfg(feature = "jsonrpc")]
mod jsonrpc;
mod neardata;

pub use fixtures::FixtureSource;
#[cfg(feature = "jsonrpc")]
pub use jsonrpc::{DEFAULT_LOOKBACK, JsonRpcSource};
pub use neardata::NeardataSource;

use crate::block::StreamerMessage;
use std::future::Future;

/// Why a source could not answer. All of these are retried by the follower.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("block source unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("block source answered {status} for {url}")]
    Status { url: String, status: u16 },
    #[error("block {height} from the source is not valid StreamerMessage JSON: {reason}")]
    Decode { height: u64, reason: String },
    #[error("block source returned block {got} when asked for {asked}")]
    WrongHeight { asked: u64, got: u64 },
    #[error("fixture I/O at {path}: {reason}")]
    Io { path: String, reason: String },
}

/// A source of final blocks.
pub trait BlockSource: Send + Sync + 'static {
    /// A short description for logs, e.g. the URL.
    fn describe(&self) -> String;

    /// The height of the newest final block.
    fn final_head(&self) -> impl Future<Output = Result<u64, SourceError>> + Send;

    /// The block at `height`, or `None` if no block exists at that (final) height.
    fn block(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<Option<StreamerMessage>, SourceError>> + Send;
}

/// Parses one `StreamerMessage` (or JSON `null` for a skipped height) and checks it is the
/// height that was asked for.
pub(crate) fn decode_block(
    height: u64,
    bytes: &[u8],
) -> Result<Option<StreamerMessage>, SourceError> {
    let msg: Option<StreamerMessage> =
        serde_json::from_slice(bytes).map_err(|e| SourceError::Decode {
            height,
            reason: e.to_string(),
        })?;
    match msg {
        Some(m) if m.height() != height => Err(SourceError::WrongHeight {
            asked: height,
            got: m.height(),
        }),
        other => Ok(other),
    }
}
