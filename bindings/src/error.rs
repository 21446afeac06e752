//! The one error type of the bindings: Swift `throws RvoipError`, Kotlin `RvoipException`
//! subclasses, Python `RvoipError.*` exceptions. Each variant carries a human-readable
//! `detail` (not `message`: that name clashes with `Throwable.message` in Kotlin, uniffi-rs
//! #1434); [`RvoipError::RegistrationFailed`] carries the SIP status as well.

use rvoip_sdk::api::ApiError;

/// What can go wrong in a call into rvoip.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum RvoipError {
    /// No account or call with this id (never existed, removed, or ended).
    #[error("not found: {detail}")]
    NotFound {
        /// What was looked up.
        detail: String,
    },
    /// An argument is malformed: a URI, an address (`IP:port`), a codec name, a status code
    /// outside 300..=699, a DTMF digit outside `0-9*#A-D`, a sample rate outside 8000..=192000 Hz.
    #[error("invalid argument: {detail}")]
    InvalidArgument {
        /// Which argument and why.
        detail: String,
    },
    /// The operation does not fit the current state (answering an outgoing call, DTMF before
    /// media, an audio object used twice, a server started twice).
    #[error("invalid state: {detail}")]
    InvalidState {
        /// Why.
        detail: String,
    },
    /// A socket could not be bound or a host name not resolved.
    #[error("network: {detail}")]
    Network {
        /// The OS or resolver error.
        detail: String,
    },
    /// A media or audio failure: codec not built in, unreadable WAV file, audio device.
    #[error("media: {detail}")]
    Media {
        /// The cause.
        detail: String,
    },
    /// The endpoint was shut down.
    #[error("endpoint is shut down")]
    Shutdown,
    /// A REGISTER was refused or timed out (RFC 3261 §10.2): the final SIP status (408 for a
    /// timeout, 503 for a transport error) and its reason phrase.
    #[error("registration failed: {status} {reason}")]
    RegistrationFailed {
        /// SIP status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

impl From<ApiError> for RvoipError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound => RvoipError::NotFound {
                detail: "no such account or call".into(),
            },
            ApiError::InvalidArgument(detail) => RvoipError::InvalidArgument { detail },
            ApiError::InvalidState(detail) => RvoipError::InvalidState { detail },
            ApiError::Network(detail) => RvoipError::Network { detail },
            ApiError::Media(detail) => RvoipError::Media { detail },
            ApiError::Shutdown => RvoipError::Shutdown,
        }
    }
}

impl RvoipError {
    /// An [`RvoipError::InvalidArgument`] with `detail`.
    pub(crate) fn invalid(detail: impl Into<String>) -> RvoipError {
        RvoipError::InvalidArgument {
            detail: detail.into(),
        }
    }
}
