use super::*;
use crate::media::codec::{Encoder, audio_rate, frame_samples, frame_units, new_encoder};
use crate::media::tone::{ToneGenerator, tone_fraction_blocks};

const RATE: u32 = 16_000;
/// 20 ms at the file rate: the block length of the per-block tone measure.
const BLOCK: usize = 320;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The sample index of `d` at the file rate.
fn idx(d: Duration) -> usize {
    samples_in(d, RATE) as usize
}

/// A plain RTP packet (RFC 3550 §5.1: V=2, no CSRC, no extension, no padding).
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// One party's RTP stream of a tone: 20 ms packets in one codec.
struct Stream {
    encoder: Box<dyn Encoder>,
    tone: ToneGenerator,
    frame: Vec<i16>,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    units: u32,
}

impl Stream {
    fn new(codec: AudioCodec, freq: f64, ssrc: u32) -> Stream {
        Stream {
            encoder: new_encoder(&codec).unwrap(),
            tone: ToneGenerator::new(freq, audio_rate(&codec), 8000),
            frame: vec![0; frame_samples(&codec, 20)],
            pt: codec.payload_type,
            seq: 1000,
            ts: 5000,
            ssrc,
            units: frame_units(&codec, 20),
        }
    }

    /// The next 20 ms packet's payload (the tone goes on where the last packet ended).
    fn payload(&mut self) -> Vec<u8> {
        self.tone.fill(&mut self.frame);
        let mut payload = Vec::new();
        self.encoder.encode(&self.frame, &mut payload).unwrap();
        payload
    }

    /// The next 20 ms packet.
    fn packet(&mut self) -> Vec<u8> {
        let payload = self.payload();
        let p = rtp(self.pt, self.seq, self.ts, self.ssrc, &payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.units);
        p
    }
}

/// Deterministic jitter (xorshift32).
struct Rng(u32);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 % n
    }
}

/// One packet to push: when (after `start`), from whom, the bytes.
type Event = (Duration, Side, Vec<u8>);

/// Pushes `events` in arrival order, draining every 100 ms of simulated time, then finishes.
/// Gives the left and right channels.
fn run(rec: &mut StereoRecorder, events: Vec<Event>) -> (Vec<i16>, Vec<i16>) {
    run_draining(rec, events, true)
}

