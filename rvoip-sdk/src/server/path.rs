//! Path between nodes (RFC 3327) with RFC 5626 flow tokens: how a node that shares its bindings
//! with other nodes (`store = "redis"`) lets them reach a user over the flow only it holds.
//!
//! A binding made over a connection (TCP, TLS, WS, WSS) or through a NAT can only be reached
//! from the node that accepted the REGISTER: the connection lives there, and a NAT mapping only
//! lets in packets from the address the REGISTER went to. When `record_path` is on, that node
//! (the registrar) records its own Path URI for such a binding,
//! `<sip:FLOWTOKEN@HOST:PORT;transport=udp;lr;ob>`. Another node routes a request for the
//! binding to that URI with the Path vector as its Route set (RFC 3327 §5.5, loose routing);
//! the registering node verifies the token and sends the request down the flow it names
//! (RFC 5626 §5.3).
//!
//! The flow token is the flow (transport, source address and port) followed by an HMAC-SHA256
//! over it, keyed with the digest nonce secret every node sharing the store already holds
//! (RFC 5626 §5.2), truncated to [`TOKEN_MAC_BYTES`] and written in hex. Nobody without the
//! secret can make a node relay to an address of their choice: a forged or damaged token is
//! refused (430 Flow Failed, RFC 5626 §11.5). Sans-IO; nothing here panics on input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::server::local::LocalIdentity;
use crate::sip::msg::{ByteString, NameAddr, Uri};
use crate::sip::transport::Transport;

/// Bytes of the HMAC-SHA256 kept in a flow token (80 bits).
pub const TOKEN_MAC_BYTES: usize = 10;

/// Domain separation of the token MAC from other uses of the shared secret.
const TOKEN_LABEL: &[u8] = b"rvoip flow token v1";

/// One flow (RFC 5626 §3.3): how the registering node reaches a user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The transport the REGISTER came on (its connection, for a stream transport).
    pub transport: Transport,
    /// The REGISTER's source address (the connection's peer, or the NAT's public mapping).
    pub source: SocketAddr,
    /// Whether the REGISTER came through a NAT (in-dialog requests then follow the flow too).
    pub nat: bool,
}

/// Whether a binding made over `transport` (behind a NAT when `behind_nat`) can only be reached
/// through the node that accepted its REGISTER: a connection-oriented transport, or a NAT.
pub fn needs_path(transport: Transport, behind_nat: bool) -> bool {
    transport.is_reliable() || behind_nat
}

fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Ws => 3,
        Transport::Wss => 4,
    }
}

fn transport_of(code: u8) -> Option<Transport> {
    Some(match code {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        2 => Transport::Tls,
        3 => Transport::Ws,
        4 => Transport::Wss,
        _ => return None,
    })
}

/// The flow's bytes: transport code (bit 7 set for IPv6, bit 6 behind a NAT), IP address,
/// port (big-endian).
fn flow_bytes(flow: &Flow) -> Vec<u8> {
    let mut v = Vec::with_capacity(19 + TOKEN_MAC_BYTES);
    let kind = transport_code(flow.transport) | if flow.nat { 0x40 } else { 0 };
    match flow.source.ip() {
        IpAddr::V4(ip) => {
            v.push(kind);
            v.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            v.push(kind | 0x80);
            v.extend_from_slice(&ip.octets());
        }
    }
    v.extend_from_slice(&flow.source.port().to_be_bytes());
    v
}

fn mac(secret: &[u8; 32], data: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: new_from_slice cannot fail here.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    m.update(TOKEN_LABEL);
    m.update(data);
    m
}

/// The flow token of `flow` under `secret` (lower-case hex, 34 characters for IPv4, 58 for
/// IPv6): usable as the user part of a SIP URI.
pub fn encode_token(flow: &Flow, secret: &[u8; 32]) -> String {
    let mut bytes = flow_bytes(flow);
    let tag = mac(secret, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag[..TOKEN_MAC_BYTES]);
    hex::encode(bytes)
}

/// The flow a token names, when its MAC verifies under `secret` (constant-time comparison).
/// `None` for anything else: not hex, a wrong length, an unknown transport, a forged or damaged
/// MAC.
pub fn verify_token(token: &str, secret: &[u8; 32]) -> Option<Flow> {
    if token.len() > 2 * (19 + TOKEN_MAC_BYTES) {
        return None;
    }
    let bytes = hex::decode(token).ok()?;
    let (&kind, rest) = bytes.split_first()?;
    let ip_len = if kind & 0x80 == 0 { 4 } else { 16 };
    if rest.len() != ip_len + 2 + TOKEN_MAC_BYTES {
        return None;
    }
    let (data, tag) = bytes.split_at(1 + ip_len + 2);
    mac(secret, data).verify_truncated_left(tag).ok()?;
    let transport = transport_of(kind & 0x3f)?;
    let ip = match ip_len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&data[1..5]).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[1..17]).ok()?)),
    };
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(&data[1 + ip_len..]).ok()?);
    Some(Flow {
        transport,
        source: SocketAddr::new(ip, port),
        nat: kind & 0x40 != 0,
    })
}

