//! dstack event log: RTMR3 replay and the named runtime events (`compose-hash`, `app-id`, ...).
//!
//! dstack extends RTMR3 with one SHA-384 digest per runtime event:
//! `digest = sha384(event_type as u32 LE || ":" || event || ":" || payload)` and
//! `rtmr3 = sha384(rtmr3 || digest)` starting from 48 zero bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::bundle::EventLogEntry;
use crate::hexser::to_hex;
use crate::{AttestationError, Crypto};

/// dstack's event type for runtime events (`DSTACK_RUNTIME_EVENT_TYPE`).
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// The IMR dstack extends at runtime (RTMR3).
pub const RUNTIME_IMR: u32 = 3;
/// Name of the event carrying sha256(app_compose).
pub const COMPOSE_HASH_EVENT: &str = "compose-hash";
/// Name of the event a node emits once it decrypted and checked a model's encrypted weights;
/// its payload is the weights hash (32 bytes: the model manifest's `weights_hash`).
pub const MODEL_WEIGHTS_EVENT: &str = "ecloud-model-weights";

/// A named runtime event whose payload is authenticated by the RTMR3 replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedEvent {
    pub name: String,
    /// Payload, hex.
    pub payload: String,
}

/// What the event log proves once it replays to the quote's RTMR3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogSummary {
    pub compose_hash: Option<[u8; 32]>,
    pub events: Vec<NamedEvent>,
    /// The weights hashes of the `ecloud-model-weights` events, in the order measured.
    pub model_weights: Vec<[u8; 32]>,
}

/// A dstack runtime event as the event log records it: RTMR3, its digest computed.
pub fn runtime_event(event: &str, payload: &[u8]) -> EventLogEntry {
    EventLogEntry {
        imr: RUNTIME_IMR,
        event_type: DSTACK_RUNTIME_EVENT_TYPE,
        digest: runtime_event_digest(DSTACK_RUNTIME_EVENT_TYPE, event, payload).to_vec(),
        event: event.to_owned(),
        event_payload: payload.to_vec(),
    }
}

/// The weights hashes the runtime events of `events` measure (`ecloud-model-weights`), in
/// order; an event whose payload is not a 32-byte hash is refused.
pub fn model_weights(events: &[EventLogEntry]) -> Result<Vec<[u8; 32]>, AttestationError> {
    events
        .iter()
        .filter(|e| {
            e.imr == RUNTIME_IMR
                && e.event_type == DSTACK_RUNTIME_EVENT_TYPE
                && e.event == MODEL_WEIGHTS_EVENT
        })
        .map(|e| {
            e.event_payload.as_slice().try_into().map_err(|_| {
                AttestationError::EventLog(format!(
                    "{MODEL_WEIGHTS_EVENT} payload has {} bytes, expected 32",
                    e.event_payload.len()
                ))
            })
        })
        .collect()
}

/// The named runtime events of `events` as a verdict shows them.
pub fn named_events(events: &[EventLogEntry]) -> Vec<NamedEvent> {
    events
        .iter()
        .filter(|e| e.imr == RUNTIME_IMR && e.event_type == DSTACK_RUNTIME_EVENT_TYPE)
        .map(|e| NamedEvent {
            name: e.event.clone(),
            payload: to_hex(&e.event_payload),
        })
        .collect()
}

/// dstack's digest of a runtime event.
pub fn runtime_event_digest(event_type: u32, event: &str, payload: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(event_type.to_le_bytes());
    h.update(b":");
    h.update(event.as_bytes());
    h.update(b":");
    h.update(payload);
    h.finalize().into()
}

/// Replays the imr=3 entries of `events` into an RTMR3 value.
pub fn replay_rtmr3(events: &[EventLogEntry]) -> Result<[u8; 48], AttestationError> {
    let mut rtmr = [0u8; 48];
    for (i, e) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.imr == RUNTIME_IMR)
    {
        let digest = checked_digest(i, e)?;
        let mut h = Sha384::new();
        h.update(rtmr);
        h.update(digest);
        rtmr = h.finalize().into();
    }
    Ok(rtmr)
}

/// The digest to extend: the recorded one, which for a dstack runtime event must equal the
/// digest recomputed from its name and payload (otherwise the payload is not what was measured).
fn checked_digest(i: usize, e: &EventLogEntry) -> Result<[u8; 48], AttestationError> {
    let recorded: [u8; 48] = e.digest.as_slice().try_into().map_err(|_| {
        AttestationError::EventLog(format!(
            "event {i} ('{}') digest has {} bytes, expected 48",
            e.event,
            e.digest.len()
        ))
    })?;
    if e.event_type == DSTACK_RUNTIME_EVENT_TYPE {
        let computed = runtime_event_digest(e.event_type, &e.event, &e.event_payload);
        if computed != recorded {
            return Err(AttestationError::EventLog(format!(
                "event {i} ('{}') digest {} does not match its payload (computed {})",
                e.event,
                to_hex(&recorded),
                to_hex(&computed)
            )));
        }
    }
    Ok(recorded)
}

