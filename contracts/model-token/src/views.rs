//! Read-only views of the model itself (token, revenue, crowdfund and key views live with
//! their features).

use enclave_cloud_common::ModelId;
use enclave_cloud_common::events::model::ModelManifest;
use near_sdk::{AccountId, near};

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::upgrade::STATE_VERSION;

#[near]
impl ModelToken {
    pub fn model_id(&self) -> ModelId {
        self.model_id.clone()
    }

    pub fn owner(&self) -> AccountId {
        self.owner.clone()
    }

    pub fn registry(&self) -> AccountId {
        self.registry.clone()
    }

    pub fn key_service(&self) -> Option<AccountId> {
        self.key_service.clone()
    }

    pub fn manifest(&self) -> Option<ModelManifest> {
        self.manifest.get().clone()
    }

    /// Contract version, from Cargo, and the layout version of its state.
    pub fn version(&self) -> (String, u32) {
        (
            env!("CARGO_PKG_VERSION").to_owned(),
            u32::from(STATE_VERSION),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::*;

    #[test]
    fn views() {
        let t = setup();
        assert_eq!(t.model_id().as_str(), "llama");
        assert_eq!(t.owner(), acc(OWNER));
        assert_eq!(t.registry(), acc(REGISTRY));
        assert_eq!(t.key_service(), Some(acc(KEY_SERVICE)));
        assert_eq!(t.manifest().unwrap().name, "Llama test");
        assert_eq!(t.version().1, u32::from(crate::upgrade::STATE_VERSION));
    }
}
