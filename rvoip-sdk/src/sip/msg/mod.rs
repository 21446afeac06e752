//! SIP messages (RFC 3261 §7): types, a strict parser and a serializer.
//!
//! Parsing is split in two levels, as in most fast SIP stacks:
//! 1. [`Message::parse`] frames the message (start line, header fields, body by Content-Length),
//!    unfolds continuation lines, maps compact header names (§7.3.3) and splits comma-joined values
//!    of list headers (§7.3.1) into separate [`Header`] entries. Header values are zero-copy
//!    [`ByteString`] slices of the received buffer.
//! 2. Typed views ([`Via`], [`NameAddr`], [`CSeq`], [`Uri`]) parse one header value on demand.
//!
//! [`validate_request`] applies the checks a proxy or UAS makes before processing
//! (mandatory headers, single-value headers, CSeq method, Content-Length), so that hostile input
//! becomes a 400 (or 505) instead of a panic; [`error_response`] builds that response for input
//! that did not parse at all. [`frame`] splits a TCP stream into messages (§18.3) — see `shared/conformance/rfc4475/MANIFEST.tsv`.

mod date;
mod header;
mod parse;
mod serialize;
mod typed;
mod uri;
mod validate;

#[cfg(test)]
mod tests;

pub use date::{civil_from_days, sip_date};
pub use header::{Header, HeaderName, Headers};
pub use parse::{Frame, Limits, ParseError, ParseErrorKind, frame};
pub use typed::{Auth, CSeq, NameAddr, Params, Via};
pub use uri::{Scheme, Uri};
pub use validate::{Rejection, error_response, validate_request};

use bytes::Bytes;
pub use bytestring::ByteString;

/// The only SIP version this element speaks (RFC 3261 §7.1).
pub const SIP_VERSION: &str = "SIP/2.0";

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// A SIP method (RFC 3261 §7.1 and extensions). Unknown methods are legal (`Extension`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261 §9)
    Cancel,
    /// REGISTER (RFC 3261 §10)
    Register,
    /// OPTIONS (RFC 3261 §11)
    Options,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other method token, kept exactly as received (methods are case-sensitive).
    Extension(ByteString),
}

impl Method {
    /// Maps a method token (case-sensitive, §7.1) to a `Method`; unknown tokens become `Extension`.
    /// The caller must have checked that `s` is a `token` (§25.1).
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(ByteString::from(other)),
        }
    }

    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP request (RFC 3261 §7.1).
#[derive(Debug, Clone)]
pub struct Request {
    /// The method of the Request-Line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields in received order; list headers hold one value per entry.
    pub headers: Headers,
    /// The message body (exactly Content-Length octets).
    pub body: Bytes,
}

/// A SIP response (RFC 3261 §7.2).
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (may be empty, may be any UTF-8 text).
    pub reason: ByteString,
    /// Header fields in received order; list headers hold one value per entry.
    pub headers: Headers,
    /// The message body (exactly Content-Length octets).
    pub body: Bytes,
}

/// A SIP message: request or response.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The header fields of either kind of message.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// The standard reason phrase for a status code (RFC 3261 §21), or `""` if none is defined.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    }
}
