//! What gets deployed where, with which initialisation arguments: pure data, checked before
//! anything is sent.

use std::time::Duration;

use enclave_cloud_common::deployment;
use enclave_cloud_common::governance::MAX_DELAY_NS;
use enclave_cloud_common::interfaces::marketplace::ConfigPatch;
use enclave_cloud_common::interfaces::marketplace::methods as marketplace_api;
use enclave_cloud_common::interfaces::method::Method;
use enclave_cloud_common::interfaces::model_factory::methods as factory_api;
use enclave_cloud_common::interfaces::registry::methods as registry_api;
use near_workspaces::AccountId;
use near_workspaces::types::NearToken;
use serde_json::{Value, json};

use crate::network::Network;

/// The NEP-141 test token deployed off mainnet.
#[derive(Debug, Clone)]
pub struct TestToken {
    pub symbol: String,
    pub decimals: u8,
    /// Minted to the deployer at creation, in the smallest units.
    pub total_supply: u128,
    /// Smallest token units worth one NEAR: the marketplace's conversion rate for node prices.
    pub units_per_near: u128,
}

impl Default for TestToken {
    fn default() -> Self {
        Self {
            symbol: "USDT".into(),
            decimals: 6,
            total_supply: 1_000_000_000 * 1_000_000,
            units_per_near: 3_000_000,
        }
    }
}

/// Options a user gives; [`Plan::new`] checks them against the network.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Prefix for the sub-account names (`<prefix>registry.<deployer>`, ...).
    pub prefix: String,
    pub treasury: Option<AccountId>,
    /// Public key (`ed25519:...`) of the development CA whose signature makes a `dev`
    /// attestation. Refused on mainnet.
    pub dev_ca_key: Option<String>,
    /// A full registry `Policy` object replacing the contract's default.
    pub registry_policy: Option<Value>,
    pub test_token: Option<TestToken>,
    /// The marketplace's largest inline input/output ciphertext (contract default
    /// [`enclave_cloud_common::DEFAULT_MAX_INLINE_BYTES`]).
    pub max_inline_bytes: Option<u32>,
    /// The governance delay set on the registry, the marketplace and the factory once they are
    /// wired [default: [`Network::default_governance_delay`]].
    pub governance_delay: Option<Duration>,
    /// Leave the deployer's full-access keys on the contract accounts (refused on mainnet).
    pub keep_access_keys: bool,
}

/// A settled job's output ciphertext travels in its `job_settled` event (base64, in one log
/// line); NEAR caps a receipt's logs at 16 KiB, so outputs above ~11 KiB cannot settle.
pub const MAX_INLINE_BYTES_LIMIT: u32 = 11_000;

/// One contract account: created, funded, deployed and initialised in one transaction.
#[derive(Debug, Clone)]
pub struct ContractPlan {
    pub role: &'static str,
    pub account: AccountId,
    /// File name in the wasm directory (as `scripts/build-contracts.sh` names it).
    pub wasm_file: &'static str,
    /// The `#[init]` method called in the deploying transaction, and its JSON arguments.
    pub init: Method,
    pub init_args: Value,
    /// Balance beyond the code's storage: the contract's own state.
    pub state_reserve: NearToken,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub network: Network,
    pub deployer: AccountId,
    pub treasury: AccountId,
    pub registry: ContractPlan,
    pub marketplace: ContractPlan,
    pub factory: ContractPlan,
    pub token: Option<(ContractPlan, TestToken)>,
    pub dev_ca_key: Option<String>,
    /// The marketplace configuration set after deployment (`update_config` patch).
    pub marketplace_patch: ConfigPatch,
    /// Set on the registry, marketplace and factory after wiring (`propose_change` of
    /// `set_delay`, applied at once while their delay is still 0).
    pub governance_delay_ns: u64,
    /// Delete the deployer's full-access key of each of those contract accounts at the end,
    /// so only their own code (and governance through the owner) changes them.
    pub remove_access_keys: bool,
}

