//! Intel TDX on a dstack CVM, through dstack's guest agent (`/var/run/dstack.sock`): the
//! agent makes the quotes, keeps the event log of RTMR3 and extends RTMR3 with an app's
//! runtime events (`EmitEvent`), so measuring a model's weights is one call and every later
//! quote's log carries the event for the verifier to replay.
//!
//! The agent's RPC is JSON over HTTP/1.1 on the Unix socket, bytes as hex (dstack's prpc,
//! `guest-agent/rpc/proto/agent_rpc.proto`, service `DstackGuest`):
//!
//! * `POST /GetQuote {"report_data": hex}` (the 64 bytes as given, not hashed) ->
//!   `{"quote": hex, "event_log": "<JSON array of entries>", ...}`;
//! * `POST /EmitEvent {"event": name, "payload": hex}` -> `{}`;
//! * `POST /Info {}` -> `{"tcb_info": "<JSON with app_compose>", ...}`.
//!
//! The quote's `report_data` is checked against ours before anything is returned; answers are
//! read up to [`MAX_RESPONSE_BYTES`] and every call has a deadline, so a wedged or hostile
//! agent costs neither memory nor a hung worker.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use attestation::{AttestationBundle, AttestationKind, EventLogEntry, QuoteCollateralV3, TdxEvidence};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::tdx::{check_binds, read_app_compose, read_json, tdx_bundle};
use super::{AttestError, AttestationProvider};
use crate::keys::PublicKeys;

/// Where dstack mounts its guest agent's socket into app containers.
pub const DEFAULT_DSTACK_SOCKET: &str = "/var/run/dstack.sock";
/// The largest answer read from the agent: a quote is ~5 KB and an event log tens of KB.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Deadline of each read and write on the socket (a quote takes about a second).
const TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an unexpected answer an error quotes.
const SNIPPET_CHARS: usize = 200;

/// A client of the guest agent's RPC.
#[derive(Debug, Clone)]
pub struct GuestAgent {
    socket: PathBuf,
    timeout: Duration,
}

/// A quote and the event log the agent kept when it made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentQuote {
    pub quote: Vec<u8>,
    pub event_log: Vec<EventLogEntry>,
}

#[derive(Deserialize)]
struct QuoteAnswer {
    quote: String,
    event_log: String,
}

#[derive(Deserialize)]
struct InfoAnswer {
    /// JSON text (dstack 0.5), or the object itself.
    #[serde(default)]
    tcb_info: Value,
}

#[derive(Deserialize)]
struct TcbInfo {
    #[serde(default)]
    app_compose: Option<String>,
}

