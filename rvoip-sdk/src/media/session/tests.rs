//! Two sessions wired back to back on simulated time, with a configurable one-way delay.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::media::audio::{AudioError, MemorySink, ToneSource};
use crate::media::rtp;
use crate::media::tone::tone_fraction_blocks;
use crate::sdp::AudioCodec;

/// A sink whose samples the test can read while the session owns it.
#[derive(Clone)]
struct Shared(Arc<Mutex<MemorySink>>);

impl Shared {
    fn new(rate: u32) -> Shared {
        Shared(Arc::new(Mutex::new(MemorySink {
            rate,
            samples: Vec::new(),
        })))
    }
    fn samples(&self) -> Vec<i16> {
        self.0.lock().unwrap().samples.clone()
    }
}

impl AudioSink for Shared {
    fn sample_rate(&self) -> u32 {
        self.0.lock().unwrap().rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        self.0.lock().unwrap().write(samples)
    }
}

fn a_rtp() -> SocketAddr {
    "10.0.0.1:4000".parse().unwrap()
}
fn a_rtcp() -> SocketAddr {
    "10.0.0.1:4001".parse().unwrap()
}
fn b_rtp() -> SocketAddr {
    "10.0.0.2:5000".parse().unwrap()
}
fn b_rtcp() -> SocketAddr {
    "10.0.0.2:5001".parse().unwrap()
}

/// Two sessions (A at 10.0.0.1, B at 10.0.0.2) and the datagrams in flight.
struct Pair {
    a: MediaSession,
    b: MediaSession,
    now: Instant,
    delay: Duration,
    /// (delivery time, to B?, from, rtcp, bytes)
    flight: Vec<(Instant, bool, SocketAddr, bool, Bytes)>,
    a_events: Vec<MediaEvent>,
    b_events: Vec<MediaEvent>,
    /// Every RTP datagram A sent.
    a_sent: Vec<Bytes>,
}

fn cfg(codec: AudioCodec, remote_rtp: SocketAddr) -> MediaConfig {
    MediaConfig::new(codec, remote_rtp)
}

