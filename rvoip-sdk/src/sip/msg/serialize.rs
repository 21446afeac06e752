//! The serializer (RFC 3261 §7): start line, headers in order with canonical names, a computed
//! Content-Length, the body. One allocation sized up front.

use super::*;
use bytes::{BufMut, Bytes, BytesMut};

/// Formats `n` into `buf` without allocation; returns the digits.
#[inline]
pub(super) fn fmt_u16(n: u16, buf: &mut [u8; 5]) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[inline]
fn put_usize(out: &mut BytesMut, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[i..]);
}

fn uri_len(uri: &Uri) -> usize {
    let mut n = 0;
    uri.pieces(|s| n += s.len());
    n
}

#[inline]
fn put_uri(out: &mut BytesMut, uri: &Uri) {
    uri.pieces(|s| out.put_slice(s.as_bytes()));
}

/// Bytes of the header lines [`put_headers_and_body`] writes, the computed Content-Length line
/// and the blank line included.
fn exact_headers_len(h: &Headers, body: &Bytes) -> usize {
    let digits = body.len().checked_ilog10().map_or(1, |d| d as usize + 1);
    h.0.iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum::<usize>()
        + "Content-Length: ".len()
        + digits
        + 4
}

fn headers_len(h: &Headers) -> usize {
    h.0.iter()
        .map(|h| h.name.as_str().len() + h.value.len() + 4)
        .sum()
}

fn put_headers_and_body(out: &mut BytesMut, headers: &Headers, body: &Bytes) {
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.put_slice(h.name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: ");
    put_usize(out, body.len());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

/// Room for "Content-Length: N\r\n\r\n".
const CL_LEN: usize = 16 + 20 + 4;

impl Request {
    fn encoded_len(&self) -> usize {
        self.method.as_str().len()
            + 1
            + uri_len(&self.uri)
            + 10
            + headers_len(&self.headers)
            + CL_LEN
            + self.body.len()
    }

    /// Appends the wire form to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        put_uri(out, &self.uri);
        out.put_slice(b" SIP/2.0\r\n");
        put_headers_and_body(out, &self.headers, &self.body);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut out);
        out.freeze()
    }
}

impl Response {
    fn encoded_len(&self) -> usize {
        14 + self.reason.len() + headers_len(&self.headers) + CL_LEN + self.body.len()
    }

    /// Appends the wire form to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(b"SIP/2.0 ");
        let s = self.status.clamp(100, 699);
        out.put_slice(&[
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
            b' ',
        ]);
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        put_headers_and_body(out, &self.headers, &self.body);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut out);
        out.freeze()
    }

    /// The length in bytes of [`Response::to_bytes`], computed without serializing: status
    /// line, header lines (Content-Length recomputed), blank line and body (RFC 3261 §7.2).
    pub fn wire_len(&self) -> usize {
        "SIP/2.0 200 \r\n".len()
            + self.reason.len()
            + exact_headers_len(&self.headers, &self.body)
            + self.body.len()
    }

    /// A response to `req` (§8.2.6.2): copies all Via, From, To, Call-ID and CSeq values in order,
    /// and for a 101–299 response (one that can create a dialog) every Record-Route value in
    /// order (§12.1.1), so that the caller's ACK and BYE follow the proxies' route set; the
    /// reason phrase is [`reason_phrase`]`(status)`; empty body. The caller adds a To tag where
    /// one is needed.
    pub fn for_request(req: &Request, status: u16) -> Response {
        let mut headers = Headers::with_capacity(8);
        let dialog_creating = (101..300).contains(&status);
        for h in req.headers.iter() {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) || (dialog_creating && h.name == HeaderName::RecordRoute)
            {
                headers.0.push(h.clone());
            }
        }
        Response {
            status,
            reason: ByteString::from_static(reason_phrase(status)),
            headers,
            body: Bytes::new(),
        }
    }
}

impl Request {
    /// What a response to this request is built from (§8.2.6.2): a request with the same method
    /// and Request-URI and only its Via, From, To, Call-ID and CSeq values, in order, without
    /// the other headers and the body. [`Response::for_request`] gives the same response for it
    /// as for the whole request when the status is 100 or ≥ 300 (a 101–299 also copies
    /// Record-Route, which the head does not keep).
    pub fn response_head(&self) -> Request {
        Request {
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers: Response::for_request(self, 100).headers,
            body: Bytes::new(),
        }
    }
}

impl Message {
    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// Appends the wire form to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        match self {
            Message::Request(r) => r.write(out),
            Message::Response(r) => r.write(out),
        }
    }
}
