//! `ecloud`: the enclave-cloud client. The binary is a thin clap front end over this library so
//! tests can drive the commands directly.
//!
//! * [`attestation_cmd`]: verify attestation bundles, build them from dstack evidence.
//! * [`nodes`]: list and pick nodes (indexer), confirm them with the registry.
//! * [`jobs`]: encrypted jobs: build and seal the input, submit and pay, status, verify and
//!   open the result (fetched by URI and checked against its hash when it is not inline).
//! * [`cancel`]: cancel a job under the marketplace's rules and get its escrow back.
//! * [`models`]: model tokens: create through the factory, contribute, claim revenue, show.
//! * [`model_weights`]: encrypt and decrypt model weights ([`protocol::weights`]), point a
//!   manifest at them.
//! * [`model_keeper`]: the owner's key keeper: grants the model key to every node the
//!   manifest allows, once per attestation, and revokes it when the node may no longer hold it.
//! * [`indexer`], [`chain`]: the two sources the commands read (REST API, NEAR RPC).
//! * [`user_key`]: the user's x25519 key that job outputs are sealed to (a 0600 file;
//!   [`protocol::user_key`]).
//! * [`input`]: the job plaintext (one OpenAI Batch API line) from a prompt, texts or a file.
//! * [`output`]: readable or `--json` output (tables for lists) and exit codes.
//! * [`progress`]: progress of long waits on stderr.
//! * [`channels`]: payment channels (local state with the channel key, marketplace calls,
//!   `ecloud channel ...`).
//! * [`proxy`]: `ecloud proxy`, the local OpenAI-compatible endpoint paying attested nodes.

/// NEAR amounts, token units and durations on the command line (shared with the worker).
pub use chain_client::args as amount;
pub mod attestation_cmd;
pub mod cancel;
pub mod chain;
pub mod channels;
pub mod config;
pub mod http_read;
pub mod indexer;
pub mod input;
pub mod jobs;
pub mod model_keeper;
pub mod model_weights;
pub mod models;
pub mod nodes;
pub mod ocsp;
pub mod output;
pub mod progress;
pub mod proxy;

pub use protocol::user_key;

use std::path::{Path, PathBuf};

/// Everything that stops a command. [`Error::exit_code`] maps each to the documented code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// An argument that parsed but makes no sense (e.g. an input too large to send).
    #[error("{0}")]
    BadInput(String),
    #[error("no account to sign with: pass --account-id or set ECLOUD_ACCOUNT_ID")]
    NoAccount,
    #[error("user key: {0}")]
    Key(#[from] protocol::keys::KeyError),
    /// The thing asked for does not exist (job, node, model).
    #[error("{0}")]
    NotFound(String),
    /// It exists but is not there yet (e.g. a job without a result).
    #[error("{0}")]
    NotReady(String),
    #[error("indexer {url}: {message}")]
    Indexer { url: String, message: String },
    #[error("chain: {0}")]
    Chain(String),
    /// A job output stored by its node could not be fetched.
    #[error("output {url}: {message}")]
    Fetch { url: String, message: String },
    /// A signature, hash or ciphertext did not check out.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The revocation of a RIM's certificates could not be checked (OCSP responder down).
    #[error("{path}: {message}")]
    Revocation { path: PathBuf, message: String },
}

impl Error {
    /// 1: a check failed (attestation, receipt, decryption); 2: bad input or local files;
    /// 3: not found or not ready; 4: the indexer, the chain or an OCSP responder failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Verification(_) => 1,
            Self::Read { .. }
            | Self::Write { .. }
            | Self::Invalid { .. }
            | Self::BadInput(_)
            | Self::NoAccount
            | Self::Key(_) => 2,
            Self::NotFound(_) | Self::NotReady(_) => 3,
            Self::Indexer { .. }
            | Self::Chain(_)
            | Self::Fetch { .. }
            | Self::Revocation { .. } => 4,
        }
    }

    /// Stable machine-readable name, printed in `--json` error objects.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "unreadable_file",
            Self::Write { .. } => "unwritable_file",
            Self::Invalid { .. } => "invalid_file",
            Self::BadInput(_) => "bad_input",
            Self::NoAccount => "no_account",
            Self::Key(_) => "user_key",
            Self::NotFound(_) => "not_found",
            Self::NotReady(_) => "not_ready",
            Self::Indexer { .. } => "indexer",
            Self::Chain(_) => "chain",
            Self::Fetch { .. } => "output_fetch",
            Self::Verification(_) => "verification_failed",
            Self::Revocation { .. } => "revocation_unchecked",
        }
    }
}

/// Reads a file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}