/// Why a plan is refused before anything is sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("--dev-ca-key is refused on mainnet: mainnet nodes must attest real TDX hardware")]
    DevAttestationOnMainnet,
    #[error(
        "--keep-access-keys is refused on mainnet: a full-access key on a contract account \
         could replace its code or drain it without governance's delay"
    )]
    KeepAccessKeysOnMainnet,
    #[error(
        "governance delay {}s is longer than the contracts allow (30 days)",
        .0.as_secs()
    )]
    GovernanceDelayTooLong(Duration),
    #[error("the test token is refused on mainnet (its owner can mint without limit)")]
    TestTokenOnMainnet,
    #[error("{name:?} is not a valid account id: {reason}")]
    AccountName { name: String, reason: String },
    #[error("dev CA key {0:?} is not an ed25519 public key (expected ed25519:<base58>)")]
    DevCaKey(String),
    #[error("registry policy must be a JSON object")]
    Policy,
    #[error(
        "max inline bytes {0} must be 1..={MAX_INLINE_BYTES_LIMIT} (outputs travel in a 16 KiB event log)"
    )]
    MaxInlineBytes(u32),
}

/// The model-token file the factory publishes as a global contract.
pub const MODEL_TOKEN_WASM: &str = "model_token.wasm";

/// The test token's `new` (a plain NEP-141 example contract, outside the interfaces).
const TEST_TOKEN_NEW: Method = Method::call("new", 100);

/// Init arguments as the JSON a [`ContractPlan`] carries.
fn init_json(args: &impl serde::Serialize) -> Value {
    serde_json::to_value(args).unwrap_or_else(|e| unreachable!("init arguments serialize: {e}"))
}

impl Plan {
    pub fn new(network: Network, deployer: AccountId, options: Options) -> Result<Self, PlanError> {
        if network.is_production() {
            if options.dev_ca_key.is_some() {
                return Err(PlanError::DevAttestationOnMainnet);
            }
            if options.test_token.is_some() {
                return Err(PlanError::TestTokenOnMainnet);
            }
            if options.keep_access_keys {
                return Err(PlanError::KeepAccessKeysOnMainnet);
            }
        }
        let governance_delay = options
            .governance_delay
            .unwrap_or_else(|| network.default_governance_delay());
        let governance_delay_ns = u64::try_from(governance_delay.as_nanos())
            .ok()
            .filter(|&ns| ns <= MAX_DELAY_NS)
            .ok_or(PlanError::GovernanceDelayTooLong(governance_delay))?;
        let dev_ca_key = match &options.dev_ca_key {
            Some(key) => match key.parse::<near_crypto::PublicKey>() {
                Ok(near_crypto::PublicKey::ED25519(_)) => Some(
                    key.parse::<near_sdk::PublicKey>()
                        .map_err(|_| PlanError::DevCaKey(key.clone()))?,
                ),
                _ => return Err(PlanError::DevCaKey(key.clone())),
            },
            None => None,
        };
        if options
            .registry_policy
            .as_ref()
            .is_some_and(|p| !p.is_object())
        {
            return Err(PlanError::Policy);
        }
        if let Some(bytes) = options.max_inline_bytes
            && !(1..=MAX_INLINE_BYTES_LIMIT).contains(&bytes)
        {
            return Err(PlanError::MaxInlineBytes(bytes));
        }
        let sub = |name: &str| -> Result<AccountId, PlanError> {
            let full = deployment::contract_account(&options.prefix, name, deployer.as_str());
            full.parse().map_err(|e| PlanError::AccountName {
                name: full.clone(),
                reason: format!("{e}"),
            })
        };
        let registry = sub(deployment::REGISTRY)?;
        let marketplace = sub(deployment::MARKETPLACE)?;
        let factory = sub(deployment::MODEL_FACTORY)?;
        let treasury = options.treasury.clone().unwrap_or_else(|| deployer.clone());

        // The policy passes through as the JSON the user gave: the contract checks it.
        let registry_init = init_json(&registry_api::NewArgs::<Value> {
            owner: deployer.clone(),
            mainnet: network.is_production(),
            dev_ca_key,
            policy: options.registry_policy.clone(),
        });
        let token = match options.test_token {
            Some(t) => Some((
                ContractPlan {
                    role: "test token (NEP-141)",
                    account: sub(&t.symbol.to_lowercase())?,
                    wasm_file: "test_token.wasm",
                    init: TEST_TOKEN_NEW,
                    init_args: json!({
                        "owner": deployer,
                        "symbol": t.symbol,
                        "decimals": t.decimals,
                        "total_supply": t.total_supply.to_string(),
                    }),
                    state_reserve: NearToken::from_near(1),
                },
                t,
            )),
            None => None,
        };
        let marketplace_patch = ConfigPatch {
            model_factory: Some(factory.clone()),
            max_inline_bytes: options.max_inline_bytes,
            ..ConfigPatch::default()
        };
        Ok(Self {
            network,
            marketplace_patch,
            governance_delay_ns,
            remove_access_keys: !options.keep_access_keys,
            registry: ContractPlan {
                role: "registry",
                account: registry.clone(),
                wasm_file: "registry.wasm",
                init: registry_api::NEW,
                init_args: registry_init,
                state_reserve: NearToken::from_near(2),
            },
            marketplace: ContractPlan {
                role: "marketplace",
                account: marketplace,
                wasm_file: "marketplace.wasm",
                init: marketplace_api::NEW,
                init_args: init_json(&marketplace_api::NewArgs {
                    owner: deployer.clone(),
                    registry: registry.clone(),
                    treasury: treasury.clone(),
                }),
                state_reserve: NearToken::from_near(2),
            },
            factory: ContractPlan {
                role: "model factory",
                account: factory.clone(),
                wasm_file: "model_factory.wasm",
                init: factory_api::NEW,
                init_args: init_json(&factory_api::NewArgs {
                    owner: deployer.clone(),
                    registry: registry.clone(),
                }),
                state_reserve: NearToken::from_near(2),
            },
            token,
            treasury,
            deployer,
            dev_ca_key: options.dev_ca_key,
        })
    }

