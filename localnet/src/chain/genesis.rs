//! Genesis records into state (also used by sandbox_patch_state).

use crate::runtime::actions::access_key_storage;
use crate::state::{Overlay, State, StateRead, keys};
use near_chain_configs::{Genesis, GenesisValidationMode};
use near_crypto::{PublicKey, PublicKeyHandle};
use near_parameters::RuntimeConfig;
use near_primitives::account::AccountContract;
use near_primitives::hash::CryptoHash;
use near_primitives::state_record::StateRecord;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("cannot load genesis {path}: {reason}")]
pub struct GenesisError {
    path: String,
    reason: String,
}

/// Reads `genesis.json` as neard does; its consistency is the writer's business (near-sandbox
/// patches it), so only its shape is checked.
pub fn load_genesis(path: &Path) -> Result<Genesis, GenesisError> {
    Genesis::from_file(path, GenesisValidationMode::UnsafeFast).map_err(|e| GenesisError {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The full public key of a trie key handle (ML-DSA keys are stored hashed: not supported).
pub fn handle_to_key(handle: PublicKeyHandle) -> Option<PublicKey> {
    match handle {
        PublicKeyHandle::ED25519(k) => Some(PublicKey::ED25519(k)),
        PublicKeyHandle::SECP256K1(k) => Some(PublicKey::SECP256K1(k)),
        PublicKeyHandle::MlDsa65(_) => None,
    }
}

/// Writes one state record as is (no storage accounting: the record says what it says).
pub fn write_record(overlay: &mut Overlay, record: StateRecord) {
    match record {
        StateRecord::Account {
            account_id,
            account,
        } => overlay.set_account(&account_id, &account),
        StateRecord::AccessKey {
            account_id,
            public_key,
            access_key,
        } => {
            if let Some(pk) = handle_to_key(public_key) {
                overlay.set_access_key(&account_id, &pk, &access_key);
            }
        }
        StateRecord::Contract { account_id, code } => {
            let hash = CryptoHash::hash_bytes(&code);
            overlay.set_raw(keys::code(&account_id), code);
            // A patched contract is the account's contract (neard does the same).
            if let Some(mut account) = overlay.account(&account_id)
                && account.set_contract(AccountContract::Local(hash)).is_ok()
            {
                overlay.set_account(&account_id, &account);
            }
        }
        StateRecord::Data {
            account_id,
            data_key,
            value,
        } => {
            let key: Vec<u8> = data_key.into();
            let value: Vec<u8> = value.into();
            overlay.set_raw(keys::data(&account_id, &key), value);
        }
        _ => {}
    }
}

/// Applies the genesis records and, as nearcore does, recomputes every account's storage usage.
pub fn apply_records(config: &RuntimeConfig, genesis: &Genesis, state: &mut State) {
    let mut overlay = state.overlay();
    let mut usage: std::collections::HashMap<near_primitives::types::AccountId, u64> =
        Default::default();
    let extra = config.fees.storage_usage_config.num_extra_bytes_record;
    genesis.for_each_record(|record| {
        let (account_id, bytes) = match record {
            StateRecord::Account { account_id, .. } => (
                account_id,
                config.fees.storage_usage_config.num_bytes_account,
            ),
            StateRecord::AccessKey {
                account_id,
                public_key,
                access_key,
            } => match handle_to_key(public_key.clone()) {
                Some(pk) => (account_id, access_key_storage(config, &pk, access_key)),
                None => return,
            },
            StateRecord::Contract { account_id, code } => (account_id, code.len() as u64),
            StateRecord::Data {
                account_id,
                data_key,
                value,
            } => {
                let key: &[u8] = data_key.as_ref();
                let value: &[u8] = value.as_ref();
                (account_id, extra + key.len() as u64 + value.len() as u64)
            }
            _ => return,
        };
        *usage.entry(account_id.clone()).or_default() += bytes;
        write_record(&mut overlay, record.clone());
    });
    for (account_id, bytes) in usage {
        if let Some(mut account) = overlay.account(&account_id) {
            account.set_storage_usage(bytes);
            overlay.set_account(&account_id, &account);
        }
    }
    let changes = overlay.into_changes();
    state.commit(changes);
}
