//! The tokio driver of one call's [`MediaSession`]: an RTP/RTCP UDP socket pair (RFC 3550 §11:
//! RTP on an even port, RTCP on the next) and one task that feeds the session with datagrams and
//! with `Instant::now()` at each deadline of [`MediaSession::poll_timeout`] (deadline-driven,
//! so the 20 ms media clock does not drift), and sends what it transmits.
//!
//! The session lives behind a mutex shared by the task and the [`MediaHandle`]s; it is locked
//! only for the duration of one sans-IO call, never across an await, and event callbacks run
//! outside the lock (so a callback may call back into the handle).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::media::audio::{AudioSink, AudioSource};
use crate::media::session::{
    CallStats, MediaConfig, MediaError, MediaEvent, MediaSession, MediaTransmit,
};

/// Attempts at an even/odd port pair before falling back to any two ports.
const PAIR_ATTEMPTS: usize = 16;
/// The port range pairs are picked from (even RTP port, RTCP = RTP + 1).
const PORT_RANGE: std::ops::Range<u16> = 16_384..32_766;
/// Largest datagram read (bytes).
const MAX_DATAGRAM: usize = 2048;

/// A bound RTP/RTCP UDP socket pair.
#[derive(Debug)]
pub struct MediaPorts {
    rtp: std::net::UdpSocket,
    rtcp: std::net::UdpSocket,
}

impl MediaPorts {
    /// Binds RTP on an even port `p` and RTCP on `p + 1` of `ip` (a few random tries in
    /// 16384..32766), or any two free ports if no pair is free. Errors: the OS bind error.
    pub fn bind(ip: IpAddr) -> io::Result<MediaPorts> {
        let mut rng = rand::thread_rng();
        for _ in 0..PAIR_ATTEMPTS {
            let p = rng.gen_range(PORT_RANGE) & !1;
            let Ok(rtp) = std::net::UdpSocket::bind(SocketAddr::new(ip, p)) else {
                continue;
            };
            if let Ok(rtcp) = std::net::UdpSocket::bind(SocketAddr::new(ip, p + 1)) {
                return Ok(MediaPorts { rtp, rtcp });
            }
        }
        let rtp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let rtcp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        Ok(MediaPorts { rtp, rtcp })
    }

    /// The RTP port (to put in the SDP `m=` line).
    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The RTCP port (`rtp_port() + 1` unless the fallback was used; then `a=rtcp`, RFC 3605).
    pub fn rtcp_port(&self) -> u16 {
        self.rtcp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The local RTP address.
    pub fn rtp_addr(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }
}

/// What the task and the handles share.
struct Shared {
    session: Mutex<MediaSession>,
    notify: Notify,
    stopped: AtomicBool,
}

impl Shared {
    /// The session; a poisoned lock (a panic elsewhere) still yields it.
    fn lock(&self) -> MutexGuard<'_, MediaSession> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// Stops the task when the last [`MediaHandle`] clone is dropped.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Controls one running media stream. Cheap to clone; the stream stops when [`MediaHandle::stop`]
/// is called or the last clone is dropped.
#[derive(Clone)]
pub struct MediaHandle {
    guard: Arc<Guard>,
}

impl std::fmt::Debug for MediaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl MediaHandle {
    fn shared(&self) -> &Shared {
        &self.guard.0
    }

    fn with<T>(&self, f: impl FnOnce(&mut MediaSession) -> T) -> T {
        let out = f(&mut self.shared().lock());
        self.shared().notify.notify_one();
        out
    }

    /// Applies a re-INVITE's outcome ([`MediaSession::update`]). Errors: as there.
    pub fn update(&self, cfg: MediaConfig) -> Result<(), MediaError> {
        self.with(|s| s.update(cfg, Instant::now()))
    }

    /// Queues RFC 4733 DTMF ([`MediaSession::send_dtmf`]). Errors: as there.
    pub fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        self.with(|s| s.send_dtmf(digits))
    }

    /// Mutes or unmutes the microphone (silence frames are still sent).
    pub fn set_mute(&self, muted: bool) {
        self.with(|s| s.set_mute(muted));
    }

    /// Switches the audio source. Errors: [`MediaError::Resample`].
    pub fn set_source(&self, source: Box<dyn AudioSource>) -> Result<(), MediaError> {
        self.with(|s| s.set_source(source))
    }

    /// Switches the audio sink (the old one is finished). Errors: [`MediaError::Resample`].
    pub fn set_sink(&self, sink: Box<dyn AudioSink>) -> Result<(), MediaError> {
        self.with(|s| s.set_sink(sink))
    }

