//! Agent requests: a contract asks for inference, the marketplace yields until a node
//! responds (or the yield times out after 200 blocks), settles, and calls the caller back.

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::serde_json::json;
use near_sdk::{GasWeight, NearToken, Promise, env, near};

use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::{AiResponse, ext_ai_caller};
use enclave_cloud_common::{
    Asset, InputRef, ModelId, NodeId, OutputRef, ReceiptSubject, RequestId, ResultReceipt, Usage,
};

use crate::errors::{MarketplaceError, Result};
use crate::funds::{dec, inc};
use crate::payouts::{EscrowRelease, push_payout};
use crate::refs::{checked_hash, verify_node_signature};
use crate::settlement::{split, usage_cost_yocto};
use crate::state::{Answer, Payout, PayoutKind, Request};
use crate::storage::{ANSWER_RESERVE_BYTES, StorageMeter, apply_delta, bytes_cost};
use enclave_cloud_common::OrPanic;

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::{AgentRequestApi, GAS_AI_CALLBACK, GAS_ON_REQUEST_DONE, Marketplace};

#[near]
impl Marketplace {
    pub(crate) fn try_request(
        &mut self,
        model_id: ModelId,
        input: InputRef,
        price_cap: U128,
    ) -> Result<RequestId> {
        self.require_not_paused()?;
        if price_cap.0 == 0 {
            return Err(MarketplaceError::ZeroPriceCap);
        }
        let attached = env::attached_deposit().as_yoctonear();
        let storage_deposit =
            attached
                .checked_sub(price_cap.0)
                .ok_or(MarketplaceError::InsufficientDeposit {
                    attached,
                    needed: price_cap.0,
                })?;
        let input_hash = checked_hash("input", &input, self.config.max_inline_bytes)?;
        let caller = env::predecessor_account_id();
        let request_id = self.next_request_id;
        self.next_request_id = request_id.next();

        let args = json!({ "request_id": request_id }).to_string();
        let (_yielded, yield_id) =
            Promise::new_yield("on_request_done", args, GAS_ON_REQUEST_DONE, GasWeight(1));
        let request = Request {
            request_id,
            caller: caller.clone(),
            model_id: model_id.clone(),
            price_cap,
            storage_deposit: NearToken::from_yoctonear(storage_deposit),
            input: input.clone(),
            input_hash,
            yield_id,
            created_ns: U64(env::block_timestamp()),
            answer: None,
        };
        let meter = StorageMeter::start();
        self.requests.insert(&request_id, &request);
        let bytes = apply_delta(0, meter.delta())?
            .saturating_add(ANSWER_RESERVE_BYTES)
            .saturating_add(u64::from(self.config.max_inline_bytes));
        let needed_storage = bytes_cost(bytes);
        if storage_deposit < needed_storage {
            return Err(MarketplaceError::InsufficientDeposit {
                attached,
                needed: price_cap.0.saturating_add(needed_storage),
            });
        }
        let ledger = self.ledger_mut(&Asset::Near);
        inc(&mut ledger.held, attached)?;
        inc(&mut ledger.escrow, price_cap.0)?;
        inc(&mut ledger.storage, storage_deposit)?;
        MarketplaceEvent::RequestCreated {
            request_id,
            caller,
            model_id,
            deposit: U128(attached),
            input,
        }
        .emit();
        Ok(request_id)
    }

    pub(crate) fn try_respond(
        &mut self,
        request_id: RequestId,
        node_id: NodeId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
    ) -> Result<()> {
        // Not payable: the generated wrapper already refuses a deposit.
        let mut request = self
            .requests
            .get(&request_id)
            .ok_or(MarketplaceError::RequestNotFound(request_id))?;
        if request.answer.is_some() {
            return Err(MarketplaceError::RequestAnswered(request_id));
        }
        let now = env::block_timestamp();
        let node = self
            .nodes
            .get(&node_id)
            .filter(|n| n.is_fresh(now))
            .ok_or(MarketplaceError::NodeNotCached { node_id })?;
        let price =
            node.price_of(&request.model_id)
                .ok_or_else(|| MarketplaceError::ModelNotServed {
                    node_id,
                    model_id: request.model_id.clone(),
                })?;
        let output_hash = checked_hash("output", &output, self.config.max_inline_bytes)?;
        let signed = ResultReceipt {
            subject: ReceiptSubject::Request(request_id),
            model_id: request.model_id.clone(),
            input_hash: request.input_hash,
            output_hash,
            usage,
            // `respond` takes no weights hash: an agent request's receipt signs the v1 layout.
            weights_hash: None,
        };
        verify_node_signature(
            node_id,
            &node.signer_key,
            &node.operator,
            &signed,
            signature.as_ref().map(|s| s.0.as_slice()),
        )?;
        request.answer = Some(Answer {
            node_id,
            operator: node.operator,
            price,
            usage,
            output,
            output_hash,
            signature,
        });
        self.requests.insert(&request_id, &request);
        // The answer waits in state (a yield payload is limited to 1 KiB); the callback reads it.
        request
            .yield_id
            .resume([])
            .map_err(|_| MarketplaceError::RequestTimedOut(request_id))
    }

