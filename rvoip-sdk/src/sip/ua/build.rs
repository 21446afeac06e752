//! Building the requests and responses a user agent sends (RFC 3261 §8.1.1, §12.2.1.1, §22):
//! Via with a fresh branch and `rport`, Contact, Max-Forwards, answering digest challenges, and
//! turning a URI into a next-hop socket address.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::auth::authorization_value;
use crate::sip::msg::{Auth, HeaderName, Headers, Method, Request, Response, Uri};
use crate::sip::transaction::{Transport, new_branch};

/// The User-Agent / Server header value we send.
pub const USER_AGENT: &str = concat!("rvoip/", env!("CARGO_PKG_VERSION"));

/// Methods a UA of ours accepts (the `Allow` header, §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REFER, NOTIFY, INFO";

/// Option tags a UA of ours supports (the `Supported` header, §20.37): `replaces` (RFC 3891).
pub const SUPPORTED: &str = "replaces";

/// The transport token for a Via header (§18, §20.42).
pub fn via_transport(t: Transport) -> &'static str {
    t.via_name()
}

/// `host` as written in a URI or Via (IPv6 in brackets).
pub fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A Via value with a fresh branch and an empty `rport` (RFC 3581) for a request we originate.
pub fn via(local: SocketAddr, transport: Transport) -> String {
    format!(
        "SIP/2.0/{} {}:{};branch={};rport",
        via_transport(transport),
        host_of(local.ip()),
        local.port(),
        new_branch()
    )
}

/// Our Contact URI (§8.1.1.8): `sip:user@ip:port`, `;transport=tcp` over TCP.
pub fn contact_uri(user: &str, local: SocketAddr, transport: Transport) -> String {
    let tp = match transport {
        Transport::Udp => String::new(),
        t => format!(";transport={}", t.as_str()),
    };
    if user.is_empty() {
        format!("sip:{}:{}{tp}", host_of(local.ip()), local.port())
    } else {
        format!("sip:{user}@{}:{}{tp}", host_of(local.ip()), local.port())
    }
}

/// A random token for tags, Call-ID parts and cnonces: 16 lower-case hex characters.
pub fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Puts a fresh top Via on `req` (replacing an existing top Via) and the headers every request
/// we send carries: Max-Forwards 70 (§8.1.1.6) and User-Agent.
pub fn finish_request(req: &mut Request, local: SocketAddr, transport: Transport) {
    req.headers.remove_first(&HeaderName::Via);
    req.headers.0.insert(
        0,
        crate::sip::msg::Header::new(HeaderName::Via, via(local, transport)),
    );
    if req.headers.get(&HeaderName::MaxForwards).is_none() {
        req.headers.push(HeaderName::MaxForwards, "70");
    }
    if req.headers.get(&HeaderName::UserAgent).is_none() {
        req.headers.push(HeaderName::UserAgent, USER_AGENT);
    }
}

/// An out-of-dialog request (§8.1.1): Request-URI `uri`, From `from` with tag `from_tag`, To `to`
/// (no tag), the given Call-ID and CSeq. The caller adds Via via [`finish_request`], Contact and
/// the body.
pub fn new_request(
    method: Method,
    uri: Uri,
    from: &str,
    from_tag: &str,
    to: &str,
    call_id: &str,
    seq: u32,
) -> Request {
    let mut headers = Headers::with_capacity(10);
    headers.push(HeaderName::From, format!("<{from}>;tag={from_tag}"));
    headers.push(HeaderName::To, format!("<{to}>"));
    headers.push(HeaderName::CallId, call_id.to_string());
    headers.push(HeaderName::CSeq, format!("{seq} {method}"));
    Request {
        method,
        uri,
        headers,
        body: Bytes::new(),
    }
}

/// Sets an SDP body (`application/sdp`) on a request or response's headers and body.
pub fn set_sdp(headers: &mut Headers, body: &mut Bytes, sdp: &str) {
    headers.set(HeaderName::ContentType, "application/sdp");
    *body = Bytes::copy_from_slice(sdp.as_bytes());
}

/// The SDP body of a message, if it has one (Content-Type `application/sdp`, non-empty).
pub fn sdp_body<'a>(headers: &Headers, body: &'a Bytes) -> Option<&'a str> {
    if body.is_empty() {
        return None;
    }
    let ct = headers.content_type()?;
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// Credentials a UA answers digest challenges with (RFC 3261 §22.2, §22.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (usually the AOR's user part).
    pub username: String,
    /// The password.
    pub password: String,
}