impl GuestAgent {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: TIMEOUT,
        }
    }

    fn error(&self, method: &'static str, reason: impl Into<String>) -> AttestError {
        AttestError::GuestAgent {
            socket: self.socket.clone(),
            method,
            reason: reason.into(),
        }
    }

    /// `POST /{method}` with `body`: the answer's body, if its status is 2xx.
    fn call(&self, method: &'static str, body: &Value) -> Result<Vec<u8>, AttestError> {
        let fail = |reason: String| self.error(method, reason);
        let mut stream =
            UnixStream::connect(&self.socket).map_err(|e| fail(format!("connecting: {e}")))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| fail(e.to_string()))?;
        let body = body.to_string();
        let request = format!(
            "POST /{method} HTTP/1.1\r\nHost: dstack\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| fail(format!("sending: {e}")))?;
        let mut raw = Vec::new();
        let limit = u64::try_from(MAX_RESPONSE_BYTES).unwrap_or(u64::MAX) + 1;
        stream
            .take(limit)
            .read_to_end(&mut raw)
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        if raw.len() > MAX_RESPONSE_BYTES {
            return Err(fail(format!(
                "the answer is over {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        let (status, body) = parse_response(&raw).map_err(fail)?;
        if !(200..300).contains(&status) {
            return Err(fail(format!("HTTP {status}: {}", snippet(&body))));
        }
        Ok(body)
    }

    fn call_json<T: DeserializeOwned>(
        &self,
        method: &'static str,
        body: &Value,
    ) -> Result<T, AttestError> {
        let answer = self.call(method, body)?;
        serde_json::from_slice(&answer).map_err(|e| {
            self.error(
                method,
                format!("unexpected answer ({e}): {}", snippet(&answer)),
            )
        })
    }

    /// `GetQuote`: a quote whose `report_data` is exactly `report_data`, and the event log.
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<AgentQuote, AttestError> {
        const METHOD: &str = "GetQuote";
        let answer: QuoteAnswer =
            self.call_json(METHOD, &json!({ "report_data": hex::encode(report_data) }))?;
        let quote = hex::decode(answer.quote.trim())
            .map_err(|e| self.error(METHOD, format!("the quote is not hex: {e}")))?;
        check_binds(&quote, report_data)?;
        let event_log = serde_json::from_str(&answer.event_log)
            .map_err(|e| self.error(METHOD, format!("the event log: {e}")))?;
        Ok(AgentQuote { quote, event_log })
    }

    /// `EmitEvent`: the agent extends RTMR3 with the runtime event `event` and appends it to
    /// its event log.
    pub fn emit_event(&self, event: &str, payload: &[u8]) -> Result<(), AttestError> {
        self.call(
            "EmitEvent",
            &json!({ "event": event, "payload": hex::encode(payload) }),
        )
        .map(drop)
    }

    /// `Info`: the app compose the CVM booted (what its `compose-hash` event hashes).
    pub fn app_compose(&self) -> Result<Option<String>, AttestError> {
        const METHOD: &str = "Info";
        let info: InfoAnswer = self.call_json(METHOD, &json!({}))?;
        let tcb_info = match info.tcb_info {
            Value::Null => return Ok(None),
            Value::String(text) if text.trim().is_empty() => return Ok(None),
            Value::String(text) => serde_json::from_str::<TcbInfo>(&text),
            object => serde_json::from_value::<TcbInfo>(object),
        }
        .map_err(|e| self.error(METHOD, format!("tcb_info: {e}")))?;
        Ok(tcb_info.app_compose)
    }
}

/// An HTTP/1.1 answer's status and body (`Content-Length`, chunked, or up to the close).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its head".into()),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[head_len..];
    if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        return dechunk(rest).map(|body| (status, body));
    }
    match header("content-length") {
        Some(len) => {
            let len: usize = len
                .parse()
                .map_err(|_| format!("Content-Length '{len}' is not a number"))?;
            let body = rest.get(..len).ok_or_else(|| {
                format!("the answer ended after {} of {len} bytes", rest.len())
            })?;
            Ok((status, body.to_vec()))
        }
        None => Ok((status, rest.to_vec())),
    }
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Err("the answer ended inside a chunk".into()),
            Err(_) => return Err("a chunk size is not hex".into()),
        };
        if size == 0 {
            return Ok(body);
        }
        let size = usize::try_from(size).map_err(|_| "a chunk is too large".to_owned())?;
        let chunk = rest
            .get(start..start.saturating_add(size))
            .ok_or("the answer ended inside a chunk")?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(start + size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or("a chunk does not end with CRLF")?;
    }
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(SNIPPET_CHARS)
        .collect()
}

/// TDX on a dstack CVM: quotes and the event log from the guest agent, the DCAP collateral
/// from a file, the app compose from a file or else from the agent; [`measure`] emits the
/// event through the agent.
///
/// [`measure`]: AttestationProvider::measure
pub struct DstackProvider {
    agent: GuestAgent,
    collateral: PathBuf,
    app_compose: Option<PathBuf>,
}

impl DstackProvider {
    pub fn new(agent: GuestAgent, collateral: PathBuf, app_compose: Option<PathBuf>) -> Self {
        Self {
            agent,
            collateral,
            app_compose,
        }
    }
}

