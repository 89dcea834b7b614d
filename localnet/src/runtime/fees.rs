//! Gas fees of actions and receipts, from the protocol's `RuntimeFeesConfig`
//! (the same rules as nearcore's `node-runtime/src/config.rs`).

use near_parameters::{ActionCosts, RuntimeFeesConfig};
use near_primitives::account::AccessKeyPermission;
use near_primitives::action::{Action, AddKeyAction};
use near_primitives::types::{Balance, Gas};

fn add(a: Gas, b: Gas) -> Gas {
    a.checked_add(b).unwrap_or(Gas::MAX)
}

fn mul(gas: Gas, n: u64) -> Gas {
    gas.checked_mul(n).unwrap_or(Gas::MAX)
}

/// Bytes of method names an access key allows, as charged per byte (one separator each).
fn method_names_bytes(add_key: &AddKeyAction) -> u64 {
    match &add_key.access_key.permission {
        AccessKeyPermission::FunctionCall(p) => p
            .method_names
            .iter()
            .map(|name| name.len() as u64 + 1)
            .sum(),
        _ => 0,
    }
}

/// The (send or exec) fee of one action. `send` is `Some(sender_is_receiver)` for the send part.
fn action_fee(fees: &RuntimeFeesConfig, action: &Action, send: Option<bool>) -> Gas {
    let one = |cost: ActionCosts| {
        let fee = fees.fee(cost);
        match send {
            Some(sir) => fee.send_fee(sir).gas,
            None => fee.exec_fee().gas,
        }
    };
    match action {
        Action::CreateAccount(_) => one(ActionCosts::create_account),
        Action::DeployContract(d) => add(
            one(ActionCosts::deploy_contract_base),
            mul(one(ActionCosts::deploy_contract_byte), d.code.len() as u64),
        ),
        Action::FunctionCall(f) => add(
            one(ActionCosts::function_call_base),
            mul(
                one(ActionCosts::function_call_byte),
                (f.method_name.len() + f.args.len()) as u64,
            ),
        ),
        Action::Transfer(_) => one(ActionCosts::transfer),
        Action::Stake(_) => one(ActionCosts::stake),
        Action::AddKey(k) => match k.access_key.permission {
            AccessKeyPermission::FunctionCall(_) => add(
                one(ActionCosts::add_function_call_key_base),
                mul(
                    one(ActionCosts::add_function_call_key_byte),
                    method_names_bytes(k),
                ),
            ),
            _ => one(ActionCosts::add_full_access_key),
        },
        Action::DeleteKey(_) => one(ActionCosts::delete_key),
        Action::DeleteAccount(_) => one(ActionCosts::delete_account),
        Action::Delegate(_) => one(ActionCosts::delegate),
        Action::DeployGlobalContract(d) => add(
            one(ActionCosts::deploy_global_contract_base),
            mul(
                one(ActionCosts::deploy_global_contract_byte),
                d.code.len() as u64,
            ),
        ),
        Action::UseGlobalContract(u) => add(
            one(ActionCosts::use_global_contract_base),
            mul(
                one(ActionCosts::use_global_contract_byte),
                u.contract_identifier.len() as u64,
            ),
        ),
        // Not executed by localnet (refused at validation); priced like a transfer.
        _ => one(ActionCosts::transfer),
    }
}

pub fn send_fee(fees: &RuntimeFeesConfig, action: &Action, sender_is_receiver: bool) -> Gas {
    action_fee(fees, action, Some(sender_is_receiver))
}

pub fn exec_fee(fees: &RuntimeFeesConfig, action: &Action) -> Gas {
    action_fee(fees, action, None)
}

pub fn receipt_send_fee(fees: &RuntimeFeesConfig, sender_is_receiver: bool) -> Gas {
    fees.fee(ActionCosts::new_action_receipt)
        .send_fee(sender_is_receiver)
        .gas
}

pub fn receipt_exec_fee(fees: &RuntimeFeesConfig) -> Gas {
    fees.fee(ActionCosts::new_action_receipt).exec_fee().gas
}

/// Send fees of a list of actions; for a delegate action, also of the actions it carries
/// (the relayer pays them up front).
pub fn total_send_fees(fees: &RuntimeFeesConfig, actions: &[Action], sir: bool) -> Gas {
    actions.iter().fold(Gas::ZERO, |acc, action| {
        let mut gas = send_fee(fees, action, sir);
        if let Action::Delegate(d) = action {
            let inner_sir = d.delegate_action.receiver_id == d.delegate_action.sender_id;
            gas = add(
                gas,
                total_send_fees(fees, &d.delegate_action.get_actions(), inner_sir),
            );
        }
        add(acc, gas)
    })
}

