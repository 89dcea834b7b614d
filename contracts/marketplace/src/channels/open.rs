//! Opening channels (NEAR or token, the node from the cache or the registry) and top-ups.

use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, NearToken, PromiseError, PromiseOrValue, env, near};

use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::{NodeView, ext_registry};
use enclave_cloud_common::{Asset, ChannelId};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::channels::{ChannelBook, channel_storage_cost, channels, insert_channel};
use crate::errors::{MarketplaceError, Result};
use crate::funds::inc;
use crate::refs::ed25519_key;
use crate::settlement::to_asset_units;
use crate::state::{
    CachedNode, Channel, ChannelState, OpenChannelSpec, Payout, PayoutKind, StorageSource,
    TokenRate,
};
use crate::{GAS_GET_NODE, GAS_ON_NODE_FOR_CHANNEL, Marketplace};

/// A channel about to open: everything the registry's callback needs to open it or refund.
#[near(serializers = [json])]
#[derive(Debug, Clone)]
pub struct Opening {
    pub user: AccountId,
    pub spec: OpenChannelSpec,
    pub asset: Asset,
    pub token_rate: Option<TokenRate>,
    pub deposit: U128,
    /// NEAR attached to `open_channel` (deposit + storage + excess); `None` for a token
    /// channel, whose storage comes from the user's storage balance.
    pub attached: Option<U128>,
}

impl Marketplace {
    pub(crate) fn try_open_channel(
        &mut self,
        spec: OpenChannelSpec,
        deposit: U128,
    ) -> Result<PromiseOrValue<Option<ChannelId>>> {
        let opening = Opening {
            user: env::predecessor_account_id(),
            spec,
            asset: Asset::Near,
            token_rate: None,
            deposit,
            attached: Some(U128(env::attached_deposit().as_yoctonear())),
        };
        self.check_opening(&opening)?;
        let Some(node) = self.fresh_node(&opening) else {
            // Nothing is written before the registry answers: the NEAR waits in the balance
            // (outside the ledger) and the callback books it, opening or refunding.
            let node_id = opening.spec.node_id;
            let promise = ext_registry::ext(self.config.registry.clone())
                .with_static_gas(GAS_GET_NODE)
                .get_node(node_id)
                .then(
                    Self::ext(env::current_account_id())
                        .with_static_gas(GAS_ON_NODE_FOR_CHANNEL)
                        .on_node_for_near_channel(opening),
                );
            return Ok(PromiseOrValue::Promise(promise));
        };
        let id = self.open_with(&node, opening)?;
        Ok(PromiseOrValue::Value(Some(id)))
    }

    /// `ft_on_transfer` with `FtMessage::OpenChannel`: the whole amount is the deposit.
    /// Returns the unused amount (all of it if the channel was refused in the callback).
    pub(crate) fn try_ft_open_channel(
        &mut self,
        sender: AccountId,
        token: AccountId,
        rate: TokenRate,
        amount: U128,
        spec: OpenChannelSpec,
    ) -> Result<PromiseOrValue<U128>> {
        let opening = Opening {
            user: sender,
            spec,
            asset: Asset::Ft { token },
            token_rate: Some(rate),
            deposit: amount,
            attached: None,
        };
        self.check_opening(&opening)?;
        let Some(node) = self.fresh_node(&opening) else {
            let node_id = opening.spec.node_id;
            let promise = ext_registry::ext(self.config.registry.clone())
                .with_static_gas(GAS_GET_NODE)
                .get_node(node_id)
                .then(
                    Self::ext(env::current_account_id())
                        .with_static_gas(GAS_ON_NODE_FOR_CHANNEL)
                        .on_node_for_token_channel(opening),
                );
            return Ok(PromiseOrValue::Promise(promise));
        };
        self.open_with(&node, opening)?;
        Ok(PromiseOrValue::Value(U128(0)))
    }

    fn fresh_node(&self, opening: &Opening) -> Option<CachedNode> {
        let now = env::block_timestamp();
        self.nodes
            .get(&opening.spec.node_id)
            .filter(|n| n.is_fresh(now))
    }

