//! SPDM 1.1 GET_MEASUREMENTS request + MEASUREMENTS response, as nvtrust's local GPU verifier
//! stores them (request first). Layout (little-endian lengths):
//!
//! request (37 B): version, code 0xE0, param1, param2, nonce (32), slot id
//! response: version, code 0x60, param1, param2, number of blocks, record length (3),
//! record, responder nonce (32), opaque length (2), opaque data, signature (96, P-384 r||s).
//! The signature covers request || response without the signature.

use crate::GpuError;

const REQUEST_LEN: usize = 37;
const GET_MEASUREMENTS: u8 = 0xE0;
const MEASUREMENTS: u8 = 0x60;
const SIGNATURE_LEN: usize = 96;
const DMTF_SPEC: u8 = 1;

// Opaque field ids: nvtrust's local GPU verifier (`OpaqueData.OPAQUE_DATA_TYPES` in
// `verifier/attestation/spdm_msrt_resp_msg.py`) and its NVSwitch verifier.
pub const OPAQUE_DRIVER_VERSION: u16 = 3;
pub const OPAQUE_VBIOS_VERSION: u16 = 6;
pub const OPAQUE_CHIP_SKU: u16 = 15;
pub const OPAQUE_PROJECT: u16 = 17;
pub const OPAQUE_PROJECT_SKU: u16 = 18;
/// `OPAQUE_FIELD_ID_PROTECTED_PCIE_STATUS` (GPUs and switches): one status byte,
/// [`STATUS_ENABLED`] in protected-PCIe mode.
pub const OPAQUE_PROTECTED_PCIE_STATUS: u16 = 21;
/// NVIDIA's status byte values (nvtrust `config.py`: `NVDEC_STATUS` ENABLED 0xAA, DISABLED
/// 0x55); NVIDIA's single-H100 sample, not in protected-PCIe mode, reports 0x55 here.
pub const STATUS_ENABLED: u8 = 0xAA;
pub const STATUS_DISABLED: u8 = 0x55;
/// GPUs: `OPAQUE_FIELD_ID_SWITCH_PDI`, the PDI (8 bytes, little-endian) of the NVSwitch at the
/// end of each of the GPU's NVLinks, zero for a disabled link.
pub const OPAQUE_SWITCH_PDI: u16 = 22;
/// NVSwitches: the same id is `OPAQUE_FIELD_ID_DEVICE_PDI`, the switch's own PDI (8 bytes,
/// printed in byte order by NVIDIA's topology check).
pub const OPAQUE_DEVICE_PDI: u16 = 22;
/// NVSwitches: `OPAQUE_FIELD_ID_SWITCH_GPU_PDIS`, the PDIs of the 8 GPUs it connects (8 bytes
/// each, [`SWITCH_GPU_SLOTS`] of them), then one-byte port ids.
pub const OPAQUE_SWITCH_GPU_PDIS: u16 = 26;
/// GPU PDI slots of a switch's SWITCH_GPU_PDIS field (nvtrust's `TOTAL_NUMBER_OF_PDI`).
pub const SWITCH_GPU_SLOTS: usize = 8;
/// Size of one PDI.
pub const PDI_LEN: usize = 8;

/// A parsed (not yet verified) GPU report, borrowing from the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdmReport<'a> {
    /// The requester's nonce (what the verifier asked for).
    pub nonce: [u8; 32],
    /// Measurement values in block order.
    pub measurements: Vec<&'a [u8]>,
    /// Opaque data fields `(type, value)`.
    pub opaque: Vec<(u16, &'a [u8])>,
    /// The bytes covered by the signature.
    pub signed: &'a [u8],
    /// P-384 `r || s`.
    pub signature: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GpuError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(GpuError::Report(format!(
                "truncated at {what} (offset {}, need {n} bytes, have {})",
                self.pos,
                self.buf.len() - self.pos
            )));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, GpuError> {
        Ok(self.take(1, what)?[0])
    }

    fn le(&mut self, n: usize, what: &str) -> Result<usize, GpuError> {
        Ok(self
            .take(n, what)?
            .iter()
            .rev()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    }
}

/// Parses request + response; every length is checked, nothing panics on bad input.
pub fn parse_spdm_report(bytes: &[u8]) -> Result<SpdmReport<'_>, GpuError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let request = r.take(REQUEST_LEN, "request")?;
    if request[1] != GET_MEASUREMENTS {
        return Err(GpuError::Report(format!(
            "request code {:#04x} is not GET_MEASUREMENTS",
            request[1]
        )));
    }
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&request[4..36]);

    let header = r.take(4, "response header")?;
    if header[1] != MEASUREMENTS {
        return Err(GpuError::Report(format!(
            "response code {:#04x} is not MEASUREMENTS",
            header[1]
        )));
    }
    let blocks = r.u8("number of blocks")?;
    let record_len = r.le(3, "record length")?;
    let record = r.take(record_len, "measurement record")?;
    let measurements = parse_record(record, blocks)?;
    r.take(32, "responder nonce")?;
    let opaque_len = r.le(2, "opaque length")?;
    let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
    let signed_len = r.pos;
    let signature = r.take(SIGNATURE_LEN, "signature")?;
    if r.pos != bytes.len() {
        return Err(GpuError::Report(format!(
            "{} trailing bytes after the signature",
            bytes.len() - r.pos
        )));
    }
    Ok(SpdmReport {
        nonce,
        measurements,
        opaque,
        signed: &bytes[..signed_len],
        signature,
    })
}