/// Exec fees paid up front for the actions; a delegate action also prepays the receipt it
/// will create (its send and exec fees and the exec fees of the inner actions).
pub fn total_prepaid_exec_fees(fees: &RuntimeFeesConfig, actions: &[Action]) -> Gas {
    actions.iter().fold(Gas::ZERO, |acc, action| {
        let mut gas = exec_fee(fees, action);
        if let Action::Delegate(d) = action {
            let inner = d.delegate_action.get_actions();
            let inner_sir = d.delegate_action.receiver_id == d.delegate_action.sender_id;
            gas = add(gas, receipt_send_fee(fees, inner_sir));
            gas = add(gas, receipt_exec_fee(fees));
            gas = add(gas, total_prepaid_exec_fees(fees, &inner));
        }
        add(acc, gas)
    })
}

/// Gas attached to function calls (including those inside delegate actions).
pub fn total_prepaid_gas(actions: &[Action]) -> Gas {
    actions.iter().fold(Gas::ZERO, |acc, action| match action {
        Action::FunctionCall(f) => add(acc, f.gas),
        Action::Delegate(d) => add(acc, total_prepaid_gas(&d.delegate_action.get_actions())),
        _ => acc,
    })
}

/// Tokens moved by the actions (including those inside delegate actions).
pub fn total_deposit(actions: &[Action]) -> Balance {
    actions.iter().fold(Balance::ZERO, |acc, action| {
        let deposit = match action {
            Action::FunctionCall(f) => f.deposit,
            Action::Transfer(t) => t.deposit,
            Action::Delegate(d) => total_deposit(&d.delegate_action.get_actions()),
            _ => Balance::ZERO,
        };
        acc.saturating_add(deposit)
    })
}

/// `gas * price` in yocto.
pub fn gas_cost(gas: Gas, price: Balance) -> Balance {
    Balance::from_yoctonear(u128::from(gas.as_gas()).saturating_mul(price.as_yoctonear()))
}

/// What a transaction costs its signer up front.
pub struct TxCost {
    /// Burnt when the transaction becomes a receipt.
    pub gas_burnt: Gas,
    /// Bought for the receipt (its exec fees and attached gas); unused gas is refunded.
    pub gas_remaining: Gas,
    pub total_cost: Balance,
}

pub fn tx_cost(
    fees: &RuntimeFeesConfig,
    actions: &[Action],
    sender_is_receiver: bool,
    gas_price: Balance,
) -> TxCost {
    let gas_burnt = add(
        receipt_send_fee(fees, sender_is_receiver),
        total_send_fees(fees, actions, sender_is_receiver),
    );
    let gas_remaining = add(
        add(
            receipt_exec_fee(fees),
            total_prepaid_exec_fees(fees, actions),
        ),
        total_prepaid_gas(actions),
    );
    let total_cost =
        gas_cost(add(gas_burnt, gas_remaining), gas_price).saturating_add(total_deposit(actions));
    TxCost {
        gas_burnt,
        gas_remaining,
        total_cost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_primitives::action::{FunctionCallAction, TransferAction};

    fn fees() -> std::sync::Arc<RuntimeFeesConfig> {
        near_parameters::RuntimeConfigStore::new(None)
            .get_config(near_primitives_core::version::PROTOCOL_VERSION)
            .fees
            .clone()
    }

    #[test]
    fn a_function_call_prepays_its_gas_and_deposit() {
        let fees = fees();
        let call = Action::FunctionCall(Box::new(FunctionCallAction {
            method_name: "go".into(),
            args: vec![1, 2, 3],
            gas: Gas::from_teragas(10),
            deposit: Balance::from_yoctonear(5),
        }));
        let price = Balance::from_yoctonear(100_000_000);
        let cost = tx_cost(&fees, std::slice::from_ref(&call), false, price);
        assert!(cost.gas_remaining > Gas::from_teragas(10));
        let expected = gas_cost(
            cost.gas_burnt.checked_add(cost.gas_remaining).unwrap(),
            price,
        )
        .saturating_add(Balance::from_yoctonear(5));
        assert_eq!(cost.total_cost, expected);
    }

    #[test]
    fn transfers_cost_more_to_another_account_only_when_fees_say_so() {
        let fees = fees();
        let transfer = [Action::Transfer(TransferAction {
            deposit: Balance::from_near(1),
        })];
        let price = Balance::from_yoctonear(100_000_000);
        let own = tx_cost(&fees, &transfer, true, price);
        let other = tx_cost(&fees, &transfer, false, price);
        assert!(other.gas_burnt >= own.gas_burnt);
        assert_eq!(total_deposit(&transfer), Balance::from_near(1));
    }
}
