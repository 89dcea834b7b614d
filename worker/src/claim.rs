//! Which open jobs are worth claiming. A claim and a result are two paid transactions, and the
//! marketplace charges `min(cap, usage x price)`: a job whose cap does not even cover its input
//! at this node's price (a 1-yocto cap, say) costs the node more gas than it pays. So is a job
//! claimed too close to its deadline: it is likely to miss it, and a missed deadline slashes.
//!
//! The input is opened before the claim (it is sealed to this node's key), and its tokens are
//! counted from below: one token per whitespace-separated word (every tokenizer the worker uses
//! gives at least that), or the token ids themselves when the request carries them. The cost
//! uses the marketplace's own arithmetic (per-million prices, rounded down; a token job's rate).

use std::time::Duration;

use enclave_cloud_common::ModelPrice;

use crate::job::{CHAT_URL, EMBEDDINGS_URL, JobRequest};

/// Marketplace prices are per this many tokens.
const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;
/// yoctoNEAR in one NEAR (token rates are units per NEAR).
const YOCTO_PER_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

/// What the operator asks of a job before claiming it (`worker run` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// Chat jobs: output tokens the cap must also pay for (0: only the input).
    pub min_output_tokens: u64,
    /// Time that must be left before the job's deadline, on the chain's clock.
    pub deadline_margin: Duration,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            min_output_tokens: 16,
            deadline_margin: Duration::from_secs(30),
        }
    }
}

/// The facts of one open job the decision needs.
#[derive(Debug, Clone)]
pub struct JobTerms<'a> {
    /// In the job's asset (yoctoNEAR, or the token's smallest units).
    pub price_cap: u128,
    /// A token job's units per NEAR; `None` for NEAR jobs.
    pub units_per_near: Option<u128>,
    pub deadline_ns: u64,
    pub claim_deadline_ns: u64,
    /// The opened input.
    pub request: &'a JobRequest,
}

/// Why a job is left for others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    #[error(
        "the cap {} does not cover the least this job costs ({}, {tokens} tokens at this node's price)",
        amount_text(*.cap, *.token_job),
        amount_text(*.cost, *.token_job)
    )]
    Underpaid {
        cap: u128,
        cost: u128,
        tokens: u64,
        /// Amounts in a token's smallest units (else yoctoNEAR).
        token_job: bool,
    },
    #[error("only {left_secs} s left before the deadline, the margin is {margin_secs} s")]
    TooLate { left_secs: u64, margin_secs: u64 },
    #[error("its claim window closed")]
    ClaimWindowClosed,
    #[error("this node has no price for the job's model")]
    NoPrice,
}

/// A NEAR amount for people (`0.000275 NEAR`); a token job's amount in the token's smallest
/// units (the worker does not read the token's decimals to decline a job).
fn amount_text(units: u128, token_job: bool) -> String {
    if token_job {
        format!("{units} smallest units of the job's token")
    } else {
        chain_client::format_near(units)
    }
}

impl ClaimPolicy {
    /// `Ok` when the job is worth claiming at `now_ns` (the chain's time) and `price`.
    pub fn check(
        &self,
        offer: &JobTerms<'_>,
        price: Option<&ModelPrice>,
        now_ns: u64,
    ) -> Result<(), Decline> {
        if now_ns > offer.claim_deadline_ns {
            return Err(Decline::ClaimWindowClosed);
        }
        let left = offer.deadline_ns.saturating_sub(now_ns);
        let margin = u64::try_from(self.deadline_margin.as_nanos()).unwrap_or(u64::MAX);
        if left <= margin {
            return Err(Decline::TooLate {
                left_secs: left / 1_000_000_000,
                margin_secs: self.deadline_margin.as_secs(),
            });
        }
        let price = price.ok_or(Decline::NoPrice)?;
        let input = input_tokens_at_least(offer.request);
        let output = if offer.request.url == CHAT_URL {
            self.min_output_tokens
        } else {
            0
        };
        let cost = least_cost(input, output, price, offer.units_per_near);
        // `None`: more than any amount fits in u128, so more than any cap.
        if cost.is_none_or(|cost| cost > offer.price_cap) {
            return Err(Decline::Underpaid {
                cap: offer.price_cap,
                cost: cost.unwrap_or(u128::MAX),
                tokens: input.saturating_add(output),
                token_job: offer.units_per_near.is_some(),
            });
        }
        Ok(())
    }
}

/// `a * b / c` rounded down, `None` on overflow (as the marketplace computes it).
fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    a.checked_mul(b).map(|p| p / c)
}

/// The marketplace's charge for `input` and `output` tokens at `price`, in the job's asset.
pub fn least_cost(
    input: u64,
    output: u64,
    price: &ModelPrice,
    units_per_near: Option<u128>,
) -> Option<u128> {
    let yocto = mul_div(
        u128::from(input),
        price.input_per_million.0,
        TOKENS_PER_PRICE_UNIT,
    )?
    .checked_add(mul_div(
        u128::from(output),
        price.output_per_million.0,
        TOKENS_PER_PRICE_UNIT,
    )?)?;
    match units_per_near {
        None => Some(yocto),
        Some(rate) => mul_div(yocto, rate, YOCTO_PER_NEAR),
    }
}

