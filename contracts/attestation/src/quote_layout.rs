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
        check_pck_chain(inner, collateral.pck_certificate_chain.as_deref())?;
    }
    Ok(())
}

/// The quote's PCK chain: clean PEM ending with the pinned root, and the same certificates as
/// the collateral's chain when it has one.
///
/// Nothing is base64-decoded on the common path (decoding ~8 KB of PEM cost 2.5 Tgas on
/// NEAR): the root is compared as base64 text, which is equivalent to comparing DER because
/// the decoder dcap-qvl uses accepts only canonical base64, so each DER has exactly one
/// text; and a collateral chain that is the quote's text (dcap-qvl's collateral fetcher
/// copies it, NUL padding included) holds the same certificates. dcap-qvl then decodes that
/// chain once and verifies it to the root; any base64 it cannot decode fails there. Only a
/// collateral chain with a different text is decoded here and compared certificate by
/// certificate.
fn check_pck_chain(pem_bytes: &[u8], collateral: Option<&str>) -> Result<(), AttestationError> {
    let text = trim_nul_padding(pem_bytes);
    let text = core::str::from_utf8(text).map_err(|_| layout("PCK chain is not text".into()))?;
    let blocks = clean_pem_blocks(text)?;
    let root = clean_pem_blocks(INTEL_SGX_ROOT_CA_PEM)?;
    let ends_with_root = match (blocks.last(), root.as_slice()) {
        (Some(last), [root]) => same_base64(last, root),
        _ => false,
    };
    if !ends_with_root {
        return Err(layout(
            "the quote's PCK chain does not end with Intel's SGX root CA".into(),
        ));
    }
    let Some(col) = collateral else {
        return Ok(());
    };
    if trim_nul_padding(col.as_bytes()) == text.as_bytes() {
        return Ok(());
    }
    let decode = |pem: &str, whose: &str| {
        pem::parse_many(pem)
            .map(|blocks| blocks.into_iter().map(pem::Pem::into_contents).collect())
            .map_err(|e| layout(format!("{whose} PCK chain: {e}")))
    };
    let in_quote: Vec<Vec<u8>> = decode(text, "the quote's")?;
    let in_collateral: Vec<Vec<u8>> = decode(col, "collateral")?;
    if in_collateral != in_quote {
        return Err(layout(
            "the quote's PCK chain differs from the collateral's".into(),
        ));
    }
    Ok(())
}

fn trim_nul_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

const BEGIN_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";
const END_CERTIFICATE: &str = "-----END CERTIFICATE-----";

