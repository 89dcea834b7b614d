//! The node's server-sent events as they pass through: split into events, counted (content
//! chunks, the usage chunk), and filtered for the caller. The node always ends a stream with
//! a usage chunk (it is billed on it); a caller that did not ask for
//! `stream_options.include_usage` does not get it, as from OpenAI. `[DONE]` is held back until
//! the response's signatures and bill verified, so a caller never sees a clean end of a stream
//! the client refused.

use serde_json::Value;

/// Splits a byte stream into complete events (each ending in a blank line).
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    /// The events `data` completed, each with its terminating blank line.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let rest = self.buf.split_off(end + 2);
            out.push(std::mem::replace(&mut self.buf, rest));
        }
        out
    }

    /// Bytes after the last complete event (a well-formed stream leaves none).
    pub fn rest(&self) -> &[u8] {
        &self.buf
    }
}

/// The `data:` payload of one event (its data lines joined), `None` without one.
pub fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut lines = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .peekable();
    lines.peek()?;
    Some(lines.collect::<Vec<_>>().join("\n"))
}

/// The `id` of the chunk(s) in the first event of `events` (the node's response id).
pub fn chunk_id(events: &[u8]) -> Option<String> {
    let end = events
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(events.len(), |p| p + 2);
    let chunk: Value = serde_json::from_str(&data_of(&events[..end])?).ok()?;
    chunk.get("id")?.as_str().map(str::to_owned)
}

/// What the proxy learns from a stream, and what it forwards.
#[derive(Debug, Default)]
pub struct StreamFilter {
    pub include_usage: bool,
    /// Chunks whose choices carried non-empty content.
    pub content_chunks: u64,
    /// The usage of the usage chunk: (prompt, completion).
    pub usage: Option<(u64, u64)>,
    /// The node sent `data: [DONE]`.
    pub done: bool,
}

/// The `[DONE]` event, sent once the response verified.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

impl StreamFilter {
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            ..Self::default()
        }
    }

    /// One event from the node: what to forward to the caller now (`None`: nothing).
    pub fn event(&mut self, raw: Vec<u8>) -> Option<Vec<u8>> {
        let Some(data) = data_of(&raw) else {
            return Some(raw); // comments, keep-alives
        };
        if data.trim() == "[DONE]" {
            self.done = true;
            return None;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&data) else {
            return Some(raw);
        };
        let choices = chunk.get("choices").and_then(Value::as_array);
        let has_content = choices.is_some_and(|cs| {
            cs.iter().any(|c| {
                c.pointer("/delta/content")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            })
        });
        let no_choices = choices.is_none_or(Vec::is_empty);
        if has_content {
            self.content_chunks += 1;
        }
        if let Some(u) = super::usage::usage_of(&chunk) {
            self.usage = Some(u);
            if !self.include_usage {
                if no_choices {
                    return None;
                }
                if let Some(obj) = chunk.as_object_mut() {
                    obj.remove("usage");
                }
                return Some(format!("data: {chunk}\n\n").into_bytes());
            }
        }
        Some(raw)
    }
}

/// An OpenAI-shaped error event, ending a stream the proxy refused.
pub fn error_event(message: &str, code: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "error": { "message": message, "type": "ecloud_proxy_error", "param": null, "code": code }
    });
    format!("data: {body}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads() {
        let mut s = Splitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let events = s.push(b":1}\n\ndata: x\n\nda");
        assert_eq!(
            events,
            vec![b"data: {\"a\":1}\n\n".to_vec(), b"data: x\n\n".to_vec()]
        );
        assert_eq!(s.rest(), b"da");
        assert_eq!(data_of(b"data: [DONE]\n\n").as_deref(), Some("[DONE]"));
        assert_eq!(data_of(b": keep-alive\n\n"), None);
        let two = b"data: {\"id\":\"chatcmpl-1\",\"choices\":[]}\n\ndata: {\"id\":\"x\"}\n\n";
        assert_eq!(chunk_id(two).as_deref(), Some("chatcmpl-1"));
        assert_eq!(chunk_id(b": keep-alive\n\n"), None);
    }

    #[test]
    fn the_usage_chunk_is_dropped_unless_asked_and_done_held_back() {
        let content = br#"data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}

"#
        .to_vec();
        let usage = br#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}

"#
        .to_vec();
        let mut f = StreamFilter::new(false);
        assert_eq!(f.event(content.clone()), Some(content.clone()));
        assert_eq!(f.event(usage.clone()), None);
        assert_eq!(f.event(DONE.to_vec()), None);
        assert!(f.done);
        assert_eq!((f.content_chunks, f.usage), (1, Some((3, 1))));

        let mut asked = StreamFilter::new(true);
        assert_eq!(asked.event(usage.clone()), Some(usage));
        // Usage riding on a content chunk: the content passes, the usage does not.
        let both = br#"data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}

"#
        .to_vec();
        let forwarded = StreamFilter::new(false).event(both).unwrap();
        let text = String::from_utf8(forwarded).unwrap();
        assert!(
            text.contains("\"content\":\"x\"") && !text.contains("usage"),
            "{text}"
        );
    }
}
