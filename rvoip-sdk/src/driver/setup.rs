//! Starting the server: the media relay, the TLS listeners' certificate, and the RFC 3263
//! resolver of the event loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{DriverError, Inbound, relay, tls};
use crate::media::relay::RelayConfig;
use crate::server::config::{ConfigError, ServerConfig};
use crate::server::core::ServerCore;
use crate::server::local::primary_ipv4;
use crate::server::proxy::anchor::RelayMode;
use crate::sip::transaction::Transport;

/// Asks for a receive buffer of `bytes` on a UDP listening socket (`udp_receive_buffer_bytes`):
/// `SO_RCVBUF`, then, where the kernel capped it at `net.core.rmem_max`, `SO_RCVBUFFORCE`
/// (Linux, needs CAP_NET_ADMIN). Returns the size the kernel reports (Linux reports twice the
/// usable size); logs a warning with the sysctl to raise when it stays below `bytes`. Never
/// fails: a socket keeps whatever buffer it got. `bytes == 0` leaves the socket alone.
pub(super) fn set_udp_receive_buffer(sock: &impl std::os::fd::AsFd, bytes: usize) -> usize {
    use rustix::net::sockopt;
    let got = || sockopt::socket_recv_buffer_size(sock).unwrap_or(0);
    if bytes == 0 {
        return got();
    }
    let _ = sockopt::set_socket_recv_buffer_size(sock, bytes);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if got() < bytes {
        let _ = sockopt::set_socket_recv_buffer_size_force(sock, bytes);
    }
    let size = got();
    if size < bytes {
        tracing::warn!(
            asked = bytes,
            got = size,
            "UDP receive buffer capped by the kernel: raise net.core.rmem_max (sysctl) or run \
             with CAP_NET_ADMIN, else bursts are dropped"
        );
    }
    size
}

/// Connections the kernel queues for a listening socket before `accept` (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). std and tokio use 128: a burst of phones
/// reconnecting after a network outage overflowed it, and the overflowing SYNs are dropped
/// and retried only after 1 s, 3 s, 7 s.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` (TCP, TLS and WebSocket transports) with SO_REUSEADDR and a
/// backlog of [`LISTEN_BACKLOG`]. Errors: those of socket(2), bind(2) and listen(2).
pub(super) fn listen_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}

/// Gives freed memory back to the OS (RSS falls after a flood or a burst of connections):
/// `mi_collect(force)` on the calling thread's mimalloc heap and the shared segment caches.
/// With another global allocator (an app embedding the server) it does next to nothing.
pub(super) fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers and is safe to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Keeps this process out of transparent huge pages (Linux `PR_SET_THP_DISABLE`, inherited by
/// every thread and child), so that RSS follows the heap bytes in use. With THP, one touched
/// byte of an allocator arena can fault in a whole 2 MiB page: measured on `held.py` (272 held
/// 60 KB requests), RSS grew 44.0 MB with THP and 36.3 MB without, and the idle server started
/// at 12.5 MB instead of 6.8 MB. A server whose memory is capped in bytes (`max_held_bytes`)
/// needs RSS to track those bytes. Call it first thing in `main`; elsewhere it does nothing.
/// Errors: none reported (a kernel without the prctl keeps THP, which costs memory only).
pub fn disable_transparent_huge_pages() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "PR_SET_THP_DISABLE failed: RSS may grow in 2 MiB steps");
    }
}

