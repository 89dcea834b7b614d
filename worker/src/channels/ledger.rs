//! The node's side of payment channels, per request: check the payment a sealed request
//! carries, reserve its maximum cost, bill what was served.
//!
//! For a request on channel `c` with sequence `n`, body `b` and (optional) voucher `v`:
//! 1. `c` is this node's channel, open, on this marketplace (`get_channel`, cached for
//!    [`PaymentConfig::view_ttl`], fetched again when a voucher is above the deposit seen,
//!    in case of a top-up);
//! 2. the channel key signed `RequestAuthorization(c, n, sha256(b))`, and `n` was never
//!    served (401 / 409);
//! 3. `v`, if any, is the channel key's voucher for `c` and at most the deposit (401 / 402);
//!    the largest is kept (out-of-order vouchers are fine);
//! 4. the request's maximum cost fits in `min(credit limit, deposit - newest voucher)` minus
//!    the billed work no voucher covers yet minus the other requests in flight (402); a
//!    chat completion's `max_tokens` is lowered to what fits, so a stream ends with
//!    `finish_reason: "length"` instead of running past it;
//! 5. `n` and the voucher are written to the channel's record (durably) before serving.
//!
//! The [`Reservation`] then bills the actual usage ([`response_cost`]); one dropped unbilled
//! (an error before any output) is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use enclave_cloud_common::interfaces::marketplace::{Channel, ChannelState};
use enclave_cloud_common::pricing::to_asset_units;
use enclave_cloud_common::{ChannelId, NodeId};
use near_sdk::AccountId;
use near_sdk::json_types::U128;
use protocol::channel_api::{
    BilledUsage, ChannelPayment, PaymentHeaderError, VoucherUpdate, max_request_cost, response_cost,
};
use tokio::sync::Notify;

use super::chain::ChannelSource;
use super::store::{ChannelRecord, ChannelStore, StoreError, StoredVoucher, VoucherSignature};

/// What the node accepts.
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    pub marketplace: AccountId,
    pub node_id: NodeId,
    /// The most unpaid work (billed, not yet covered by a voucher, plus requests in flight)
    /// the node carries per channel, yoctoNEAR (converted into a token channel's asset at
    /// its rate).
    pub credit_limit_yocto: u128,
    /// How long a `get_channel` answer is trusted.
    pub view_ttl: Duration,
}

/// Why a paid request was refused: 401 (payment or signature), 402 (deposit or credit),
/// 409 (replayed, channel closing), 5xx (the node's own trouble).
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment: {0}; send the channel headers of protocol::channel_api")]
    Header(#[from] PaymentHeaderError),
    #[error("channel {0} does not exist on this node's marketplace")]
    UnknownChannel(ChannelId),
    #[error("channel {0} is not a channel to this node")]
    NotThisNode(ChannelId),
    #[error("channel {0}'s key is not an ed25519 key")]
    ChannelKey(ChannelId),
    #[error("the request signature is not the channel key's over this channel, sequence and body")]
    RequestSignature,
    #[error("the voucher is not the channel key's signature over this channel's voucher")]
    VoucherSignature,
    #[error("the voucher ({amount}) is above the channel's deposit ({deposit}): top up first")]
    VoucherOverDeposit { amount: u128, deposit: u128 },
    #[error(
        "not enough credit on channel {channel_id}: this request may cost up to {needed}, \
         {available} is available (send a newer voucher or top up the channel)"
    )]
    InsufficientCredit {
        channel_id: ChannelId,
        needed: u128,
        available: u128,
    },
    #[error("sequence {sequence} was already served on channel {channel_id}")]
    Replayed {
        channel_id: ChannelId,
        sequence: u64,
    },
    #[error("channel {0} is closing: the node no longer serves it")]
    Closing(ChannelId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the chain could not be read: {0}")]
    Chain(String),
}

impl PaymentError {
    /// HTTP status and the OpenAI error `code`.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            Self::Header(_) => (401, "payment_required_headers"),
            Self::UnknownChannel(_) => (401, "unknown_channel"),
            Self::NotThisNode(_) => (401, "wrong_node"),
            Self::ChannelKey(_) => (401, "invalid_channel_key"),
            Self::RequestSignature => (401, "invalid_request_signature"),
            Self::VoucherSignature => (401, "invalid_voucher"),
            Self::VoucherOverDeposit { .. } => (402, "voucher_over_deposit"),
            Self::InsufficientCredit { .. } => (402, "insufficient_credit"),
            Self::Replayed { .. } => (409, "replayed_sequence"),
            Self::Closing(_) => (409, "channel_closing"),
            Self::Store(_) => (500, "payment_store"),
            Self::Chain(_) => (503, "chain_unavailable"),
        }
    }
}

