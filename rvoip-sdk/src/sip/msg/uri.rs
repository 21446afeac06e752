//! SIP, SIPS and other URIs (RFC 3261 §19.1, §25.1; RFC 3986 for other schemes).

use bytestring::ByteString;

/// A URI scheme. `sip` and `sips` are parsed fully; `tel` and every other scheme keep an opaque part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:` (§19.1)
    Sip,
    /// `sips:` (§19.1)
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme, lower-cased.
    Other(ByteString),
}

/// A URI. For `sip`/`sips`: `user[:password]@host[:port];params?headers`. For other schemes only
/// `scheme` and `opaque` are set.
///
/// Escapes (`%XX`) are kept as received; [`Uri::user_unescaped`] decodes them for comparisons (§19.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part (may contain `;` and escapes, RFC 4475 §3.1.1.9).
    pub user: Option<ByteString>,
    /// The password part (deprecated, §19.1.1).
    pub password: Option<ByteString>,
    /// The host: hostname, IPv4 address, or IPv6 reference *with* brackets (`[::1]`).
    pub host: ByteString,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters as received, each starting with `;` (e.g. `";transport=tcp;lr"`), or empty.
    pub params: ByteString,
    /// URI headers as received, without the leading `?`, or `None`.
    pub headers: Option<ByteString>,
    /// For schemes other than sip/sips: everything after `scheme:`.
    pub opaque: Option<ByteString>,
}

use super::parse::err;
use super::{ParseError, ParseErrorKind};
use std::fmt;

const URI: ParseErrorKind = ParseErrorKind::Uri;

#[inline]
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_'
}

/// Characters allowed in a URI parameter name or value besides `%` escapes (§25.1 paramchar).
#[inline]
fn param_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'[' | b']'
                | b'/'
                | b':'
                | b'&'
                | b'+'
                | b'$'
                | b'-'
                | b'_'
                | b'.'
                | b'!'
                | b'~'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'%'
        )
}

/// Checks `;name[=value]` URI parameters (each non-empty).
fn check_uri_params(p: &str) -> Result<(), ParseError> {
    // p starts with ';'
    for seg in p.split(';').skip(1) {
        let (n, v) = match seg.find('=') {
            Some(i) => (&seg[..i], Some(&seg[i + 1..])),
            None => (seg, None),
        };
        if n.is_empty() || !n.bytes().all(param_char) {
            return err(URI, "bad URI parameter name");
        }
        if let Some(v) = v
            && (v.is_empty() || !v.bytes().all(param_char))
        {
            return err(URI, "bad URI parameter value");
        }
    }
    Ok(())
}

/// Iterates `;name[=value]` parameters respecting quoted strings; names and values trimmed.
pub(super) fn params_iter(p: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let b = p.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            if i >= b.len() {
                return None;
            }
            let start = i;
            while i < b.len() && b[i] != b';' {
                if b[i] == b'"' {
                    i = super::parse::end_of_quoted(b, i).unwrap_or(b.len());
                } else {
                    i += 1;
                }
            }
            let seg = &p[start..i];
            i += 1;
            let seg = super::parse::trim_lws(seg);
            if seg.is_empty() {
                continue;
            }
            return Some(match seg.find('=') {
                Some(k) => (
                    super::parse::trim_lws(&seg[..k]),
                    Some(super::parse::trim_lws(&seg[k + 1..])),
                ),
                None => (seg, None),
            });
        }
    })
}

/// Looks `name` up (case-insensitively) in `;`-separated parameters.
pub(super) fn params_get<'a>(p: &'a str, name: &str) -> Option<Option<&'a str>> {
    params_iter(p)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

impl Uri {
    /// Parses a URI (RFC 3261 §19.1, §25.1). The parts are zero-copy slices of `s`.
    ///
    /// Whitespace (badaspec), `<`/`>` (ltgtruri), `"` and control or non-ASCII octets are
    /// rejected; `sip`/`sips` URIs are parsed into user, password, host (IPv6 in brackets),
    /// port (fits u16), params and headers; other schemes keep an opaque part.
    pub fn parse(s: &ByteString) -> Result<Uri, ParseError> {
        let st: &str = s;
        let b = st.as_bytes();
        if b.iter()
            .any(|&c| c <= b' ' || c >= 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return err(URI, "illegal character in URI");
        }
        let colon = match memchr::memchr(b':', b) {
            Some(i) => i,
            None => return err(URI, "URI without scheme"),
        };
        let scheme = &st[..colon];
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
        {
            return err(URI, "bad URI scheme");
        }
        let rest = &st[colon + 1..];
        let sips = scheme.eq_ignore_ascii_case("sips");
        if sips || scheme.eq_ignore_ascii_case("sip") {
            return Uri::parse_sip(s, if sips { Scheme::Sips } else { Scheme::Sip }, rest);
        }
        if rest.is_empty() {
            return err(URI, "empty URI");
        }
        let scheme = if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else if sb.iter().any(u8::is_ascii_uppercase) {
            Scheme::Other(ByteString::from(scheme.to_ascii_lowercase()))
        } else {
            Scheme::Other(s.slice_ref(scheme))
        };
        Ok(Uri {
            scheme,
            user: None,
            password: None,
            host: ByteString::new(),
            port: None,
            params: ByteString::new(),
            headers: None,
            opaque: Some(s.slice_ref(rest)),
        })
    }

