//! Transcoding through the sans-IO relay on simulated time: two SDK media sessions with no
//! codec in common talk through a transcoding context; each hears the other's tone, and DTMF
//! crosses as telephone-events of the receiver's payload type.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::audio::{SharedSink, ToneSource};
use crate::media::session::{MediaConfig, MediaEvent, MediaSession};
use crate::media::tone::tone_fraction_blocks;
use crate::sdp::AudioCodec;

const CALLER: &str = "10.0.0.1:4000";
const CALLEE: &str = "10.0.0.2:5000";
const RELAY_IP: [u8; 4] = [192, 0, 2, 1];

fn a(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A party: a media session sending `tone_hz`, recording what it hears at 8 kHz.
fn party(
    spec: TranscodeSpec,
    relay_port: u16,
    tone_hz: f64,
    now: Instant,
    seed: u64,
) -> (MediaSession, SharedSink) {
    let mut cfg = MediaConfig::new(spec.codec, SocketAddr::from((RELAY_IP, relay_port)));
    cfg.payload_type = spec.payload_type;
    cfg.telephone_event_pt = spec.telephone_event;
    let heard = SharedSink::new(8000);
    let s = MediaSession::with_seed(
        cfg,
        Box::new(ToneSource::new(tone_hz, 8000, 8000)),
        Box::new(heard.clone()),
        now,
        seed,
    )
    .expect("session");
    (s, heard)
}

struct Run {
    relay: Relay,
    id: MediaId,
    parties: [(MediaSession, SharedSink); 2],
    dtmf: [Vec<char>; 2],
    now: Instant,
}

impl Run {
    fn new(specs: [TranscodeSpec; 2], transcode: bool) -> Run {
        let now = Instant::now();
        let mut relay = Relay::new(RelayConfig {
            port_min: 40000,
            port_max: 40019,
            ..RelayConfig::default()
        });
        let id = relay.create(now).expect("create");
        for (side, addr, spec) in [
            (Side::Caller, CALLER, specs[0]),
            (Side::Callee, CALLEE, specs[1]),
        ] {
            relay
                .set_remote(id, side, a(addr), None, false, spec.codec.clock_rate)
                .expect("sdp");
        }
        if transcode {
            relay
                .set_transcoding(now, id, Some(specs))
                .expect("transcoder");
        }
        let p0 = relay.local_port(id, Side::Caller).expect("port");
        let p1 = relay.local_port(id, Side::Callee).expect("port");
        Run {
            parties: [
                party(specs[0], p0, 440.0, now, 1),
                party(specs[1], p1, 1000.0, now, 2),
            ],
            relay,
            id,
            dtmf: [Vec::new(), Vec::new()],
            now,
        }
    }

    /// Runs `d` of simulated time, delivering every datagram at once.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let addrs = [a(CALLER), a(CALLEE)];
        let sides = [Side::Caller, Side::Callee];
        while self.now < end {
            let next = [
                self.relay.poll_timeout(),
                self.parties[0].0.poll_timeout(),
                self.parties[1].0.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end)
            .clamp(self.now, end);
            self.now = next.max(self.now + Duration::from_micros(100)).min(end);
            let now = self.now;
            self.relay.handle_timeout(now);
            for i in 0..2 {
                self.parties[i].0.handle_timeout(now);
                while let Some(t) = self.parties[i].0.poll_transmit() {
                    let port =
                        self.relay.local_port(self.id, sides[i]).expect("port") + u16::from(t.rtcp);
                    let mut bytes = t.bytes.to_vec();
                    if let Some(fwd) = self.relay.handle_datagram(now, port, addrs[i], &mut bytes) {
                        // Plain forwarding: straight to the other party.
                        let j = if fwd.dest.ip() == addrs[0].ip() { 0 } else { 1 };
                        let rtcp = fwd.from_port % 2 == 1;
                        self.parties[j].0.handle_datagram(
                            now,
                            SocketAddr::from((RELAY_IP, fwd.from_port)),
                            Bytes::from(bytes),
                            rtcp,
                        );
                    }
                }
            }
            while let Some(t) = self.relay.poll_transmit() {
                let j = if t.dest.ip() == addrs[0].ip() { 0 } else { 1 };
                assert_eq!(t.dest.ip(), addrs[j].ip(), "sent to a party's address");
                let rtcp_port = addrs[j].port() + 1;
                assert!(t.dest.port() == addrs[j].port() || t.dest.port() == rtcp_port);
                self.parties[j].0.handle_datagram(
                    now,
                    SocketAddr::from((RELAY_IP, t.from_port)),
                    t.bytes,
                    t.from_port % 2 == 1,
                );
            }
            for i in 0..2 {
                while let Some(ev) = self.parties[i].0.poll_event() {
                    if let MediaEvent::Dtmf(k) = ev {
                        self.dtmf[i].push(k);
                    }
                }
            }
        }
    }

    /// The fraction of the last second `i` heard at `hz` (8 kHz, 20 ms blocks).
    fn heard(&self, i: usize, hz: f64) -> f64 {
        let s = self.parties[i].1.samples();
        let tail = &s[s.len().saturating_sub(8000)..];
        tone_fraction_blocks(tail, hz, 8000, 160)
    }
}

