//! Issue 15, finding 2: royalties go only to a model the factory lists as created. Before,
//! royalties of a model id nobody had created went to `<model>.<factory>` (as credits while
//! that account did not exist), so whoever created the id first collected the backlog.

use super::*;
use crate::state::{ConfigPatch, PayoutKind};
use enclave_cloud_common::interfaces::model_factory::{ModelStatus, ModelView};

const FACTORY: &str = "models.near";
const MODEL_TOKEN: &str = "llama-3-8b.models.near";

/// The marketplace with a model factory and no royalty account for the model.
fn with_factory() -> Harness {
    let mut h = Harness::new();
    h.use_model_factory(FACTORY);
    h
}

fn listing(status: ModelStatus, token: &str) -> ModelView {
    model_listing(status, token)
}

/// `confirm_model` by `who`, answered by the factory with `answer`.
fn confirm(h: &mut Harness, who: &str, answer: Option<ModelView>) -> bool {
    h.confirm_model(who, FACTORY, answer)
}

/// Where the model's royalty goes now (a view).
fn royalty_account(h: &mut Harness) -> Option<AccountId> {
    h.install(RELAYER, 0, vec![]);
    h.contract.royalty_account(model())
}

fn storage_balance(h: &mut Harness, who: &str) -> u128 {
    h.install(RELAYER, 0, vec![]);
    h.contract.storage_balance_of(acc(who)).0
}

/// Settles a NEAR job and returns its royalty; the royalty's payouts are checked by callers.
fn settle_near_job(h: &mut Harness) -> u128 {
    let job = h.claimed_job(NEAR);
    let s = h.settle(job, b"out", usage(100_000, 200_000)).unwrap();
    assert!(s.royalty.0 > 0, "the test needs a royalty: {s:?}");
    h.check_funds();
    s.royalty.0
}

#[test]
fn an_uncreated_models_royalty_is_a_protocol_fee() {
    let mut h = with_factory();
    let fees_before = h.contract.funds().assets[0].ledger.fees.0;
    let royalty = settle_near_job(&mut h);
    assert!(
        h.payouts_of_last_call()
            .iter()
            .all(|p| p.account != acc(MODEL_TOKEN)),
        "nothing is paid or credited to an account nobody created: {:?}",
        h.payouts_of_last_call()
    );
    let fees = h.contract.funds().assets[0].ledger.fees.0 - fees_before;
    assert!(
        fees >= royalty,
        "the royalty joins the fees: {fees} < {royalty}"
    );
}

#[test]
fn a_confirmed_models_royalty_goes_to_its_token_as_revenue() {
    let mut h = with_factory();
    assert!(confirm(
        &mut h,
        USER,
        Some(listing(ModelStatus::Created, MODEL_TOKEN))
    ));
    h.check_funds();
    assert_eq!(royalty_account(&mut h), Some(acc(MODEL_TOKEN)));
    let royalty = settle_near_job(&mut h);
    let to_token: Vec<_> = h
        .payouts_of_last_call()
        .into_iter()
        .filter(|p| p.account == acc(MODEL_TOKEN))
        .collect();
    assert_eq!(to_token.len(), 1, "{to_token:?}");
    assert_eq!(to_token[0].amount.0, royalty);
    assert_eq!(to_token[0].kind, PayoutKind::Revenue);
}

#[test]
fn only_a_created_listing_under_the_current_factory_is_confirmed() {
    for answer in [
        None,
        Some(listing(ModelStatus::Creating, MODEL_TOKEN)),
        Some(listing(ModelStatus::Created, "llama-3-8b.evil.near")),
        Some(ModelView {
            model_id: "other-model".parse().unwrap(),
            ..listing(ModelStatus::Created, MODEL_TOKEN)
        }),
    ] {
        let mut h = with_factory();
        assert!(!confirm(&mut h, USER, answer.clone()), "{answer:?}");
        assert_eq!(royalty_account(&mut h), None, "{answer:?}");
        h.check_funds();
    }
    // The factory changed while the question was in flight: the old factory's answer is void.
    let mut h = with_factory();
    h.call(USER, 0, |c| {
        let _ = crate::ModelRoyaltyApi::confirm_model(c, model());
        Ok::<_, MarketplaceError>(())
    })
    .unwrap();
    let patch = ConfigPatch {
        model_factory: Some(acc("new-factory.near")),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(patch)).unwrap();
    let answer = Some(listing(ModelStatus::Created, MODEL_TOKEN));
    assert!(!h.callback(vec![ok_result(&answer)], |c| {
        c.on_model_confirmed(model(), acc(FACTORY), Ok(answer.clone()))
    }));
    assert_eq!(royalty_account(&mut h), None);
}

/// The marketplace stores the entry: the caller needs no storage balance, and the books
/// balance before and after.
#[test]
fn a_confirmation_needs_no_storage_balance() {
    let mut h = with_factory();
    assert!(confirm(
        &mut h,
        USER,
        Some(listing(ModelStatus::Created, MODEL_TOKEN))
    ));
    assert_eq!(royalty_account(&mut h), Some(acc(MODEL_TOKEN)));
    assert_eq!(storage_balance(&mut h, USER), 0);
    h.check_funds();
}

#[test]
fn a_governance_royalty_account_is_not_overwritten_by_a_confirmation() {
    let mut h = with_factory();
    h.call(OWNER, 1, |c| {
        c.try_set_royalty_account(model(), Some(acc(ROYALTY)))
    })
    .unwrap();
    assert!(confirm(
        &mut h,
        USER,
        Some(listing(ModelStatus::Created, MODEL_TOKEN))
    ));
    assert_eq!(royalty_account(&mut h), Some(acc(ROYALTY)));
}

/// Governance lifting or replacing a confirmed model's royalty account must leave nothing
/// booked for the entry: no NEAR locked as storage nobody can get back, no storage balance
/// taken for an entry that no longer exists.
#[test]
fn governance_lifting_a_confirmation_leaves_nothing_locked() {
    let mut h = with_factory();
    h.fund_storage(USER, 10 * MILLI);
    let ledger = |h: &mut Harness| {
        h.install(RELAYER, 0, vec![]);
        h.contract.funds().assets[0].ledger
    };
    let before = (ledger(&mut h), storage_balance(&mut h, USER));
    assert!(confirm(
        &mut h,
        USER,
        Some(listing(ModelStatus::Created, MODEL_TOKEN))
    ));
    h.call(OWNER, 1, |c| c.try_set_royalty_account(model(), None))
        .unwrap();
    assert_eq!(royalty_account(&mut h), None);
    assert_eq!((ledger(&mut h), storage_balance(&mut h, USER)), before);
    h.check_funds();
}
