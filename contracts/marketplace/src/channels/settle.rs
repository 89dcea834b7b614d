//! Vouchers, settlement and closing. Settling a voucher costs the same whatever the number
//! of requests it covers: one signature check, one record written, one split paid.

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, PromiseOrValue, env, near};

use enclave_cloud_common::events::marketplace::{ChannelCloseReason, Settlement};
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::{ChannelId, OrPanic, Voucher};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::channels::{channels, remove_channel};
use crate::errors::{MarketplaceError, Result};
use crate::governance::{require_no_deposit, require_one_yocto};
use crate::payouts::EscrowRelease;
use crate::refs::ed25519_key;
use crate::settlement::split;
use crate::state::{Channel, ChannelState, OpenChannelSpec};
use crate::{ChannelApi, Marketplace};

/// Checks `voucher` against `channel` and returns its amount: this contract, this channel,
/// this asset, within the deposit, signed by the channel key. Not whether it is newer than
/// what was settled: settle and close differ there.
pub fn check_voucher(channel: &Channel, voucher: &Voucher, signature: &[u8]) -> Result<u128> {
    let channel_id = channel.channel_id;
    let this = env::current_account_id();
    if voucher.marketplace != this {
        return Err(MarketplaceError::VoucherForAnotherContract {
            marketplace: voucher.marketplace.clone(),
            this,
        });
    }
    if voucher.channel_id != channel_id {
        return Err(MarketplaceError::VoucherForAnotherChannel {
            channel_id,
            voucher_channel: voucher.channel_id,
        });
    }
    if voucher.asset != channel.asset {
        return Err(MarketplaceError::VoucherWrongAsset {
            channel_id,
            voucher: voucher.asset.clone(),
            channel: channel.asset.clone(),
        });
    }
    let amount = voucher.amount.0;
    if amount > channel.deposit.0 {
        return Err(MarketplaceError::VoucherOverDeposit {
            channel_id,
            amount,
            deposit: channel.deposit.0,
        });
    }
    let key = ed25519_key(&channel.channel_key).ok_or(MarketplaceError::ChannelKeyNotEd25519)?;
    let signature: &[u8; 64] = signature
        .try_into()
        .map_err(|_| MarketplaceError::BadVoucherSignature { channel_id })?;
    if env::ed25519_verify(signature, voucher.signing_bytes(), key) {
        Ok(amount)
    } else {
        Err(MarketplaceError::BadVoucherSignature { channel_id })
    }
}

/// The node may settle (or close) a closing channel only within its challenge period: after
/// it, what the user gets back by `finish_close` no longer moves.
fn check_not_over(channel: &Channel) -> Result<()> {
    let now = env::block_timestamp();
    match channel.state {
        ChannelState::Closing { ends_ns, .. } if now >= ends_ns.0 => {
            Err(MarketplaceError::ChallengePeriodOver {
                channel_id: channel.channel_id,
                ended_ns: ends_ns.0,
                now_ns: now,
            })
        }
        _ => Ok(()),
    }
}

impl Marketplace {
    /// The channel, if the caller is its node: its operator's account (directly, or through
    /// the enclave key, an access key of that account).
    fn channel_of_node(&self, channel_id: ChannelId) -> Result<Channel> {
        let channel = channels()
            .get(&channel_id)
            .ok_or(MarketplaceError::ChannelNotFound(channel_id))?;
        let caller = env::predecessor_account_id();
        if caller != channel.operator {
            return Err(MarketplaceError::NotChannelNode {
                channel_id,
                operator: channel.operator,
                caller,
            });
        }
        Ok(channel)
    }

    /// Releases `escrow` of the channel's unsettled deposit: `cost` to the node, the model and
    /// the protocol (the job split and payout code), the rest back to the user. Returns the
    /// split and the payouts to send (after the state is stored).
    fn release(
        &mut self,
        channel: &Channel,
        escrow: u128,
        cost: u128,
    ) -> Result<(Settlement, Vec<crate::state::Payout>)> {
        let settlement = split(
            escrow,
            Some(cost),
            self.config.protocol_fee_bps,
            self.config.royalty_bps,
        )?;
        let mut payouts = Vec::new();
        self.book_split(
            EscrowRelease {
                asset: &channel.asset,
                amount: escrow,
                model_id: &channel.model_id,
                provider: &channel.operator,
                payer: &channel.user,
            },
            &settlement,
            &mut payouts,
        )?;
        Ok((settlement, payouts))
    }

    pub(crate) fn try_settle_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Result<Settlement> {
        require_no_deposit()?;
        let mut channel = self.channel_of_node(channel_id)?;
        check_not_over(&channel)?;
        let amount = check_voucher(&channel, &voucher, &signature.0)?;
        let settled = channel.settled.0;
        // Equal is refused too: it would pay nothing, and a node that retries a settlement
        // it thought lost learns that it went through.
        if amount <= settled {
            return Err(MarketplaceError::VoucherNotAboveSettled {
                channel_id,
                amount,
                settled,
            });
        }
        let delta = amount - settled;
        let (settlement, payouts) = self.release(&channel, delta, delta)?;
        channel.settled = U128(amount);
        channels().insert(&channel_id, &channel);
        MarketplaceEvent::ChannelSettled {
            channel_id,
            node_id: channel.node_id,
            settled: channel.settled,
            settlement: settlement.clone(),
        }
        .emit();
        self.pay(payouts)?;
        Ok(settlement)
    }

