//! Chunked OHTTP streams: round trip, and every way a stream can be cut, reordered, replayed,
//! tampered with, misaddressed or inflated.

use sealed_api::bhttp::{self, Request, ResponseHead};
use sealed_api::chunked::{self, ChunkedResponseWriter};
use sealed_api::limits::Limits;
use sealed_api::stream::{StreamEvent, StreamOpener, StreamSealer};
use sealed_api::{GatewayKey, OhttpError, SealedClient};

fn request() -> Request {
    Request {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "node".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body:
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"secret prompt"}]}"#
                .to_vec(),
    }
}

fn events() -> Vec<Vec<u8>> {
    (0..5)
        .map(|i| format!("data: {{\"token\":\"t{i}\"}}\n\n").into_bytes())
        .collect()
}

/// A client's opener and the gateway's sealed pieces: [nonce+head, event.., final].
fn exchange(key: &GatewayKey) -> (StreamOpener, Vec<Vec<u8>>) {
    let client = SealedClient::new(key.config().clone(), Limits::default());
    let (wire, opener) = client.seal_streaming(&request()).expect("seal");
    let (bhttp, writer) =
        chunked::open_chunked_request(key, &wire, &Limits::default()).expect("gateway opens");
    assert_eq!(bhttp::decode_request(&bhttp).expect("bhttp"), request());
    (opener, respond(writer))
}

fn respond(writer: ChunkedResponseWriter) -> Vec<Vec<u8>> {
    let mut sealer = StreamSealer::new(writer);
    let mut pieces = vec![
        sealer
            .head(&ResponseHead {
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
            })
            .expect("head"),
    ];
    for e in events() {
        pieces.push(sealer.data(&e).expect("data"));
    }
    pieces.push(sealer.end(&[]).expect("end"));
    pieces
}

fn open_all(mut opener: StreamOpener, pieces: &[Vec<u8>]) -> Result<Vec<StreamEvent>, OhttpError> {
    let mut out = Vec::new();
    for p in pieces {
        out.extend(opener.feed(p)?);
    }
    out.extend(opener.finish()?);
    Ok(out)
}

fn expected_events() -> Vec<StreamEvent> {
    let mut v = vec![StreamEvent::Head(ResponseHead {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
    })];
    v.extend(events().into_iter().map(StreamEvent::Data));
    v.push(StreamEvent::End { trailers: vec![] });
    v
}

#[test]
fn a_stream_opens_event_by_event_whatever_the_transport_splits() {
    let key = GatewayKey::generate(3);
    let (opener, pieces) = exchange(&key);
    assert_eq!(open_all(opener, &pieces), Ok(expected_events()));

    // Each event is available as soon as its chunk is whole (before the stream ends).
    let (mut opener, pieces) = exchange(&key);
    assert!(matches!(
        opener.feed(&pieces[0]).expect("head")[..],
        [StreamEvent::Head(_)]
    ));
    assert_eq!(
        opener.feed(&pieces[1]).expect("event"),
        vec![StreamEvent::Data(events()[0].clone())]
    );

    // Byte by byte.
    let (mut opener, pieces) = exchange(&key);
    let mut got = Vec::new();
    for b in pieces.concat() {
        got.extend(opener.feed(&[b]).expect("feed"));
    }
    got.extend(opener.finish().expect("finish"));
    assert_eq!(got, expected_events());
}

#[test]
fn padding_hides_event_lengths() {
    let key = GatewayKey::generate(3);
    let client = SealedClient::new(key.config().clone(), Limits::default());
    let (wire, _) = client.seal_streaming(&request()).expect("seal");
    let (_, writer) = chunked::open_chunked_request(&key, &wire, &Limits::default()).expect("open");
    let mut sealer = StreamSealer::new(writer);
    sealer.head(&ResponseHead::default()).expect("head");
    let short = sealer.data(b"data: a\n\n").expect("short");
    let long = sealer.data(&[b'x'; 200]).expect("long");
    assert_eq!(
        short.len(),
        long.len(),
        "a 9-byte and a 200-byte event look the same"
    );
    assert_eq!(
        short.len(),
        2 + 256 + 16,
        "length prefix, one 256-byte frame, AEAD tag"
    );
}

#[test]
fn truncation_is_detected() {
    let key = GatewayKey::generate(3);
    // Missing final chunk.
    let (opener, pieces) = exchange(&key);
    let n = pieces.len();
    assert_eq!(
        open_all(opener, &pieces[..n - 1]),
        Err(OhttpError::Truncated)
    );
    // Cut inside a chunk.
    let (opener, pieces) = exchange(&key);
    let mut cut = pieces[..3].to_vec();
    cut[2].truncate(10);
    assert_eq!(open_all(opener, &cut), Err(OhttpError::Truncated));
    // Nothing at all (not even the response nonce).
    let (opener, _) = exchange(&key);
    assert_eq!(open_all(opener, &[]), Err(OhttpError::Truncated));
    // A relay that cuts the stream and marks a non-final chunk as final: it was sealed without
    // the "final" AAD, so it does not open as the final chunk.
    let (opener, pieces) = exchange(&key);
    let mut forged = pieces[..2].to_vec();
    let chunk = &pieces[2];
    let mut as_final = vec![0u8];
    as_final.extend_from_slice(&chunk[2..]); // drop its 2-byte length prefix
    forged.push(as_final);
    assert_eq!(open_all(opener, &forged), Err(OhttpError::Decrypt));
}