fn spec(codec: AudioCodec, te: Option<u8>) -> TranscodeSpec {
    TranscodeSpec {
        telephone_event: te,
        ..TranscodeSpec::new(codec)
    }
}

fn check_both_ways(specs: [TranscodeSpec; 2]) -> Run {
    let mut r = Run::new(specs, true);
    r.run(Duration::from_secs(2));
    let (caller_heard, callee_heard) = (r.heard(0, 1000.0), r.heard(1, 440.0));
    assert!(
        callee_heard >= 0.9,
        "callee heard 440 Hz at {callee_heard:.3}"
    );
    assert!(
        caller_heard >= 0.9,
        "caller heard 1000 Hz at {caller_heard:.3}"
    );
    // And not its own tone.
    assert!(r.heard(0, 440.0) < 0.05 && r.heard(1, 1000.0) < 0.05);
    let st = r.relay.stats();
    assert_eq!(
        st.forwarded, 0,
        "a transcoded context forwards nothing as it is"
    );
    assert!(st.transcoded >= 180 && st.transcoded_sent >= 180, "{st:?}");
    r
}

#[test]
fn g722_and_pcma_parties_hear_each_other_through_a_transcoder() {
    check_both_ways([
        spec(AudioCodec::G722, Some(101)),
        spec(AudioCodec::PCMA, Some(96)),
    ]);
}

#[test]
fn without_the_transcoder_the_parties_hear_nothing() {
    // The control: the same two sessions through plain forwarding share no payload type, so
    // each drops the other's packets.
    let specs = [spec(AudioCodec::G722, None), spec(AudioCodec::PCMA, None)];
    let mut r = Run::new(specs, false);
    r.run(Duration::from_secs(2));
    assert!(r.relay.stats().forwarded > 100);
    assert!(r.heard(0, 1000.0) < 0.05 && r.heard(1, 440.0) < 0.05);
}

#[cfg(feature = "opus")]
#[test]
fn pcmu_and_opus_parties_hear_each_other_and_dtmf_arrives_in_order() {
    let mut r = check_both_ways([
        spec(AudioCodec::PCMU, Some(101)),
        spec(AudioCodec::OPUS, Some(110)),
    ]);
    r.parties[0].0.send_dtmf("1234#").expect("dtmf");
    r.run(Duration::from_secs(2));
    assert_eq!(r.dtmf[1], vec!['1', '2', '3', '4', '#']);
    // And back, from the Opus side.
    r.parties[1].0.send_dtmf("*9").expect("dtmf");
    r.run(Duration::from_secs(1));
    assert_eq!(r.dtmf[0], vec!['*', '9']);
}

#[test]
fn switching_back_to_forwarding_drops_the_transcoder() {
    let specs = [spec(AudioCodec::PCMU, None), spec(AudioCodec::PCMA, None)];
    let mut r = Run::new(specs, true);
    assert!(r.relay.is_transcoding(r.id));
    // The same specs keep it; None ends it.
    r.relay
        .set_transcoding(r.now, r.id, Some(specs))
        .expect("same");
    assert!(r.relay.is_transcoding(r.id));
    r.relay.set_transcoding(r.now, r.id, None).expect("off");
    assert!(!r.relay.is_transcoding(r.id));
    r.run(Duration::from_millis(500));
    assert_eq!(r.relay.stats().transcoded, 0);
    assert!(r.relay.poll_timeout().is_none() || r.relay.stats().transcoded_sent == 0);
}
