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

/// How a column's cells line up: text to the left, amounts to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table: a header row and rows of cells, columns as wide as their widest cell and
/// separated by two spaces (cells never hold two spaces in a row, so a reader can split on
/// them). Every list-like text output goes through it.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers (upper case by convention) and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print as `-`, empty ones too (so every row has every column).
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.columns.len(), String::new());
        for cell in &mut row {
            if cell.is_empty() {
                *cell = "-".into();
            }
        }
        self.rows.push(row);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, each line starting with `indent` and ending with a newline (no trailing
    /// spaces).
    pub fn render(&self, indent: &str) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(name)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        let mut out = String::new();
        for cells in std::iter::once(header).chain(
            self.rows
                .iter()
                .map(|r| r.iter().map(String::as_str).collect()),
        ) {
            let mut line = indent.to_owned();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}
