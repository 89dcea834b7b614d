//! Gemma 3's chat template, as token ids:
//!
//! ```text
//! <bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n
//! <start_of_turn>model\n{assistant}<end_of_turn>\n
//! <start_of_turn>user\n{user}<end_of_turn>\n
//! <start_of_turn>model\n
//! ```
//!
//! As in the model's own Jinja template: Gemma has no system role, so a leading system (or
//! developer) message is folded into the first user turn; contents are trimmed; roles must
//! alternate user/assistant starting with user; `assistant` is Gemma's `model`. The control
//! tokens come from the vocabulary by name, the text between them goes through the tokenizer,
//! so text in a message can never produce a control token. The last message must be the user's
//! (the prompt ends by opening the model's turn).

use super::ChatMessage;
use super::spm::{TokenId, Vocab};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("the vocabulary has no {0} token")]
    MissingToken(&'static str),
    #[error("messages is empty")]
    Empty,
    #[error("message {index}: role '{role}' is not one of system, developer, user, assistant")]
    UnknownRole { index: usize, role: String },
    #[error("message {index}: a system message may only come first")]
    LateSystem { index: usize },
    #[error(
        "message {index}: roles must alternate user/assistant starting with user, got '{role}'"
    )]
    NotAlternating { index: usize, role: String },
    #[error("the last message must be the user's")]
    NotEndingWithUser,
}

#[derive(Debug, Clone)]
pub struct GemmaTemplate {
    start_of_turn: TokenId,
    end_of_turn: TokenId,
}

impl GemmaTemplate {
    pub fn new(vocab: &Vocab) -> Result<Self, TemplateError> {
        let id = |name: &'static str| {
            vocab
                .token_id(name)
                .ok_or(TemplateError::MissingToken(name))
        };
        Ok(Self {
            start_of_turn: id("<start_of_turn>")?,
            end_of_turn: id("<end_of_turn>")?,
        })
    }

    /// Where generation stops: the model closes its turn, or ends the text.
    pub fn is_stop(&self, vocab: &Vocab, token: TokenId) -> bool {
        token == self.end_of_turn || token == vocab.eos()
    }

    /// The prompt's tokens, ending with the opened model turn.
    pub fn prompt(
        &self,
        vocab: &Vocab,
        messages: &[ChatMessage],
    ) -> Result<Vec<TokenId>, TemplateError> {
        let (system, turns) = match messages.first() {
            None => return Err(TemplateError::Empty),
            Some(first) if matches!(first.role.as_str(), "system" | "developer") => {
                (Some(first.content.trim()), &messages[1..])
            }
            Some(_) => (None, messages),
        };
        let offset = messages.len() - turns.len();
        let mut tokens = vec![vocab.bos()];
        for (i, message) in turns.iter().enumerate() {
            let index = i + offset;
            let expected = if i % 2 == 0 { "user" } else { "assistant" };
            let role = message.role.as_str();
            match role {
                "user" | "assistant" if role == expected => {}
                "user" | "assistant" => {
                    return Err(TemplateError::NotAlternating {
                        index,
                        role: role.into(),
                    });
                }
                "system" | "developer" => return Err(TemplateError::LateSystem { index }),
                _ => {
                    return Err(TemplateError::UnknownRole {
                        index,
                        role: role.into(),
                    });
                }
            }
            let gemma_role = if role == "user" { "user" } else { "model" };
            let mut text = format!("{gemma_role}\n");
            if i == 0
                && let Some(system) = system
            {
                text.push_str(system);
                text.push_str("\n\n");
            }
            text.push_str(message.content.trim());
            tokens.push(self.start_of_turn);
            tokens.extend(vocab.encode(&text));
            tokens.push(self.end_of_turn);
            tokens.extend(vocab.encode("\n"));
        }
        if turns.len() % 2 == 0 {
            // Empty (only a system message) or ending with the assistant.
            return Err(TemplateError::NotEndingWithUser);
        }
        tokens.push(self.start_of_turn);
        tokens.extend(vocab.encode("model\n"));
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::spm::TokenKind;
    use crate::inference::spm::tests::vocab;

    fn message(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// The prompt as text, control tokens spelled out.
    fn render(vocab: &Vocab, tokens: &[TokenId]) -> String {
        tokens
            .iter()
            .map(|&id| match vocab.piece(id) {
                Some(p) if p.kind == TokenKind::Control => p.text.clone(),
                _ => vocab.decode(&[id]),
            })
            .collect()
    }

    #[test]
    fn folds_the_system_prompt_into_the_first_user_turn() {
        let v = vocab();
        let t = GemmaTemplate::new(&v).unwrap();
        let tokens = t
            .prompt(
                &v,
                &[
                    message("system", " be brief "),
                    message("user", "hello"),
                    message("assistant", "hello world"),
                    message("user", "<end_of_turn>"),
                ],
            )
            .unwrap();
        assert_eq!(
            render(&v, &tokens),
            "<bos><start_of_turn>user\nbe brief\n\nhello<end_of_turn>\n\
             <start_of_turn>model\nhello world<end_of_turn>\n\
             <start_of_turn>user\n<end_of_turn><end_of_turn>\n<start_of_turn>model\n"
        );
        // The user's "<end_of_turn>" is text, not the control token: three turns close.
        let end = v.token_id("<end_of_turn>").unwrap();
        assert_eq!(tokens.iter().filter(|&&id| id == end).count(), 3);
        assert!(t.is_stop(&v, end) && t.is_stop(&v, v.eos()) && !t.is_stop(&v, v.bos()));
    }

    #[test]
    fn refuses_what_gemma_cannot_template() {
        let v = vocab();
        let t = GemmaTemplate::new(&v).unwrap();
        let err = |messages: &[ChatMessage]| t.prompt(&v, messages).unwrap_err();
        assert_eq!(err(&[]), TemplateError::Empty);
        assert_eq!(
            err(&[message("system", "s")]),
            TemplateError::NotEndingWithUser
        );
        assert_eq!(
            err(&[message("user", "a"), message("assistant", "b")]),
            TemplateError::NotEndingWithUser
        );
        assert!(matches!(
            err(&[message("assistant", "a")]),
            TemplateError::NotAlternating { index: 0, .. }
        ));
        assert!(matches!(
            err(&[
                message("user", "a"),
                message("system", "b"),
                message("user", "c")
            ]),
            TemplateError::LateSystem { index: 1 }
        ));
        assert!(matches!(
            err(&[message("tool", "a")]),
            TemplateError::UnknownRole { index: 0, .. }
        ));
    }
}
