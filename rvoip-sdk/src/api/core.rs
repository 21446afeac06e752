//! What happens under the endpoint's lock: sending what the user agent core transmits, and
//! turning its events into media actions (start, update, stop a call's stream) and app events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::endpoint::{CallMedia, Core, Shared, lock};
use super::net::facing_ip;
use super::{ApiError, Event};
use crate::driver::media::MediaPorts;
use crate::media::audio::{AudioSink, AudioSource, NullSink, SilenceSource};
use crate::media::session::{MediaConfig, MediaEvent};
use crate::sdp::{Direction, LocalMedia, Negotiated, SrtpConfig};
use crate::sip::transaction::Transport;
use crate::sip::ua::{CallId, CallState, UaEvent};

impl Shared {
    /// Our address facing `peer`: the listen IP when bound to one, else the source address the
    /// OS routes from (a connected UDP probe, no packet sent), with our listen port.
    pub(crate) fn local_for(
        &self,
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<SocketAddr, ApiError> {
        let port_of = |t: Transport| {
            self.bound
                .iter()
                .find(|(k, _)| *k == t)
                .or(self.bound.first())
                .map(|(_, a)| *a)
        };
        let Some(listen) = port_of(transport) else {
            return Err(ApiError::InvalidArgument("transport not configured".into()));
        };
        if !listen.ip().is_unspecified() {
            return Ok(listen);
        }
        let ip = {
            let mut core = lock(&self.core);
            match core.facing.get(&peer.ip()) {
                Some(ip) => *ip,
                None => {
                    let ip = facing_ip(peer);
                    core.facing.insert(peer.ip(), ip);
                    ip
                }
            }
        };
        Ok(SocketAddr::new(ip, listen.port()))
    }

    pub(crate) fn local_for_locked(
        &self,
        core: &mut Core,
        peer: SocketAddr,
        transport: Transport,
    ) -> SocketAddr {
        let listen = self
            .bound
            .iter()
            .find(|(k, _)| *k == transport)
            .or(self.bound.first())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5060));
        if !listen.ip().is_unspecified() {
            return listen;
        }
        let ip = *core
            .facing
            .entry(peer.ip())
            .or_insert_with(|| facing_ip(peer));
        SocketAddr::new(ip, listen.port())
    }

    /// Binds an RTP/RTCP pair on the interface facing the peer (or the wildcard when listening
    /// on one). Errors: [`ApiError::Network`].
    pub(crate) fn media_ports(&self, facing: IpAddr) -> Result<MediaPorts, ApiError> {
        let listen_ip = self.bound.first().map(|(_, a)| a.ip());
        let ip = match listen_ip {
            Some(ip) if !ip.is_unspecified() => ip,
            _ if facing.is_ipv4() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        MediaPorts::bind(ip).map_err(|e| ApiError::Network(format!("media ports: {e}")))
    }

    /// Our side of a call's media: address, port, codecs, and SRTP by `srtp` (fresh SDES keys
    /// when `secure_signalling` or allowed, our DTLS fingerprint).
    pub(crate) fn local_media(
        &self,
        facing: IpAddr,
        port: u16,
        srtp: &SrtpConfig,
        secure_signalling: bool,
    ) -> LocalMedia {
        LocalMedia {
            addr: self.cfg.public_ip.unwrap_or(facing),
            port,
            codecs: self.cfg.codecs.clone(),
            dtmf: self.cfg.dtmf,
            direction: Direction::SendRecv,
            security: srtp.local(
                secure_signalling,
                self.dtls.as_ref().map(|d| d.fingerprint().clone()),
            ),
        }
    }

    /// Queues an event for the app. Returns false when it was dropped (the queue is full or
    /// gone).
    pub(crate) fn emit(&self, ev: Event) -> bool {
        match self.events.lock() {
            Ok(g) => g.as_ref().is_some_and(|tx| tx.send(ev)),
            Err(_) => false,
        }
    }

    /// Sends what the core transmits and acts on its events. Runs under the core lock.
    pub(crate) fn pump(&self, core: &mut Core) {
        loop {
            let mut idle = true;
            while let Some(t) = core.ua.poll_transmit() {
                idle = false;
                core.transports.send(t);
            }
            while let Some(ev) = core.ua.poll_event() {
                idle = false;
                self.on_ua_event(core, ev);
            }
            if idle {
                break;
            }
        }
        self.wake.notify_one();
    }

    fn media_config(&self, n: &Negotiated) -> MediaConfig {
        let mut cfg = MediaConfig::new(n.codec, n.remote);
        cfg.payload_type = n.payload_type;
        cfg.telephone_event_pt = n.telephone_event_pt;
        cfg.direction = n.direction;
        cfg.frame_ms = self.cfg.ptime_ms;
        cfg.rx_loss_percent = self.cfg.rx_loss_percent;
        cfg.security = n.security.clone();
        cfg.dtls_identity = self.dtls.clone();
        cfg
    }

    fn on_ua_event(&self, core: &mut Core, ev: UaEvent) {
        match ev {
            UaEvent::Registration { account, state } => {
                self.emit(Event::RegistrationState { account, state });
            }
            UaEvent::IncomingCall {
                call,
                account,
                from,
                to,
                replaces,
            } => {
                core.media.insert(call, CallMedia::default());
                let announced = self.emit(Event::IncomingCall {
                    call,
                    account,
                    from,
                    to,
                    replaces,
                });
                if !announced {
                    // The app would never hear of this call: refuse it rather than let it ring
                    // unanswered (the app is not reading its events).
                    core.media.remove(&call);
                    let _ = core.ua.reject(std::time::Instant::now(), call, 503);
                }
            }
            UaEvent::CallState { call, state } => {
                if matches!(state, CallState::Ended { .. }) {
                    if let Some(m) = core.media.remove(&call) {
                        if let Some(h) = m.handle {
                            h.stop();
                        }
                    }
                }
                self.emit(Event::CallState { call, state });
            }
            UaEvent::MediaStart { call, media } => {
                let cfg = self.media_config(&media);
                let Some(m) = core.media.get_mut(&call) else {
                    return;
                };
                let Some(ports) = m.ports.take() else { return };
                let source = m.source.take().unwrap_or_else(|| default_source(cfg.codec));
                let sink = m.sink.take().unwrap_or_else(|| default_sink(cfg.codec));
                let events = self.events.lock().ok().and_then(|g| g.clone());
                let on_event: Box<dyn Fn(MediaEvent) + Send + Sync> =
                    Box::new(move |ev| match (ev, events.as_ref()) {
                        (MediaEvent::Dtmf(digit), Some(tx)) => {
                            tx.send(Event::DtmfReceived { call, digit });
                        }
                        (MediaEvent::SecurityFailed(reason), Some(tx)) => {
                            tx.send(Event::MediaSecurityFailed { call, reason });
                        }
                        _ => {}
                    });
                let _g = self.rt.enter();
                match crate::driver::media::spawn(ports, cfg, source, sink, Box::new(on_event)) {
                    Ok(h) => {
                        if m.muted {
                            h.set_mute(true);
                        }
                        m.handle = Some(h);
                        self.emit(media_started(call, &media));
                    }
                    Err(e) => tracing::warn!(call = call.0, error = %e, "media did not start"),
                }
            }
            UaEvent::MediaUpdate { call, media } => {
                let cfg = self.media_config(&media);
                if let Some(h) = core.media.get(&call).and_then(|m| m.handle.as_ref()) {
                    if let Err(e) = h.update(cfg) {
                        tracing::warn!(call = call.0, error = %e, "media update failed");
                    }
                }
                self.emit(media_started(call, &media));
            }
            UaEvent::MediaStop { call } => {
                if let Some(m) = core.media.get_mut(&call) {
                    if let Some(h) = m.handle.take() {
                        // The final figures, before the stream is gone.
                        let stats = h.stats();
                        h.stop();
                        self.emit(Event::Statistics { call, stats });
                    }
                }
                self.emit(Event::MediaStopped { call });
            }
            UaEvent::MessageReceived {
                account,
                from,
                to,
                content_type,
                body,
            } => {
                self.emit(Event::MessageReceived {
                    account,
                    from,
                    to,
                    content_type,
                    body: body.to_vec(),
                });
            }
            UaEvent::MessageResult {
                message,
                status,
                reason,
            } => {
                self.emit(Event::MessageResult {
                    message,
                    status,
                    reason,
                });
            }
            UaEvent::TransferRequested {
                call,
                transfer,
                target,
                referred_by,
                replaces: _,
            } => {
                let announced = self.emit(Event::TransferRequested {
                    call,
                    transfer,
                    target,
                    referred_by,
                });
                if !announced {
                    let _ = core
                        .ua
                        .reject_transfer(std::time::Instant::now(), transfer, 603);
                }
            }
            UaEvent::TransferStatus {
                call,
                status,
                reason,
                is_final,
            } => {
                self.emit(Event::TransferStatus {
                    call,
                    status,
                    reason,
                    is_final,
                });
            }
            UaEvent::CallRedirected {
                call,
                status,
                target,
            } => {
                self.emit(Event::CallRedirected {
                    call,
                    status,
                    target,
                });
            }
            UaEvent::DtmfInfo { call, digit, .. } => {
                self.emit(Event::DtmfReceived { call, digit });
            }
            UaEvent::SubscriptionState {
                subscription,
                state,
            } => {
                self.emit(Event::SubscriptionState {
                    subscription,
                    state,
                });
            }
            UaEvent::PresenceNotify {
                subscription,
                presence,
            } => {
                self.emit(Event::BuddyPresence {
                    subscription,
                    entity: presence.entity,
                    online: presence.open,
                    note: presence.note,
                    activity: presence.activity,
                });
            }
            UaEvent::LineNotify {
                subscription,
                entity,
                line,
            } => {
                self.emit(Event::LineState {
                    subscription,
                    entity,
                    line,
                });
            }
            UaEvent::PublishResult {
                account,
                status,
                reason,
            } => {
                self.emit(Event::PublishResult {
                    account,
                    status,
                    reason,
                });
            }
        }
    }
}

fn media_started(call: CallId, n: &Negotiated) -> Event {
    let direction = match n.direction {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    };
    Event::MediaStarted {
        call,
        codec: n.codec.name.to_string(),
        remote: n.remote,
        direction: direction.into(),
        security: n.security.describe(),
    }
}

/// The default input: the system's default microphone with the `audio-device` feature (if it
/// opens), else silence at the codec's rate.
fn default_source(codec: crate::sdp::AudioCodec) -> Box<dyn AudioSource> {
    #[cfg(feature = "audio-device")]
    {
        if let Ok(d) = crate::media::device::DeviceSource::open(None) {
            return Box::new(d);
        }
    }
    Box::new(SilenceSource {
        rate: crate::media::codec::audio_rate(&codec),
    })
}

/// The default output: the default speaker with the `audio-device` feature, else discarded.
fn default_sink(codec: crate::sdp::AudioCodec) -> Box<dyn AudioSink> {
    #[cfg(feature = "audio-device")]
    {
        if let Ok(d) = crate::media::device::DeviceSink::open(None) {
            return Box::new(d);
        }
    }
    Box::new(NullSink {
        rate: crate::media::codec::audio_rate(&codec),
    })
}
