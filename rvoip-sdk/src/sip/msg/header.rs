//! Header field names (with the compact forms of RFC 3261 §7.3.3) and the header list.

use super::parse::{parse_u64, trim_lws};
use super::{CSeq, NameAddr, ParseError, ParseErrorKind, Via};
use bytestring::ByteString;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $var:ident => $full:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. Known names are matched case-insensitively, compact forms
        /// (RFC 3261 §7.3.3, RFC 3515, RFC 3841, RFC 4028, RFC 6665) map to the full name.
        /// Unknown names are kept as received in `Other`.
        #[derive(Debug, Clone)]
        pub enum HeaderName {
            $( $(#[$doc])* $var, )*
            /// Any other header name, as received.
            Other(ByteString),
        }

        impl HeaderName {
            /// The canonical full name, as this element writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$var => $full, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// Maps a received field name (any case, full or compact) to a `HeaderName`.
            /// `Other` keeps a zero-copy clone of `name`.
            pub fn from_wire(name: &ByteString) -> HeaderName {
                match HeaderName::lookup(name) {
                    Some(n) => n,
                    None => HeaderName::Other(name.clone()),
                }
            }

            /// Maps a field name (any case, full or compact) to a known `HeaderName`, `None` if
            /// unknown. Dispatches on length and first letter before comparing.
            #[inline]
            pub fn lookup(s: &str) -> Option<HeaderName> {
                let b = s.as_bytes();
                let first = match b.first() {
                    Some(c) => c.to_ascii_lowercase(),
                    None => return None,
                };
                if b.len() == 1 {
                    $( $( if first == $compact.as_bytes()[0] { return Some(HeaderName::$var); } )? )*
                    return None;
                }
                $(
                    if b.len() == $full.len()
                        && first == $full.as_bytes()[0].to_ascii_lowercase()
                        && s.eq_ignore_ascii_case($full)
                    {
                        return Some(HeaderName::$var);
                    }
                )*
                None
            }
        }
    };
}