/// This node's Path URI for `flow` (RFC 3327 §5.2, RFC 5626 §5.2):
/// `<sip:TOKEN@HOST:PORT;transport=…;lr;ob>`, on the interface other nodes reach it at: UDP
/// when it has one, else TCP, else the flow's own transport. `None` without any interface.
pub fn own_path(local: &LocalIdentity, flow: &Flow, secret: &[u8; 32]) -> Option<ByteString> {
    let i = local
        .interface(Transport::Udp)
        .or_else(|| local.interface(Transport::Tcp))
        .or_else(|| local.interface(flow.transport))?;
    Some(ByteString::from(format!(
        "<sip:{}@{}:{};transport={};lr;ob>",
        encode_token(flow, secret),
        i.host,
        i.port,
        i.transport.as_str(),
    )))
}

/// What a Route or Path value that names this node says about a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnRoute {
    /// Not this node's URI (or not a URI).
    NotOurs,
    /// This node's URI without a user part: a plain Record-Route or Path entry.
    Plain,
    /// This node's URI with a flow token that verifies.
    Flow(Flow),
    /// This node's URI with a user part that is not a valid token (forged, damaged, or made
    /// with another secret).
    BadToken,
}

/// Classifies a Route or Path value (`<uri>;params`) for this node (`local`, `secret`).
pub fn classify(value: &str, local: &LocalIdentity, secret: &[u8; 32]) -> OwnRoute {
    let Ok(na) = NameAddr::parse(&ByteString::from(value)) else {
        return OwnRoute::NotOurs;
    };
    classify_uri(&na.uri, local, secret)
}

/// [`classify`] for a parsed URI.
pub fn classify_uri(uri: &Uri, local: &LocalIdentity, secret: &[u8; 32]) -> OwnRoute {
    if !local.is_local_uri(uri) {
        return OwnRoute::NotOurs;
    }
    match uri.user.as_deref() {
        None | Some("") => OwnRoute::Plain,
        Some(user) => match verify_token(user, secret) {
            Some(flow) => OwnRoute::Flow(flow),
            None => OwnRoute::BadToken,
        },
    }
}

/// The URI of a Path value (`<uri>;params`), if it parses.
pub fn path_uri(value: &str) -> Option<Uri> {
    NameAddr::parse(&ByteString::from(value))
        .ok()
        .map(|na| na.uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn local(port: u16) -> LocalIdentity {
        LocalIdentity::new(
            &[(Transport::Udp, format!("192.0.2.1:{port}").parse().unwrap())],
            "192.0.2.1",
            "example.com",
            &[],
        )
    }

    #[test]
    fn tokens_round_trip_for_every_transport_and_family() {
        for t in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ] {
            for (a, nat) in [("198.51.100.7:40123", true), ("[2001:db8::9]:5060", false)] {
                let flow = Flow {
                    transport: t,
                    source: a.parse().unwrap(),
                    nat,
                };
                let tok = encode_token(&flow, &SECRET);
                assert!(tok.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(verify_token(&tok, &SECRET), Some(flow));
                assert_eq!(
                    verify_token(&tok.to_ascii_uppercase(), &SECRET),
                    Some(flow),
                    "hex is case-insensitive (URI user parts may be re-cased)"
                );
            }
        }
    }

    #[test]
    fn forged_damaged_and_foreign_tokens_are_refused() {
        let flow = Flow {
            transport: Transport::Tcp,
            source: "198.51.100.7:40123".parse().unwrap(),
            nat: false,
        };
        let tok = encode_token(&flow, &SECRET);
        assert_eq!(verify_token(&tok, &[8; 32]), None, "another secret");
        // The same MAC with another address: the relay target cannot be changed.
        let mut forged = hex::decode(&tok).unwrap();
        forged[4] ^= 1;
        assert_eq!(verify_token(&hex::encode(&forged), &SECRET), None);
        // Every single-bit change anywhere is refused.
        let raw = hex::decode(&tok).unwrap();
        for i in 0..raw.len() * 8 {
            let mut b = raw.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert_eq!(verify_token(&hex::encode(&b), &SECRET), None, "bit {i}");
        }
        for bad in ["", "zz", "00", &tok[..tok.len() - 2], &format!("{tok}00")] {
            assert_eq!(verify_token(bad, &SECRET), None, "{bad:?}");
        }
        assert_eq!(verify_token(&"a".repeat(10_000), &SECRET), None);
    }

    #[test]
    fn own_path_is_classified_by_its_node_only() {
        let flow = Flow {
            transport: Transport::Ws,
            source: "203.0.113.5:61000".parse().unwrap(),
            nat: true,
        };
        let a = local(5060);
        let path = own_path(&a, &flow, &SECRET).unwrap();
        assert!(path.starts_with("<sip:") && path.ends_with(":5060;transport=udp;lr;ob>"));
        assert_eq!(classify(&path, &a, &SECRET), OwnRoute::Flow(flow));
        assert_eq!(classify(&path, &local(5070), &SECRET), OwnRoute::NotOurs);
        assert_eq!(classify(&path, &a, &[1; 32]), OwnRoute::BadToken);
        assert_eq!(
            classify("<sip:192.0.2.1:5060;lr>", &a, &SECRET),
            OwnRoute::Plain
        );
        assert_eq!(classify("<nonsense", &a, &SECRET), OwnRoute::NotOurs);
        assert!(needs_path(Transport::Tcp, false) && needs_path(Transport::Udp, true));
        assert!(!needs_path(Transport::Udp, false));
    }
}
