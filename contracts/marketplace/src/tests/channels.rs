//! Payment channels: opening (NEAR and token, the node from the cache or the registry),
//! vouchers, settlement splits, cooperative and unilateral close, every refusal, and an
//! attacker with many accounts. The funds invariant is checked after every step.

use ed25519_dalek::SigningKey;
use near_sdk::PromiseOrValue;
use near_sdk::json_types::{Base64VecU8, U64, U128};

use enclave_cloud_common::events::MarketplaceEvent;
use enclave_cloud_common::events::marketplace::ChannelCloseReason;
use enclave_cloud_common::{Asset, ChannelId, Voucher};

use super::*;
use crate::ChannelViewApi;
use crate::channels::{CHANNEL_STORAGE_BYTES, channel_storage_cost};
use crate::state::{
    Channel, ChannelSettings, ChannelState, ConfigPatch, FtMessage, OpenChannelSpec,
};

fn channel_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn open_spec() -> OpenChannelSpec {
    OpenChannelSpec {
        node_id: NODE,
        model_id: model(),
        channel_key: near_key(&channel_key()),
    }
}

fn voucher(channel_id: ChannelId, asset: Asset, amount: u128) -> Voucher {
    Voucher {
        marketplace: acc(MARKET),
        channel_id,
        asset,
        amount: U128(amount),
    }
}

fn signed(key: &SigningKey, v: &Voucher) -> Base64VecU8 {
    Base64VecU8(v.sign(key).to_vec())
}

const DEPOSIT: u128 = NEAR;

impl Harness {
    fn storage_cost(&mut self) -> u128 {
        self.install(USER, 0, vec![]);
        self.contract.channel_storage_deposit().0
    }

    /// `open_channel` in NEAR by `who`, attaching `attached`: `Ok(Some(id))` from the cache,
    /// `Ok(None)` when the registry is asked.
    fn open_near(
        &mut self,
        who: &str,
        spec: OpenChannelSpec,
        deposit: u128,
        attached: u128,
    ) -> Result<Option<ChannelId>, MarketplaceError> {
        self.call(who, attached, |c| {
            c.try_open_channel(spec, U128(deposit)).map(|v| match v {
                PromiseOrValue::Value(id) => Some(id.expect("opened")),
                PromiseOrValue::Promise(_) => None,
            })
        })
    }

    /// The registry answers the pending channel opening (NEAR).
    fn answer_near_opening(&mut self, view: Option<NodeView>) -> Option<ChannelId> {
        assert_eq!(self.calls("get_node").len(), 1, "the registry is asked");
        let opening = self.pending_opening("on_node_for_near_channel");
        self.callback(vec![ok_result(&view)], |c| {
            c.on_node_for_near_channel(opening, Ok(view.clone()))
        })
    }

    fn pending_opening(&self, method: &str) -> crate::channels::open::Opening {
        let index = self
            .self_calls
            .iter()
            .position(|m| m == method)
            .expect("callback scheduled");
        let args: near_sdk::serde_json::Value =
            near_sdk::serde_json::from_str(&self.self_call_args[index]).unwrap();
        near_sdk::serde_json::from_value(args["opening"].clone()).unwrap()
    }

    /// A NEAR channel of DEPOSIT from USER, the node cached by the first opening's registry
    /// round trip (the operator's storage balance pays the cache entry).
    fn near_channel(&mut self) -> ChannelId {
        if self.contract.nodes.get(&NODE).is_none() {
            self.fund_storage(OPERATOR, 100 * MILLI);
        }
        let attached = DEPOSIT + self.storage_cost();
        match self
            .open_near(USER, open_spec(), DEPOSIT, attached)
            .unwrap()
        {
            Some(id) => id,
            None => self
                .answer_near_opening(Some(active_node()))
                .expect("opened"),
        }
    }

    fn channel(&mut self, id: ChannelId) -> Option<Channel> {
        self.install(USER, 0, vec![]);
        self.contract.get_channel(id)
    }

    fn settle_voucher(
        &mut self,
        who: &str,
        id: ChannelId,
        v: Voucher,
        key: &SigningKey,
    ) -> Result<Settlement, MarketplaceError> {
        let sig = signed(key, &v);
        self.call(who, 0, |c| c.try_settle_channel(id, v, sig))
    }

    fn settle_near(&mut self, id: ChannelId, amount: u128) -> Result<Settlement, MarketplaceError> {
        self.settle_voucher(
            OPERATOR,
            id,
            voucher(id, Asset::Near, amount),
            &channel_key(),
        )
    }

