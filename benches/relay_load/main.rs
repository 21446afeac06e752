//! Media relay load (issue 10): rvoip's relay (`driver::relay`, one poll thread) or rtpengine
//! (userspace, reached over its ng control protocol) forwarding N G.711 calls on loopback.
//!
//! Every call has two endpoints, A and B (one UDP socket each, on 127.0.0.1). Each sends a
//! 172-byte RTP packet (12-byte header + 160 bytes of µ-law payload; sequence number +1 and
//! timestamp +160 per packet, one SSRC per endpoint) every 20 ms toward its relay port: 50
//! packets/s each way per call, 100 per call in all. The payload starts with the send time in
//! ns (CLOCK_MONOTONIC) and a run tag; the receiver takes the one-way latency (receive time −
//! send time) and counts packets (loss). Streams are spread evenly over the 20 ms grid (call i
//! starts at i·20 ms/N, B half a frame after A), as unsynchronised phones would be. One or two
//! generator threads (`--threads`) send and receive on nonblocking sockets, each `connect`ed to
//! the address it sends to (so it also checks that the relay answers symmetrically, from the
//! port the endpoint sends to), with a level-triggered epoll: one `send` per packet sent and
//! one `recv` per packet received, no `EAGAIN` reads, so the generator leaves the machine's
//! second core to the relay as far as it can. It sleeps with `epoll_pwait2` (ns timeouts, 1 µs
//! timer slack) at least 100 µs at a time, so frames due within one quantum leave together
//! (≤ 10 packets at 1000 calls), and it reads arrivals every 8 sends within such a burst.
//!
//! Phases, each with a warm-up (`--warmup`) before the measured window:
//! 1. **direct** (calibration, `--calib` s): A sends straight to B and B to A, through the same
//!    generator. Its latency is the generator's own path (send, loopback, epoll wake-up, read).
//! 2. **relay** (`--seconds` s): the same streams through the relay under test:
//!    - `--target rvoip`: an in-process `RelayDriver` on 127.0.0.1, ports `--port-min`..
//!      `--port-max` (default 30000-39999); per call `create`, `set_remote` of both sides,
//!      `confirm` (the proxy's `RelayControl` calls, without SIP).
//!    - `--target rtpengine`: per call an ng `offer` (A's SDP) and `answer` (B's SDP) to
//!      `--ng ADDR` (default 127.0.0.1:22230); the ports come from the SDP in the replies.
//!      `--rtpengine-pid PID` names the process whose CPU and RSS are measured.
//!
//! Figures of the measured window: packets forwarded (= received by the endpoints in the
//! window), relay CPU-seconds (rvoip: the `rvoip-relay` thread; rtpengine: all its threads;
//! both from `/proc/…/task/*/schedstat`, ns resolution) per million packets, latency
//! p50/p99/p99.9/max through the relay and "added" latency (relay path − direct path,
//! percentile by percentile), loss over the whole phase (sent − received, after a 300 ms drain)
//! and memory per relayed call: (RSS at the end of the window − RSS before the contexts were
//! created) / N, of this process for rvoip (generator state allocated before the baseline) and
//! of the rtpengine process. `other_cores` is the rest of the machine's CPU use during the
//! window (all CPUs × wall − `/proc/stat` idle, minus this process and the relay), i.e. how
//! busy the shared machine was; `machine_cores` is the whole machine's.
//!
//! The last line is machine-readable (`relay_load key=value ...`).
//!
//! `cargo bench -p rvoip-sdk --bench relay_load -- --calls 1000 --seconds 10 --target rvoip`
//! (`--target rtpengine --rtpengine-pid PID [--ng 127.0.0.1:22230]`; `--warmup 1`, `--calib 3`,
//! `--threads 1|2`, `--gen-cpu C` / `--relay-cpu C` to pin the generator / the relay)
//! (`benches/relay.sh` runs both targets at 100, 500 and 1000 calls and prints the ratios).

mod epoll;
mod generator;
mod hist;
mod ng;
mod sys;
mod targets;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use rvoip_sdk::driver::relay::RelayHandle;

use generator::{Ep, FRAME, run_phase};
use hist::Hist;
use ng::Ng;
use sys::{EPOCH, cpu_ns, load1, rss_kb, threads};