/// Starts the media relay unless `relay = "off"`: its thread, the address written into SDP
/// (`relay_advertise`, else the first non-wildcard listen address, else `advertise`) and the
/// address its ports bind to. Errors: [`DriverError::Relay`].
pub(super) fn start_relay(
    cfg: &ServerConfig,
    bound: &[(Transport, SocketAddr)],
    advertise: &str,
) -> Result<Option<(relay::RelayDriver, std::net::IpAddr)>, DriverError> {
    if cfg.relay == RelayMode::Off {
        return Ok(None);
    }
    let listen_ip = bound
        .iter()
        .map(|(_, a)| a.ip())
        .find(|ip| !ip.is_unspecified());
    let sdp_ip = cfg
        .relay_advertise
        .or(listen_ip)
        .or_else(|| {
            advertise
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let bind_ip = cfg
        .relay_bind
        .or(listen_ip)
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let rc = RelayConfig {
        port_min: cfg.relay_ports.min,
        port_max: cfg.relay_ports.max,
        media_timeout: std::time::Duration::from_secs(cfg.relay_timeout_s.max(1)),
        strict_source: cfg.relay_strict_source,
        rewrite_ssrc: cfg.relay_rewrite_ssrc,
        ..RelayConfig::default()
    };
    let driver = relay::RelayDriver::start(rc, bind_ip).map_err(DriverError::Relay)?;
    tracing::info!(mode = ?cfg.relay, ports = ?cfg.relay_ports, %sdp_ip, %bind_ip, "media relay started");
    Ok(Some((driver, sdp_ip)))
}

/// The TLS listeners' certificate: `tls_cert`/`tls_key`, else the self-signed one in the data
/// directory (made on first use for `localhost`, the domain, the advertised host and every
/// listen address). Returns the configuration and the certificate's SHA-256 fingerprint.
/// Errors: [`DriverError::Tls`].
pub(super) fn tls_identity(
    cfg: &ServerConfig,
    bound: &[(Transport, SocketAddr)],
    advertise: &str,
    domain: &str,
) -> Result<(Arc<rustls::ServerConfig>, String), DriverError> {
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        // Half a configuration is a mistake, not a request for the self-signed certificate.
        (Some(_), None) | (None, Some(_)) => {
            return Err(DriverError::Config(ConfigError::Invalid(
                "tls_cert and tls_key go together: set both or neither".into(),
            )));
        }
        (None, None) => {
            let dir = cfg.data_dir.clone().unwrap_or_else(tls::default_data_dir);
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            for n in [
                domain,
                advertise.trim_start_matches('[').trim_end_matches(']'),
            ] {
                names.push(n.to_string());
            }
            names.push(primary_ipv4().to_string());
            names.extend(
                bound
                    .iter()
                    .map(|(_, a)| a.ip())
                    .filter(|ip| !ip.is_unspecified())
                    .map(|ip| ip.to_string()),
            );
            names.sort();
            names.dedup();
            let (c, k) = tls::self_signed(&dir, &names)?;
            tracing::info!(cert = %c.display(), "TLS: self-signed certificate (zero-config)");
            (c, k)
        }
    };
    let config = tls::server_config(&cert, &key)?;
    let fingerprint = tls::file_fingerprint(&cert)?;
    Ok((config, fingerprint))
}

/// The RFC 3263 lookups of the server: one resolver (made at the first query), each lookup in
/// its own task, answers back through the event channel.
pub(super) struct Dns {
    server: Option<SocketAddr>,
    resolver: Option<Arc<crate::sip::resolve::DnsResolver>>,
}

impl Dns {
    pub(super) fn new(server: Option<SocketAddr>) -> Dns {
        Dns {
            server,
            resolver: None,
        }
    }

    /// Starts the lookup of `q`; a resolver that cannot be made answers it at once with the
    /// error.
    pub(super) fn spawn(
        &mut self,
        q: crate::server::core::DnsQuery,
        tx: &mpsc::Sender<Inbound>,
        core: &mut ServerCore,
        now: std::time::Instant,
    ) {
        use crate::sip::resolve::DnsResolver;
        let resolver = match (&self.resolver, self.server) {
            (Some(r), _) => r.clone(),
            (None, Some(s)) => Arc::new(DnsResolver::with_nameserver(s)),
            (None, None) => match DnsResolver::from_system() {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver");
                    return core.dns_resolved(now, q.id, Err(e));
                }
            },
        };
        self.resolver = Some(resolver.clone());
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = resolver.resolve(&q.target).await;
            let _ = tx.send(Inbound::Resolved { id: q.id, result }).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::set_udp_receive_buffer;

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
                Some(line.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn udp_receive_buffer_is_raised_past_the_system_default() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let default = set_udp_receive_buffer(&sock, 0);
        let asked = 4 << 20;
        assert!(
            default < asked,
            "system default {default} already >= {asked}"
        );
        let got = set_udp_receive_buffer(&sock, asked);
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            got >= asked.min(2 * rmem_max),
            "got {got}, rmem_max {rmem_max}"
        );
        if is_root() {
            assert!(
                got >= asked,
                "as root SO_RCVBUFFORCE gives {asked}: got {got}"
            );
        }
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::listen_tcp;

    /// Completed handshakes of `n` simultaneous connects to `addr` within 1 s (the first SYN
    /// retry comes after 1 s, so a SYN dropped for a full accept queue does not complete).
    async fn completed_connects(addr: std::net::SocketAddr, n: usize) -> usize {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            set.spawn(async move {
                let c = tokio::net::TcpStream::connect(addr);
                tokio::time::timeout(std::time::Duration::from_millis(900), c)
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        }
        let mut streams = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                streams.push(s);
            }
        }
        streams.len()
    }

    #[tokio::test]
    async fn a_burst_of_connects_fits_the_listen_backlog() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        assert!(somaxconn >= 512, "net.core.somaxconn {somaxconn} < 512");
        // Nobody accepts: every handshake must wait in the kernel's accept queue.
        let ours = listen_tcp("127.0.0.1:0".parse().unwrap()).expect("listen");
        let n = completed_connects(ours.local_addr().unwrap(), 400).await;
        assert_eq!(n, 400, "{n} of 400 connects completed with our backlog");
        // Control: std's listener (backlog 128) drops the SYNs past its queue.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let n = completed_connects(std_listener.local_addr().unwrap(), 400).await;
        assert!(n < 400, "{n} of 400 connects completed with std's backlog");
    }
}

/// Starts the call recorder in `cfg.recording_dir` (default `recordings` in `data_dir`, else
/// in the working directory) and points `relay`'s tap at it. Errors:
/// [`DriverError::Recording`] when the directory cannot be created.
pub(super) fn start_recorder(
    cfg: &ServerConfig,
    relay: &relay::RelayDriver,
) -> Result<super::record::Recorder, DriverError> {
    let dir = cfg.recording_dir.clone().unwrap_or_else(|| {
        cfg.data_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("."))
            .join("recordings")
    });
    let r = super::record::Recorder::start(super::record::RecorderConfig::new(dir.clone()))
        .map_err(|source| DriverError::Recording {
            dir: dir.display().to_string(),
            source,
        })?;
    relay.handle().set_tap(Box::new(r.handle()));
    tracing::info!(dir = %dir.display(), "call recording on");
    Ok(r)
}