    fn close_near(&mut self, id: ChannelId, amount: u128) -> Result<Settlement, MarketplaceError> {
        let v = voucher(id, Asset::Near, amount);
        let sig = signed(&channel_key(), &v);
        self.call(OPERATOR, 0, |c| c.try_close_channel(id, v, sig))
    }

    /// `ft_transfer_call` of `amount` TOKEN from `sender` with `msg`; the token keeps what the
    /// marketplace used. Returns the unused amount, or `None` if the registry is asked.
    fn ft_channel_call(
        &mut self,
        sender: &str,
        amount: u128,
        msg: &FtMessage,
    ) -> Result<Option<U128>, MarketplaceError> {
        let msg = near_sdk::serde_json::to_string(msg).unwrap();
        let result = self.call(TOKEN, 0, |c| {
            c.try_ft_on_transfer(acc(sender), U128(amount), msg)
                .map(|v| match v {
                    PromiseOrValue::Value(v) => Some(v),
                    PromiseOrValue::Promise(_) => None,
                })
        });
        if let Ok(Some(unused)) = &result {
            *self.ft.entry(acc(TOKEN)).or_default() += amount - unused.0;
        }
        result
    }
}

fn token() -> Asset {
    Asset::Ft { token: acc(TOKEN) }
}

#[test]
fn a_near_channel_opens_through_the_registry_then_from_the_cache() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    h.check_funds();
    let storage = h.storage_cost();
    assert_eq!(storage, channel_storage_cost());
    // The excess (here 0.5 NEAR) comes back; nothing is stored before the registry answers.
    let attached = DEPOSIT + storage + NEAR / 2;
    assert_eq!(
        h.open_near(USER, open_spec(), DEPOSIT, attached).unwrap(),
        None
    );
    assert_eq!(h.channel(ChannelId(1)), None);
    h.check_funds_pending(attached);
    let id = h.answer_near_opening(Some(active_node())).unwrap();
    assert_eq!(id, ChannelId(1));
    assert_eq!(h.sent_near(USER), NEAR / 2, "the excess is refunded");
    h.check_funds();
    let channel = h.channel(id).unwrap();
    assert_eq!(channel.deposit.0, DEPOSIT);
    assert_eq!(channel.settled.0, 0);
    assert_eq!(channel.operator, acc(OPERATOR));
    assert_eq!(channel.price, crate::state::NodePrice::from(&price()));
    assert_eq!(channel.token_rate, None);
    assert_eq!(channel.storage_deposit.as_yoctonear(), storage);
    assert_eq!(
        channel.challenge_period_ns.0,
        ChannelSettings::DEFAULT_CHALLENGE_PERIOD_NS
    );
    assert!(matches!(
        h.events.as_slice(),
        [MarketplaceEvent::ChannelOpened { channel_id, deposit, .. }, ..]
            if *channel_id == id && deposit.0 == DEPOSIT
    ));

    // The node is cached now: the second channel opens in the same call.
    let second = h.near_channel();
    assert_eq!(second, ChannelId(2));
    assert!(h.calls("get_node").is_empty());
    h.check_funds();
    h.install(USER, 0, vec![]);
    let mine = h.contract.channels_by_user(acc(USER), None, None);
    assert_eq!(
        mine.iter().map(|c| c.channel_id).collect::<Vec<_>>(),
        [id, second]
    );
    let page = h.contract.channels_by_node(NODE, Some(1), Some(5));
    assert_eq!(
        page.iter().map(|c| c.channel_id).collect::<Vec<_>>(),
        [second]
    );
}

impl Harness {
    /// The funds invariant while an opening waits for the registry: the attached NEAR is in
    /// the balance but not yet in the books (it is the contract's surplus until the callback).
    fn check_funds_pending(&mut self, pending: u128) {
        self.balance -= pending;
        self.check_funds();
        self.balance += pending;
    }
}

