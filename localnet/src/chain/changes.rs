//! State changes with their causes, as neard reports them (`EXPERIMENTAL_changes`) and as the
//! indexer framework ships them (`IndexerShard::state_changes`).
//!
//! The state logs every write to an account, access key, contract data or contract code
//! record with the cause set at that moment (the transaction or receipt being applied); a
//! block turns its log into `StateChangeWithCauseView`s, ordered as nearcore's store returns
//! them: by trie key (accounts, then contract code, access keys, data), and in the order they
//! happened within one key.

use crate::state::keys;
use borsh::BorshDeserialize;
use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, Account};
use near_primitives::types::AccountId;
use near_primitives::views::{
    AccessKeyView, AccountView, StateChangeCauseView, StateChangeValueView,
    StateChangeWithCauseView, StateChangesRequestView,
};

/// One logged write: the cause, the state key, the new value (`None`: deleted).
pub type LoggedChange = (StateChangeCauseView, Vec<u8>, Option<Vec<u8>>);

/// Whether writes to this state column are reported as state changes.
pub fn is_reported(column: u8) -> bool {
    matches!(
        column,
        keys::ACCOUNT | keys::ACCESS_KEY | keys::DATA | keys::CODE
    )
}

/// nearcore's trie column order of the reported kinds.
fn trie_rank(column: u8) -> u8 {
    match column {
        keys::ACCOUNT => 0,
        keys::CODE => 1,
        keys::ACCESS_KEY => 2,
        _ => 9,
    }
}

/// Splits `column + account + ',' + rest`.
fn split(key: &[u8]) -> Option<(u8, AccountId, &[u8])> {
    let (&column, tail) = key.split_first()?;
    let comma = tail.iter().position(|b| *b == b',')?;
    let account_id = std::str::from_utf8(&tail[..comma]).ok()?.parse().ok()?;
    Some((column, account_id, &tail[comma + 1..]))
}

fn value_view(key: &[u8], value: Option<&[u8]>) -> Option<StateChangeValueView> {
    let (column, account_id, rest) = split(key)?;
    Some(match (column, value) {
        (keys::ACCOUNT, Some(bytes)) => StateChangeValueView::AccountUpdate {
            account: AccountView::from(&Account::try_from_slice(bytes).ok()?),
            account_id,
        },
        (keys::ACCOUNT, None) => StateChangeValueView::AccountDeletion { account_id },
        (keys::ACCESS_KEY, value) => {
            let public_key = PublicKey::try_from_slice(rest).ok()?.into();
            match value {
                Some(bytes) => StateChangeValueView::AccessKeyUpdate {
                    account_id,
                    public_key,
                    access_key: AccessKeyView::from(AccessKey::try_from_slice(bytes).ok()?),
                },
                None => StateChangeValueView::AccessKeyDeletion {
                    account_id,
                    public_key,
                },
            }
        }
        (keys::DATA, Some(bytes)) => StateChangeValueView::DataUpdate {
            account_id,
            key: rest.to_vec().into(),
            value: bytes.to_vec().into(),
        },
        (keys::DATA, None) => StateChangeValueView::DataDeletion {
            account_id,
            key: rest.to_vec().into(),
        },
        (keys::CODE, Some(bytes)) => StateChangeValueView::ContractCodeUpdate {
            account_id,
            code: bytes.to_vec(),
        },
        (keys::CODE, None) => StateChangeValueView::ContractCodeDeletion { account_id },
        _ => return None,
    })
}

/// A block's logged writes as state changes with causes, in nearcore's order.
pub fn to_views(mut log: Vec<LoggedChange>) -> Vec<StateChangeWithCauseView> {
    // Stable: the writes to one key keep the order they happened in.
    log.sort_by(|(_, a, _), (_, b, _)| (trie_rank(a[0]), &a[1..]).cmp(&(trie_rank(b[0]), &b[1..])));
    log.into_iter()
        .filter_map(|(cause, key, value)| {
            Some(StateChangeWithCauseView {
                cause,
                value: value_view(&key, value.as_deref())?,
            })
        })
        .collect()
}

/// The changes an `EXPERIMENTAL_changes` request asks for.
pub fn select(
    changes: &[StateChangeWithCauseView],
    request: &StateChangesRequestView,
) -> Vec<StateChangeWithCauseView> {
    changes
        .iter()
        .filter(|change| matches(&change.value, request))
        .cloned()
        .collect()
}

fn matches(value: &StateChangeValueView, request: &StateChangesRequestView) -> bool {
    use StateChangeValueView as V;
    use StateChangesRequestView as R;
    let account_id = value.account_id();
    match request {
        R::AccountChanges { account_ids } => {
            matches!(value, V::AccountUpdate { .. } | V::AccountDeletion { .. })
                && account_ids.contains(account_id)
        }
        R::AllAccessKeyChanges { account_ids } => {
            matches!(
                value,
                V::AccessKeyUpdate { .. } | V::AccessKeyDeletion { .. }
            ) && account_ids.contains(account_id)
        }
        R::SingleAccessKeyChanges { keys } => match value {
            V::AccessKeyUpdate { public_key, .. } | V::AccessKeyDeletion { public_key, .. } => {
                keys.iter().any(|k| {
                    &k.account_id == account_id
                        && near_crypto::PublicKeyHandle::from(&k.public_key) == *public_key
                })
            }
            _ => false,
        },
        R::ContractCodeChanges { account_ids } => {
            matches!(
                value,
                V::ContractCodeUpdate { .. } | V::ContractCodeDeletion { .. }
            ) && account_ids.contains(account_id)
        }
        R::DataChanges {
            account_ids,
            key_prefix,
        } => match value {
            V::DataUpdate { key, .. } | V::DataDeletion { key, .. } => {
                let key: &[u8] = key.as_ref();
                let prefix: &[u8] = key_prefix.as_ref();
                account_ids.contains(account_id) && key.starts_with(prefix)
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test fixtures")]
    use super::*;
    use near_primitives::hash::CryptoHash;

    fn cause(n: u8) -> StateChangeCauseView {
        StateChangeCauseView::ReceiptProcessing {
            receipt_hash: CryptoHash::hash_bytes(&[n]),
        }
    }

    #[test]
    fn changes_come_by_key_in_trie_order_and_in_time_order_within_a_key() {
        let alice: AccountId = "alice.near".parse().unwrap();
        let account = borsh::to_vec(&Account::new(
            near_primitives::types::Balance::from_near(1),
            near_primitives::types::Balance::ZERO,
            near_primitives::account::AccountContract::None,
            100,
        ))
        .unwrap();
        let log = vec![
            (cause(1), keys::data(&alice, b"k"), Some(b"v1".to_vec())),
            (cause(2), keys::account(&alice), Some(account)),
            (cause(3), keys::data(&alice, b"k"), None),
            (cause(4), keys::code(&alice), Some(vec![0, 97, 115, 109])),
        ];
        let views = to_views(log);
        let kinds: Vec<String> = views
            .iter()
            .map(|v| serde_json::to_value(v).unwrap()["type"].to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "\"account_update\"",
                "\"contract_code_update\"",
                "\"data_update\"",
                "\"data_deletion\""
            ]
        );
        let data = select(
            &views,
            &StateChangesRequestView::DataChanges {
                account_ids: vec![alice.clone()],
                key_prefix: b"k".to_vec().into(),
            },
        );
        assert_eq!(data.len(), 2);
        let other = select(
            &views,
            &StateChangesRequestView::AccountChanges {
                account_ids: vec!["bob.near".parse().unwrap()],
            },
        );
        assert!(other.is_empty());
    }
}
