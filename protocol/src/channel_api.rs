//! The paid, private API between a client (`ecloud proxy`) and a node (`worker`), on top of the
//! sealed (OHTTP) transport of the `sealed-api` crate. Defined once here, so the two sides
//! cannot drift:
//!
//! * the payment headers each inner (sealed) request carries ([`ChannelPayment`]);
//! * the response headers (or, for a stream, trailers) the node answers with ([`headers`]);
//! * the paths of the node's API ([`paths`]);
//! * what a response costs and what a request may cost at most ([`response_cost`],
//!   [`max_request_cost`]), with the marketplace's own arithmetic
//!   (`enclave_cloud_common::pricing`), so the node bills and the client checks the same
//!   amount to the unit.
//!
//! Payment is post-paid: a request carries the newest voucher the client has signed (covering
//! every response it verified), and the channel key's [`RequestAuthorization`] over
//! (channel, sequence number, SHA-256 of the exact body). The node serves each sequence number
//! once and serves unpaid work only up to its credit limit.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use enclave_cloud_common::interfaces::marketplace::Channel;
use enclave_cloud_common::pricing::{to_asset_units, usage_cost_yocto};
use enclave_cloud_common::{ChannelId, Usage};
use near_sdk::json_types::{U64, U128};
use serde::{Deserialize, Serialize};

pub use enclave_cloud_common::interfaces::marketplace::methods::VoucherArgs as VoucherUpdate;
pub use enclave_cloud_common::{RequestAuthorization, Voucher};

/// Header names (lowercase, as HTTP/2 and Binary HTTP carry them).
pub mod headers {
    /// Request: the channel id (decimal).
    pub const CHANNEL: &str = "x-ecloud-channel";
    /// Request: the sequence number (decimal u64), unique per channel.
    pub const SEQUENCE: &str = "x-ecloud-sequence";
    /// Request: base64 of the channel key's ed25519 signature over the
    /// [`super::RequestAuthorization`] of this request.
    pub const REQUEST_SIGNATURE: &str = "x-ecloud-request-signature";
    /// Request (optional until the first voucher): the newest voucher's cumulative amount, in
    /// the channel's asset (decimal).
    pub const VOUCHER_AMOUNT: &str = "x-ecloud-voucher-amount";
    /// Request, with [`VOUCHER_AMOUNT`]: base64 of the voucher's signature.
    pub const VOUCHER_SIGNATURE: &str = "x-ecloud-voucher-signature";

    /// Response: the id its signatures are kept under (`GET /v1/signature/{id}`); the
    /// completion's own `id` for chat completions.
    pub const RESPONSE_ID: &str = "x-ecloud-response-id";
    /// Response header (whole responses) or trailer (streams): JSON [`super::BilledUsage`].
    pub const BILL: &str = "x-ecloud-bill";
    /// Response header (whole responses) or trailer (streams): JSON array of the response's
    /// signatures (`sealed_api::ResponseSignature`, `ecdsa` then `ed25519`).
    pub const SIGNATURES: &str = "x-ecloud-signatures";
    /// `ecloud proxy` to its caller: the encrypted weights (hex SHA-256, the model manifest's
    /// `weights_hash`) the response's signatures name and were checked against; absent for a
    /// model served from plain weights.
    pub const WEIGHTS_HASH: &str = "x-ecloud-weights-hash";
}

/// Paths of the node's API (inside the sealed transport, except the report, the signatures and
/// the key configuration, which anyone may read).
pub mod paths {
    pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";
    pub const EMBEDDINGS: &str = "/v1/embeddings";
    pub const MODELS: &str = "/v1/models";
    /// `GET /v1/signature/{id}?model=...&signing_algo=ecdsa|ed25519` (NEAR AI Cloud's path).
    pub const SIGNATURE_PREFIX: &str = "/v1/signature/";
    /// `GET /v1/attestation/report?nonce=<64 hex>&signing_algo=...` (NEAR AI Cloud's path).
    pub const ATTESTATION_REPORT: &str = "/v1/attestation/report";
    /// `POST` a [`super::VoucherUpdate`] (sealed): hands the node the newest voucher without a
    /// request, e.g. the one covering the last response before the client goes idle.
    pub const CHANNEL_VOUCHER: &str = "/v1/channels/voucher";
}

