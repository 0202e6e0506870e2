//! Running the `spectral-studio` binary from a test: `ok` for commands that must succeed (their
//! stdout), `fails_with` for those that must fail with exit code 1 and a message.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spectral-studio")).args(args).current_dir(dir).output().expect("the binary runs")
}

/// stdout of a command that must succeed.
pub fn ok(args: &[&str], dir: &Path) -> String {
    let out = run(args, dir);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command that must fail with exit code 1 and `needle` in its error.
pub fn fails_with(args: &[&str], dir: &Path, needle: &str) {
    let out = run(args, dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
    assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
}

/// The pretty-printed JSON object that ends `out` (after any JSON-lines events).
pub fn last_json(out: &str) -> serde_json::Value {
    serde_json::from_str(&out[out.rfind("\n{\n").map_or(0, |i| i + 1)..]).unwrap_or_else(|e| panic!("no JSON summary ({e}) in: {out}"))
}
