//! The part of a NEAR block the indexer reads.
//!
//! Block sources deliver near-indexer-primitives `StreamerMessage` JSON (neardata's
//! `/v0/block/{h}`, localnet, fixtures). We deserialize only the fields we use, so a newer
//! nearcore adding fields never breaks the indexer, and we avoid compiling the whole
//! near-primitives view tree. Field names follow `StreamerMessage` exactly.

use serde::{Deserialize, Deserializer, Serialize};

/// One final block and the receipt outcomes executed in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamerMessage {
    pub block: BlockView,
    pub shards: Vec<IndexerShard>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockView {
    pub header: BlockHeaderView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockHeaderView {
    pub height: u64,
    pub hash: String,
    pub prev_hash: String,
    /// Nanoseconds since the epoch; nearcore writes it as a decimal string.
    #[serde(
        deserialize_with = "u64_from_string_or_number",
        serialize_with = "u64_as_string"
    )]
    pub timestamp_nanosec: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexerShard {
    pub shard_id: u64,
    #[serde(default)]
    pub receipt_execution_outcomes: Vec<IndexerExecutionOutcomeWithReceipt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexerExecutionOutcomeWithReceipt {
    pub execution_outcome: ExecutionOutcomeWithIdView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecutionOutcomeWithIdView {
    /// The receipt id.
    pub id: String,
    pub outcome: ExecutionOutcomeView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecutionOutcomeView {
    pub logs: Vec<String>,
    /// The contract account whose code ran and wrote the logs.
    pub executor_id: String,
    /// `ExecutionStatusView`: `"Unknown"`, `{"Failure": ..}`, `{"SuccessValue": ..}` or
    /// `{"SuccessReceiptId": ..}`. Kept loose: we only ask whether it failed.
    pub status: serde_json::Value,
}

impl ExecutionOutcomeView {
    /// A failed receipt's state changes were rolled back, so its logs describe nothing
    /// that happened.
    pub fn succeeded(&self) -> bool {
        match &self.status {
            serde_json::Value::Object(map) => !map.contains_key("Failure"),
            _ => false,
        }
    }
}

impl StreamerMessage {
    pub fn height(&self) -> u64 {
        self.block.header.height
    }

    /// Every log line of a successful receipt, in execution order, with its receipt context.
    pub fn logs(&self) -> impl Iterator<Item = LogLine<'_>> {
        self.shards.iter().flat_map(|shard| {
            shard
                .receipt_execution_outcomes
                .iter()
                .map(|o| &o.execution_outcome)
                .filter(|o| o.outcome.succeeded())
                .flat_map(|o| {
                    o.outcome.logs.iter().map(move |line| LogLine {
                        receipt_id: &o.id,
                        executor_id: &o.outcome.executor_id,
                        line,
                    })
                })
        })
    }
}

/// A log line and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    pub receipt_id: &'a str,
    pub executor_id: &'a str,
    pub line: &'a str,
}

fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Num(u64),
        Str(String),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn u64_as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trimmed copy of a real neardata block (extra fields must be ignored).
    const SAMPLE: &str = r#"{
      "block": {
        "author": "node0",
        "header": {"height": 17, "prev_height": 16, "epoch_id": "11111111111111111111111111111111",
          "hash": "9rQ3d", "prev_hash": "7hJ2c", "timestamp": 1700000000000000000,
          "timestamp_nanosec": "1700000000000000000", "chunks_included": 1},
        "chunks": []
      },
      "shards": [{
        "shard_id": 0, "chunk": null, "state_changes": [],
        "receipt_execution_outcomes": [
          {"execution_outcome": {"block_hash": "9rQ3d", "id": "R1", "proof": [],
             "outcome": {"executor_id": "market.test", "gas_burnt": 1, "logs": ["a", "b"],
               "metadata": {"gas_profile": null, "version": 3}, "receipt_ids": [],
               "status": {"SuccessValue": ""}, "tokens_burnt": "0"}},
           "receipt": {"predecessor_id": "u.test", "receiver_id": "market.test", "receipt_id": "R1"}},
          {"execution_outcome": {"block_hash": "9rQ3d", "id": "R2", "proof": [],
             "outcome": {"executor_id": "market.test", "gas_burnt": 1, "logs": ["rolled back"],
               "metadata": {"gas_profile": null, "version": 3}, "receipt_ids": [],
               "status": {"Failure": {"ActionError": {"index": 0, "kind": {"FunctionCallError": {"ExecutionError": "x"}}}}},
               "tokens_burnt": "0"}},
           "receipt": {"predecessor_id": "u.test", "receiver_id": "market.test", "receipt_id": "R2"}}
        ]
      }]
    }"#;

    #[test]
    fn reads_streamer_message_and_skips_failed_receipts() {
        let msg: StreamerMessage = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(msg.height(), 17);
        assert_eq!(
            msg.block.header.timestamp_nanosec,
            1_700_000_000_000_000_000
        );
        let lines: Vec<&str> = msg.logs().map(|l| l.line).collect();
        assert_eq!(lines, ["a", "b"]);
        assert!(
            msg.logs()
                .all(|l| l.receipt_id == "R1" && l.executor_id == "market.test")
        );
        // Round trip through our own serializer keeps the wire names.
        let back: StreamerMessage =
            serde_json::from_str(&serde_json::to_string(&msg).unwrap()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn unknown_status_is_not_success() {
        let outcome = ExecutionOutcomeView {
            logs: vec![],
            executor_id: "a".into(),
            status: serde_json::json!("Unknown"),
        };
        assert!(!outcome.succeeded());
    }
}