impl Pair {
    fn new(
        a_cfg: MediaConfig,
        b_cfg: MediaConfig,
        a_src: Box<dyn AudioSource>,
        a_sink: Box<dyn AudioSink>,
        b_src: Box<dyn AudioSource>,
        b_sink: Box<dyn AudioSink>,
    ) -> Pair {
        let now = Instant::now();
        Pair {
            a: MediaSession::with_seed(a_cfg, a_src, a_sink, now, 1).unwrap(),
            b: MediaSession::with_seed(b_cfg, b_src, b_sink, now, 2).unwrap(),
            now,
            delay: Duration::from_millis(5),
            flight: Vec::new(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_sent: Vec::new(),
        }
    }

    fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        loop {
            let mut next = self
                .a
                .poll_timeout()
                .unwrap()
                .min(self.b.poll_timeout().unwrap());
            if let Some(t) = self.flight.iter().map(|f| f.0).min() {
                next = next.min(t);
            }
            if next > end {
                self.now = end;
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
            self.flight = rest;
            for (_, to_b, from, rtcp, bytes) in due {
                let s = if to_b { &mut self.b } else { &mut self.a };
                s.handle_datagram(now, from, bytes, rtcp);
            }
            self.a.handle_timeout(now);
            self.b.handle_timeout(now);
            while let Some(t) = self.a.poll_transmit() {
                if !t.rtcp {
                    self.a_sent.push(t.bytes.clone());
                }
                if t.dest == b_rtp() || t.dest == b_rtcp() {
                    let from = if t.rtcp { a_rtcp() } else { a_rtp() };
                    self.flight
                        .push((now + self.delay, true, from, t.rtcp, t.bytes));
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                if t.dest == a_rtp() || t.dest == a_rtcp() {
                    let from = if t.rtcp { b_rtcp() } else { b_rtp() };
                    self.flight
                        .push((now + self.delay, false, from, t.rtcp, t.bytes));
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.a_events.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push(e);
            }
        }
    }
}

fn tone(rate: u32) -> Box<dyn AudioSource> {
    Box::new(ToneSource::new(440.0, rate, 8000))
}

fn silence(rate: u32) -> Box<dyn AudioSource> {
    Box::new(crate::media::audio::SilenceSource { rate })
}

/// The 440 Hz share of what `sink` got after its first 200 ms, per 20 ms block.
fn tone_share(sink: &Shared, rate: u32) -> f64 {
    let s = sink.samples();
    let skip = rate as usize / 5;
    assert!(s.len() > skip, "sink got {} samples", s.len());
    tone_fraction_blocks(&s[skip..], 440.0, rate, rate as usize / 50)
}

fn tone_pair(codec: AudioCodec, a_src_rate: u32, b_sink_rate: u32) -> (Pair, Shared) {
    let sink = Shared::new(b_sink_rate);
    let p = Pair::new(
        cfg(codec, b_rtp()),
        cfg(codec, a_rtp()),
        tone(a_src_rate),
        Box::new(Shared::new(8000)),
        silence(8000),
        Box::new(sink.clone()),
    );
    (p, sink)
}

#[test]
fn tone_arrives_for_every_available_codec() {
    let mut tried = 0;
    for codec in [
        AudioCodec::PCMU,
        AudioCodec::PCMA,
        AudioCodec::G722,
        AudioCodec::OPUS,
    ] {
        if !codec::is_available(&codec) {
            continue;
        }
        tried += 1;
        // Device-like rates on both ends exercise the resamplers (except for the codec's own).
        for (src, snk) in [
            (codec::audio_rate(&codec), codec::audio_rate(&codec)),
            (48_000, 44_100),
        ] {
            let (mut p, sink) = tone_pair(codec, src, snk);
            p.run(Duration::from_secs(2));
            let share = tone_share(&sink, snk);
            assert!(share >= 0.9, "{} {src}->{snk}: {share}", codec.name);
            let len = sink.samples().len();
            let expect = snk as usize * 2;
            assert!(
                len.abs_diff(expect) <= snk as usize / 50 + 1,
                "{}: {len} samples",
                codec.name
            );
            let st = p.b.stats(p.now);
            assert!(st.rx_packets >= 95, "{st:?}");
            assert_eq!(st.codec, codec.name);
            assert_eq!(st.rx_lost, 0);
            assert!(st.mos > 4.0, "{st:?}");
            assert!(
                p.b_events
                    .contains(&MediaEvent::FirstPacket { from: a_rtp() })
            );
        }
    }
    assert!(tried >= 2, "PCMU and PCMA at least");
}

#[test]
fn ten_percent_loss_is_measured_and_concealed() {
    let sink = Shared::new(8000);
    let mut b_cfg = cfg(AudioCodec::PCMU, a_rtp());
    b_cfg.rx_loss_percent = 10.0;
    let mut p = Pair::new(
        cfg(AudioCodec::PCMU, b_rtp()),
        b_cfg,
        tone(8000),
        Box::new(Shared::new(8000)),
        silence(8000),
        Box::new(sink.clone()),
    );
    p.run(Duration::from_millis(20 * 1000 + 10));
    let st = p.b.stats(p.now);
    assert!(p.a.stats(p.now).tx_packets >= 1000);
    assert!(
        (0.07..=0.13).contains(&st.rx_loss_fraction),
        "loss {}",
        st.rx_loss_fraction
    );
    assert!(st.rx_lost > 50, "{st:?}");
    assert!(st.concealed_frames > 50, "{st:?}");
    assert!(st.mos < 4.0, "loss lowers the MOS: {}", st.mos);
    let share = tone_share(&sink, 8000);
    assert!(share > 0.75, "tone still there: {share}");
}

#[test]
fn dtmf_arrives_in_order_once_per_key() {
    let mut a_cfg = cfg(AudioCodec::PCMU, b_rtp());
    a_cfg.telephone_event_pt = Some(101);
    let mut b_cfg = cfg(AudioCodec::PCMU, a_rtp());
    b_cfg.telephone_event_pt = Some(101);
    let mut p = Pair::new(
        a_cfg,
        b_cfg,
        tone(8000),
        Box::new(Shared::new(8000)),
        silence(8000),
        Box::new(Shared::new(8000)),
    );
    p.run(Duration::from_millis(300));
    assert_eq!(p.a.send_dtmf("12x"), Err(MediaError::InvalidDigit('x')));
    p.a.send_dtmf("1234").unwrap();
    p.a.send_dtmf("#*").unwrap();
    p.run(Duration::from_secs(2));
    let keys: Vec<char> = p
        .b_events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf(k) => Some(*k),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec!['1', '2', '3', '4', '#', '*']);
    assert_eq!(p.b.stats(p.now).dtmf_received, 6);
    assert_eq!(p.a.stats(p.now).dtmf_sent, 6);
    // On the wire: per key one marker packet, three end packets, one timestamp.
    let events: Vec<_> = p
        .a_sent
        .iter()
        .filter_map(|d| rtp::parse(d).ok())
        .filter(|r| r.payload_type == 101)
        .collect();
    assert_eq!(events.len(), 6 * 7, "4 updates + 3 end packets per key");
    assert_eq!(events.iter().filter(|e| e.marker).count(), 6);
    let seqs: Vec<u16> = p
        .a_sent
        .iter()
        .filter_map(|d| rtp::parse(d).ok())
        .map(|r| r.sequence_number)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "one sequence space"
    );
    // No telephone-event negotiated: an error, not silence.
    assert_eq!(p.b.send_dtmf("1"), Ok(()));
    let mut c = cfg(AudioCodec::PCMU, b_rtp());
    c.telephone_event_pt = None;
    p.a.update(c, p.now).unwrap();
    assert_eq!(p.a.send_dtmf("1"), Err(MediaError::NoTelephoneEvent));
}

#[test]
fn sendonly_recvonly_and_inactive() {
    let a_sink = Shared::new(8000);
    let b_sink = Shared::new(8000);
    let mut a_cfg = cfg(AudioCodec::PCMU, b_rtp());
    a_cfg.direction = Direction::SendOnly;
    a_cfg.telephone_event_pt = Some(101);
    let mut b_cfg = cfg(AudioCodec::PCMU, a_rtp());
    b_cfg.direction = Direction::RecvOnly;
    let mut p = Pair::new(
        a_cfg.clone(),
        b_cfg,
        tone(8000),
        Box::new(a_sink.clone()),
        tone(8000),
        Box::new(b_sink.clone()),
    );
    p.run(Duration::from_secs(1));
    assert!(tone_share(&b_sink, 8000) > 0.9);
    assert_eq!(p.b.stats(p.now).tx_packets, 0, "recvonly sends no RTP");
    assert!(a_sink.samples().iter().all(|&s| s == 0), "A hears nothing");
    // B turns sendonly while A goes sendrecv: B counts A's packets but does not play them.
    let mut b2 = cfg(AudioCodec::PCMU, a_rtp());
    b2.direction = Direction::SendOnly;
    p.b.update(b2, p.now).unwrap();
    a_cfg.direction = Direction::SendRecv;
    p.a.update(a_cfg.clone(), p.now).unwrap();
    let before = b_sink.samples().len();
    let rx_before = p.b.stats(p.now).rx_packets;
    p.run(Duration::from_secs(1));
    assert!(p.b.stats(p.now).rx_packets >= rx_before + 45);
    assert!(
        b_sink.samples()[before..].iter().all(|&s| s == 0),
        "not played"
    );
    assert!(tone_share(&a_sink, 8000) > 0.5, "A hears B now");
    // Inactive: no RTP at all (RTCP goes on).
    a_cfg.direction = Direction::Inactive;
    p.a.update(a_cfg, p.now).unwrap();
    let tx = p.a.stats(p.now).tx_packets;
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.stats(p.now).tx_packets, tx);
    assert_eq!(p.a.send_dtmf("1"), Err(MediaError::NotSending));
}

