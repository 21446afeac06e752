//! Codec throughput: encode + decode of one 20 ms frame, in frames/s (G.711: 160 samples at
//! 8 kHz; G.722: 320 samples at 16 kHz; Opus, with the `opus` feature: 960 samples at 48 kHz,
//! 32 kbit/s); and the jitter buffer's insert + pop per frame. A real-time call needs 50
//! frames/s per direction.
//!
//! `cargo bench -p rvoip-sdk --features opus --bench codecs -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvoip_sdk::media::codec::{Decoder, Encoder};
use rvoip_sdk::media::{g711, g722, jitter::JitterBuffer, tone::ToneGenerator};

fn bench(c: &mut Criterion) {
    let mut frame = [0i16; 160];
    ToneGenerator::new(440.0, 8000, 12_000).fill(&mut frame);
    let mut g = c.benchmark_group("G.711 encode+decode 20 ms frame");
    g.throughput(Throughput::Elements(1));
    let (mut enc, mut dec) = (Vec::with_capacity(160), Vec::with_capacity(160));
    g.bench_function("PCMU", |b| {
        b.iter(|| {
            enc.clear();
            dec.clear();
            g711::encode_ulaw(black_box(&frame), &mut enc);
            g711::decode_ulaw(&enc, &mut dec);
            black_box(&dec);
        })
    });
    g.bench_function("PCMA", |b| {
        b.iter(|| {
            enc.clear();
            dec.clear();
            g711::encode_alaw(black_box(&frame), &mut enc);
            g711::decode_alaw(&enc, &mut dec);
            black_box(&dec);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("G.722 encode+decode 20 ms frame");
    g.throughput(Throughput::Elements(1));
    let mut wide = [0i16; g722::FRAME_SAMPLES];
    ToneGenerator::new(440.0, g722::SAMPLE_RATE, 12_000).fill(&mut wide);
    let (mut g722_enc, mut g722_dec) = (g722::G722Encoder::new(), g722::G722Decoder::new());
    let (mut payload, mut pcm) = (Vec::with_capacity(160), Vec::with_capacity(320));
    g.bench_function("G722 64 kbit/s", |b| {
        b.iter(|| {
            payload.clear();
            pcm.clear();
            // Neither call can fail on an even-length frame.
            let _ = g722_enc.encode(black_box(&wide), &mut payload);
            let _ = g722_dec.decode(&payload, &mut pcm);
            black_box(&pcm);
        })
    });
    g.finish();

    #[cfg(feature = "opus")]
    opus(c);

    let mut g = c.benchmark_group("jitter buffer");
    g.throughput(Throughput::Elements(1));
    let payload = Bytes::from_static(&[0u8; 160]);
    let mut jb = JitterBuffer::new(8000, 20, 20, 200);
    let t0 = std::time::Instant::now();
    let mut ts = 0u32;
    g.bench_function("insert+pop one 20 ms frame", |b| {
        b.iter(|| {
            jb.insert(ts, payload.clone(), t0);
            ts = ts.wrapping_add(160);
            black_box(jb.pop());
        })
    });
    g.finish();
}

/// Opus at its default 32 kbit/s (VoIP mode, in-band FEC on), mono 48 kHz.
#[cfg(feature = "opus")]
fn opus(c: &mut Criterion) {
    use rvoip_sdk::media::opus::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, SAMPLE_RATE};

    let (Ok(mut enc), Ok(mut dec)) = (OpusEncoder::new(), OpusDecoder::new()) else {
        eprintln!("libopus refused to create a codec; Opus bench skipped");
        return;
    };
    let mut g = c.benchmark_group("Opus encode+decode 20 ms frame");
    g.throughput(Throughput::Elements(1));
    // A continuing tone, so the encoder sees a signal that goes on rather than one frame again.
    let mut tone = ToneGenerator::new(440.0, SAMPLE_RATE, 12_000);
    let mut frame = [0i16; FRAME_SAMPLES];
    let (mut payload, mut pcm) = (Vec::with_capacity(400), Vec::with_capacity(FRAME_SAMPLES));
    g.bench_function("opus 32 kbit/s", |b| {
        b.iter(|| {
            tone.fill(&mut frame);
            payload.clear();
            pcm.clear();
            let _ = enc.encode(black_box(&frame), &mut payload);
            let _ = dec.decode(&payload, &mut pcm);
            black_box(&pcm);
        })
    });
    g.finish();
}

/// SRTP (RFC 3711) per 20 ms PCMU packet (12-byte header + 160 bytes): the plaintext path
/// (RtpSender packetizes, `rtp::parse` reads it back) against the same with protect and
/// unprotect of each suite in between (issue 12). Sequence numbers advance every packet, as
/// replay protection requires.
fn srtp(c: &mut Criterion) {
    use rvoip_sdk::media::rtp::{self, RtpSender};
    use rvoip_sdk::media::sdes::{CryptoAttribute, CryptoSuite};
    use rvoip_sdk::media::srtp::SrtpSession;
    let payload = Bytes::from(vec![0xd5u8; 160]);
    let mut g = c.benchmark_group("RTP packet 20 ms PCMU: packetize+parse, with SRTP");
    g.throughput(Throughput::Elements(1));
    let mut tx = RtpSender::new(0x1234, 1, 0, 0);
    g.bench_function("plain RTP", |b| {
        b.iter(|| {
            let p = tx.frame(payload.clone(), 160).unwrap();
            black_box(rtp::parse(&p).unwrap().payload.len());
        })
    });
    for suite in CryptoSuite::ALL {
        let (ka, kb) = (
            CryptoAttribute::generate(1, suite),
            CryptoAttribute::generate(1, suite),
        );
        let mut alice = SrtpSession::from_sdes(&ka, &kb).unwrap();
        let mut bob = SrtpSession::from_sdes(&kb, &ka).unwrap();
        let mut tx = RtpSender::new(0x1234, 1, 0, 0);
        g.bench_function(format!("{} protect+unprotect", suite.name()), |b| {
            b.iter(|| {
                let p = tx.frame(payload.clone(), 160).unwrap();
                let s = alice.protect_rtp(&p).unwrap();
                let back = bob.unprotect_rtp(&s).unwrap();
                black_box(rtp::parse(&back).unwrap().payload.len());
            })
        });
        let mut tx = RtpSender::new(0x1234, 1, 0, 0);
        g.bench_function(format!("{} protect only", suite.name()), |b| {
            b.iter(|| {
                let p = tx.frame(payload.clone(), 160).unwrap();
                black_box(alice.protect_rtp(&p).unwrap().len());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, srtp);
criterion_main!(benches);