/// [`run`], with or without the drains.
fn run_draining(
    rec: &mut StereoRecorder,
    mut events: Vec<Event>,
    drains: bool,
) -> (Vec<i16>, Vec<i16>) {
    events.sort_by_key(|(t, _, _)| *t);
    let start = rec.start();
    let mut out = Vec::new();
    let mut next_drain = ms(100);
    for (t, side, packet) in &events {
        while drains && next_drain <= *t {
            rec.drain(start + next_drain, &mut out);
            // Exactly everything before `now − 200 ms` is out, interleaved.
            let done = next_drain.saturating_sub(FINAL_DELAY);
            assert_eq!(out.len(), 2 * idx(done), "drain at {next_drain:?}");
            next_drain += ms(100);
        }
        rec.push_rtp(*side, start + *t, packet);
    }
    rec.finish(&mut out);
    assert_eq!(out.len() % 2, 0);
    let left = out.iter().step_by(2).copied().collect();
    let right = out.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// The index of the first sample at `from` or later whose magnitude exceeds 1000.
fn first_loud(samples: &[i16], from: usize) -> Option<usize> {
    samples
        .iter()
        .skip(from)
        .position(|s| s.unsigned_abs() > 1000)
        .map(|i| i + from)
}

fn recorder() -> StereoRecorder {
    let mut rec = StereoRecorder::new(Instant::now(), RATE);
    rec.set_codecs(
        Side::Caller,
        &[(0, AudioCodec::PCMU), (9, AudioCodec::G722)],
    );
    rec.set_codecs(
        Side::Callee,
        &[(0, AudioCodec::PCMU), (9, AudioCodec::G722)],
    );
    rec
}

/// The caller's 440 Hz in PCMU goes left, the callee's 1000 Hz in G.722 goes right, each
/// starting where its first packet arrived, through 0–18 ms of jitter on every packet.
#[test]
fn each_party_is_on_its_own_channel_through_jitter() {
    let mut rec = recorder();
    let mut caller = Stream::new(AudioCodec::PCMU, 440.0, 0x1111);
    let mut callee = Stream::new(AudioCodec::G722, 1000.0, 0x2222);
    let mut rng = Rng(0x2545_f491);
    let mut events = Vec::new();
    let mut first = [Duration::MAX; 2];
    for i in 0..150u64 {
        let t = ms(100 + 20 * i + u64::from(rng.below(19)));
        first[0] = first[0].min(t);
        events.push((t, Side::Caller, caller.packet()));
        let t = ms(170 + 20 * i + u64::from(rng.below(19)));
        first[1] = first[1].min(t);
        events.push((t, Side::Callee, callee.packet()));
    }
    let (left, right) = run(&mut rec, events);
    assert_eq!(left.len(), right.len());
    // 3 s of audio after a 170 ms start (jitter may shorten it by up to 18 ms).
    let len = left.len();
    assert!((idx(ms(3150))..=idx(ms(3190))).contains(&len), "{len}");

    // Aligned by arrival: each tone starts where its first packet arrived (plus the resampler's
    // and the codec's few ms of delay), not at sample 0 and not together.
    for (ch, first, name) in [(&left, first[0], "left"), (&right, first[1], "right")] {
        let at = first_loud(ch, 0).unwrap();
        assert!(
            (idx(first)..idx(first + ms(15))).contains(&at),
            "{name} starts at {at}, first packet at {}",
            idx(first)
        );
        assert!(ch[..idx(first)].iter().all(|&s| s == 0), "{name}");
    }

    let (l, r) = (
        &left[idx(ms(300))..idx(ms(3100))],
        &right[idx(ms(300))..idx(ms(3100))],
    );
    let f = tone_fraction_blocks(l, 440.0, RATE, BLOCK);
    assert!(f >= 0.9, "left 440 Hz: {f}");
    let f = tone_fraction_blocks(r, 1000.0, RATE, BLOCK);
    assert!(f >= 0.9, "right 1000 Hz: {f}");
    let f = tone_fraction_blocks(l, 1000.0, RATE, BLOCK);
    assert!(f < 0.05, "left leaks 1000 Hz: {f}");
    let f = tone_fraction_blocks(r, 440.0, RATE, BLOCK);
    assert!(f < 0.05, "right leaks 440 Hz: {f}");
    for side in [Side::Caller, Side::Callee] {
        let s = rec.stats(side);
        assert_eq!((s.packets, s.ignored, s.dropped), (150, 0, 0), "{side:?}");
    }
}

/// The caller is silent for 1 s (no packets: silence suppression): the left channel is silent
/// exactly there, and the caller's audio after the gap is where it arrived, not pulled early.
#[test]
fn a_second_without_packets_is_silence_at_its_place() {
    let mut rec = recorder();
    let mut caller = Stream::new(AudioCodec::PCMU, 440.0, 7);
    let mut callee = Stream::new(AudioCodec::PCMU, 1000.0, 8);
    let mut events = Vec::new();
    for i in 5..140u64 {
        let t = ms(20 * i);
        let packet = caller.packet();
        // 1.0 s ..= 1.98 s: nothing from the caller (DTX; the sequence numbers go on).
        if !(50..100).contains(&i) {
            events.push((t + ms(3), Side::Caller, packet));
        }
        events.push((t, Side::Callee, callee.packet()));
    }
    let (left, right) = run(&mut rec, events.clone());
    assert_eq!(left.len(), right.len());
    assert_eq!(left.len(), idx(ms(2803)));

    // Silent from just after the last packet before the gap to the first one after it.
    let gap = &left[idx(ms(1030))..idx(ms(2003))];
    assert!(gap.iter().all(|&s| s == 0), "the gap is not silent");
    let back = first_loud(&left, idx(ms(1500))).unwrap();
    assert!(
        (idx(ms(2003))..idx(ms(2018))).contains(&back),
        "the caller comes back at {back}, not at {}",
        idx(ms(2003))
    );
    let before = &left[idx(ms(300))..idx(ms(980))];
    let after = &left[idx(ms(2100))..idx(ms(2780))];
    for part in [before, after] {
        let f = tone_fraction_blocks(part, 440.0, RATE, BLOCK);
        assert!(f >= 0.9, "left 440 Hz: {f}");
    }
    // The callee went on all along.
    let f = tone_fraction_blocks(&right[idx(ms(300))..idx(ms(2780))], 1000.0, RATE, BLOCK);
    assert!(f >= 0.9, "right 1000 Hz: {f}");
    let f = tone_fraction_blocks(&right[idx(ms(1030))..idx(ms(2000))], 1000.0, RATE, BLOCK);
    assert!(f >= 0.9, "right 1000 Hz during the caller's gap: {f}");

    // Draining as it goes changes nothing: the same file without a single drain, where the
    // whole gap is inserted as silence when the caller comes back (103 ms before the first
    // packet; the gap from the end of the 45 packets before it, at 1003 ms, to 2003 ms).
    let mut again = recorder();
    let (l2, r2) = run_draining(&mut again, events, false);
    assert!(l2 == left && r2 == right, "draining changed the output");
    let silence = again.stats(Side::Caller).silence_samples;
    assert_eq!(silence, idx(ms(103)) as u64 + idx(ms(1000)) as u64);
}

/// Garbage never panics and never places audio; CSRC lists, header extensions and padding are
/// skipped exactly (the payload decodes as if it came in a plain packet).
#[test]
fn garbage_is_ignored_and_every_header_form_is_parsed() {
    let mut rec = recorder();
    let payload: Vec<u8> = Stream::new(AudioCodec::PCMU, 440.0, 1).payload();
    let plain = rtp(0, 1, 0, 9, &payload);
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        plain[..11].to_vec(),
        plain[..12].to_vec(), // no payload
        rtp(0, 1, 0, 9, &payload)[..12].to_vec(),
        {
            let mut p = plain.clone();
            p[0] = 0x40; // version 1
            p
        },
        {
            let mut p = plain.clone();
            p[0] = 0xc0; // version 3
            p
        },
        {
            let mut p = plain.clone();
            p[1] = 200; // RTCP sender report on a muxed port (RFC 5761 §4)
            p
        },
        {
            let mut p = plain[..20].to_vec();
            p[0] = 0x8f; // 15 CSRCs in 8 bytes
            p
        },
        {
            let mut p = plain[..12].to_vec();
            p[0] = 0x90; // extension header cut off
            p.extend_from_slice(&[0xbe, 0xde]);
            p
        },
        {
            let mut p = plain[..12].to_vec();
            p[0] = 0x90; // extension of 65535 words
            p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
            p.extend_from_slice(&payload);
            p
        },
        {
            let mut p = plain.clone();
            p[0] = 0xa0; // padding count 0
            p.push(0);
            p
        },
        {
            let mut p = plain.clone();
            p[0] = 0xa0; // padding longer than the packet
            p.push(255);
            p
        },
        {
            let mut p = plain[..12].to_vec();
            p[0] = 0xa0; // padding eats the whole payload
            p.extend_from_slice(&[0, 0, 0, 4]);
            p
        },
        rtp(101, 2, 0, 9, &[1, 0x80, 0, 160]), // telephone-event: no codec mapped
        rtp(96, 3, 0, 9, &payload),
    ];
    garbage.push(vec![0xff; 3000]);
    let start = rec.start();
    for (i, g) in garbage.iter().enumerate() {
        for side in [Side::Caller, Side::Callee] {
            rec.push_rtp(side, start + ms(10 * i as u64), g);
        }
    }
    let n = garbage.len() as u64;
    for side in [Side::Caller, Side::Callee] {
        let s = rec.stats(side);
        assert_eq!((s.packets, s.ignored, s.dropped), (0, n, 0), "{side:?}");
    }
    let mut out = Vec::new();
    rec.drain(start + ms(1000), &mut out);
    assert!(out.iter().all(|&s| s == 0));

    // The same payload behind 2 CSRCs, a one-word extension and 4 octets of padding on the
    // left, plain on the right, at the same instant: both channels get the same 20 ms.
    let mut rec = recorder();
    let mut fancy = vec![0x80 | 0x20 | 0x10 | 2, 0];
    fancy.extend_from_slice(&plain[2..12]);
    fancy.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
    fancy.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // RFC 8285 one-byte form
    fancy.extend_from_slice(&payload);
    fancy.extend_from_slice(&[0, 0, 0, 4]);
    let start = rec.start();
    rec.push_rtp(Side::Caller, start + ms(100), &fancy);
    rec.push_rtp(Side::Callee, start + ms(100), &plain);
    let mut out = Vec::new();
    rec.finish(&mut out);
    assert_eq!(out.len(), 2 * (idx(ms(100)) + BLOCK));
    assert!(out.chunks_exact(2).all(|lr| lr[0] == lr[1]));
    assert!(out.iter().any(|&s| s != 0));

    // Random bytes, with and without an RTP-looking first octet: no panic, every packet counted.
    let mut rec = recorder();
    let mut rng = Rng(77);
    let start = rec.start();
    for i in 0..3000u64 {
        let len = rng.below(300) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        if i % 2 == 0
            && let Some(b) = p.first_mut()
        {
            *b = 0x80 | (*b & 0x3f);
        }
        let side = if i % 3 == 0 {
            Side::Callee
        } else {
            Side::Caller
        };
        rec.push_rtp(side, start + ms(i), &p);
    }
    let mut out = Vec::new();
    rec.drain(start + ms(3000), &mut out);
    rec.finish(&mut out);
    let total: u64 = [Side::Caller, Side::Callee]
        .iter()
        .map(|&s| {
            let s = rec.stats(s);
            s.packets + s.ignored + s.dropped
        })
        .sum();
    assert_eq!(total, 3000);
}