/// Answers a 401/407 challenge (§22.2, §22.3, RFC 8760 §2.4 picks the first usable challenge):
/// a copy of `req` with an `Authorization` (401) or `Proxy-Authorization` (407) for every
/// challenged realm, CSeq incremented and a fresh branch (a new transaction, §8.1.3.5).
/// Challenges without `qop` get the RFC 2617 §3.2.2.1 compatible answer. `None` when no
/// challenge is answerable (not Digest, unknown algorithm, only qop=auth-int).
pub fn authorize(
    req: &Request,
    resp: &Response,
    creds: &Credentials,
    local: SocketAddr,
    transport: Transport,
) -> Option<Request> {
    let (challenge_hdr, answer_hdr) = match resp.status {
        401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        407 => (
            HeaderName::ProxyAuthenticate,
            HeaderName::ProxyAuthorization,
        ),
        _ => return None,
    };
    let method = req.method.as_str().to_string();
    let uri = req.uri.to_string();
    let mut answers = Vec::new();
    let mut realms: Vec<String> = Vec::new();
    for value in resp.headers.get_all(&challenge_hdr) {
        let Ok(ch) = Auth::parse(value) else { continue };
        let realm = ch.get("realm").unwrap_or("").to_string();
        if realms.contains(&realm) {
            continue; // one answer per realm: the first usable challenge (RFC 8760 §2.4)
        }
        let v = authorization_value(
            &ch,
            &creds.username,
            &creds.password,
            &method,
            &uri,
            1,
            &token(),
        )
        .or_else(|| {
            crate::auth::authorization_value_without_qop(
                &ch,
                &creds.username,
                &creds.password,
                &method,
                &uri,
            )
        });
        if let Some(v) = v {
            realms.push(realm);
            answers.push(v);
        }
    }
    if answers.is_empty() {
        return None;
    }
    let mut out = req.clone();
    out.headers.remove_all(&answer_hdr);
    for a in answers {
        out.headers.push(answer_hdr.clone(), a);
    }
    let cseq = out.headers.cseq().ok()?;
    let seq = cseq.seq.wrapping_add(1) & 0x7fff_ffff;
    out.headers
        .set(HeaderName::CSeq, format!("{seq} {}", cseq.method));
    finish_request(&mut out, local, transport);
    Some(out)
}

/// Whether a 401/407 says our credentials were wrong rather than our nonce old: the request
/// already carried an answer and the new challenge is not `stale=true` (RFC 7616 §3.3).
pub fn is_rejected_credential(req: &Request, resp: &Response) -> bool {
    let (challenge_hdr, answer_hdr) = match resp.status {
        401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        407 => (
            HeaderName::ProxyAuthenticate,
            HeaderName::ProxyAuthorization,
        ),
        _ => return false,
    };
    if req.headers.get(&answer_hdr).is_none() {
        return false;
    }
    let stale = resp.headers.get_all(&challenge_hdr).any(|v| {
        Auth::parse(v)
            .ok()
            .and_then(|a| a.get("stale").map(|s| s.eq_ignore_ascii_case("true")))
            .unwrap_or(false)
    });
    !stale
}

/// The next hop for a URI without DNS (§8.1.2): the RFC 3263 resolution of an IP literal (or
/// `localhost`) host, with the URI port or its transport's default (5060, 5061 for TLS).
/// `None` for host names (not resolved here), unknown transports and non-SIP URIs.
pub fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    use crate::sip::resolve::{Target, resolve_numeric};
    if !uri.is_sip() || Target::unknown_transport(uri) {
        return None;
    }
    let dests = resolve_numeric(&Target::from_uri(uri))?.ok()?;
    dests.first().map(|d| d.addr)
}

/// The transport a URI asks for with `;transport=` (§19.1.1), if any.
pub fn uri_transport(uri: &Uri) -> Option<Transport> {
    match uri.param("transport") {
        Some(Some(t)) => Transport::from_name(t),
        _ => None,
    }
}

/// The URI inside a Route / Record-Route value (`<sip:p1;lr>` → `sip:p1;lr`).
pub fn route_uri(value: &bytestring::ByteString) -> Option<Uri> {
    crate::sip::msg::NameAddr::parse(value).ok().map(|n| n.uri)
}

/// A response to `req` with our To tag (when `to_tag` is given and To has none), Server header,
/// and optional Contact.
pub fn response(
    req: &Request,
    status: u16,
    to_tag: Option<&str>,
    contact: Option<&str>,
) -> Response {
    let mut resp = Response::for_request(req, status);
    if let Some(tag) = to_tag {
        let has_tag = resp.headers.to().ok().is_some_and(|t| t.tag().is_some());
        if !has_tag {
            if let Some(to) = resp.headers.get(&HeaderName::To).cloned() {
                resp.headers.set(HeaderName::To, format!("{to};tag={tag}"));
            }
        }
    }
    if let Some(c) = contact {
        resp.headers.push(HeaderName::Contact, format!("<{c}>"));
    }
    resp.headers.push(HeaderName::Server, USER_AGENT);
    resp
}