    /// Everything that can refuse an opening without the node: checked before the registry
    /// is asked (fail early, nothing spent) and again in `open_with` (balances may have moved).
    fn check_opening(&self, opening: &Opening) -> Result<()> {
        self.require_not_paused()?;
        if ed25519_key(&opening.spec.channel_key).is_none() {
            return Err(MarketplaceError::ChannelKeyNotEd25519);
        }
        let settings = ChannelBook::load().settings;
        // A token minimum is the NEAR minimum at the token's rate (rounded down, at least 1).
        let minimum = to_asset_units(
            Some(settings.min_deposit.as_yoctonear()),
            opening.token_rate.as_ref(),
        )
        .unwrap_or(u128::MAX)
        .max(1);
        let deposit = opening.deposit.0;
        if deposit < minimum {
            return Err(MarketplaceError::DepositBelowMinimum { deposit, minimum });
        }
        let storage = channel_storage_cost();
        match opening.attached {
            Some(attached) => {
                let needed = deposit
                    .checked_add(storage)
                    .ok_or(MarketplaceError::Overflow("deposit + storage"))?;
                if attached.0 < needed {
                    return Err(MarketplaceError::InsufficientDeposit {
                        attached: attached.0,
                        needed,
                    });
                }
            }
            None => {
                let available = self.storage_balances.get(&opening.user).map_or(0, |b| b.0);
                if available < storage {
                    return Err(MarketplaceError::InsufficientStorageBalance {
                        account: opening.user.clone(),
                        available,
                        needed: storage,
                    });
                }
            }
        }
        Ok(())
    }

    /// Opens the channel with a fresh node. Every check comes before the first write, and the
    /// ledger's new figures are computed before any is stored, so a refusal (in a callback,
    /// which must not panic) leaves no trace.
    pub(crate) fn open_with(&mut self, node: &CachedNode, opening: Opening) -> Result<ChannelId> {
        self.check_opening(&opening)?;
        let now = env::block_timestamp();
        let node_id = node.node_id;
        if !node.is_fresh(now) {
            return Err(MarketplaceError::NodeNotCached { node_id });
        }
        let Opening {
            user,
            spec,
            asset,
            token_rate,
            deposit,
            attached,
        } = opening;
        let price =
            node.price_of(&spec.model_id)
                .ok_or_else(|| MarketplaceError::ModelNotServed {
                    node_id,
                    model_id: spec.model_id.clone(),
                })?;
        let storage = channel_storage_cost();
        // What enters the ledger: the attached NEAR (deposit, storage, and an excess that goes
        // straight back), or the transferred tokens.
        let (entering, source) = match attached {
            Some(attached) => (attached.0, StorageSource::Attached),
            None => (deposit.0, StorageSource::Balance),
        };
        let mut ledger = *self.ledger_mut(&asset);
        inc(&mut ledger.held, entering)?;
        inc(&mut ledger.escrow, deposit.0)?;
        if source == StorageSource::Attached {
            inc(&mut ledger.storage, storage)?;
        } else {
            // The storage moves from the user's balance to the channel: same bucket.
            self.charge_storage_balance(&user, storage)?;
        }
        // Checked: no refusal from here on.
        *self.ledger_mut(&asset) = ledger;

        let mut book = ChannelBook::load();
        let channel_id = book.next_channel_id;
        book.next_channel_id = channel_id.next();
        let challenge_period_ns = book.settings.challenge_period_ns;
        let channel = Channel {
            channel_id,
            user: user.clone(),
            node_id,
            operator: node.operator.clone(),
            model_id: spec.model_id,
            channel_key: spec.channel_key,
            asset,
            price,
            token_rate,
            deposit,
            settled: U128(0),
            storage_deposit: NearToken::from_yoctonear(storage),
            storage_source: source,
            challenge_period_ns,
            opened_ns: U64(now),
            state: ChannelState::Open,
        };
        insert_channel(&mut book, &channel);
        MarketplaceEvent::ChannelOpened {
            channel_id,
            user: user.clone(),
            node_id,
            operator: channel.operator.clone(),
            model_id: channel.model_id.clone(),
            asset: channel.asset.clone(),
            deposit,
            channel_key: channel.channel_key.clone(),
            price,
            token_rate,
            challenge_period_ns,
        }
        .emit();
        if source == StorageSource::Attached {
            let excess = entering - deposit.0 - storage;
            self.pay(vec![Payout {
                account: user,
                asset: Asset::Near,
                amount: U128(excess),
                kind: PayoutKind::Transfer,
            }])?;
        }
        Ok(channel_id)
    }