    /// The current call statistics.
    pub fn stats(&self) -> CallStats {
        self.shared().lock().stats(Instant::now())
    }

    /// Stops the stream: the task finishes the sink and ends (idempotent).
    pub fn stop(&self) {
        self.shared().stop();
    }

    /// Whether [`MediaHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shared().stopped.load(Ordering::SeqCst)
    }
}

/// Starts the stream of `cfg` on `ports` in a new tokio task (must run inside a runtime).
/// `on_event` is called on that task for every [`MediaEvent`], never under an internal lock.
/// Errors: as [`MediaSession::new`], or the sockets cannot join the runtime
/// ([`MediaError::Config`]).
pub fn spawn(
    ports: MediaPorts,
    cfg: MediaConfig,
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
    on_event: Box<dyn Fn(MediaEvent) + Send + Sync>,
) -> Result<MediaHandle, MediaError> {
    let sock = |s: std::net::UdpSocket| {
        s.set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(s))
            .map_err(|e| MediaError::Config(format!("socket: {e}")))
    };
    let rtp = sock(ports.rtp)?;
    let rtcp = sock(ports.rtcp)?;
    let start = aligned_start(Instant::now(), cfg.frame_ms);
    let session = MediaSession::new(cfg, source, sink, start)?;
    let shared = Arc::new(Shared {
        session: Mutex::new(session),
        notify: Notify::new(),
        stopped: AtomicBool::new(false),
    });
    tokio::spawn(run(shared.clone(), rtp, rtcp, on_event));
    Ok(MediaHandle {
        guard: Arc::new(Guard(shared)),
    })
}

/// When a new stream sends its first frame: the next point (at or after `now`) of one
/// process-wide grid of `frame_ms` steps. Every stream of the process (of every endpoint) then
/// has its frames due at the same instants, so one runtime wake-up runs all of them instead of
/// one wake-up (timer, `epoll_wait`, context switch) per stream and frame. Costs at most one
/// frame of delay before the first packet.
fn aligned_start(now: Instant, frame_ms: u32) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    let frame = u128::from(frame_ms.max(1)) * 1_000_000;
    let since = now.saturating_duration_since(epoch).as_nanos();
    let at = since.div_ceil(frame) * frame;
    epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

async fn run(
    shared: Arc<Shared>,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    on_event: Box<dyn Fn(MediaEvent) + Send + Sync>,
) {
    let mut rtp_buf = vec![0u8; MAX_DATAGRAM];
    let mut rtcp_buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<MediaTransmit> = Vec::new();
    let mut events: Vec<MediaEvent> = Vec::new();
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    loop {
        let deadline = shared.lock().poll_timeout();
        sleep.as_mut().reset(
            deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(far),
        );
        tokio::select! {
            r = rtp.recv_from(&mut rtp_buf) => receive(&shared, &rtp, &mut rtp_buf, r, false),
            r = rtcp.recv_from(&mut rtcp_buf) => receive(&shared, &rtcp, &mut rtcp_buf, r, true),
            _ = &mut sleep => {}
            _ = shared.notify.notified() => {}
        }
        {
            let mut s = shared.lock();
            if shared.stopped.load(Ordering::SeqCst) {
                s.finish();
                break;
            }
            // Run due frames even when a receive branch is always ready.
            let now = Instant::now();
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            out.extend(std::iter::from_fn(|| s.poll_transmit()));
            events.extend(std::iter::from_fn(|| s.poll_event()));
        }
        for t in out.drain(..) {
            let sock = if t.rtcp { &rtcp } else { &rtp };
            if let Err(e) = sock.send_to(&t.bytes, t.dest).await {
                tracing::debug!(dest = %t.dest, error = %e, "media send failed");
            }
        }
        for e in events.drain(..) {
            on_event(e);
        }
    }
    tracing::debug!("media task ended");
}