/// A lower bound of the input tokens of a job request.
pub fn input_tokens_at_least(request: &JobRequest) -> u64 {
    let body = &request.body;
    match request.url.as_str() {
        EMBEDDINGS_URL => inputs_tokens(&body["input"]),
        CHAT_URL => body["messages"].as_array().map_or(0, |messages| {
            messages.iter().map(|m| content_tokens(&m["content"])).sum()
        }),
        _ => 0,
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Embeddings `input`: a string, a list of strings, a list of token ids, or lists of them.
fn inputs_tokens(input: &serde_json::Value) -> u64 {
    match input {
        serde_json::Value::String(s) => words(s),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::Number(_) => 1,
                other => inputs_tokens(other),
            })
            .sum(),
        _ => 0,
    }
}

/// Chat `content`: a string or a list of parts with `text`.
fn content_tokens(content: &serde_json::Value) -> u64 {
    match content {
        serde_json::Value::String(s) => words(s),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .map(words)
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::json_types::U128;
    use serde_json::json;

    const NEAR: u128 = YOCTO_PER_NEAR;
    const SEC: u64 = 1_000_000_000;

    fn price(input: u128, output: u128) -> ModelPrice {
        ModelPrice {
            model_id: "minilm".parse().unwrap(),
            input_per_million: U128(input),
            output_per_million: U128(output),
        }
    }

    fn embed(texts: &[&str]) -> JobRequest {
        JobRequest {
            method: "POST".into(),
            url: EMBEDDINGS_URL.into(),
            body: json!({ "input": texts }),
        }
    }

    fn chat(text: &str) -> JobRequest {
        JobRequest {
            method: "POST".into(),
            url: CHAT_URL.into(),
            body: json!({ "messages": [{"role": "user", "content": text}] }),
        }
    }

    fn offer(cap: u128, request: &JobRequest) -> JobTerms<'_> {
        JobTerms {
            price_cap: cap,
            units_per_near: None,
            deadline_ns: 1_000 * SEC,
            claim_deadline_ns: 500 * SEC,
            request,
        }
    }

    #[test]
    fn counts_input_tokens_from_below() {
        assert_eq!(input_tokens_at_least(&embed(&["a b c", "d"])), 4);
        let ids = JobRequest {
            body: json!({ "input": [[101, 7592, 102], [101, 102]] }),
            ..embed(&[])
        };
        assert_eq!(input_tokens_at_least(&ids), 5);
        assert_eq!(input_tokens_at_least(&chat("how are you")), 3);
        let parts = JobRequest {
            body: json!({ "messages": [{"role": "user", "content": [{"type": "text", "text": "x y"}]}] }),
            ..chat("")
        };
        assert_eq!(input_tokens_at_least(&parts), 2);
        let unknown = JobRequest {
            url: "/v1/images".into(),
            ..chat("x")
        };
        assert_eq!(input_tokens_at_least(&unknown), 0);
    }

    #[test]
    fn underpaid_jobs_are_declined() {
        let policy = ClaimPolicy::default();
        // 1 NEAR per million input tokens: 27 words cost 27e18 yocto.
        let p = price(NEAR, 2 * NEAR);
        let text = vec!["word"; 27].join(" ");
        let request = embed(&[&text]);
        let now = 100 * SEC;
        assert!(matches!(
            policy.check(&offer(1, &request), Some(&p), now),
            Err(Decline::Underpaid { cap: 1, cost, tokens: 27, token_job: false }) if cost == 27 * NEAR / 1_000_000
        ));
        let why = policy
            .check(&offer(1, &request), Some(&p), now)
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("the cap <0.000001 NEAR does not cover the least this job costs (0.000027 NEAR, 27 tokens"),
            "{why}"
        );
        let enough = 27 * NEAR / 1_000_000;
        assert_eq!(
            policy.check(&offer(enough, &request), Some(&p), now),
            Ok(())
        );
        // Chat: the cap must also pay for the minimum output.
        let request = chat(&text);
        let with_output = enough + 16 * 2 * NEAR / 1_000_000;
        assert!(
            policy
                .check(&offer(enough, &request), Some(&p), now)
                .is_err()
        );
        assert_eq!(
            policy.check(&offer(with_output, &request), Some(&p), now),
            Ok(())
        );
        // A token job: 1 NEAR = 1e6 units.
        let mut token = offer(27, &request);
        token.units_per_near = Some(1_000_000);
        let strict = ClaimPolicy {
            min_output_tokens: 0,
            ..policy
        };
        assert_eq!(strict.check(&token, Some(&p), now), Ok(()));
        token.price_cap = 26;
        assert!(strict.check(&token, Some(&p), now).is_err());
        // No price for the model; an absurd price that overflows.
        assert_eq!(
            policy.check(&offer(NEAR, &request), None, now),
            Err(Decline::NoPrice)
        );
        let huge = price(u128::MAX, 0);
        assert!(
            policy
                .check(&offer(u128::MAX, &request), Some(&huge), now)
                .is_err()
        );
    }

    #[test]
    fn late_jobs_are_declined_on_the_chains_clock() {
        let policy = ClaimPolicy {
            min_output_tokens: 0,
            deadline_margin: Duration::from_secs(60),
        };
        let p = price(0, 0);
        let request = embed(&["x"]);
        let o = offer(1, &request);
        assert_eq!(policy.check(&o, Some(&p), 100 * SEC), Ok(()));
        assert_eq!(
            policy.check(&o, Some(&p), 501 * SEC),
            Err(Decline::ClaimWindowClosed)
        );
        let late = JobTerms {
            claim_deadline_ns: 1_000 * SEC,
            ..o
        };
        assert_eq!(
            policy.check(&late, Some(&p), 950 * SEC),
            Err(Decline::TooLate {
                left_secs: 50,
                margin_secs: 60
            })
        );
        assert_eq!(policy.check(&late, Some(&p), 939 * SEC), Ok(()));
    }
}
