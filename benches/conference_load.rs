//! Conference mixing cost (issue 14): CPU per conference participant at 3, 10 and 30 members
//! in one room of rvoip's relay core.
//!
//! The sans-IO relay (`media::relay::Relay`) runs one room on simulated time, as the relay
//! thread runs it: every 20 ms each member sends one RTP packet of its codec (a third each of
//! PCMU, G.722 and Opus, pre-encoded 20 ms frames of a tone), which the relay takes in (jitter
//! buffer, decode, resampling to the 16 kHz mix); the room mixes N−1 for every member and each
//! member's session encodes its mix and sends it (the packets are built, then discarded), with
//! RTCP reports. The loop runs as fast as it can; the thread's CPU time
//! (`/proc/thread-self/schedstat`) divided by the simulated time and the members is the share
//! of one core each participant costs. Socket system calls are not included (the relay thread
//! adds one `recvfrom` and one `sendto` per packet, as for plain forwarding: see relay_load).
//!
//! No reference runs in the same invocation: neither Kamailio nor rtpengine mixes rooms (the
//! conferencing reference would be FreeSWITCH's mod_conference, not among this project's peers).
//!
//! `cargo bench -p rvoip-sdk --features opus --bench conference_load -- [--seconds 20]
//! [--members 3,10,30]`. The last line is machine-readable (`conference_load key=value ...`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rvoip_sdk::media::codec;
use rvoip_sdk::media::relay::{Relay, RelayConfig, Side, TranscodeSpec};
use rvoip_sdk::media::tone::ToneGenerator;
use rvoip_sdk::sdp::AudioCodec;

/// CPU time this thread has run, in ns (schedstat's first field).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// 50 RTP packets (1 s) of a `hz` tone in `codec`, payload type `pt`, SSRC `ssrc`, starting at
/// sequence 0; the caller rewrites sequence and timestamp as it cycles them.
fn packets(codec: AudioCodec, pt: u8, hz: f64) -> Vec<Vec<u8>> {
    let rate = codec::audio_rate(&codec);
    let samples = codec::frame_samples(&codec, 20);
    let mut enc = codec::new_encoder(&codec).expect("codec built in");
    let mut tone = ToneGenerator::new(hz, rate, 8000);
    (0..50)
        .map(|_| {
            let mut pcm = vec![0i16; samples];
            tone.fill(&mut pcm);
            let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
            enc.encode(&pcm, &mut p).expect("encode");
            p
        })
        .collect()
}

struct Member {
    addr: SocketAddr,
    port: u16,
    frames: Vec<Vec<u8>>,
    units: u32,
}

/// One run: `n` members for `seconds` of simulated time; returns (CPU s, packets in, out).
fn run(n: usize, seconds: u64) -> (f64, u64, u64) {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig {
        port_min: 20000,
        port_max: 29999,
        ..RelayConfig::default()
    });
    let codecs = [
        (AudioCodec::PCMU, 0u8),
        (AudioCodec::G722, 9),
        (AudioCodec::OPUS, 96),
    ];
    let members: Vec<Member> = (0..n)
        .map(|i| {
            let (codec, pt) = codecs[i % 3];
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 4000));
            let id = relay.create(t0).expect("create");
            relay
                .set_remote(id, Side::Caller, addr, None, false, codec.clock_rate)
                .expect("sdp");
            let spec = TranscodeSpec {
                payload_type: pt,
                ..TranscodeSpec::new(codec)
            };
            relay.join_room(t0, id, 1, spec).expect("join");
            Member {
                addr,
                port: relay.local_port(id, Side::Caller).expect("port"),
                frames: packets(codec, pt, 300.0 + 50.0 * i as f64),
                units: codec::frame_units(&codec, 20),
            }
        })
        .collect();
    let (mut sent, mut got) = (0u64, 0u64);
    let frames = seconds * 50;
    let cpu0 = thread_cpu_ns();
    for k in 0..frames {
        let now = t0 + Duration::from_millis(20 * k);
        for m in &members {
            let mut p = m.frames[(k % 50) as usize].clone();
            p[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            p[4..8].copy_from_slice(&((k as u32).wrapping_mul(m.units)).to_be_bytes());
            let _ = relay.handle_datagram(now, m.port, m.addr, &mut p);
            sent += 1;
        }
        relay.handle_timeout(now);
        while relay.poll_transmit().is_some() {
            got += 1;
        }
    }
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    (cpu, sent, got)
}

fn main() {
    let mut seconds = 20u64;
    let mut sizes = vec![3usize, 10, 30];
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Bare (run by `cargo test --all-targets`): a 1 s smoke run of 3 members. `cargo bench`
    // passes `--bench`: the default set.
    if argv.is_empty() {
        seconds = 1;
        sizes = vec![3];
    }
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--members" => {
                if let Some(v) = args.next() {
                    sizes = v.split(',').filter_map(|x| x.parse().ok()).collect();
                }
            }
            _ => {} // cargo's own flags (--bench)
        }
    }
    if !codec::is_available(&AudioCodec::OPUS) {
        eprintln!("conference_load: built without the opus feature (--features opus)");
        return;
    }
    println!("members  seconds  cpu_s   %core/member  packets in  packets out");
    let mut line = String::from("conference_load");
    for &n in &sizes {
        let (cpu, sent, got) = run(n, seconds);
        let per = cpu / seconds as f64 / n as f64 * 100.0;
        println!("{n:7}  {seconds:7}  {cpu:6.3}  {per:12.3}  {sent:10}  {got:11}");
        line.push_str(&format!(" m{n}_pct_core_per_member={per:.3}"));
    }
    println!("{line}");
}
