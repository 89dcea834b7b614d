//! Payment channels, the client's side: the local state of each channel (its key, what is
//! owed, the next sequence number), the marketplace calls, and the `ecloud channel` commands.

pub mod commands;
pub mod onchain;
pub mod state;

pub use state::{ChannelRecord, ChannelStore, StateError};