#[test]
fn rtt_from_rtcp_with_40_ms_one_way_delay() {
    let (mut p, _) = tone_pair(AudioCodec::PCMU, 8000, 8000);
    p.delay = Duration::from_millis(40);
    p.run(Duration::from_secs(20));
    for (who, st) in [("a", p.a.stats(p.now)), ("b", p.b.stats(p.now))] {
        let rtt = st.rtt_ms.unwrap_or_else(|| panic!("{who}: no RTT: {st:?}"));
        assert!((rtt - 80.0).abs() < 1.0, "{who}: {rtt} ms");
        assert!(st.rtcp_sent >= 2 && st.rtcp_received >= 2, "{st:?}");
    }
}

#[test]
fn late_timeouts_catch_up_then_reanchor() {
    let t0 = Instant::now();
    let mut s = MediaSession::with_seed(
        cfg(AudioCodec::PCMU, b_rtp()),
        tone(8000),
        Box::new(Shared::new(8000)),
        t0,
        3,
    )
    .unwrap();
    let drain = |s: &mut MediaSession| {
        let mut v = Vec::new();
        while let Some(t) = s.poll_transmit() {
            if !t.rtcp {
                v.push(rtp::parse(&t.bytes).unwrap());
            }
        }
        v
    };
    assert_eq!(s.poll_timeout(), Some(t0));
    s.handle_timeout(t0);
    let first = drain(&mut s);
    assert_eq!(first.len(), 1);
    assert!(first[0].marker);
    s.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(drain(&mut s).len(), 5, "frames at 20, 40, 60, 80, 100 ms");
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(120)));
    // One second late: ten frames at once, then the clock restarts from now.
    let late = t0 + Duration::from_millis(1100);
    s.handle_timeout(late);
    let burst = drain(&mut s);
    assert_eq!(burst.len(), 10);
    let next = late + Duration::from_millis(20);
    assert_eq!(s.poll_timeout(), Some(next));
    s.handle_timeout(next);
    let after = drain(&mut s);
    assert_eq!(after.len(), 1);
    // The timestamp follows real time across the gap (1120 ms at 8 kHz) and marks a talkspurt.
    assert_eq!(
        after[0].timestamp.wrapping_sub(first[0].timestamp),
        1120 * 8
    );
    assert!(after[0].marker);
    assert_eq!(
        after[0].sequence_number,
        first[0].sequence_number.wrapping_add(16)
    );
    assert_eq!(after[0].ssrc, first[0].ssrc);
}