#[test]
fn a_refused_opening_refunds_everything() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let attached = DEPOSIT + h.storage_cost();
    // The registry does not know the node.
    h.open_near(USER, open_spec(), DEPOSIT, attached).unwrap();
    assert_eq!(h.answer_near_opening(None), None);
    assert_eq!(h.sent_near(USER), attached);
    h.check_funds();
    // The node does not serve the model.
    let mut other = active_node();
    other.prices[0].model_id = "mistral-7b".parse().unwrap();
    h.open_near(USER, open_spec(), DEPOSIT, attached).unwrap();
    assert_eq!(h.answer_near_opening(Some(other)), None);
    assert_eq!(h.sent_near(USER), attached);
    assert!(
        h.logs.iter().any(|l| l.contains("does not serve model")),
        "{:?}",
        h.logs
    );
    h.check_funds();
    // The node is cached now (without the model): refused at once, nothing to refund.
    let err = h
        .open_near(USER, open_spec(), DEPOSIT, attached)
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::ModelNotServed { .. }),
        "{err}"
    );
    // The registry call failed (the cache expired: the registry is asked again).
    h.advance(crate::state::Config::DEFAULT_NODE_CACHE_TTL_NS);
    h.open_near(USER, open_spec(), DEPOSIT, attached).unwrap();
    let opening = h.pending_opening("on_node_for_near_channel");
    let refused = h.callback(vec![PromiseResult::Failed], |c| {
        c.on_node_for_near_channel(opening, Err(near_sdk::PromiseError::Failed))
    });
    assert_eq!(refused, None);
    assert_eq!(h.sent_near(USER), attached);
    h.check_funds();
    // Refusals consumed no id: the first channel that opens is channel 1.
    assert_eq!(h.near_channel(), ChannelId(1));
    h.check_funds();
}

#[test]
fn openings_are_refused_before_any_registry_call() {
    let mut h = Harness::new();
    let storage = h.storage_cost();
    // Not enough attached for deposit + storage.
    let err = h
        .open_near(USER, open_spec(), DEPOSIT, DEPOSIT + storage - 1)
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InsufficientDeposit { .. }),
        "{err}"
    );
    // Below the minimum deposit.
    let tiny = ChannelSettings::DEFAULT_MIN_DEPOSIT.as_yoctonear() - 1;
    let err = h
        .open_near(USER, open_spec(), tiny, tiny + storage)
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::DepositBelowMinimum { .. }),
        "{err}"
    );
    // A channel key that is not ed25519.
    let mut spec = open_spec();
    spec.channel_key = PublicKey::from_parts(CurveType::SECP256K1, vec![1; 64]).unwrap();
    let err = h
        .open_near(USER, spec, DEPOSIT, DEPOSIT + storage)
        .unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelKeyNotEd25519);
    // Paused: no new channels.
    let pause = ConfigPatch {
        paused: Some(true),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(pause)).unwrap();
    let err = h
        .open_near(USER, open_spec(), DEPOSIT, DEPOSIT + storage)
        .unwrap_err();
    assert_eq!(err, MarketplaceError::Paused);
    assert!(h.calls("get_node").is_empty());
    h.check_funds();
}

#[test]
fn each_settlement_pays_the_difference_split_like_a_job() {
    let mut h = Harness::new();
    let id = h.near_channel();
    h.check_funds();
    // First voucher: 0.1 NEAR. Fee 2%, royalty 5%, the node 93%.
    let first = h.settle_near(id, NEAR / 10).unwrap();
    assert_eq!(first.cost.0, NEAR / 10);
    assert_eq!(first.protocol_fee.0, NEAR / 10 * 2 / 100);
    assert_eq!(first.royalty.0, NEAR / 10 * 5 / 100);
    assert_eq!(first.provider.0, NEAR / 10 * 93 / 100);
    assert_eq!(first.refund.0, 0);
    assert_eq!(h.sent_near(OPERATOR), first.provider.0);
    assert_eq!(h.sent_near(ROYALTY), first.royalty.0);
    assert_eq!(h.sent_near(USER), 0);
    h.check_funds();
    // The second voucher is cumulative: 0.25 NEAR pays 0.15 more.
    let second = h.settle_near(id, NEAR / 4).unwrap();
    assert_eq!(second.cost.0, NEAR / 4 - NEAR / 10);
    assert_eq!(h.sent_near(OPERATOR), second.provider.0);
    assert!(matches!(
        h.events.as_slice(),
        [MarketplaceEvent::ChannelSettled { settled, .. }] if settled.0 == NEAR / 4
    ));
    assert_eq!(h.channel(id).unwrap().settled.0, NEAR / 4);
    h.check_funds();
    // The whole deposit may be owed.
    h.settle_near(id, DEPOSIT).unwrap();
    h.check_funds();
}

