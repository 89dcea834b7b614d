//! A node's commercial details (endpoint, region, prices, capacity): validated so views and
//! the indexer never carry junk, and bounded so a node's record stays small.

use enclave_cloud_common::ModelPrice;
use std::collections::BTreeSet;

use crate::errors::{RegistryError, Result};

pub const MAX_ENDPOINT_LEN: usize = 256;
pub const MAX_REGION_LEN: usize = 32;
pub const MAX_PRICES: usize = 32;

pub use enclave_cloud_common::interfaces::registry::NodeUpdate;

/// `None` clears; otherwise an http(s) URL without whitespace.
pub fn endpoint(value: String) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    let scheme_ok = value.starts_with("https://") || value.starts_with("http://");
    let chars_ok = value.bytes().all(|b| b.is_ascii_graphic());
    if value.len() > MAX_ENDPOINT_LEN || !scheme_ok || !chars_ok {
        return Err(RegistryError::invalid(
            "endpoint",
            format!(
                "'{value}' must be an http(s) URL of at most {MAX_ENDPOINT_LEN} printable characters"
            ),
        ));
    }
    Ok(Some(value))
}

/// `None` clears; otherwise a slug like `eu-west` or `us-east-1`.
pub fn region(value: String) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    let ok = value.len() <= MAX_REGION_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(RegistryError::invalid(
            "region",
            format!("'{value}' must be at most {MAX_REGION_LEN} characters of a-z, 0-9 and '-'"),
        ));
    }
    Ok(Some(value))
}

/// At most [`MAX_PRICES`] models, each once.
pub fn prices(value: Vec<ModelPrice>) -> Result<Vec<ModelPrice>> {
    if value.len() > MAX_PRICES {
        return Err(RegistryError::invalid(
            "prices",
            format!("{} models, at most {MAX_PRICES}", value.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for p in &value {
        if !seen.insert(p.model_id.as_str()) {
            return Err(RegistryError::invalid(
                "prices",
                format!("model {} is priced twice", p.model_id),
            ));
        }
    }
    Ok(value)
}

/// The validated values of an update, ready to apply (`None`: unchanged).
pub struct CheckedUpdate {
    pub endpoint: Option<Option<String>>,
    pub region: Option<Option<String>>,
    pub prices: Option<Vec<ModelPrice>>,
    pub capacity: Option<u32>,
}

pub fn check(update: NodeUpdate) -> Result<CheckedUpdate> {
    Ok(CheckedUpdate {
        endpoint: update.endpoint.map(endpoint).transpose()?,
        region: update.region.map(region).transpose()?,
        prices: update.prices.map(prices).transpose()?,
        capacity: update.capacity,
    })
}