/// What one response was billed: its usage and its cost in the channel's asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilledUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// [`response_cost`] of the usage, smallest units of the channel's asset.
    pub cost: U128,
}

/// The payment a sealed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPayment {
    pub channel_id: ChannelId,
    pub sequence: u64,
    pub request_signature: [u8; 64],
    /// The newest voucher: (cumulative amount, signature). `None` before the first response
    /// was paid for.
    pub voucher: Option<(u128, [u8; 64])>,
}

/// Why a request's payment headers were refused (answered 401 by the node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentHeaderError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
}

fn sig64(name: &'static str, value: &str) -> Result<[u8; 64], PaymentHeaderError> {
    B64.decode(value.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(PaymentHeaderError::Malformed(name))
}

impl ChannelPayment {
    /// The authorization this payment's request signature must verify for.
    pub fn authorization(
        &self,
        marketplace: &near_sdk::AccountId,
        request_body: &[u8],
    ) -> RequestAuthorization {
        authorization(marketplace, self.channel_id, self.sequence, request_body)
    }

    /// The voucher carried, as the marketplace will check it.
    pub fn voucher(
        &self,
        marketplace: &near_sdk::AccountId,
        asset: &enclave_cloud_common::Asset,
    ) -> Option<(Voucher, [u8; 64])> {
        self.voucher.map(|(amount, sig)| {
            (
                Voucher {
                    marketplace: marketplace.clone(),
                    channel_id: self.channel_id,
                    asset: asset.clone(),
                    amount: U128(amount),
                },
                sig,
            )
        })
    }

    /// The header fields to add to the inner request.
    pub fn to_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (headers::CHANNEL.into(), self.channel_id.0.to_string()),
            (headers::SEQUENCE.into(), self.sequence.to_string()),
            (
                headers::REQUEST_SIGNATURE.into(),
                B64.encode(self.request_signature),
            ),
        ];
        if let Some((amount, sig)) = self.voucher {
            out.push((headers::VOUCHER_AMOUNT.into(), amount.to_string()));
            out.push((headers::VOUCHER_SIGNATURE.into(), B64.encode(sig)));
        }
        out
    }

    /// Reads the payment from a request's header fields (`get` looks one up by lowercase name).
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, PaymentHeaderError> {
        let need = |name: &'static str| get(name).ok_or(PaymentHeaderError::Missing(name));
        let channel_id = need(headers::CHANNEL)?
            .trim()
            .parse::<u64>()
            .map_err(|_| PaymentHeaderError::Malformed(headers::CHANNEL))?;
        let sequence = need(headers::SEQUENCE)?
            .trim()
            .parse::<u64>()
            .map_err(|_| PaymentHeaderError::Malformed(headers::SEQUENCE))?;
        let request_signature = sig64(
            headers::REQUEST_SIGNATURE,
            need(headers::REQUEST_SIGNATURE)?,
        )?;
        let voucher = match (
            get(headers::VOUCHER_AMOUNT),
            get(headers::VOUCHER_SIGNATURE),
        ) {
            (None, None) => None,
            (Some(amount), Some(sig)) => Some((
                amount
                    .trim()
                    .parse::<u128>()
                    .map_err(|_| PaymentHeaderError::Malformed(headers::VOUCHER_AMOUNT))?,
                sig64(headers::VOUCHER_SIGNATURE, sig)?,
            )),
            (Some(_), None) => return Err(PaymentHeaderError::Missing(headers::VOUCHER_SIGNATURE)),
            (None, Some(_)) => return Err(PaymentHeaderError::Missing(headers::VOUCHER_AMOUNT)),
        };
        Ok(Self {
            channel_id: ChannelId(channel_id),
            sequence,
            request_signature,
            voucher,
        })
    }
}

