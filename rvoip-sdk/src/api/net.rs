//! The endpoint's network side: binding the SIP sockets, resolving names (RFC 3263: NAPTR, SRV,
//! A/AAAA through [`crate::sip::resolve`] on the endpoint's runtime) and finding the local
//! address that faces a peer, and the driver task that reads UDP and TCP, runs the user agent's
//! timers and emits periodic statistics.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpListener;

use crate::driver::udp::SipUdp;
use tokio::sync::mpsc;

use super::endpoint::{Shared, lock};
use super::{ApiError, EndpointConfig, Event};
use crate::driver::Inbound;
use crate::sip::msg::Uri;
use crate::sip::resolve::{
    Destination, DnsResolver, Lookup, Naptr, Plan, Proto, ResolveError, Srv, Target,
    resolve_with_transports,
};
use crate::sip::transaction::Transport;
use crate::sip::ua::build;

/// Longest time one name resolution (all its NAPTR, SRV and A/AAAA queries) may take before
/// [`resolve`] gives up with [`ApiError::Network`].
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds the UDP socket and TCP listener of `cfg` (TCP on the UDP port when both are asked
/// for the same address with port 0; if another socket holds that TCP port, both are bound
/// again on a new port, up to 16 times). Errors: [`ApiError::Network`] (address in use,
/// permission).
#[allow(clippy::type_complexity)]
pub(super) fn bind(
    cfg: &EndpointConfig,
) -> Result<
    (
        Option<Arc<SipUdp>>,
        Option<TcpListener>,
        Vec<(Transport, SocketAddr)>,
    ),
    ApiError,
> {
    let net = |what: &str, a: SocketAddr, e: std::io::Error| {
        ApiError::Network(format!("cannot bind {what} {a}: {e}"))
    };
    // TCP takes the UDP socket's port when it asks for any port on the same address.
    let shared_port = matches!((cfg.udp, cfg.tcp), (Some(u), Some(t))
        if t.port() == 0 && u.ip() == t.ip());
    let retry = shared_port && cfg.udp.is_some_and(|u| u.port() == 0);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut bound = Vec::new();
        let mut udp = None;
        if let Some(a) = cfg.udp {
            let s = std::net::UdpSocket::bind(a).map_err(|e| net("udp", a, e))?;
            bound.push((
                Transport::Udp,
                s.local_addr().map_err(|e| net("udp", a, e))?,
            ));
            udp = Some((s, a));
        }
        let mut tcp = None;
        if let Some(mut a) = cfg.tcp {
            if let (true, Some((_, la))) = (shared_port, bound.first()) {
                a.set_port(la.port());
            }
            match std::net::TcpListener::bind(a) {
                Ok(l) => {
                    bound.push((
                        Transport::Tcp,
                        l.local_addr().map_err(|e| net("tcp", a, e))?,
                    ));
                    tcp = Some((l, a));
                }
                // The UDP port's TCP twin is taken: try another pair.
                Err(e) if retry && e.kind() == std::io::ErrorKind::AddrInUse && attempt < 16 => {
                    continue;
                }
                Err(e) => return Err(net("tcp", a, e)),
            }
        }
        let udp = match udp {
            Some((s, a)) => {
                s.set_nonblocking(true).map_err(|e| net("udp", a, e))?;
                Some(Arc::new(SipUdp::from_std(s).map_err(|e| net("udp", a, e))?))
            }
            None => None,
        };
        let tcp = match tcp {
            Some((l, a)) => {
                l.set_nonblocking(true).map_err(|e| net("tcp", a, e))?;
                Some(TcpListener::from_std(l).map_err(|e| net("tcp", a, e))?)
            }
            None => None,
        };
        return Ok((udp, tcp, bound));
    }
}

