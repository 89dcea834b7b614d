//! The chain driven in-process: transactions, receipts across blocks, errors, persistence and
//! the neardata view of a block.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed step is a failed test"
)]

use localnet::chain::TxLookup;
use localnet::node::Node;
use near_crypto::{InMemorySigner, KeyType, SecretKey, Signer};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_primitives::account::AccessKey;
use near_primitives::action::{
    Action, AddKeyAction, CreateAccountAction, DeleteAccountAction, TransferAction,
};
use near_primitives::errors::{ActionErrorKind, InvalidTxError, TxExecutionError};
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{AccountId, Balance};
use near_primitives::views::{FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest};
use std::path::PathBuf;
use std::sync::Arc;

struct Fixture {
    home: PathBuf,
    node: Arc<Node>,
    root: Signer,
}

impl Fixture {
    /// Stops the node (its store closes) and opens the home dir again.
    fn reopen(&mut self) {
        let home = self.home.clone();
        let placeholder =
            std::env::temp_dir().join(format!("localnet-chain-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&placeholder);
        localnet::home::init(&placeholder, true).unwrap();
        self.node = Node::open(&placeholder).unwrap();
        self.node = Node::open(&home).unwrap();
        let _ = std::fs::remove_dir_all(&placeholder);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn fixture(name: &str) -> Fixture {
    let home = std::env::temp_dir().join(format!("localnet-chain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true).unwrap();
    let key = localnet::home::read_key(&home, "validator_key.json").unwrap();
    let node = Node::open(&home).unwrap();
    let root = InMemorySigner::from_secret_key(key.account_id, key.secret_key);
    Fixture { home, node, root }
}

impl Fixture {
    fn nonce(&self, signer: &Signer) -> u64 {
        let chain = self.node.chain();
        match chain
            .query(QueryRequest::ViewAccessKey {
                account_id: signer.get_account_id(),
                public_key: signer.public_key(),
            })
            .unwrap()
            .kind
        {
            QueryResponseKind::AccessKey(key) => key.nonce,
            other => panic!("{other:?}"),
        }
    }

    fn tx(&self, signer: &Signer, receiver: &AccountId, actions: Vec<Action>) -> SignedTransaction {
        let head = self.node.chain().head().hash;
        SignedTransaction::from_actions(
            self.nonce(signer) + 1,
            signer.get_account_id(),
            receiver.clone(),
            signer,
            actions,
            head,
        )
    }

    /// Submits and produces blocks until the transaction and all its receipts are done.
    fn run(&self, tx: SignedTransaction) -> FinalExecutionOutcomeView {
        let hash = self.node.chain().submit(tx).unwrap();
        for _ in 0..10 {
            self.node.produce_block(0).unwrap();
            if let TxLookup::Found {
                outcome,
                complete: true,
                ..
            } = self.node.chain().lookup_tx(&hash).unwrap()
            {
                return *outcome;
            }
        }
        panic!("transaction {hash} did not complete in 10 blocks");
    }

    fn balance(&self, account_id: &AccountId) -> Balance {
        match self
            .node
            .chain()
            .query(QueryRequest::ViewAccount {
                account_id: account_id.clone(),
            })
            .unwrap()
            .kind
        {
            QueryResponseKind::ViewAccount(view) => view.amount,
            other => panic!("{other:?}"),
        }
    }

    /// Creates `<name>.<root>` with a new full-access key and `near` NEAR.
    fn create(&self, name: &str, near: u128) -> Signer {
        let id: AccountId = format!("{name}.{}", self.root.get_account_id())
            .parse()
            .unwrap();
        let key = SecretKey::from_random(KeyType::ED25519);
        let outcome = self.run(self.tx(
            &self.root,
            &id,
            vec![
                Action::CreateAccount(CreateAccountAction {}),
                Action::Transfer(TransferAction {
                    deposit: Balance::from_near(near),
                }),
                Action::AddKey(Box::new(AddKeyAction {
                    public_key: key.public_key(),
                    access_key: AccessKey::full_access(),
                })),
            ],
        ));
        assert!(
            matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
            "{outcome:?}"
        );
        InMemorySigner::from_secret_key(id, key)
    }
}

fn transfer(near: u128) -> Vec<Action> {
    vec![Action::Transfer(TransferAction {
        deposit: Balance::from_near(near),
    })]
}

#[test]
fn a_transfer_moves_exactly_its_deposit_and_charges_gas_to_the_signer() {
    let f = fixture("transfer");
    let alice = f.create("alice", 10);
    let bob = f.create("bob", 1);
    let (a0, b0) = (
        f.balance(&alice.get_account_id()),
        f.balance(&bob.get_account_id()),
    );
    let outcome = f.run(f.tx(&alice, &bob.get_account_id(), transfer(3)));
    assert!(matches!(
        outcome.status,
        FinalExecutionStatus::SuccessValue(_)
    ));
    assert_eq!(
        f.balance(&bob.get_account_id()),
        b0.saturating_add(Balance::from_near(3))
    );
    let spent = a0.saturating_sub(f.balance(&alice.get_account_id()));
    let burnt = outcome
        .receipts_outcome
        .iter()
        .chain(std::iter::once(&outcome.transaction_outcome))
        .fold(Balance::ZERO, |acc, o| {
            acc.saturating_add(o.outcome.tokens_burnt)
        });
    assert!(
        spent >= Balance::from_near(3).saturating_add(burnt),
        "{spent} vs {burnt}"
    );
    assert!(spent < Balance::from_near(3).saturating_add(Balance::from_millinear(1)));
}

#[test]
fn short_top_level_accounts_are_for_the_registrar_only() {
    let f = fixture("registrar");
    let outcome = f.run(f.tx(
        &f.root,
        &"short".parse().unwrap(),
        vec![Action::CreateAccount(CreateAccountAction {})],
    ));
    match outcome.status {
        FinalExecutionStatus::Failure(TxExecutionError::ActionError(e)) => assert!(
            matches!(e.kind, ActionErrorKind::CreateAccountOnlyByRegistrar { .. }),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_used_nonce_is_refused_at_submission() {
    let f = fixture("nonce");
    let alice = f.create("alice", 5);
    let tx = f.tx(&alice, &f.root.get_account_id(), transfer(1));
    f.run(tx.clone());
    // The same nonce again, in a new transaction.
    let again = SignedTransaction::from_actions(
        tx.transaction.nonce().nonce(),
        alice.get_account_id(),
        f.root.get_account_id(),
        &alice,
        transfer(2),
        f.node.chain().head().hash,
    );
    let err = f.node.chain().submit(again).unwrap_err();
    assert!(
        matches!(err, InvalidTxError::InvalidNonce { .. }),
        "{err:?}"
    );
}

#[test]
fn deleting_an_account_pays_its_balance_to_the_beneficiary() {
    let f = fixture("delete");
    let alice = f.create("alice", 5);
    let root_before = f.balance(&f.root.get_account_id());
    let outcome = f.run(f.tx(
        &alice,
        &alice.get_account_id(),
        vec![Action::DeleteAccount(DeleteAccountAction {
            beneficiary_id: f.root.get_account_id(),
        })],
    ));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
        "{outcome:?}"
    );
    let gained = f
        .balance(&f.root.get_account_id())
        .saturating_sub(root_before);
    assert!(gained > Balance::from_millinear(4_990), "{gained}");
    let gone = f.node.chain().query(QueryRequest::ViewAccount {
        account_id: alice.get_account_id(),
    });
    assert!(gone.is_err());
}

#[test]
fn the_chain_continues_after_reopening_its_home() {
    let mut f = fixture("reopen");
    let alice = f.create("alice", 5);
    let height = f.node.chain().head().height;
    let balance = f.balance(&alice.get_account_id());
    f.reopen();
    assert_eq!(f.node.chain().head().height, height);
    let kind = f
        .node
        .chain()
        .query(QueryRequest::ViewAccount {
            account_id: alice.get_account_id(),
        })
        .unwrap()
        .kind;
    match kind {
        QueryResponseKind::ViewAccount(view) => assert_eq!(view.amount, balance),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_block_stream_carries_transactions_and_outcomes_with_logs() {
    let f = fixture("stream");
    let alice = f.create("alice", 5);
    let tx = f.tx(&alice, &f.root.get_account_id(), transfer(1));
    let hash = tx.get_hash();
    f.run(tx);
    let chain = f.node.chain();
    let head = chain.head().height;
    let block = (1..=head)
        .filter_map(|h| chain.block(h).unwrap())
        .find(|b| b.transactions.iter().any(|t| t.hash == hash))
        .unwrap();
    let message = localnet::neardata::streamer_message(
        &block,
        &f.root.get_account_id(),
        chain.genesis.config.gas_limit,
    );
    let chunk = message.shards[0].chunk.as_ref().unwrap();
    assert_eq!(chunk.transactions[0].transaction.hash, hash);
    assert_eq!(message.block.header.height, block.height);
    let json = serde_json::to_value(&message).unwrap();
    let back: near_indexer_primitives::StreamerMessage = serde_json::from_value(json).unwrap();
    assert_eq!(back.block.header.hash, block.hash);
}

#[test]
fn unused_gas_goes_back_to_the_allowance_of_the_key_that_paid() {
    use near_primitives::account::{AccessKeyPermission, FunctionCallPermission};
    use near_primitives::action::FunctionCallAction;
    let f = fixture("allowance");
    let alice = f.create("alice", 10);
    let key = SecretKey::from_random(KeyType::ED25519);
    let allowance = Balance::from_near(1);
    f.run(f.tx(
        &alice,
        &alice.get_account_id(),
        vec![Action::AddKey(Box::new(AddKeyAction {
            public_key: key.public_key(),
            access_key: AccessKey {
                nonce: 0,
                permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                    allowance: Some(allowance),
                    receiver_id: f.root.get_account_id().to_string(),
                    method_names: vec![],
                }),
            },
        }))],
    ));
    let limited = InMemorySigner::from_secret_key(alice.get_account_id(), key);
    // 100 Tgas bought; the call fails at once (no contract), so nearly all come back.
    let outcome = f.run(f.tx(
        &limited,
        &f.root.get_account_id(),
        vec![Action::FunctionCall(Box::new(FunctionCallAction {
            method_name: "anything".into(),
            args: vec![],
            gas: near_primitives::types::Gas::from_teragas(100),
            deposit: Balance::ZERO,
        }))],
    ));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::Failure(_)),
        "{outcome:?}"
    );
    let left = match f
        .node
        .chain()
        .query(QueryRequest::ViewAccessKey {
            account_id: alice.get_account_id(),
            public_key: limited.public_key(),
        })
        .unwrap()
        .kind
    {
        QueryResponseKind::AccessKey(view) => match view.permission {
            near_primitives::views::AccessKeyPermissionView::FunctionCall { allowance, .. } => {
                allowance.unwrap()
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // 100 Tgas cost 0.01 NEAR at the genesis price; most of it was refunded.
    assert!(
        left > allowance.saturating_sub(Balance::from_millinear(2)),
        "{left}"
    );
    assert!(left < allowance);
}

/// The smallest contract: one exported method `get` that does nothing.
const TINY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
    0x01, 0x00, 0x07, 0x07, 0x01, 0x03, b'g', b'e', b't', 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00,
    0x0b,
];

fn view(f: &Fixture, request: QueryRequest) -> QueryResponseKind {
    f.node.chain().query(request).unwrap().kind
}

fn code_of(f: &Fixture, account_id: &AccountId) -> Vec<u8> {
    match view(
        f,
        QueryRequest::ViewCode {
            account_id: account_id.clone(),
        },
    ) {
        QueryResponseKind::ViewCode(code) => code.code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_global_contract_is_stored_once_used_by_reference_and_upgraded_by_its_owner() {
    use near_primitives::action::{
        DeployGlobalContractAction, FunctionCallAction, GlobalContractDeployMode,
        GlobalContractIdentifier, UseGlobalContractAction,
    };
    let f = fixture("global");
    let owner = f.create("owner", 10);
    let user = f.create("user", 10);
    let (owner_id, user_id) = (owner.get_account_id(), user.get_account_id());
    let deploy = |code: &[u8]| {
        vec![Action::DeployGlobalContract(DeployGlobalContractAction {
            code: code.into(),
            deploy_mode: GlobalContractDeployMode::AccountId,
        })]
    };

    let before = f.balance(&owner_id);
    let outcome = f.run(f.tx(&owner, &owner_id, deploy(TINY_WASM)));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
        "{outcome:?}"
    );
    // 0.0001 NEAR per byte, burnt and counted in the receipt's outcome.
    let storage = Balance::from_yoctonear(100_000_000_000_000_000_000 * TINY_WASM.len() as u128);
    assert!(outcome.receipts_outcome[0].outcome.tokens_burnt > storage);
    assert!(before.saturating_sub(f.balance(&owner_id)) > storage);
    // The distribution receipt stores the code in the deployment's block; a further block
    // changes nothing.
    f.node.produce_block(0).unwrap();
    let id = GlobalContractIdentifier::AccountId(owner_id.clone());
    match view(
        &f,
        QueryRequest::ViewGlobalContractCodeByAccountId {
            account_id: owner_id.clone(),
        },
    ) {
        QueryResponseKind::ViewCode(code) => assert_eq!(code.code, TINY_WASM),
        other => panic!("{other:?}"),
    }

    let usage_before = match view(
        &f,
        QueryRequest::ViewAccount {
            account_id: user_id.clone(),
        },
    ) {
        QueryResponseKind::ViewAccount(a) => a.storage_usage,
        other => panic!("{other:?}"),
    };
    let call = Action::FunctionCall(Box::new(FunctionCallAction {
        method_name: "get".into(),
        args: vec![],
        gas: near_primitives::types::Gas::from_teragas(10),
        deposit: Balance::ZERO,
    }));
    let outcome = f.run(f.tx(
        &user,
        &user_id,
        vec![
            Action::UseGlobalContract(Box::new(UseGlobalContractAction {
                contract_identifier: id,
            })),
            call.clone(),
        ],
    ));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
        "{outcome:?}"
    );
    match view(
        &f,
        QueryRequest::ViewAccount {
            account_id: user_id.clone(),
        },
    ) {
        QueryResponseKind::ViewAccount(a) => {
            assert_eq!(a.global_contract_account_id.as_ref(), Some(&owner_id));
            assert_eq!(a.global_contract_hash, None);
            assert_eq!(a.storage_usage, usage_before + owner_id.len() as u64);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code_of(&f, &user_id), TINY_WASM);

    // The owner redeploys (the same method, plus a custom section): the user runs the new code.
    let mut upgraded = TINY_WASM.to_vec();
    upgraded.extend_from_slice(&[0x00, 0x03, 0x02, b'v', b'2']);
    let outcome = f.run(f.tx(&owner, &owner_id, deploy(&upgraded)));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
        "{outcome:?}"
    );
    f.node.produce_block(0).unwrap();
    assert_eq!(code_of(&f, &user_id), upgraded);
    let outcome = f.run(f.tx(&user, &user_id, vec![call]));
    assert!(
        matches!(outcome.status, FinalExecutionStatus::SuccessValue(_)),
        "{outcome:?}"
    );

    // Nobody deployed this hash: using it fails with the identifier.
    let missing =
        GlobalContractIdentifier::CodeHash(near_primitives::hash::CryptoHash::hash_bytes(b"x"));
    let outcome = f.run(f.tx(
        &user,
        &user_id,
        vec![Action::UseGlobalContract(Box::new(
            UseGlobalContractAction {
                contract_identifier: missing,
            },
        ))],
    ));
    match outcome.status {
        FinalExecutionStatus::Failure(TxExecutionError::ActionError(e)) => assert!(
            matches!(e.kind, ActionErrorKind::GlobalContractDoesNotExist { .. }),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
}