header_names! {
    /// Via (§20.42), compact `v`.
    Via => "Via", "v";
    /// From (§20.20), compact `f`.
    From => "From", "f";
    /// To (§20.39), compact `t`.
    To => "To", "t";
    /// Call-ID (§20.8), compact `i`.
    CallId => "Call-ID", "i";
    /// CSeq (§20.16).
    CSeq => "CSeq";
    /// Contact (§20.10), compact `m`.
    Contact => "Contact", "m";
    /// Max-Forwards (§20.22).
    MaxForwards => "Max-Forwards";
    /// Content-Length (§20.14), compact `l`.
    ContentLength => "Content-Length", "l";
    /// Content-Type (§20.15), compact `c`.
    ContentType => "Content-Type", "c";
    /// Content-Encoding (§20.12), compact `e`.
    ContentEncoding => "Content-Encoding", "e";
    /// Route (§20.34).
    Route => "Route";
    /// Record-Route (§20.30).
    RecordRoute => "Record-Route";
    /// Expires (§20.19).
    Expires => "Expires";
    /// Min-Expires (§20.23).
    MinExpires => "Min-Expires";
    /// Authorization (§20.7).
    Authorization => "Authorization";
    /// WWW-Authenticate (§20.44).
    WwwAuthenticate => "WWW-Authenticate";
    /// Proxy-Authorization (§20.28).
    ProxyAuthorization => "Proxy-Authorization";
    /// Proxy-Authenticate (§20.27).
    ProxyAuthenticate => "Proxy-Authenticate";
    /// Authentication-Info (§20.6).
    AuthenticationInfo => "Authentication-Info";
    /// Require (§20.32).
    Require => "Require";
    /// Proxy-Require (§20.29).
    ProxyRequire => "Proxy-Require";
    /// Supported (§20.37), compact `k`.
    Supported => "Supported", "k";
    /// Unsupported (§20.40).
    Unsupported => "Unsupported";
    /// Allow (§20.5).
    Allow => "Allow";
    /// Accept (§20.1).
    Accept => "Accept";
    /// User-Agent (§20.41).
    UserAgent => "User-Agent";
    /// Server (§20.35).
    Server => "Server";
    /// Date (§20.17).
    Date => "Date";
    /// Subject (§20.36), compact `s`.
    Subject => "Subject", "s";
    /// Timestamp (§20.38).
    Timestamp => "Timestamp";
    /// Retry-After (§20.33).
    RetryAfter => "Retry-After";
    /// Event (RFC 6665), compact `o`.
    Event => "Event", "o";
    /// Refer-To (RFC 3515), compact `r`.
    ReferTo => "Refer-To", "r";
    /// Referred-By (RFC 3892), compact `b`.
    ReferredBy => "Referred-By", "b";
    /// Session-Expires (RFC 4028), compact `x`.
    SessionExpires => "Session-Expires", "x";
    /// Accept-Contact (RFC 3841), compact `a`.
    AcceptContact => "Accept-Contact", "a";
    /// Reject-Contact (RFC 3841), compact `j`.
    RejectContact => "Reject-Contact", "j";
    /// Request-Disposition (RFC 3841), compact `d`.
    RequestDisposition => "Request-Disposition", "d";
    /// Allow-Events (RFC 6665), compact `u`.
    AllowEvents => "Allow-Events", "u";
    /// Identity (RFC 8224), compact `y`.
    Identity => "Identity", "y";
    /// Warning (§20.43).
    Warning => "Warning";
    /// Path (RFC 3327).
    Path => "Path";
    /// Subscription-State (RFC 6665 §8.2.3).
    SubscriptionState => "Subscription-State";
    /// Replaces (RFC 3891).
    Replaces => "Replaces";
    /// SIP-ETag (RFC 3903 §11.3.1).
    SipETag => "SIP-ETag";
    /// SIP-If-Match (RFC 3903 §11.3.2).
    SipIfMatch => "SIP-If-Match";
    /// Diversion (RFC 5806): where a call was forwarded from, and why.
    Diversion => "Diversion";
}

impl HeaderName {
    /// Whether this header's value is a comma-separated list (§7.3.1) that the parser splits into
    /// one [`Header`] per element. Authorization-style headers are not lists: their commas separate
    /// auth-params.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Supported
                | HeaderName::Unsupported
                | HeaderName::Allow
                | HeaderName::Path
                | HeaderName::Diversion
        )
    }

    /// Whether a request must carry at most one of this header (§20, RFC 4475 §3.3.8).
    pub fn is_single(&self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
        )
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}
impl Eq for HeaderName {}

/// One header field: a name and one value (list headers are split, one element per `Header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: HeaderName,
    /// The field value with leading/trailing whitespace removed and folding replaced by one SP.
    pub value: ByteString,
}

impl Header {
    /// A header from a name and a value. The value must not contain CR or LF.
    pub fn new(name: HeaderName, value: impl Into<ByteString>) -> Header {
        Header {
            name,
            value: value.into(),
        }
    }
}

/// The ordered header fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers(Vec::with_capacity(n))
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &HeaderName) -> Option<&ByteString> {
        self.0.iter().find(|h| h.name == *name).map(|h| &h.value)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = &'a ByteString> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| &h.value)
    }

    /// How many entries `name` has.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| h.name == *name).count()
    }

    /// Appends a header at the end.
    pub fn push(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        self.0.push(Header::new(name, value));
    }

    /// Inserts a header before the first existing entry of the same name (or at the end if none),
    /// as a proxy does with Via and Record-Route (§16.6).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let at = self
            .0
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(self.0.len());
        self.0.insert(at, Header::new(name, value));
    }

    /// Removes and returns the first value of `name`.
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<ByteString> {
        let at = self.0.iter().position(|h| h.name == *name)?;
        Some(self.0.remove(at).value)
    }

    /// Removes every value of `name`.
    pub fn remove_all(&mut self, name: &HeaderName) {
        self.0.retain(|h| h.name != *name);
    }

    /// Replaces the first value of `name` (or appends one).
    pub fn set(&mut self, name: HeaderName, value: impl Into<ByteString>) {
        let value = value.into();
        match self.0.iter_mut().find(|h| h.name == name) {
            Some(h) => h.value = value,
            None => self.0.push(Header { name, value }),
        }
    }

    /// Iterates over all headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }
}

