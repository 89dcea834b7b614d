//! Golden GPU measurements pinned by governance (issue 16): per chip, VBIOS and driver sets
//! produced off chain from NVIDIA's signed RIMs (`ecloud attestation gpu-reference`). A chip
//! with any pinned set has each of its GPUs compared at registration and re-attestation
//! (`attestation::nvidia::check_golden_measurements`); a chip without is not compared. Stored
//! in a collection of its own (not in the root state), like the revoked GPUs.

use attestation::nvidia::{
    GoldenMeasurement, GoldenSet, GpuVerdict, ReferenceKind, check_gpu_against_sets,
};
use enclave_cloud_common::interfaces::registry::{GoldenKind, GoldenReference};
use near_sdk::store::LookupMap;

use crate::errors::{RegistryError, Result};
use crate::storage_keys::StorageKey;

/// Most indexes of one set (NVIDIA's RIMs list 64) and alternatives of one index.
pub const MAX_GOLDEN_INDEXES: usize = 256;
pub const MAX_ALTERNATIVES: usize = 8;
/// Most sets pinned per chip (VBIOS and driver versions in service at once).
pub const MAX_SETS_PER_CHIP: usize = 32;

/// The pinned sets, by chip (`product`, e.g. "GH100").
pub fn golden_sets() -> LookupMap<String, Vec<GoldenReference>> {
    LookupMap::new(StorageKey::GoldenSets)
}

/// Refuses a set that is malformed or too large to compare within a call's gas.
pub fn validate(set: &GoldenReference) -> Result<()> {
    let bad = |reason: String| RegistryError::InvalidInput {
        field: "golden set",
        reason,
    };
    if set.product.is_empty() || set.version.is_empty() {
        return Err(bad("product and version are required".into()));
    }
    if set.measurements.is_empty() || set.measurements.len() > MAX_GOLDEN_INDEXES {
        return Err(bad(format!(
            "{} indexes, expected 1 to {MAX_GOLDEN_INDEXES}",
            set.measurements.len()
        )));
    }
    for m in &set.measurements {
        let hex_ok = m
            .alternatives
            .iter()
            .all(|a| a.len() == 96 && a.bytes().all(|b| b.is_ascii_hexdigit()));
        if m.alternatives.is_empty() || m.alternatives.len() > MAX_ALTERNATIVES || !hex_ok {
            return Err(bad(format!(
                "index {}: 1 to {MAX_ALTERNATIVES} alternatives of 96 hex digits (SHA-384)",
                m.index
            )));
        }
    }
    Ok(())
}

fn same_slot(a: &GoldenReference, kind: GoldenKind, product: &str, version: &str) -> bool {
    a.kind == kind && a.product == product && a.version.eq_ignore_ascii_case(version)
}

/// Pins `set`, replacing the one of the same (kind, product, version).
pub fn pin(set: GoldenReference) -> Result<()> {
    validate(&set)?;
    let mut all = golden_sets();
    let mut sets = all.get(&set.product).cloned().unwrap_or_default();
    sets.retain(|s| !same_slot(s, set.kind, &set.product, &set.version));
    if sets.len() >= MAX_SETS_PER_CHIP {
        return Err(RegistryError::InvalidInput {
            field: "golden set",
            reason: format!("{MAX_SETS_PER_CHIP} sets are pinned for this chip already"),
        });
    }
    let product = set.product.clone();
    sets.push(set);
    all.insert(product, sets);
    all.flush();
    Ok(())
}

/// Unpins the set of (kind, product, version), if any.
pub fn unpin(kind: GoldenKind, product: &str, version: &str) {
    let mut all = golden_sets();
    let mut sets = all.get(product).cloned().unwrap_or_default();
    sets.retain(|s| !same_slot(s, kind, product, version));
    if sets.is_empty() {
        all.remove(product);
    } else {
        all.insert(product.to_owned(), sets);
    }
    all.flush();
}

fn to_set(r: &GoldenReference) -> GoldenSet {
    GoldenSet {
        kind: match r.kind {
            GoldenKind::Vbios => ReferenceKind::Vbios,
            GoldenKind::Driver => ReferenceKind::Driver,
        },
        product: r.product.clone(),
        version: r.version.clone(),
        tag_id: r.tag_id.clone(),
        measurements: r
            .measurements
            .iter()
            .map(|m| GoldenMeasurement {
                index: m.index,
                name: m.name.clone(),
                active: m.active,
                alternatives: m.alternatives.clone(),
            })
            .collect(),
    }
}

/// A verified GPU against its chip's pinned sets: nothing pinned for the chip passes; else it
/// needs the VBIOS set of its VBIOS version and the driver set of its driver version, and its
/// measurements must match both (`attestation::nvidia::check_gpu_against_sets`, the check
/// `ecloud attestation verify --golden` runs too).
pub fn check_gpu(g: &GpuVerdict) -> Result<()> {
    let Some(pinned) = golden_sets().get(&g.model).cloned() else {
        return Ok(());
    };
    let sets: Vec<GoldenSet> = pinned.iter().map(to_set).collect();
    check_gpu_against_sets(g, &sets).map_err(|e| RegistryError::Gpu(e.to_string()))
}