    /// Yield callback: settles an answered request or refunds a timed-out one, then tells the
    /// caller. Never panics, so a request can never stay stuck with its deposit.
    /// Yield callback of `request`, run on `respond` or after the timeout. Private.
    #[private]
    pub fn on_request_done(&mut self, request_id: RequestId) {
        let resumed = env::promise_results_count() == 1
            && !matches!(
                env::promise_result_checked(0, 0),
                Err(near_sdk::PromiseError::Failed)
            );
        let Some(request) = self.requests.remove(&request_id) else {
            env::log_str(&format!("request {request_id} is already finished"));
            return;
        };
        let answer = request.answer.clone().filter(|_| resumed);
        let response = match answer {
            Some(answer) => match self.settle_request(&request, &answer) {
                Ok(response) => Some(response),
                Err(e) => {
                    env::log_str(&format!(
                        "request {request_id} could not settle, refunded: {e}"
                    ));
                    self.refund_request(&request);
                    None
                }
            },
            None => {
                self.refund_request(&request);
                None
            }
        };
        let _ = ext_ai_caller::ext(request.caller.clone())
            .with_static_gas(GAS_AI_CALLBACK)
            .on_ai_response(request_id, response);
    }

    fn settle_request(&mut self, request: &Request, answer: &Answer) -> Result<AiResponse> {
        let cap = request.price_cap.0;
        let settlement = split(
            cap,
            usage_cost_yocto(&answer.usage, &answer.price),
            self.config.protocol_fee_bps,
            self.config.royalty_bps,
        )?;
        let mut payouts = Vec::new();
        let storage = request.storage_deposit.as_yoctonear();
        dec(&mut self.ledger_mut(&Asset::Near).storage, storage)?;
        let escrow = EscrowRelease {
            asset: &Asset::Near,
            amount: cap,
            model_id: &request.model_id,
            provider: &answer.operator,
            payer: &request.caller,
        };
        self.book_split(escrow, &settlement, &mut payouts)?;
        push_payout(
            &mut payouts,
            Payout {
                account: request.caller.clone(),
                asset: Asset::Near,
                amount: U128(storage),
                kind: PayoutKind::Transfer,
            },
        );
        MarketplaceEvent::RequestAnswered {
            request_id: request.request_id,
            node_id: answer.node_id,
            usage: answer.usage,
            settlement: settlement.clone(),
        }
        .emit();
        self.pay(payouts)?;
        Ok(AiResponse {
            node_id: answer.node_id,
            output: answer.output.clone(),
            usage: answer.usage,
            cost: settlement.cost,
        })
    }

    /// Called from the yield callback, which must not fail: a ledger error is logged and the
    /// books stay as they were, so `funds` reports it.
    fn refund_request(&mut self, request: &Request) {
        if let Err(e) = self.try_refund_request(request) {
            env::log_str(&format!(
                "ledger error: request {} not refunded: {e}",
                request.request_id
            ));
        }
    }

    fn try_refund_request(&mut self, request: &Request) -> Result<()> {
        let cap = request.price_cap.0;
        let storage = request.storage_deposit.as_yoctonear();
        let refund = cap
            .checked_add(storage)
            .ok_or(MarketplaceError::Overflow("request refund"))?;
        // Every check before the first write: the callback keeps whatever it wrote.
        let ledger = self.ledger_mut(&Asset::Near);
        let (mut escrow, mut stored, mut held) = (ledger.escrow, ledger.storage, ledger.held);
        dec(&mut escrow, cap)?;
        dec(&mut stored, storage)?;
        dec(&mut held, refund)?;
        (ledger.escrow, ledger.storage) = (escrow, stored);
        MarketplaceEvent::RequestTimedOut {
            request_id: request.request_id,
            refund: U128(refund),
        }
        .emit();
        self.pay(vec![Payout {
            account: request.caller.clone(),
            asset: Asset::Near,
            amount: U128(refund),
            kind: PayoutKind::Transfer,
        }])?;
        Ok(())
    }
}

#[near]
impl AgentRequestApi for Marketplace {
    #[payable]
    fn request(&mut self, model_id: ModelId, input: InputRef, price_cap: U128) -> RequestId {
        self.try_request(model_id, input, price_cap).or_panic()
    }

    fn respond(
        &mut self,
        request_id: RequestId,
        node_id: NodeId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
    ) {
        self.try_respond(request_id, node_id, output, usage, signature)
            .or_panic()
    }
}