/// The [`RequestAuthorization`] of a request body.
pub fn authorization(
    marketplace: &near_sdk::AccountId,
    channel_id: ChannelId,
    sequence: u64,
    request_body: &[u8],
) -> RequestAuthorization {
    use sha2::Digest as _;
    RequestAuthorization {
        marketplace: marketplace.clone(),
        channel_id,
        sequence,
        request_sha256: sha2::Sha256::digest(request_body).into(),
    }
}

/// What `prompt_tokens` in and `completion_tokens` out cost on `channel`, in its asset: the
/// node's price frozen at opening, converted at the frozen rate, rounded down (the
/// marketplace's job arithmetic). Saturates at `u128::MAX` (more than any deposit).
pub fn response_cost(channel: &Channel, prompt_tokens: u64, completion_tokens: u64) -> u128 {
    let usage = Usage {
        input_tokens: U64(prompt_tokens),
        output_tokens: U64(completion_tokens),
    };
    to_asset_units(
        usage_cost_yocto(&usage, &channel.price),
        channel.token_rate.as_ref(),
    )
    .unwrap_or(u128::MAX)
}

/// An upper bound of a request's prompt tokens, known before inference and without the
/// model's tokenizer: its body length in bytes. Every tokenizer we serve (SentencePiece with
/// byte fallback, WordPiece) makes at most one token per byte of text, and the JSON around
/// each message (`{"role":"user","content":""}`, 28 bytes) outweighs the chat template's tokens
/// around it. The node reserves for this many; the client refuses a bill above it.
pub fn prompt_token_bound(body: &[u8]) -> u64 {
    body.len() as u64
}

/// The most a request may cost: its prompt (at most `prompt_token_bound` tokens) and
/// `max_tokens` completion tokens. What the node reserves before it serves.
pub fn max_request_cost(channel: &Channel, prompt_token_bound: u64, max_tokens: u64) -> u128 {
    response_cost(channel, prompt_token_bound, max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(voucher: Option<(u128, [u8; 64])>) -> ChannelPayment {
        ChannelPayment {
            channel_id: ChannelId(4),
            sequence: 9,
            request_signature: [7; 64],
            voucher,
        }
    }

    fn parse(fields: &[(String, String)]) -> Result<ChannelPayment, PaymentHeaderError> {
        ChannelPayment::from_headers(|name| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn headers_round_trip_with_and_without_a_voucher() {
        for p in [payment(None), payment(Some((12_345, [1; 64])))] {
            assert_eq!(parse(&p.to_headers()).unwrap(), p);
        }
    }

    #[test]
    fn half_a_voucher_or_a_short_signature_is_refused() {
        let mut fields = payment(Some((1, [1; 64]))).to_headers();
        fields.retain(|(n, _)| n != headers::VOUCHER_SIGNATURE);
        assert_eq!(
            parse(&fields),
            Err(PaymentHeaderError::Missing(headers::VOUCHER_SIGNATURE))
        );
        let mut fields = payment(None).to_headers();
        fields[2].1 = B64.encode([1u8; 63]);
        assert_eq!(
            parse(&fields),
            Err(PaymentHeaderError::Malformed(headers::REQUEST_SIGNATURE))
        );
        assert_eq!(
            parse(&[]),
            Err(PaymentHeaderError::Missing(headers::CHANNEL))
        );
    }

    #[test]
    fn the_authorization_binds_the_exact_body() {
        let m: near_sdk::AccountId = "market.near".parse().unwrap();
        let p = payment(None);
        assert_ne!(p.authorization(&m, b"{}"), p.authorization(&m, b"{ }"));
        assert_eq!(p.authorization(&m, b"{}").sequence, 9);
    }
}
