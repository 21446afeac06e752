//! SDK user-agent load (issue 3): two endpoints in one process, alice calling bob directly over
//! loopback UDP with G.711 µ-law (PCMU, 20 ms), bob answering from his event handler.
//!
//! 1. Setup: `--setup M` sequential calls, each timed from `make_call` to alice's
//!    `CallState::Connected` event (INVITE, 180, 200 with SDP, ACK, media ports bound, media task
//!    spawned on both sides); p50/p90/p99/max in ms. Each call is hung up before the next.
//! 2. Load: `--calls N` concurrent calls (440 Hz tone out, received audio decoded into a
//!    `NullSink`, on both legs; `--source tone` (default) is the SDK's `ToneSource`, which
//!    computes a sine per sample, `--source loop` plays a pre-rendered second of the same tone
//!    from memory, costing what a capture device's buffer copy would). Once all are connected and after `--warmup` seconds, the process
//!    CPU time (utime + stime, /proc/self/stat) and RSS (/proc/self/status) are read over
//!    `--seconds S`: CPU per call = CPU time / wall / N (% of one core), memory per call =
//!    (VmRSS with N calls up − VmRSS of the two idle endpoints) / N. Every call has two legs
//!    (caller and callee endpoints in this one process), so the per-call figures cover both and
//!    the per-leg ones are half. The RTP packets received over all legs must grow by about 50/s
//!    per leg (20 ms frames), so the figure is not one of idle calls.
//!
//! The last line is machine-readable (`ua_load key=value ...`).
//!
//! `cargo bench -p rvoip-sdk --bench ua_load -- --calls 100 --seconds 20 [--setup 200]
//! [--warmup 3] [--source tone|loop]`

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvoip_sdk::api::{
    AudioCodec, Call, CallId, CallOptions, CallState, Endpoint, EndpointConfig, Event, SrtpConfig,
    SrtpKeying, SrtpPolicy,
};
use rvoip_sdk::media::audio::{AudioSource, NullSink, ToneSource};
use rvoip_sdk::media::tone::ToneGenerator;

/// Targets of issue 3.
const TARGET_CPU_PCT_PER_CALL: f64 = 0.3;
const TARGET_KB_PER_CALL: f64 = 512.0;
const TARGET_SETUP_P99_MS: f64 = 20.0;

struct Args {
    calls: usize,
    seconds: f64,
    setup: usize,
    warmup: f64,
    /// `tone`: the SDK's `ToneSource` (a sine computed per sample); `loop`: one second of the
    /// same tone rendered once and played from memory, as a capture device's buffer would be.
    source: String,
    /// `off` (plain RTP), `sdes` (SRTP keyed by SDES, allowed over the bench's UDP signalling)
    /// or `dtls` (SRTP keyed by DTLS-SRTP): every call's media in that mode (issue 12).
    srtp: String,
}

fn args() -> Args {
    let mut a = Args {
        calls: 100,
        seconds: 20.0,
        setup: 200,
        warmup: 3.0,
        source: "tone".into(),
        srtp: "off".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = argv.get(i + 1).map(String::as_str);
        let num = |v: Option<&str>| -> f64 {
            v.and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--calls" => a.calls = num(val) as usize,
            "--seconds" => a.seconds = num(val),
            "--setup" => a.setup = num(val) as usize,
            "--warmup" => a.warmup = num(val),
            "--source" => a.source = val.unwrap_or_default().to_string(),
            "--srtp" => a.srtp = val.unwrap_or_default().to_string(),
            _ => {
                i += 1; // `--bench` and other harness flags from cargo
                continue;
            }
        }
        i += 2;
    }
    assert!(
        a.calls >= 1 && a.seconds > 0.0,
        "--calls ≥ 1, --seconds > 0"
    );
    assert!(
        a.source == "tone" || a.source == "loop",
        "--source tone|loop"
    );
    assert!(
        ["off", "sdes", "dtls"].contains(&a.srtp.as_str()),
        "--srtp off|sdes|dtls"
    );
    a
}

/// The SRTP settings of both endpoints (`--srtp`).
static SRTP: std::sync::OnceLock<SrtpConfig> = std::sync::OnceLock::new();

fn config() -> EndpointConfig {
    EndpointConfig {
        codecs: vec![AudioCodec::PCMU],
        stats_interval: None,
        srtp: SRTP.get().copied().unwrap_or_default(),
        ..EndpointConfig::loopback()
    }
}