#[test]
fn vouchers_are_refused_with_typed_errors() {
    let mut h = Harness::new();
    let id = h.near_channel();
    let other = h.near_channel();
    h.settle_near(id, NEAR / 10).unwrap();
    h.check_funds();

    let over = h.settle_near(id, DEPOSIT + 1).unwrap_err();
    assert_eq!(
        over,
        MarketplaceError::VoucherOverDeposit {
            channel_id: id,
            amount: DEPOSIT + 1,
            deposit: DEPOSIT
        }
    );
    for stale in [NEAR / 10, NEAR / 20] {
        let err = h.settle_near(id, stale).unwrap_err();
        assert!(
            matches!(err, MarketplaceError::VoucherNotAboveSettled { .. }),
            "{err}"
        );
    }
    // A voucher of another channel, even signed by the same key.
    let err = h
        .settle_voucher(
            OPERATOR,
            id,
            voucher(other, Asset::Near, NEAR / 5),
            &channel_key(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        MarketplaceError::VoucherForAnotherChannel {
            channel_id: id,
            voucher_channel: other
        }
    );
    // A voucher of another marketplace deployment.
    let mut elsewhere = voucher(id, Asset::Near, NEAR / 5);
    elsewhere.marketplace = acc("market.testnet");
    let err = h
        .settle_voucher(OPERATOR, id, elsewhere, &channel_key())
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::VoucherForAnotherContract { .. }),
        "{err}"
    );
    // Another asset.
    let err = h
        .settle_voucher(OPERATOR, id, voucher(id, token(), NEAR / 5), &channel_key())
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::VoucherWrongAsset { .. }),
        "{err}"
    );
    // Signed by any other key: the node's own, a stranger's.
    for key in [node_signing_key(), SigningKey::from_bytes(&[1; 32])] {
        let err = h
            .settle_voucher(OPERATOR, id, voucher(id, Asset::Near, NEAR / 5), &key)
            .unwrap_err();
        assert_eq!(
            err,
            MarketplaceError::BadVoucherSignature { channel_id: id }
        );
    }
    // A signature of the wrong length, and a valid signature over a different amount.
    let v = voucher(id, Asset::Near, NEAR / 5);
    let err = h
        .call(OPERATOR, 0, |c| {
            c.try_settle_channel(id, v.clone(), Base64VecU8(vec![0; 63]))
        })
        .unwrap_err();
    assert_eq!(
        err,
        MarketplaceError::BadVoucherSignature { channel_id: id }
    );
    let sig = signed(&channel_key(), &voucher(id, Asset::Near, NEAR / 6));
    let err = h
        .call(OPERATOR, 0, |c| c.try_settle_channel(id, v.clone(), sig))
        .unwrap_err();
    assert_eq!(
        err,
        MarketplaceError::BadVoucherSignature { channel_id: id }
    );
    // Only the node settles: not the user, not a relayer with a valid voucher.
    for who in [USER, RELAYER] {
        let err = h
            .settle_voucher(who, id, v.clone(), &channel_key())
            .unwrap_err();
        assert!(
            matches!(err, MarketplaceError::NotChannelNode { .. }),
            "{err}"
        );
    }
    // Unknown channel.
    let err = h.settle_near(ChannelId(99), NEAR / 5).unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelNotFound(ChannelId(99)));
    // No deposit on settle.
    let sig = signed(&channel_key(), &v);
    let err = h
        .call(OPERATOR, 1, |c| c.try_settle_channel(id, v.clone(), sig))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::UnexpectedDeposit(_)),
        "{err}"
    );
    assert_eq!(h.channel(id).unwrap().settled.0, NEAR / 10, "nothing moved");
    h.check_funds();
}