    /// The registry's answer, cached (the entry paid from the operator's storage balance, as
    /// for claims), then the opening.
    fn open_from_registry(
        &mut self,
        opening: Opening,
        answer: std::result::Result<Option<NodeView>, PromiseError>,
    ) -> Result<ChannelId> {
        let node_id = opening.spec.node_id;
        let node = self.cache_from_registry(node_id, answer, env::block_timestamp())?;
        self.open_with(&node, opening)
    }

    pub(crate) fn try_top_up(
        &mut self,
        channel_id: ChannelId,
        payer: &AccountId,
        paid: Asset,
        amount: u128,
    ) -> Result<U128> {
        self.require_not_paused()?;
        let mut all = channels();
        let mut channel = all
            .get(&channel_id)
            .ok_or(MarketplaceError::ChannelNotFound(channel_id))?;
        if *payer != channel.user {
            return Err(MarketplaceError::NotChannelUser {
                channel_id,
                user: channel.user,
                caller: payer.clone(),
            });
        }
        if paid != channel.asset {
            return Err(MarketplaceError::WrongChannelAsset {
                channel_id,
                channel: channel.asset,
                paid,
            });
        }
        if channel.state != ChannelState::Open {
            return Err(MarketplaceError::ChannelClosing(channel_id));
        }
        if amount == 0 {
            return Err(crate::errors::invalid(
                "deposit",
                "attach the amount to add",
            ));
        }
        inc(&mut channel.deposit, amount)?;
        let ledger = self.ledger_mut(&paid);
        inc(&mut ledger.held, amount)?;
        inc(&mut ledger.escrow, amount)?;
        all.insert(&channel_id, &channel);
        MarketplaceEvent::ChannelToppedUp {
            channel_id,
            amount: U128(amount),
            deposit: channel.deposit,
        }
        .emit();
        Ok(channel.deposit)
    }
}

#[near]
impl Marketplace {
    /// Callback of a NEAR `open_channel` that needed the registry. Private. Never panics: the
    /// channel opens, or the attached NEAR goes back to the user (and `None` is returned).
    #[private]
    pub fn on_node_for_near_channel(
        &mut self,
        opening: Opening,
        #[callback_result] answer: Result<Option<NodeView>, PromiseError>,
    ) -> Option<ChannelId> {
        let user = opening.user.clone();
        let attached = opening.attached.map_or(0, |a| a.0);
        match self.open_from_registry(opening, answer) {
            Ok(id) => Some(id),
            Err(e) => {
                env::log_str(&format!(
                    "channel not opened, {attached} yoctoNEAR refunded: {e}"
                ));
                // The NEAR arrived with the call; it enters the books only to leave at once.
                let refunded =
                    inc(&mut self.ledger_mut(&Asset::Near).held, attached).and_then(|()| {
                        self.pay(vec![Payout {
                            account: user,
                            asset: Asset::Near,
                            amount: U128(attached),
                            kind: PayoutKind::Transfer,
                        }])
                    });
                if let Err(e) = refunded {
                    env::log_str(&format!("ledger error: refund not sent: {e}"));
                }
                None
            }
        }
    }

    /// Callback of a token channel opening that needed the registry. Private. Returns the
    /// unused amount to the token (`ft_resolve_transfer` refunds it): 0 when the channel
    /// opened, everything when it was refused.
    #[private]
    pub fn on_node_for_token_channel(
        &mut self,
        opening: Opening,
        #[callback_result] answer: Result<Option<NodeView>, PromiseError>,
    ) -> U128 {
        let amount = opening.deposit;
        match self.open_from_registry(opening, answer) {
            Ok(_) => U128(0),
            Err(e) => {
                env::log_str(&format!("channel not opened, {} refunded: {e}", amount.0));
                amount
            }
        }
    }
}