/// Typed accessors, shared by requests and responses. Each parses the header value on demand.
impl Headers {
    fn required(&self, name: &HeaderName, what: &'static str) -> Result<&ByteString, ParseError> {
        self.get(name)
            .ok_or(ParseError::new(ParseErrorKind::Value, what))
    }

    /// The Call-ID value (§20.8).
    pub fn call_id(&self) -> Option<&ByteString> {
        self.get(&HeaderName::CallId)
    }

    /// The parsed CSeq (§20.16); an error if missing or malformed.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.required(&HeaderName::CSeq, "missing CSeq")?)
    }

    /// The first (topmost) Via value, parsed (§20.42).
    pub fn top_via(&self) -> Result<Via, ParseError> {
        Via::parse(self.required(&HeaderName::Via, "missing Via")?)
    }

    /// The parsed From value (§20.20).
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required(&HeaderName::From, "missing From")?)
    }

    /// The parsed To value (§20.39).
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required(&HeaderName::To, "missing To")?)
    }

    /// The `tag` parameter of To (§19.3, §20.39), found without parsing the URI: the same as
    /// `to()?.tag()` for a well-formed value. `None` when To is absent, has no tag, or a quote or
    /// `<` in it is not closed. A transaction user that needs To validated calls
    /// [`Headers::to`] (or [`super::validate_request`]) as well.
    pub fn to_tag(&self) -> Option<&str> {
        self.get(&HeaderName::To).and_then(|v| tag_in(v))
    }

    /// The `tag` parameter of From (§19.3, §20.20), as [`Headers::to_tag`] finds To's.
    pub fn from_tag(&self) -> Option<&str> {
        self.get(&HeaderName::From).and_then(|v| tag_in(v))
    }

    /// Max-Forwards (§20.22): `None` if absent; an error if not a number or over 255.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.get(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => match parse_u64(trim_lws(v)) {
                Some(n) if n <= 255 => Ok(Some(n as u32)),
                _ => Err(ParseError::new(ParseErrorKind::Value, "bad Max-Forwards")),
            },
        }
    }

    /// Expires (§20.19) in seconds: `None` if absent; an error if not a number or over 2**32-1.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.get(&HeaderName::Expires) {
            None => Ok(None),
            Some(v) => match parse_u64(trim_lws(v)) {
                Some(n) if n <= u64::from(u32::MAX) => Ok(Some(n as u32)),
                _ => Err(ParseError::new(ParseErrorKind::Value, "bad Expires")),
            },
        }
    }

    /// The Content-Type value (§20.15).
    pub fn content_type(&self) -> Option<&ByteString> {
        self.get(&HeaderName::ContentType)
    }
}

/// The header parameters of a From or To value (§20.10): what follows the `>` of a name-addr, or
/// the first `;` of an addr-spec (whose parameters are header parameters). `None` if a quoted
/// display name or a `<` is not closed.
fn header_params(v: &str) -> Option<&str> {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if b.get(i) == Some(&b'"') {
        i = super::parse::end_of_quoted(b, i).ok()?;
    }
    match memchr::memchr(b'<', &b[i..]) {
        Some(k) => {
            let lt = i + k;
            let gt = lt + memchr::memchr(b'>', &b[lt..])?;
            Some(&v[gt + 1..])
        }
        None => Some(&v[memchr::memchr(b';', &b[i..]).map_or(b.len(), |k| i + k)..]),
    }
}

/// The `tag` header parameter of a From or To value.
fn tag_in(v: &str) -> Option<&str> {
    super::uri::params_get(header_params(v)?, "tag").flatten()
}
