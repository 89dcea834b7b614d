//! A transaction's final outcome, reduced to what callers use: the return value, the logs of
//! every receipt (NEP-297 events included), gas, and the receipts that failed on the side.

use near_primitives::errors::{ActionErrorKind, FunctionCallError, TxExecutionError};
use near_primitives::gas::Gas;
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use near_primitives::views::{
    ExecutionStatusView, FinalExecutionOutcomeView, FinalExecutionStatus,
};
use serde::de::DeserializeOwned;

use crate::error::{ChainError, Result, panic_text};

/// NEP-297 log prefix.
pub const EVENT_LOG_PREFIX: &str = "EVENT_JSON:";

/// A successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    pub tx_hash: CryptoHash,
    /// The `SuccessValue` of the transaction (the last receipt of the call's promise chain).
    pub value: Vec<u8>,
    /// Logs of the transaction and all its receipts, in execution order.
    pub logs: Vec<String>,
    /// Gas burnt by the transaction and all its receipts.
    pub gas_burnt: Gas,
    /// Receipts that failed although the transaction succeeded (e.g. a payout transfer the
    /// contract turned into a credit): executor and error.
    pub failed_receipts: Vec<(AccountId, String)>,
}

impl TxOutcome {
    /// The return value decoded as JSON. An empty value (a method returning `()`) decodes as
    /// JSON `null`, so `json::<()>()` works for it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode_json("transaction result", &self.value)
    }

    /// The JSON payloads of the NEP-297 events logged by any receipt.
    pub fn events(&self) -> impl Iterator<Item = serde_json::Value> + '_ {
        self.logs.iter().filter_map(|log| {
            log.strip_prefix(EVENT_LOG_PREFIX)
                .and_then(|json| serde_json::from_str(json).ok())
        })
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ChainError::Decode {
        what: what.to_owned(),
        value: String::from_utf8_lossy(bytes).chars().take(300).collect(),
        message: e.to_string(),
    })
}

/// `None` while the transaction is not final yet (`NotStarted`/`Started`).
pub(crate) fn from_view(view: FinalExecutionOutcomeView) -> Option<Result<TxOutcome>> {
    let tx_hash = view.transaction_outcome.id;
    let method = view
        .transaction
        .actions
        .iter()
        .find_map(|a| match a {
            near_primitives::views::ActionView::FunctionCall { method_name, .. } => {
                Some(method_name.clone())
            }
            _ => None,
        })
        .unwrap_or_default();
    let outcomes = std::iter::once(&view.transaction_outcome).chain(view.receipts_outcome.iter());
    let mut logs = Vec::new();
    let mut gas_burnt = Gas::ZERO;
    let mut failures = Vec::new();
    for o in outcomes {
        logs.extend(o.outcome.logs.iter().cloned());
        gas_burnt = gas_burnt.saturating_add(o.outcome.gas_burnt);
        if let ExecutionStatusView::Failure(err) = &o.outcome.status {
            failures.push((o.outcome.executor_id.clone(), err.clone()));
        }
    }
    match view.status {
        FinalExecutionStatus::NotStarted | FinalExecutionStatus::Started => None,
        FinalExecutionStatus::SuccessValue(value) => Some(Ok(TxOutcome {
            tx_hash,
            value,
            logs,
            gas_burnt,
            failed_receipts: failures
                .into_iter()
                .map(|(who, e)| (who, e.to_string()))
                .collect(),
        })),
        FinalExecutionStatus::Failure(error) => {
            // The receipt that failed names the contract; the transaction's own receiver
            // otherwise.
            let contract = failures
                .iter()
                .find(|(_, e)| *e == error)
                .map(|(who, _)| who.clone())
                .unwrap_or_else(|| view.transaction.receiver_id.clone());
            Some(Err(classify_failure(tx_hash, contract, method, error)))
        }
    }
}

