//! Output: readable text by default, one JSON document with `--json`; errors on stderr
//! (`error: ...`, or `{"error": code, "message": ...}` with `--json`) and the exit code of
//! [`crate::Error::exit_code`].

use serde::Serialize;

use crate::Error;

/// A command's result: JSON as serialized, or text for people.
pub trait Report: Serialize {
    fn human(&self) -> String;
}

/// Prints a result to stdout.
pub fn print<R: Report>(report: &R, json: bool) {
    if json {
        println!("{}", to_json(report));
    } else {
        print!("{}", report.human());
    }
}

/// Prints an error to stderr.
pub fn print_error(e: &Error, json: bool) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({ "error": e.code(), "message": e.to_string() })
        );
    } else {
        eprintln!("error: {e}");
    }
}

/// Pretty JSON. Serializing the client's own plain data cannot fail; should it, the error is
/// reported as JSON too.
pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| {
        serde_json::json!({ "error": "internal", "message": e.to_string() }).to_string()
    })
}