#[test]
fn reordered_and_replayed_chunks_are_refused() {
    let key = GatewayKey::generate(3);
    let (opener, mut pieces) = exchange(&key);
    pieces.swap(2, 3);
    assert_eq!(open_all(opener, &pieces), Err(OhttpError::Decrypt));

    let (opener, mut pieces) = exchange(&key);
    let replay = pieces[2].clone();
    pieces.insert(3, replay);
    assert_eq!(open_all(opener, &pieces), Err(OhttpError::Decrypt));

    let (opener, mut pieces) = exchange(&key);
    pieces.remove(2); // a dropped event
    assert_eq!(open_all(opener, &pieces), Err(OhttpError::Decrypt));

    // After a failure the opener stays failed.
    let (mut opener, pieces) = exchange(&key);
    assert!(opener.feed(&pieces[0]).is_ok());
    assert_eq!(opener.feed(&pieces[2]), Err(OhttpError::Decrypt));
    assert_eq!(opener.feed(&pieces[1]), Err(OhttpError::Closed));
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let key = GatewayKey::generate(3);
    let (_, pieces) = exchange(&key);
    let wire = pieces.concat();
    for at in (0..wire.len()).step_by(37).chain([wire.len() - 1]) {
        let (opener, pieces) = exchange(&key);
        let mut wire = pieces.concat();
        wire[at] ^= 0x04;
        let r = open_all(opener, &[wire]);
        assert!(r.is_err(), "flip at {at} accepted");
    }
    // In the request too.
    let client = SealedClient::new(key.config().clone(), Limits::default());
    let (wire, _) = client.seal_streaming(&request()).expect("seal");
    for at in (7..wire.len()).step_by(29) {
        let mut t = wire.clone();
        t[at] ^= 0x04;
        assert!(
            chunked::open_chunked_request(&key, &t, &Limits::default()).is_err(),
            "flip at {at} accepted"
        );
    }
}

#[test]
fn the_wrong_key_opens_nothing() {
    let key = GatewayKey::generate(3);
    let other = GatewayKey::from_secret(3, &[9; 32]).expect("key");
    let client = SealedClient::new(key.config().clone(), Limits::default());
    let (wire, _) = client.seal_streaming(&request()).expect("seal");
    assert_eq!(
        chunked::open_chunked_request(&other, &wire, &Limits::default()).err(),
        Some(OhttpError::Decrypt)
    );
    // A response made for another exchange does not open.
    let (opener, _) = exchange(&key);
    let (_, pieces_of_other_exchange) = exchange(&key);
    assert_eq!(
        open_all(opener, &pieces_of_other_exchange),
        Err(OhttpError::Decrypt)
    );
}

#[test]
fn oversized_chunks_and_requests_are_refused_before_buffering() {
    let key = GatewayKey::generate(3);
    let limits = Limits::default();
    let (mut opener, pieces) = exchange(&key);
    let nonce = &pieces[0][..16];
    assert!(opener.feed(nonce).expect("nonce").is_empty());
    // A declared length of 1 GiB - 1: refused from its 4-byte prefix alone.
    assert_eq!(
        opener.feed(&[0xbf, 0xff, 0xff, 0xff]),
        Err(OhttpError::OversizedChunk {
            len: 0x3fff_ffff,
            max: limits.max_chunk_bytes
        })
    );
    // A final chunk that never ends.
    let (mut opener, _) = exchange(&key);
    opener.feed(nonce).expect("nonce");
    opener.feed(&[0]).expect("final indicator");
    let big = vec![0u8; limits.max_chunk_bytes];
    opener.feed(&big).expect("up to the limit");
    assert!(matches!(
        opener.feed(&[0]),
        Err(OhttpError::OversizedChunk { .. })
    ));

    // Request size: the client refuses to seal, the gateway refuses to open.
    let mut huge = request();
    huge.body = vec![b'a'; limits.max_request_bytes + 1];
    let client = SealedClient::new(key.config().clone(), limits);
    assert!(matches!(
        client.seal_streaming(&huge),
        Err(OhttpError::TooLarge { .. })
    ));
    assert!(matches!(
        client.seal(&huge),
        Err(OhttpError::TooLarge { .. })
    ));
    let roomy = Limits {
        max_request_bytes: 4 * limits.max_request_bytes,
        ..limits
    };
    let (wire, _) = SealedClient::new(key.config().clone(), roomy)
        .seal_streaming(&huge)
        .expect("seal");
    assert!(matches!(
        chunked::open_chunked_request(&key, &wire, &limits),
        Err(OhttpError::TooLarge { .. })
    ));
}

/// Hostile input never panics: random bytes and random mutations into every decoder.
#[test]
fn garbage_never_panics() {
    let key = GatewayKey::generate(3);
    let limits = Limits::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (_, pieces) = exchange(&key);
    let good = pieces.concat();
    let client = SealedClient::new(key.config().clone(), limits);
    let (good_req, _) = client.seal_streaming(&request()).expect("seal");
    // Debug builds run x25519 slowly: a few hundred rounds keep this test within seconds.
    for round in 0..120 {
        let len = (next() % 600) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Mutate a valid message instead: keeps the parser past the first checks.
            input = if round % 4 == 0 {
                good.clone()
            } else {
                good_req.clone()
            };
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % input.len();
                input[at] = next() as u8;
            }
            input.truncate((next() as usize) % (input.len() + 1));
        }
        let _ = sealed_api::ohttp::decapsulate_request(&key, &input, &limits);
        let _ = chunked::open_chunked_request(&key, &input, &limits);
        let _ = bhttp::decode_request(&input);
        let _ = bhttp::decode_response(&input);
        let _ = bhttp::decode_streamed_head(&input);
        let _ = bhttp::decode_content_piece(&input);
        let _ = sealed_api::KeyConfig::decode_list(&input);
        let (mut opener, _) = exchange(&key);
        let _ = opener.feed(&input).and_then(|_| opener.finish());
    }
}