/// Payload types without a codec (telephone-event, RFC 4733) and codecs this build lacks (Opus
/// without its feature) are ignored; the mapped codec still plays.
#[test]
fn other_payload_types_and_missing_codecs_are_ignored() {
    let mut rec = StereoRecorder::new(Instant::now(), RATE);
    let te = AudioCodec {
        name: "telephone-event",
        payload_type: 101,
        clock_rate: 8000,
        channels: 1,
    };
    rec.set_codecs(
        Side::Caller,
        &[(0, AudioCodec::PCMU), (101, te), (111, AudioCodec::OPUS)],
    );
    let start = rec.start();
    let mut s = Stream::new(AudioCodec::PCMU, 440.0, 3);
    for i in 0..10u64 {
        rec.push_rtp(Side::Caller, start + ms(20 * i), &s.packet());
        rec.push_rtp(
            Side::Caller,
            start + ms(20 * i + 5),
            &rtp(101, i as u16, 0, 4, &[1, 0x0a, 0, 160]),
        );
    }
    // An Opus packet (a valid 20 ms CELT frame TOC is enough for the count).
    rec.push_rtp(
        Side::Caller,
        start + ms(210),
        &rtp(111, 1, 0, 5, &[0xfc, 0xff, 0xfe]),
    );
    // Nothing mapped on the callee side yet: ignored.
    rec.push_rtp(Side::Callee, start + ms(210), &s.packet());
    let st = rec.stats(Side::Caller);
    // With Opus built, its packet is decoded too (one more 20 ms block); the ten
    // telephone-events are ignored either way.
    let opus = usize::from(cfg!(feature = "opus"));
    assert_eq!(st.packets, 10 + opus as u64);
    assert_eq!(st.ignored, 10 + 1 - opus as u64);
    assert_eq!(rec.stats(Side::Callee).ignored, 1);
    let mut out = Vec::new();
    rec.finish(&mut out);
    assert_eq!(out.len(), 2 * (10 + opus) * BLOCK);
    let left: Vec<i16> = out.iter().step_by(2).copied().collect();
    assert!(tone_fraction_blocks(&left[BLOCK..], 440.0, RATE, BLOCK) >= 0.9);
    assert!(out.iter().skip(1).step_by(2).all(|&s| s == 0));
}

