//! `ecloud job cancel`: get a job's escrow back under the marketplace's `cancel_job` rules,
//! judged on the chain's clock before anything is sent:
//!
//! * open, before its claim deadline: only its user, with 1 yoctoNEAR attached (a full-access
//!   key confirms it);
//! * open, after its claim deadline (nobody claimed it): anyone, nothing attached;
//! * claimed, after its deadline (the node missed it): anyone; the node is slashed to the user;
//! * anything else is refused here with when it becomes possible.
//!
//! The refund always goes to the job's user, whoever sends the transaction.

use chain_client::NearToken;
use enclave_cloud_common::events::marketplace::CancelReason;
use enclave_cloud_common::events::{AnyEvent, MarketplaceEvent};
use enclave_cloud_common::interfaces::marketplace::JobView;
use enclave_cloud_common::{Asset, JobId};
use near_sdk::AccountId;
use near_sdk::json_types::U128;
use serde::Serialize;

use crate::Error;
use crate::amount::{Near, TokenFormat, asset_amount};
use crate::chain::Chain;
use crate::jobs::chain_now_ns;
use crate::output::Report;

/// What to send, and under which rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelPlan {
    /// yoctoNEAR to attach.
    pub deposit: u128,
    pub reason: CancelReason,
}

fn secs_until(deadline_ns: u64, now_ns: u64) -> u64 {
    deadline_ns.saturating_sub(now_ns).div_ceil(1_000_000_000)
}

/// The marketplace's rules, applied to `job` as `caller` sees it at `now_ns` (chain time).
pub fn plan(
    job_id: JobId,
    job: &JobView,
    caller: &AccountId,
    now_ns: u64,
) -> Result<CancelPlan, Error> {
    match job {
        JobView::Open(job) => {
            let claim_deadline = job.claim_deadline_ns.0;
            if now_ns > claim_deadline {
                Ok(CancelPlan {
                    deposit: 0,
                    reason: CancelReason::Unclaimed,
                })
            } else if caller == &job.user {
                Ok(CancelPlan {
                    deposit: 1,
                    reason: CancelReason::ByUser,
                })
            } else {
                Err(Error::NotReady(format!(
                    "job {job_id} is open until its claim deadline (in {} s); before that only its user {} may cancel it",
                    secs_until(claim_deadline, now_ns),
                    job.user
                )))
            }
        }
        JobView::Claimed(job) => {
            let deadline = job.deadline_ns.0;
            if now_ns > deadline {
                Ok(CancelPlan {
                    deposit: 0,
                    reason: CancelReason::DeadlineMissed,
                })
            } else {
                Err(Error::NotReady(format!(
                    "job {job_id} is claimed and its deadline has not passed: anyone may cancel it after the deadline (in {} s) if no result came",
                    secs_until(deadline, now_ns)
                )))
            }
        }
        JobView::Settled(_) => Err(settled(job_id)),
    }
}

fn settled(job_id: JobId) -> Error {
    Error::BadInput(format!(
        "job {job_id} is settled: nothing to cancel (its unused escrow was refunded; see `ecloud job result {job_id}`)"
    ))
}

/// What `job cancel` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Cancelled {
    pub job_id: JobId,
    /// `by_user`, `unclaimed` or `deadline_missed`.
    pub reason: CancelReason,
    /// The job's user, who receives the refund.
    pub refunded_to: AccountId,
    pub asset: Asset,
    /// The escrow returned (the price cap), in the job's asset.
    pub refund: U128,
    /// Stake slashed from the node to the user (missed deadlines), yoctoNEAR.
    pub slashed: Option<U128>,
    pub tx_hash: String,
    /// The token's symbol and decimals for the text output (not in the JSON).
    #[serde(skip)]
    pub token_format: Option<TokenFormat>,
}

impl Report for Cancelled {
    fn human(&self) -> String {
        let amount = |v: u128| asset_amount(&self.asset, v, self.token_format.as_ref());
        let why = match self.reason {
            CancelReason::ByUser => "by its user",
            CancelReason::Unclaimed => "unclaimed",
            CancelReason::DeadlineMissed => "the node missed its deadline",
        };
        let mut out = format!(
            "job {} cancelled ({why}): {} refunded to {}\n",
            self.job_id,
            amount(self.refund.0),
            self.refunded_to
        );
        if let Some(slashed) = self.slashed {
            out.push_str(&format!(
                "  slashed    {} of the node's stake, to {}\n",
                Near(slashed.0),
                self.refunded_to
            ));
        }
        out.push_str(&format!("  tx         {}\n", self.tx_hash));
        out
    }
}

/// The `job_cancelled` event of `job_id` in a transaction's logs.
fn cancelled_event(logs: &[String], job_id: JobId) -> Option<(CancelReason, U128, Option<U128>)> {
    logs.iter().find_map(|line| match AnyEvent::parse(line) {
        Ok(Some(AnyEvent::Marketplace(MarketplaceEvent::JobCancelled {
            job_id: id,
            reason,
            refund,
            slashed,
        }))) if id == job_id => Some((reason, refund, slashed)),
        _ => None,
    })
}

