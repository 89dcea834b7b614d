//! The marketplace: jobs, agent requests, storage balances, credits and governance.

use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::marketplace::methods::{
    self as m, ClaimJobArgs, CreditArgs, InputBytesArgs, JobArgs, ModelArgs, NodeArgs,
    NodeJobsArgs, RequestArgs, RespondArgs, SetAcceptedTokenArgs, SetRoyaltyAccountArgs,
    StorageBalanceArgs, StorageDepositArgs, SubmitJobArgs, SubmitResultArgs, UpdateConfigArgs,
    WithdrawArgs,
};
use enclave_cloud_common::interfaces::marketplace::{
    Config, ConfigPatch, FtMessage, FundsReport, Job, JobView, MarketplaceSetting, Request,
    TokenRate,
};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::{
    Asset, Hash32, JobId, JobSpec, ModelId, NodeId, OutputRef, RequestId, Usage,
};
use near_primitives::types::{AccountId, Balance};
use near_sdk::json_types::{Base64VecU8, U128};

use super::Call;
use crate::Result;

contract_client!(
    /// The marketplace contract at `id`.
    MarketplaceClient,
    governed: MarketplaceSetting
);

impl<'a> MarketplaceClient<'a> {
    // ----- views

    pub async fn get_config(&self) -> Result<Config> {
        self.contract().view(m::GET_CONFIG, &NoArgs {}).await
    }

    pub async fn get_job(&self, job_id: JobId) -> Result<Option<JobView>> {
        self.contract().view(m::GET_JOB, &JobArgs { job_id }).await
    }

    pub async fn get_request(&self, request_id: RequestId) -> Result<Option<Request>> {
        self.contract()
            .view(m::GET_REQUEST, &RequestArgs { request_id })
            .await
    }

    /// A page of a node's jobs (any status), oldest first.
    pub async fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<JobView>> {
        let args = NodeJobsArgs {
            node_id,
            from_index: Some(from_index),
            limit: Some(limit),
        };
        self.contract().view(m::JOBS_BY_NODE, &args).await
    }

    /// A page of the open jobs `node_id` may claim.
    pub async fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<Job>> {
        let args = NodeJobsArgs {
            node_id,
            from_index: Some(from_index),
            limit: Some(limit),
        };
        self.contract().view(m::OPEN_JOBS_FOR_NODE, &args).await
    }

    /// The storage deposit a job with `input_bytes` of inline input needs, yoctoNEAR.
    pub async fn job_storage_deposit(&self, input_bytes: u32) -> Result<Balance> {
        let deposit: U128 = self
            .contract()
            .view(m::JOB_STORAGE_DEPOSIT, &InputBytesArgs { input_bytes })
            .await?;
        Ok(Balance::from_yoctonear(deposit.0))
    }

    pub async fn storage_balance_of(&self, account_id: &AccountId) -> Result<Balance> {
        let args = StorageBalanceArgs {
            account_id: account_id.clone(),
        };
        let balance: U128 = self.contract().view(m::STORAGE_BALANCE_OF, &args).await?;
        Ok(Balance::from_yoctonear(balance.0))
    }

    /// The NEP-141 tokens jobs may be paid in, with their rates.
    pub async fn accepted_tokens(&self) -> Result<Vec<(AccountId, TokenRate)>> {
        self.contract().view(m::ACCEPTED_TOKENS, &NoArgs {}).await
    }

    /// What `account_id` may `withdraw` in `asset` (smallest units).
    pub async fn credit_of(&self, account_id: &AccountId, asset: &Asset) -> Result<U128> {
        let args = CreditArgs {
            account_id: account_id.clone(),
            asset: asset.clone(),
        };
        self.contract().view(m::CREDIT_OF, &args).await
    }

    /// Where `model_id`'s royalties go (`None`: the protocol fees).
    pub async fn royalty_account(&self, model_id: &ModelId) -> Result<Option<AccountId>> {
        let args = ModelArgs {
            model_id: model_id.clone(),
        };
        self.contract().view(m::ROYALTY_ACCOUNT, &args).await
    }

    /// The funds report: ledger per asset and whether it balances.
    pub async fn funds(&self) -> Result<FundsReport> {
        self.contract().view(m::FUNDS, &NoArgs {}).await
    }

    // ----- calls

