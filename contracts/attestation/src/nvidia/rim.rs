//! NVIDIA reference integrity manifests (RIMs), off chain: a signed SWID tag (ISO/IEC 19770-2)
//! listing a VBIOS's or a driver's golden measurements, turned into a [`GoldenSet`] only after
//! its signature verifies.
//!
//! What is checked (as nvtrust's `verifier/rim` does, in Rust):
//! * the enveloped XML signature: the document without its `ds:Signature`, canonicalized with
//!   (inclusive) Canonical XML 1.1 as the RIM's `Reference` says, hashes (SHA-384) to the
//!   `DigestValue`; the canonical `SignedInfo` is signed (ECDSA P-384 / SHA-384, `r || s`) by the
//!   first certificate of `KeyInfo`;
//! * that certificate chains up to NVIDIA's pinned RIM root ([`NVIDIA_RIM_ROOT_PEM`]) with the
//!   same shape, CA, validity and signature checks as device chains
//!   ([`super::verify_chain_to_root`]).
//!
//! Not checked here: revocation, which needs NVIDIA's online OCSP responder. [`verify_rim_chain`]
//! returns the verified chain so that an online caller (`ecloud attestation gpu-reference`)
//! can ask the responder about every certificate below the root. The caller passes RIMs it
//! fetched from NVIDIA's RIM service or nvtrust. Only the algorithms the RIMs use are
//! accepted (C14N 1.1 without comments, enveloped signature, ECDSA-SHA384, SHA-384); anything
//! else is refused rather than guessed.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use sha2::{Digest as _, Sha384};

use super::chain::{NVIDIA_RIM_ROOT_PEM, verify_chain_to_root};
use super::golden::{GoldenMeasurement, GoldenSet, ReferenceKind};
use crate::GpuError;

const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";

fn err(msg: impl Into<String>) -> GpuError {
    GpuError::Rim(msg.into())
}

/// Verifies a RIM's signature and chain at `now` (unix seconds) up to NVIDIA's RIM root and
/// returns its golden measurements. `kind` says which RIM the caller fetched (NVIDIA serves
/// VBIOS and driver RIMs under separate ids; the documents themselves do not say).
pub fn verify_rim(xml: &str, kind: ReferenceKind, now: u64) -> Result<GoldenSet, GpuError> {
    verify_rim_with_root(xml, kind, NVIDIA_RIM_ROOT_PEM, now)
}

/// [`verify_rim`] with another root (tests).
pub fn verify_rim_with_root(
    xml: &str,
    kind: ReferenceKind,
    root_pem: &str,
    now: u64,
) -> Result<GoldenSet, GpuError> {
    verify_rim_chain(xml, kind, root_pem, now).map(|rim| rim.set)
}

/// A RIM whose signature and chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedRim {
    pub set: GoldenSet,
    /// The verified certificate chain, DER, signing certificate first, each certificate
    /// followed by its issuer and ending with the trusted root (whether or not the RIM's
    /// `KeyInfo` carried it): what a revocation check walks.
    pub chain: Vec<Vec<u8>>,
}

