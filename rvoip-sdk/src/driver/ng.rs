//! The relay alone under rtpengine's ng control protocol (`rvoip-server --relay-only --ng
//! udp:IP:PORT`): one UDP socket for the control datagrams, the sans-IO
//! [`NgControl`](crate::server::ng::NgControl) over the relay thread's
//! [`RelayHandle`](super::relay::RelayHandle). Kamailio's and OpenSIPS's `rtpengine` modules
//! talk to it as to rtpengine.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;

use super::DriverError;
use super::relay::{RelayDriver, RelayHandle};
use super::setup::{start_recorder, start_relay};
use crate::server::config::ServerConfig;
use crate::server::ng::{NgConfig, NgControl, NgStats};
use crate::server::proxy::anchor::RelayMode;
use crate::sip::transaction::Transport;

/// Largest control datagram read, in bytes (a UDP payload's maximum).
const MAX_DATAGRAM: usize = 65_535;
/// How often media timeouts are collected.
const TICK: Duration = Duration::from_secs(1);

/// A bound ng control socket with its relay, ready to [`NgServer::run`].
pub struct NgServer {
    socket: UdpSocket,
    ng: NgControl<RelayHandle>,
    /// Keeps the relay thread and its sockets alive.
    _relay: RelayDriver,
    /// The recorder of `record-call` calls (with `recording_dir` or `record_calls`).
    _recorder: Option<super::record::Recorder>,
}

impl NgServer {
    /// Binds the control socket at `addr` and starts the relay over `cfg`'s relay settings
    /// (`relay_ports`, `relay_timeout_s`, `relay_strict_source`, `relay_rewrite_ssrc`,
    /// `relay_bind`), writing `relay_advertise` (else `addr`'s IP when it is not a wildcard,
    /// else 127.0.0.1) into SDP. The relay runs whatever `cfg.relay` says (the control decides
    /// which calls it carries). With `recording_dir` (or `record_calls`) set, calls flagged
    /// `record-call` are recorded there. Errors: [`DriverError::Bind`] for the socket,
    /// [`DriverError::Relay`] for the relay thread.
    pub async fn bind(cfg: &ServerConfig, addr: SocketAddr) -> Result<NgServer, DriverError> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| DriverError::Bind {
                spec: format!("udp:{addr}"),
                source,
            })?;
        let local = socket.local_addr().map_err(|source| DriverError::Bind {
            spec: format!("udp:{addr}"),
            source,
        })?;
        let mut rcfg = cfg.clone();
        rcfg.relay = RelayMode::Always;
        let (relay, sdp_ip) =
            start_relay(&rcfg, &[(Transport::Udp, local)], "")?.ok_or(DriverError::NoListen)?;
        let mut ng = NgControl::new(relay.handle(), NgConfig::new(sdp_ip));
        let recorder = if cfg.recording_dir.is_some() || cfg.record_calls {
            let r = start_recorder(cfg, &relay)?;
            ng = ng.with_recorder(Box::new(r.handle()));
            Some(r)
        } else {
            None
        };
        Ok(NgServer {
            socket,
            ng,
            _relay: relay,
            _recorder: recorder,
        })
    }

    /// The control socket's address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Answers control datagrams until `shutdown` completes; returns the counters. Deletes
    /// calls whose media timed out (checked every second). A failed send is logged and
    /// dropped (the client retransmits, and gets the cached reply).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> NgStats {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let data = buf.get(..n).unwrap_or_default();
                        if let Some(reply) =
                            self.ng.handle_datagram(Instant::now(), SystemTime::now(), from, data)
                            && let Err(e) = self.socket.send_to(&reply, from).await
                        {
                            tracing::warn!(%from, error = %e, "ng: cannot send reply");
                        }
                    }
                    // ICMP errors of earlier sends surface here on Linux: nothing to do.
                    Err(e) => tracing::debug!(error = %e, "ng: receive error"),
                },
                _ = tick.tick() => {
                    self.ng.handle_timeout(Instant::now());
                }
                _ = &mut shutdown => break,
            }
        }
        let stats = self.ng.stats();
        tracing::info!(
            requests = stats.requests,
            errors = stats.errors,
            replayed = stats.replayed,
            media_timeouts = stats.media_timeouts,
            calls = self.ng.calls(),
            "ng control stopped"
        );
        stats
    }
}
