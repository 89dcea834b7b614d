//! enclave-cloud's NEAR client, shared by the worker and `ecloud`.
//!
//! * [`Account`]: an account id and a key, from near-cli's credentials files
//!   (`~/.near-credentials/<network>/<account>.json`: `account_id`, `public_key`,
//!   `private_key`), a secret key, an ed25519 seed (the worker's sealed key), or any
//!   [`TxSigner`].
//! * [`ChainClient`]: views (`view`, `view_account`, `view_access_key`, `block_height`) and
//!   transactions (`call`, `call_outcome`, `send_actions`) through near-jsonrpc-client:
//!   nonces cached per key and retried on `InvalidNonce`, `send_tx` until final, the outcome
//!   decoded ([`TxOutcome`]) or a typed [`ChainError`] (a contract's panic message in
//!   [`ChainError::ContractPanic`]).
//! * [`FunctionCall`]: receiver, method, JSON arguments, gas, deposit.
//! * [`amount`]: NEAR and token amounts for people (`0.011 NEAR`, `0.000275 NEAR`), shared by
//!   `ecloud`'s text output, the worker's logs and the deploy tool.
//! * `testkit` (feature): localnet, contracts, indexer and worker as processes, for tests,
//!   benchmarks and the demo.
//!
//! The wire types are nearcore's (near-primitives / near-crypto 0.38), re-exported below.

pub mod amount;
pub mod args;
mod call;
mod client;
pub mod contracts;
mod error;
mod nonce;
mod outcome;
mod signer;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use amount::{format_amount, format_near};
pub use call::{DEFAULT_CALL_GAS, FunctionCall};
pub use client::{ChainClient, ClientConfig, outcome_of, sign};
pub use error::{ChainError, PANIC_PREFIX, Result};
pub use outcome::{EVENT_LOG_PREFIX, TxOutcome};
pub use signer::{
    Account, CredentialsFile, TxSigner, create_credentials_file, credentials_path,
    default_credentials_dir, ed25519_secret_from_seed, write_credentials_file,
};

pub use near_crypto::{self, KeyType, PublicKey, SecretKey, Signature};
pub use near_jsonrpc_client;
pub use near_primitives::{
    self, gas::Gas, hash::CryptoHash, types::AccountId, types::Balance as NearToken,
};
