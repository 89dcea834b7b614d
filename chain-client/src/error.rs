//! Typed failures of chain calls.

use near_primitives::errors::{ActionError, InvalidTxError};
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;

/// The prefix nearcore puts before a contract's `env::panic_str` message.
pub const PANIC_PREFIX: &str = "Smart contract panicked: ";

/// Everything a chain call can fail with. A contract's own refusal is
/// [`ChainError::ContractPanic`] carrying the panic message (`near_sdk::FunctionError`s are
/// panics), so callers can match on it and show it.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC could not be reached or answered something that is not JSON-RPC.
    #[error("RPC {method} at {url}: {message}")]
    Transport {
        method: &'static str,
        url: String,
        message: String,
    },
    /// The RPC answered with an error for this method.
    #[error("RPC {method}: {message}")]
    Rpc {
        method: &'static str,
        message: String,
    },
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),
    #[error("account {account_id} has no access key {public_key}")]
    UnknownAccessKey {
        account_id: AccountId,
        public_key: String,
    },
    /// The transaction was refused before execution (bad nonce after retries, not enough
    /// balance, a function-call key used outside its receiver/methods, ...).
    #[error("transaction refused: {0}")]
    InvalidTransaction(Box<InvalidTxError>),
    /// A function call (transaction or view) panicked; `message` is the contract's panic
    /// message without nearcore's "Smart contract panicked: " prefix.
    #[error("{contract}.{method} failed: {message}")]
    ContractPanic {
        contract: AccountId,
        method: String,
        message: String,
        /// The transaction, for a call (not for a view).
        tx_hash: Option<CryptoHash>,
    },
    /// An action other than a contract panic failed (account exists, not enough balance, ...).
    #[error("transaction {tx_hash} failed: {error}")]
    ActionFailed {
        tx_hash: CryptoHash,
        error: Box<ActionError>,
    },
    /// No final outcome within the client's timeout. The transaction may still execute: do not
    /// blindly send it again (look it up with [`crate::ChainClient::tx_outcome`]).
    #[error("transaction {tx_hash} has no final outcome after {waited_secs} s")]
    Timeout {
        tx_hash: CryptoHash,
        waited_secs: u64,
    },
    /// The call succeeded but its return value is not the JSON the caller expected.
    #[error("{what}: cannot decode {value:?}: {message}")]
    Decode {
        what: String,
        value: String,
        message: String,
    },
    /// Credentials file missing, unreadable or malformed.
    #[error("credentials {path}: {message}")]
    Credentials { path: String, message: String },
    #[error("cannot encode the arguments of {method}: {message}")]
    Args { method: String, message: String },
}

impl ChainError {
    /// The contract's panic message, if this is a contract refusal.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            Self::ContractPanic { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Strips nearcore's panic prefix from a function-call execution error.
pub(crate) fn panic_text(message: &str) -> String {
    message
        .strip_prefix(PANIC_PREFIX)
        .unwrap_or(message)
        .to_owned()
}

pub type Result<T, E = ChainError> = std::result::Result<T, E>;