/// Targets of issue 10.
const TARGET_CPU_RATIO: f64 = 0.5;
const TARGET_ADDED_P99_US: f64 = 1000.0;
const TARGET_KB_PER_CALL: f64 = 16.0;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Args {
    calls: usize,
    seconds: f64,
    warmup: f64,
    calib: f64,
    threads: usize,
    target: String,
    ng: SocketAddr,
    rtpengine_pid: Option<u32>,
    port_min: u16,
    port_max: u16,
    gen_port_base: u16,
    /// Pin generator thread i to CPU `gen_cpu - i` (`--gen-cpu -1`: no pinning, the default).
    gen_cpu: Option<usize>,
    /// Pin the relay (rvoip: its thread; rtpengine: all its threads) to this CPU (default none).
    relay_cpu: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        calls: 100,
        seconds: 10.0,
        warmup: 1.0,
        calib: 3.0,
        threads: 1,
        target: "rvoip".into(),
        ng: "127.0.0.1:22230".parse().unwrap(),
        rtpengine_pid: None,
        port_min: 30000,
        port_max: 39999,
        gen_port_base: 20000,
        gen_cpu: None,
        relay_cpu: None,
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
            "--warmup" => a.warmup = num(val),
            "--calib" => a.calib = num(val),
            "--threads" => a.threads = num(val) as usize,
            "--target" => a.target = val.unwrap_or_default().to_string(),
            "--ng" => a.ng = val.and_then(|v| v.parse().ok()).expect("--ng IP:PORT"),
            "--rtpengine-pid" => a.rtpengine_pid = Some(num(val) as u32),
            "--port-min" => a.port_min = num(val) as u16,
            "--port-max" => a.port_max = num(val) as u16,
            "--gen-port-base" => a.gen_port_base = num(val) as u16,
            "--gen-cpu" => a.gen_cpu = Some(num(val)).filter(|&c| c >= 0.0).map(|c| c as usize),
            "--relay-cpu" => a.relay_cpu = Some(num(val)).filter(|&c| c >= 0.0).map(|c| c as usize),
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
    assert!((1..=2).contains(&a.threads), "--threads 1|2");
    a.threads = a.threads.min(a.calls);
    assert!(
        a.target == "rvoip" || a.target == "rtpengine",
        "--target rvoip|rtpengine"
    );
    a
}