    /// Every contract in deployment order.
    pub fn contracts(&self) -> Vec<&ContractPlan> {
        let mut all = vec![&self.registry, &self.marketplace, &self.factory];
        if let Some((token, _)) = &self.token {
            all.push(token);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployer() -> AccountId {
        "ops.testnet".parse().unwrap()
    }

    const DEV_KEY: &str = "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp";

    #[test]
    fn testnet_plan_names_sub_accounts_and_wires_them() {
        let plan = Plan::new(
            Network::Testnet,
            deployer(),
            Options {
                prefix: "v1-".into(),
                dev_ca_key: Some(DEV_KEY.into()),
                test_token: Some(TestToken::default()),
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(plan.registry.account.as_str(), "v1-registry.ops.testnet");
        assert_eq!(
            plan.marketplace.account.as_str(),
            "v1-marketplace.ops.testnet"
        );
        assert_eq!(plan.factory.account.as_str(), "v1-models.ops.testnet");
        assert_eq!(plan.contracts().len(), 4);
        assert_eq!(plan.registry.init_args["mainnet"], false);
        assert_eq!(plan.registry.init_args["dev_ca_key"], DEV_KEY);
        assert_eq!(
            plan.marketplace.init_args["registry"],
            "v1-registry.ops.testnet"
        );
        assert_eq!(plan.marketplace.init_args["treasury"], "ops.testnet");
        let (token, _) = plan.token.as_ref().unwrap();
        assert_eq!(token.account.as_str(), "v1-usdt.ops.testnet");
    }

    #[test]
    fn mainnet_refuses_dev_attestation_and_the_test_token() {
        let dev = Options {
            dev_ca_key: Some(DEV_KEY.into()),
            ..Options::default()
        };
        assert_eq!(
            Plan::new(Network::Mainnet, deployer(), dev).unwrap_err(),
            PlanError::DevAttestationOnMainnet
        );
        let token = Options {
            test_token: Some(TestToken::default()),
            ..Options::default()
        };
        assert_eq!(
            Plan::new(Network::Mainnet, deployer(), token).unwrap_err(),
            PlanError::TestTokenOnMainnet
        );
        let plan = Plan::new(Network::Mainnet, deployer(), Options::default()).unwrap();
        assert_eq!(plan.registry.init_args["mainnet"], true);
        assert!(plan.registry.init_args.get("dev_ca_key").is_none());
    }

    #[test]
    fn governance_delay_and_key_removal_default_by_network() {
        const HOUR_NS: u64 = 3_600 * 1_000_000_000;
        let mainnet = Plan::new(Network::Mainnet, deployer(), Options::default()).unwrap();
        assert_eq!(mainnet.governance_delay_ns, 24 * HOUR_NS);
        assert!(mainnet.remove_access_keys);
        for network in [Network::Testnet, Network::Localnet] {
            let plan = Plan::new(network, deployer(), Options::default()).unwrap();
            assert_eq!(plan.governance_delay_ns, 0, "{network}");
            assert!(plan.remove_access_keys, "{network}");
        }
        let custom = Options {
            governance_delay: Some(Duration::from_secs(3_600)),
            keep_access_keys: true,
            ..Options::default()
        };
        let plan = Plan::new(Network::Testnet, deployer(), custom).unwrap();
        assert_eq!(plan.governance_delay_ns, HOUR_NS);
        assert!(!plan.remove_access_keys);
        // A zero delay on mainnet is the operator's choice; keeping the keys is not.
        let zero = Options {
            governance_delay: Some(Duration::ZERO),
            ..Options::default()
        };
        assert_eq!(
            Plan::new(Network::Mainnet, deployer(), zero)
                .unwrap()
                .governance_delay_ns,
            0
        );
    }

    #[test]
    fn mainnet_refuses_to_keep_access_keys_and_delays_beyond_the_contracts_limit() {
        let keep = Options {
            keep_access_keys: true,
            ..Options::default()
        };
        let err = Plan::new(Network::Mainnet, deployer(), keep).unwrap_err();
        assert_eq!(err, PlanError::KeepAccessKeysOnMainnet);
        assert!(err.to_string().contains("--keep-access-keys"), "{err}");
        let long = Options {
            governance_delay: Some(Duration::from_secs(31 * 24 * 3_600)),
            ..Options::default()
        };
        assert!(matches!(
            Plan::new(Network::Testnet, deployer(), long),
            Err(PlanError::GovernanceDelayTooLong(_))
        ));
        let limit = Options {
            governance_delay: Some(Duration::from_nanos(MAX_DELAY_NS)),
            ..Options::default()
        };
        assert!(Plan::new(Network::Testnet, deployer(), limit).is_ok());
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let bad_key = Options {
            dev_ca_key: Some("secp256k1:abc".into()),
            ..Options::default()
        };
        assert!(matches!(
            Plan::new(Network::Testnet, deployer(), bad_key),
            Err(PlanError::DevCaKey(_))
        ));
        let bad_prefix = Options {
            prefix: "UPPER".into(),
            ..Options::default()
        };
        assert!(matches!(
            Plan::new(Network::Testnet, deployer(), bad_prefix),
            Err(PlanError::AccountName { .. })
        ));
        let bad_policy = Options {
            registry_policy: Some(json!([1, 2])),
            ..Options::default()
        };
        assert_eq!(
            Plan::new(Network::Testnet, deployer(), bad_policy).unwrap_err(),
            PlanError::Policy
        );
        let too_big = Options {
            max_inline_bytes: Some(16_384),
            ..Options::default()
        };
        assert_eq!(
            Plan::new(Network::Testnet, deployer(), too_big).unwrap_err(),
            PlanError::MaxInlineBytes(16_384)
        );
        // The contract's default fits the settled event's log line too.
        assert!(
            (1..=MAX_INLINE_BYTES_LIMIT).contains(&enclave_cloud_common::DEFAULT_MAX_INLINE_BYTES)
        );
        let ok = Options {
            max_inline_bytes: Some(10_240),
            ..Options::default()
        };
        let plan = Plan::new(Network::Testnet, deployer(), ok).unwrap();
        assert_eq!(plan.marketplace_patch.max_inline_bytes, Some(10_240));
        assert_eq!(
            plan.marketplace_patch.model_factory,
            Some("models.ops.testnet".parse().unwrap())
        );
    }
}
