//! Strict layout of a TDX quote beyond what dcap-qvl checks, so that no byte of a submitted
//! quote is unauthenticated: bytes after the quote structure must be zero padding, the nested
//! lengths must agree, and the PCK chain carried in the quote must be clean PEM ending at
//! Intel's SGX root CA and equal to the collateral's PCK chain when both are given (dcap-qvl
//! uses the collateral's and would otherwise ignore the quote's).

use crate::{AttestationError, QuoteCollateralV3};

/// Intel SGX Root CA (SHA-256 fingerprint 44:A0:19:6B:...:74:D3), the DCAP trust anchor.
pub const INTEL_SGX_ROOT_CA_PEM: &str = include_str!("intel_sgx_root_ca.pem");

const CERT_TYPE_QE_REPORT: u16 = 6;
const CERT_TYPE_PCK_CHAIN: u16 = 5;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestationError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| layout(format!("truncated at {what} (offset {})", self.pos)))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, AttestationError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<usize, AttestationError> {
        let b = self.take(4, what)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| layout(format!("{what} does not fit")))
    }
}

fn layout(reason: String) -> AttestationError {
    AttestationError::Malformed {
        what: "TDX quote layout",
        reason,
    }
}

/// Checks the quote's layout (see the module doc).
pub fn check_quote_layout(
    quote: &[u8],
    collateral: &QuoteCollateralV3,
) -> Result<(), AttestationError> {
    let mut c = Cursor { buf: quote, pos: 0 };
    let version = c.u16("version")?;
    c.take(46, "header")?;
    let body_len = match version {
        4 => 584,
        5 => {
            c.u16("body type")?;
            c.u32("body size")?
        }
        v => return Err(layout(format!("unsupported quote version {v}"))),
    };
    c.take(body_len, "TD report")?;
    let auth_len = c.u32("signature data length")?;
    let auth_end = c.pos.saturating_add(auth_len);
    if let Some(tail) = quote.get(auth_end..)
        && tail.iter().any(|&b| b != 0)
    {
        return Err(layout(format!(
            "non-zero bytes after the quote structure (offset {auth_end})"
        )));
    }
    c.take(128, "quote signature and attestation key")?;
    if c.u16("certification data type")? != CERT_TYPE_QE_REPORT {
        return Err(layout(
            "certification data is not a QE report (type 6)".into(),
        ));
    }
    let outer_len = c.u32("certification data size")?;
    let outer_end = c.pos.saturating_add(outer_len);
    c.take(384 + 64, "QE report and signature")?;
    let qe_auth_len = usize::from(c.u16("QE auth data size")?);
    c.take(qe_auth_len, "QE auth data")?;
    let inner_type = c.u16("PCK certification data type")?;
    let inner_len = c.u32("PCK certification data size")?;
    let inner = c.take(inner_len, "PCK certification data")?;
    if c.pos != outer_end || c.pos != auth_end {
        return Err(layout(format!(
            "nested lengths disagree (data ends at {}, certification data at {outer_end}, signature data at {auth_end})",
            c.pos
        )));
    }
    if inner_type == CERT_TYPE_PCK_CHAIN {
        let in_quote = clean_pem_chain(inner)?;
        let root = pem::parse(INTEL_SGX_ROOT_CA_PEM)
            .map_err(|e| layout(format!("pinned Intel root: {e}")))?;
        if in_quote.last().map(Vec::as_slice) != Some(root.contents()) {
            return Err(layout(
                "the quote's PCK chain does not end with Intel's SGX root CA".into(),
            ));
        }
        if let Some(col) = &collateral.pck_certificate_chain {
            let in_collateral = pem::parse_many(col)
                .map_err(|e| layout(format!("collateral PCK chain: {e}")))?
                .into_iter()
                .map(pem::Pem::into_contents)
                .collect::<Vec<_>>();
            if in_collateral != in_quote {
                return Err(layout(
                    "the quote's PCK chain differs from the collateral's".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The DER certificates of a PEM chain that contains nothing else: BEGIN/END CERTIFICATE lines,
/// base64 lines, empty lines, and NUL padding at the very end.
fn clean_pem_chain(pem_bytes: &[u8]) -> Result<Vec<Vec<u8>>, AttestationError> {
    let end = pem_bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let text = core::str::from_utf8(&pem_bytes[..end])
        .map_err(|_| layout("PCK chain is not text".into()))?;
    let clean = text.split('\n').all(|line| {
        line.is_empty()
            || line == "-----BEGIN CERTIFICATE-----"
            || line == "-----END CERTIFICATE-----"
            || line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    });
    if !clean {
        return Err(layout("PCK chain has bytes outside its PEM blocks".into()));
    }
    let blocks = pem::parse_many(text).map_err(|e| layout(format!("PCK chain: {e}")))?;
    if blocks.is_empty() || blocks.iter().any(|b| b.tag() != "CERTIFICATE") {
        return Err(layout("PCK chain has no certificates".into()));
    }
    Ok(blocks.into_iter().map(pem::Pem::into_contents).collect())
}