/// Hands one received datagram (and any others already queued on the socket) to the session.
fn receive(
    shared: &Shared,
    sock: &UdpSocket,
    buf: &mut [u8],
    first: io::Result<(usize, SocketAddr)>,
    rtcp: bool,
) {
    let mut s = shared.lock();
    let mut r = first;
    for _ in 0..64 {
        match r {
            Ok((n, from)) => {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                s.handle_datagram(Instant::now(), from, data, rtcp);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => tracing::debug!(error = %e, "media receive error"),
        }
        r = sock.try_recv_from(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::{AudioError, MemorySink, SilenceSource, ToneSource};
    use crate::media::tone::tone_fraction_blocks;
    use crate::sdp::AudioCodec;
    use std::net::Ipv4Addr;

    #[derive(Clone)]
    struct TestSink(Arc<Mutex<MemorySink>>);

    impl AudioSink for TestSink {
        fn sample_rate(&self) -> u32 {
            8000
        }
        fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
            self.0.lock().unwrap().write(samples)
        }
    }

    #[test]
    fn streams_start_on_one_frame_grid() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let a = aligned_start(t0, 20);
        let b = aligned_start(t0 + ms(7), 20);
        let c = aligned_start(t0 + ms(33), 20);
        let d = aligned_start(t0 + ms(3), 10);
        assert!(a >= t0 && a < t0 + ms(20));
        assert!(b >= t0 + ms(7) && b < t0 + ms(27));
        assert!(c >= t0 + ms(33) && c < t0 + ms(53));
        assert!(d >= t0 + ms(3) && d < t0 + ms(13));
        // Whole frames apart (10 ms streams land on points of the same grid).
        let apart = |x: Instant, y: Instant, step: u128| {
            let d = if y >= x { y - x } else { x - y };
            d.as_nanos() % (step * 1_000_000) == 0
        };
        assert!(apart(a, b, 20) && apart(a, c, 20) && apart(a, d, 10));
    }

    #[test]
    fn ports_are_an_even_odd_pair() {
        let p = MediaPorts::bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert_ne!(p.rtp_port(), 0);
        if p.rtcp_port() == p.rtp_port() + 1 {
            assert_eq!(p.rtp_port() % 2, 0);
        }
        assert_eq!(p.rtp_addr().unwrap().port(), p.rtp_port());
    }

    #[tokio::test]
    async fn loopback_tone_dtmf_and_stats() {
        let _realtime = crate::realtime_test_lock();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (pa, pb) = (MediaPorts::bind(lo).unwrap(), MediaPorts::bind(lo).unwrap());
        let addr = |p: &MediaPorts, rtcp: bool| {
            SocketAddr::new(lo, if rtcp { p.rtcp_port() } else { p.rtp_port() })
        };
        let mut a_cfg = MediaConfig::new(AudioCodec::PCMU, addr(&pb, false));
        a_cfg.remote_rtcp = addr(&pb, true);
        a_cfg.telephone_event_pt = Some(101);
        let mut b_cfg = MediaConfig::new(AudioCodec::PCMU, addr(&pa, false));
        b_cfg.remote_rtcp = addr(&pa, true);
        b_cfg.telephone_event_pt = Some(101);
        let sink = TestSink(Arc::new(Mutex::new(MemorySink {
            rate: 8000,
            samples: Vec::new(),
        })));
        let b_events = Arc::new(Mutex::new(Vec::new()));
        let ev = b_events.clone();
        let a = spawn(
            pa,
            a_cfg,
            Box::new(ToneSource::new(440.0, 8000, 8000)),
            Box::new(MemorySink {
                rate: 8000,
                samples: Vec::new(),
            }),
            Box::new(|_| {}),
        )
        .unwrap();
        let b = spawn(
            pb,
            b_cfg,
            Box::new(SilenceSource { rate: 8000 }),
            Box::new(sink.clone()),
            Box::new(move |e| ev.lock().unwrap().push(e)),
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        a.send_dtmf("12").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (sa, sb) = (a.stats(), b.stats());
        a.stop();
        drop(b); // the last handle: stops too
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(sa.tx_packets >= 60 && sa.tx_bytes > 0, "{sa:?}");
        assert!(sb.rx_packets >= 50 && sb.rx_bytes > 0, "{sb:?}");
        assert!(sb.tx_packets > 0 && sa.rx_packets > 0);
        let samples = sink.0.lock().unwrap().samples.clone();
        assert!(samples.len() >= 8000, "{} samples", samples.len());
        // Per 20 ms block (160 samples): a jitter-buffer phase jump only costs the blocks it
        // straddles, where one Goertzel over the window would lose the tone's phasor.
        let share = tone_fraction_blocks(&samples[1600..8000], 440.0, 8000, 160);
        assert!(share > 0.9, "440 Hz share per 20 ms block {share}");
        let events = b_events.lock().unwrap().clone();
        assert!(
            matches!(events.first(), Some(MediaEvent::FirstPacket { .. })),
            "{events:?}"
        );
        let keys: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf(k) => Some(*k),
                _ => None,
            })
            .collect();
        assert_eq!(keys, vec!['1', '2']);
        assert!(a.is_stopped());
    }
}