#[test]
fn top_ups_come_from_the_user_and_stop_when_closing() {
    let mut h = Harness::new();
    let id = h.near_channel();
    let deposit = h
        .call(USER, NEAR, |c| {
            c.try_top_up(id, &acc(USER), Asset::Near, NEAR)
        })
        .unwrap();
    assert_eq!(deposit.0, 2 * DEPOSIT);
    assert!(matches!(
        h.events.as_slice(),
        [MarketplaceEvent::ChannelToppedUp { amount, .. }] if amount.0 == NEAR
    ));
    h.check_funds();
    // A voucher up to the new deposit settles.
    h.settle_near(id, DEPOSIT + NEAR / 2).unwrap();
    h.check_funds();
    let err = h
        .call(RELAYER, NEAR, |c| {
            c.try_top_up(id, &acc(RELAYER), Asset::Near, NEAR)
        })
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotChannelUser { .. }),
        "{err}"
    );
    let err = h
        .call(USER, 0, |c| c.try_top_up(id, &acc(USER), Asset::Near, 0))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InvalidArgument { .. }),
        "{err}"
    );
    h.call(USER, 1, |c| c.try_start_close(id)).unwrap();
    h.check_funds();
    let err = h
        .call(USER, NEAR, |c| {
            c.try_top_up(id, &acc(USER), Asset::Near, NEAR)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelClosing(id));
    let err = h
        .call(USER, NEAR, |c| {
            c.try_top_up(ChannelId(9), &acc(USER), Asset::Near, NEAR)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelNotFound(ChannelId(9)));
    h.check_funds();
}

#[test]
fn the_node_closes_with_its_final_voucher() {
    let mut h = Harness::new();
    let id = h.near_channel();
    h.settle_near(id, NEAR / 10).unwrap();
    h.check_funds();
    let storage = h.storage_cost();
    // Below what was settled: refused; only the node closes cooperatively.
    let err = h.close_near(id, NEAR / 20).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::VoucherNotAboveSettled { .. }),
        "{err}"
    );
    let v = voucher(id, Asset::Near, NEAR / 5);
    let sig = signed(&channel_key(), &v);
    let err = h
        .call(USER, 0, |c| c.try_close_channel(id, v, sig))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotChannelNode { .. }),
        "{err}"
    );
    let last = h.close_near(id, NEAR / 4).unwrap();
    assert_eq!(last.cost.0, NEAR / 4 - NEAR / 10);
    assert_eq!(last.refund.0, DEPOSIT - NEAR / 4);
    assert_eq!(h.sent_near(OPERATOR), last.provider.0);
    assert_eq!(
        h.sent_near(USER),
        last.refund.0 + storage,
        "rest and storage back"
    );
    assert!(matches!(
        h.events.as_slice(),
        [
            MarketplaceEvent::ChannelSettled { .. },
            MarketplaceEvent::ChannelClosed { reason: ChannelCloseReason::Cooperative, settled, refund, .. }
        ] if settled.0 == NEAR / 4 && refund.0 == DEPOSIT - NEAR / 4
    ));
    assert_eq!(h.channel(id), None);
    h.install(USER, 0, vec![]);
    assert!(
        h.contract
            .channels_by_user(acc(USER), None, None)
            .is_empty()
    );
    assert!(h.contract.channels_by_node(NODE, None, None).is_empty());
    h.check_funds();
    let err = h.settle_near(id, NEAR / 2).unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelNotFound(id));
    // Ids are never reused.
    assert_eq!(h.near_channel(), ChannelId(2));
    // A final voucher equal to what was settled closes without a settlement.
    let id = ChannelId(2);
    h.settle_near(id, NEAR / 10).unwrap();
    let last = h.close_near(id, NEAR / 10).unwrap();
    assert_eq!(last.cost.0, 0);
    assert_eq!(last.refund.0, DEPOSIT - NEAR / 10);
    assert!(matches!(
        h.events.as_slice(),
        [MarketplaceEvent::ChannelClosed { .. }]
    ));
    h.check_funds();
}

#[test]
fn the_user_closes_alone_after_the_challenge_period() {
    let mut h = Harness::new();
    let id = h.near_channel();
    h.settle_near(id, NEAR / 10).unwrap();
    let storage = h.storage_cost();
    // Only the user starts a close, with one yoctoNEAR.
    let err = h.call(OPERATOR, 1, |c| c.try_start_close(id)).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotChannelUser { .. }),
        "{err}"
    );
    let err = h.call(USER, 0, |c| c.try_start_close(id)).unwrap_err();
    assert_eq!(err, MarketplaceError::OneYoctoRequired);
    let err = h.call(USER, 0, |c| c.try_finish_close(id)).unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelNotClosing(id));
    let ends = h.call(USER, 1, |c| c.try_start_close(id)).unwrap();
    let period = ChannelSettings::DEFAULT_CHALLENGE_PERIOD_NS;
    assert_eq!(ends.0, h.now + period);
    assert!(matches!(
        h.channel(id).unwrap().state,
        ChannelState::Closing { .. }
    ));
    let err = h.call(USER, 1, |c| c.try_start_close(id)).unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelClosing(id));
    h.check_funds();
    // During the period the node may still settle.
    h.advance(period / 2);
    h.settle_near(id, NEAR / 5).unwrap();
    h.check_funds();
    let err = h.call(RELAYER, 0, |c| c.try_finish_close(id)).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::ChallengePeriodNotOver { .. }),
        "{err}"
    );
    // After it, the node no longer settles and anyone may finish: the user gets the deposit
    // minus what was settled, and the storage.
    h.advance(period / 2);
    let err = h.settle_near(id, NEAR / 4).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::ChallengePeriodOver { .. }),
        "{err}"
    );
    let err = h.close_near(id, NEAR / 4).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::ChallengePeriodOver { .. }),
        "{err}"
    );
    let refund = h.call(RELAYER, 0, |c| c.try_finish_close(id)).unwrap();
    assert_eq!(refund.0, DEPOSIT - NEAR / 5);
    assert_eq!(h.sent_near(USER), DEPOSIT - NEAR / 5 + storage);
    assert_eq!(h.sent_near(OPERATOR), 0);
    assert!(matches!(
        h.events.as_slice(),
        [MarketplaceEvent::ChannelClosed {
            reason: ChannelCloseReason::Unilateral,
            ..
        }]
    ));
    assert_eq!(h.channel(id), None);
    h.check_funds();
    let err = h.call(RELAYER, 0, |c| c.try_finish_close(id)).unwrap_err();
    assert_eq!(err, MarketplaceError::ChannelNotFound(id));
}