/// `ecloud job cancel`.
pub async fn cancel(chain: &Chain, job_id: JobId) -> Result<Cancelled, Error> {
    let signer = chain.signer()?;
    let marketplace = chain.marketplace();
    let market = marketplace.id();
    let view = marketplace.get_job(job_id).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "job {job_id} is not in the marketplace {market} (never submitted, or already cancelled)"
        ))
    })?;
    let now = chain_now_ns(chain).await;
    let plan = plan(job_id, &view, signer.account_id(), now)?;
    let job = match view {
        JobView::Open(job) | JobView::Claimed(job) => job,
        JobView::Settled(_) => return Err(settled(job_id)),
    };
    let ((), outcome) = crate::progress::waiting(
        &format!("cancelling job {job_id}"),
        marketplace
            .cancel_job(job_id, NearToken::from_yoctonear(plan.deposit))?
            .send_outcome(&signer),
    )
    .await?;
    let (reason, refund, slashed) =
        cancelled_event(&outcome.logs, job_id).unwrap_or((plan.reason, job.price_cap, None));
    let token_format = chain.token_format(&job.asset).await;
    Ok(Cancelled {
        job_id,
        reason,
        refunded_to: job.user,
        asset: job.asset,
        refund,
        slashed,
        tx_hash: outcome.tx_hash.to_string(),
        token_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn job(status: &str) -> JobView {
        crate::jobs::tests::market_job(status, 100 * SEC, 200 * SEC)
    }

    fn acc(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    #[test]
    fn the_marketplace_rules() {
        let id = JobId(4);
        let alice = acc("alice.test.near");
        let bob = acc("bob.test.near");
        // Open: the user with 1 yocto before the claim deadline; anyone after it.
        assert_eq!(
            plan(id, &job("open"), &alice, 50 * SEC).unwrap(),
            CancelPlan {
                deposit: 1,
                reason: CancelReason::ByUser
            }
        );
        let err = plan(id, &job("open"), &bob, 50 * SEC).unwrap_err();
        assert!(matches!(err, Error::NotReady(_)), "{err}");
        assert!(err.to_string().contains("in 50 s"), "{err}");
        assert!(err.to_string().contains("alice.test.near"), "{err}");
        for who in [&alice, &bob] {
            assert_eq!(
                plan(id, &job("open"), who, 100 * SEC + 1).unwrap(),
                CancelPlan {
                    deposit: 0,
                    reason: CancelReason::Unclaimed
                }
            );
        }
        // Claimed: nobody before the deadline, anyone after it.
        let err = plan(id, &job("claimed"), &alice, 150 * SEC).unwrap_err();
        assert!(matches!(err, Error::NotReady(_)), "{err}");
        assert_eq!(
            plan(id, &job("claimed"), &bob, 200 * SEC + 1).unwrap(),
            CancelPlan {
                deposit: 0,
                reason: CancelReason::DeadlineMissed
            }
        );
        // Settled: never.
        let settled: JobView = serde_json::from_value(serde_json::json!({"status": "settled",
            "job_id": "4", "user": "alice.test.near", "node_id": "2", "model_id": "llama",
            "asset": {"kind": "near"}, "input_hash": hex::encode([0u8; 32]),
            "output_hash": hex::encode([1u8; 32]),
            "usage": {"input_tokens": "5", "output_tokens": "3"},
            "settlement": {"cost": "8", "provider": "7", "royalty": "1", "protocol_fee": "0", "refund": "2"},
            "signature": null, "signer_key": attestation::format_near_ed25519_key(&[7; 32]),
            "settled_ns": "10"}))
        .unwrap();
        let err = plan(id, &settled, &alice, 0).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
    }

    #[test]
    fn the_event_names_reason_refund_and_slash() {
        let log = r#"EVENT_JSON:{"standard":"ecloud_marketplace","version":"1.0.0","event":"job_cancelled","data":{"job_id":"4","reason":"deadline_missed","refund":"10","slashed":"5"}}"#;
        let logs = vec!["other".to_owned(), log.to_owned()];
        assert_eq!(
            cancelled_event(&logs, JobId(4)),
            Some((CancelReason::DeadlineMissed, U128(10), Some(U128(5))))
        );
        assert_eq!(cancelled_event(&logs, JobId(5)), None);
        let c = Cancelled {
            job_id: JobId(4),
            reason: CancelReason::DeadlineMissed,
            refunded_to: acc("alice.test.near"),
            asset: Asset::Near,
            refund: U128(10u128.pow(24)),
            slashed: Some(U128(10u128.pow(24))),
            tx_hash: "abc".into(),
            token_format: None,
        };
        let text = c.human();
        assert!(
            text.contains(
                "job 4 cancelled (the node missed its deadline): 1 NEAR refunded to alice.test.near"
            ),
            "{text}"
        );
        assert!(text.contains("slashed"), "{text}");
    }
}
