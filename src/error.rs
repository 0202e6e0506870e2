//! One error type for the library. Every variant that comes from user input names the file
//! (and, where it helps, the field or line) so the message alone tells the user what to fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A file was read but its contents are not what its format promises.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// A value given by the caller (CLI flag, option, argument) cannot be used.
    #[error("{0}")]
    Invalid(String),

    /// A tensor computation failed (shape mismatch, device unavailable, out of memory).
    #[error("tensor computation failed: {0}")]
    Tensor(String),

    /// The user cancelled the job; not a failure, but the result is incomplete.
    #[error("cancelled")]
    Cancelled,
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// Shorthand for `Err(Error::invalid(format!(..)))`.
#[macro_export]
macro_rules! bail_invalid {
    ($($arg:tt)*) => { return Err($crate::Error::invalid(format!($($arg)*))) };
}