/// Parses a target or AOR; accepts `user@host` without the scheme.
pub(crate) fn parse_uri(s: &str) -> Result<Uri, ApiError> {
    let s = s.trim();
    let lower = s.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    let has_sip_scheme = lower.starts_with("sip:") || lower.starts_with("sips:");
    // A scheme other than sip/sips (`mailto:bob@x`, `tel:…`) or user:password before the '@'
    // (deprecated, RFC 3261 §19.1.1) is not turned into a SIP URI by prefixing `sip:`.
    let colon_before_at = s
        .find('@')
        .is_some_and(|at| s.get(..at).is_some_and(|u| u.contains(':')));
    let text = if has_sip_scheme {
        s.to_string()
    } else if s.contains('@') && !colon_before_at {
        format!("sip:{s}")
    } else {
        s.to_string()
    };
    let uri = Uri::parse(&text.clone().into())
        .map_err(|_| ApiError::InvalidArgument(format!("not a SIP URI: {s}")))?;
    if !uri.is_sip() {
        return Err(ApiError::InvalidArgument(format!("not a SIP URI: {s}")));
    }
    // No silent downgrade: transport=ws/wss/sctp need transports an endpoint does not have, so
    // they are refused here instead of being sent over plaintext UDP/TCP.
    if let Some(Some(t)) = uri.param("transport") {
        if !matches!(
            Transport::from_name(t),
            Some(Transport::Udp | Transport::Tcp | Transport::Tls)
        ) {
            return Err(ApiError::InvalidArgument(format!(
                "{s}: transport {t} is not supported by an endpoint (UDP, TCP, TLS); \
                 refusing to send it in plaintext"
            )));
        }
    }
    if uri.scheme == crate::sip::msg::Scheme::Sips
        && build::uri_transport(&uri).is_some_and(|t| !t.is_secure())
    {
        return Err(ApiError::InvalidArgument(format!(
            "{s}: a sips: URI is reached over TLS only (RFC 5630), not {}",
            build::uri_transport(&uri)
                .map(|t| t.as_str())
                .unwrap_or("?")
        )));
    }
    Ok(uri)
}

/// The RFC 3263 target of a SIP or SIPS URI ([`Target::from_uri`]).
pub(super) fn uri_target(uri: &Uri) -> Target {
    Target::from_uri(uri)
}

/// The RFC 3263 target of an account's server string: a `sip:`/`sips:` URI, or `host[:port]`
/// (IPv6 in brackets, or bare without a port). Errors: [`ApiError::InvalidArgument`].
pub(super) fn server_target(s: &str) -> Result<Target, ApiError> {
    let s = s.trim();
    let lower = s.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return Ok(uri_target(&parse_uri(s)?));
    }
    let (host, port) = split_hostport(s);
    if host.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "no host in server {s:?}"
        )));
    }
    Ok(Target {
        host: loopback_alias(host),
        port,
        ..Target::default()
    })
}

/// The host without IPv6 brackets; `localhost` as `127.0.0.1` (resolved without DNS, as before
/// RFC 3263 resolution, whatever the DNS server).
fn loopback_alias(host: &str) -> String {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST.to_string()
    } else {
        host.to_string()
    }
}

/// Splits a `host[:port]` server string (IPv6 in brackets, or bare without a port) into its
/// host (no brackets) and port.
fn split_hostport(s: &str) -> (&str, Option<u16>) {
    if let Ok(a) = s.parse::<SocketAddr>() {
        let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
        return (
            host.trim_start_matches('[').trim_end_matches(']'),
            Some(a.port()),
        );
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return (bare, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse().ok()),
        _ => (s, None),
    }
}

/// The endpoint's DNS client: the resolver (system configuration, or
/// [`EndpointConfig::dns_server`]) is made at the first name that needs a query, so IP
/// addresses work without any DNS configuration, and then kept (it caches answers for their
/// TTL).
pub(crate) struct Dns {
    server: Option<SocketAddr>,
    resolver: Mutex<Option<Arc<DnsResolver>>>,
}

impl Dns {
    /// A client asking `server`, or the system's name servers when `None`.
    pub(crate) fn new(server: Option<SocketAddr>) -> Dns {
        Dns {
            server,
            resolver: Mutex::new(None),
        }
    }

    /// The resolver, made now if this is the first query. Errors: [`ResolveError::Dns`] when
    /// the system configuration cannot be read.
    fn resolver(&self) -> Result<Arc<DnsResolver>, ResolveError> {
        let mut g = self.resolver.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = g.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(match self.server {
            Some(s) => DnsResolver::with_nameserver(s),
            None => DnsResolver::from_system()?,
        });
        *g = Some(r.clone());
        Ok(r)
    }
}

