//! What the paid API needs of the chain, behind two traits so tests can fake them:
//!
//! * [`ChannelSource`]: the marketplace's `get_channel` view (a channel's key, price,
//!   deposit, node and state);
//! * [`Settler`]: `settle_channel` with the newest voucher, signed by the node's marketplace
//!   key.
//!
//! [`MarketplaceChannels`] is both, over the worker's chain client ([`NodeChain`]), with the
//! gas of `methods::SETTLE_CHANNEL`.

use std::future::Future;
use std::pin::Pin;

use chain_client::ChainError;
use chain_client::contracts::function_call;
use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::marketplace::Channel;
use enclave_cloud_common::interfaces::marketplace::methods::{
    ChannelArgs, GET_CHANNEL, SETTLE_CHANNEL, VoucherArgs,
};
use enclave_cloud_common::{ChannelId, Voucher};
use near_sdk::json_types::Base64VecU8;

use crate::chain::NodeChain;

/// A boxed future (the traits are used as `Arc<dyn …>`).
pub type ChainFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChainError>> + Send + 'a>>;

/// The marketplace's view of channels.
pub trait ChannelSource: Send + Sync {
    /// `get_channel`: `None` if there is no such channel (or it was closed and removed).
    fn get_channel(&self, channel_id: ChannelId) -> ChainFuture<'_, Option<Channel>>;
}

/// Settles vouchers on chain.
pub trait Settler: Send + Sync {
    /// `settle_channel` with `voucher` and its signature.
    fn settle(&self, voucher: Voucher, signature: [u8; 64]) -> ChainFuture<'_, Settlement>;
}

/// The real marketplace, through the worker's chain client.
pub struct MarketplaceChannels {
    pub chain: NodeChain,
}

impl ChannelSource for MarketplaceChannels {
    fn get_channel(&self, channel_id: ChannelId) -> ChainFuture<'_, Option<Channel>> {
        Box::pin(async move {
            self.chain
                .client
                .view(
                    &self.chain.marketplace,
                    GET_CHANNEL,
                    &ChannelArgs { channel_id },
                )
                .await
        })
    }
}

impl Settler for MarketplaceChannels {
    fn settle(&self, voucher: Voucher, signature: [u8; 64]) -> ChainFuture<'_, Settlement> {
        Box::pin(async move {
            let args = VoucherArgs {
                channel_id: voucher.channel_id,
                voucher,
                signature: Base64VecU8(signature.to_vec()),
            };
            let call = function_call(&self.chain.marketplace, SETTLE_CHANNEL, &args, None)?;
            self.chain.client.call(&self.chain.market, call).await
        })
    }
}