fn classify_failure(
    tx_hash: CryptoHash,
    contract: AccountId,
    method: String,
    error: TxExecutionError,
) -> ChainError {
    match error {
        TxExecutionError::InvalidTxError(e) => ChainError::InvalidTransaction(Box::new(e)),
        TxExecutionError::ActionError(action) => match &action.kind {
            ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(msg)) => {
                ChainError::ContractPanic {
                    contract,
                    method,
                    message: panic_text(msg),
                    tx_hash: Some(tx_hash),
                }
            }
            ActionErrorKind::FunctionCallError(other) => ChainError::ContractPanic {
                contract,
                method,
                message: format!("{other:?}"),
                tx_hash: Some(tx_hash),
            },
            _ => ChainError::ActionFailed {
                tx_hash,
                error: Box::new(action),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A final outcome as neard serialises it (trimmed to the fields the view needs).
    fn view(
        status: serde_json::Value,
        receipt_status: serde_json::Value,
    ) -> FinalExecutionOutcomeView {
        let outcome = |status: serde_json::Value, logs: Vec<&str>, executor: &str| {
            serde_json::json!({
                "proof": [], "block_hash": "11111111111111111111111111111111",
                "id": "11111111111111111111111111111111",
                "outcome": {"logs": logs, "receipt_ids": [], "gas_burnt": 1_000_000_000_000u64,
                    "tokens_burnt": "0", "executor_id": executor, "status": status,
                    "metadata": {"version": 1, "gas_profile": null}}
            })
        };
        serde_json::from_value(serde_json::json!({
            "status": status,
            "transaction": {
                "signer_id": "alice.test.near", "public_key": "ed25519:11111111111111111111111111111111",
                "nonce": 5, "receiver_id": "market.test.near", "priority_fee": 0,
                "hash": "11111111111111111111111111111111",
                "actions": [{"FunctionCall": {"method_name": "claim_job", "args": "e30=", "gas": 1, "deposit": "0"}}],
                "signature": "ed25519:1111111111111111111111111111111111111111111111111111111111111111"
            },
            "transaction_outcome": outcome(serde_json::json!({"SuccessReceiptId": "11111111111111111111111111111111"}), vec![], "alice.test.near"),
            "receipts_outcome": [
                outcome(receipt_status, vec!["EVENT_JSON:{\"standard\":\"ecloud\",\"event\":\"x\"}", "plain"], "registry.test.near"),
            ],
        }))
        .unwrap()
    }

    #[test]
    fn success_value_logs_and_events() {
        let v = view(
            serde_json::json!({"SuccessValue": "dHJ1ZQ=="}),
            serde_json::json!({"SuccessValue": "dHJ1ZQ=="}),
        );
        let outcome = from_view(v).unwrap().unwrap();
        assert!(outcome.json::<bool>().unwrap());
        assert_eq!(outcome.logs.len(), 2);
        assert_eq!(outcome.events().count(), 1);
        assert_eq!(outcome.gas_burnt, Gas::from_teragas(2));
        assert!(outcome.failed_receipts.is_empty());
        assert!(outcome.json::<u64>().is_err());
    }

    #[test]
    fn empty_value_decodes_as_unit() {
        let v = view(
            serde_json::json!({"SuccessValue": ""}),
            serde_json::json!({"SuccessValue": ""}),
        );
        let outcome = from_view(v).unwrap().unwrap();
        outcome.json::<()>().unwrap();
        assert_eq!(outcome.json::<Option<u64>>().unwrap(), None);
    }

    #[test]
    fn contract_panic_carries_the_message_and_the_failing_contract() {
        let failure = serde_json::json!({"Failure": {"ActionError": {"index": 0, "kind":
            {"FunctionCallError": {"ExecutionError": "Smart contract panicked: job 7 not found"}}}}});
        let v = view(failure.clone(), failure);
        let err = from_view(v).unwrap().unwrap_err();
        match &err {
            ChainError::ContractPanic {
                contract,
                method,
                message,
                tx_hash,
            } => {
                assert_eq!(contract.as_str(), "registry.test.near");
                assert_eq!(method, "claim_job");
                assert_eq!(message, "job 7 not found");
                assert!(tx_hash.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.panic_message(), Some("job 7 not found"));
    }

    #[test]
    fn other_action_errors_and_pending_outcomes() {
        let failure = serde_json::json!({"Failure": {"ActionError": {"index": 0, "kind":
            {"AccountAlreadyExists": {"account_id": "bob.test.near"}}}}});
        let v = view(failure.clone(), failure);
        assert!(matches!(
            from_view(v).unwrap(),
            Err(ChainError::ActionFailed { .. })
        ));
        let v = view(serde_json::json!("Started"), serde_json::json!("Unknown"));
        assert!(from_view(v).is_none());
    }

    #[test]
    fn side_failures_are_reported_on_success() {
        let v = view(
            serde_json::json!({"SuccessValue": ""}),
            serde_json::json!({"Failure": {"ActionError": {"index": 0, "kind":
                {"FunctionCallError": {"ExecutionError": "Smart contract panicked: no"}}}}}),
        );
        let outcome = from_view(v).unwrap().unwrap();
        assert_eq!(outcome.failed_receipts.len(), 1);
        assert_eq!(outcome.failed_receipts[0].0.as_str(), "registry.test.near");
    }
}
