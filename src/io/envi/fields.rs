//! Stages 1 and 2 of header parsing: text → entries → checked fields.
//!
//! 1. [`parse_entries`]: the `ENVI` magic line, then `key = value` lines; a value that opens
//!    with `{` runs to the first `}`, across lines. Keys are case-insensitive (stored
//!    lower-case, inner spaces collapsed). Blank lines, `;` comments and lines without `=` are
//!    skipped, as ENVI itself does. A later duplicate key wins.
//! 2. [`Fields`]: typed getters whose errors name the key and its line
//!    ("header line 7: lines = three: expected a whole number").

use std::collections::HashMap;
use std::fmt;

/// A header problem: the message, and the 1-based header line it was found on, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    pub line: Option<usize>,
    pub message: String,
}

impl HeaderError {
    pub(super) fn at(line: usize, message: impl Into<String>) -> Self {
        HeaderError { line: Some(line), message: message.into() }
    }
    pub(super) fn general(message: impl Into<String>) -> Self {
        HeaderError { line: None, message: message.into() }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "header line {n}: {}", self.message),
            None => write!(f, "header: {}", self.message),
        }
    }
}

pub(super) type HResult<T> = std::result::Result<T, HeaderError>;

/// One `key = value` of the header text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Lower-case, inner whitespace collapsed to single spaces.
    pub key: String,
    /// The value; for `{...}` values, the text between the braces (newlines kept).
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
    /// Whether the value was written in braces.
    pub braced: bool,
}

/// Stage 1: split header text into entries.
pub fn parse_entries(text: &str) -> HResult<Vec<Entry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty());
    match first {
        Some(i) if lines[i].trim().eq_ignore_ascii_case("envi") => {}
        Some(i) => {
            let shown: String = lines[i].trim().chars().take(40).collect();
            return Err(HeaderError::at(
                i + 1,
                format!("not an ENVI header: first line is '{shown}', expected 'ENVI'"),
            ));
        }
        None => return Err(HeaderError::general("the header is empty (expected 'ENVI' on the first line)")),
    }
    let mut entries = Vec::new();
    let mut i = first.unwrap_or(0) + 1;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else { continue };
        let key = key.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        if key.is_empty() {
            return Err(HeaderError::at(line_no, "a value with no key before '='"));
        }
        let rest = rest.trim();
        let Some(after_brace) = rest.strip_prefix('{') else {
            entries.push(Entry { key, value: rest.to_string(), line: line_no, braced: false });
            continue;
        };
        // A braced value runs to the first '}', possibly lines later.
        let mut value = String::new();
        let mut piece = after_brace;
        loop {
            if let Some(end) = piece.find('}') {
                value.push_str(&piece[..end]);
                break;
            }
            value.push_str(piece);
            if i >= lines.len() {
                return Err(HeaderError::at(line_no, format!("the '{{' opened for '{key}' is never closed")));
            }
            value.push('\n');
            piece = lines[i].trim();
            i += 1;
        }
        entries.push(Entry { key, value: value.trim().to_string(), line: line_no, braced: true });
    }
    Ok(entries)
}

/// Stage 2: entries by key (a later duplicate wins), with checked getters.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    by_key: HashMap<String, Entry>,
}

impl Fields {
    pub fn new(entries: Vec<Entry>) -> Fields {
        Fields { by_key: entries.into_iter().map(|e| (e.key.clone(), e)).collect() }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.by_key.get(key)
    }

    pub(super) fn error_at(&self, key: &str, message: impl Into<String>) -> HeaderError {
        HeaderError { line: self.get(key).map(|e| e.line), message: message.into() }
    }

    pub(super) fn required(&self, key: &str) -> HResult<&Entry> {
        self.get(key).ok_or_else(|| HeaderError::general(format!("missing required key '{key}'")))
    }

    /// A single value as text, trimmed; multi-line values have their lines trimmed.
    pub(super) fn text(&self, key: &str) -> Option<String> {
        let e = self.get(key)?;
        let joined: Vec<&str> = e.value.lines().map(str::trim).collect();
        Some(joined.join("\n").trim().to_string())
    }

    fn parse_usize(&self, e: &Entry) -> HResult<usize> {
        let v = e.value.trim();
        // Some writers put "0.0" or "1.000000" where an integer belongs; accept whole floats.
        if let Ok(n) = v.parse::<usize>() {
            return Ok(n);
        }
        match v.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f >= 0.0 && f < 2f64.powi(52) => Ok(f as usize),
            _ => Err(HeaderError::at(e.line, format!("{} = {v}: expected a whole number", e.key))),
        }
    }

    pub(super) fn required_usize(&self, key: &str) -> HResult<usize> {
        self.parse_usize(self.required(key)?)
    }

    pub(super) fn positive(&self, key: &str) -> HResult<usize> {
        let n = self.required_usize(key)?;
        if n == 0 {
            return Err(self.error_at(key, format!("{key} = 0: must be at least 1")));
        }
        Ok(n)
    }

    pub(super) fn optional_usize(&self, key: &str) -> HResult<Option<usize>> {
        self.get(key).map(|e| self.parse_usize(e)).transpose()
    }

    pub(super) fn optional_f64(&self, key: &str) -> HResult<Option<f64>> {
        let Some(e) = self.get(key) else { return Ok(None) };
        parse_f64(e.value.trim())
            .map(Some)
            .ok_or_else(|| HeaderError::at(e.line, format!("{key} = {}: expected a number", e.value.trim())))
    }

    /// A `{a, b, c}` list (or a single bare value) of numbers.
    pub(super) fn f64_list(&self, key: &str) -> HResult<Option<Vec<f64>>> {
        let Some(e) = self.get(key) else { return Ok(None) };
        let mut out = Vec::new();
        for (i, item) in split_list(&e.value).into_iter().enumerate() {
            let v = parse_f64(item)
                .ok_or_else(|| HeaderError::at(e.line, format!("{key}: item {} '{item}' is not a number", i + 1)))?;
            out.push(v);
        }
        Ok(Some(out))
    }

    pub(super) fn list(&self, key: &str) -> Option<Vec<String>> {
        let e = self.get(key)?;
        Some(split_list(&e.value).into_iter().map(str::to_string).collect())
    }

    pub(super) fn expect_len(&self, key: &str, got: usize, want: usize) -> HResult<()> {
        if got != want {
            return Err(self.error_at(key, format!("{got} {key} values given for {want} bands")));
        }
        Ok(())
    }
}

/// Comma-separated items, trimmed; a trailing empty item (`{1, 2, }`) is dropped.
fn split_list(value: &str) -> Vec<&str> {
    let mut items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.last() == Some(&"") {
        items.pop();
    }
    items
}

/// A finite number, or NaN spelled "nan" (SPy writes `data ignore value = NaN`).
fn parse_f64(text: &str) -> Option<f64> {
    let v: f64 = text.trim().parse().ok()?;
    (!v.is_infinite()).then_some(v)
}
