//! Payment channels on the node's side (the paid API's money; the wire format is
//! `protocol::channel_api`, the contract side `contracts/marketplace/src/channels/`):
//!
//! * [`store`]: each channel's durable record (newest voucher, billed, settled, sequences);
//! * [`ledger`]: per request, the payment check, the reservation of its maximum cost and the
//!   bill;
//! * [`settle`]: the background task that settles vouchers in batches;
//! * [`chain`]: the marketplace as these need it (`get_channel`, `settle_channel`), behind
//!   traits tests fake.

pub mod chain;
pub mod ledger;
pub mod settle;
pub mod store;

pub use chain::{ChannelSource, MarketplaceChannels, Settler};
pub use ledger::{PaymentConfig, PaymentError, Payments, Reservation};
pub use settle::SettlePolicy;
pub use store::{ChannelRecord, ChannelStore};

/// The channel records in the worker's data dir.
pub const CHANNELS_DIR: &str = "channels";