/// One channel's state in memory: its durable record and what only lives while serving.
#[derive(Debug)]
pub(crate) struct Book {
    pub record: ChannelRecord,
    /// Maximum costs of the requests in flight.
    pub reserved: u128,
    /// The channel's close has started: nothing more is served; settle at once.
    pub closing: bool,
    /// Settle at the next pass whatever the batch thresholds (restart, close).
    pub settle_now: bool,
    /// When the newest voucher first went above what was settled.
    pub unsettled_since: Option<Instant>,
}

struct CachedView {
    channel: Arc<Channel>,
    fetched: Instant,
}

/// Payment checks, reservations and billing of every channel of this node.
pub struct Payments {
    config: PaymentConfig,
    source: Arc<dyn ChannelSource>,
    store: ChannelStore,
    books: Mutex<HashMap<ChannelId, Arc<Mutex<Book>>>>,
    views: Mutex<HashMap<ChannelId, CachedView>>,
    /// Wakes the settlement task (a channel started closing).
    pub(crate) wake_settlement: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The 32 raw bytes of an ed25519 channel key.
fn ed25519_key(channel: &Channel) -> Result<[u8; 32], PaymentError> {
    match channel.channel_key.as_bytes().split_first() {
        Some((0, data)) => data
            .try_into()
            .map_err(|_| PaymentError::ChannelKey(channel.channel_id)),
        _ => Err(PaymentError::ChannelKey(channel.channel_id)),
    }
}

impl Payments {
    /// Loads the records of `store`; each with a voucher above what was settled is settled at
    /// the settlement task's first pass (a node stopped before settling loses nothing).
    pub fn open(
        config: PaymentConfig,
        source: Arc<dyn ChannelSource>,
        store: ChannelStore,
    ) -> Result<Arc<Self>, StoreError> {
        let books = store
            .load_all()?
            .into_iter()
            .map(|record| {
                let due = record.paid() > record.settled.0;
                let book = Book {
                    record,
                    reserved: 0,
                    closing: false,
                    settle_now: due,
                    unsettled_since: due.then(Instant::now),
                };
                (book.record.channel_id, Arc::new(Mutex::new(book)))
            })
            .collect();
        Ok(Arc::new(Self {
            config,
            source,
            store,
            books: Mutex::new(books),
            views: Mutex::new(HashMap::new()),
            wake_settlement: Notify::new(),
        }))
    }

    pub fn config(&self) -> &PaymentConfig {
        &self.config
    }

    pub(crate) fn store(&self) -> &ChannelStore {
        &self.store
    }