/// [`verify_rim_with_root`], also returning the chain it verified (for a revocation check).
pub fn verify_rim_chain(
    xml: &str,
    kind: ReferenceKind,
    root_pem: &str,
    now: u64,
) -> Result<VerifiedRim, GpuError> {
    let doc = parse(xml)?;
    let sig = doc
        .signature
        .as_ref()
        .ok_or_else(|| err("the RIM is not signed (no ds:Signature)"))?;
    for (what, found, expected) in [
        ("CanonicalizationMethod", &sig.c14n, C14N11),
        ("SignatureMethod", &sig.method, ECDSA_SHA384),
        ("DigestMethod", &sig.digest_method, SHA384),
    ] {
        if found != expected {
            return Err(err(format!("unsupported {what} {found}")));
        }
    }
    if sig.transforms != [ENVELOPED, C14N11] || !sig.reference_uri.is_empty() {
        return Err(err(format!(
            "unsupported reference (URI '{}', transforms {:?}): expected the whole document, enveloped, C14N 1.1",
            sig.reference_uri, sig.transforms
        )));
    }
    let digest = Sha384::digest(canonicalize(xml, Subset::DocumentWithoutSignature)?.as_bytes());
    if B64.encode(digest) != sig.digest_value {
        return Err(err("the document does not match its signed digest"));
    }
    let pem_chain: String = sig
        .certificates
        .iter()
        .map(|c| format!("-----BEGIN CERTIFICATE-----\n{c}\n-----END CERTIFICATE-----\n"))
        .collect();
    let chain = verify_chain_to_root(&pem_chain, root_pem, now)?;
    let raw = B64
        .decode(&sig.signature_value)
        .map_err(|_| err("SignatureValue is not base64"))?;
    let signature = p384::ecdsa::Signature::from_slice(&raw)
        .map_err(|_| err("SignatureValue is not an ECDSA P-384 r || s"))?;
    let signed_info = canonicalize(xml, Subset::SignedInfo)?;
    use p384::ecdsa::signature::Verifier as _;
    chain
        .leaf_key
        .verify(signed_info.as_bytes(), &signature)
        .map_err(|_| err("the signature does not verify with the RIM's certificate"))?;
    // `verify_chain_to_root` accepted this order (leaf first, the root optional at the end).
    let root = pem::parse(root_pem)
        .map_err(|e| err(format!("root certificate: {e}")))?
        .into_contents();
    let mut certs = sig
        .certificates
        .iter()
        .map(|c| {
            B64.decode(c.split_whitespace().collect::<String>())
                .map_err(|_| err("X509Certificate is not base64"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    certs.retain(|c| *c != root);
    certs.push(root);
    Ok(VerifiedRim {
        set: doc.golden_set(kind)?,
        chain: certs,
    })
}

/// What the parse keeps of a RIM.
#[derive(Default)]
struct RimDoc {
    product: String,
    version: String,
    tag_id: String,
    measurements: Vec<GoldenMeasurement>,
    signature: Option<SignatureInfo>,
}

#[derive(Default)]
struct SignatureInfo {
    c14n: String,
    method: String,
    reference_uri: String,
    transforms: Vec<String>,
    digest_method: String,
    digest_value: String,
    signature_value: String,
    certificates: Vec<String>,
}

impl RimDoc {
    fn golden_set(self, kind: ReferenceKind) -> Result<GoldenSet, GpuError> {
        if self.product.is_empty() || self.version.is_empty() || self.measurements.is_empty() {
            return Err(err(
                "no product, colloquialVersion or measurements in the RIM",
            ));
        }
        Ok(GoldenSet {
            kind,
            product: self.product,
            version: self.version.to_ascii_lowercase(),
            tag_id: self.tag_id,
            measurements: self.measurements,
        })
    }
}

fn local(q: &str) -> &str {
    q.rsplit_once(':').map_or(q, |(_, l)| l)
}

fn attrs(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, GpuError> {
    e.attributes()
        .map(|a| {
            let a = a.map_err(|e| err(format!("attribute: {e}")))?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a
                .unescape_value()
                .map_err(|e| err(format!("attribute {key}: {e}")))?
                .into_owned();
            Ok((key, value))
        })
        .collect()
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| local(k) == name)
        .map(|(_, v)| v.as_str())
}

/// Reads the identity, the measurements and the signature fields (by local names: the RIMs use
/// varying prefixes for the same namespaces).
fn parse(xml: &str) -> Result<RimDoc, GpuError> {
    let mut reader = Reader::from_str(xml);
    let mut doc = RimDoc::default();
    let mut text_of: Option<&'static str> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| err(format!("XML at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let a = attrs(e)?;
                let sig = doc.signature.get_or_insert_with(SignatureInfo::default);
                match local(&name) {
                    "SoftwareIdentity" => {
                        doc.tag_id = attr(&a, "tagId").unwrap_or_default().to_owned();
                        doc.signature = None;
                    }
                    "Meta" => {
                        doc.product = attr(&a, "product").unwrap_or_default().to_owned();
                        doc.version = attr(&a, "colloquialVersion").unwrap_or_default().to_owned();
                    }
                    "Resource" if attr(&a, "type") == Some("Measurement") => {
                        doc.measurements.push(measurement(&a)?);
                    }
                    "CanonicalizationMethod" => {
                        sig.c14n = attr(&a, "Algorithm").unwrap_or_default().into();
                    }
                    "SignatureMethod" => {
                        sig.method = attr(&a, "Algorithm").unwrap_or_default().into();
                    }
                    "Reference" => sig.reference_uri = attr(&a, "URI").unwrap_or("-").into(),
                    "Transform" => sig
                        .transforms
                        .push(attr(&a, "Algorithm").unwrap_or_default().into()),
                    "DigestMethod" => {
                        sig.digest_method = attr(&a, "Algorithm").unwrap_or_default().into();
                    }
                    "DigestValue" => text_of = Some("digest"),
                    "SignatureValue" => text_of = Some("signature"),
                    "X509Certificate" => text_of = Some("certificate"),
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let (Some(which), Some(sig)) = (text_of, doc.signature.as_mut()) {
                    let text: String = t
                        .unescape()
                        .map_err(|e| err(format!("text: {e}")))?
                        .split_whitespace()
                        .collect();
                    match which {
                        "digest" => sig.digest_value.push_str(&text),
                        "signature" => sig.signature_value.push_str(&text),
                        _ => sig.certificates.push(text),
                    }
                }
            }
            Event::End(_) => text_of = None,
            Event::Eof => break,
            _ => {}
        }
    }
    if doc
        .signature
        .as_ref()
        .is_some_and(|s| s.digest_value.is_empty())
    {
        doc.signature = None;
    }
    Ok(doc)
}

/// One `Resource type="Measurement"`: index, name, active flag, `Hash0`..`HashN` alternatives.
fn measurement(a: &[(String, String)]) -> Result<GoldenMeasurement, GpuError> {
    let index = attr(a, "index")
        .and_then(|i| i.parse::<u16>().ok())
        .ok_or_else(|| err("a measurement without a numeric index"))?;
    let count = attr(a, "alternatives")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    let alternatives: Vec<String> = (0..count)
        .map(|i| {
            attr(a, &format!("Hash{i}"))
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| err(format!("measurement {index} lacks Hash{i}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(GoldenMeasurement {
        index,
        name: attr(a, "name").unwrap_or_default().to_owned(),
        active: attr(a, "active").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        alternatives,
    })
}

/// The node-sets the RIM's signature covers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subset {
    /// The whole document minus the `ds:Signature` element (the enveloped-signature transform).
    DocumentWithoutSignature,
    /// The `ds:SignedInfo` element, with the namespaces in scope there.
    SignedInfo,
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
        .replace('\t', "&#x9;")
        .replace('\n', "&#xA;")
        .replace('\r', "&#xD;")
}

fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "&#xD;")
}

/// Inclusive Canonical XML 1.1 without comments (W3C) of `subset`, for what RIMs contain:
/// elements, attributes, namespace declarations and text (no DTD, processing instructions are
/// dropped as outside the root, `xml:*` attributes are not inherited by a subset apex).
fn canonicalize(xml: &str, subset: Subset) -> Result<String, GpuError> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    // In-scope namespaces per open element (prefix "" = default), and what the nearest output
    // ancestor rendered.
    let mut scopes: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    let mut rendered: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    let mut open: Vec<(String, bool)> = Vec::new();
    // Depth of the apex (SignedInfo) or of the skipped Signature.
    let mut apex: Option<usize> = None;
    let mut skipping: Option<usize> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| err(format!("XML at byte {}: {e}", reader.buffer_position())))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            let mut scope = scopes.last().cloned().unwrap_or_default();
            let mut plain = Vec::new();
            for (k, v) in attrs(&e)? {
                if k == "xmlns" {
                    scope.insert(String::new(), v);
                } else if let Some(p) = k.strip_prefix("xmlns:") {
                    scope.insert(p.to_owned(), v);
                } else {
                    plain.push((k, v));
                }
            }
            let (prefix, name) = qname.split_once(':').unwrap_or(("", &qname));
            let in_ds = scope.get(prefix).map(String::as_str) == Some(DS);
            let depth = open.len() + 1;
            if subset == Subset::DocumentWithoutSignature
                && skipping.is_none()
                && in_ds
                && name == "Signature"
            {
                skipping = Some(depth);
            }
            if subset == Subset::SignedInfo && apex.is_none() && in_ds && name == "SignedInfo" {
                apex = Some(depth);
            }
            let output = skipping.is_none()
                && (subset == Subset::DocumentWithoutSignature || apex.is_some());
            let parent = rendered.last().cloned().unwrap_or_default();
            if output {
                let mut decls: Vec<(&String, &String)> = scope
                    .iter()
                    .filter(|(p, u)| parent.get(*p) != Some(*u) && !(p.is_empty() && u.is_empty()))
                    .collect();
                decls.sort();
                let mut sorted: Vec<(String, String, String)> = plain
                    .iter()
                    .map(|(k, v)| {
                        let (p, l) = k.split_once(':').unwrap_or(("", k));
                        let uri = if p.is_empty() {
                            String::new()
                        } else {
                            scope.get(p).cloned().unwrap_or_default()
                        };
                        (uri, l.to_owned(), format!(" {k}=\"{}\"", escape_attr(v)))
                    })
                    .collect();
                sorted.sort();
                out.push('<');
                out.push_str(&qname);
                for (p, u) in &decls {
                    if p.is_empty() {
                        out.push_str(&format!(" xmlns=\"{}\"", escape_attr(u)));
                    } else {
                        out.push_str(&format!(" xmlns:{p}=\"{}\"", escape_attr(u)));
                    }
                }
                for (_, _, a) in &sorted {
                    out.push_str(a);
                }
                out.push('>');
                let mut now_rendered = parent;
                for (p, u) in decls {
                    now_rendered.insert(p.clone(), u.clone());
                }
                rendered.push(now_rendered);
            } else {
                rendered.push(parent);
            }
            scopes.push(scope);
            open.push((qname, output));
            if !empty {
                continue;
            }
        }
        match event {
            Event::Start(_) => {}
            Event::Empty(_) | Event::End(_) => {
                let depth = open.len();
                let (qname, output) = open.pop().ok_or_else(|| err("unbalanced XML"))?;
                if output {
                    out.push_str(&format!("</{qname}>"));
                }
                scopes.pop();
                rendered.pop();
                if skipping == Some(depth) {
                    skipping = None;
                }
                if apex == Some(depth) {
                    return Ok(out);
                }
            }
            Event::Text(t) => {
                let inside = !open.is_empty()
                    && skipping.is_none()
                    && (subset == Subset::DocumentWithoutSignature || apex.is_some());
                if inside {
                    out.push_str(&escape_text(
                        &t.unescape().map_err(|e| err(format!("text: {e}")))?,
                    ));
                }
            }
            Event::CData(t)
                if !open.is_empty()
                    && skipping.is_none()
                    && (subset == Subset::DocumentWithoutSignature || apex.is_some()) =>
            {
                out.push_str(&escape_text(&String::from_utf8_lossy(&t)));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match subset {
        Subset::DocumentWithoutSignature => Ok(out),
        Subset::SignedInfo => Err(err("no ds:SignedInfo")),
    }
}
