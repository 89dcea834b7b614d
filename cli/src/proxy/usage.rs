//! What a response may be billed, checked before the next voucher is signed: the bill is the
//! marketplace's own arithmetic on the reported usage (`protocol::channel_api::response_cost`),
//! the usage in the body (when there is one) is the billed usage, prompt tokens are at most the
//! request's tokenizer-free bound (`protocol::channel_api::prompt_token_bound`, what the node
//! reserved for), completion tokens are at most the request's `max_tokens` and at least the
//! content chunks the client received.

use enclave_cloud_common::interfaces::marketplace::Channel;
use protocol::channel_api::{BilledUsage, response_cost};

/// What the client knows independently of the node's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The request's `max_tokens` (or `max_completion_tokens`).
    pub max_tokens: Option<u64>,
    /// The most prompt tokens the request can have
    /// (`protocol::channel_api::prompt_token_bound` of its body).
    pub prompt_bound: u64,
    /// Content chunks received (streams): each carries at least one token.
    pub content_chunks: u64,
    /// `usage` in the response body or the stream's usage chunk: (prompt, completion).
    pub body_usage: Option<(u64, u64)>,
}

/// Why a bill was refused (the node is then treated as faulty and not paid for it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("billed {billed} but the usage costs {expected} on this channel")]
    Cost { billed: u128, expected: u128 },
    #[error("billed {prompt} prompt tokens for a request that can have at most {bound}")]
    OverPromptBound { prompt: u64, bound: u64 },
    #[error("billed {completion} completion tokens, over the request's max_tokens {max}")]
    OverMaxTokens { completion: u64, max: u64 },
    #[error("billed {completion} completion tokens for {chunks} content chunks")]
    BelowChunks { completion: u64, chunks: u64 },
    #[error("billed usage ({billed:?}) is not the usage in the response ({body:?})")]
    NotTheBodyUsage {
        billed: (u64, u64),
        body: (u64, u64),
    },
    #[error("missing or malformed bill: {0}")]
    Malformed(String),
}

/// The amount to add to the voucher for this response, or why not.
pub fn check_bill(
    channel: &Channel,
    bill: &BilledUsage,
    seen: &Observed,
) -> Result<u128, UsageError> {
    let billed = (bill.prompt_tokens, bill.completion_tokens);
    if let Some(body) = seen.body_usage
        && body != billed
    {
        return Err(UsageError::NotTheBodyUsage { billed, body });
    }
    if bill.prompt_tokens > seen.prompt_bound {
        return Err(UsageError::OverPromptBound {
            prompt: bill.prompt_tokens,
            bound: seen.prompt_bound,
        });
    }
    if let Some(max) = seen.max_tokens
        && bill.completion_tokens > max
    {
        return Err(UsageError::OverMaxTokens {
            completion: bill.completion_tokens,
            max,
        });
    }
    if bill.completion_tokens < seen.content_chunks {
        return Err(UsageError::BelowChunks {
            completion: bill.completion_tokens,
            chunks: seen.content_chunks,
        });
    }
    let expected = response_cost(channel, bill.prompt_tokens, bill.completion_tokens);
    if bill.cost.0 != expected {
        return Err(UsageError::Cost {
            billed: bill.cost.0,
            expected,
        });
    }
    Ok(expected)
}

/// `usage.prompt_tokens` and `usage.completion_tokens` (0 when absent, as in embeddings) of
/// an OpenAI response or chunk.
pub fn usage_of(value: &serde_json::Value) -> Option<(u64, u64)> {
    let usage = value.get("usage").filter(|u| !u.is_null())?;
    let prompt = usage.get("prompt_tokens")?.as_u64()?;
    let completion = usage
        .get("completion_tokens")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Some((prompt, completion))
}

/// The request's completion limit: `max_completion_tokens`, else `max_tokens`.
pub fn max_tokens_of(request: &serde_json::Value) -> Option<u64> {
    request
        .get("max_completion_tokens")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            request
                .get("max_tokens")
                .and_then(serde_json::Value::as_u64)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::interfaces::marketplace::{ChannelState, NodePrice, StorageSource};
    use enclave_cloud_common::{Asset, ChannelId, NodeId};
    use near_sdk::json_types::{U64, U128};

    pub fn channel() -> Channel {
        Channel {
            channel_id: ChannelId(1),
            user: "u.test.near".parse().unwrap(),
            node_id: NodeId(0),
            operator: "op.test.near".parse().unwrap(),
            model_id: "llm".parse().unwrap(),
            channel_key: "ed25519:11111111111111111111111111111111".parse().unwrap(),
            asset: Asset::Near,
            price: NodePrice {
                input_per_million: U128(1_000_000_000),
                output_per_million: U128(3_000_000_000),
            },
            token_rate: None,
            deposit: U128(10u128.pow(24)),
            settled: U128(0),
            storage_deposit: near_sdk::NearToken::from_yoctonear(0),
            storage_source: StorageSource::Attached,
            challenge_period_ns: U64(1),
            opened_ns: U64(1),
            state: ChannelState::Open,
        }
    }

    fn bill(prompt: u64, completion: u64) -> BilledUsage {
        BilledUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost: U128(response_cost(&channel(), prompt, completion)),
        }
    }

    #[test]
    fn an_honest_bill_is_paid_at_the_channel_price() {
        let seen = Observed {
            max_tokens: Some(16),
            prompt_bound: 10,
            content_chunks: 5,
            body_usage: Some((10, 7)),
        };
        assert_eq!(
            check_bill(&channel(), &bill(10, 7), &seen),
            Ok(10 * 1_000 + 7 * 3_000)
        );
    }

    #[test]
    fn over_reporting_is_refused() {
        let seen = Observed {
            max_tokens: Some(16),
            prompt_bound: 40,
            content_chunks: 5,
            body_usage: None,
        };
        assert!(matches!(
            check_bill(&channel(), &bill(41, 7), &seen),
            Err(UsageError::OverPromptBound {
                prompt: 41,
                bound: 40
            })
        ));
        assert!(matches!(
            check_bill(&channel(), &bill(10, 17), &seen),
            Err(UsageError::OverMaxTokens {
                completion: 17,
                max: 16
            })
        ));
        assert!(matches!(
            check_bill(&channel(), &bill(10, 4), &seen),
            Err(UsageError::BelowChunks { .. })
        ));
        let mut inflated = bill(10, 7);
        inflated.cost = U128(inflated.cost.0 + 1);
        assert!(matches!(
            check_bill(&channel(), &inflated, &seen),
            Err(UsageError::Cost { .. })
        ));
        let body = Observed {
            body_usage: Some((10, 6)),
            ..seen
        };
        assert!(matches!(
            check_bill(&channel(), &bill(10, 7), &body),
            Err(UsageError::NotTheBodyUsage { .. })
        ));
    }

    #[test]
    fn usage_and_limits_are_read_from_openai_shapes() {
        let v = serde_json::json!({"usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        assert_eq!(usage_of(&v), Some((3, 2)));
        let e = serde_json::json!({"usage": {"prompt_tokens": 4, "total_tokens": 4}});
        assert_eq!(usage_of(&e), Some((4, 0)));
        assert_eq!(usage_of(&serde_json::json!({"usage": null})), None);
        let r = serde_json::json!({"max_tokens": 9, "max_completion_tokens": 5});
        assert_eq!(max_tokens_of(&r), Some(5));
        assert_eq!(
            max_tokens_of(&serde_json::json!({"max_tokens": 9})),
            Some(9)
        );
        assert_eq!(max_tokens_of(&serde_json::json!({})), None);
    }
}