impl Lookup for Dns {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        let r = self.resolver()?;
        r.naptr(name).await
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        let r = self.resolver()?;
        r.srv(name).await
    }

    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let r = self.resolver()?;
        r.addrs(host).await
    }
}

/// Resolves `target` per RFC 3263 for a client of the `supported` transports: the destinations
/// to try, in order (failover, §4.3). An IP address is answered here without DNS; a name is
/// looked up on the endpoint's runtime while this thread waits (at most [`RESOLVE_TIMEOUT`]).
/// May be called from any thread, also from inside a tokio runtime (a multi-thread runtime's
/// worker hands its other tasks over while it waits) or from the event handler.
///
/// Errors: [`ApiError::InvalidArgument`] (empty host, port 0, an unsupported transport),
/// [`ApiError::Network`] (not found, DNS failure or timeout, a `sips:` target whose domain
/// offers only plaintext), [`ApiError::Shutdown`] (the runtime is gone).
pub(super) fn resolve(
    shared: &Shared,
    target: &Target,
    supported: &[Proto],
) -> Result<Vec<Destination>, ApiError> {
    let name = target.maddr.as_deref().unwrap_or(&target.host).to_string();
    let err = |e: ResolveError| match e {
        ResolveError::InvalidTarget(_) => ApiError::InvalidArgument(e.to_string()),
        ResolveError::NoSecureTransport(_) => ApiError::Network(format!(
            "{e}: a sips: address is reached over TLS only, never downgraded (RFC 5630)"
        )),
        _ => ApiError::Network(format!("cannot resolve {name}: {e}")),
    };
    let mut plan = Plan::with_transports(target, supported).map_err(err)?;
    if plan.poll_query().is_none() {
        return plan.finish().map_err(err);
    }
    let dns = shared.dns.clone();
    let (t, supported) = (target.clone(), supported.to_vec());
    let lookup = async move {
        let mut rng = StdRng::from_entropy();
        let r = resolve_with_transports(&*dns, &t, &supported, &mut rng);
        tokio::time::timeout(RESOLVE_TIMEOUT, r).await
    };
    match wait_for(&shared.rt, lookup) {
        None => Err(ApiError::Shutdown),
        Some(Err(_)) => Err(ApiError::Network(format!(
            "cannot resolve {name}: DNS lookups took over {} s",
            RESOLVE_TIMEOUT.as_secs()
        ))),
        Some(Ok(r)) => r.map_err(err),
    }
}

/// Runs `fut` on `rt` and blocks this thread until it is done; `None` if the runtime is shut
/// down. On a multi-thread runtime's worker the wait runs in `block_in_place` (its other tasks
/// move to another thread); a current-thread runtime (not ours) is simply blocked meanwhile.
fn wait_for<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let wait = move || rx.recv().ok();
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// The local IP the OS would use toward `peer` (connect() on a UDP socket sends nothing).
pub(super) fn facing_ip(peer: SocketAddr) -> IpAddr {
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(peer).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or_else(crate::server::local::primary_ipv4)
}