impl AttestationProvider for DstackProvider {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Tdx
    }

    fn attest(
        &self,
        keys: &PublicKeys,
        _now_unix_secs: u64,
    ) -> Result<AttestationBundle, AttestError> {
        let AgentQuote { quote, event_log } = self.agent.quote(&keys.report_data())?;
        let collateral: QuoteCollateralV3 = read_json("DCAP collateral", &self.collateral)?;
        let app_compose = match read_app_compose(self.app_compose.as_deref())? {
            Some(text) => Some(text),
            None => self.agent.app_compose()?,
        };
        Ok(tdx_bundle(
            keys,
            TdxEvidence {
                quote,
                collateral,
                event_log,
                app_compose,
            },
        ))
    }

    fn measure(&self, event: &str, payload: &[u8]) -> Result<(), AttestError> {
        self.agent
            .emit_event(event, payload)
            .map_err(|e| AttestError::Measure {
                event: event.to_owned(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::EnclaveKeys;
    use std::io::BufRead as _;
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::thread;

    /// The real dstack node of the attestation library's vectors.
    fn reference() -> AttestationBundle {
        let public_data = std::fs::read(
            PathBuf::from(attestation::TESTDATA_DIR).join("intel-tdx-dstack-node/public_data.json"),
        )
        .unwrap();
        attestation::bundle_from_dstack_public_data(&public_data).unwrap()
    }

    fn reference_keys(reference: &AttestationBundle) -> PublicKeys {
        PublicKeys {
            enclave_key: reference.enclave_key.as_slice().try_into().unwrap(),
            near_key: attestation::parse_near_ed25519_key(&reference.near_public_key).unwrap(),
        }
    }

    /// What the imitated agent answers.
    #[derive(Clone)]
    enum Answer {
        /// The agent: a fixed quote, its event log (EmitEvent appends to it), the compose.
        Agent {
            quote: Vec<u8>,
            event_log: Arc<Mutex<Vec<EventLogEntry>>>,
            app_compose: String,
        },
        /// Any request: this raw HTTP answer.
        Raw(Vec<u8>),
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Chunked, in pieces of 7 bytes (as a streaming server may send it).
    fn http_chunked(body: &[u8]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(7) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    /// Serves `connections` requests on `<dir>/dstack.sock` like dstack's guest agent;
    /// records each `(path, JSON body)`.
    fn fake_agent(
        dir: &Path,
        connections: usize,
        answer: Answer,
    ) -> (GuestAgent, Arc<Mutex<Vec<(String, Value)>>>, thread::JoinHandle<()>) {
        let socket = dir.join("dstack.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let handle = thread::spawn(move || {
            for _ in 0..connections {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap().to_owned();
                let mut length = 0usize;
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap();
                seen.lock().unwrap().push((path.clone(), body.clone()));
                let reply = match &answer {
                    Answer::Raw(raw) => raw.clone(),
                    Answer::Agent {
                        quote,
                        event_log,
                        app_compose,
                    } => match path.as_str() {
                        "/GetQuote" => {
                            let log = serde_json::to_string(&*event_log.lock().unwrap()).unwrap();
                            let answer = json!({
                                "quote": hex::encode(quote),
                                "event_log": log,
                                "report_data": body["report_data"],
                                "vm_config": "{}",
                            });
                            http("200 OK", answer.to_string().as_bytes())
                        }
                        "/EmitEvent" => {
                            let payload = hex::decode(body["payload"].as_str().unwrap()).unwrap();
                            let event = body["event"].as_str().unwrap();
                            let entry = attestation::runtime_event(event, &payload);
                            event_log.lock().unwrap().push(entry);
                            http("200 OK", b"{}")
                        }
                        "/Info" => {
                            let tcb = json!({ "app_compose": app_compose, "event_log": [] });
                            let answer = json!({ "app_id": "00", "tcb_info": tcb.to_string() });
                            http_chunked(answer.to_string().as_bytes())
                        }
                        _ => http("404 Not Found", b"no such method"),
                    },
                };
                // The client may stop reading (an answer over its limit).
                let _ = reader.into_inner().write_all(&reply);
            }
        });
        (GuestAgent::new(socket), calls, handle)
    }

    fn collateral_file(dir: &Path, reference: &AttestationBundle) -> PathBuf {
        let path = dir.join("collateral.json");
        let collateral = &reference.tdx.as_ref().unwrap().collateral;
        std::fs::write(&path, serde_json::to_vec(collateral).unwrap()).unwrap();
        path
    }

    fn verify(bundle: &AttestationBundle) -> Result<attestation::Verdict, attestation::AttestationError> {
        attestation::verify_bundle(
            bundle,
            1_786_622_400, // 2026-08-13, inside the vector's collateral window
            &attestation::VerifyPolicy::default(),
            &attestation::RustCrypto,
        )
    }

    fn real_agent(reference: &AttestationBundle) -> Answer {
        let tdx = reference.tdx.clone().unwrap();
        Answer::Agent {
            quote: tdx.quote,
            event_log: Arc::new(Mutex::new(tdx.event_log)),
            app_compose: tdx.app_compose.unwrap(),
        }
    }

    /// The real node's quote and event log, as its agent would answer them: the bundle is the
    /// node's own (compose from `Info`, chunked) and verifies.
    #[test]
    fn the_agents_quote_and_log_make_a_bundle_that_verifies() {
        let reference = reference();
        let tmp = tempfile::tempdir().unwrap();
        let (agent, calls, server) = fake_agent(tmp.path(), 2, real_agent(&reference));
        let provider = DstackProvider::new(agent, collateral_file(tmp.path(), &reference), None);
        let keys = reference_keys(&reference);
        let bundle = provider.attest(&keys, 0).unwrap();
        server.join().unwrap();
        assert_eq!(bundle, reference);
        let verdict = verify(&bundle).unwrap();
        assert_eq!(verdict.tcb_status.as_deref(), Some("UpToDate"));
        let calls = calls.lock().unwrap();
        assert_eq!(calls[0].0, "/GetQuote");
        assert_eq!(calls[0].1, json!({ "report_data": hex::encode(keys.report_data()) }));
        assert_eq!(calls[1], ("/Info".to_owned(), json!({})));
    }

    /// `measure` is the agent's `EmitEvent`; the next bundle's log ends with the event, and the
    /// verifier replays it: against this recorded quote (made before the event) RTMR3 no
    /// longer matches, which is what a quote that did not measure the weights gets.
    #[test]
    fn a_measured_event_is_emitted_and_replayed_from_the_next_log() {
        let reference = reference();
        let tmp = tempfile::tempdir().unwrap();
        let compose = tmp.path().join("compose.json");
        let tdx = reference.tdx.clone().unwrap();
        std::fs::write(&compose, tdx.app_compose.clone().unwrap()).unwrap();
        let (agent, calls, server) = fake_agent(tmp.path(), 2, real_agent(&reference));
        let provider =
            DstackProvider::new(agent, collateral_file(tmp.path(), &reference), Some(compose));
        let weights = [7u8; 32];
        provider
            .measure(attestation::MODEL_WEIGHTS_EVENT, &weights)
            .unwrap();
        let bundle = provider.attest(&reference_keys(&reference), 0).unwrap();
        server.join().unwrap();
        assert_eq!(
            calls.lock().unwrap()[0],
            (
                "/EmitEvent".to_owned(),
                json!({ "event": "ecloud-model-weights", "payload": hex::encode(weights) })
            )
        );
        let log = &bundle.tdx.as_ref().unwrap().event_log;
        assert_eq!(log.len(), tdx.event_log.len() + 1);
        assert_eq!(
            attestation::dstack::model_weights(log).unwrap(),
            vec![weights]
        );
        let err = verify(&bundle).unwrap_err();
        assert!(
            matches!(err, attestation::AttestationError::Rtmr3Mismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_agents_errors_and_bad_answers_are_refused_with_reasons() {
        let reference = reference();
        let keys = EnclaveKeys::generate().unwrap().public();
        let tmp = tempfile::tempdir().unwrap();

        // No agent at all.
        let err = GuestAgent::new(tmp.path().join("absent.sock"))
            .quote(&keys.report_data())
            .unwrap_err();
        assert!(err.to_string().contains("GetQuote") && err.to_string().contains("connecting"), "{err}");

        // A quote binding someone else's report_data (the real node's, not our keys').
        let (agent, _, server) = fake_agent(tmp.path(), 1, real_agent(&reference));
        let err = agent.quote(&keys.report_data()).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, AttestError::ReportDataMismatch), "{err}");

        let refusals: [(Vec<u8>, &str); 4] = [
            (http("500 Internal Server Error", b"tdx guest device not found"), "HTTP 500: tdx guest device not found"),
            (http("200 OK", b"{\"quote\": 5}"), "unexpected answer"),
            (http("200 OK", &vec![b' '; MAX_RESPONSE_BYTES]), "over 1048576 bytes"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 90\r\n\r\n{}".to_vec(), "ended after 2 of 90 bytes"),
        ];
        for (i, (raw, expected)) in refusals.into_iter().enumerate() {
            let dir = tmp.path().join(i.to_string());
            std::fs::create_dir(&dir).unwrap();
            let (agent, _, server) = fake_agent(&dir, 1, Answer::Raw(raw));
            let err = agent.quote(&keys.report_data()).unwrap_err();
            server.join().unwrap();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn answers_parse_by_length_chunks_or_close() {
        assert_eq!(parse_response(&http("201 Created", b"{}")), Ok((201, b"{}".to_vec())));
        let body = br#"{"a":"0123456789abcdef"}"#;
        assert_eq!(parse_response(&http_chunked(body)), Ok((200, body.to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"),
            Ok((200, b"hello".to_vec()))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
