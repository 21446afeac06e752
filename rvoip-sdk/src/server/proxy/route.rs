//! Next-hop decisions of the proxy (RFC 3261 §16.5–16.6, RFC 3263 without DNS): URI resolution,
//! response routing by Via, the loop-detection hash, and response ranking.

use std::net::{IpAddr, SocketAddr};

use crate::server::local::LocalIdentity;
use crate::sip::msg::{BRANCH_MAGIC, HeaderName, NameAddr, Request, Scheme, Uri, Via};
use crate::sip::transaction::Transport;

/// FNV-1a, 64 bit: the branch hash of §16.6 step 8 (not security relevant).
pub(crate) fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The loop-detection hash of a request (§16.6 step 8): Request-URI, From, To, Call-ID, CSeq and
/// Proxy-Require, excluding the Via (so that a looped copy hashes the same).
pub fn loop_hash(req: &Request) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    h = fnv(h, req.uri.user.as_deref().unwrap_or("").as_bytes());
    h = fnv(h, req.uri.host.as_bytes());
    h = fnv(h, &req.uri.port.unwrap_or(0).to_be_bytes());
    h = fnv(h, req.uri.params.as_bytes());
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::ProxyRequire,
    ] {
        for v in req.headers.get_all(&name) {
            h = fnv(h, v.as_bytes());
        }
    }
    h
}

/// §16.3 step 4: the request carries a Via of ours whose branch starts with this request's
/// hash: it has looped (a spiral changes the Request-URI, so its hash differs).
pub fn is_loop(local: &LocalIdentity, req: &Request, hash: u64) -> bool {
    let tag = format!("{BRANCH_MAGIC}{hash:016x}");
    req.headers
        .get_all(&HeaderName::Via)
        .filter(|v| v.contains(tag.as_str()))
        .any(|v| {
            Via::parse(v)
                .map(|via| {
                    local.is_local_via(&via) && via.branch().is_some_and(|b| b.starts_with(&tag))
                })
                .unwrap_or(false)
        })
}

/// Removes the Route entries that name this proxy from the top of the route set (§16.4).
/// Returns whether any was removed.
pub fn pop_own_routes(local: &LocalIdentity, req: &mut Request) -> bool {
    let mut popped = false;
    while let Some(first) = req.headers.get(&HeaderName::Route) {
        let ours = NameAddr::parse(first)
            .map(|na| local.is_local_uri(&na.uri))
            .unwrap_or(false);
        if !ours {
            break;
        }
        req.headers.remove_first(&HeaderName::Route);
        popped = true;
    }
    popped
}

/// The next-hop address for a URI without DNS: the RFC 3263 resolution of an IP literal (or
/// `localhost`) host ([`crate::sip::resolve::resolve_numeric`]): `transport=tcp` selects TCP,
/// `transport=tls` and `sips:` TLS (port 5061 by default, the server's certificate verified).
/// `None` for names that need a DNS lookup, and for a transport this server cannot open (`ws`,
/// `wss`, `sctp`…) or a `sips:` URI asking for a plaintext one: such a request is refused,
/// never sent in plaintext.
pub fn resolve(uri: &Uri) -> Option<(SocketAddr, Transport)> {
    use crate::sip::resolve::{Target, resolve_numeric};
    if !uri.is_sip() || Target::unknown_transport(uri) {
        return None;
    }
    let dest = resolve_numeric(&Target::from_uri(uri))?
        .ok()?
        .into_iter()
        .next()?;
    match Transport::from(dest.proto) {
        t @ (Transport::Udp | Transport::Tcp | Transport::Tls) => Some((dest.addr, t)),
        Transport::Ws | Transport::Wss => None,
    }
}

/// Whether `uri` may be reached over the plaintext UDP/TCP this server has: a `sip:` URI with
/// no transport parameter or `transport=udp|tcp` (not `sips:`, TLS, WS or SCTP).
pub fn plaintext_reachable(uri: &Uri) -> bool {
    uri.scheme == Scheme::Sip
        && match uri.param("transport") {
            None => true,
            Some(Some(t)) => matches!(
                Transport::from_name(t),
                Some(Transport::Udp | Transport::Tcp)
            ),
            Some(None) => false,
        }
}

