//! Codec throughput: encode + decode of one 20 ms frame (160 samples at 8 kHz), frames/s;
//! and the jitter buffer's insert + pop per frame.
//!
//! `cargo bench -p rvoip-sdk --bench codecs -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvoip_sdk::media::{g711, jitter::JitterBuffer, tone::ToneGenerator};

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

criterion_group!(benches, bench);
criterion_main!(benches);