/// Replays RTMR3, compares it with the quote's, and extracts the named events and the compose
/// hash (checked against `app_compose` when given).
pub fn verify_event_log<C: Crypto>(
    events: &[EventLogEntry],
    quoted_rtmr3: &[u8; 48],
    app_compose: Option<&str>,
    require_compose_hash: bool,
    crypto: &C,
) -> Result<EventLogSummary, AttestationError> {
    let computed = replay_rtmr3(events)?;
    if &computed != quoted_rtmr3 {
        return Err(AttestationError::Rtmr3Mismatch {
            computed: to_hex(&computed),
            quoted: to_hex(quoted_rtmr3),
        });
    }
    let runtime = events
        .iter()
        .filter(|e| e.imr == RUNTIME_IMR && e.event_type == DSTACK_RUNTIME_EVENT_TYPE);
    let mut compose_hash = None;
    for e in runtime {
        if e.event == COMPOSE_HASH_EVENT {
            if compose_hash.is_some() {
                return Err(AttestationError::EventLog(
                    "more than one compose-hash event".into(),
                ));
            }
            let h: [u8; 32] = e.event_payload.as_slice().try_into().map_err(|_| {
                AttestationError::EventLog(format!(
                    "compose-hash payload has {} bytes, expected 32",
                    e.event_payload.len()
                ))
            })?;
            compose_hash = Some(h);
        }
    }
    match (compose_hash, app_compose) {
        (None, _) if require_compose_hash => return Err(AttestationError::MissingComposeHash),
        (Some(event), Some(text)) => {
            let computed = crypto.sha256(text.as_bytes());
            if computed != event {
                return Err(AttestationError::ComposeHashMismatch {
                    event: to_hex(&event),
                    computed: to_hex(&computed),
                });
            }
        }
        _ => {}
    }
    Ok(EventLogSummary {
        compose_hash,
        events: named_events(events),
        model_weights: model_weights(events)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RustCrypto;

    fn ev(name: &str, payload: &[u8]) -> EventLogEntry {
        runtime_event(name, payload)
    }

    /// The weights a node measured after compose-hash are replayed like it, shown in order,
    /// and cannot be swapped, dropped or malformed without the replay or the parse failing.
    #[test]
    fn model_weights_events_replay_like_compose_hash() {
        let compose = "{}";
        let hash = RustCrypto.sha256(compose.as_bytes());
        let log = vec![
            ev(COMPOSE_HASH_EVENT, &hash),
            ev(MODEL_WEIGHTS_EVENT, &[0xab; 32]),
            ev(MODEL_WEIGHTS_EVENT, &[0xcd; 32]),
        ];
        let rtmr = replay_rtmr3(&log).expect("replays");
        let s = verify_event_log(&log, &rtmr, Some(compose), true, &RustCrypto).expect("valid");
        assert_eq!(s.model_weights, vec![[0xab; 32], [0xcd; 32]]);
        assert_eq!(s.events[1].name, MODEL_WEIGHTS_EVENT);
        assert_eq!(s.events[1].payload, "ab".repeat(32));

        let mut other = log.clone();
        other[1] = ev(MODEL_WEIGHTS_EVENT, &[0xee; 32]);
        let err = verify_event_log(&other, &rtmr, Some(compose), true, &RustCrypto).unwrap_err();
        assert!(
            matches!(err, AttestationError::Rtmr3Mismatch { .. }),
            "{err}"
        );
        let mut forged = log.clone();
        forged[1].event_payload = vec![0xee; 32];
        assert!(replay_rtmr3(&forged).is_err(), "payload off its digest");
        let dropped = vec![log[0].clone(), log[2].clone()];
        let err = verify_event_log(&dropped, &rtmr, None, true, &RustCrypto).unwrap_err();
        assert!(
            matches!(err, AttestationError::Rtmr3Mismatch { .. }),
            "{err}"
        );

        let short = vec![
            ev(COMPOSE_HASH_EVENT, &hash),
            ev(MODEL_WEIGHTS_EVENT, &[1; 31]),
        ];
        let r = replay_rtmr3(&short).expect("replays");
        let err = verify_event_log(&short, &r, None, true, &RustCrypto).unwrap_err();
        assert!(err.to_string().contains("expected 32"), "{err}");
    }

    #[test]
    fn replay_checks_digests_and_compose_hash() {
        let compose = "{\"a\":1}";
        let hash = RustCrypto.sha256(compose.as_bytes());
        let log = vec![ev("app-id", b"x"), ev(COMPOSE_HASH_EVENT, &hash)];
        let rtmr = replay_rtmr3(&log).expect("replays");
        let s = verify_event_log(&log, &rtmr, Some(compose), true, &RustCrypto).expect("valid");
        assert_eq!(s.compose_hash, Some(hash));
        assert_eq!(s.events.len(), 2);

        let err = verify_event_log(&log, &rtmr, Some("{}"), true, &RustCrypto).unwrap_err();
        assert!(matches!(err, AttestationError::ComposeHashMismatch { .. }));
        let err = verify_event_log(&log, &[0; 48], None, true, &RustCrypto).unwrap_err();
        assert!(matches!(err, AttestationError::Rtmr3Mismatch { .. }));

        let mut forged = log.clone();
        forged[0].event_payload = b"y".to_vec();
        let err = replay_rtmr3(&forged).unwrap_err().to_string();
        assert!(err.contains("does not match its payload"), "{err}");

        let no_compose = vec![ev("app-id", b"x")];
        let r = replay_rtmr3(&no_compose).expect("replays");
        let err = verify_event_log(&no_compose, &r, None, true, &RustCrypto).unwrap_err();
        assert_eq!(err, AttestationError::MissingComposeHash);
        assert!(verify_event_log(&no_compose, &r, None, false, &RustCrypto).is_ok());
    }
}