/// Whether a binding's Contact may be reached over the flow its REGISTER came on (`flow`, whose
/// connection the request goes down): a secure flow (TLS, WSS) carries any URI; a WS flow a
/// `sip:` URI without a transport or with `transport=ws` (RFC 7118 §5.3); UDP and TCP what
/// [`plaintext_reachable`] allows.
pub fn flow_reachable(contact: &Uri, flow: Transport) -> bool {
    flow.is_secure()
        || plaintext_reachable(contact)
        || (flow == Transport::Ws
            && contact.scheme == Scheme::Sip
            && matches!(contact.param("transport"),
                        Some(Some(t)) if Transport::from_name(t) == Some(Transport::Ws)))
}

/// Where a response goes back to, from its (next) Via: `received`/`rport` (RFC 3581) else sent-by.
pub(crate) fn via_destination(via: &Via) -> Option<(SocketAddr, Transport)> {
    let host = via.received().unwrap_or(&via.host);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = match via.params.get("rport") {
        Some(Some(p)) => p.parse().ok()?,
        _ => via.port.unwrap_or(5060),
    };
    // A response goes back on the transport its request came on, never a weaker one (an
    // unknown name, e.g. SCTP, cannot be answered).
    let transport = Transport::from_name(&via.transport)?;
    Some((SocketAddr::new(ip, port), transport))
}

/// Whether the sender of a request sits behind a NAT (Kamailio's `nat_uac_test("19")`): its top
/// Via's sent-by is not the packet's source (RFC 3581 `received`/`rport` differ), or its Contact
/// names a private address that is not the source.
pub fn sender_behind_nat(req: &Request, source: SocketAddr, transport: Transport) -> bool {
    if let Ok(via) = req.headers.top_via() {
        let host = via.host.trim_start_matches('[').trim_end_matches(']');
        let ip_differs = host.parse::<IpAddr>().map_or(true, |ip| ip != source.ip());
        let port_differs = transport == Transport::Udp && via.port.unwrap_or(5060) != source.port();
        if ip_differs || port_differs {
            return true;
        }
    }
    req.headers
        .get(&HeaderName::Contact)
        .and_then(|c| NameAddr::parse(c).ok())
        .and_then(|na| contact_ip(&na.uri))
        .is_some_and(|ip| is_private(ip) && ip != source.ip())
}

/// The IP address a contact URI names literally, when [`resolve`] would reach it (a `sip:` URI
/// over UDP, TCP or TLS); `None` for a host name, which needs DNS. Unlike [`resolve`] it
/// allocates nothing: it runs for every REGISTER and INVITE.
fn contact_ip(uri: &Uri) -> Option<IpAddr> {
    use crate::sip::resolve::Proto;
    if !uri.is_sip() {
        return None;
    }
    match uri.param("transport") {
        None => {}
        Some(Some(t))
            if matches!(
                Proto::from_param(t),
                Some(Proto::Udp | Proto::Tcp | Proto::Tls)
            ) => {}
        Some(_) => return None,
    }
    if uri.param("maddr").is_some() {
        return resolve(uri).map(|(a, _)| a.ip());
    }
    uri.host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// RFC 1918, RFC 6598 (CGN), link-local and unique-local addresses: never reachable from the
/// other side of a NAT.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

pub(crate) fn transport_token(t: Transport) -> &'static str {
    t.via_name()
}

/// Response ranking for §16.7 step 6: lower is better. 6xx beats everything, then 3xx, 4xx, 5xx;
/// a 408 we made up for a silent branch ranks last of the 4xx.
pub(crate) fn rank(status: u16) -> u16 {
    match status {
        600..=699 => 0,
        408 => 450,
        s => s,
    }
}
