//! The engine's error type, shared by every core module and mapped to C status codes by the FFI.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine. Each variant carries a message that names the
/// offending input, so that a user can act on it without reading code.
// Not `#[non_exhaustive]`: the faces map every variant to their status codes, and a new
// variant must fail their build until they do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is out of its valid range or inconsistent with another argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Array shapes or buffer lengths do not agree.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// Input data contains NaN or infinite values where finite values are required.
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// An image or array would be too large to allocate or index.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },
    /// A file exists but its contents are not in a supported format or are truncated.
    #[error("{path}: {message}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A model package is missing, corrupt or inconsistent with its manifest.
    #[error("model: {0}")]
    Model(String),
    /// The inference runtime (ONNX Runtime) failed or is unavailable.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The operation was cancelled by the caller (progress callback or cancel flag).
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::ShapeMismatch(msg.into())
    }

    /// Shorthand for [`Error::Format`].
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
