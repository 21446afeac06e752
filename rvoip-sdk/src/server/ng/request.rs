//! One ng request as the control core needs it: the datagram split into cookie and bencoded
//! dictionary, the command, and the keys and flags of offer and answer as Kamailio's and
//! OpenSIPS's `rtpengine` modules send them (rtpengine's `ng` protocol documentation,
//! "offer" message). Unknown keys and flags are ignored; a malformed request is an
//! [`NgError`] whose text goes into the reply's `error-reason`.

use std::net::IpAddr;

use bytes::Bytes;

use super::bencode::{self, Limits, Value};
use crate::media::relay::Latching;

/// Longest cookie answered, in bytes (Kamailio's are like `12345_678_9`).
pub const MAX_COOKIE: usize = 128;
/// Longest call-id or tag accepted, in bytes.
pub const MAX_ID: usize = 1024;

/// Why a request got an error reply (the `error-reason` text is [`NgError`]'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NgError {
    /// The body is not bencode, or past the decoder's limits.
    #[error("Failed to decode bencode message ({0})")]
    Bencode(#[from] bencode::BencodeError),
    /// The body decodes, but not to a dictionary.
    #[error("Message is not a dictionary")]
    NotDictionary,
    /// No `command` key, or not a string.
    #[error("No command in message")]
    NoCommand,
    /// A command this relay does not implement.
    #[error("Unrecognized command")]
    UnknownCommand,
    /// offer, answer, delete or query without `call-id`.
    #[error("No call-id in message")]
    NoCallId,
    /// offer or answer without `from-tag`.
    #[error("No from-tag in message")]
    NoFromTag,
    /// offer or answer without `sdp`.
    #[error("No SDP body in message")]
    NoSdp,
    /// An answer without `to-tag`.
    #[error("No to-tag in message")]
    NoToTag,
    /// A key's value is too long or of the wrong type.
    #[error("Invalid value for key '{0}'")]
    BadValue(&'static str),
    /// The SDP does not parse.
    #[error("Failed to parse SDP: {0}")]
    BadSdp(String),
    /// answer, query or delete of a call this relay does not have.
    #[error("Unknown call-id")]
    UnknownCall,
    /// answer whose from-tag is none of the call's parties.
    #[error("Unknown tag")]
    UnknownTag,
    /// The port pool is exhausted.
    #[error("Ran out of ports")]
    NoPorts,
    /// `NgConfig::max_calls` calls are live.
    #[error("Call limit reached")]
    CallLimit,
    /// `transport-protocol` asks for a conversion (RTP/AVP ↔ RTP/SAVP…): this relay forwards
    /// SRTP untouched and never terminates it, so it refuses rather than silently downgrade.
    #[error("Transport protocol conversion from {from} to {to} is not supported")]
    TransportConversion {
        /// The protocol of the offered stream.
        from: String,
        /// The protocol asked for.
        to: String,
    },
}

/// The commands of the ng protocol this relay answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `ping`: answered `pong`.
    Ping,
    /// `offer`: the SDP offer of the party named by `from-tag`.
    Offer,
    /// `answer`: the SDP answer of the party named by `to-tag`.
    Answer,
    /// `delete`: the call ends; its ports are freed.
    Delete,
    /// `query`: statistics of one call.
    Query,
    /// `list`: the call-ids of live calls.
    List,
}

/// Options of an offer or answer, from `flags`, `replace`, `ICE` and `transport-protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaFlags {
    /// `SIP-source-address`: replace the SDP's IP by the `received-from` address (the SIP
    /// source), rtpengine's behaviour before 3.8. By default (and with `trust-address`) the
    /// SDP's addresses are used, as today's rtpengine does; latching then follows NATs.
    pub sip_source_address: bool,
    /// `replace: [origin]` (or flag `replace-origin`): rewrite the `o=` address too.
    pub replace_origin: bool,
    /// How the sending party's leg latches: `symmetric` (default), `port-latching` or
    /// `strict-source` (fixed), `asymmetric`.
    pub latching: Latching,
    /// `transport-protocol` (or a profile flag such as `RTP/AVP`): the protocol the other party
    /// must see. Only the offered protocol itself (passthrough) is accepted.
    pub transport_protocol: Option<String>,
    /// `record-call` (flag, or the key `record-call: yes`): the call is recorded when the relay
    /// has a recorder (`NgControl::with_recorder`); else logged.
    pub record_call: bool,
}

/// A decoded ng request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// `call-id` (SIP Call-ID).
    pub call_id: Option<String>,
    /// `from-tag`.
    pub from_tag: Option<String>,
    /// `to-tag`.
    pub to_tag: Option<String>,
    /// `sdp`.
    pub sdp: Option<Bytes>,
    /// `received-from: [family, address]`: where the SIP message came from.
    pub received_from: Option<IpAddr>,
    /// `limit` of `list` (default 32, as rtpengine).
    pub limit: usize,
    /// Options of offer and answer.
    pub flags: MediaFlags,
}