    pub(crate) fn book(&self, channel_id: ChannelId) -> Arc<Mutex<Book>> {
        lock(&self.books)
            .entry(channel_id)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Book {
                    record: ChannelRecord::new(channel_id),
                    reserved: 0,
                    closing: false,
                    settle_now: false,
                    unsettled_since: None,
                }))
            })
            .clone()
    }

    /// The channels the node has records of.
    pub(crate) fn channel_ids(&self) -> Vec<ChannelId> {
        let mut ids: Vec<_> = lock(&self.books).keys().copied().collect();
        ids.sort();
        ids
    }

    /// The channel as the marketplace has it: cached unless `refresh` or stale. Checks that
    /// it is this node's; a closing channel is marked so (and settlement woken).
    pub(crate) async fn channel(
        &self,
        channel_id: ChannelId,
        refresh: bool,
    ) -> Result<Arc<Channel>, PaymentError> {
        let cached = lock(&self.views).get(&channel_id).and_then(|v| {
            (!refresh && v.fetched.elapsed() < self.config.view_ttl).then(|| v.channel.clone())
        });
        let channel = match cached {
            Some(c) => c,
            None => {
                let fetched = self
                    .source
                    .get_channel(channel_id)
                    .await
                    .map_err(|e| PaymentError::Chain(e.to_string()))?
                    .ok_or(PaymentError::UnknownChannel(channel_id))?;
                let fetched = Arc::new(fetched);
                lock(&self.views).insert(
                    channel_id,
                    CachedView {
                        channel: fetched.clone(),
                        fetched: Instant::now(),
                    },
                );
                fetched
            }
        };
        if channel.node_id != self.config.node_id {
            return Err(PaymentError::NotThisNode(channel_id));
        }
        if matches!(channel.state, ChannelState::Closing { .. }) {
            let book = self.book(channel_id);
            let mut book = lock(&book);
            if !book.closing {
                book.closing = true;
                book.settle_now = true;
                tracing::info!(%channel_id, "channel closing: no longer served, settling now");
                self.wake_settlement.notify_one();
            }
        }
        Ok(channel)
    }

    /// A voucher for `channel`, checked: the channel key's signature, at most the deposit.
    fn checked_voucher(
        &self,
        channel: &Channel,
        key: &[u8; 32],
        amount: u128,
        signature: [u8; 64],
    ) -> Result<StoredVoucher, PaymentError> {
        let voucher = protocol::channel_api::Voucher {
            marketplace: self.config.marketplace.clone(),
            channel_id: channel.channel_id,
            asset: channel.asset.clone(),
            amount: U128(amount),
        };
        if !voucher.verify(key, &signature) {
            return Err(PaymentError::VoucherSignature);
        }
        if amount > channel.deposit.0 {
            return Err(PaymentError::VoucherOverDeposit {
                amount,
                deposit: channel.deposit.0,
            });
        }
        Ok(StoredVoucher {
            amount: U128(amount),
            signature: VoucherSignature(signature),
        })
    }

    /// The channel, fetched again if `amount` is above the deposit seen (a top-up).
    async fn channel_for_voucher(
        &self,
        channel_id: ChannelId,
        amount: Option<u128>,
    ) -> Result<Arc<Channel>, PaymentError> {
        let channel = self.channel(channel_id, false).await?;
        match amount {
            Some(a) if a > channel.deposit.0 => self.channel(channel_id, true).await,
            _ => Ok(channel),
        }
    }

    /// `credit limit` in the channel's asset.
    fn credit_limit(&self, channel: &Channel) -> u128 {
        to_asset_units(
            Some(self.config.credit_limit_yocto),
            channel.token_rate.as_ref(),
        )
        .unwrap_or(u128::MAX)
    }

    /// What a new request may still cost on this channel.
    fn available(&self, channel: &Channel, record: &ChannelRecord, reserved: u128) -> u128 {
        let limit = self
            .credit_limit(channel)
            .min(channel.deposit.0.saturating_sub(record.paid()));
        limit
            .saturating_sub(record.unpaid())
            .saturating_sub(reserved)
    }

    /// Checks a request's payment and reserves its maximum cost: `prompt_bound` tokens in and
    /// up to `max_tokens` out (0 for embeddings). The reservation's `max_tokens` may be lower
    /// (what the credit allows, at least 1 when `max_tokens` > 0).
    pub async fn authorize(
        self: &Arc<Self>,
        payment: &ChannelPayment,
        body: &[u8],
        prompt_bound: u64,
        max_tokens: u64,
    ) -> Result<Reservation, PaymentError> {
        let channel_id = payment.channel_id;
        let channel = self
            .channel_for_voucher(channel_id, payment.voucher.map(|(a, _)| a))
            .await?;
        let key = ed25519_key(&channel)?;
        let authorization = payment.authorization(&self.config.marketplace, body);
        if !authorization.verify(&key, &payment.request_signature) {
            return Err(PaymentError::RequestSignature);
        }
        let voucher = payment
            .voucher
            .map(|(amount, sig)| self.checked_voucher(&channel, &key, amount, sig))
            .transpose()?;

        let book = self.book(channel_id);
        let mut book = lock(&book);
        if book.closing {
            // Not served, but a voucher it carries is still earnings to settle.
            if let Some(v) = voucher {
                let mut record = book.record.clone();
                if record.offer_voucher(v) {
                    self.store.save(&record)?;
                    book.record = record;
                    book.settle_now = true;
                    self.wake_settlement.notify_one();
                }
            }
            return Err(PaymentError::Closing(channel_id));
        }
        if book.record.was_served(payment.sequence) {
            return Err(PaymentError::Replayed {
                channel_id,
                sequence: payment.sequence,
            });
        }
        let mut record = book.record.clone();
        if let Some(v) = voucher {
            record.offer_voucher(v);
        }
        let available = self.available(&channel, &record, book.reserved);
        let granted = affordable_tokens(&channel, prompt_bound, max_tokens, available);
        let cost = match granted {
            Some(n) => max_request_cost(&channel, prompt_bound, n),
            None => {
                return Err(PaymentError::InsufficientCredit {
                    channel_id,
                    needed: max_request_cost(&channel, prompt_bound, max_tokens.min(1)),
                    available,
                });
            }
        };
        record.mark_served(payment.sequence);
        self.store.save(&record)?;
        if record.paid() > record.settled.0 && book.unsettled_since.is_none() {
            book.unsettled_since = Some(Instant::now());
        }
        book.record = record;
        book.reserved = book.reserved.saturating_add(cost);
        Ok(Reservation {
            payments: self.clone(),
            channel,
            reserved: cost,
            max_tokens: granted.unwrap_or(0),
            open: true,
        })
    }

    /// `POST /v1/channels/voucher`: keeps `update`'s voucher if valid and larger. Returns the
    /// newest amount held.
    pub async fn accept_voucher(&self, update: &VoucherUpdate) -> Result<u128, PaymentError> {
        let v = &update.voucher;
        let signature: [u8; 64] = update
            .signature
            .0
            .as_slice()
            .try_into()
            .map_err(|_| PaymentError::VoucherSignature)?;
        if v.channel_id != update.channel_id || v.marketplace != self.config.marketplace {
            return Err(PaymentError::VoucherSignature);
        }
        let channel = self
            .channel_for_voucher(update.channel_id, Some(v.amount.0))
            .await?;
        if v.asset != channel.asset {
            return Err(PaymentError::VoucherSignature);
        }
        let key = ed25519_key(&channel)?;
        let voucher = self.checked_voucher(&channel, &key, v.amount.0, signature)?;
        let book = self.book(update.channel_id);
        let mut book = lock(&book);
        let mut record = book.record.clone();
        if record.offer_voucher(voucher) {
            self.store.save(&record)?;
            if book.unsettled_since.is_none() && record.paid() > record.settled.0 {
                book.unsettled_since = Some(Instant::now());
            }
            book.record = record;
        }
        Ok(book.record.paid())
    }

    fn finish(
        &self,
        channel_id: ChannelId,
        reserved: u128,
        cost: Option<u128>,
    ) -> Result<(), StoreError> {
        let book = self.book(channel_id);
        let mut book = lock(&book);
        book.reserved = book.reserved.saturating_sub(reserved);
        if let Some(cost) = cost {
            let mut record = book.record.clone();
            record.billed = U128(record.billed.0.saturating_add(cost));
            self.store.save(&record)?;
            book.record = record;
        }
        Ok(())
    }
}

