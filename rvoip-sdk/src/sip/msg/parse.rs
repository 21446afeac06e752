//! The strict parser (RFC 3261 §7, §25) and TCP stream framing (§18.3).
//!
//! The header section is validated as UTF-8 once and every header value is a zero-copy
//! [`ByteString`] slice of the received buffer; only folded header lines (continuation lines)
//! are copied, to unfold them into one line.

use super::*;
use bytes::Bytes;

/// Parser limits (DESIGN.md: explicit and configurable).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum message size in bytes (start line + headers + body). Larger: `TooLarge` (513).
    pub max_message_bytes: usize,
    /// Maximum number of header entries after list splitting. More: `TooManyHeaders`.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_535,
            max_headers: 128,
        }
    }
}

/// What is wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The start line is malformed (extra SP, trailing SP, `<>` or LWS in the Request-URI, bad code).
    StartLine,
    /// The SIP version is not `SIP/2.0` (answer 505).
    Version,
    /// A header line is malformed (no colon, bad name, unbalanced quotes or brackets, not UTF-8).
    Header,
    /// Content-Length is missing on a stream, negative, not a number, repeated or larger than the data.
    ContentLength,
    /// The message is larger than `Limits::max_message_bytes`.
    TooLarge,
    /// More headers than `Limits::max_headers`.
    TooManyHeaders,
    /// The input ends before the end of the header section or body (stream: wait for more bytes).
    Incomplete,
    /// A URI could not be parsed.
    Uri,
    /// A typed header value could not be parsed.
    Value,
}

/// A parse failure with a short static description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {what}")]
pub struct ParseError {
    /// The category, which decides the response code.
    pub kind: ParseErrorKind,
    /// A short static description for logs and the 400 reason phrase.
    pub what: &'static str,
}

impl ParseError {
    /// A new error of `kind`.
    pub const fn new(kind: ParseErrorKind, what: &'static str) -> ParseError {
        ParseError { kind, what }
    }
}

#[inline]
pub(super) fn err<T>(kind: ParseErrorKind, what: &'static str) -> Result<T, ParseError> {
    Err(ParseError { kind, what })
}

// ---------------------------------------------------------------------------------------------
// Character classes (RFC 3261 §25.1)

const fn build_token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

/// `token` characters (§25.1).
pub(super) static TOKEN: [bool; 256] = build_token_table();

