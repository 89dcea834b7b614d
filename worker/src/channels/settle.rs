//! Settlement: a background task that puts each channel's newest voucher on chain
//! (`settle_channel`), in batches:
//!
//! * when the voucher is at least [`SettlePolicy::min_amount_yocto`] above what was settled
//!   (converted into a token channel's asset at its rate), or
//! * when the oldest unsettled voucher has waited [`SettlePolicy::interval`], or
//! * at once when the channel started closing (`start_close`: the node may settle only until
//!   the challenge period ends) or after a restart (vouchers found in the store).
//!
//! Each pass also refreshes the marketplace's view of every channel with something to settle,
//! which is how a close is noticed when no request comes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_cloud_common::ChannelId;
use enclave_cloud_common::interfaces::marketplace::Channel;
use enclave_cloud_common::pricing::to_asset_units;
use near_sdk::json_types::U128;
use protocol::channel_api::Voucher;

use super::chain::Settler;
use super::ledger::{Book, Payments};

/// When to settle.
#[derive(Debug, Clone, Copy)]
pub struct SettlePolicy {
    /// Settle once the newest voucher is this far above the settled amount, yoctoNEAR.
    pub min_amount_yocto: u128,
    /// Settle a smaller amount once it has waited this long.
    pub interval: Duration,
    /// Pause between passes.
    pub poll: Duration,
}

/// Whether `book`'s channel should be settled now, and with what amount.
pub(crate) fn due(
    book: &Book,
    channel: &Channel,
    policy: &SettlePolicy,
    now: Instant,
) -> Option<u128> {
    let newest = book.record.paid();
    let settled = book.record.settled.0.max(channel.settled.0);
    if newest <= settled {
        return None;
    }
    let batch = to_asset_units(Some(policy.min_amount_yocto), channel.token_rate.as_ref())
        .unwrap_or(u128::MAX);
    let waited = book
        .unsettled_since
        .is_some_and(|since| now.saturating_duration_since(since) >= policy.interval);
    (book.settle_now || book.closing || newest - settled >= batch || waited).then_some(newest)
}

/// One pass over every channel: settles what is due. Returns the channels settled.
pub async fn settle_pass(
    payments: &Payments,
    settler: &dyn Settler,
    policy: &SettlePolicy,
) -> Vec<(ChannelId, u128)> {
    let mut settled = Vec::new();
    for channel_id in payments.channel_ids() {
        let book = payments.book(channel_id);
        let has_unsettled = {
            let b = book.lock().unwrap_or_else(|p| p.into_inner());
            b.record.paid() > b.record.settled.0
        };
        if !has_unsettled {
            continue;
        }
        // The view (refreshed every `view_ttl`): the settled amount on chain, and whether a
        // close started.
        let channel = match payments.channel(channel_id, false).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%channel_id, error = %e, "settlement: channel view failed");
                continue;
            }
        };
        let (amount, signature) = {
            let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
            if channel.settled.0 > b.record.settled.0 {
                b.record.settled = channel.settled;
            }
            let Some(amount) = due(&b, &channel, policy, Instant::now()) else {
                continue;
            };
            let Some(voucher) = b.record.voucher else {
                continue;
            };
            (amount, voucher.signature.0)
        };
        let voucher = Voucher {
            marketplace: payments.config().marketplace.clone(),
            channel_id,
            asset: channel.asset.clone(),
            amount: U128(amount),
        };
        match settler.settle(voucher, signature).await {
            Ok(s) => {
                tracing::info!(%channel_id, amount, provider = s.provider.0, "channel settled");
                let mut b = book.lock().unwrap_or_else(|p| p.into_inner());
                let mut record = b.record.clone();
                record.settled = U128(record.settled.0.max(amount));
                if let Err(e) = payments.store().save(&record) {
                    tracing::warn!(%channel_id, error = %e, "settled, but the record was not saved");
                }
                b.record = record;
                b.settle_now = false;
                b.unsettled_since = (b.record.paid() > b.record.settled.0).then(Instant::now);
                settled.push((channel_id, amount));
            }
            Err(e) => {
                tracing::warn!(%channel_id, amount, error = %e, "settle_channel failed; retried next pass");
            }
        }
    }
    settled
}

/// Runs settlement passes until the process ends: every `policy.poll`, and at once when a
/// channel starts closing.
pub async fn run(payments: Arc<Payments>, settler: Arc<dyn Settler>, policy: SettlePolicy) {
    loop {
        settle_pass(&payments, settler.as_ref(), &policy).await;
        tokio::select! {
            _ = tokio::time::sleep(policy.poll) => {}
            _ = payments.wake_settlement.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::store::{ChannelRecord, StoredVoucher, VoucherSignature};

    fn channel(settled: u128) -> Channel {
        let json = serde_json::json!({
            "channel_id": "1", "user": "u.near", "node_id": "1", "operator": "o.near",
            "model_id": "gemma", "channel_key": "ed25519:11111111111111111111111111111111",
            "asset": {"kind": "near"},
            "price": {"input_per_million": "1", "output_per_million": "1"},
            "token_rate": null, "deposit": "1000", "settled": settled.to_string(),
            "storage_deposit": "0", "storage_source": "attached", "challenge_period_ns": "1",
            "opened_ns": "1", "state": {"kind": "open"}
        });
        serde_json::from_value(json).unwrap()
    }

    fn book(paid: u128, since: Option<Instant>) -> Book {
        let mut record = ChannelRecord::new(ChannelId(1));
        record.offer_voucher(StoredVoucher {
            amount: U128(paid),
            signature: VoucherSignature([0; 64]),
        });
        Book {
            record,
            reserved: 0,
            closing: false,
            settle_now: false,
            unsettled_since: since,
        }
    }

    #[test]
    fn settles_by_amount_by_age_on_close_and_never_below_the_chain() {
        let policy = SettlePolicy {
            min_amount_yocto: 100,
            interval: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        };
        let now = Instant::now();
        assert_eq!(due(&book(99, Some(now)), &channel(0), &policy, now), None);
        assert_eq!(
            due(&book(100, Some(now)), &channel(0), &policy, now),
            Some(100)
        );
        let later = now + Duration::from_secs(61);
        assert_eq!(
            due(&book(5, Some(now)), &channel(0), &policy, later),
            Some(5)
        );
        let mut closing = book(5, Some(now));
        closing.closing = true;
        assert_eq!(due(&closing, &channel(0), &policy, now), Some(5));
        // What the chain already settled is never settled again.
        assert_eq!(due(&closing, &channel(5), &policy, now), None);
        assert_eq!(
            due(&book(300, Some(now)), &channel(250), &policy, now),
            None
        );
    }
}
