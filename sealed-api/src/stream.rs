//! A streamed HTTP response over a chunked OHTTP response: the head in the first frame, one
//! Binary HTTP content chunk per frame after it (one server-sent event each, when the inner
//! route streams events), and the end of the message in the final chunk. Stripping the frames
//! leaves one Indeterminate-Length Binary HTTP response (RFC 9292 §3.2).

use crate::bhttp::{self, Field, ResponseHead};
use crate::chunked::{ChunkedResponseReader, ChunkedResponseWriter, MAX_FRAME_PAYLOAD};
use crate::error::OhttpError;

/// Data bytes one frame carries at most (room for the content chunk's length prefix).
const MAX_DATA_PER_FRAME: usize = MAX_FRAME_PAYLOAD - 8;

/// Gateway: seals a streamed response piece by piece. Produced by
/// [`crate::gateway::Gateway`]; each method returns the bytes to send (and flush) at once.
pub struct StreamSealer {
    writer: ChunkedResponseWriter,
}

impl StreamSealer {
    pub fn new(writer: ChunkedResponseWriter) -> Self {
        Self { writer }
    }

    /// The status and headers: the first frame.
    pub fn head(&mut self, head: &ResponseHead) -> Result<Vec<u8>, OhttpError> {
        self.writer.frame(&bhttp::encode_streamed_head(head))
    }

    /// Body bytes (one event): one frame, or several when over a frame's capacity.
    pub fn data(&mut self, data: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut out = Vec::new();
        for piece in data.chunks(MAX_DATA_PER_FRAME) {
            out.extend_from_slice(&self.writer.frame(&bhttp::encode_content_chunk(piece))?);
        }
        Ok(out)
    }

    /// The end of the response, with its trailer fields (e.g. the response signature): the
    /// final chunk, which a client needs to accept the stream. The trailers must fit in one
    /// frame ([`MAX_FRAME_PAYLOAD`] bytes encoded).
    pub fn end(self, trailers: &[Field]) -> Result<Vec<u8>, OhttpError> {
        self.writer.finish(&bhttp::encode_streamed_end(trailers))
    }
}

/// What a client learns from a streamed response, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Status and headers (always first).
    Head(ResponseHead),
    /// Body bytes as the gateway flushed them (for an SSE route, one event).
    Data(Vec<u8>),
    /// The response ended with its final chunk: the body is complete. Carries the trailer
    /// fields sent with it (the node's signature over the exact body, for instance).
    End { trailers: Vec<Field> },
}

/// Client: opens a streamed response as its bytes arrive. Produced by
/// [`crate::client::SealedClient::seal_streaming`].
pub struct StreamOpener {
    reader: ChunkedResponseReader,
    head_seen: bool,
    ended: bool,
}

impl StreamOpener {
    pub(crate) fn new(reader: ChunkedResponseReader) -> Self {
        Self {
            reader,
            head_seen: false,
            ended: false,
        }
    }

    fn piece(&mut self, payload: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), OhttpError> {
        if self.ended {
            return Err(OhttpError::Malformed("data after the end of the response"));
        }
        if !self.head_seen {
            self.head_seen = true;
            out.push(StreamEvent::Head(bhttp::decode_streamed_head(payload)?));
            return Ok(());
        }
        let piece = bhttp::decode_content_piece(payload)?;
        if !piece.data.is_empty() {
            out.push(StreamEvent::Data(piece.data));
        }
        if let Some(trailers) = piece.trailers {
            self.ended = true;
            out.push(StreamEvent::End { trailers });
        }
        Ok(())
    }

    /// Consumes bytes from the network; returns the events they completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<StreamEvent>, OhttpError> {
        let mut out = Vec::new();
        for payload in self.reader.feed(data)? {
            self.piece(&payload, &mut out)?;
        }
        Ok(out)
    }

    /// The transport ended: the last events, ending in [`StreamEvent::End`], or an error if the
    /// stream was cut ([`OhttpError::Truncated`]) or its final chunk does not open.
    pub fn finish(mut self) -> Result<Vec<StreamEvent>, OhttpError> {
        let payload = self.reader.finish()?;
        let mut out = Vec::new();
        self.piece(&payload, &mut out)?;
        if !self.ended {
            return Err(OhttpError::Truncated);
        }
        Ok(out)
    }
}