#[test]
fn a_channel_keeps_the_challenge_period_it_opened_with() {
    let mut h = Harness::new();
    let old = h.near_channel();
    // Applied at once, even beside a critical field (which is queued, as before).
    let hour = 3600 * SECOND;
    use enclave_cloud_common::governance::{self as gov, Change};
    h.call(OWNER, 1, |c| {
        gov::propose(
            c,
            Change::SetDelay {
                delay_ns: U64(hour),
            },
        )
        .map_err(Into::into)
    })
    .unwrap();
    let patch = ConfigPatch {
        channel_challenge_period_ns: Some(U64(hour)),
        min_channel_deposit: Some(NearToken::from_near(1)),
        treasury: Some(acc("dao.near")),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(patch)).unwrap();
    h.install(USER, 0, vec![]);
    assert_eq!(
        h.contract.channel_settings(),
        ChannelSettings {
            challenge_period_ns: U64(hour),
            min_deposit: NearToken::from_near(1)
        }
    );
    assert_eq!(h.contract.get_config().treasury, acc(TREASURY), "queued");
    let new = h.near_channel();
    assert_eq!(h.channel(new).unwrap().challenge_period_ns.0, hour);
    assert_eq!(
        h.channel(old).unwrap().challenge_period_ns.0,
        ChannelSettings::DEFAULT_CHALLENGE_PERIOD_NS
    );
    for bad in [0, ChannelSettings::MAX_CHALLENGE_PERIOD_NS + 1] {
        let patch = ConfigPatch {
            channel_challenge_period_ns: Some(U64(bad)),
            ..Default::default()
        };
        let err = h
            .call(OWNER, 1, |c| c.try_update_config(patch))
            .unwrap_err();
        assert!(
            matches!(err, MarketplaceError::InvalidArgument { .. }),
            "{err}"
        );
    }
    let patch = ConfigPatch {
        channel_challenge_period_ns: Some(U64(hour)),
        ..Default::default()
    };
    let err = h.call(USER, 1, |c| c.try_update_config(patch)).unwrap_err();
    assert!(matches!(err, MarketplaceError::NotOwner { .. }), "{err}");
    h.check_funds();
}