/// The largest completion (at most `max_tokens`) whose maximum cost with `prompt_bound`
/// fits in `available`: `None` if not even the prompt (and, when `max_tokens` > 0, one
/// token) fits.
pub fn affordable_tokens(
    channel: &Channel,
    prompt_bound: u64,
    max_tokens: u64,
    available: u128,
) -> Option<u64> {
    let fits = |n: u64| max_request_cost(channel, prompt_bound, n) <= available;
    let least = max_tokens.min(1);
    if !fits(least) {
        return None;
    }
    if fits(max_tokens) {
        return Some(max_tokens);
    }
    // The cost grows with n: the largest n that fits, by bisection in [least, max_tokens).
    let (mut lo, mut hi) = (least, max_tokens);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// A request's reserved maximum cost, until it is billed (or released when dropped).
pub struct Reservation {
    payments: Arc<Payments>,
    channel: Arc<Channel>,
    reserved: u128,
    /// The completion bound to serve with (0 for embeddings).
    pub max_tokens: u64,
    open: bool,
}

impl Reservation {
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Bills the usage served and releases the reservation.
    pub fn bill(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Result<BilledUsage, StoreError> {
        self.open = false;
        let cost = response_cost(&self.channel, prompt_tokens, completion_tokens);
        self.payments
            .finish(self.channel.channel_id, self.reserved, Some(cost))?;
        Ok(BilledUsage {
            prompt_tokens,
            completion_tokens,
            cost: U128(cost),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            // Released unbilled: only the in-memory reservation changes.
            let _ = self
                .payments
                .finish(self.channel.channel_id, self.reserved, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_affordable_completion_is_the_largest_that_fits() {
        let json = serde_json::json!({
            "channel_id": "1", "user": "u.near", "node_id": "1", "operator": "o.near",
            "model_id": "gemma", "channel_key": "ed25519:11111111111111111111111111111111",
            "asset": {"kind": "near"},
            "price": {"input_per_million": "1000000", "output_per_million": "2000000"},
            "token_rate": null, "deposit": "1000", "settled": "0", "storage_deposit": "0",
            "storage_source": "attached", "challenge_period_ns": "1", "opened_ns": "1",
            "state": {"kind": "open"}
        });
        let channel: Channel = serde_json::from_value(json).unwrap();
        // 1 unit per prompt token, 2 per completion token.
        assert_eq!(max_request_cost(&channel, 10, 5), 20);
        assert_eq!(affordable_tokens(&channel, 10, 100, 1_000), Some(100));
        assert_eq!(affordable_tokens(&channel, 10, 100, 31), Some(10));
        assert_eq!(affordable_tokens(&channel, 10, 100, 12), Some(1));
        assert_eq!(affordable_tokens(&channel, 10, 100, 11), None);
        assert_eq!(affordable_tokens(&channel, 10, 0, 10), Some(0));
        assert_eq!(affordable_tokens(&channel, 10, 0, 9), None);
    }
}
