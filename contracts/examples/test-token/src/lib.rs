//! A plain NEP-141 (+ NEP-145, NEP-148) token for localnet and testnet: the payment token of
//! the demo and of the sandbox tests. Its owner mints; nothing else differs from
//! near-contract-standards' `FungibleToken`. Never deploy it on mainnet: the owner can mint
//! without limit.

use near_contract_standards::fungible_token::metadata::{
    FT_METADATA_SPEC, FungibleTokenMetadata, FungibleTokenMetadataProvider,
};
use near_contract_standards::fungible_token::{
    FungibleToken, FungibleTokenCore, FungibleTokenResolver,
};
use near_contract_standards::storage_management::{
    StorageBalance, StorageBalanceBounds, StorageManagement,
};
use near_sdk::borsh::BorshSerialize;
use near_sdk::json_types::U128;
use near_sdk::{
    AccountId, BorshStorageKey, NearToken, PanicOnDefault, PromiseOrValue, env, near, require,
};

#[derive(BorshSerialize, BorshStorageKey)]
#[borsh(crate = "near_sdk::borsh")]
enum StorageKey {
    Accounts,
}

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct TestToken {
    token: FungibleToken,
    owner: AccountId,
    symbol: String,
    decimals: u8,
}

#[near]
impl TestToken {
    /// Deployer. `total_supply` is minted to `owner` (who is registered for storage).
    #[init]
    pub fn new(owner: AccountId, symbol: String, decimals: u8, total_supply: U128) -> Self {
        require!(
            !symbol.is_empty() && symbol.len() <= 16,
            "symbol: 1 to 16 bytes"
        );
        let mut this = Self {
            token: FungibleToken::new(StorageKey::Accounts),
            owner: owner.clone(),
            symbol,
            decimals,
        };
        this.token.internal_register_account(&owner);
        this.mint_to(&owner, total_supply.0);
        this
    }

    /// Owner only, 1 yocto. Mints `amount` to `account_id`, which must be registered
    /// (`storage_deposit`) first.
    #[payable]
    pub fn mint(&mut self, account_id: AccountId, amount: U128) {
        near_sdk::assert_one_yocto();
        require!(
            env::predecessor_account_id() == self.owner,
            format!("only the owner {} can mint", self.owner)
        );
        self.mint_to(&account_id, amount.0);
    }

    fn mint_to(&mut self, account_id: &AccountId, amount: u128) {
        if amount == 0 {
            return;
        }
        self.token.internal_deposit(account_id, amount);
        near_contract_standards::fungible_token::events::FtMint {
            owner_id: account_id,
            amount: U128(amount),
            memo: None,
        }
        .emit();
    }
}

#[near]
impl FungibleTokenCore for TestToken {
    #[payable]
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>) {
        self.token.ft_transfer(receiver_id, amount, memo)
    }

    #[payable]
    fn ft_transfer_call(
        &mut self,
        receiver_id: AccountId,
        amount: U128,
        memo: Option<String>,
        msg: String,
    ) -> PromiseOrValue<U128> {
        self.token.ft_transfer_call(receiver_id, amount, memo, msg)
    }

    fn ft_total_supply(&self) -> U128 {
        self.token.ft_total_supply()
    }

    fn ft_balance_of(&self, account_id: AccountId) -> U128 {
        self.token.ft_balance_of(account_id)
    }
}

#[near]
impl FungibleTokenResolver for TestToken {
    #[private]
    fn ft_resolve_transfer(
        &mut self,
        sender_id: AccountId,
        receiver_id: AccountId,
        amount: U128,
    ) -> U128 {
        let (used, burned) =
            self.token
                .internal_ft_resolve_transfer(&sender_id, receiver_id, amount);
        if burned > 0 {
            near_contract_standards::fungible_token::events::FtBurn {
                owner_id: &sender_id,
                amount: U128(burned),
                memo: Some("refund of a transfer to a closed account"),
            }
            .emit();
        }
        used.into()
    }
}

#[near]
impl StorageManagement for TestToken {
    #[payable]
    fn storage_deposit(
        &mut self,
        account_id: Option<AccountId>,
        registration_only: Option<bool>,
    ) -> StorageBalance {
        self.token.storage_deposit(account_id, registration_only)
    }

    #[payable]
    fn storage_withdraw(&mut self, amount: Option<NearToken>) -> StorageBalance {
        self.token.storage_withdraw(amount)
    }

    #[payable]
    fn storage_unregister(&mut self, force: Option<bool>) -> bool {
        #[allow(unused_variables)]
        if let Some((account_id, balance)) = self.token.internal_storage_unregister(force) {
            near_contract_standards::fungible_token::events::FtBurn {
                owner_id: &account_id,
                amount: U128(balance),
                memo: Some("storage_unregister"),
            }
            .emit();
            true
        } else {
            false
        }
    }

    fn storage_balance_bounds(&self) -> StorageBalanceBounds {
        self.token.storage_balance_bounds()
    }

    fn storage_balance_of(&self, account_id: AccountId) -> Option<StorageBalance> {
        self.token.storage_balance_of(account_id)
    }
}

#[near]
impl FungibleTokenMetadataProvider for TestToken {
    fn ft_metadata(&self) -> FungibleTokenMetadata {
        FungibleTokenMetadata {
            spec: FT_METADATA_SPEC.to_string(),
            name: format!("{} (test token)", self.symbol),
            symbol: self.symbol.clone(),
            icon: None,
            reference: None,
            reference_hash: None,
            decimals: self.decimals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::test_utils::{VMContextBuilder, accounts};
    use near_sdk::testing_env;

    fn context(predecessor: AccountId, deposit: NearToken) {
        testing_env!(
            VMContextBuilder::new()
                .predecessor_account_id(predecessor)
                .attached_deposit(deposit)
                .build()
        );
    }

    #[test]
    fn new_mints_the_supply_to_the_owner() {
        context(accounts(0), NearToken::from_yoctonear(0));
        let token = TestToken::new(accounts(0), "USDT".into(), 6, U128(1_000));
        assert_eq!(token.ft_balance_of(accounts(0)).0, 1_000);
        assert_eq!(token.ft_total_supply().0, 1_000);
        assert_eq!(token.ft_metadata().decimals, 6);
    }

    #[test]
    fn owner_mints_to_a_registered_account() {
        context(accounts(0), NearToken::from_yoctonear(0));
        let mut token = TestToken::new(accounts(0), "USDT".into(), 6, U128(0));
        context(accounts(1), NearToken::from_millinear(10));
        token.storage_deposit(None, None);
        context(accounts(0), NearToken::from_yoctonear(1));
        token.mint(accounts(1), U128(50));
        assert_eq!(token.ft_balance_of(accounts(1)).0, 50);
        assert_eq!(token.ft_total_supply().0, 50);
    }

    #[test]
    #[should_panic(expected = "only the owner")]
    fn others_cannot_mint() {
        context(accounts(0), NearToken::from_yoctonear(0));
        let mut token = TestToken::new(accounts(0), "USDT".into(), 6, U128(0));
        context(accounts(1), NearToken::from_yoctonear(1));
        token.mint(accounts(1), U128(50));
    }
}