#[inline]
pub(super) fn is_token_char(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Whether `s` is a non-empty `token`.
#[inline]
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

#[inline]
pub(super) fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Trims SP, HT, CR and LF on both ends (LWS after unfolding is only SP/HT, but typed parsers
/// may be handed raw text).
#[inline]
pub(super) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let lws = |c: u8| c == b' ' || c == b'\t' || c == b'\r' || c == b'\n';
    let mut start = 0;
    let mut end = b.len();
    while start < end && lws(b[start]) {
        start += 1;
    }
    while end > start && lws(b[end - 1]) {
        end -= 1;
    }
    // Only ASCII bytes were skipped, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// Index of the first byte at or after `i` that is not SP/HT.
#[inline]
pub(super) fn skip_wsp(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_wsp(b[i]) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not a token character.
#[inline]
pub(super) fn take_token(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_token_char(b[i]) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`: the index just after the closing quote of the quoted-string (quoted-pairs
/// skipped), or an error if it is not terminated.
pub(super) fn end_of_quoted(b: &[u8], i: usize) -> Result<usize, ParseError> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    err(ParseErrorKind::Value, "unterminated quoted string")
}

/// Parses a run of decimal digits into a u64, `None` if empty, not all digits or overflowing.
#[inline]
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n)
}

/// Content-Length value (§20.14): 1*DIGIT, no sign.
pub(super) fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    match parse_u64(trim_lws(v)) {
        Some(n) if n <= u32::MAX as u64 => Ok(n as usize),
        _ => err(
            ParseErrorKind::ContentLength,
            "Content-Length is not a valid number",
        ),
    }
}

/// The method for a token, slicing `src` for extension methods (no allocation).
pub(super) fn method_of(src: &ByteString, tok: &str) -> Method {
    match tok {
        "INVITE" | "ACK" | "BYE" | "CANCEL" | "REGISTER" | "OPTIONS" | "INFO" | "UPDATE"
        | "PRACK" | "SUBSCRIBE" | "NOTIFY" | "REFER" | "MESSAGE" | "PUBLISH" => {
            Method::from_token(tok)
        }
        _ => Method::Extension(src.slice_ref(tok)),
    }
}

/// Calls `f` with each top-level comma-separated element of `value` (commas inside quoted
/// strings and `<...>` do not split), trimmed. Empty elements are passed too.
pub(super) fn split_list(value: &ByteString, mut f: impl FnMut(ByteString)) {
    let s: &str = value;
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut angle = false;
    while i < b.len() {
        match b[i] {
            b'"' if !angle => {
                // An unterminated quote swallows the rest; the typed parser reports it.
                i = end_of_quoted(b, i).unwrap_or(b.len());
                continue;
            }
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => {
                f(value.slice_ref(trim_lws(&s[start..i])));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    f(value.slice_ref(trim_lws(&s[start..])));
}

// ---------------------------------------------------------------------------------------------
// Message parsing

/// Finds the empty line that ends the header section (built once, not per message).
pub(super) fn find_end_of_headers(b: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(b)
}

#[allow(clippy::large_enum_variant)]
enum StartLine {
    Request(Method, Uri),
    Response(u16, ByteString),
}

/// Finds the CRLF that ends the line starting at `from`: the index of its CR. A bare CR or LF
/// is an error; no CRLF at all is `None`.
#[inline]
fn find_crlf(b: &[u8], from: usize) -> Result<Option<usize>, ParseError> {
    let rest = match b.get(from..) {
        Some(r) => r,
        None => return Ok(None),
    };
    match memchr::memchr2(b'\r', b'\n', rest) {
        None => Ok(None),
        Some(k) => {
            let i = from + k;
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                Ok(Some(i))
            } else {
                err(
                    ParseErrorKind::Header,
                    "bare CR or LF in the header section",
                )
            }
        }
    }
}

fn parse_start_line(head: &ByteString, line: &str) -> Result<StartLine, ParseError> {
    use ParseErrorKind::{StartLine as SL, Version};
    let b = line.as_bytes();
    if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = match memchr::memchr(b' ', b) {
            Some(i) => i,
            None => return err(SL, "status line without SP"),
        };
        if !line[..sp].eq_ignore_ascii_case(SIP_VERSION) {
            return err(Version, "unsupported SIP version");
        }
        let rest = &b[sp + 1..];
        if rest.len() < 3
            || !rest[..3].iter().all(u8::is_ascii_digit)
            || rest.get(3).is_some_and(|&c| c != b' ')
        {
            return err(SL, "status code is not 3 digits");
        }
        let status = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        if !(100..=699).contains(&status) {
            return err(SL, "status code out of range");
        }
        let reason = if rest.len() > 4 { &line[sp + 5..] } else { "" };
        return Ok(StartLine::Response(status, head.slice_ref(reason)));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = match memchr::memchr(b' ', b) {
        Some(i) => i,
        None => return err(SL, "request line without SP"),
    };
    let method = &line[..sp1];
    if !is_token(method) {
        return err(SL, "method is not a token");
    }
    let rest = &line[sp1 + 1..];
    let sp2 = match memchr::memchr(b' ', rest.as_bytes()) {
        Some(i) => i,
        None => return err(SL, "request line without version"),
    };
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty() {
        return err(SL, "extra SP in the request line");
    }
    if version.is_empty() || version.bytes().any(|c| c == b' ' || c == b'\t') {
        return err(SL, "extra SP or LWS in the request line");
    }
    if !version.eq_ignore_ascii_case(SIP_VERSION) {
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            return err(Version, "unsupported SIP version");
        }
        return err(SL, "bad SIP version");
    }
    let uri =
        Uri::parse(&head.slice_ref(uri)).map_err(|_| ParseError::new(SL, "bad Request-URI"))?;
    Ok(StartLine::Request(method_of(head, method), uri))
}

/// Replaces each `*WSP CRLF 1*WSP` of a folded value with one SP.
fn unfold(v: &str) -> ByteString {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find("\r\n") {
        out.push_str(rest[..i].trim_end_matches([' ', '\t']));
        out.push(' ');
        rest = rest[i + 2..].trim_start_matches([' ', '\t']);
    }
    out.push_str(rest);
    ByteString::from(out)
}

struct Head {
    start: StartLine,
    headers: Headers,
    content_length: Option<usize>,
}

fn parse_head(head: &ByteString, limits: &Limits) -> Result<Head, ParseError> {
    let s: &str = head;
    let b = s.as_bytes();
    let eol = match find_crlf(b, 0)? {
        Some(i) => i,
        None => return err(ParseErrorKind::Incomplete, "no CRLF after the start line"),
    };
    let start = parse_start_line(head, &s[..eol])?;
    let mut pos = eol + 2;
    let mut headers = Headers::with_capacity(32);
    let mut content_length = None;
    while pos < b.len() {
        let lstart = pos;
        let mut eol = match find_crlf(b, pos)? {
            Some(i) => i,
            None => return err(ParseErrorKind::Incomplete, "header line without CRLF"),
        };
        pos = eol + 2;
        let mut folded = false;
        while pos < b.len() && is_wsp(b[pos]) {
            folded = true;
            eol = match find_crlf(b, pos)? {
                Some(i) => i,
                None => return err(ParseErrorKind::Incomplete, "header line without CRLF"),
            };
            pos = eol + 2;
        }
        let line = &s[lstart..eol];
        // field-name = token, then HCOLON = *( SP / HTAB ) ":"
        let lb = line.as_bytes();
        let name_end = take_token(lb, 0);
        let colon = skip_wsp(lb, name_end);
        if name_end == 0 || lb.get(colon) != Some(&b':') {
            return if memchr::memchr(b':', lb).is_some() {
                err(ParseErrorKind::Header, "header name is not a token")
            } else {
                err(ParseErrorKind::Header, "header line without a colon")
            };
        }
        let name = &line[..name_end];
        let raw = trim_lws(&line[colon + 1..]);
        let name = match HeaderName::lookup(name) {
            Some(n) => n,
            None => HeaderName::Other(head.slice_ref(name)),
        };
        let value = if folded {
            unfold(raw)
        } else {
            head.slice_ref(raw)
        };
        if name == HeaderName::ContentLength {
            if content_length.is_some() {
                return err(
                    ParseErrorKind::ContentLength,
                    "several Content-Length values",
                );
            }
            content_length = Some(parse_content_length(&value)?);
        }
        if name.is_list() && memchr::memchr(b',', value.as_bytes()).is_some() {
            split_list(&value, |v| {
                headers.0.push(Header {
                    name: name.clone(),
                    value: v,
                })
            });
        } else {
            headers.0.push(Header { name, value });
        }
        if headers.0.len() > limits.max_headers {
            return err(ParseErrorKind::TooManyHeaders, "too many header fields");
        }
    }
    Ok(Head {
        start,
        headers,
        content_length,
    })
}

impl Message {
    /// Parses one datagram or framed message (RFC 3261 §7).
    ///
    /// Leading CRLFs before the start line are skipped (§7.5). Bytes beyond Content-Length are
    /// ignored (RFC 4475 dblreq); without Content-Length the body is the rest of the buffer; a
    /// Content-Length larger than the data is an error (clerr). A datagram whose header section
    /// ends at the end of the buffer without the empty line is accepted with an empty body.
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        if buf.len() > limits.max_message_bytes {
            return err(ParseErrorKind::TooLarge, "message exceeds the size limit");
        }
        let start = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(buf.len());
        let rest = &buf[start..];
        if rest.is_empty() {
            return err(ParseErrorKind::Incomplete, "empty message");
        }
        let (head_len, body_off) = match find_end_of_headers(rest) {
            Some(i) => (i + 2, i + 4),
            None if rest.ends_with(b"\r\n") => (rest.len(), rest.len()),
            None => return err(ParseErrorKind::Incomplete, "no end of the header section"),
        };
        let head = ByteString::try_from(buf.slice(start..start + head_len))
            .map_err(|_| ParseError::new(ParseErrorKind::Header, "header section is not UTF-8"))?;
        let Head {
            start: line,
            headers,
            content_length,
        } = parse_head(&head, limits)?;
        let body_start = start + body_off;
        let body = match content_length {
            Some(n) => match body_start.checked_add(n) {
                Some(end) if end <= buf.len() => buf.slice(body_start..end),
                _ => {
                    return err(
                        ParseErrorKind::ContentLength,
                        "Content-Length exceeds the data",
                    );
                }
            },
            None => buf.slice(body_start..),
        };
        Ok(match line {
            StartLine::Request(method, uri) => Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            StartLine::Response(status, reason) => Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Stream framing

/// The result of [`frame`]: what to take off the front of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Leading CR/LF keep-alive octets (RFC 5626 §3.5.1) to drop.
    Keepalive(usize),
    /// The total length (headers + body) of the first complete message.
    Message(usize),
}

/// Stream framing for TCP (RFC 3261 §18.3): skips leading CRLF keep-alives, finds the end of
/// the header section and requires Content-Length. `Ok(None)`: need more bytes.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, ParseError> {
    let ka = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    if ka > 0 {
        return Ok(Some(Frame::Keepalive(ka)));
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let window = &buf[..buf.len().min(limits.max_message_bytes.saturating_add(4))];
    let i = match find_end_of_headers(window) {
        Some(i) => i,
        None if buf.len() > limits.max_message_bytes => {
            return err(
                ParseErrorKind::TooLarge,
                "header section exceeds the size limit",
            );
        }
        None => return Ok(None),
    };
    let head = &buf[..i + 2];
    let cl = match stream_content_length(head)? {
        Some(n) => n,
        None => {
            return err(
                ParseErrorKind::ContentLength,
                "no Content-Length on a stream",
            );
        }
    };
    let total = (i + 4).saturating_add(cl);
    if total > limits.max_message_bytes {
        return err(ParseErrorKind::TooLarge, "message exceeds the size limit");
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame::Message(total)))
}

/// Finds the Content-Length of a header section leniently (line by line, no full parse).
fn stream_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for line in head.split(|&c| c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&c| is_wsp(c)) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found.is_some() {
                return err(
                    ParseErrorKind::ContentLength,
                    "several Content-Length values",
                );
            }
            let v = std::str::from_utf8(&line[colon + 1..]).map_err(|_| {
                ParseError::new(
                    ParseErrorKind::ContentLength,
                    "Content-Length is not a valid number",
                )
            })?;
            found = Some(parse_content_length(v)?);
        }
    }
    Ok(found)
}