/// Measurement blocks: index, spec (1 = DMTF), size (2), then DMTF type, value size (2), value.
fn parse_record(record: &[u8], blocks: u8) -> Result<Vec<&[u8]>, GpuError> {
    let mut r = Reader {
        buf: record,
        pos: 0,
    };
    let mut out = Vec::with_capacity(usize::from(blocks));
    for n in 0..blocks {
        let index = r.u8("block index")?;
        if usize::from(index) != usize::from(n) + 1 {
            return Err(GpuError::Report(format!(
                "measurement block {} has index {index}",
                usize::from(n) + 1
            )));
        }
        if r.u8("measurement specification")? != DMTF_SPEC {
            return Err(GpuError::Report(format!(
                "measurement block {index} is not in DMTF format"
            )));
        }
        let size = r.le(2, "measurement size")?;
        let mut m = Reader {
            buf: r.take(size, "measurement")?,
            pos: 0,
        };
        m.u8("DMTF value type")?;
        let value_size = m.le(2, "DMTF value size")?;
        let value = m.take(value_size, "DMTF value")?;
        if m.pos != size {
            return Err(GpuError::Report(format!(
                "measurement block {index} has {} extra bytes",
                size - m.pos
            )));
        }
        out.push(value);
    }
    if r.pos != record.len() {
        return Err(GpuError::Report(
            "measurement record longer than its blocks".into(),
        ));
    }
    Ok(out)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<(u16, &[u8])>, GpuError> {
    let mut r = Reader { buf: data, pos: 0 };
    let mut out = Vec::new();
    while r.pos < data.len() {
        let ty = u16::try_from(r.le(2, "opaque type")?).unwrap_or(u16::MAX);
        let len = r.le(2, "opaque size")?;
        out.push((ty, r.take(len, "opaque value")?));
    }
    Ok(out)
}

impl SpdmReport<'_> {
    /// The first opaque field of type `ty`.
    pub fn opaque_field(&self, ty: u16) -> Option<&[u8]> {
        self.opaque.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
    }

    /// An opaque field as text (NUL-terminated ASCII).
    pub fn opaque_string(&self, ty: u16) -> Option<String> {
        let v = self.opaque_field(ty)?;
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        let s = core::str::from_utf8(&v[..end]).ok()?;
        (!s.is_empty()).then(|| s.to_owned())
    }

    /// Protected-PCIe mode: the PROTECTED_PCIE_STATUS byte is [`STATUS_ENABLED`]; absent or
    /// [`STATUS_DISABLED`] is off; anything else is refused rather than guessed.
    pub fn protected_pcie(&self) -> Result<bool, GpuError> {
        match self.opaque_field(OPAQUE_PROTECTED_PCIE_STATUS) {
            None | Some([STATUS_DISABLED]) => Ok(false),
            Some([STATUS_ENABLED]) => Ok(true),
            Some(v) => Err(GpuError::Report(format!(
                "PROTECTED_PCIE_STATUS is {}, expected {STATUS_ENABLED:#04x} or {STATUS_DISABLED:#04x}",
                crate::hexser::to_hex(v)
            ))),
        }
    }

    /// A GPU's switch PDIs: each 8-byte entry read little-endian (as NVIDIA's topology check
    /// reads them), zero entries (disabled links) dropped, distinct, sorted, hex.
    pub fn switch_pdis(&self) -> Result<Vec<String>, GpuError> {
        let Some(v) = self.opaque_field(OPAQUE_SWITCH_PDI) else {
            return Ok(Vec::new());
        };
        if v.len() % PDI_LEN != 0 {
            return Err(GpuError::Report(format!(
                "SWITCH_PDI field of {} bytes is not a list of {PDI_LEN}-byte PDIs",
                v.len()
            )));
        }
        let mut out: Vec<String> = v
            .chunks(PDI_LEN)
            .filter(|pdi| pdi.iter().any(|&b| b != 0))
            .map(|pdi| pdi.iter().rev().map(|b| format!("{b:02x}")).collect())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// A switch's own PDI (DEVICE_PDI, 8 bytes), hex in byte order.
    pub fn device_pdi(&self) -> Result<String, GpuError> {
        match self.opaque_field(OPAQUE_DEVICE_PDI) {
            Some(v) if v.len() == PDI_LEN && v.iter().any(|&b| b != 0) => {
                Ok(v.iter().map(|b| format!("{b:02x}")).collect())
            }
            Some(v) => Err(GpuError::Report(format!(
                "DEVICE_PDI field is {} bytes, expected a non-zero {PDI_LEN}-byte PDI",
                v.len()
            ))),
            None => Err(GpuError::Report("no DEVICE_PDI field".into())),
        }
    }

    /// A switch's GPU PDIs (SWITCH_GPU_PDIS: 8 slots of 8 bytes, then port ids), hex in byte
    /// order, zero slots dropped, distinct, sorted.
    pub fn switch_gpu_pdis(&self) -> Result<Vec<String>, GpuError> {
        let v = self
            .opaque_field(OPAQUE_SWITCH_GPU_PDIS)
            .ok_or_else(|| GpuError::Report("no SWITCH_GPU_PDIS field".into()))?;
        let slots = v.get(..SWITCH_GPU_SLOTS * PDI_LEN).ok_or_else(|| {
            GpuError::Report(format!(
                "SWITCH_GPU_PDIS field of {} bytes is shorter than {SWITCH_GPU_SLOTS} PDIs",
                v.len()
            ))
        })?;
        let mut out: Vec<String> = slots
            .chunks(PDI_LEN)
            .filter(|pdi| pdi.iter().any(|&b| b != 0))
            .map(crate::hexser::to_hex)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn driver_version(&self) -> Option<String> {
        self.opaque_string(OPAQUE_DRIVER_VERSION)
    }

    /// VBIOS version as nvtrust prints it (e.g. "96.00.9f.00.01" for bytes 00 9f 00 96 01 00 00 00).
    pub fn vbios_version(&self) -> Option<String> {
        let v = self.opaque_field(OPAQUE_VBIOS_VERSION)?;
        if v.len() != 8 {
            return None;
        }
        // nvtrust prints the little-endian u64's low half (b3 b2 b1 b0), then b4.
        let order = [v[3], v[2], v[1], v[0], v[4]];
        Some(
            order
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join("."),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_opaque(opaque: Vec<(u16, &[u8])>) -> SpdmReport<'_> {
        SpdmReport {
            nonce: [0; 32],
            measurements: Vec::new(),
            opaque,
            signed: &[],
            signature: &[],
        }
    }

    #[test]
    fn protected_pcie_status_is_nvidias_status_byte() {
        assert_eq!(with_opaque(vec![]).protected_pcie(), Ok(false));
        let on = [STATUS_ENABLED];
        let off = [STATUS_DISABLED];
        let field = OPAQUE_PROTECTED_PCIE_STATUS;
        assert_eq!(with_opaque(vec![(field, &on)]).protected_pcie(), Ok(true));
        assert_eq!(with_opaque(vec![(field, &off)]).protected_pcie(), Ok(false));
        for odd in [&[0x01][..], &[0x00], &[0xAA, 0x00], &[]] {
            assert!(
                with_opaque(vec![(field, odd)]).protected_pcie().is_err(),
                "{odd:?}"
            );
        }
    }

    #[test]
    fn switch_pdis_are_read_little_endian_without_disabled_links() {
        let pdi_a = 0x1122_3344_5566_7788u64.to_le_bytes();
        let pdi_b = 0x0000_0000_0000_0001u64.to_le_bytes();
        let links = [pdi_a, [0; 8], pdi_b, pdi_a].concat();
        let r = with_opaque(vec![(OPAQUE_SWITCH_PDI, &links)]);
        assert_eq!(
            r.switch_pdis(),
            Ok(vec!["0000000000000001".into(), "1122334455667788".into()])
        );
        assert!(
            with_opaque(vec![(OPAQUE_SWITCH_PDI, &links[..7])])
                .switch_pdis()
                .is_err()
        );
        // A switch's own PDI is printed in byte order.
        let own = 0x1122_3344_5566_7788u64.to_be_bytes();
        assert_eq!(
            with_opaque(vec![(OPAQUE_DEVICE_PDI, &own)]).device_pdi(),
            Ok("1122334455667788".into())
        );
        assert!(
            with_opaque(vec![(OPAQUE_DEVICE_PDI, &[0; 8])])
                .device_pdi()
                .is_err()
        );
        assert!(with_opaque(vec![]).device_pdi().is_err());
    }
}