/// Splits a datagram into cookie and body at the first space. `None` when there is no space or
/// the cookie is empty or longer than [`MAX_COOKIE`] (nothing a client could match a reply by).
pub fn split_cookie(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = datagram.iter().position(|&b| b == b' ')?;
    let (cookie, rest) = datagram.split_at(sp);
    if cookie.is_empty() || cookie.len() > MAX_COOKIE {
        return None;
    }
    Some((cookie, rest.get(1..).unwrap_or_default()))
}

fn text(v: &Value, key: &'static str) -> Result<String, NgError> {
    match v.as_str() {
        // An empty tag or call-id would match a party not yet known.
        Some(s) if !s.is_empty() && s.len() <= MAX_ID => Ok(s.to_string()),
        _ => Err(NgError::BadValue(key)),
    }
}

fn opt_text(d: &Value, key: &'static str) -> Result<Option<String>, NgError> {
    d.get(key).map(|v| text(v, key)).transpose()
}

/// The text items of a list value (non-text items skipped); a lone string counts as one item.
fn words(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::List(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(v) => v.as_str().into_iter().collect(),
        None => Vec::new(),
    }
}

/// Whether `w` names an RTP transport protocol (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`…).
fn is_profile(w: &str) -> bool {
    let u = w.to_ascii_uppercase();
    u.starts_with("RTP/") || u.starts_with("UDP/TLS/RTP/")
}

impl MediaFlags {
    fn from_dict(d: &Value) -> MediaFlags {
        let mut f = MediaFlags::default();
        for w in words(d.get("flags")) {
            match w.to_ascii_lowercase().as_str() {
                "trust-address" => f.sip_source_address = false,
                "sip-source-address" => f.sip_source_address = true,
                "symmetric" => f.latching = Latching::Symmetric,
                "asymmetric" => f.latching = Latching::Asymmetric,
                "port-latching" | "strict-source" => f.latching = Latching::Fixed,
                "replace-origin" => f.replace_origin = true,
                "record-call" => f.record_call = true,
                _ if is_profile(w) => f.transport_protocol = Some(w.to_ascii_uppercase()),
                _ => {} // unknown flags are ignored, as rtpengine does
            }
        }
        for w in words(d.get("replace")) {
            if w.eq_ignore_ascii_case("origin") {
                f.replace_origin = true;
            }
        }
        if let Some(p) = d.get("transport-protocol").and_then(Value::as_str) {
            if is_profile(p) {
                f.transport_protocol = Some(p.to_ascii_uppercase());
            }
        }
        if d.get("record-call")
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("on"))
        {
            f.record_call = true;
        }
        f
    }
}

impl Request {
    /// Decodes a request body (the bencoded dictionary after the cookie) under `limits`.
    /// Errors: [`NgError`] (malformed bencode, not a dictionary, no or unknown command, a key
    /// of the wrong type, a missing key the command needs).
    pub fn decode(body: &[u8], limits: &Limits) -> Result<Request, NgError> {
        let d = bencode::decode(&Bytes::copy_from_slice(body), limits)?;
        if !matches!(d, Value::Dict(_)) {
            return Err(NgError::NotDictionary);
        }
        let command = match d.get("command").and_then(Value::as_str) {
            Some(c) => match c.to_ascii_lowercase().as_str() {
                "ping" => Command::Ping,
                "offer" => Command::Offer,
                "answer" => Command::Answer,
                "delete" => Command::Delete,
                "query" => Command::Query,
                "list" => Command::List,
                _ => return Err(NgError::UnknownCommand),
            },
            None => return Err(NgError::NoCommand),
        };
        let received_from = match d.get("received-from").and_then(Value::as_list) {
            Some([_, addr, ..]) => addr.as_str().and_then(|a| a.parse().ok()),
            _ => None,
        };
        let limit = match d.get("limit") {
            Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
            Some(v) => v.as_str().and_then(|s| s.parse().ok()).unwrap_or(32),
            None => 32,
        };
        let req = Request {
            command,
            call_id: opt_text(&d, "call-id")?,
            from_tag: opt_text(&d, "from-tag")?,
            to_tag: opt_text(&d, "to-tag")?,
            sdp: match d.get("sdp") {
                Some(v) => Some(v.as_bytes().cloned().ok_or(NgError::BadValue("sdp"))?),
                None => None,
            },
            received_from,
            limit,
            flags: MediaFlags::from_dict(&d),
        };
        match command {
            Command::Ping | Command::List => {}
            Command::Delete | Command::Query => {
                req.call_id.as_ref().ok_or(NgError::NoCallId)?;
            }
            Command::Offer | Command::Answer => {
                req.call_id.as_ref().ok_or(NgError::NoCallId)?;
                req.from_tag.as_ref().ok_or(NgError::NoFromTag)?;
                req.sdp.as_ref().ok_or(NgError::NoSdp)?;
                if command == Command::Answer {
                    req.to_tag.as_ref().ok_or(NgError::NoToTag)?;
                }
            }
        }
        Ok(req)
    }
}