#[test]
fn reinvite_keeps_ssrc_and_sequence_and_latching_follows_the_source() {
    let sink = Shared::new(8000);
    // B's SDP says A is elsewhere (a NAT): B latches to where A's RTP comes from.
    let mut b_cfg = cfg(AudioCodec::PCMU, "192.0.2.9:7000".parse().unwrap());
    b_cfg.remote_rtcp = "192.0.2.9:7001".parse().unwrap();
    let mut p = Pair::new(
        cfg(AudioCodec::PCMU, b_rtp()),
        b_cfg,
        tone(8000),
        Box::new(sink.clone()),
        tone(8000),
        Box::new(Shared::new(8000)),
    );
    p.run(Duration::from_secs(1));
    assert!(p.b_events.contains(&MediaEvent::Latched {
        addr: a_rtp(),
        rtcp: false
    }));
    assert_eq!(p.b.config().remote_rtp, a_rtp());
    assert!(
        tone_share(&sink, 8000) > 0.9,
        "B's RTP reaches A after latching"
    );
    let n = p.a_sent.len();
    p.a.update(cfg(AudioCodec::PCMA, b_rtp()), p.now).unwrap();
    let mut b2 = cfg(AudioCodec::PCMA, a_rtp());
    b2.remote_rtcp = a_rtcp();
    p.b.update(b2, p.now).unwrap();
    p.run(Duration::from_secs(1));
    let pk: Vec<_> = p.a_sent[n - 1..]
        .iter()
        .map(|d| rtp::parse(d).unwrap())
        .collect();
    assert_eq!(pk[0].payload_type, 0);
    assert!(
        pk[1..]
            .iter()
            .all(|r| r.payload_type == 8 && r.ssrc == pk[0].ssrc)
    );
    assert!(
        pk.windows(2)
            .all(|w| w[1].sequence_number == w[0].sequence_number.wrapping_add(1))
    );
    assert!(pk[1].marker, "new talkspurt after the codec change");
    assert!(p.b.stats(p.now).rx_packets > 90);
}

#[test]
fn garbage_datagrams_do_not_panic_or_stop_the_stream() {
    let (mut p, sink) = tone_pair(AudioCodec::PCMU, 8000, 8000);
    p.b.update(
        MediaConfig {
            telephone_event_pt: Some(101),
            ..cfg(AudioCodec::PCMU, a_rtp())
        },
        p.now,
    )
    .unwrap();
    p.run(Duration::from_millis(500));
    let mut rng = StdRng::seed_from_u64(5);
    let from: SocketAddr = "203.0.113.5:666".parse().unwrap();
    for i in 0..20_000 {
        let len = rng.gen_range(0..200usize);
        let mut g: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        if i % 2 == 0 {
            if let Some(b) = g.first_mut() {
                *b = 0x80 | (*b & 0x3F);
            }
            if let Some(b) = g.get_mut(1) {
                // Our payload types and RTCP types, to get past the first checks.
                *b = [0u8, 101, 200, 201, 202, 203, 0x80][i % 7];
            }
        }
        p.b.handle_datagram(p.now, from, Bytes::from(g), i % 3 == 0);
    }
    while p.b.poll_event().is_some() {}
    p.run(Duration::from_secs(2));
    let s = sink.samples();
    let tail = &s[s.len() - 8000..];
    assert!(
        tone_fraction_blocks(tail, 440.0, 8000, 160) > 0.9,
        "the real stream still plays"
    );
}

mod secure;