/// Duplicates and late packets are dropped; a burst that would run the cursor far ahead of
/// real time is cut; the cursor never goes backwards; memory stays bounded without drains.
#[test]
fn duplicates_bursts_and_memory_are_bounded() {
    let mut rec = recorder();
    let start = rec.start();
    let mut s = Stream::new(AudioCodec::PCMU, 440.0, 3);
    let p1 = s.packet();
    let p2 = s.packet();
    rec.push_rtp(Side::Caller, start + ms(100), &p1);
    rec.push_rtp(Side::Caller, start + ms(120), &p2);
    rec.push_rtp(Side::Caller, start + ms(121), &p2); // duplicate
    rec.push_rtp(Side::Caller, start + ms(122), &p1); // late
    assert_eq!(rec.stats(Side::Caller).dropped, 2);
    assert_eq!(rec.channels[0].cursor(), idx(ms(140)) as u64);

    // 1 s of packets all at once (a burst after an outage): only MAX_AHEAD of them fit.
    for _ in 0..50 {
        rec.push_rtp(Side::Caller, start + ms(140), &s.packet());
    }
    let cursor = rec.channels[0].cursor();
    assert!(
        cursor <= idx(ms(140) + MAX_AHEAD + ms(20)) as u64,
        "{cursor}"
    );
    assert!(rec.stats(Side::Caller).dropped >= 2 + 35);

    // 10 s more without a drain: the channel keeps at most MAX_BUFFERED.
    for i in 0..500u64 {
        rec.push_rtp(Side::Caller, start + ms(1000 + 20 * i), &s.packet());
        assert!(rec.channels[0].buf.len() <= rec.cap);
    }
    assert_eq!(rec.cap, idx(MAX_BUFFERED));
    let mut out = Vec::new();
    rec.finish(&mut out);
    // The timeline is kept: 11 s long, the dropped start is silence, the end is the tone.
    assert_eq!(out.len(), 2 * idx(ms(11_000)));
    let left: Vec<i16> = out.iter().step_by(2).copied().collect();
    assert!(left[idx(ms(7500))..idx(ms(7990))].iter().all(|&s| s == 0));
    let f = tone_fraction_blocks(&left[idx(ms(8100))..], 440.0, RATE, BLOCK);
    assert!(f >= 0.9, "{f}");
    // Nothing after finish: an earlier `now` gives nothing, nothing goes backwards.
    let mut more = Vec::new();
    rec.drain(start + ms(5000), &mut more);
    rec.finish(&mut more);
    assert!(more.is_empty());
}

