//! Intel TDX DCAP quote verification (dcap-qvl, offline, pluggable crypto) plus our policy:
//! TDX only, no debug TD, TCB status accepted by [`TcbPolicy`].

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{Quote, Report, TDReport10};
use dcap_qvl::verify::QuoteVerifier;

use crate::{AttestationError, Crypto, TcbPolicy};

/// TEE type of TDX quotes in the quote header.
pub const TEE_TYPE_TDX: u32 = 0x81;

/// A verified TD report and its TCB verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuoteVerdict {
    /// dcap-qvl's TCB status name, e.g. "UpToDate".
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
    pub mrtd: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
}

/// Parses the quote's TD report without checking signatures (cheap structural checks that
/// give typed errors before the expensive DCAP verification): TDX, not debug.
pub fn parse_td_report(quote: &[u8]) -> Result<TDReport10, AttestationError> {
    let tee_type = quote
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| AttestationError::Malformed {
            what: "TDX quote",
            reason: format!("{} bytes is shorter than a quote header", quote.len()),
        })?;
    if tee_type != TEE_TYPE_TDX {
        return Err(AttestationError::NotTdx { tee_type });
    }
    let parsed = Quote::parse(quote).map_err(|e| AttestationError::Malformed {
        what: "TDX quote",
        reason: format!("{e:#}"),
    })?;
    let td = match &parsed.report {
        Report::SgxEnclave(_) => return Err(AttestationError::NotTdx { tee_type }),
        r => r
            .as_td10()
            .cloned()
            .ok_or(AttestationError::NotTdx { tee_type })?,
    };
    // TDATTRIBUTES.TUD bit 0 is DEBUG.
    if td.td_attributes[0] & 0x01 != 0 {
        return Err(AttestationError::DebugTd);
    }
    Ok(td)
}

/// Verifies a TDX quote against its collateral at `now` (unix seconds) with the crypto of `C`,
/// then applies the TCB policy.
pub fn verify_tdx_quote<C: Crypto>(
    quote: &[u8],
    collateral: &QuoteCollateralV3,
    now: u64,
    tcb: &TcbPolicy,
    _crypto: &C,
) -> Result<TdxQuoteVerdict, AttestationError> {
    parse_td_report(quote)?;
    crate::quote_layout::check_quote_layout(quote, collateral)?;
    let verified = QuoteVerifier::new_prod()
        .with_config::<C::Dcap>()
        .verify(quote, collateral, now)
        .map_err(|e| AttestationError::Quote(format!("{e:#}")))?;
    let td = verified.report.as_td10().ok_or(AttestationError::NotTdx {
        tee_type: TEE_TYPE_TDX,
    })?;
    if td.td_attributes[0] & 0x01 != 0 {
        return Err(AttestationError::DebugTd);
    }
    tcb.check(&verified.status, now)?;
    Ok(TdxQuoteVerdict {
        tcb_status: verified.status.clone(),
        advisory_ids: verified.advisory_ids.clone(),
        mrtd: td.mr_td,
        rtmr: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
        report_data: td.report_data,
    })
}
