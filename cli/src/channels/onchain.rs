//! The marketplace's payment-channel methods as the user calls them (names, gas and deposit
//! rules from `enclave_cloud_common::interfaces::marketplace::methods`).

use chain_client::contracts::function_call;
use chain_client::{Account, NearToken};
use enclave_cloud_common::events::{AnyEvent, marketplace::MarketplaceEvent};
use enclave_cloud_common::interfaces::marketplace::methods::{
    self as m, ChannelArgs, OpenChannelArgs, UserChannelsArgs,
};
use enclave_cloud_common::interfaces::marketplace::{Channel, FtMessage, OpenChannelSpec};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::{Asset, ChannelId};
use near_sdk::AccountId;
use near_sdk::json_types::{U64, U128};

use crate::Error;
use crate::chain::Chain;
use crate::progress::waiting;

/// Most channels one `channels_by_user` page holds.
const PAGE: u64 = 100;

impl Chain {
    pub async fn get_channel(&self, channel_id: ChannelId) -> Result<Option<Channel>, Error> {
        Ok(self
            .client()
            .view(
                self.marketplace().id(),
                m::GET_CHANNEL,
                &ChannelArgs { channel_id },
            )
            .await?)
    }

    /// Every open or closing channel of `user`.
    pub async fn channels_of(&self, user: &AccountId) -> Result<Vec<Channel>, Error> {
        let mut out = Vec::new();
        loop {
            let args = UserChannelsArgs {
                account_id: user.clone(),
                from_index: Some(out.len() as u64),
                limit: Some(PAGE),
            };
            let page: Vec<Channel> = self
                .client()
                .view(self.marketplace().id(), m::CHANNELS_BY_USER, &args)
                .await?;
            let full = page.len() as u64 == PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// NEAR a channel's storage costs (attached beyond a NEAR deposit, or held in the storage
    /// balance for a token channel); refunded at close.
    pub async fn channel_storage_deposit(&self) -> Result<u128, Error> {
        let cost: U128 = self
            .client()
            .view(
                self.marketplace().id(),
                m::CHANNEL_STORAGE_DEPOSIT,
                &NoArgs {},
            )
            .await?;
        Ok(cost.0)
    }

    /// Opens a channel with `deposit` of `asset`: `open_channel` with the deposit plus its
    /// storage attached, or for a token its storage into the storage balance and then
    /// `ft_transfer_call` with [`FtMessage::OpenChannel`]. Returns the new channel's id.
    pub async fn open_channel(
        &self,
        signer: &Account,
        spec: OpenChannelSpec,
        asset: &Asset,
        deposit: u128,
    ) -> Result<ChannelId, Error> {
        let storage = self.channel_storage_deposit().await?;
        let market = self.marketplace().id().clone();
        match asset {
            Asset::Near => {
                let attached = deposit
                    .checked_add(storage)
                    .ok_or_else(|| Error::BadInput("the deposit is too large".into()))?;
                let call = function_call(
                    &market,
                    m::OPEN_CHANNEL,
                    &OpenChannelArgs {
                        channel: spec,
                        deposit: U128(deposit),
                    },
                    Some(NearToken::from_yoctonear(attached)),
                )?;
                let outcome = waiting(
                    "opening the channel (open_channel)",
                    self.client().call_outcome(signer, call),
                )
                .await?;
                let id: Option<ChannelId> = outcome.json()?;
                id.or_else(|| opened_channel(&outcome.logs, signer.account_id()))
                    .ok_or_else(|| {
                        Error::Chain(format!(
                            "the marketplace did not open the channel (tx {}): {}; the deposit was refunded",
                            outcome.tx_hash,
                            outcome.logs.join(" | ")
                        ))
                    })
            }
            Asset::Ft { token } => {
                self.ensure_storage_balance(signer, storage).await?;
                let msg = serde_json::to_string(&FtMessage::OpenChannel(spec))
                    .map_err(|e| Error::BadInput(e.to_string()))?;
                let outcome = waiting(
                    &format!("opening the channel (ft_transfer_call to {token})"),
                    self.ft_transfer_call(signer, token, &market, deposit, msg),
                )
                .await?;
                opened_channel(&outcome.logs, signer.account_id()).ok_or_else(|| {
                    Error::Chain(format!(
                        "{token} took the transfer but the marketplace opened no channel (tx {}): is the token accepted? the amount was refunded",
                        outcome.tx_hash
                    ))
                })
            }
        }
    }

    async fn ensure_storage_balance(&self, signer: &Account, needed: u128) -> Result<(), Error> {
        let market = self.marketplace();
        let balance = market
            .storage_balance_of(signer.account_id())
            .await?
            .as_yoctonear();
        if balance < needed {
            waiting(
                "paying the channel's storage at the marketplace",
                market
                    .storage_deposit(None, NearToken::from_yoctonear(needed - balance))?
                    .send(signer),
            )
            .await?;
        }
        Ok(())
    }

    /// Adds `amount` to `channel`'s deposit (NEAR: `top_up_channel`; a token:
    /// `ft_transfer_call` with [`FtMessage::TopUpChannel`]).
    pub async fn top_up_channel(
        &self,
        signer: &Account,
        channel: &Channel,
        amount: u128,
    ) -> Result<(), Error> {
        let channel_id = channel.channel_id;
        match &channel.asset {
            Asset::Near => {
                let call = function_call(
                    self.marketplace().id(),
                    m::TOP_UP_CHANNEL,
                    &ChannelArgs { channel_id },
                    Some(NearToken::from_yoctonear(amount)),
                )?;
                let _: U128 = waiting(
                    "topping up the channel (top_up_channel)",
                    self.client().call(signer, call),
                )
                .await?;
            }
            Asset::Ft { token } => {
                let msg = serde_json::to_string(&FtMessage::TopUpChannel { channel_id })
                    .map_err(|e| Error::BadInput(e.to_string()))?;
                let market = self.marketplace().id().clone();
                waiting(
                    &format!("topping up the channel (ft_transfer_call to {token})"),
                    self.ft_transfer_call(signer, token, &market, amount, msg),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The user's `start_close` (1 yoctoNEAR): returns when the challenge period ends (ns).
    pub async fn start_close(&self, signer: &Account, channel_id: ChannelId) -> Result<u64, Error> {
        let call = function_call(
            self.marketplace().id(),
            m::START_CLOSE,
            &ChannelArgs { channel_id },
            None,
        )?;
        let ends: U64 = waiting(
            "starting the channel's close (start_close)",
            self.client().call(signer, call),
        )
        .await?;
        Ok(ends.0)
    }

    /// `finish_close` once the challenge period is over: returns the refund.
    pub async fn finish_close(
        &self,
        signer: &Account,
        channel_id: ChannelId,
    ) -> Result<u128, Error> {
        let call = function_call(
            self.marketplace().id(),
            m::FINISH_CLOSE,
            &ChannelArgs { channel_id },
            Some(NearToken::from_yoctonear(0)),
        )?;
        let refund: U128 = waiting(
            "finishing the channel's close (finish_close)",
            self.client().call(signer, call),
        )
        .await?;
        Ok(refund.0)
    }
}

/// The id of the channel `user` opened, from the transaction's `channel_opened` event.
pub fn opened_channel(logs: &[String], user: &AccountId) -> Option<ChannelId> {
    logs.iter().find_map(|line| match AnyEvent::parse(line) {
        Ok(Some(AnyEvent::Marketplace(MarketplaceEvent::ChannelOpened {
            channel_id,
            user: u,
            ..
        }))) if &u == user => Some(channel_id),
        _ => None,
    })
}
