//! NVSwitch evidence and the protected-PCIe topology check.
//!
//! An 8-GPU Hopper node in confidential mode runs in protected-PCIe (PPCIe) mode: all GPUs and
//! the NVSwitches between them belong to one CVM. Switch evidence (chip LS10) has the GPU's shape
//! (SPDM GET_MEASUREMENTS signed by a device key chaining to NVIDIA's Device Identity CA) and
//! answers the same bound nonce. NVIDIA's PPCIe verifier (nvtrust
//! `guest_tools/ppcie-verifier/.../topology/validate_topology.py`) then checks that every GPU's
//! SWITCH_PDI list (distinct non-zero entries) is the same set, and that each switch's own
//! DEVICE_PDI is in it; here the set must equal the presented switches' PDIs exactly, so a
//! missing switch or a foreign one is refused.

use serde::{Deserialize, Serialize};

use super::{CertCache, DeviceClass, GpuRoots, GpuVerdict, device_class, verify_device};
use crate::GpuError;
use crate::bundle::GpuEvidence;
use crate::hexser::to_hex;

/// What a verified NVSwitch report says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchVerdict {
    /// Chip from the leaf certificate's subject, "LS10".
    pub model: String,
    /// SHA-256 of the leaf certificate (DER), hex, like a GPU's.
    pub device_id: String,
    /// The nonce the report answers, hex.
    pub nonce: String,
    /// The switch's PDI (opaque DEVICE_PDI), hex.
    pub pdi: String,
    /// The switch is in protected-PCIe mode.
    pub protected_pcie: bool,
    /// The PDIs of the GPUs it connects (opaque SWITCH_GPU_PDIS, non-zero slots), hex, sorted.
    pub gpu_pdis: Vec<String>,
    /// Measurement values in block order, hex.
    pub measurements: Vec<String>,
    /// SHA-256 (hex) of the CA certificates verified by this call.
    pub verified_intermediates: Vec<String>,
}

/// Verifies one NVSwitch's evidence exactly as a GPU's (bound nonce, chain to a trusted root,
/// report signature by the leaf key); the leaf must name a switch, and the report its PDI.
pub fn verify_switch_evidence<K: CertCache + ?Sized>(
    ev: &GpuEvidence,
    expected_nonce: &[u8; 32],
    now: u64,
    cache: &K,
    roots: &GpuRoots,
) -> Result<SwitchVerdict, GpuError> {
    let (report, leaf, verified) = verify_device(ev, expected_nonce, now, cache, roots)?;
    if device_class(&leaf.model) != DeviceClass::Switch {
        return Err(GpuError::NotASwitch { model: leaf.model });
    }
    Ok(SwitchVerdict {
        model: leaf.model,
        device_id: to_hex(&leaf.leaf_hash),
        nonce: to_hex(&report.nonce),
        pdi: report.device_pdi()?,
        protected_pcie: report.protected_pcie()?,
        gpu_pdis: report.switch_gpu_pdis()?,
        measurements: report.measurements.iter().map(|m| to_hex(m)).collect(),
        verified_intermediates: verified.iter().map(|h| to_hex(h)).collect(),
    })
}

