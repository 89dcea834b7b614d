//! Funded accounts for development networks: `<name>.<funder>` with a fresh key each, saved
//! as near-cli credentials files (what `ecloud`, `worker register` and near-cli read).

use std::path::{Path, PathBuf};

use near_workspaces::AccountId;
use near_workspaces::types::{NearToken, SecretKey};

use crate::deployer::{Connected, DeployError, Progress, check_outcome, connect};
use crate::network::Network;

/// Creates `<name>.<funder>` for every name with `balance` each; writes
/// `<dir>/<account>.json` (mode 0600) and returns the paths. Refuses mainnet, existing
/// accounts and existing files before sending anything.
pub async fn create_accounts(
    network: Network,
    rpc_url: &str,
    credentials: &Path,
    names: &[String],
    balance: NearToken,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<Vec<(AccountId, PathBuf)>, DeployError> {
    if network.is_production() {
        return Err(DeployError::Usage(
            "funded test accounts are for localnet and testnet".into(),
        ));
    }
    let Connected { worker, signer, .. } = connect(network, rpc_url, credentials, progress).await?;
    let mut planned = Vec::new();
    for name in names {
        let full = format!("{name}.{}", signer.id());
        let account: AccountId = full
            .parse()
            .map_err(|e| DeployError::Usage(format!("{full:?} is not a valid account id: {e}")))?;
        if worker.view_account(&account).await.is_ok() {
            return Err(DeployError::AccountExists(account));
        }
        let path = dir.join(format!("{account}.json"));
        if path.exists() {
            return Err(DeployError::Usage(format!(
                "{} exists: not overwriting a key",
                path.display()
            )));
        }
        planned.push((account, path));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| DeployError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    for (account, path) in &planned {
        progress(&format!(
            "create {account} with {}",
            chain_client::format_near(balance.as_yoctonear())
        ));
        let key = chain_client::SecretKey::from_random(chain_client::KeyType::ED25519);
        // The file first: a key that reaches the chain must already be saved; it is removed
        // again if the account is not created.
        chain_client::create_credentials_file(path, account, &key)
            .map_err(|e| DeployError::Usage(e.to_string()))?;
        let key: SecretKey = key
            .to_string()
            .parse()
            .map_err(|e| DeployError::Usage(format!("key conversion: {e}")))?;
        let result = signer
            .batch(account)
            .create_account()
            .transfer(balance)
            .add_key(key.public_key(), near_workspaces::AccessKey::full_access())
            .transact()
            .await;
        if let Err(e) = check_outcome(&format!("creating {account}"), result) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    }
    Ok(planned)
}
