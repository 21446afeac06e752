//! The `server_core` fuzz target.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::Algorithm;
use crate::media::relay::{Relay, RelayConfig};
use crate::sip::msg::{Auth, ByteString, HeaderName, Message};

use super::{Cursor, NOW_SECS, UNLIMITED};

/// Where the fuzzed datagrams come from: public and private IPv4, IPv6, and the loopback.
const SOURCES: [&str; 8] = [
    "192.0.2.10:5060",
    "192.0.2.11:5070",
    "10.1.2.3:5060",
    "198.51.100.20:5062",
    "[2001:db8::5]:5060",
    "127.0.0.1:5080",
    "203.0.113.3:40000",
    "192.0.2.10:5099",
];

/// The registrar + proxy core ([`crate::server::core::ServerCore`]) with three users and the
/// media relay anchoring calls, on simulated time. The input is a script of records separated
/// by NUL bytes; each starts with a control byte:
/// - op 0–3: the rest is a datagram from source `(c >> 3) & 7` over the transport `c >> 6`;
///   the text `@AUTH@` in it is replaced by a valid digest answer (user `alice`) to the last
///   challenge the server sent, so registrations and authenticated calls happen;
/// - op 4: answers the last request the server sent out (a fork branch) with the status in the
///   next 2 bytes, a To tag and the rest as body, from where it was sent;
/// - op 5: advances simulated time by the next 2 bytes (in 10 ms) and runs the timers;
/// - op 6: answers the pending DNS lookup with one of the sources (or a failure);
/// - op 7: reports the connection to the last destination failed.
///
/// After each step every transmit is drained. Nothing may panic; everything the server sends
/// must be a SIP message our own parser accepts.
pub fn server_core(data: &[u8]) {
    use crate::server::config::ServerConfig;
    use crate::server::core::ServerCore;
    use crate::server::local::LocalIdentity;
    use crate::server::proxy::anchor::{RelayAnchor, RelayMode};
    use crate::sip::resolve::{Destination, Proto, ResolveError};
    use crate::sip::transaction::Transport;

    let mut records = data.split(|&b| b == 0);
    let cfg_byte = records.next().and_then(|r| r.first().copied()).unwrap_or(0);
    let t0 = Instant::now();
    let cfg = ServerConfig {
        invite_auth: cfg_byte & 1 == 0,
        lax_auth_user: cfg_byte & 2 != 0,
        digest_algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        flood_limit: if cfg_byte & 4 != 0 { 5 } else { 100_000 },
        ..ServerConfig::default()
    };
    let local = LocalIdentity::new(
        &[
            (Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
            (Transport::Tcp, "192.0.2.1:5060".parse().unwrap()),
            (Transport::Tls, "192.0.2.1:5061".parse().unwrap()),
            (Transport::Ws, "192.0.2.1:8080".parse().unwrap()),
        ],
        "192.0.2.1",
        "example.com",
        &["sip.example.com".to_string()],
    );
    let users = [
        ("alice".to_string(), "apw".to_string()),
        ("bob".to_string(), "bpw".to_string()),
        ("carol".to_string(), "cpw".to_string()),
    ];
    let mut core = ServerCore::new(&cfg, local, &users, t0, NOW_SECS);
    let mode = match (cfg_byte >> 3) & 3 {
        0 | 1 => RelayMode::Always,
        2 => RelayMode::Nat,
        _ => RelayMode::Off,
    };
    if mode != RelayMode::Off {
        let relay = Relay::new(RelayConfig {
            port_min: 30_000,
            port_max: 30_015,
            ..RelayConfig::default()
        });
        core.set_media_hook(Box::new(RelayAnchor::new(
            relay,
            mode,
            "192.0.2.1".parse().unwrap(),
        )));
    }

    let sources: Vec<SocketAddr> = SOURCES.iter().map(|s| s.parse().unwrap()).collect();
    let mut now = t0;
    let mut state = Seen::default();
    let mut tag = 0u32;

    for rec in records.take(64) {
        let Some((&c, body)) = rec.split_first() else {
            continue;
        };
        let transport = match c >> 6 {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => Transport::Ws,
        };
        let source = sources[usize::from((c >> 3) & 7)];
        match c & 7 {
            0..=3 => {
                let bytes = substitute_auth(body, state.challenge.as_ref());
                core.handle_datagram(now, bytes, source, transport);
            }
            4 => {
                if let Some((t, req)) = &state.last_request {
                    let mut b = Cursor::new(body);
                    let status = 100 + b.u16() % 600;
                    let mut resp = crate::sip::msg::Response::for_request(req, status);
                    tag += 1;
                    if let Some(to) = resp.headers.0.iter_mut().find(|h| h.name == HeaderName::To)
                        && !to.value.contains(";tag=")
                    {
                        to.value = ByteString::from(format!("{};tag=fz{tag}", to.value));
                    }
                    if (200..300).contains(&status) || status == 183 || status == 180 {
                        resp.headers
                            .push(HeaderName::Contact, format!("<sip:bob@{}>", t.dest));
                    }
                    let body = b.rest();
                    if !body.is_empty() {
                        resp.headers
                            .push(HeaderName::ContentType, "application/sdp");
                        resp.body = Bytes::copy_from_slice(body);
                    }
                    core.handle_datagram(now, resp.to_bytes(), t.dest, t.transport);
                }
            }
            5 => {
                let mut b = Cursor::new(body);
                now += Duration::from_millis(u64::from(b.u16()) * 10);
                core.handle_timeout(now);
                let _ = core.poll_timeout();
            }
            6 => {
                if let Some(id) = state.pending_dns.pop() {
                    let mut b = Cursor::new(body);
                    let pick = b.u8();
                    let result = if pick & 0x80 != 0 {
                        Err(ResolveError::NotFound("fuzz".into()))
                    } else {
                        Ok(vec![Destination {
                            addr: sources[usize::from(pick) % sources.len()],
                            proto: match (pick >> 3) & 3 {
                                0 => Proto::Udp,
                                1 => Proto::Tcp,
                                2 => Proto::Tls,
                                _ => Proto::Ws,
                            },
                            host: "other.example.net".into(),
                        }])
                    };
                    core.dns_resolved(now, id, result);
                }
            }
            _ => {
                if let Some((dest, transport)) = state.last_dest {
                    core.connection_failed(now, dest, transport, "fuzz");
                }
            }
        }
        drain(&mut core, &mut state);
        // A little time passes between datagrams.
        now += Duration::from_millis(1);
    }
    // Let every timer run out.
    for _ in 0..4 {
        now += Duration::from_secs(40);
        core.handle_timeout(now);
        drain(&mut core, &mut state);
    }
    let _ = core.stats;
}

/// What the server sent that the script refers to.
#[derive(Default)]
struct Seen {
    challenge: Option<Auth>,
    last_request: Option<(crate::sip::transaction::Transmit, crate::sip::msg::Request)>,
    last_dest: Option<(SocketAddr, crate::sip::transaction::Transport)>,
    pending_dns: Vec<u64>,
}

/// Drains the server's transmits (each must parse) and DNS queries into `seen`.
fn drain(core: &mut crate::server::core::ServerCore, seen: &mut Seen) {
    while let Some(t) = core.poll_transmit() {
        seen.last_dest = Some((t.dest, t.transport));
        let msg = match Message::parse(t.bytes.clone(), &UNLIMITED) {
            Ok(m) => m,
            Err(e) => panic!(
                "the server sent an unparsable message ({e}): {:?}",
                String::from_utf8_lossy(&t.bytes)
            ),
        };
        match msg {
            Message::Response(r) => {
                for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                    if let Some(v) = r.headers.get(&name)
                        && let Ok(a) = Auth::parse(v)
                    {
                        seen.challenge = Some(a);
                    }
                }
            }
            Message::Request(r) => seen.last_request = Some((t, r)),
        }
    }
    while let Some(q) = core.poll_dns_query() {
        seen.pending_dns.push(q.id);
    }
}

/// Replaces `@AUTH@` in a request by a digest answer (user `alice`) to `challenge`, computed
/// for the request's method and Request-URI (the first two tokens of its first line).
fn substitute_auth(body: &[u8], challenge: Option<&Auth>) -> Bytes {
    const MARK: &[u8] = b"@AUTH@";
    let Some(at) = body.windows(MARK.len()).position(|w| w == MARK) else {
        return Bytes::copy_from_slice(body);
    };
    let first_line = body
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut tokens = first_line.split(|&b| b == b' ');
    let method = String::from_utf8_lossy(tokens.next().unwrap_or(&[])).into_owned();
    let uri = String::from_utf8_lossy(tokens.next().unwrap_or(&[])).into_owned();
    let value = challenge
        .and_then(|ch| {
            crate::auth::authorization_value(ch, "alice", "apw", &method, &uri, 1, "fuzzc")
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[at + MARK.len()..]);
    Bytes::from(out)
}
