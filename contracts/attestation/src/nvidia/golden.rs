//! Golden GPU measurements: what a GPU's SPDM measurement blocks must equal, per index, as
//! NVIDIA's reference integrity manifests (RIMs) state them: one set for the VBIOS and one for
//! the driver. Produced off chain from signed RIMs (`ecloud attestation gpu-reference`, see
//! [`super::rim`]), pinned by governance, compared by [`check_golden_measurements`] wherever
//! GPU evidence is verified. The comparison is NVIDIA's (nvtrust `verifier/rim` +
//! `golden_measurement.py`): every *active* golden index must be present in the GPU's report
//! and equal one of its alternatives; the driver and VBIOS sets must not both claim an index.

use serde::{Deserialize, Serialize};

use super::GpuVerdict;
use crate::GpuError;

/// Which firmware a reference set describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    Vbios,
    Driver,
}

/// One index of a reference set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenMeasurement {
    /// The RIM's index: SPDM measurement block `index + 1`.
    pub index: u16,
    /// The RIM's name for it (e.g. `HashedMeasurement_1_FSP`).
    pub name: String,
    /// Inactive indexes are not compared (NVIDIA's `active="False"`).
    pub active: bool,
    /// Accepted values, lowercase hex (SHA-384, 96 digits): the RIM's `Hash0`, `Hash1`, ...
    pub alternatives: Vec<String>,
}

/// A reference measurement set from one signed RIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenSet {
    pub kind: ReferenceKind,
    /// The chip (`GH100`, ...): the RIM's `product`.
    pub product: String,
    /// VBIOS version (`96.00.5e.00.01`, lowercase as the GPU's opaque data prints it) or driver
    /// version (`550.90.07`): the RIM's `colloquialVersion`.
    pub version: String,
    /// The RIM's `tagId`.
    pub tag_id: String,
    pub measurements: Vec<GoldenMeasurement>,
}

/// Compares a GPU's measurement blocks (`measurements[i]` is block `i + 1`'s value in hex, as
/// [`super::GpuVerdict::measurements`] lists them; a RIM's index `i` names that same entry, as
/// in nvtrust's `measurement_list[index - 1]`) with its VBIOS and driver reference sets.
/// `vbios_version` and `driver_version` are the versions the GPU reports: each set must be
/// for that version and the GPU's chip.
pub fn check_golden_measurements(
    model: &str,
    measurements: &[String],
    vbios_version: Option<&str>,
    driver_version: Option<&str>,
    vbios: &GoldenSet,
    driver: &GoldenSet,
) -> Result<(), GpuError> {
    for (set, kind, reported) in [
        (vbios, ReferenceKind::Vbios, vbios_version),
        (driver, ReferenceKind::Driver, driver_version),
    ] {
        if set.kind != kind {
            return Err(GpuError::Golden(format!(
                "a {:?} reference set was given as the {kind:?} set",
                set.kind
            )));
        }
        if !set.product.eq_ignore_ascii_case(model) {
            return Err(GpuError::Golden(format!(
                "the {kind:?} reference set is for {}, the GPU is a {model}",
                set.product
            )));
        }
        if reported.is_none_or(|v| !v.eq_ignore_ascii_case(&set.version)) {
            return Err(GpuError::Golden(format!(
                "the {kind:?} reference set is for version {}, the GPU reports {}",
                set.version,
                reported.unwrap_or("none")
            )));
        }
    }
    for m in vbios.measurements.iter().filter(|m| m.active) {
        if driver
            .measurements
            .iter()
            .any(|d| d.active && d.index == m.index)
        {
            return Err(GpuError::Golden(format!(
                "index {} is claimed by both the VBIOS and the driver reference sets",
                m.index
            )));
        }
    }
    for golden in vbios
        .measurements
        .iter()
        .chain(&driver.measurements)
        .filter(|m| m.active)
    {
        let slot = measurements.get(usize::from(golden.index));
        let Some(actual) = slot else {
            return Err(GpuError::Golden(format!(
                "the GPU reports no measurement {} ({})",
                golden.index, golden.name
            )));
        };
        if !golden
            .alternatives
            .iter()
            .any(|a| a.eq_ignore_ascii_case(actual))
        {
            return Err(GpuError::Golden(format!(
                "measurement {} ({}) is {actual}, not a golden value",
                golden.index, golden.name
            )));
        }
    }
    Ok(())
}

