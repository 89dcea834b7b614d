//! The client side (`ecloud proxy`): seal a request to the node's attested key, open its
//! response whole or as a stream. Transport-agnostic: the caller posts the bytes with the
//! content type given here and feeds back what it receives.

use crate::bhttp::{self, Request, Response};
use crate::chunked;
use crate::error::OhttpError;
use crate::key_config::KeyConfig;
use crate::limits::Limits;
use crate::ohttp::{self, ResponseOpener};
use crate::padding;
use crate::stream::StreamOpener;

/// Content type of an encapsulated request (RFC 9458).
pub const CONTENT_TYPE_REQUEST: &str = "message/ohttp-req";
/// Content type of an encapsulated response.
pub const CONTENT_TYPE_RESPONSE: &str = "message/ohttp-res";
/// Content type of a chunked encapsulated request (draft-ietf-ohai-chunked-ohttp).
pub const CONTENT_TYPE_CHUNKED_REQUEST: &str = "message/ohttp-chunked-req";
/// Content type of a chunked encapsulated response.
pub const CONTENT_TYPE_CHUNKED_RESPONSE: &str = "message/ohttp-chunked-res";
/// Content type of a key configuration list (RFC 9458 §3.2).
pub const CONTENT_TYPE_KEYS: &str = "application/ohttp-keys";

/// Seals requests to one node's key configuration.
#[derive(Debug, Clone)]
pub struct SealedClient {
    config: KeyConfig,
    limits: Limits,
}

/// A whole response to open.
pub struct PendingResponse {
    opener: ResponseOpener,
}

impl SealedClient {
    /// `config` must carry the x25519 key the client verified in the node's attestation
    /// ([`SealedClient::for_attested_key`] checks it).
    pub fn new(config: KeyConfig, limits: Limits) -> Self {
        Self { config, limits }
    }

    /// Refuses a configuration whose key is not the attested one: sealing to any other key
    /// would hand the prompt to whoever holds it.
    pub fn for_attested_key(
        config: KeyConfig,
        attested_enclave_key: &[u8],
        limits: Limits,
    ) -> Result<Self, OhttpError> {
        if config.public_key.as_slice() != attested_enclave_key {
            return Err(OhttpError::NotAttestedKey);
        }
        Ok(Self::new(config, limits))
    }

    pub fn config(&self) -> &KeyConfig {
        &self.config
    }

    fn encode(req: &Request) -> Vec<u8> {
        let mut msg = bhttp::encode_request(req);
        padding::pad_message(&mut msg);
        msg
    }

    /// Seals a request whose response comes whole: body for [`CONTENT_TYPE_REQUEST`].
    pub fn seal(&self, req: &Request) -> Result<(Vec<u8>, PendingResponse), OhttpError> {
        let (wire, opener) =
            ohttp::encapsulate_request(&self.config, &Self::encode(req), &self.limits)?;
        Ok((wire, PendingResponse { opener }))
    }

    /// Seals a request whose response streams: body for [`CONTENT_TYPE_CHUNKED_REQUEST`].
    pub fn seal_streaming(&self, req: &Request) -> Result<(Vec<u8>, StreamOpener), OhttpError> {
        let (wire, reader) =
            chunked::seal_chunked_request(&self.config, &Self::encode(req), &self.limits)?;
        Ok((wire, StreamOpener::new(reader)))
    }
}

impl PendingResponse {
    /// Opens the whole encapsulated response.
    pub fn open(self, wire: &[u8]) -> Result<Response, OhttpError> {
        Ok(bhttp::decode_response(&self.opener.open(wire)?)?)
    }
}
