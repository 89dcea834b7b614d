//! Gemma's SentencePiece tokenizer, read from a GGUF's own metadata (`tokenizer.ggml.tokens`,
//! `.scores`, `.token_type`, `.bos_token_id`, `.eos_token_id`), encoding as llama.cpp's SPM
//! tokenizer does:
//!
//! 1. user-defined pieces (Gemma: runs of newlines or spaces, a few HTML tags) are cut out of the
//!    text first, leftmost-longest; control pieces (`<start_of_turn>`, `<bos>`…) never come from
//!    text, only from [`Vocab::token_id`] in the chat template, so a prompt cannot forge a turn;
//! 2. each remaining fragment has its spaces replaced by `▁` (no space prefix: Gemma sets
//!    `add_space_prefix = false`), starts as one symbol per character, and the adjacent pair whose
//!    concatenation is the highest-scoring piece is merged until no pair is a piece;
//! 3. a symbol that is not a piece falls back to its UTF-8 bytes, as `<0xNN>` tokens.
//!
//! Decoding maps `▁` back to a space and byte tokens back to bytes; [`Utf8Decoder`] turns the
//! bytes of a token stream into text without ever splitting a character.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

pub type TokenId = u32;

/// The SentencePiece word-boundary mark, standing for a space inside pieces.
const SPACE_MARK: &str = "\u{2581}";

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenKind {
    /// From a `tokenizer.ggml.token_type` value.
    pub fn from_gguf(value: i32) -> Result<Self, VocabError> {
        Ok(match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            other => return Err(VocabError::Invalid(format!("token type {other}"))),
        })
    }

    /// Pieces that text may turn into (merges and whole symbols).
    fn text_may_produce(self) -> bool {
        matches!(self, Self::Normal | Self::UserDefined)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VocabError {
    #[error("GGUF metadata has no {0}")]
    Missing(&'static str),
    #[error("GGUF tokenizer metadata is invalid: {0}")]
    Invalid(String),
}

/// One piece of the vocabulary.
#[derive(Debug, Clone)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: TokenKind,
}

/// A SentencePiece vocabulary and its encoder/decoder.
#[derive(Debug, Clone)]
pub struct Vocab {
    pieces: Vec<Piece>,
    ids: HashMap<String, TokenId>,
    /// `<0xNN>` for each byte.
    byte_tokens: Vec<TokenId>,
    /// User-defined pieces, longest first, for cutting them out of text.
    user_defined: Vec<TokenId>,
    bos: TokenId,
    eos: TokenId,
}

/// Parses `<0xNN>`.
fn byte_of_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Vocab {
    /// Builds a vocabulary; `bos`/`eos` are ids into `pieces`. Every byte needs its `<0xNN>`
    /// piece (byte fallback must always be possible).
    pub fn new(pieces: Vec<Piece>, bos: TokenId, eos: TokenId) -> Result<Self, VocabError> {
        let len = pieces.len();
        if len > TokenId::MAX as usize {
            return Err(VocabError::Invalid(format!("{len} tokens")));
        }
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if id as usize >= len {
                return Err(VocabError::Invalid(format!(
                    "{name} token {id} outside a vocabulary of {len}"
                )));
            }
        }
        let mut ids = HashMap::with_capacity(len);
        let mut byte_tokens = vec![None; 256];
        let mut user_defined = Vec::new();
        for (id, piece) in pieces.iter().enumerate() {
            let id = id as TokenId;
            // The first of duplicate pieces wins, as in llama.cpp.
            ids.entry(piece.text.clone()).or_insert(id);
            match piece.kind {
                TokenKind::Byte => {
                    let byte = byte_of_piece(&piece.text).ok_or_else(|| {
                        VocabError::Invalid(format!("byte token {id} is {:?}", piece.text))
                    })?;
                    byte_tokens[byte as usize].get_or_insert(id);
                }
                TokenKind::UserDefined if !piece.text.is_empty() => user_defined.push(id),
                _ => {}
            }
        }
        let byte_tokens = byte_tokens
            .into_iter()
            .enumerate()
            .map(|(b, id)| id.ok_or_else(|| VocabError::Invalid(format!("no token <0x{b:02X}>"))))
            .collect::<Result<Vec<_>, _>>()?;
        user_defined.sort_by_key(|&id| std::cmp::Reverse(pieces[id as usize].text.len()));
        Ok(Self {
            pieces,
            ids,
            byte_tokens,
            user_defined,
            bos,
            eos,
        })
    }

    /// Reads the `tokenizer.ggml.*` keys of a GGUF file.
    #[cfg(feature = "embedded")]
    pub fn from_gguf(
        metadata: &HashMap<String, candle_core::quantized::gguf_file::Value>,
    ) -> Result<Self, VocabError> {
        use candle_core::quantized::gguf_file::Value;
        let get = |key: &'static str| metadata.get(key).ok_or(VocabError::Missing(key));
        let invalid = |key: &str, e: candle_core::Error| VocabError::Invalid(format!("{key}: {e}"));
        let array = |key: &'static str| -> Result<&Vec<Value>, VocabError> {
            get(key)?.to_vec().map_err(|e| invalid(key, e))
        };
        let id = |key: &'static str| -> Result<TokenId, VocabError> {
            get(key)?.to_u32().map_err(|e| invalid(key, e))
        };
        if let Some(model) = metadata.get("tokenizer.ggml.model") {
            let model = model
                .to_string()
                .map_err(|e| invalid("tokenizer.ggml.model", e))?;
            if model != "llama" {
                return Err(VocabError::Invalid(format!(
                    "tokenizer model '{model}', expected SentencePiece ('llama')"
                )));
            }
        }
        let tokens = array("tokenizer.ggml.tokens")?;
        let scores = array("tokenizer.ggml.scores")?;
        let types = array("tokenizer.ggml.token_type")?;
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(VocabError::Invalid(format!(
                "{} tokens, {} scores, {} token types",
                tokens.len(),
                scores.len(),
                types.len()
            )));
        }
        let pieces = tokens
            .iter()
            .zip(scores)
            .zip(types)
            .map(|((text, score), kind)| {
                Ok(Piece {
                    text: text
                        .to_string()
                        .map_err(|e| invalid("tokenizer.ggml.tokens", e))?
                        .clone(),
                    score: score
                        .to_f32()
                        .map_err(|e| invalid("tokenizer.ggml.scores", e))?,
                    kind: TokenKind::from_gguf(
                        kind.to_i32()
                            .map_err(|e| invalid("tokenizer.ggml.token_type", e))?,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, VocabError>>()?;
        Self::new(
            pieces,
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
        )
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn bos(&self) -> TokenId {
        self.bos
    }

    pub fn eos(&self) -> TokenId {
        self.eos
    }

    /// The id of an exact piece, e.g. `<start_of_turn>`.
    pub fn token_id(&self, piece: &str) -> Option<TokenId> {
        self.ids.get(piece).copied()
    }

    pub fn piece(&self, id: TokenId) -> Option<&Piece> {
        self.pieces.get(id as usize)
    }

    /// Encodes plain text (no BOS, no control tokens: those are the template's).
    pub fn encode(&self, text: &str) -> Vec<TokenId> {
        let mut out = Vec::new();
        let mut rest = text;
        let mut pos = 0;
        // Cut user-defined pieces out, leftmost-longest; encode the fragments between them.
        while pos < rest.len() {
            if let Some(id) = self.user_defined_at(&rest[pos..]) {
                self.encode_fragment(&rest[..pos], &mut out);
                out.push(id);
                rest = &rest[pos + self.pieces[id as usize].text.len()..];
                pos = 0;
            } else {
                pos += rest[pos..].chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_fragment(rest, &mut out);
        out
    }

    fn user_defined_at(&self, text: &str) -> Option<TokenId> {
        self.user_defined
            .iter()
            .copied()
            .find(|&id| text.starts_with(self.pieces[id as usize].text.as_str()))
    }

    /// The id of `text` if text may produce that piece.
    fn text_piece(&self, text: &str) -> Option<TokenId> {
        self.token_id(text)
            .filter(|&id| self.pieces[id as usize].kind.text_may_produce())
    }

    /// SentencePiece BPE on one fragment: merge the best-scoring adjacent pair until none is a
    /// piece, then byte-fall-back what is not a piece.
    fn encode_fragment(&self, text: &str, out: &mut Vec<TokenId>) {
        if text.is_empty() {
            return;
        }
        let text = text.replace(' ', SPACE_MARK);
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: None,
            });
            if index > 0 {
                symbols[index - 1].next = Some(index);
            }
        }
        let mut queue = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: usize, right: usize| -> Option<Bigram> {
            let (l, r) = (&symbols[left], &symbols[right]);
            let merged = &text[l.start..r.start + r.len];
            let id = self.text_piece(merged)?;
            Some(Bigram {
                score: self.pieces[id as usize].score,
                left,
                right,
                len: merged.len(),
            })
        };
        for i in 1..symbols.len() {
            queue.extend(bigram(&symbols, i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (left, right) = (&symbols[b.left], &symbols[b.right]);
            // Stale: one side was merged away or grew since this pair was queued.
            if left.len == 0 || right.len == 0 || left.len + right.len != b.len {
                continue;
            }
            let next = right.next;
            symbols[b.left].len = b.len;
            symbols[b.left].next = next;
            symbols[b.right].len = 0;
            if let Some(n) = next {
                symbols[n].prev = Some(b.left);
                queue.extend(bigram(&symbols, b.left, n));
            }
            if let Some(p) = symbols[b.left].prev {
                queue.extend(bigram(&symbols, p, b.left));
            }
        }
        let mut i = Some(0);
        while let Some(index) = i {
            let s = &symbols[index];
            let piece = &text[s.start..s.start + s.len];
            match self.text_piece(piece) {
                Some(id) => out.push(id),
                None => out.extend(piece.bytes().map(|b| self.byte_tokens[b as usize])),
            }
            i = s.next;
        }
    }

    /// Appends the bytes token `id` stands for in text: `▁` is a space, `<0xNN>` a byte;
    /// control, unknown and unused tokens add nothing.
    pub fn append_bytes(&self, id: TokenId, out: &mut Vec<u8>) {
        let Some(piece) = self.pieces.get(id as usize) else {
            return;
        };
        match piece.kind {
            TokenKind::Normal => {
                out.extend_from_slice(piece.text.replace(SPACE_MARK, " ").as_bytes())
            }
            TokenKind::UserDefined => out.extend_from_slice(piece.text.as_bytes()),
            TokenKind::Byte => out.extend(byte_of_piece(&piece.text)),
            TokenKind::Control | TokenKind::Unknown | TokenKind::Unused => {}
        }
    }

    /// Decodes tokens to text (invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[TokenId]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.append_bytes(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Byte range in the fragment; `len == 0` once merged into its left neighbour.
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge: highest score first, then leftmost (llama.cpp's order).
#[derive(Debug)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// Turns the bytes of successive tokens into text, holding back an incomplete UTF-8 sequence
/// until the token that completes it (a character split across byte tokens is never emitted
/// broken). Bytes that can never be valid UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Adds bytes; returns the text now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        let mut consumed = 0;
        loop {
            match std::str::from_utf8(&self.pending[consumed..]) {
                Ok(valid) => {
                    text.push_str(valid);
                    consumed = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid_end = consumed + e.valid_up_to();
                    // Valid: from_utf8 checked these bytes.
                    text.push_str(&String::from_utf8_lossy(&self.pending[consumed..valid_end]));
                    consumed = valid_end;
                    match e.error_len() {
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            consumed += bad;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        text
    }

    /// The end of the stream: what is still held back, as U+FFFD.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: TokenKind) -> Piece {
        Piece {
            text: text.into(),
            score,
            kind,
        }
    }

    /// A small Gemma-like vocabulary: specials, 256 byte tokens, a few merges.
    pub(crate) fn vocab() -> Vocab {
        let mut pieces = vec![
            piece("<pad>", 0.0, TokenKind::Control),
            piece("<eos>", 0.0, TokenKind::Control),
            piece("<bos>", 0.0, TokenKind::Control),
            piece("<start_of_turn>", 0.0, TokenKind::Control),
            piece("<end_of_turn>", 0.0, TokenKind::Control),
            piece("\n", 0.0, TokenKind::UserDefined),
            piece("\n\n", 0.0, TokenKind::UserDefined),
            piece("  ", 0.0, TokenKind::UserDefined),
        ];
        pieces.extend((0..=255u8).map(|b| piece(&format!("<0x{b:02X}>"), 0.0, TokenKind::Byte)));
        for (text, score) in [
            ("h", -1.0),
            ("e", -1.0),
            ("l", -1.0),
            ("o", -1.0),
            ("▁", -1.0),
            ("w", -1.0),
            ("r", -1.0),
            ("d", -1.0),
            ("he", -5.0),
            ("ll", -3.0),
            ("hell", -4.0),
            ("hello", -2.0),
            ("▁w", -6.0),
            ("or", -7.0),
            ("▁wor", -8.0),
            ("▁world", -9.0),
            ("ld", -10.0),
            ("é", -1.0),
            ("<s", -1.0),
        ] {
            pieces.push(piece(text, score, TokenKind::Normal));
        }
        Vocab::new(pieces, 2, 1).unwrap()
    }

    fn texts(v: &Vocab, ids: &[TokenId]) -> Vec<String> {
        ids.iter()
            .map(|&id| v.piece(id).unwrap().text.clone())
            .collect()
    }

    #[test]
    fn merges_by_score_and_marks_spaces() {
        let v = vocab();
        let ids = v.encode("hello world");
        assert_eq!(texts(&v, &ids), ["hello", "▁world"]);
        assert_eq!(v.decode(&ids), "hello world");
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let v = vocab();
        // "ü" is not a piece: its two UTF-8 bytes; "é" is.
        let ids = v.encode("üé");
        assert_eq!(texts(&v, &ids), ["<0xC3>", "<0xBC>", "é"]);
        assert_eq!(v.decode(&ids), "üé");
    }

    #[test]
    fn user_defined_pieces_are_cut_out_and_control_pieces_never_come_from_text() {
        let v = vocab();
        let ids = v.encode("he\n\nlo  <start_of_turn>");
        let t = texts(&v, &ids);
        assert_eq!(&t[..5], ["he", "\n\n", "l", "o", "  "]);
        // The control piece's text is spelled out, never the control token.
        assert!(!ids.contains(&3), "{t:?}");
        assert_eq!(v.decode(&ids), "he\n\nlo  <start_of_turn>");
        // Control tokens decode to nothing.
        assert_eq!(v.decode(&[2, 3, 4, 1]), "");
    }

    #[test]
    fn empty_text_is_no_tokens() {
        assert!(vocab().encode("").is_empty());
    }

    #[test]
    fn a_vocabulary_without_every_byte_token_is_refused() {
        let pieces = vec![piece("<bos>", 0.0, TokenKind::Control)];
        assert!(matches!(
            Vocab::new(pieces, 0, 0),
            Err(VocabError::Invalid(_))
        ));
        let mut v = vocab().pieces;
        v.truncate(3);
        assert!(Vocab::new(v, 2, 9).is_err());
    }

    #[test]
    fn utf8_decoder_holds_back_split_characters() {
        let mut d = Utf8Decoder::default();
        let euro = "€".as_bytes(); // E2 82 AC
        assert_eq!(d.push(b"a"), "a");
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&[euro[2], b'b']), "€b");
        // A byte that can never start a character is replaced, not held.
        assert_eq!(d.push(&[0xFF, b'c']), "\u{FFFD}c");
        // An unfinished character at the end of the stream.
        assert_eq!(d.push(&euro[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.finish(), "");
    }
}