/// The base64 bodies (newlines included) of a PEM chain that is nothing but certificate
/// blocks: BEGIN/END CERTIFICATE lines around base64 lines, empty lines between blocks.
fn clean_pem_blocks(text: &str) -> Result<Vec<&str>, AttestationError> {
    let dirty = |why: &str| layout(format!("PCK chain is not clean PEM: {why}"));
    let mut blocks = Vec::new();
    // Byte offset where the current block's body starts, inside a block.
    let mut body_start = None;
    let mut offset = 0;
    for line in text.split('\n') {
        let line_start = offset;
        offset += line.len() + 1;
        match (body_start, line) {
            (None, "") => {}
            (None, BEGIN_CERTIFICATE) => body_start = Some(offset),
            (None, _) => return Err(dirty("text outside certificate blocks")),
            (Some(start), END_CERTIFICATE) => {
                let body = text.get(start..line_start).unwrap_or_default();
                if body.is_empty() {
                    return Err(dirty("empty certificate block"));
                }
                blocks.push(body);
                body_start = None;
            }
            (Some(_), _) if !line.is_empty() && line.bytes().all(is_base64_byte) => {}
            (Some(_), _) => return Err(dirty("a line inside a certificate block is not base64")),
        }
    }
    if body_start.is_some() {
        return Err(dirty("unterminated certificate block"));
    }
    if blocks.is_empty() {
        return Err(layout("PCK chain has no certificates".into()));
    }
    Ok(blocks)
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// Whether two block bodies carry the same base64 text, line breaks aside.
fn same_base64(a: &str, b: &str) -> bool {
    fn chars(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().filter(|&c| c != b'\n')
    }
    chars(a).eq(chars(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dstack node's quote and its collateral's PCK chain (the quote's text plus a NUL).
    fn dstack_chains() -> (Vec<u8>, String) {
        let path = format!(
            "{}/intel-tdx-dstack-node/public_data.json",
            crate::TESTDATA_DIR
        );
        let json = std::fs::read(path).expect("dstack vector");
        let bundle = crate::bundle_from_dstack_public_data(&json).expect("bundle");
        let tdx = bundle.tdx.expect("tdx");
        let start = tdx
            .quote
            .windows(BEGIN_CERTIFICATE.len())
            .position(|w| w == BEGIN_CERTIFICATE.as_bytes())
            .expect("PEM in the quote");
        let collateral = tdx
            .collateral
            .pck_certificate_chain
            .expect("collateral chain");
        (tdx.quote[start..].to_vec(), collateral)
    }

    fn pem_text(chain: &[u8]) -> String {
        String::from_utf8(trim_nul_padding(chain).to_vec()).expect("text")
    }

    fn rewrap(blocks: &[pem::Pem], line_ending: pem::LineEnding, width: usize) -> String {
        let config = pem::EncodeConfig::new()
            .set_line_ending(line_ending)
            .set_line_wrap(width);
        pem::encode_many_config(blocks, config)
    }

    fn err(chain: &[u8], collateral: Option<&str>) -> String {
        check_pck_chain(chain, collateral)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_vectors_chain_passes_with_and_without_the_collateral_copy() {
        let (quote_chain, collateral) = dstack_chains();
        assert_eq!(
            trim_nul_padding(collateral.as_bytes()),
            trim_nul_padding(&quote_chain)
        );
        check_pck_chain(&quote_chain, Some(&collateral)).expect("same text");
        check_pck_chain(&quote_chain, None).expect("no collateral chain");
    }

    #[test]
    fn a_collateral_chain_with_other_text_is_compared_as_der() {
        let (quote_chain, _) = dstack_chains();
        let blocks = pem::parse_many(pem_text(&quote_chain)).expect("pem");
        assert_eq!(blocks.len(), 3);
        // Other line endings and wrapping, same certificates: accepted.
        let rewrapped = rewrap(&blocks, pem::LineEnding::CRLF, 76);
        check_pck_chain(&quote_chain, Some(&rewrapped)).expect("same certificates");
        // One changed certificate, a missing one, or an extra one: refused.
        let mut changed = blocks.clone();
        let mut der = changed[0].contents().to_vec();
        der[100] ^= 1;
        changed[0] = pem::Pem::new("CERTIFICATE", der);
        let variants = [
            rewrap(&changed, pem::LineEnding::LF, 64),
            rewrap(&blocks[1..], pem::LineEnding::LF, 64),
            rewrap(
                &[blocks.clone(), vec![blocks[2].clone()]].concat(),
                pem::LineEnding::LF,
                64,
            ),
        ];
        for collateral in &variants {
            let msg = err(&quote_chain, Some(collateral));
            assert!(msg.contains("differs from the collateral"), "{msg}");
        }
        let msg = err(&quote_chain, Some("not PEM"));
        assert!(msg.contains("differs from the collateral"), "{msg}");
    }

    #[test]
    fn the_chain_must_end_with_the_pinned_root() {
        let (quote_chain, _) = dstack_chains();
        let blocks = pem::parse_many(pem_text(&quote_chain)).expect("pem");
        let without_root = rewrap(&blocks[..2], pem::LineEnding::LF, 64);
        let msg = err(without_root.as_bytes(), None);
        assert!(
            msg.contains("does not end with Intel's SGX root CA"),
            "{msg}"
        );
        // The root compared as base64 ignores only the line wrapping.
        let rewrapped = rewrap(&blocks, pem::LineEnding::LF, 76);
        check_pck_chain(rewrapped.as_bytes(), None).expect("root wrapped at 76");
        let mut flipped = pem_text(&quote_chain).into_bytes();
        let last_begin = pem_text(&quote_chain)
            .rfind(BEGIN_CERTIFICATE)
            .expect("root");
        let pos = last_begin + BEGIN_CERTIFICATE.len() + 30;
        flipped[pos] = if flipped[pos] == b'A' { b'B' } else { b'A' };
        let msg = err(&flipped, None);
        assert!(msg.contains("does not end with"), "{msg}");
    }

    #[test]
    fn anything_but_certificate_blocks_is_refused() {
        let (quote_chain, _) = dstack_chains();
        let text = pem_text(&quote_chain);
        let second = text[1..].find(BEGIN_CERTIFICATE).expect("second block") + 1;
        let first_line_end = text.find('\n').expect("line");
        let cases = [
            // Base64 between blocks is in no certificate.
            format!("{}QUJD\n{}", &text[..second], &text[second..]),
            format!("junk\n{text}"),
            format!("{text}QUJD\n"),
            // An unterminated block at the end.
            format!("{text}{BEGIN_CERTIFICATE}\nQUJD\n"),
            // An empty line or a space inside a block.
            format!(
                "{}\n{}",
                &text[..=first_line_end],
                &text[first_line_end + 1..]
            ),
            format!(
                "{} {}",
                &text[..=first_line_end],
                &text[first_line_end + 1..]
            ),
            text.replace('\n', "\r\n"),
            text.replacen(BEGIN_CERTIFICATE, "-----BEGIN PUBLIC KEY-----", 1),
            format!("{BEGIN_CERTIFICATE}\n{END_CERTIFICATE}\n{text}"),
            String::new(),
        ];
        for (i, chain) in cases.iter().enumerate() {
            let msg = err(chain.as_bytes(), None);
            assert!(msg.contains("PCK chain"), "case {i}: {msg}");
        }
        // Non-text bytes, and a NUL that is not trailing padding.
        assert!(err(&[0xff, 0xfe], None).contains("not text"));
        let mut nul_inside = quote_chain.clone();
        nul_inside[40] = 0;
        assert!(check_pck_chain(&nul_inside, None).is_err());
    }
}