    fn parse_sip(s: &ByteString, scheme: Scheme, rest: &str) -> Result<Uri, ParseError> {
        let rb = rest.as_bytes();
        let (user, password, hp) = match memchr::memchr(b'@', rb) {
            Some(at) => {
                let userinfo = &rest[..at];
                let (u, p) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(s.slice_ref(&userinfo[c + 1..]))),
                    None => (userinfo, None),
                };
                if u.is_empty() {
                    return err(URI, "empty user part");
                }
                (Some(s.slice_ref(u)), p, &rest[at + 1..])
            }
            None => (None, None, rest),
        };
        let hb = hp.as_bytes();
        let mut i;
        if hb.first() == Some(&b'[') {
            let close = match memchr::memchr(b']', hb) {
                Some(c) => c,
                None => return err(URI, "unterminated IPv6 reference"),
            };
            if close < 3
                || !hb[1..close]
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return err(URI, "bad IPv6 reference");
            }
            i = close + 1;
        } else {
            i = 0;
            while i < hb.len() && host_char(hb[i]) {
                i += 1;
            }
            if i == 0 {
                return err(URI, "empty host");
            }
        }
        let host = s.slice_ref(&hp[..i]);
        let mut port = None;
        if hb.get(i) == Some(&b':') {
            let ps = i + 1;
            i = ps;
            while i < hb.len() && hb[i].is_ascii_digit() {
                i += 1;
            }
            match super::parse::parse_u64(&hp[ps..i]) {
                Some(n) if n <= u64::from(u16::MAX) => port = Some(n as u16),
                _ => return err(URI, "bad port"),
            }
        }
        let mut params = ByteString::new();
        if hb.get(i) == Some(&b';') {
            let end = memchr::memchr(b'?', &hb[i..]).map_or(hb.len(), |k| i + k);
            let p = &hp[i..end];
            check_uri_params(p)?;
            params = s.slice_ref(p);
            i = end;
        }
        let mut headers = None;
        if hb.get(i) == Some(&b'?') {
            let h = &hp[i + 1..];
            if h.is_empty() {
                return err(URI, "empty URI headers");
            }
            headers = Some(s.slice_ref(h));
            i = hb.len();
        }
        if i != hb.len() {
            return err(URI, "junk after host");
        }
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
            opaque: None,
        })
    }

    /// A URI parameter: `None` if absent, `Some(None)` for a flag like `;lr`, `Some(Some(v))`
    /// otherwise. The name is compared case-insensitively.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        params_get(&self.params, name)
    }

    /// The user part with `%XX` escapes decoded (§19.1.4), `None` if there is no user part.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_ref().map(|u| unescape(u))
    }

    /// A URI header (`?name=value&…`, §19.1.1) with `%XX` escapes decoded, e.g. the `Replaces`
    /// of a Refer-To (RFC 3891 §5); the name is compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.as_ref()?.split('&').find_map(|h| {
            let (n, v) = h.split_once('=').unwrap_or((h, ""));
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| unescape(v.trim()))
        })
    }

    /// The URI without its headers part: the Request-URI of a request made from it (§19.1.5).
    pub fn without_headers(&self) -> Uri {
        let mut u = self.clone();
        u.headers = None;
        u
    }

    /// Whether the scheme is `sip` or `sips`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// Builds a `sip:` URI. `host` may be an IPv6 address with or without brackets; `params` is
    /// like `";lr"` or `""`.
    pub fn new_sip(user: Option<&str>, host: &str, port: Option<u16>, params: &str) -> Uri {
        let host = if host.contains(':') && !host.starts_with('[') {
            ByteString::from(format!("[{host}]"))
        } else {
            ByteString::from(host)
        };
        Uri {
            scheme: Scheme::Sip,
            user: user.map(ByteString::from),
            password: None,
            host,
            port,
            params: ByteString::from(params),
            headers: None,
            opaque: None,
        }
    }

    /// Calls `f` with the pieces of the wire form, in order.
    #[inline]
    pub(super) fn pieces(&self, mut f: impl FnMut(&str)) {
        f(self.scheme.as_str());
        f(":");
        if let Some(o) = &self.opaque {
            f(o);
            return;
        }
        if let Some(u) = &self.user {
            f(u);
            if let Some(p) = &self.password {
                f(":");
                f(p);
            }
            f("@");
        }
        f(&self.host);
        if let Some(p) = self.port {
            f(":");
            let mut buf = [0u8; 5];
            f(super::serialize::fmt_u16(p, &mut buf));
        }
        f(&self.params);
        if let Some(h) = &self.headers {
            f("?");
            f(h);
        }
    }
}

/// Decodes `%XX` escapes; invalid escapes are kept as they are.
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return s.to_owned();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Scheme {
    /// The scheme name as written.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut r = Ok(());
        self.pieces(|s| {
            if r.is_ok() {
                r = f.write_str(s);
            }
        });
        r
    }
}
