//! Who "we" are: the addresses this server advertises in Via and Record-Route, and the test of
//! whether a URI or host names this server (RFC 3261 §16.4 "the Request-URI ... is a value this
//! proxy placed into a Record-Route", §16.3 loop detection, §16.5 "responsible for the domain").

use std::net::{IpAddr, SocketAddr};

use crate::sip::msg::{Uri, Via};
use crate::sip::transaction::Transport;

/// One bound socket as the rest of the world should address it.
#[derive(Debug, Clone)]
pub struct LocalInterface {
    /// UDP or TCP.
    pub transport: Transport,
    /// The bound address (may be a wildcard IP).
    pub bound: SocketAddr,
    /// The host written into Via sent-by and Record-Route (an IP literal, IPv6 in brackets).
    pub host: String,
    /// The port written into Via and Record-Route.
    pub port: u16,
}

/// The server's identity: its interfaces, its domain and aliases.
#[derive(Debug, Clone)]
pub struct LocalIdentity {
    /// Bound interfaces, in configuration order.
    pub interfaces: Vec<LocalInterface>,
    /// The domain (lower-cased).
    pub domain: String,
    /// Extra names and IPs that mean this server (lower-cased).
    pub aliases: Vec<String>,
}

impl LocalIdentity {
    /// Builds the identity. `advertise` is the host used for wildcard-bound sockets.
    pub fn new(
        bound: &[(Transport, SocketAddr)],
        advertise: &str,
        domain: &str,
        aliases: &[String],
    ) -> Self {
        let interfaces = bound
            .iter()
            .map(|&(transport, addr)| {
                let host = if addr.ip().is_unspecified() {
                    advertise.to_string()
                } else {
                    match addr.ip() {
                        IpAddr::V4(v4) => v4.to_string(),
                        IpAddr::V6(v6) => format!("[{v6}]"),
                    }
                };
                LocalInterface {
                    transport,
                    bound: addr,
                    host,
                    port: addr.port(),
                }
            })
            .collect();
        LocalIdentity {
            interfaces,
            domain: domain.to_ascii_lowercase(),
            aliases: aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
        }
    }

    /// The interface to send on with `transport` (the first of that kind), if any.
    pub fn interface(&self, transport: Transport) -> Option<&LocalInterface> {
        self.interfaces.iter().find(|i| i.transport == transport)
    }

    /// Whether `host` (as written in a URI; IPv6 in brackets) names this server, ignoring the port:
    /// the domain, an alias, an advertised or bound IP, `localhost`, or a loopback IP when a socket
    /// is bound to a wildcard or loopback address.
    pub fn is_local_host(&self, host: &str) -> bool {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        if h.eq_ignore_ascii_case(&self.domain)
            || h.eq_ignore_ascii_case("localhost")
            || self
                .aliases
                .iter()
                .any(|a| h.eq_ignore_ascii_case(a.trim_start_matches('[').trim_end_matches(']')))
        {
            return true;
        }
        let ip: Option<IpAddr> = h.parse().ok();
        self.interfaces.iter().any(|i| {
            i.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(h)
                || match ip {
                    Some(ip) => {
                        ip == i.bound.ip()
                            || (ip.is_loopback()
                                && (i.bound.ip().is_unspecified() || i.bound.ip().is_loopback()))
                    }
                    None => false,
                }
        })
    }

    /// Whether `uri` addresses this server itself (host and port), as a Route or Record-Route
    /// value we inserted would (§16.4). A URI without a port means 5060 (5061 for sips).
    pub fn is_local_uri(&self, uri: &Uri) -> bool {
        if !uri.is_sip() || !self.is_local_host(&uri.host) {
            return false;
        }
        let port = uri.port.unwrap_or(5060);
        let h: &str = &uri.host;
        let named = h.eq_ignore_ascii_case(&self.domain)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(h));
        self.interfaces.iter().any(|i| i.port == port) || (named && uri.port.is_none())
    }

    /// Whether a Via sent-by is one of our interfaces (a response whose top Via is ours, §16.7 step 3).
    pub fn is_local_via(&self, via: &Via) -> bool {
        let port = via.port.unwrap_or(5060);
        self.interfaces
            .iter()
            .any(|i| i.port == port && i.host.eq_ignore_ascii_case(&via.host))
    }
}

/// The primary IPv4 address of this host, found by routing a UDP socket towards a documentation
/// address (RFC 5737 TEST-NET-1): `connect` on UDP sends nothing. Falls back to 127.0.0.1.
pub fn primary_ipv4() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn ident() -> LocalIdentity {
        LocalIdentity::new(
            &[
                (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
                (Transport::Tcp, "127.0.0.1:5060".parse().unwrap()),
            ],
            "127.0.0.1",
            "example.com",
            &["sip.example.com".to_string()],
        )
    }

    #[test]
    fn local_hosts_and_uris() {
        let id = ident();
        assert!(id.is_local_host("127.0.0.1"));
        assert!(id.is_local_host("EXAMPLE.com"));
        assert!(id.is_local_host("sip.example.com"));
        assert!(!id.is_local_host("192.0.2.7"));
        let ours = Uri::parse(&ByteString::from("sip:127.0.0.1:5060;lr")).unwrap();
        assert!(id.is_local_uri(&ours));
        let theirs = Uri::parse(&ByteString::from("sip:127.0.0.1:5070;transport=UDP")).unwrap();
        assert!(!id.is_local_uri(&theirs));
        let named = Uri::parse(&ByteString::from("sip:example.com;lr")).unwrap();
        assert!(id.is_local_uri(&named));
    }
}