#[test]
fn a_token_channel_opens_settles_tops_up_and_closes_in_the_token() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    // Cache the node through a NEAR channel first? No: the token path asks the registry too.
    let units = 3_000_000; // one NEAR's worth at 3_000_000 units per NEAR
    let msg = FtMessage::OpenChannel(open_spec());
    // The storage comes from the user's storage balance.
    let err = h.ft_channel_call(USER, units, &msg).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InsufficientStorageBalance { .. }),
        "{err}"
    );
    let storage = h.storage_cost();
    h.fund_storage(USER, storage + 10 * MILLI);
    h.install(USER, 0, vec![]);
    let balance_before = h.contract.storage_balance_of(acc(USER)).0;
    assert_eq!(h.ft_channel_call(USER, units, &msg).unwrap(), None);
    let opening = h.pending_opening("on_node_for_token_channel");
    let unused = h.callback(vec![ok_result(&Some(active_node()))], |c| {
        c.on_node_for_token_channel(opening, Ok(Some(active_node())))
    });
    assert_eq!(unused.0, 0, "the token keeps everything");
    *h.ft.entry(acc(TOKEN)).or_default() += units;
    h.check_funds();
    let id = ChannelId(1);
    let channel = h.channel(id).unwrap();
    assert_eq!(channel.asset, token());
    assert_eq!(channel.token_rate.unwrap().units_per_near.0, 3_000_000);
    h.install(USER, 0, vec![]);
    assert_eq!(
        h.contract.storage_balance_of(acc(USER)).0,
        balance_before - storage
    );
    // Below the minimum at the token's rate (0.01 NEAR = 30_000 units); the node is cached now.
    let err = h.ft_channel_call(USER, 29_999, &msg).unwrap_err();
    assert!(
        matches!(
            err,
            MarketplaceError::DepositBelowMinimum {
                minimum: 30_000,
                ..
            }
        ),
        "{err}"
    );

    let key = channel_key();
    let s = h
        .settle_voucher(OPERATOR, id, voucher(id, token(), 1_000_000), &key)
        .unwrap();
    assert_eq!(
        (s.protocol_fee.0, s.royalty.0, s.provider.0),
        (20_000, 50_000, 930_000)
    );
    let paid: Vec<_> = h.calls("ft_transfer");
    assert_eq!(
        paid.len(),
        2,
        "provider and royalty, in the token: {paid:?}"
    );
    h.check_funds();
    // A NEAR voucher for a token channel is refused.
    let err = h
        .settle_voucher(OPERATOR, id, voucher(id, Asset::Near, 2_000_000), &key)
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::VoucherWrongAsset { .. }),
        "{err}"
    );
    // Top-up in the token; NEAR to a token channel is refused.
    let top = FtMessage::TopUpChannel { channel_id: id };
    assert_eq!(
        h.ft_channel_call(USER, 1_000_000, &top).unwrap(),
        Some(U128(0))
    );
    assert_eq!(h.channel(id).unwrap().deposit.0, units + 1_000_000);
    h.check_funds();
    let err = h
        .call(USER, NEAR, |c| {
            c.try_top_up(id, &acc(USER), Asset::Near, NEAR)
        })
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::WrongChannelAsset { .. }),
        "{err}"
    );
    let err = h.ft_channel_call(RELAYER, 10, &top).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotChannelUser { .. }),
        "{err}"
    );
    // Close: the rest in the token to the user, the storage back to the storage balance.
    let v = voucher(id, token(), 1_500_000);
    let sig = signed(&key, &v);
    let last = h
        .call(OPERATOR, 0, |c| c.try_close_channel(id, v, sig))
        .unwrap();
    assert_eq!(last.refund.0, units + 1_000_000 - 1_500_000);
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.storage_balance_of(acc(USER)).0, balance_before);
    h.check_funds();
}

#[test]
fn a_refused_token_opening_returns_the_tokens() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let storage = h.storage_cost();
    h.fund_storage(USER, storage + 10 * MILLI);
    let msg = FtMessage::OpenChannel(open_spec());
    assert_eq!(h.ft_channel_call(USER, 3_000_000, &msg).unwrap(), None);
    let opening = h.pending_opening("on_node_for_token_channel");
    // Meanwhile the user withdrew the storage balance: refused in the callback, all returned.
    h.install(USER, 0, vec![]);
    let all = h.contract.storage_balance_of(acc(USER));
    h.call(USER, 1, |c| c.try_storage_withdraw(Some(all)))
        .unwrap();
    let unused = h.callback(vec![ok_result(&Some(active_node()))], |c| {
        c.on_node_for_token_channel(opening, Ok(Some(active_node())))
    });
    assert_eq!(unused.0, 3_000_000);
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.get_channel(ChannelId(1)), None);
    h.check_funds();
}

