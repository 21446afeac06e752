//! Request checks a proxy or registrar makes before processing (RFC 3261 §8.2, §16.3;
//! RFC 4475), and error responses for requests that did not parse (§8.2.6).

use super::parse::{is_token, split_list, trim_lws};
use super::*;
use bytes::Bytes;

/// Why a request is refused: the status and reason phrase to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The response status (400 mostly).
    pub status: u16,
    /// The reason phrase.
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Rejection {
    Rejection {
        status: 400,
        reason,
    }
}

/// Checks a parsed request the way a proxy or registrar must before processing it.
///
/// - To, From, Call-ID, CSeq and Via are present (RFC 4475 insuf);
/// - single-value headers are not repeated (multi01);
/// - CSeq parses (number < 2**31) and its method is the request method (mismatch01/02, scalar02);
/// - every Via, From, To, Contact (except `*`), Route and Record-Route value parses
///   (badinv01, quotbal, badaspec, baddn, regbadct);
/// - Max-Forwards <= 255 and Expires fits 32 bits (scalar02);
/// - the Request-URI has no `?headers` (escruri).
///
/// A bad Date is ignored. Unknown Request-URI schemes pass (the UAS answers 416 if it must).
pub fn validate_request(req: &Request) -> Result<(), Rejection> {
    let mut counts = [0u8; 9];
    for h in req.headers.iter() {
        let i = match h.name {
            HeaderName::From => 0,
            HeaderName::To => 1,
            HeaderName::CallId => 2,
            HeaderName::CSeq => 3,
            HeaderName::MaxForwards => 4,
            HeaderName::ContentLength => 5,
            HeaderName::ContentType => 6,
            HeaderName::Expires => 7,
            HeaderName::MinExpires => 8,
            HeaderName::Via => {
                Via::parse(&h.value).map_err(|_| bad("Bad Request (malformed Via)"))?;
                continue;
            }
            HeaderName::Contact => {
                if &*h.value != "*" {
                    NameAddr::parse(&h.value)
                        .map_err(|_| bad("Bad Request (malformed Contact)"))?;
                }
                continue;
            }
            HeaderName::Route | HeaderName::RecordRoute => {
                NameAddr::parse(&h.value).map_err(|_| bad("Bad Request (malformed Route)"))?;
                continue;
            }
            _ => continue,
        };
        counts[i] = counts[i].saturating_add(1);
    }
    const NAMES: [&str; 5] = [
        "Bad Request (missing From)",
        "Bad Request (missing To)",
        "Bad Request (missing Call-ID)",
        "Bad Request (missing CSeq)",
        "",
    ];
    for (i, reason) in NAMES.iter().enumerate().take(4) {
        if counts[i] == 0 {
            return Err(bad(reason));
        }
    }
    if counts.iter().any(|&c| c > 1) {
        return Err(bad("Bad Request (repeated single-value header)"));
    }
    if req.headers.get(&HeaderName::Via).is_none() {
        return Err(bad("Bad Request (missing Via)"));
    }
    let cseq = req
        .headers
        .cseq()
        .map_err(|_| bad("Bad Request (malformed CSeq)"))?;
    if cseq.method != req.method {
        return Err(bad("Bad Request (CSeq method mismatch)"));
    }
    req.headers
        .from()
        .map_err(|_| bad("Bad Request (malformed From)"))?;
    req.headers
        .to()
        .map_err(|_| bad("Bad Request (malformed To)"))?;
    if req.headers.call_id().is_some_and(|c| c.is_empty()) {
        return Err(bad("Bad Request (empty Call-ID)"));
    }
    req.headers
        .max_forwards()
        .map_err(|_| bad("Bad Request (bad Max-Forwards)"))?;
    req.headers
        .expires()
        .map_err(|_| bad("Bad Request (bad Expires)"))?;
    if req.uri.headers.is_some() {
        return Err(bad("Bad Request (headers in Request-URI)"));
    }
    Ok(())
}

/// For a buffer that failed to parse: if it looks like a request and the Via, From, To, Call-ID
/// and CSeq lines can be found leniently, the error response (400; 505 for
/// [`ParseErrorKind::Version`]; 513 Message Too Large (§21.5.14) for [`ParseErrorKind::TooLarge`]) copying them (§8.2.6).
/// `None` for responses and hopeless input: the server then drops the message silently.
pub fn error_response(buf: &[u8], err: &ParseError) -> Option<Response> {
    let status = match err.kind {
        ParseErrorKind::Version => 505,
        ParseErrorKind::TooLarge => 513,
        _ => 400,
    };
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let buf = &buf[start..];
    // Only look at the header section.
    let end = super::parse::find_end_of_headers(buf).map_or(buf.len(), |i| i + 2);
    let head = &buf[..end];
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    if first.len() >= 4 && first[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let sp = memchr::memchr(b' ', first)?;
    if !is_token(std::str::from_utf8(&first[..sp]).ok()?) {
        return None;
    }
    // Logical lines (folding joined with SP) of the five headers we copy.
    let mut found: Vec<(HeaderName, String)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            if let (Some(i), Ok(s)) = (current, std::str::from_utf8(line))
                && let Some(h) = found.get_mut(i)
            {
                h.1.push(' ');
                h.1.push_str(trim_lws(s));
            }
            continue;
        }
        current = None;
        let Ok(s) = std::str::from_utf8(line) else {
            continue;
        };
        let Some(colon) = s.find(':') else { continue };
        let Some(name) = HeaderName::lookup(trim_lws(&s[..colon])) else {
            continue;
        };
        if matches!(
            name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            current = Some(found.len());
            found.push((name, trim_lws(&s[colon + 1..]).to_owned()));
        }
    }
    let has = |n: HeaderName| found.iter().any(|(h, _)| *h == n);
    if !(has(HeaderName::Via)
        && has(HeaderName::From)
        && has(HeaderName::To)
        && has(HeaderName::CallId)
        && has(HeaderName::CSeq))
    {
        return None;
    }
    // A value with a bare CR (the line split above is on LF) cannot be sent back: the
    // response would not parse (and the CR could start a header of the sender's choosing).
    if found.iter().any(|(_, v)| v.contains('\r')) {
        return None;
    }
    let mut headers = Headers::with_capacity(found.len() + 2);
    for (name, value) in found {
        let value = ByteString::from(trim_lws(&value).to_owned());
        if name == HeaderName::Via && value.contains(',') {
            split_list(&value, |v| {
                headers.0.push(Header {
                    name: HeaderName::Via,
                    value: v,
                })
            });
        } else {
            headers.0.push(Header { name, value });
        }
    }
    Some(Response {
        status,
        reason: ByteString::from_static(reason_phrase(status)),
        headers,
        body: Bytes::new(),
    })
}