/// The driver task: reads UDP and the TCP inbound channel, runs timers, emits statistics.
pub(super) async fn run(
    shared: Arc<Shared>,
    udp: Option<Arc<SipUdp>>,
    mut inbound: mpsc::Receiver<Inbound>,
) {
    let mut buf = vec![0u8; 65_536];
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let stats_every = shared.cfg.stats_interval;
    let mut next_stats = stats_every.map(|d| tokio::time::Instant::now() + d);
    loop {
        let deadline = lock(&shared.core)
            .ua
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(far);
        let deadline = next_stats.map_or(deadline, |s| s.min(deadline));
        let recv = async {
            match &udp {
                Some(s) => s.recv_from(&mut buf).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.stop.notified() => break,
            r = recv => {
                match r {
                    Ok((n, source)) => {
                        let Some(d) = buf.get(..n) else { continue };
                        if d.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            continue; // keep-alive
                        }
                        let data = Bytes::copy_from_slice(d);
                        let mut core = lock(&shared.core);
                        let local = shared.local_for_locked(&mut core, source, Transport::Udp);
                        core.ua.handle_datagram(Instant::now(), data, source, Transport::Udp, local);
                        shared.pump(&mut core);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive error");
                    }
                }
            }
            m = inbound.recv() => {
                let Some(m) = m else { break };
                let mut core = lock(&shared.core);
                match m {
                    Inbound::Msg { data, source, transport } => {
                        let local = shared.local_for_locked(&mut core, source, transport);
                        core.ua.handle_datagram(Instant::now(), data, source, transport, local);
                        shared.pump(&mut core);
                    }
                    Inbound::TcpOpened { peer, tx } => core.transports.opened(peer, tx),
                    Inbound::TcpClosed { peer } => core.transports.closed(peer),
                    Inbound::ConnectFailed { peer, transport, reason } => {
                        core.transports.closed(peer);
                        core.ua.connection_failed(Instant::now(), peer, transport, &reason);
                        shared.pump(&mut core);
                    }
                    // The endpoint resolves names itself, not through this channel.
                    Inbound::Resolved { .. } => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let mut core = lock(&shared.core);
                if core.ua.poll_timeout().is_some_and(|t| t <= now) {
                    core.ua.handle_timeout(now);
                    shared.pump(&mut core);
                }
                if let (Some(at), Some(every)) = (next_stats, stats_every) {
                    if at <= tokio::time::Instant::now() {
                        next_stats = Some(at + every);
                        let stats: Vec<_> = core
                            .media
                            .iter()
                            .filter_map(|(c, m)| m.handle.as_ref().map(|h| (*c, h.stats())))
                            .collect();
                        drop(core);
                        for (call, stats) in stats {
                            shared.emit(Event::Statistics { call, stats });
                        }
                    }
                }
            }
            _ = shared.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_uri;

    #[test]
    fn sip_uris_and_bare_user_at_host_parse() {
        for (input, user, host) in [
            ("sip:bob@192.0.2.1", "bob", "192.0.2.1"),
            ("SIP:bob@192.0.2.1:5070", "bob", "192.0.2.1"),
            ("  bob@example.com ", "bob", "example.com"),
        ] {
            let u = parse_uri(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(u.user.as_deref(), Some(user), "{input}");
            assert_eq!(u.host, host, "{input}");
        }
    }

    #[test]
    fn server_strings_split_into_host_and_port() {
        use super::{server_target, split_hostport};
        assert_eq!(split_hostport("10.0.0.1:5061"), ("10.0.0.1", Some(5061)));
        assert_eq!(split_hostport("[::1]:5061"), ("::1", Some(5061)));
        assert_eq!(split_hostport("::1"), ("::1", None));
        assert_eq!(split_hostport("[::1]"), ("::1", None));
        assert_eq!(
            split_hostport("sip.example.com:5080"),
            ("sip.example.com", Some(5080))
        );
        assert_eq!(split_hostport("sip.example.com"), ("sip.example.com", None));
        let t = server_target("sips:alice@[::1]:5061;transport=tls").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport, t.secure),
            ("::1", Some(5061), Some(super::Proto::Tls), true)
        );
        // A sips: URI asking for a plaintext transport is refused, never downgraded.
        assert!(matches!(
            server_target("sips:alice@[::1]:5061;transport=tcp"),
            Err(super::ApiError::InvalidArgument(_))
        ));
        let t = server_target("LocalHost:5070").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", Some(5070)));
    }

    #[test]
    fn other_schemes_and_garbage_are_invalid_arguments() {
        for input in [
            "mailto:bob@example.com",
            "tel:+15551234@example.com",
            "http://bob@example.com",
            "",
            "sip:",
            "bob",
            "sips:bob@127.0.0.1;transport=udp",
            "sip:bob@127.0.0.1;transport=ws",
            "sip:bob@127.0.0.1;transport=sctp",
        ] {
            assert!(
                matches!(parse_uri(input), Err(super::ApiError::InvalidArgument(_))),
                "{input:?} accepted"
            );
        }
    }
}