/// A re-INVITE that keeps the codec keeps its decoder; a codec switch mid-call flushes the old
/// codec's leftovers and plays the new one on the same channel.
#[test]
fn codec_switch_and_rate_clamp() {
    let mut rec = recorder();
    let start = rec.start();
    let mut a = Stream::new(AudioCodec::PCMU, 440.0, 3);
    let mut b = Stream::new(AudioCodec::G722, 440.0, 3);
    for i in 0..50u64 {
        rec.push_rtp(Side::Caller, start + ms(20 * i), &a.packet());
    }
    rec.set_codecs(
        Side::Caller,
        &[(0, AudioCodec::PCMU), (9, AudioCodec::G722)],
    );
    for i in 50..100u64 {
        let mut p = b.packet();
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        rec.push_rtp(Side::Caller, start + ms(20 * i), &p);
    }
    let mut out = Vec::new();
    rec.finish(&mut out);
    assert_eq!(out.len(), 2 * idx(ms(2000)));
    let left: Vec<i16> = out.iter().step_by(2).copied().collect();
    let f = tone_fraction_blocks(&left[BLOCK..], 440.0, RATE, BLOCK);
    assert!(f >= 0.9, "{f}");
    assert_eq!(rec.stats(Side::Caller).packets, 100);

    assert_eq!(StereoRecorder::new(start, 0).rate_hz(), MIN_RATE_HZ);
    assert_eq!(StereoRecorder::new(start, 1_000_000).rate_hz(), MAX_RATE_HZ);
}
