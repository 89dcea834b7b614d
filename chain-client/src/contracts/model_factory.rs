//! The model factory: creating models and their listing.

use enclave_cloud_common::ModelId;
use enclave_cloud_common::interfaces::model_factory::methods::{
    self as m, CreateDepositArgs, CreateModelArgs, ModelArgs, ModelsArgs,
};
use enclave_cloud_common::interfaces::model_factory::{FactorySetting, ModelView};
use near_primitives::types::Balance;
use serde::Serialize;

use super::Call;
use crate::Result;

contract_client!(
    /// The model factory contract at `id`.
    ModelFactoryClient,
    governed: FactorySetting
);

impl<'a> ModelFactoryClient<'a> {
    /// The model's listing, or `None` if the factory never created it.
    pub async fn model(&self, model_id: &ModelId) -> Result<Option<ModelView>> {
        let args = ModelArgs {
            model_id: model_id.clone(),
        };
        self.contract().view(m::MODEL, &args).await
    }

    /// A page of models in creation order.
    pub async fn models(
        &self,
        from_index: Option<u32>,
        limit: Option<u32>,
    ) -> Result<Vec<ModelView>> {
        self.contract()
            .view(m::MODELS, &ModelsArgs { from_index, limit })
            .await
    }

    /// The least deposit `create_model` accepts for these init arguments.
    pub async fn create_deposit<A: Serialize>(&self, args: A) -> Result<Balance> {
        self.contract()
            .view(m::CREATE_DEPOSIT, &CreateDepositArgs { args })
            .await
    }

    /// Creates `<model_id>.<factory>`; `deposit` at least `create_deposit(args)`.
    pub fn create_model<A: Serialize>(
        &self,
        model_id: ModelId,
        args: A,
        deposit: Balance,
    ) -> Result<Call<'a, serde_json::Value>> {
        self.contract().paid_call(
            m::CREATE_MODEL,
            &CreateModelArgs { model_id, args },
            deposit,
        )
    }
}