    /// `deposit`: the price cap plus `job_storage_deposit`. Returns the job id.
    pub fn submit_job(&self, job: &JobSpec, deposit: Balance) -> Result<Call<'a, JobId>> {
        let args = SubmitJobArgs { job: job.clone() };
        self.contract().paid_call(m::SUBMIT_JOB, &args, deposit)
    }

    /// `true` if the node now holds the job; `false` (reason in the logs) if it was refused.
    pub fn claim_job(&self, job_id: JobId, node_id: NodeId) -> Result<Call<'a, bool>> {
        self.contract()
            .call(m::CLAIM_JOB, &ClaimJobArgs { job_id, node_id })
    }

    /// The node's result with its enclave's signature over the result receipt, which names
    /// `weights_hash` (the encrypted weights that answered; `None`: plain weights).
    pub fn submit_result(
        &self,
        job_id: JobId,
        output: &OutputRef,
        usage: Usage,
        weights_hash: Option<Hash32>,
        signature: &[u8; 64],
    ) -> Result<Call<'a, Settlement>> {
        let args = SubmitResultArgs {
            job_id,
            output: output.clone(),
            usage,
            signature: Some(Base64VecU8(signature.to_vec())),
            weights_hash,
        };
        self.contract().call(m::SUBMIT_RESULT, &args)
    }

    /// A node's answer to an agent request.
    pub fn respond(
        &self,
        request_id: RequestId,
        node_id: NodeId,
        output: &OutputRef,
        usage: Usage,
        signature: &[u8; 64],
    ) -> Result<Call<'a, ()>> {
        let args = RespondArgs {
            request_id,
            node_id,
            output: output.clone(),
            usage,
            signature: Some(Base64VecU8(signature.to_vec())),
        };
        self.contract().call(m::RESPOND, &args)
    }

    /// Re-reads a node into the marketplace's cache; whether it is fresh and eligible now.
    pub fn refresh_node(&self, node_id: NodeId) -> Result<Call<'a, bool>> {
        self.contract().call(m::REFRESH_NODE, &NodeArgs { node_id })
    }

    /// Routes `model_id`'s royalties to its token once the model factory confirms the model
    /// was created; whether its royalties now go to its token (or already went to an account).
    pub fn confirm_model(&self, model_id: ModelId) -> Result<Call<'a, bool>> {
        self.contract()
            .call(m::CONFIRM_MODEL, &ModelArgs { model_id })
    }

    /// Cancels a job: its user before a claim (attach one yocto), anyone once its window or
    /// deadline passed.
    pub fn cancel_job(&self, job_id: JobId, deposit: Balance) -> Result<Call<'a, ()>> {
        self.contract()
            .paid_call(m::CANCEL_JOB, &JobArgs { job_id }, deposit)
    }

    /// Adds `deposit` to `account_id`'s (default: the signer's) storage balance; returns it.
    pub fn storage_deposit(
        &self,
        account_id: Option<AccountId>,
        deposit: Balance,
    ) -> Result<Call<'a, U128>> {
        self.contract().paid_call(
            m::STORAGE_DEPOSIT,
            &StorageDepositArgs { account_id },
            deposit,
        )
    }

    /// Pays `account_id`'s (default: the signer's) credit in `asset`; returns the amount.
    pub fn withdraw(&self, asset: Asset, account_id: Option<AccountId>) -> Result<Call<'a, U128>> {
        self.contract()
            .call(m::WITHDRAW, &WithdrawArgs { asset, account_id })
    }

    /// Owner only.
    pub fn update_config(&self, patch: ConfigPatch) -> Result<Call<'a, ()>> {
        self.contract()
            .call(m::UPDATE_CONFIG, &UpdateConfigArgs { patch })
    }

    /// Owner only: accepts `token` at `rate` (`None` stops accepting it).
    pub fn set_accepted_token(
        &self,
        token: AccountId,
        rate: Option<TokenRate>,
    ) -> Result<Call<'a, ()>> {
        self.contract()
            .call(m::SET_ACCEPTED_TOKEN, &SetAcceptedTokenArgs { token, rate })
    }

    /// Owner only: sends `model_id`'s royalties to `account` (`None`: to the protocol fees
    /// until the model is confirmed).
    pub fn set_royalty_account(
        &self,
        model_id: ModelId,
        account: Option<AccountId>,
    ) -> Result<Call<'a, ()>> {
        self.contract().call(
            m::SET_ROYALTY_ACCOUNT,
            &SetRoyaltyAccountArgs { model_id, account },
        )
    }

    /// The `msg` of an `ft_transfer_call` that pays for `job` in a token.
    pub fn submit_job_message(job: &JobSpec) -> String {
        // A JobSpec always serialises: plain strings, integers and enums.
        serde_json::to_string(&FtMessage::SubmitJob(job.clone()))
            .unwrap_or_else(|e| unreachable!("a job spec is JSON: {e}"))
    }
}
