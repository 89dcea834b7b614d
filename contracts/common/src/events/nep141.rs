//! NEP-141 fungible-token events, in the shape near-contract-standards writes them
//! (`data` is an array), so the indexer can follow model-token holders.

use near_sdk::json_types::U128;
use near_sdk::{AccountId, near};

use super::Nep297;

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtMint {
    pub owner_id: AccountId,
    pub amount: U128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtBurn {
    pub owner_id: AccountId,
    pub amount: U128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtTransfer {
    pub old_owner_id: AccountId,
    pub new_owner_id: AccountId,
    pub amount: U128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Nep141Event {
    FtMint(Vec<FtMint>),
    FtBurn(Vec<FtBurn>),
    FtTransfer(Vec<FtTransfer>),
}

impl Nep297 for Nep141Event {
    const STANDARD: &'static str = "nep141";
    const VERSION: &'static str = "1.0.0";
}
