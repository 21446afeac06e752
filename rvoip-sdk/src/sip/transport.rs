//! The SIP transports (RFC 3261 §18, §26; RFC 7118): one type for the whole engine — the
//! transaction layer, the user agent, the registrar, the proxy, the drivers, the configuration
//! and the C/UniFFI faces all name a transport with [`Transport`], and every mapping between a
//! transport and its names (Via, `transport=` URI parameter, listen spec) lives here.

use std::fmt;

/// The transport a message was received on or is to be sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP (RFC 3261 §18): unreliable, the transaction layer retransmits.
    Udp,
    /// TCP (RFC 3261 §18): reliable, framed by Content-Length.
    Tcp,
    /// TLS over TCP (RFC 3261 §26, RFC 5630): reliable and secure.
    Tls,
    /// WebSocket (RFC 7118): reliable, one SIP message per WebSocket message.
    Ws,
    /// Secure WebSocket (RFC 7118): WebSocket over TLS.
    Wss,
}

impl Transport {
    /// Every transport, in the order above.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Whether the transport is reliable (RFC 3261 §17: no retransmissions, zero wait for
    /// timers D, I, J and K). Only UDP is not.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether the transport is secure (TLS or WSS): the only ones a `sips:` URI may use
    /// (RFC 3261 §26.2, RFC 5630).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether messages are framed as a byte stream by Content-Length (TCP, TLS; RFC 3261
    /// §18.3), as opposed to one per datagram (UDP) or per WebSocket message (WS, WSS).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The lower-case name of a `transport=` URI parameter and of a listen spec (`"udp"`,
    /// `"tcp"`, `"tls"`, `"ws"`, `"wss"`; RFC 3261 §19.1.1, RFC 7118 §5.2).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The name in a Via header's sent-protocol (`SIP/2.0/UDP` …; RFC 3261 §20.42, RFC 7118
    /// §5.1): `"UDP"`, `"TCP"`, `"TLS"`, `"WS"`, `"WSS"`.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Parses a transport name as found in a Via header, a `transport=` parameter or a listen
    /// spec, ignoring ASCII case. `None` for anything else (SCTP included: not supported).
    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The port used when a URI names none (RFC 3261 §19.1.2: 5060, 5061 for TLS; RFC 7118
    /// §5.2 leaves WS to the HTTP ports: 80, 443 for WSS).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }
}

impl fmt::Display for Transport {
    /// Writes [`Transport::as_str`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Transport;

    #[test]
    fn names_round_trip_and_ignore_case() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.as_str()), Some(t));
            assert_eq!(Transport::from_name(t.via_name()), Some(t));
        }
        assert_eq!(Transport::from_name(" Tls "), Some(Transport::Tls));
        assert_eq!(Transport::from_name("sctp"), None);
        assert_eq!(Transport::from_name(""), None);
    }

    #[test]
    fn properties() {
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Ws.is_reliable());
        assert!(Transport::Tls.is_secure() && Transport::Wss.is_secure());
        assert!(!Transport::Tcp.is_secure() && !Transport::Ws.is_secure());
        assert_eq!(Transport::Tls.default_port(), 5061);
        assert!(Transport::Tcp.is_stream() && !Transport::Wss.is_stream());
    }
}