/// One second of 440 Hz at 8 kHz (exactly 440 periods, so it loops without a click), rendered
/// once for every call.
static LOOP: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
static USE_LOOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Plays [`LOOP`] over and over: the per-frame cost of a source that only copies samples.
struct LoopSource {
    samples: Arc<[i16]>,
    pos: usize,
}

impl AudioSource for LoopSource {
    fn sample_rate(&self) -> u32 {
        8000
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let n = (out.len() - done).min(self.samples.len() - self.pos);
            out[done..done + n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
            self.pos = (self.pos + n) % self.samples.len();
            done += n;
        }
        out.len()
    }
}

fn audio() -> CallOptions {
    let source: Box<dyn AudioSource> = if USE_LOOP.load(std::sync::atomic::Ordering::Relaxed) {
        let samples = LOOP
            .get_or_init(|| {
                let mut v = vec![0i16; 8000];
                ToneGenerator::new(440.0, 8000, 8000).fill(&mut v);
                v.into()
            })
            .clone();
        Box::new(LoopSource { samples, pos: 0 })
    } else {
        Box::new(ToneSource::new(440.0, 8000, 8000))
    };
    CallOptions {
        source: Some(source),
        sink: Some(Box::new(NullSink { rate: 8000 })),
    }
}

/// utime + stime of the whole process, in seconds (/proc/self/stat fields 14 and 15).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields from 3 (state) on: utime is field 14 → index 11, stime 15 → 12.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

/// USER_HZ; 100 on every Linux this runs on (no libc dependency to ask sysconf).
fn clock_ticks() -> f64 {
    100.0
}

/// Per-thread CPU seconds (name, tid, seconds), from /proc/self/task/*/stat.
fn thread_cpu() -> Vec<(String, u32, f64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
            continue;
        };
        let name = s[open + 1..close].to_string();
        let tid = s[..open].trim().parse().unwrap_or(0);
        let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        out.push((name, tid, ticks as f64 / clock_ticks()));
    }
    out.sort_by_key(|t| t.1);
    out
}

/// A `/proc/self/status` figure in kB (`VmRSS`, `VmHWM`, …).
fn status_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// Alice's side: the pull API on this thread, remembering which calls are up or over.
struct Alice {
    ep: Endpoint,
    connected: HashSet<CallId>,
    ended: HashSet<CallId>,
}

impl Alice {
    fn pump(&mut self, timeout: Duration) -> Option<(CallId, bool)> {
        let ev = self.ep.next_event(timeout)?;
        match ev {
            Event::CallState {
                call,
                state: CallState::Connected,
            } => {
                self.connected.insert(call);
                Some((call, true))
            }
            Event::CallState {
                call,
                state: CallState::Ended { status, reason },
            } => {
                if !self.connected.contains(&call) {
                    eprintln!("call {} ended before connecting: {status} {reason}", call.0);
                }
                self.ended.insert(call);
                Some((call, false))
            }
            _ => None,
        }
    }

    /// Waits until `pred` holds, pumping events; panics after `limit`.
    fn wait(&mut self, what: &str, limit: Duration, mut pred: impl FnMut(&Alice) -> bool) {
        let end = Instant::now() + limit;
        while !pred(self) {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            self.pump(Duration::from_millis(20));
        }
    }
}