/// An attacker with many accounts opens tiny channels to flood a node (or the contract's
/// storage): each one must pay the minimum deposit and its own storage, so the contract's own
/// balance never pays, and closing returns exactly what was paid.
#[test]
fn many_accounts_opening_tiny_channels_pay_for_everything() {
    let mut h = Harness::new();
    h.near_channel();
    let storage = h.storage_cost();
    let minimum = ChannelSettings::DEFAULT_MIN_DEPOSIT.as_yoctonear();
    let attackers: Vec<String> = (0..20).map(|i| format!("sybil-{i}.near")).collect();
    for who in &attackers {
        let err = h
            .open_near(who, open_spec(), minimum - 1, minimum - 1 + storage)
            .unwrap_err();
        assert!(
            matches!(err, MarketplaceError::DepositBelowMinimum { .. }),
            "{err}"
        );
        let err = h
            .open_near(who, open_spec(), minimum, minimum + storage - 1)
            .unwrap_err();
        assert!(
            matches!(err, MarketplaceError::InsufficientDeposit { .. }),
            "{err}"
        );
        h.open_near(who, open_spec(), minimum, minimum + storage)
            .unwrap()
            .expect("the node is cached");
        // check_funds asserts the contract's own balance did not move and every stored
        // byte is paid for.
        h.check_funds();
    }
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.channels_by_node(NODE, None, None).len(), 21);
    assert_eq!(
        h.contract.channels_by_node(NODE, Some(0), Some(500)).len(),
        21
    );
    // Each gets exactly its deposit and storage back when it closes (the node is away).
    for (i, who) in attackers.iter().enumerate() {
        let id = ChannelId(i as u64 + 2);
        h.call(who, 1, |c| c.try_start_close(id)).unwrap();
    }
    h.advance(ChannelSettings::DEFAULT_CHALLENGE_PERIOD_NS);
    for (i, who) in attackers.iter().enumerate() {
        let id = ChannelId(i as u64 + 2);
        h.call(RELAYER, 0, |c| c.try_finish_close(id)).unwrap();
        assert_eq!(h.sent_near(who), minimum + storage);
        h.check_funds();
    }
}

/// The flat storage charge covers the largest channel: 64-character accounts, a token asset
/// with a 64-character id, and the index headers of a new user and a new node.
#[test]
fn the_storage_charge_covers_the_longest_channel() {
    let mut h = Harness::new();
    let long_user = format!("{}.near", "u".repeat(59));
    let long_token = format!("{}.near", "t".repeat(59));
    let long_op = format!("{}.near", "o".repeat(59));
    assert_eq!(long_user.len(), 64);
    h.call(OWNER, 1, |c| {
        c.try_set_accepted_token(
            acc(&long_token),
            Some(crate::state::TokenRate {
                units_per_near: U128(NEAR),
            }),
        )
    })
    .unwrap();
    let mut view = active_node();
    view.operator = acc(&long_op);
    h.fund_storage(&long_op, 100 * MILLI);
    h.fund_storage(&long_user, NEAR);
    let msg = near_sdk::serde_json::to_string(&FtMessage::OpenChannel(open_spec())).unwrap();
    h.call(&long_token, 0, |c| {
        c.try_ft_on_transfer(acc(&long_user), U128(NEAR), msg)
            .map(|_| ())
    })
    .unwrap();
    let opening = h.pending_opening("on_node_for_token_channel");
    // Measure what the callback stores beside the node cache entry.
    h.install(MARKET, 0, vec![ok_result(&Some(view.clone()))]);
    let cache = {
        let before = env::storage_usage();
        h.contract
            .cache_from_registry(NODE, Ok(Some(view.clone())), h.now)
            .unwrap();
        env::storage_usage() - before
    };
    let node = h.contract.nodes.get(&NODE).unwrap();
    let before = env::storage_usage();
    h.contract.open_with(&node, opening).unwrap();
    let used = env::storage_usage() - before;
    assert!(cache > 0);
    // The book record (first channel) is the marketplace's own; the rest is the channel's.
    let book = (borsh::to_vec(&crate::channels::ChannelBook::default())
        .unwrap()
        .len()
        + 1
        + 40) as u64;
    assert!(
        used - book <= CHANNEL_STORAGE_BYTES,
        "a channel used {} bytes, {CHANNEL_STORAGE_BYTES} are charged",
        used - book
    );
    // Closing states a few bytes larger still fit.
    assert!(used - book + 16 <= CHANNEL_STORAGE_BYTES);
}

/// Pausing stops new money (openings, top-ups), never the way out: the node still settles and
/// closes, the user still closes alone.
#[test]
fn a_paused_marketplace_still_settles_and_closes_channels() {
    let mut h = Harness::new();
    let coop = h.near_channel();
    let alone = h.near_channel();
    let pause = ConfigPatch {
        paused: Some(true),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(pause)).unwrap();
    let err = h
        .call(USER, NEAR, |c| {
            c.try_top_up(coop, &acc(USER), Asset::Near, NEAR)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::Paused);
    h.settle_near(coop, NEAR / 10).unwrap();
    h.close_near(coop, NEAR / 5).unwrap();
    h.check_funds();
    h.call(USER, 1, |c| c.try_start_close(alone)).unwrap();
    h.advance(ChannelSettings::DEFAULT_CHALLENGE_PERIOD_NS);
    let refund = h.call(USER, 0, |c| c.try_finish_close(alone)).unwrap();
    assert_eq!(refund.0, DEPOSIT);
    h.check_funds();
}
