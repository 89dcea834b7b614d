//! Would the chain accept this contract? Loads a wasm exactly as nearcore does on deploy:
//! the size limit, then `prepare` (validation + gas instrumentation) and a full compile
//! by the wasmtime VM, all under the runtime config of the current protocol version.

use near_parameters::RuntimeConfigStore;
use near_parameters::vm::{Config, VMKind};
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::logic::errors::{CompilationError, PrepareError};
use near_vm_runner::{ContractCode, MockContractRuntimeCache, precompile_contract};
use std::sync::Arc;

/// Our own ceiling, well under the protocol's: a contract that grows past it is a design
/// problem to fix (and leaves room for upgrades), not a limit to raise.
pub const PROJECT_MAX_CONTRACT_SIZE: usize = 1_572_864; // 1.5 MiB

/// What a deployable contract looks like to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployability {
    pub size: usize,
    pub max_size: u64,
    pub protocol_version: u32,
}

/// Why the chain would refuse a contract.
#[derive(Debug, thiserror::Error)]
pub enum ContractCheckError {
    #[error("contract is {size} bytes, over the {max_size}-byte limit of protocol {protocol}")]
    TooLarge {
        size: usize,
        max_size: u64,
        protocol: u32,
    },
    #[error("contract is {size} bytes, over the project's {budget}-byte (1.5 MiB) budget")]
    OverBudget { size: usize, budget: usize },
    #[error("contract is not a valid NEAR wasm (nearcore prepare): {0}")]
    Prepare(PrepareError),
    #[error("contract does not compile in nearcore's VM: {0}")]
    Compile(CompilationError),
    #[error("VM cache failure while compiling: {0:?}")]
    Cache(String),
}

/// The VM config of the protocol version this build of nearcore runs, with wasmtime.
pub fn current_vm_config() -> Arc<Config> {
    let store = RuntimeConfigStore::new(None);
    let mut config = store
        .get_config(PROTOCOL_VERSION)
        .wasm_config
        .as_ref()
        .clone();
    config.vm_kind = VMKind::Wasmtime;
    Arc::new(config)
}

/// Checks a contract the way a `DeployContract` action would, plus the project's size budget.
pub fn check_deployable(code: &[u8]) -> Result<Deployability, ContractCheckError> {
    let config = current_vm_config();
    let max_size = config.limit_config.max_contract_size;
    if code.len() as u64 > max_size {
        return Err(ContractCheckError::TooLarge {
            size: code.len(),
            max_size,
            protocol: PROTOCOL_VERSION,
        });
    }
    if code.len() > PROJECT_MAX_CONTRACT_SIZE {
        return Err(ContractCheckError::OverBudget {
            size: code.len(),
            budget: PROJECT_MAX_CONTRACT_SIZE,
        });
    }
    near_vm_runner::prepare::prepare_contract(code, &config, VMKind::Wasmtime)
        .map_err(ContractCheckError::Prepare)?;
    let cache = MockContractRuntimeCache::default();
    precompile_contract(
        &ContractCode::new(code.to_vec(), None),
        config,
        Some(&cache),
    )
    .map_err(|e| ContractCheckError::Cache(format!("{e:?}")))?
    .map_err(ContractCheckError::Compile)?;
    Ok(Deployability {
        size: code.len(),
        max_size,
        protocol_version: PROTOCOL_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_refused_with_a_clear_message() {
        let err = check_deployable(b"\x13\x37 definitely not wasm").unwrap_err();
        assert!(matches!(err, ContractCheckError::Prepare(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("contract is not a valid NEAR wasm"),
            "{err}"
        );
    }

    #[test]
    fn oversized_contracts_are_refused() {
        let limit = current_vm_config().limit_config.max_contract_size as usize;
        let err = check_deployable(&vec![0u8; limit + 1]).unwrap_err();
        assert!(matches!(err, ContractCheckError::TooLarge { .. }), "{err}");
        let err = check_deployable(&vec![0u8; PROJECT_MAX_CONTRACT_SIZE + 1]).unwrap_err();
        assert!(err.to_string().contains("1.5 MiB"), "{err}");
    }
}
