//! The job plaintext: one line of OpenAI's Batch API (`{"method", "url", "body"}`, see
//! worker/README.md), built from a prompt, from texts to embed, or read from a file.

use std::io::Read as _;
use std::path::Path;

use enclave_cloud_common::ModelId;
use protocol::job::{CHAT_URL, EMBEDDINGS_URL, JobRequest};
use serde_json::json;

use crate::{Error, read_file};

/// What the user asked for on the command line.
#[derive(Debug, Clone)]
pub enum InputSpec {
    /// A chat completion with one user message (and an optional system message).
    Prompt {
        prompt: String,
        system: Option<String>,
        max_tokens: Option<u32>,
        temperature: Option<f32>,
    },
    /// Embeddings of these texts.
    Embed(Vec<String>),
    /// A file (or `-` for stdin) holding one OpenAI Batch API line.
    File(std::path::PathBuf),
}

/// The request the node will run. The body's `model` is the job's model id (the node replaces
/// it with the backend model that id maps to; a file's own `model` is replaced the same way).
pub fn build(spec: &InputSpec, model: &ModelId) -> Result<JobRequest, Error> {
    match spec {
        InputSpec::Prompt {
            prompt,
            system,
            max_tokens,
            temperature,
        } => {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": prompt}));
            let mut body = json!({"model": model.as_str(), "messages": messages});
            if let Some(n) = max_tokens {
                body["max_tokens"] = json!(n);
            }
            if let Some(t) = temperature {
                body["temperature"] = json!(t);
            }
            Ok(JobRequest {
                method: "POST".into(),
                url: CHAT_URL.into(),
                body,
            })
        }
        InputSpec::Embed(texts) => {
            let input = match texts.as_slice() {
                [] => return Err(Error::BadInput("--embed needs at least one text".into())),
                [one] => json!(one),
                many => json!(many),
            };
            Ok(JobRequest {
                method: "POST".into(),
                url: EMBEDDINGS_URL.into(),
                body: json!({"model": model.as_str(), "input": input}),
            })
        }
        InputSpec::File(path) => {
            let bytes = if path == Path::new("-") {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|source| Error::Read {
                        path: path.clone(),
                        source,
                    })?;
                buf
            } else {
                read_file(path)?
            };
            parse_batch_line(&bytes).map_err(|message| Error::Invalid {
                path: path.clone(),
                message,
            })
        }
    }
}

/// One Batch API request: a JSON object with `url` and `body` (`method` defaults to POST,
/// `custom_id` is dropped: it means nothing to a single job).
pub fn parse_batch_line(bytes: &[u8]) -> Result<JobRequest, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = match lines.as_slice() {
        [] => return Err("empty: expected one OpenAI Batch API line".into()),
        [one] => *one,
        // A pretty-printed object spans lines; accept it if the whole text is one object.
        _ if serde_json::from_str::<serde_json::Value>(text).is_ok() => text,
        many => {
            return Err(format!(
                "{} lines: a job carries one request (submit one job per line)",
                many.len()
            ));
        }
    };
    let request: JobRequest = serde_json::from_str(line).map_err(|e| {
        format!("not an OpenAI Batch API line {{\"method\", \"url\", \"body\"}}: {e}")
    })?;
    if request.url != CHAT_URL && request.url != EMBEDDINGS_URL {
        return Err(format!(
            "url '{}' is not supported: use {CHAT_URL} or {EMBEDDINGS_URL}",
            request.url
        ));
    }
    if !request.body.is_object() {
        return Err("body must be a JSON object".into());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelId {
        "minilm".parse().unwrap()
    }

    #[test]
    fn prompt_and_embeddings() {
        let r = build(
            &InputSpec::Prompt {
                prompt: "hi".into(),
                system: Some("be brief".into()),
                max_tokens: Some(16),
                temperature: None,
            },
            &model(),
        )
        .unwrap();
        assert_eq!(r.url, CHAT_URL);
        assert_eq!(r.body["messages"][0]["role"], "system");
        assert_eq!(r.body["messages"][1]["content"], "hi");
        assert_eq!(r.body["max_tokens"], 16);
        assert!(r.body.get("temperature").is_none());
        assert_eq!(r.body["model"], "minilm");

        let one = build(&InputSpec::Embed(vec!["a".into()]), &model()).unwrap();
        assert_eq!(one.url, EMBEDDINGS_URL);
        assert_eq!(one.body["input"], "a");
        let two = build(&InputSpec::Embed(vec!["a".into(), "b".into()]), &model()).unwrap();
        assert_eq!(two.body["input"], json!(["a", "b"]));
        assert!(build(&InputSpec::Embed(vec![]), &model()).is_err());
    }

    #[test]
    fn batch_lines() {
        let line = br#"{"custom_id":"r1","method":"POST","url":"/v1/embeddings","body":{"model":"x","input":"hello"}}"#;
        let r = parse_batch_line(line).unwrap();
        assert_eq!(r.url, EMBEDDINGS_URL);
        assert_eq!(r.body["input"], "hello");
        let reencoded = serde_json::to_string(&r).unwrap();
        assert!(!reencoded.contains("custom_id"), "{reencoded}");

        let pretty =
            b"{\n  \"url\": \"/v1/chat/completions\",\n  \"body\": {\"messages\": []}\n}\n";
        assert_eq!(parse_batch_line(pretty).unwrap().method, "POST");

        for (bad, why) in [
            (&b""[..], "empty"),
            (b"\n\n", "empty"),
            (b"{\"url\":\"/v1/embeddings\",\"body\":{}}\n{\"url\":\"/v1/embeddings\",\"body\":{}}", "2 lines"),
            (b"not json", "not an OpenAI Batch API line"),
            (b"{\"url\":\"/v1/images\",\"body\":{}}", "not supported"),
            (b"{\"url\":\"/v1/embeddings\",\"body\":[1]}", "JSON object"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let err = parse_batch_line(bad).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.jsonl");
        let err = build(&InputSpec::File(missing), &model()).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{}").unwrap();
        let err = build(&InputSpec::File(bad), &model())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.jsonl"), "{err}");
    }
}
