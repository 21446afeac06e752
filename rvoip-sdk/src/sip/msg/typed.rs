//! Typed views of header values, parsed on demand (RFC 3261 §20, §25.1).

use super::parse::{
    end_of_quoted, err, is_token, is_token_char, is_wsp, method_of, parse_u64, skip_wsp,
    take_token, trim_lws,
};
use super::uri::params_get;
use super::{Method, ParseError, ParseErrorKind, Uri};
use bytestring::ByteString;
use std::fmt;

/// Generic `;name=value` parameters as received, each starting with `;` (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub ByteString);

/// A Via header value (§20.42): `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper-cased as received (`UDP`, `TCP`, `TLS`, `SCTP`, or any token).
    pub transport: ByteString,
    /// The sent-by host (IPv6 with brackets).
    pub host: ByteString,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// The via-params.
    pub params: Params,
}

/// A name-addr or addr-spec with header parameters (§20.10, §20.20, §20.39, §20.30, §20.34):
/// From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, with quotes removed and escapes kept, if any.
    pub display: Option<ByteString>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=..`, `;expires=..`, `;q=..`).
    pub params: Params,
    /// True when the URI was enclosed in `<>` (name-addr form).
    pub angle: bool,
}

/// A CSeq value (§20.16): sequence number (< 2**31, §8.1.1.5) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

/// A parsed Authorization / Proxy-Authorization / WWW-Authenticate value (RFC 7616 §3):
/// a scheme and its comma-separated auth-params, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The scheme, e.g. `Digest` (compare case-insensitively).
    pub scheme: ByteString,
    /// (name lower-cased, value unquoted) pairs in received order.
    pub params: Vec<(ByteString, ByteString)>,
}

const VALUE: ParseErrorKind = ParseErrorKind::Value;

/// Characters of an unquoted generic-param value: token, host (IPv4, `[IPv6]`).
#[inline]
fn pvalue_char(c: u8) -> bool {
    is_token_char(c) || c == b':' || c == b'[' || c == b']'
}

impl Params {
    /// Parses `*( SWS ";" SWS name [ SWS "=" SWS (token / host / quoted-string) ] )` (§25.1
    /// generic-param). `s` must be a slice of `src`. Empty parameters (`;;`) and empty values
    /// are errors. The result is a zero-copy slice unless LWS has to be removed.
    pub(super) fn parse_in(src: &ByteString, s: &str) -> Result<Params, ParseError> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        let mut i = 0;
        let mut has_ws = false;
        while i < b.len() {
            if b[i] != b';' {
                return err(VALUE, "parameters must start with ;");
            }
            let j = skip_wsp(b, i + 1);
            has_ws |= j != i + 1;
            i = take_token(b, j);
            if i == j {
                return err(VALUE, "empty parameter");
            }
            let j = skip_wsp(b, i);
            has_ws |= j != i;
            i = j;
            if i < b.len() && b[i] == b'=' {
                let j = skip_wsp(b, i + 1);
                has_ws |= j != i + 1;
                i = j;
                if i < b.len() && b[i] == b'"' {
                    i = end_of_quoted(b, i)?;
                } else {
                    let vs = i;
                    while i < b.len() && pvalue_char(b[i]) {
                        i += 1;
                    }
                    if i == vs {
                        return err(VALUE, "empty parameter value");
                    }
                }
                let j = skip_wsp(b, i);
                has_ws |= j != i;
                i = j;
            }
        }
        if !has_ws {
            return Ok(Params(src.slice_ref(s)));
        }
        // Drop the LWS around ; and = (outside quoted strings).
        let mut out = String::with_capacity(s.len());
        let mut k = 0;
        while k < b.len() {
            if b[k] == b'"' {
                let e = end_of_quoted(b, k)?;
                out.push_str(&s[k..e]);
                k = e;
            } else {
                let start = k;
                while k < b.len() && b[k] != b'"' {
                    k += 1;
                }
                out.extend(s[start..k].chars().filter(|&c| c != ' ' && c != '\t'));
            }
        }
        Ok(Params(ByteString::from(out)))
    }

    /// A parameter: `None` if absent, `Some(None)` for a flag (`;lr`), `Some(Some(v))` otherwise
    /// (quoted values keep their quotes). The name is compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        params_get(&self.0, name)
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[inline]
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_'
}

/// Parses `host` (`[IPv6]`, IPv4 or hostname) at `b[i..]`: returns its end.
fn take_host(b: &[u8], i: usize) -> Result<usize, ParseError> {
    if b.get(i) == Some(&b'[') {
        let mut j = i + 1;
        while j < b.len() && (b[j].is_ascii_hexdigit() || b[j] == b':' || b[j] == b'.') {
            j += 1;
        }
        if b.get(j) != Some(&b']') || j < i + 3 {
            return err(VALUE, "bad IPv6 reference");
        }
        return Ok(j + 1);
    }
    let mut j = i;
    while j < b.len() && host_char(b[j]) {
        j += 1;
    }
    if j == i {
        return err(VALUE, "empty host");
    }
    Ok(j)
}

impl Via {
    /// Parses one Via value (§20.42, §25.1 via-parm): `SIP / 2.0 / transport SP host[:port] *params`.
    /// LWS around `/`, `:`, `;` and `=` is accepted (RFC 4475 wsinv).
    pub fn parse(s: &ByteString) -> Result<Via, ParseError> {
        let st = trim_lws(s);
        let b = st.as_bytes();
        let n_end = take_token(b, 0);
        if !st[..n_end].eq_ignore_ascii_case("SIP") {
            return err(VALUE, "Via protocol is not SIP");
        }
        let mut i = skip_wsp(b, n_end);
        if b.get(i) != Some(&b'/') {
            return err(VALUE, "bad Via sent-protocol");
        }
        i = skip_wsp(b, i + 1);
        let v_end = take_token(b, i);
        if &st[i..v_end] != "2.0" {
            return err(VALUE, "Via version is not 2.0");
        }
        i = skip_wsp(b, v_end);
        if b.get(i) != Some(&b'/') {
            return err(VALUE, "bad Via sent-protocol");
        }
        i = skip_wsp(b, i + 1);
        let t_end = take_token(b, i);
        if t_end == i {
            return err(VALUE, "empty Via transport");
        }
        let transport = s.slice_ref(&st[i..t_end]);
        i = skip_wsp(b, t_end);
        if i == t_end {
            return err(VALUE, "no LWS before Via sent-by");
        }
        let h_end = take_host(b, i)?;
        let host = s.slice_ref(&st[i..h_end]);
        i = skip_wsp(b, h_end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let ps = skip_wsp(b, i + 1);
            let mut pe = ps;
            while pe < b.len() && b[pe].is_ascii_digit() {
                pe += 1;
            }
            match parse_u64(&st[ps..pe]) {
                Some(n) if n <= u64::from(u16::MAX) => port = Some(n as u16),
                _ => return err(VALUE, "bad Via port"),
            }
            i = pe;
        }
        let params = Params::parse_in(s, &st[i..])?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter (§8.1.1.7).
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter (§18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// Whether an `rport` parameter (RFC 3581) is present, with or without a value.
    pub fn has_rport(&self) -> bool {
        self.params.get("rport").is_some()
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.params.0)
    }
}

impl NameAddr {
    /// Parses a name-addr (`["display"] <uri> *params`) or addr-spec (`uri *params`) with header
    /// parameters (§20.10, §25.1). In addr-spec form the parameters after the URI are header
    /// parameters (RFC 4475 cparam01) and a URI with `?` or `,` must be in `<>` (regbadct).
    pub fn parse(s: &ByteString) -> Result<NameAddr, ParseError> {
        let st = trim_lws(s);
        let b = st.as_bytes();
        if b.is_empty() {
            return err(VALUE, "empty address");
        }
        let (display, lt) = if b[0] == b'"' {
            let end = end_of_quoted(b, 0)?;
            let j = skip_wsp(b, end);
            if b.get(j) != Some(&b'<') {
                return err(VALUE, "quoted display name without <uri>");
            }
            (Some(s.slice_ref(&st[1..end - 1])), Some(j))
        } else {
            match memchr::memchr(b'<', b) {
                Some(lt) => {
                    let d = trim_lws(&st[..lt]);
                    if !d.bytes().all(|c| is_token_char(c) || is_wsp(c)) {
                        return err(VALUE, "non-token characters in display name");
                    }
                    (
                        if d.is_empty() {
                            None
                        } else {
                            Some(s.slice_ref(d))
                        },
                        Some(lt),
                    )
                }
                None => (None, None),
            }
        };
        match lt {
            Some(lt) => {
                let inner_start = lt + 1;
                let gt = match memchr::memchr(b'>', &b[inner_start..]) {
                    Some(k) => inner_start + k,
                    None => return err(VALUE, "< without >"),
                };
                let uri = Uri::parse(&s.slice_ref(&st[inner_start..gt]))?;
                let params = Params::parse_in(s, &st[gt + 1..])?;
                Ok(NameAddr {
                    display,
                    uri,
                    params,
                    angle: true,
                })
            }
            None => {
                let end = memchr::memchr(b';', b).unwrap_or(b.len());
                let u = trim_lws(&st[..end]);
                if u.bytes().any(|c| c == b'?' || c == b',') {
                    return err(VALUE, "URI with ? or , must be enclosed in <>");
                }
                let uri = Uri::parse(&s.slice_ref(u))?;
                let params = Params::parse_in(s, &st[end..])?;
                Ok(NameAddr {
                    display: None,
                    uri,
                    params,
                    angle: false,
                })
            }
        }
    }

    /// The `tag` parameter (§19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let angle = self.angle
            || self.display.is_some()
            || !self.uri.params.is_empty()
            || self.uri.headers.is_some()
            || self
                .uri
                .opaque
                .as_ref()
                .is_some_and(|o| o.contains([';', ',', '?']));
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        if angle {
            write!(f, "<{}>", self.uri)?;
        } else {
            write!(f, "{}", self.uri)?;
        }
        f.write_str(&self.params.0)
    }
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method` (§20.16); the number must be below 2**31 (§8.1.1.5).
    pub fn parse(s: &ByteString) -> Result<CSeq, ParseError> {
        let st = trim_lws(s);
        let b = st.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let seq = match parse_u64(&st[..i]) {
            Some(n) if n < (1 << 31) => n as u32,
            _ => return err(VALUE, "bad CSeq number"),
        };
        let j = skip_wsp(b, i);
        if j == i {
            return err(VALUE, "no LWS in CSeq");
        }
        let m = &st[j..];
        if !is_token(m) {
            return err(VALUE, "CSeq method is not a token");
        }
        Ok(CSeq {
            seq,
            method: method_of(s, m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl Auth {
    /// Parses `scheme [auth-param *("," auth-param)]` (RFC 3261 §25.1, RFC 7616 §3): names are
    /// lower-cased, quoted values unquoted with `\`-escapes removed.
    pub fn parse(s: &ByteString) -> Result<Auth, ParseError> {
        let st = trim_lws(s);
        let b = st.as_bytes();
        let se = take_token(b, 0);
        if se == 0 {
            return err(VALUE, "no auth scheme");
        }
        let scheme = s.slice_ref(&st[..se]);
        let mut params = Vec::new();
        let mut i = skip_wsp(b, se);
        if i == se && i < b.len() {
            return err(VALUE, "no LWS after the auth scheme");
        }
        while i < b.len() {
            let ns = i;
            i = take_token(b, i);
            if i == ns {
                return err(VALUE, "bad auth-param name");
            }
            let name = &st[ns..i];
            let name = if name.bytes().any(|c| c.is_ascii_uppercase()) {
                ByteString::from(name.to_ascii_lowercase())
            } else {
                s.slice_ref(name)
            };
            i = skip_wsp(b, i);
            let value = if b.get(i) == Some(&b'=') {
                i = skip_wsp(b, i + 1);
                if b.get(i) == Some(&b'"') {
                    let e = end_of_quoted(b, i)?;
                    let inner = &st[i + 1..e - 1];
                    i = e;
                    if inner.contains('\\') {
                        let mut out = String::with_capacity(inner.len());
                        let mut esc = false;
                        for c in inner.chars() {
                            if esc || c != '\\' {
                                out.push(c);
                                esc = false;
                            } else {
                                esc = true;
                            }
                        }
                        ByteString::from(out)
                    } else {
                        s.slice_ref(inner)
                    }
                } else {
                    let vs = i;
                    while i < b.len() && b[i] != b',' && !is_wsp(b[i]) {
                        i += 1;
                    }
                    s.slice_ref(&st[vs..i])
                }
            } else {
                ByteString::new()
            };
            params.push((name, value));
            i = skip_wsp(b, i);
            if i < b.len() {
                if b[i] != b',' {
                    return err(VALUE, "auth-params must be separated by commas");
                }
                i = skip_wsp(b, i + 1);
            }
        }
        Ok(Auth { scheme, params })
    }

    /// The value of auth-param `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }
}