/// Checks a verified GPU against a list of reference sets (a file written by `ecloud
/// attestation gpu-reference`, or what governance pinned): the VBIOS set for the GPU's chip and
/// reported VBIOS version and the driver set for its chip and driver version must both be in
/// `sets`, and its measurements must match them ([`check_golden_measurements`]). A GPU whose
/// firmware has no set in the list is refused: the caller decides whether to compare at all.
pub fn check_gpu_against_sets(gpu: &GpuVerdict, sets: &[GoldenSet]) -> Result<(), GpuError> {
    let find = |kind: ReferenceKind, version: Option<&str>| {
        let found = version.and_then(|v| {
            sets.iter().find(|s| {
                s.kind == kind
                    && s.product.eq_ignore_ascii_case(&gpu.model)
                    && s.version.eq_ignore_ascii_case(v)
            })
        });
        found.ok_or_else(|| {
            GpuError::Golden(format!(
                "no {kind:?} reference set for {} version {}",
                gpu.model,
                version.unwrap_or("(none reported)")
            ))
        })
    };
    let vbios = find(ReferenceKind::Vbios, gpu.vbios_version.as_deref())?;
    let driver = find(ReferenceKind::Driver, gpu.driver_version.as_deref())?;
    check_golden_measurements(
        &gpu.model,
        &gpu.measurements,
        gpu.vbios_version.as_deref(),
        gpu.driver_version.as_deref(),
        vbios,
        driver,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kind: ReferenceKind, version: &str, entries: &[(u16, bool, &[&str])]) -> GoldenSet {
        GoldenSet {
            kind,
            product: "GH100".into(),
            version: version.into(),
            tag_id: "t".into(),
            measurements: entries
                .iter()
                .map(|(index, active, alts)| GoldenMeasurement {
                    index: *index,
                    name: format!("m{index}"),
                    active: *active,
                    alternatives: alts.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
        }
    }

    fn check(measured: &[&str], vbios: &GoldenSet, driver: &GoldenSet) -> Result<(), GpuError> {
        let measured: Vec<String> = measured.iter().map(|m| (*m).to_owned()).collect();
        check_golden_measurements(
            "GH100",
            &measured,
            Some("96.00.9f.00.01"),
            Some("550.90.07"),
            vbios,
            driver,
        )
    }

    #[test]
    fn active_indexes_must_match_an_alternative() {
        let vbios = set(
            ReferenceKind::Vbios,
            "96.00.9F.00.01",
            &[(0, true, &["aa", "bb"]), (1, false, &["cc"])],
        );
        let driver = set(ReferenceKind::Driver, "550.90.07", &[(2, true, &["dd"])]);
        assert_eq!(check(&["bb", "zz", "DD"], &vbios, &driver), Ok(()));
        assert!(
            check(&["ee", "zz", "dd"], &vbios, &driver).is_err(),
            "off the set"
        );
        assert!(
            check(&["aa", "zz"], &vbios, &driver).is_err(),
            "missing index 2"
        );
    }

    fn gpu(measurements: &[&str]) -> GpuVerdict {
        GpuVerdict {
            model: "GH100".into(),
            device_id: "d".into(),
            nonce: "n".into(),
            driver_version: Some("550.90.07".into()),
            vbios_version: Some("96.00.9F.00.01".into()),
            project: None,
            project_sku: None,
            chip_sku: None,
            measurements: measurements.iter().map(|m| (*m).to_owned()).collect(),
            verified_intermediates: vec![],
            measured_in_rtmr3: false,
            protected_pcie: false,
            switch_pdis: vec![],
        }
    }

    #[test]
    fn a_gpu_is_checked_against_the_sets_of_its_chip_and_versions() {
        let vbios = set(
            ReferenceKind::Vbios,
            "96.00.9f.00.01",
            &[(0, true, &["aa"])],
        );
        let other_vbios = set(
            ReferenceKind::Vbios,
            "96.00.5e.00.01",
            &[(0, true, &["ee"])],
        );
        let driver = set(ReferenceKind::Driver, "550.90.07", &[(1, true, &["bb"])]);
        let all = [other_vbios.clone(), vbios.clone(), driver.clone()];
        assert_eq!(check_gpu_against_sets(&gpu(&["aa", "bb"]), &all), Ok(()));
        assert!(
            check_gpu_against_sets(&gpu(&["ee", "bb"]), &all).is_err(),
            "another VBIOS version's value"
        );
        let no_vbios = [other_vbios, driver.clone()];
        let e = check_gpu_against_sets(&gpu(&["aa", "bb"]), &no_vbios).unwrap_err();
        assert!(e.to_string().contains("no Vbios reference set"), "{e}");
        let e = check_gpu_against_sets(&gpu(&["aa", "bb"]), &[vbios]).unwrap_err();
        assert!(e.to_string().contains("no Driver reference set"), "{e}");
        let mut unversioned = gpu(&["aa", "bb"]);
        unversioned.vbios_version = None;
        assert!(check_gpu_against_sets(&unversioned, &all).is_err());
    }

    #[test]
    fn sets_for_other_versions_chips_or_overlapping_indexes_are_refused() {
        let vbios = set(
            ReferenceKind::Vbios,
            "96.00.5e.00.01",
            &[(0, true, &["aa"])],
        );
        let driver = set(ReferenceKind::Driver, "550.90.07", &[]);
        assert!(check(&["aa"], &vbios, &driver).is_err(), "vbios version");
        let vbios = set(
            ReferenceKind::Vbios,
            "96.00.9f.00.01",
            &[(0, true, &["aa"])],
        );
        let overlap = set(ReferenceKind::Driver, "550.90.07", &[(0, true, &["aa"])]);
        assert!(check(&["aa"], &vbios, &overlap).is_err(), "overlap");
        assert!(check(&["aa"], &driver, &vbios).is_err(), "swapped kinds");
        let mut other_chip = vbios.clone();
        other_chip.product = "GB100".into();
        assert!(check(&["aa"], &other_chip, &driver).is_err(), "chip");
    }
}
