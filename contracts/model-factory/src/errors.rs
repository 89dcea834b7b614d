//! Every way a factory call can fail; each message names the problem and the value.

use enclave_cloud_common::ModelId;
use near_sdk::{AccountId, FunctionError, Gas, NearToken};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, FunctionError)]
pub enum FactoryError {
    #[error(
        "model code must be pinned by its hash, not by account {0} (whose code could change \
         under every model)"
    )]
    CodeByAccount(AccountId),
    #[error(transparent)]
    Governance(#[from] enclave_cloud_common::governance::GovernanceError),
    #[error("only the owner {owner} may call this; caller is {caller}")]
    NotOwner { owner: AccountId, caller: AccountId },
    #[error("attach exactly 1 yoctoNEAR to confirm with a full access key (attached {0})")]
    OneYoctoRequired(NearToken),
    #[error("no model code is configured yet (owner: publish_model_code or set_model_code)")]
    NoModelCode,
    #[error("model {0} already exists")]
    ModelExists(ModelId),
    #[error("model id {model_id} is reserved for {reserved_for}; caller is {caller}")]
    ModelReserved {
        model_id: ModelId,
        reserved_for: AccountId,
        caller: AccountId,
    },
    #[error("'{0}' does not make a valid account under this factory")]
    BadAccount(String),
    #[error("attach at least {required} for the model's storage (attached {attached})")]
    DepositTooSmall {
        required: NearToken,
        attached: NearToken,
    },
    #[error("attach at least {required} gas (attached {attached})")]
    NotEnoughGas { required: Gas, attached: Gas },
    #[error("the model arguments must be a JSON object: {0}")]
    BadArgs(String),
    #[error("the call input must be the model-token wasm code (got {0} bytes)")]
    BadCode(usize),
    #[error("the stored state is missing or in no layout this code knows")]
    UnknownState,
}
