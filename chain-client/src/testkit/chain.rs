//! A localnet node and account/contract setup through the client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use near_crypto::{KeyType, SecretKey};
use near_primitives::account::{AccessKey, AccessKeyPermission};
use near_primitives::action::{
    Action, AddKeyAction, CreateAccountAction, DeployContractAction, TransferAction,
};
use near_primitives::types::{AccountId, Balance};

use super::process::{Process, free_port, wait_for_http};
use super::{TestkitError, TestkitResult, binary, io};
use crate::{Account, ChainClient, FunctionCall};

/// A localnet node in its own home directory. The root account `test.near` (the validator,
/// 1e9 NEAR) signs setup transactions.
pub struct Localnet {
    pub home: PathBuf,
    pub rpc_url: String,
    pub rpc_port: u16,
    pub root: Account,
    pub process: Process,
    bin: PathBuf,
}

impl Localnet {
    /// `localnet --home <dir>/localnet init` then `run` on a free port; waits for `/status`.
    pub async fn start(dir: &Path) -> TestkitResult<Self> {
        let bin = binary(
            "localnet",
            &["NEAR_SANDBOX_BIN_PATH", "ECLOUD_LOCALNET_BIN"],
        );
        if !bin.exists() {
            return Err(TestkitError::Setup(format!(
                "no localnet binary at {}: nice -n 10 cargo build -p localnet --bin localnet",
                bin.display()
            )));
        }
        let home = dir.join("localnet");
        let status = Command::new(&bin)
            .arg("--home")
            .arg(&home)
            .arg("init")
            .output()
            .map_err(io(format!("{} init", bin.display())))?;
        if !status.status.success() {
            return Err(TestkitError::Setup(format!(
                "localnet init failed: {}",
                String::from_utf8_lossy(&status.stderr)
            )));
        }
        let root = crate::Account::from_credentials_file(&home.join("validator_key.json"))?;
        let rpc_port = free_port()?;
        let process = spawn_node(&bin, &home, rpc_port, dir)?;
        let mut node = Self {
            rpc_url: format!("http://127.0.0.1:{rpc_port}"),
            home,
            rpc_port,
            root,
            process,
            bin,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> TestkitResult<()> {
        let url = format!("{}/status", self.rpc_url);
        wait_for_http(&url, &mut self.process, Duration::from_secs(60)).await
    }

    /// A client of this node.
    pub fn client(&self) -> ChainClient {
        ChainClient::new(&self.rpc_url)
    }

    /// Stops the node (SIGKILL) and starts it again on the same port and state.
    pub async fn restart(&mut self) -> TestkitResult<()> {
        self.process.kill();
        let dir = self.home.parent().unwrap_or(&self.home).to_owned();
        self.process = spawn_node(&self.bin, &self.home, self.rpc_port, &dir)?;
        self.wait_ready().await
    }
}

fn spawn_node(bin: &Path, home: &Path, port: u16, dir: &Path) -> TestkitResult<Process> {
    let mut cmd = Command::new(bin);
    cmd.arg("--home")
        .arg(home)
        .arg("run")
        .arg("--rpc-addr")
        .arg(format!("127.0.0.1:{port}"));
    Process::spawn("localnet", cmd, &dir.join("localnet.log"))
}

/// Creates `<name>.<parent>` with `balance` and a fresh full-access key.
pub async fn create_account(
    client: &ChainClient,
    parent: &Account,
    name: &str,
    balance: Balance,
) -> TestkitResult<Account> {
    Ok(create_account_with_key(client, parent, name, balance)
        .await?
        .0)
}

/// [`create_account`], also returning the key (e.g. to write near-cli credentials).
pub async fn create_account_with_key(
    client: &ChainClient,
    parent: &Account,
    name: &str,
    balance: Balance,
) -> TestkitResult<(Account, SecretKey)> {
    let account_id: AccountId = format!("{name}.{}", parent.account_id())
        .parse()
        .map_err(|e| TestkitError::Setup(format!("account name {name}: {e}")))?;
    let key = SecretKey::from_random(KeyType::ED25519);
    let actions = vec![
        Action::CreateAccount(CreateAccountAction {}),
        Action::Transfer(TransferAction { deposit: balance }),
        Action::AddKey(Box::new(AddKeyAction {
            public_key: key.public_key(),
            access_key: AccessKey {
                nonce: 0,
                permission: AccessKeyPermission::FullAccess,
            },
        })),
    ];
    client.send_actions(parent, &account_id, actions).await?;
    Ok((Account::from_secret_key(account_id, key.clone()), key))
}

/// Deploys `wasm` to `account` and, if given, calls the init method in the same transaction.
pub async fn deploy_contract(
    client: &ChainClient,
    account: &Account,
    wasm: &Path,
    init: Option<FunctionCall>,
) -> TestkitResult<()> {
    let code = std::fs::read(wasm).map_err(io(format!(
        "contract {} (build it: ./scripts/build-contracts.sh)",
        wasm.display()
    )))?;
    let mut actions = vec![Action::DeployContract(DeployContractAction { code })];
    if let Some(init) = init {
        actions.push(init.action());
    }
    client
        .send_actions(account, account.account_id(), actions)
        .await?;
    Ok(())
}