/// NVIDIA's topology check over a node's verified GPUs and switches:
/// * no switch twice (device id or PDI);
/// * when any GPU is in protected-PCIe mode, all are, each lists at least one switch, and
///   each one's switch PDIs equal the set of the presented switches' PDIs;
/// * every switch is in protected-PCIe mode and connects the same GPUs, as many as the node
///   presents (NVIDIA's switch check: the same 8 GPU PDIs on every switch);
/// * switches are only presented with protected-PCIe GPUs.
pub fn check_topology(gpus: &[GpuVerdict], switches: &[SwitchVerdict]) -> Result<(), GpuError> {
    let topology = |m: String| Err(GpuError::Topology(m));
    let mut pdis: Vec<&str> = Vec::with_capacity(switches.len());
    for (i, s) in switches.iter().enumerate() {
        if let Some(first) = switches[..i]
            .iter()
            .position(|o| o.device_id == s.device_id)
        {
            return topology(format!("switch {i} is switch {first} again"));
        }
        if pdis.contains(&s.pdi.as_str()) {
            return topology(format!("switch {i} repeats PDI {}", s.pdi));
        }
        pdis.push(&s.pdi);
    }
    pdis.sort_unstable();
    let protected = gpus.iter().filter(|g| g.protected_pcie).count();
    if protected == 0 {
        if switches.is_empty() {
            return Ok(());
        }
        return topology(format!(
            "{} switches presented, but no GPU is in protected-PCIe mode",
            switches.len()
        ));
    }
    if protected != gpus.len() {
        return topology(format!(
            "{protected} of {} GPUs are in protected-PCIe mode: a node runs all or none",
            gpus.len()
        ));
    }
    for (i, s) in switches.iter().enumerate() {
        if !s.protected_pcie {
            return topology(format!("switch {i} is not in protected-PCIe mode"));
        }
        if s.gpu_pdis != switches[0].gpu_pdis {
            return topology(format!(
                "switch {i} connects GPUs {:?}, switch 0 connects {:?}",
                s.gpu_pdis, switches[0].gpu_pdis
            ));
        }
        if s.gpu_pdis.len() != gpus.len() {
            return topology(format!(
                "switch {i} connects {} GPUs, the node presents {}",
                s.gpu_pdis.len(),
                gpus.len()
            ));
        }
    }
    for (i, g) in gpus.iter().enumerate() {
        if g.switch_pdis.is_empty() {
            return topology(format!(
                "GPU {i} is in protected-PCIe mode but lists no NVSwitch"
            ));
        }
        // Both lists are sorted and distinct (`SpdmReport::switch_pdis`, checked above).
        if g.switch_pdis
            .iter()
            .map(String::as_str)
            .ne(pdis.iter().copied())
        {
            let missing: Vec<&str> = g
                .switch_pdis
                .iter()
                .map(String::as_str)
                .filter(|p| !pdis.contains(p))
                .collect();
            let extra: Vec<&str> = pdis
                .iter()
                .copied()
                .filter(|p| !g.switch_pdis.iter().any(|q| q == p))
                .collect();
            return topology(format!(
                "GPU {i}'s NVLinks reach switches {:?}, the node presents {:?} \
                 (not presented: {missing:?}; not linked: {extra:?})",
                g.switch_pdis, pdis
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(protected_pcie: bool, switch_pdis: &[&str]) -> GpuVerdict {
        GpuVerdict {
            model: "GH100".into(),
            device_id: String::new(),
            nonce: String::new(),
            driver_version: None,
            vbios_version: None,
            project: None,
            project_sku: None,
            chip_sku: None,
            measurements: Vec::new(),
            verified_intermediates: Vec::new(),
            measured_in_rtmr3: false,
            protected_pcie,
            switch_pdis: switch_pdis.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn switch(id: &str, pdi: &str) -> SwitchVerdict {
        SwitchVerdict {
            model: "LS10".into(),
            device_id: id.into(),
            nonce: String::new(),
            pdi: pdi.into(),
            protected_pcie: true,
            gpu_pdis: vec!["a1".into(), "a2".into()],
            measurements: Vec::new(),
            verified_intermediates: Vec::new(),
        }
    }

    #[test]
    fn the_rules_of_the_topology_check() {
        let switches = [switch("a", "01"), switch("b", "02")];
        let ppcie = [gpu(true, &["01", "02"]), gpu(true, &["01", "02"])];
        assert_eq!(check_topology(&ppcie, &switches), Ok(()));
        // Without protected PCIe: no switches.
        assert_eq!(check_topology(&[gpu(false, &[])], &[]), Ok(()));
        assert_eq!(check_topology(&[], &[]), Ok(()));
        let refused = |gpus: &[GpuVerdict], switches: &[SwitchVerdict], what: &str| {
            let err = check_topology(gpus, switches).expect_err(what);
            assert_eq!(err.code(), "gpu_topology", "{what}");
            err.to_string()
        };
        refused(&ppcie, &switches[..1], "a switch missing");
        refused(&ppcie, &[], "no switch at all");
        refused(
            &ppcie,
            &[switch("a", "01"), switch("b", "02"), switch("c", "03")],
            "a switch no GPU links to",
        );
        refused(
            &[gpu(true, &["01", "02"]), gpu(true, &["01", "03"])],
            &switches,
            "a wrong PDI in one GPU's list",
        );
        refused(
            &[gpu(true, &["01", "02"]), gpu(false, &[])],
            &switches,
            "mixed modes",
        );
        refused(&[gpu(false, &[])], &switches, "switches without PPCIe");
        refused(&[gpu(true, &[])], &[], "PPCIe GPU with no switch");
        let msg = refused(
            &ppcie,
            &[switch("a", "01"), switch("a", "02")],
            "the same switch twice",
        );
        assert!(msg.contains("switch 1 is switch 0"), "{msg}");
        refused(
            &ppcie,
            &[switch("a", "01"), switch("b", "01")],
            "two switches with one PDI",
        );
        let mut other_gpus = switch("b", "02");
        other_gpus.gpu_pdis = vec!["a1".into(), "a3".into()];
        refused(
            &ppcie,
            &[switch("a", "01"), other_gpus],
            "switches of other GPUs",
        );
        let mut fewer = [switch("a", "01"), switch("b", "02")];
        for s in &mut fewer {
            s.gpu_pdis.pop();
        }
        refused(
            &ppcie,
            &fewer,
            "switches connecting fewer GPUs than presented",
        );
        let mut off = switch("b", "02");
        off.protected_pcie = false;
        refused(
            &ppcie,
            &[switch("a", "01"), off],
            "a switch not in PPCIe mode",
        );
    }
}