fn main() {
    let a = args();
    let srtp = match a.srtp.as_str() {
        "sdes" => SrtpConfig {
            policy: SrtpPolicy::Mandatory,
            keying: SrtpKeying::Sdes,
            sdes_over_insecure: true,
        },
        "dtls" => SrtpConfig {
            policy: SrtpPolicy::Mandatory,
            keying: SrtpKeying::Dtls,
            sdes_over_insecure: false,
        },
        _ => SrtpConfig {
            policy: SrtpPolicy::Off,
            ..SrtpConfig::default()
        },
    };
    let _ = SRTP.set(srtp);
    USE_LOOP.store(a.source == "loop", std::sync::atomic::Ordering::Relaxed);
    let mut alice = Alice {
        ep: Endpoint::new(config()).expect("alice endpoint"),
        connected: HashSet::new(),
        ended: HashSet::new(),
    };
    let bob = Endpoint::new(config()).expect("bob endpoint");
    let target = format!("sip:bob@{}", bob.udp_addr().expect("bob udp"));
    // Bob answers every call from his event handler and keeps the handles (for statistics).
    let bob_calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    {
        let ep = bob.clone();
        let calls = bob_calls.clone();
        bob.set_event_handler(Box::new(move |ev| match ev {
            Event::IncomingCall { call, .. } => match ep.call(call) {
                Ok(c) => match c.answer(audio()) {
                    Ok(()) => calls.lock().unwrap().push(c),
                    Err(e) => eprintln!("bob: answer failed: {e}"),
                },
                Err(e) => eprintln!("bob: no call {}: {e}", call.0),
            },
            Event::CallState {
                call,
                state: CallState::Ended { .. },
            } => calls.lock().unwrap().retain(|c| c.id() != call),
            _ => {}
        }))
        .expect("bob handler");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = status_kb("VmRSS");
    println!(
        "ua_load: PCMU 20 ms, alice → bob direct on 127.0.0.1, 1 runtime worker per endpoint, source {}; idle RSS {rss_idle} kB",
        a.source
    );

    // ---- 1. setup time ----
    let mut setup_ms = Vec::with_capacity(a.setup);
    for _ in 0..a.setup {
        let t0 = Instant::now();
        let call = alice
            .ep
            .make_call(None, &target, audio())
            .expect("make_call");
        let id = call.id();
        let end = t0 + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < end, "setup call {} did not connect", id.0);
            match alice.pump(Duration::from_millis(100)) {
                Some((c, true)) if c == id => break,
                Some((c, false)) if c == id => panic!("setup call {} ended", id.0),
                _ => {}
            }
        }
        setup_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        call.hangup().expect("hangup");
        alice.wait("setup hang-up", Duration::from_secs(5), |s| {
            s.ended.contains(&id)
        });
    }
    let (sp50, sp90, sp99, smax) = if setup_ms.is_empty() {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    } else {
        let mut s = setup_ms.clone();
        s.sort_by(f64::total_cmp);
        (
            percentile(&s, 50.0),
            percentile(&s, 90.0),
            percentile(&s, 99.0),
            s[s.len() - 1],
        )
    };
    if a.setup > 0 {
        println!(
            "setup ({} sequential calls, make_call → Connected on the caller): p50 {sp50:.2} ms  p90 {sp90:.2} ms  p99 {sp99:.2} ms  max {smax:.2} ms  (target p99 < {TARGET_SETUP_P99_MS} ms: {})",
            a.setup,
            if sp99 < TARGET_SETUP_P99_MS {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    // Let bob's side see the last BYE.
    let t = Instant::now();
    while !bob_calls.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let rss_after_setup = status_kb("VmRSS");

    // ---- 2. load ----
    let n = a.calls;
    let t_make = Instant::now();
    let mut calls = Vec::with_capacity(n);
    for _ in 0..n {
        calls.push(
            alice
                .ep
                .make_call(None, &target, audio())
                .expect("make_call"),
        );
    }
    let ids: Vec<CallId> = calls.iter().map(Call::id).collect();
    alice.wait("all calls connected", Duration::from_secs(60), |s| {
        ids.iter()
            .all(|c| s.connected.contains(c) || s.ended.contains(c))
    });
    let lost: Vec<_> = ids.iter().filter(|c| alice.ended.contains(c)).collect();
    assert!(lost.is_empty(), "{} load calls ended early", lost.len());
    let all_up_ms = t_make.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    while bob_calls.lock().unwrap().len() < n && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let bob_n = bob_calls.lock().unwrap().len();
    assert_eq!(bob_n, n, "bob has {bob_n} calls, expected {n}");
    println!(
        "load: {n} calls connected in {all_up_ms:.0} ms; warm-up {} s",
        a.warmup
    );
    let sleep_pumping = |alice: &mut Alice, d: Duration| {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            alice.pump(left.min(Duration::from_millis(200)));
        }
    };
    sleep_pumping(&mut alice, Duration::from_secs_f64(a.warmup));

    // The legs whose media is in the `--srtp` mode (keying `SDES`, `DTLS` or none).
    let want_keying = match a.srtp.as_str() {
        "sdes" => Some("SDES"),
        "dtls" => Some("DTLS"),
        _ => None,
    };
    let mut srtp_legs = 0usize;
    let mut rx_total = |calls: &[Call], bob_calls: &Mutex<Vec<Call>>| -> (u64, u64, u64) {
        let mut rx = 0;
        let mut tx = 0;
        let mut concealed = 0;
        srtp_legs = 0;
        for c in calls.iter().chain(bob_calls.lock().unwrap().iter()) {
            if let Ok(s) = c.stats() {
                rx += s.rx_packets;
                tx += s.tx_packets;
                concealed += s.concealed_frames;
                if s.srtp_keying == want_keying {
                    srtp_legs += 1;
                }
            }
        }
        (rx, tx, concealed)
    };
    let (rx0, tx0, conc0) = rx_total(&calls, &bob_calls);
    let threads0 = thread_cpu();
    let cpu0 = cpu_seconds();
    let w0 = Instant::now();
    sleep_pumping(&mut alice, Duration::from_secs_f64(a.seconds));
    let cpu1 = cpu_seconds();
    let wall = w0.elapsed().as_secs_f64();
    let threads1 = thread_cpu();
    let (rx1, tx1, conc1) = rx_total(&calls, &bob_calls);
    let rss_loaded = status_kb("VmRSS");
    let hwm = status_kb("VmHWM");

    let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
    let per_call = cpu_pct / n as f64;
    let legs = 2 * n;
    let rx_rate = (rx1 - rx0) as f64 / wall / legs as f64;
    let tx_rate = (tx1 - tx0) as f64 / wall / legs as f64;
    let concealed_rate = (conc1 - conc0) as f64 / wall / legs as f64;
    let kb_per_call = (rss_loaded as f64 - rss_idle as f64) / n as f64;
    let kb_per_call_setup = (rss_loaded as f64 - rss_after_setup as f64) / n as f64;
    let media_ok = rx_rate > 45.0 && tx_rate > 45.0 && srtp_legs == legs;
    println!("  SRTP {}: {srtp_legs} of {legs} legs in that mode", a.srtp);

    println!("steady state over {wall:.1} s with {n} calls ({legs} legs):");
    println!(
        "  CPU  {cpu_pct:.1} % of one core in all → {per_call:.3} % per call, {:.3} % per leg  (target ≤ {TARGET_CPU_PCT_PER_CALL} % per call: {})",
        per_call / 2.0,
        if per_call <= TARGET_CPU_PCT_PER_CALL {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  RSS  idle {rss_idle} kB, after setup phase {rss_after_setup} kB, with {n} calls {rss_loaded} kB (VmHWM {hwm} kB) → {kb_per_call:.1} kB per call, {:.1} kB per leg (vs after-setup RSS: {kb_per_call_setup:.1} kB per call)  (target ≤ {TARGET_KB_PER_CALL} kB per call: {})",
        kb_per_call / 2.0,
        if kb_per_call <= TARGET_KB_PER_CALL {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  RTP  rx {rx_rate:.1} pkt/s per leg, tx {tx_rate:.1} pkt/s per leg (50 expected), concealed {concealed_rate:.2} frames/s per leg: media {}",
        if media_ok { "flowing" } else { "NOT FLOWING" }
    );
    println!("  CPU by thread (tid name: % of one core):");
    for (name, tid, s1) in &threads1 {
        let s0 = threads0.iter().find(|t| t.1 == *tid).map_or(0.0, |t| t.2);
        let pct = (s1 - s0) / wall * 100.0;
        if pct >= 0.05 {
            println!("    {tid} {name}: {pct:.1} %");
        }
    }

    // ---- teardown ----
    for c in &calls {
        let _ = c.hangup();
    }
    alice.wait("load hang-up", Duration::from_secs(30), |s| {
        ids.iter().all(|c| s.ended.contains(c))
    });
    alice.ep.shutdown();
    bob.shutdown();

    println!(
        "ua_load srtp={} source={} calls={n} seconds={wall:.1} cpu_pct_total={cpu_pct:.2} cpu_pct_per_call={per_call:.4} cpu_pct_per_leg={:.4} rss_idle_kb={rss_idle} rss_loaded_kb={rss_loaded} vmhwm_kb={hwm} kb_per_call={kb_per_call:.1} kb_per_leg={:.1} rx_pps_per_leg={rx_rate:.1} tx_pps_per_leg={tx_rate:.1} setup_calls={} setup_p50_ms={sp50:.2} setup_p90_ms={sp90:.2} setup_p99_ms={sp99:.2} setup_max_ms={smax:.2} media_ok={media_ok}",
        a.srtp,
        a.source,
        per_call / 2.0,
        kb_per_call / 2.0,
        a.setup,
    );
    if !media_ok {
        std::process::exit(1);
    }
}
