//! Server-sent events (`text/event-stream`), as OpenAI-compatible servers stream: the `data:`
//! field of each event, events separated by a blank line. Only what chat streaming uses:
//! comments, `event:`, `id:` and `retry:` fields are skipped.

/// The largest event accepted from an upstream (a chunk is a few hundred bytes).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One event's data (its `data:` lines joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    Data(String),
}

/// Incremental parser: push bytes as they arrive, take complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) {
        // Line endings may be CRLF; a CR can only appear there (JSON escapes it in strings).
        self.buffer
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
    }

    /// Bytes held for an event not yet complete.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete event with data, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
            let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                return Some(SseEvent::Data(data.join("\n")));
            }
        }
    }
}

/// One `data:` event as sent: `data: {payload}\n\n` (the payload is one line of JSON).
pub fn data_event(payload: &str) -> String {
    format!("data: {payload}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let body = ": keep-alive\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: é\ndata: two\n\ndata: [DONE]\n\n";
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut p = SseParser::default();
            let mut events = Vec::new();
            p.push(&bytes[..split]);
            while let Some(e) = p.next_event() {
                events.push(e);
            }
            p.push(&bytes[split..]);
            while let Some(e) = p.next_event() {
                events.push(e);
            }
            assert_eq!(
                events,
                [
                    SseEvent::Data("{\"a\":1}".into()),
                    SseEvent::Data("é\ntwo".into()),
                    SseEvent::Data("[DONE]".into()),
                ],
                "split at {split}"
            );
            assert_eq!(p.pending(), 0);
        }
        assert_eq!(data_event("{}"), "data: {}\n\n");
    }
}