fn main() {
    let a = args();
    EPOCH.get_or_init(Instant::now);
    let n = a.calls;
    println!(
        "relay_load: target {}, {n} calls × 2 × 50 packets/s ({} pps), 172-byte PCMU RTP, {} generator thread(s), load {}",
        a.target,
        n * 100,
        a.threads,
        load1()
    );

    // Endpoints: call i has A = 2i, B = 2i + 1, on gen_port_base + 2i (+1) when free.
    let mut eps: Vec<Ep> = Vec::with_capacity(2 * n);
    let frame = FRAME.as_nanos() as u64;
    for i in 0..2 * n {
        let want = a
            .gen_port_base
            .checked_add(i as u16)
            .filter(|_| a.gen_port_base != 0);
        let std_sock = want
            .and_then(|p| UdpSocket::bind((LOCALHOST, p)).ok())
            .unwrap_or_else(|| UdpSocket::bind((LOCALHOST, 0)).expect("bind endpoint"));
        std_sock.set_nonblocking(true).unwrap();
        let addr = std_sock.local_addr().unwrap();
        let call = (i / 2) as u64;
        let phase = call * frame / n as u64 + if i % 2 == 1 { frame / 2 } else { 0 };
        eps.push(Ep {
            idx: i,
            sock: std_sock,
            addr,
            dest: addr,
            ssrc: 0x5000_0000 + i as u32,
            peer_ssrc: 0x5000_0000 + (i ^ 1) as u32,
            seq: (i as u16).wrapping_mul(7919),
            ts: (i as u32).wrapping_mul(104_729),
            phase_ns: phase % frame,
        });
    }
    let addrs: Vec<SocketAddr> = eps.iter().map(|e| e.addr).collect();

    // Direct path: A → B, B → A.
    for i in 0..2 * n {
        eps[i].dest = addrs[i ^ 1];
    }
    let group = |eps: &mut Vec<Ep>| -> Vec<Vec<Ep>> {
        // Thread t takes calls t, t + threads, …; each group sorted by its send phase.
        let mut groups: Vec<Vec<Ep>> = (0..a.threads).map(|_| Vec::new()).collect();
        for (i, e) in eps.drain(..).enumerate() {
            groups[(i / 2) % a.threads].push(e);
        }
        for g in &mut groups {
            g.sort_by_key(|e| e.phase_ns);
        }
        groups
    };
    let mut groups = group(&mut eps);
    let mut hists: Vec<Hist> = (0..a.threads).map(|_| Hist::new()).collect();

    // The relay under test (rvoip: started now, so its fixed costs — thread, poll, the port
    // table, the receive buffers — are in the baseline, not in the per-call figure).
    let driver = (a.target == "rvoip").then(|| targets::rvoip_driver(a.port_min, a.port_max));
    let rt_pid = a.rtpengine_pid.map(|p| p.to_string());
    if a.target == "rtpengine" {
        let p = rt_pid.as_deref().expect("--rtpengine-pid PID");
        assert!(
            std::path::Path::new(&format!("/proc/{p}")).exists(),
            "no process {p}"
        );
    }
    let relay_cpu: Box<dyn Fn() -> u64> = match &rt_pid {
        Some(p) if a.target == "rtpengine" => {
            let p = p.clone();
            Box::new(move || cpu_ns(&p, None))
        }
        _ => Box::new(|| cpu_ns("self", Some("rvoip-relay"))),
    };
    let relay_rss: Box<dyn Fn() -> u64> = match &rt_pid {
        Some(p) if a.target == "rtpengine" => {
            let p = p.clone();
            Box::new(move || rss_kb(&p))
        }
        _ => Box::new(|| rss_kb("self")),
    };

    if let Some(cpu) = a.relay_cpu {
        let (pid, name) = match (&rt_pid, a.target.as_str()) {
            (Some(p), "rtpengine") => (p.clone(), None),
            _ => ("self".to_string(), Some("rvoip-relay")),
        };
        for tid in threads(&pid, name) {
            if let Err(e) = epoll::pin_tid_to_cpu(tid, cpu) {
                eprintln!("relay_load: cannot pin relay thread {tid} to CPU {cpu}: {e}");
            }
        }
    }

    // ---- 1. direct calibration ----
    let direct = run_phase(
        &mut groups,
        &mut hists,
        a.warmup.min(0.5),
        a.calib,
        1,
        a.gen_cpu,
        &*relay_cpu,
        a.target == "rvoip",
        &*relay_rss,
    );
    println!(
        "direct (calibration, {:.1} s): sent {} received {} (other {}), latency p50 {:.0} p99 {:.0} p99.9 {:.0} max {} µs, generator CPU {:.1} % of a core, other load {:.2} cores",
        a.calib,
        direct.traffic.sent,
        direct.traffic.recv,
        direct.traffic.other,
        direct.traffic.hist.q(0.5),
        direct.traffic.hist.q(0.99),
        direct.traffic.hist.q(0.999),
        direct.traffic.hist.max_us,
        direct.own_cpu_s / a.calib * 100.0,
        direct.other_cores
    );

    // ---- 2. set up N relayed calls ----
    // Endpoint i at index i again (call c: A = 2c, B = 2c + 1); nothing of the generator is
    // allocated from here to the end of the window, so the RSS delta is the relay's.
    let mut eps: Vec<Ep> = groups.drain(..).flatten().collect();
    eps.sort_by_key(|e| e.idx);
    let mut handle: Option<RelayHandle> = driver.as_ref().map(|d| d.handle());
    let mut ng = (a.target == "rtpengine").then(|| Ng::new(a.ng));
    let rss_before = relay_rss();
    let t_setup = Instant::now();
    for c in 0..n {
        let (pa, pb) = (eps[2 * c].addr, eps[2 * c + 1].addr);
        let (to_a_leg, to_b_leg) = if let Some(h) = handle.as_mut() {
            targets::rvoip_call(h, pa, pb)
        } else {
            targets::rtpengine_call(ng.as_mut().unwrap(), c, pa, pb)
        };
        eps[2 * c].dest = to_a_leg;
        eps[2 * c + 1].dest = to_b_leg;
    }
    let setup_us = t_setup.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut groups = group(&mut eps);
    println!(
        "set up {n} relayed calls in {:.1} ms ({setup_us:.0} µs per call: {})",
        setup_us * n as f64 / 1000.0,
        if a.target == "rvoip" {
            "create + 2 × set_remote + confirm, in-process"
        } else {
            "ng offer + answer over loopback UDP"
        }
    );

    // ---- 3. relayed streams ----
    let relay = run_phase(
        &mut groups,
        &mut hists,
        a.warmup,
        a.seconds,
        2,
        a.gen_cpu,
        &*relay_cpu,
        a.target == "rvoip",
        &*relay_rss,
    );
    let rss_after = relay.rss_end_kb;
    let kb_per_call = (rss_after as f64 - rss_before as f64) / n as f64;
    let pkts = relay.traffic.recv_window as f64;
    let cpu_per_m = relay.relay_cpu_s / pkts * 1e6;
    let loss = 100.0 * (relay.traffic.sent.saturating_sub(relay.traffic.recv)) as f64
        / relay.traffic.sent.max(1) as f64;
    let (p50, p99, p999) = (
        relay.traffic.hist.q(0.5),
        relay.traffic.hist.q(0.99),
        relay.traffic.hist.q(0.999),
    );
    let (d50, d99) = (direct.traffic.hist.q(0.5), direct.traffic.hist.q(0.99));
    println!(
        "relay ({:.1} s window): sent {} received {} (other {}, send errors {}), loss {loss:.4} %, forwarded in window {} ({:.0} pps)",
        a.seconds,
        relay.traffic.sent,
        relay.traffic.recv,
        relay.traffic.other,
        relay.traffic.send_errors,
        relay.traffic.recv_window,
        pkts / a.seconds
    );
    println!(
        "  relay CPU {:.3} s ({:.1} % of a core) → {cpu_per_m:.3} CPU-s per million packets ({:.2} µs per packet); generator process CPU {:.1} %; other load {:.2} cores",
        relay.relay_cpu_s,
        relay.relay_cpu_s / a.seconds * 100.0,
        cpu_per_m,
        relay.own_cpu_s / a.seconds * 100.0,
        relay.other_cores
    );
    println!(
        "  latency through the relay p50 {p50:.0} p99 {p99:.0} p99.9 {p999:.0} max {} µs; direct p50 {d50:.0} p99 {d99:.0} µs → added p50 {:.0} p99 {:.0} µs",
        relay.traffic.hist.max_us,
        p50 - d50,
        p99 - d99
    );
    println!(
        "  RSS ({}) {rss_before} → {rss_after} kB → {kb_per_call:.2} kB per relayed call",
        if a.target == "rvoip" {
            "this process"
        } else {
            "rtpengine"
        }
    );
    if let Some(h) = &handle {
        let s = h.stats();
        println!(
            "  rvoip relay counters: contexts {} ports {} forwarded {} dropped foreign {} malformed {} unknown port {} no destination {}; send errors {}",
            s.contexts,
            s.ports_in_use,
            s.forwarded,
            s.dropped_foreign,
            s.dropped_malformed,
            s.dropped_unknown_port,
            s.dropped_no_destination,
            h.send_errors()
        );
    }
    if let Some(ng) = ng.as_mut() {
        for c in 0..n {
            targets::rtpengine_delete(ng, c);
        }
    }
    if a.target == "rvoip" {
        println!(
            "targets: CPU ≤ {TARGET_CPU_RATIO}× rtpengine's (ratio: benches/relay.sh); added p99 < {TARGET_ADDED_P99_US} µs: {}; 0 loss: {}; ≤ {TARGET_KB_PER_CALL} kB/call: {}",
            if p99 - d99 < TARGET_ADDED_P99_US {
                "met"
            } else {
                "MISSED"
            },
            if relay.traffic.sent == relay.traffic.recv {
                "met"
            } else {
                "MISSED"
            },
            if kb_per_call <= TARGET_KB_PER_CALL {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!(
        "relay_load target={} calls={n} threads={} seconds={} sent={} recv={} loss_pct={loss:.4} fwd_window={} pps={:.0} relay_cpu_s={:.4} cpu_pct={:.2} cpu_s_per_mpkt={cpu_per_m:.4} p50_us={p50:.0} p99_us={p99:.0} p999_us={p999:.0} max_us={} direct_p50_us={d50:.0} direct_p99_us={d99:.0} added_p50_us={:.0} added_p99_us={:.0} rss_before_kb={rss_before} rss_after_kb={rss_after} kb_per_call={kb_per_call:.2} setup_us_per_call={setup_us:.0} gen_cpu_pct={:.1} other_cores={:.2} machine_cores={:.2} load1={}",
        a.target,
        a.threads,
        a.seconds,
        relay.traffic.sent,
        relay.traffic.recv,
        relay.traffic.recv_window,
        pkts / a.seconds,
        relay.relay_cpu_s,
        relay.relay_cpu_s / a.seconds * 100.0,
        relay.traffic.hist.max_us,
        p50 - d50,
        p99 - d99,
        (relay.own_cpu_s
            - if a.target == "rvoip" {
                relay.relay_cpu_s
            } else {
                0.0
            })
            / a.seconds
            * 100.0,
        relay.other_cores,
        relay.machine_cores,
        load1()
    );
    drop(handle);
    drop(driver);
}