    pub(crate) fn try_close_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Result<Settlement> {
        require_no_deposit()?;
        let channel = self.channel_of_node(channel_id)?;
        check_not_over(&channel)?;
        let amount = check_voucher(&channel, &voucher, &signature.0)?;
        let settled = channel.settled.0;
        // The final voucher may equal what was settled (nothing more owed), never less.
        if amount < settled {
            return Err(MarketplaceError::VoucherNotAboveSettled {
                channel_id,
                amount,
                settled,
            });
        }
        let settlement = self.close(channel, amount, ChannelCloseReason::Cooperative)?;
        Ok(settlement)
    }

    /// Ends `channel`: `final_amount - settled` to the node, the rest of the deposit and the
    /// storage to the user, the records removed.
    fn close(
        &mut self,
        channel: Channel,
        final_amount: u128,
        reason: ChannelCloseReason,
    ) -> Result<Settlement> {
        let channel_id = channel.channel_id;
        let delta = final_amount - channel.settled.0;
        let (settlement, mut payouts) = self.release(&channel, channel.unsettled(), delta)?;
        remove_channel(&channel);
        self.return_storage(
            &channel.user,
            channel.storage_deposit.as_yoctonear(),
            channel.storage_source,
            &mut payouts,
        )?;
        if delta > 0 {
            MarketplaceEvent::ChannelSettled {
                channel_id,
                node_id: channel.node_id,
                settled: U128(final_amount),
                settlement: settlement.clone(),
            }
            .emit();
        }
        MarketplaceEvent::ChannelClosed {
            channel_id,
            reason,
            settled: U128(final_amount),
            refund: settlement.refund,
        }
        .emit();
        self.pay(payouts)?;
        Ok(settlement)
    }

    pub(crate) fn try_start_close(&mut self, channel_id: ChannelId) -> Result<U64> {
        require_one_yocto()?;
        let mut all = channels();
        let mut channel = all
            .get(&channel_id)
            .ok_or(MarketplaceError::ChannelNotFound(channel_id))?;
        let caller: AccountId = env::predecessor_account_id();
        if caller != channel.user {
            return Err(MarketplaceError::NotChannelUser {
                channel_id,
                user: channel.user,
                caller,
            });
        }
        if channel.state != ChannelState::Open {
            return Err(MarketplaceError::ChannelClosing(channel_id));
        }
        let now = env::block_timestamp();
        let ends_ns = U64(now.saturating_add(channel.challenge_period_ns.0));
        channel.state = ChannelState::Closing {
            started_ns: U64(now),
            ends_ns,
        };
        // Same encoded size as `Open` plus two u64: the storage reserve covers it.
        all.insert(&channel_id, &channel);
        MarketplaceEvent::ChannelCloseStarted {
            channel_id,
            ends_ns,
        }
        .emit();
        Ok(ends_ns)
    }

    pub(crate) fn try_finish_close(&mut self, channel_id: ChannelId) -> Result<U128> {
        require_no_deposit()?;
        let channel = channels()
            .get(&channel_id)
            .ok_or(MarketplaceError::ChannelNotFound(channel_id))?;
        let ChannelState::Closing { ends_ns, .. } = channel.state else {
            return Err(MarketplaceError::ChannelNotClosing(channel_id));
        };
        let now = env::block_timestamp();
        if now < ends_ns.0 {
            return Err(MarketplaceError::ChallengePeriodNotOver {
                channel_id,
                ends_ns: ends_ns.0,
                now_ns: now,
            });
        }
        let settled = channel.settled.0;
        let settlement = self.close(channel, settled, ChannelCloseReason::Unilateral)?;
        Ok(settlement.refund)
    }
}

#[near]
impl ChannelApi for Marketplace {
    #[payable]
    fn open_channel(
        &mut self,
        channel: OpenChannelSpec,
        deposit: U128,
    ) -> PromiseOrValue<Option<ChannelId>> {
        self.try_open_channel(channel, deposit).or_panic()
    }

    #[payable]
    fn top_up_channel(&mut self, channel_id: ChannelId) -> U128 {
        let payer = env::predecessor_account_id();
        let amount = env::attached_deposit().as_yoctonear();
        self.try_top_up(
            channel_id,
            &payer,
            enclave_cloud_common::Asset::Near,
            amount,
        )
        .or_panic()
    }

    fn settle_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Settlement {
        self.try_settle_channel(channel_id, voucher, signature)
            .or_panic()
    }

    fn close_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Settlement {
        self.try_close_channel(channel_id, voucher, signature)
            .or_panic()
    }

    #[payable]
    fn start_close(&mut self, channel_id: ChannelId) -> U64 {
        self.try_start_close(channel_id).or_panic()
    }

    fn finish_close(&mut self, channel_id: ChannelId) -> U128 {
        self.try_finish_close(channel_id).or_panic()
    }
}
