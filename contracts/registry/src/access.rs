//! Who may call what. Node calls come from the operator's account; the enclave's own access
//! key (a function-call key, so it cannot attach a deposit) proves the enclave itself acts,
//! while any other key of the operator must confirm with one yoctoNEAR (a full access key).

use enclave_cloud_common::NodeId;
use near_sdk::{AccountId, NearToken, env};

use crate::errors::{RegistryError, Result};
use crate::state::{Node, Registry};

/// Which key of the operator signed a node call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCaller {
    /// The node's attested enclave key.
    Enclave,
    /// Another key of the operator account, confirmed with one yocto.
    Operator,
}

/// The call must come straight from a transaction (no relaying contract): only then is
/// `signer_account_pk` a key of the predecessor account.
pub fn direct_caller() -> Result<AccountId> {
    let predecessor = env::predecessor_account_id();
    if predecessor != env::signer_account_id() {
        return Err(RegistryError::RelayedCall {
            predecessor,
            signer: env::signer_account_id(),
        });
    }
    Ok(predecessor)
}

pub fn assert_one_yocto() -> Result<()> {
    let attached = env::attached_deposit();
    if attached != NearToken::from_yoctonear(1) {
        return Err(RegistryError::OneYoctoRequired(attached.as_yoctonear()));
    }
    Ok(())
}

pub fn assert_no_deposit() -> Result<()> {
    let attached = env::attached_deposit();
    if !attached.is_zero() {
        return Err(RegistryError::DepositNotAllowed(attached.as_yoctonear()));
    }
    Ok(())
}

/// The call comes directly from the operator of a live node.
fn operator_call(node_id: NodeId, node: &Node) -> Result<()> {
    let caller = direct_caller()?;
    if caller != node.operator {
        return Err(RegistryError::NotNodeOperator {
            node: node_id,
            operator: node.operator.clone(),
            caller,
        });
    }
    if node.deregistered {
        return Err(RegistryError::NodeDeregistered(node_id));
    }
    Ok(())
}

/// The caller is the node's operator; returns which of its keys signed.
pub fn node_caller(node_id: NodeId, node: &Node) -> Result<NodeCaller> {
    operator_call(node_id, node)?;
    if env::signer_account_pk() == node.signer_key {
        assert_no_deposit()?;
        Ok(NodeCaller::Enclave)
    } else {
        assert_one_yocto()?;
        Ok(NodeCaller::Operator)
    }
}

/// Only the node's enclave key may make this call (liveness, attestation, GPUs).
pub fn require_enclave(node_id: NodeId, node: &Node) -> Result<()> {
    operator_call(node_id, node)?;
    let signer = env::signer_account_pk();
    if signer != node.signer_key {
        return Err(RegistryError::NotNodeKey {
            node: node_id,
            expected: String::from(&node.signer_key),
            signer: String::from(&signer),
        });
    }
    Ok(())
}

pub fn require_owner(state: &Registry) -> Result<()> {
    assert_one_yocto()?;
    let caller = env::predecessor_account_id();
    if caller != state.owner {
        return Err(RegistryError::NotOwner {
            owner: state.owner.clone(),
            caller,
        });
    }
    Ok(())
}

pub fn require_marketplace(state: &Registry) -> Result<()> {
    let caller = env::predecessor_account_id();
    match &state.marketplace {
        Some(m) if *m == caller => Ok(()),
        other => Err(RegistryError::NotMarketplace {
            expected: other
                .as_ref()
                .map_or_else(|| "(none configured)".to_owned(), |m| m.to_string()),
            caller,
        }),
    }
}
