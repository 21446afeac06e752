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

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use rvoip_sdk::driver::relay::{RelayDriver, RelayHandle};
use rvoip_sdk::media::relay::{RelayConfig, Side};
use rvoip_sdk::server::proxy::anchor::RelayControl;
use rvoip_sdk::server::proxy::rewrite::Stream;

/// Targets of issue 10.
const TARGET_CPU_RATIO: f64 = 0.5;
const TARGET_ADDED_P99_US: f64 = 1000.0;
const TARGET_KB_PER_CALL: f64 = 16.0;

const FRAME: Duration = Duration::from_millis(20);
const PKT_LEN: usize = 172;
/// The generator's shortest sleep between sends, in ns.
const QUANTUM_NS: u64 = 100_000;
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

// ---------------------------------------------------------------- clock, /proc

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide epoch (CLOCK_MONOTONIC, as `Instant`).
fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Summed on-CPU time (ns, `schedstat` field 1) of every thread of `pid` ("self" allowed),
/// or of only those whose `comm` is `name`.
fn cpu_ns(pid: &str, name: Option<&str>) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut sum = 0;
    for e in dir.flatten() {
        if let Some(n) = name {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim_end() != n {
                continue;
            }
        }
        let s = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        sum += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    sum
}

/// Thread ids of `pid` ("self" allowed), or only of those whose `comm` is `name`.
fn threads(pid: &str, name: Option<&str>) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            name.is_none_or(|n| {
                std::fs::read_to_string(e.path().join("comm"))
                    .unwrap_or_default()
                    .trim_end()
                    == n
            })
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// `VmRSS` of `pid` in kB.
fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Idle time of all CPUs in ns and the number of CPUs (`/proc/stat`: idle + iowait, USER_HZ
/// 100). The idle columns are exact on a tickless kernel, while user/system are sampled at each
/// tick and miss short bursts such as a packet loop's: busy time = CPUs × wall − idle.
fn machine_idle_ns() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpus = s
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u64;
    let Some(l) = s.lines().next() else {
        return (0, cpus);
    };
    let f: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let pick = |i: usize| f.get(i).copied().unwrap_or(0);
    ((pick(3) + pick(4)) * 10_000_000, cpus)
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

// ---------------------------------------------------------------- latency histogram

/// 1 µs buckets up to 4.096 ms, then 1 ms buckets up to ~20 s (the last one takes the rest).
struct Hist {
    b: Vec<u64>,
    n: u64,
    max_us: u64,
}

const FINE: u64 = 4096;
const COARSE_STEP: u64 = 1000;
const COARSE: u64 = 16384;

impl Hist {
    fn new() -> Hist {
        let mut b = vec![0u64; (FINE + COARSE) as usize];
        // Touch every page now, so the histogram is part of the RSS baseline (non-zero stores
        // that the optimizer cannot drop, then zeros again).
        b.fill(1);
        std::hint::black_box(&mut b);
        b.fill(0);
        Hist { b, n: 0, max_us: 0 }
    }
    #[inline]
    fn add(&mut self, ns: u64) {
        let us = ns / 1000;
        let i = if us < FINE {
            us
        } else {
            FINE + ((us - FINE) / COARSE_STEP).min(COARSE - 1)
        };
        self.b[i as usize] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }
    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.b.iter_mut().zip(&o.b) {
            *a += b;
        }
        self.n += o.n;
        self.max_us = self.max_us.max(o.max_us);
    }
    /// The `q` quantile in µs (bucket's lower edge; exact to 1 µs below 4 ms).
    fn q(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, &c) in self.b.iter().enumerate() {
            acc += c;
            if acc >= rank {
                let i = i as u64;
                return if i < FINE {
                    i as f64
                } else {
                    (FINE + (i - FINE) * COARSE_STEP) as f64
                };
            }
        }
        self.max_us as f64
    }
}

// ---------------------------------------------------------------- generator

/// One endpoint (A or B side of a call).
struct Ep {
    /// Endpoint number: call c has A = 2c, B = 2c + 1.
    idx: usize,
    sock: UdpSocket,
    addr: SocketAddr,
    /// Where it sends: its relay port, or the other endpoint (direct phase).
    dest: SocketAddr,
    ssrc: u32,
    /// The SSRC it expects to receive (the other endpoint's).
    peer_ssrc: u32,
    seq: u16,
    ts: u32,
    /// Offset of its frames on the 20 ms grid, in ns.
    phase_ns: u64,
}

/// What one generator thread saw in one phase.
struct GenResult {
    sent: u64,
    recv: u64,
    /// Received with a receive time inside the measured window.
    recv_window: u64,
    /// Received packets not of this phase or malformed / wrong SSRC.
    other: u64,
    send_errors: u64,
    hist: Hist,
}

/// The time plan of one phase, in ns since the epoch.
#[derive(Clone, Copy)]
struct Plan {
    start: u64,
    win_start: u64,
    win_end: u64,
    tag: u32,
    /// CPU to pin generator thread i to (`gen_cpu - i`), if any.
    gen_cpu: Option<usize>,
}

/// Sends and receives for `eps` (sorted by `phase_ns`) on the 20 ms grid until `plan.win_end`,
/// then drains for 300 ms.
fn generate(eps: &mut [Ep], plan: Plan, mut hist: Hist, thread: usize) -> GenResult {
    let frame = FRAME.as_nanos() as u64;
    epoll::set_timer_slack_ns(1000);
    if let Some(cpu) = plan.gen_cpu.and_then(|c| c.checked_sub(thread)) {
        if let Err(e) = epoll::pin_to_cpu(cpu) {
            eprintln!("relay_load: cannot pin generator thread {thread} to CPU {cpu}: {e}");
        }
    }
    let ep = epoll::Epoll::new().expect("epoll");
    for (i, e) in eps.iter().enumerate() {
        e.sock.connect(e.dest).expect("connect endpoint");
        ep.add(e.sock.as_raw_fd(), i as u64).expect("epoll add");
    }
    let mut events = vec![epoll::Event::default(); 1024];
    let mut r = GenResult {
        sent: 0,
        recv: 0,
        recv_window: 0,
        other: 0,
        send_errors: 0,
        hist: Hist {
            b: Vec::new(),
            n: 0,
            max_us: 0,
        },
    };
    // Per endpoint, the next frame's due time; the order of `eps` is the order of sends within
    // every 20 ms period, so one cursor walks it round and round.
    let mut due: Vec<u64> = eps.iter().map(|e| plan.start + e.phase_ns).collect();
    let mut cur = 0usize;
    let mut pkt = [0xffu8; PKT_LEN];
    pkt[0] = 0x80; // V=2, no padding, no extension, no CSRC
    pkt[1] = 0; // PT 0 (PCMU), no marker
    let mut buf = [0u8; 2048];
    let drain_end = plan.win_end + 300_000_000;
    loop {
        let now = now_ns();
        if now >= drain_end {
            break;
        }
        // Send every frame that is due; during a burst, look for arrivals every few sends so
        // the generator's own sending does not delay its receiving by a whole burst.
        let mut burst = 0u32;
        if now < plan.win_end {
            while due[cur] <= now_ns() && due[cur] < plan.win_end {
                burst += 1;
                if burst % 8 == 0 {
                    let n = ep.wait(&mut events, 0);
                    receive(eps, &events[..n], &mut buf, plan, &mut r, &mut hist);
                }
                let e = &mut eps[cur];
                pkt[2..4].copy_from_slice(&e.seq.to_be_bytes());
                pkt[4..8].copy_from_slice(&e.ts.to_be_bytes());
                pkt[8..12].copy_from_slice(&e.ssrc.to_be_bytes());
                pkt[20..24].copy_from_slice(&plan.tag.to_le_bytes());
                let t = now_ns();
                pkt[12..20].copy_from_slice(&t.to_le_bytes());
                match e.sock.send(&pkt) {
                    Ok(_) => r.sent += 1,
                    Err(_) => r.send_errors += 1,
                }
                e.seq = e.seq.wrapping_add(1);
                e.ts = e.ts.wrapping_add(160);
                due[cur] += frame;
                cur = (cur + 1) % eps.len();
            }
        }
        let next = if now < plan.win_end {
            due[cur].min(plan.win_end)
        } else {
            drain_end
        };
        // Sleep until the next frame is due, but at least QUANTUM: frames due within one
        // quantum leave together (≤ 10 packets at 1000 calls), not one wake-up per packet.
        let now = now_ns();
        let wait = if next <= now {
            0
        } else {
            (next - now).clamp(QUANTUM_NS, 1_000_000_000)
        };
        let n = ep.wait_ns(&mut events, wait);
        receive(eps, &events[..n], &mut buf, plan, &mut r, &mut hist);
    }
    r.hist = hist;
    r
}

/// Reads one datagram from every endpoint in `events` (level-triggered: what is left is
/// reported again) and records it.
fn receive(
    eps: &[Ep],
    events: &[epoll::Event],
    buf: &mut [u8],
    plan: Plan,
    r: &mut GenResult,
    hist: &mut Hist,
) {
    for ev in events {
        let Some(e) = eps.get(ev.token() as usize) else {
            continue;
        };
        // WouldBlock (spurious), ICMP errors on the connected socket and the like: nothing.
        let Ok(n) = e.sock.recv(buf) else { continue };
        let t = now_ns();
        let p = &buf[..n];
        if n != PKT_LEN
            || p[20..24] != plan.tag.to_le_bytes()
            || p[8..12] != e.peer_ssrc.to_be_bytes()
        {
            r.other += 1;
            continue;
        }
        r.recv += 1;
        let sent_at = u64::from_le_bytes(p[12..20].try_into().unwrap());
        if t >= plan.win_start && t < plan.win_end {
            r.recv_window += 1;
        }
        if sent_at >= plan.win_start && sent_at < plan.win_end {
            hist.add(t.saturating_sub(sent_at));
        }
    }
}

/// A level-triggered epoll (std has none and mio is edge-triggered only, which costs one
/// `EAGAIN` read per packet at 50 packets/s per socket).
mod epoll {
    use std::io;
    use std::os::fd::RawFd;

    const EPOLL_CLOEXEC: i32 = 0o2000000;
    const EPOLL_CTL_ADD: i32 = 1;
    const EPOLLIN: u32 = 0x001;

    /// `struct epoll_event` (packed on x86-64).
    #[cfg_attr(target_arch = "x86_64", repr(C, packed))]
    #[cfg_attr(not(target_arch = "x86_64"), repr(C))]
    #[derive(Clone, Copy, Default)]
    pub struct Event {
        events: u32,
        data: u64,
    }

    impl Event {
        pub fn token(&self) -> u64 {
            self.data
        }
    }

    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    const PR_SET_TIMERSLACK: i32 = 29;

    unsafe extern "C" {
        fn epoll_pwait2(
            epfd: i32,
            events: *mut Event,
            maxevents: i32,
            timeout: *const Timespec,
            sigmask: *const u8,
        ) -> i32;
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
        fn sched_setaffinity(pid: i32, cpusetsize: usize, mask: *const u64) -> i32;
        fn epoll_create1(flags: i32) -> i32;
        fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut Event) -> i32;
        fn epoll_wait(epfd: i32, events: *mut Event, maxevents: i32, timeout: i32) -> i32;
        fn close(fd: i32) -> i32;
    }

    pub struct Epoll(i32);

    impl Epoll {
        pub fn new() -> io::Result<Epoll> {
            // SAFETY: no pointer arguments.
            let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Epoll(fd))
        }

        /// Watches `fd` for input (level-triggered), reported with `token`.
        pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
            let mut ev = Event {
                events: EPOLLIN,
                data: token,
            };
            // SAFETY: `ev` is a valid epoll_event for the duration of the call.
            if unsafe { epoll_ctl(self.0, EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Waits up to `timeout_ms` for readiness; the number of events filled in.
        pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> usize {
            let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
            // SAFETY: `events` has room for `max` entries.
            let n = unsafe { epoll_wait(self.0, events.as_mut_ptr(), max, timeout_ms) };
            usize::try_from(n).unwrap_or(0) // -1: EINTR and the like, nothing ready
        }

        /// Waits up to `timeout_ns` (epoll_pwait2, Linux ≥ 5.11: ns, not ms).
        pub fn wait_ns(&self, events: &mut [Event], timeout_ns: u64) -> usize {
            let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
            let ts = Timespec {
                tv_sec: (timeout_ns / 1_000_000_000) as i64,
                tv_nsec: (timeout_ns % 1_000_000_000) as i64,
            };
            // SAFETY: `events` has room for `max` entries; `ts` lives across the call; no mask.
            let n =
                unsafe { epoll_pwait2(self.0, events.as_mut_ptr(), max, &ts, std::ptr::null()) };
            usize::try_from(n).unwrap_or(0)
        }
    }

    /// Pins the calling thread to `cpu`. Errors: the kernel refused (no such CPU, cpuset).
    pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
        pin_tid_to_cpu(0, cpu)
    }

    /// Pins thread `tid` (0: the calling thread) to `cpu`.
    pub fn pin_tid_to_cpu(tid: i32, cpu: usize) -> io::Result<()> {
        let mut mask = [0u64; 16]; // cpu_set_t: 1024 bits
        *mask.get_mut(cpu / 64).ok_or(io::ErrorKind::InvalidInput)? |= 1 << (cpu % 64);
        // SAFETY: `mask` is a cpu_set_t-sized bitmask that lives across the call.
        if unsafe { sched_setaffinity(tid, std::mem::size_of_val(&mask), mask.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The calling thread's timer slack (default 50 µs), so short sleeps end on time.
    pub fn set_timer_slack_ns(ns: u64) {
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
        unsafe { prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    }

    impl Drop for Epoll {
        fn drop(&mut self) {
            // SAFETY: our own descriptor, closed once.
            unsafe { close(self.0) };
        }
    }
}

/// Result of one phase over all generator threads, with the relay's CPU over the window.
struct Phase {
    sent: u64,
    recv: u64,
    recv_window: u64,
    other: u64,
    send_errors: u64,
    hist: Hist,
    relay_cpu_s: f64,
    own_cpu_s: f64,
    other_cores: f64,
    /// Busy cores of the whole machine during the window.
    machine_cores: f64,
    rss_end_kb: u64,
}

/// Runs one phase on `groups` (one per thread), measuring `relay_cpu` over the window.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    groups: &mut [Vec<Ep>],
    hists: &mut Vec<Hist>,
    warmup: f64,
    seconds: f64,
    tag: u32,
    gen_cpu: Option<usize>,
    relay_cpu: &dyn Fn() -> u64,
    relay_is_self: bool,
    rss_of: &dyn Fn() -> u64,
) -> Phase {
    let start = now_ns() + 50_000_000;
    let plan = Plan {
        start,
        win_start: start + (warmup * 1e9) as u64,
        win_end: start + ((warmup + seconds) * 1e9) as u64,
        tag,
        gen_cpu,
    };
    let (results, (relay_ns, own_ns, machine_ns, rss)) = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter_mut()
            .zip(hists.drain(..))
            .enumerate()
            .map(|(i, (g, h))| {
                std::thread::Builder::new()
                    .name(format!("gen-{i}"))
                    .spawn_scoped(s, move || generate(g, plan, h, i))
                    .expect("spawn")
            })
            .collect();
        let sleep_until = |t: u64| {
            let n = now_ns();
            if t > n {
                std::thread::sleep(Duration::from_nanos(t - n));
            }
        };
        sleep_until(plan.win_start);
        let (c0, o0, (i0, cpus), t0) = (
            relay_cpu(),
            cpu_ns("self", None),
            machine_idle_ns(),
            now_ns(),
        );
        sleep_until(plan.win_end);
        let (c1, o1, (i1, _), t1) = (
            relay_cpu(),
            cpu_ns("self", None),
            machine_idle_ns(),
            now_ns(),
        );
        let m0 = 0;
        let m1 = (cpus * (t1 - t0)).saturating_sub(i1.saturating_sub(i0));
        let rss = rss_of();
        let res: Vec<GenResult> = handles
            .into_iter()
            .map(|h| h.join().expect("generator"))
            .collect();
        (res, (c1 - c0, o1 - o0, m1.saturating_sub(m0), rss))
    });
    let mut p = Phase {
        sent: 0,
        recv: 0,
        recv_window: 0,
        other: 0,
        send_errors: 0,
        hist: Hist {
            b: vec![0; (FINE + COARSE) as usize],
            n: 0,
            max_us: 0,
        },
        relay_cpu_s: relay_ns as f64 / 1e9,
        own_cpu_s: own_ns as f64 / 1e9,
        other_cores: 0.0,
        machine_cores: machine_ns as f64 / 1e9 / seconds,
        rss_end_kb: rss,
    };
    // The relay's CPU is part of this process's when it runs in-process.
    let ours = if relay_is_self {
        own_ns
    } else {
        own_ns + relay_ns
    };
    p.other_cores = machine_ns.saturating_sub(ours) as f64 / 1e9 / seconds;
    for r in results {
        p.sent += r.sent;
        p.recv += r.recv;
        p.recv_window += r.recv_window;
        p.other += r.other;
        p.send_errors += r.send_errors;
        p.hist.merge(&r.hist);
        let mut h = r.hist;
        h.b.iter_mut().for_each(|x| *x = 0);
        h.n = 0;
        h.max_us = 0;
        hists.push(h);
    }
    p
}

// ---------------------------------------------------------------- rtpengine ng client

fn benc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// An ng command argument: a string or a list of strings.
enum Val {
    S(String),
    L(Vec<String>),
}

fn s(v: impl Into<String>) -> Val {
    Val::S(v.into())
}

/// A bencoded dictionary (keys sorted, as bencode wants).
fn benc_dict(items: &mut [(&str, Val)]) -> Vec<u8> {
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = b"d".to_vec();
    for (k, v) in items.iter() {
        benc_str(&mut out, k.as_bytes());
        match v {
            Val::S(v) => benc_str(&mut out, v.as_bytes()),
            Val::L(l) => {
                out.push(b'l');
                for v in l {
                    benc_str(&mut out, v.as_bytes());
                }
                out.push(b'e');
            }
        }
    }
    out.push(b'e');
    out
}

/// The string value of top-level key `key` in a bencoded dictionary (enough for ng replies).
fn benc_get(b: &[u8], key: &str) -> Option<String> {
    fn skip(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'i' => Some(i + b[i..].iter().position(|&c| c == b'e')? + 1),
            b'l' | b'd' => {
                let mut j = i + 1;
                while *b.get(j)? != b'e' {
                    j = skip(b, j)?;
                }
                Some(j + 1)
            }
            _ => {
                let colon = i + b[i..].iter().position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(&b[i..colon]).ok()?.parse().ok()?;
                Some(colon + 1 + n)
            }
        }
    }
    fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
        let colon = i + b[i..].iter().position(|&c| c == b':')?;
        let n: usize = std::str::from_utf8(&b[i..colon]).ok()?.parse().ok()?;
        Some((b.get(colon + 1..colon + 1 + n)?, colon + 1 + n))
    }
    if *b.first()? != b'd' {
        return None;
    }
    let mut i = 1;
    while *b.get(i)? != b'e' {
        let (k, j) = string(b, i)?;
        if k == key.as_bytes() {
            let (v, _) = string(b, j)?;
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        i = skip(b, j)?;
    }
    None
}

struct Ng {
    sock: UdpSocket,
    to: SocketAddr,
    n: u64,
}

impl Ng {
    fn new(to: SocketAddr) -> Ng {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("ng socket");
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Ng { sock, to, n: 0 }
    }

    /// Sends one command, returns the reply's bencoded dictionary.
    fn cmd(&mut self, mut items: Vec<(&str, Val)>) -> Vec<u8> {
        self.n += 1;
        let cookie = format!("{}_{}", std::process::id(), self.n);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(benc_dict(&mut items));
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            self.sock.send_to(&msg, self.to).expect("ng send");
            // Until the read times out (then send again): the reply with our cookie.
            while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let r = &buf[..n];
                if let Some(sp) = r.iter().position(|&c| c == b' ')
                    && &r[..sp] == cookie.as_bytes()
                {
                    return r[sp + 1..].to_vec();
                }
            }
        }
        panic!("rtpengine at {} does not answer (ng)", self.to);
    }
}

fn sdp(port: u16, sess: usize) -> String {
    format!(
        "v=0\r\no=- {sess} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// The address of the first `m=audio` stream of an SDP body (c= line and m= port).
fn sdp_addr(s: &str) -> Option<SocketAddr> {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    for l in s.lines() {
        if let Some(c) = l.strip_prefix("c=IN IP4 ") {
            ip = ip.or(c.trim().parse().ok());
        }
        if let Some(m) = l.strip_prefix("m=audio ") {
            port = port.or(m.split_whitespace().next()?.parse().ok());
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

// ---------------------------------------------------------------- main

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
    let driver = (a.target == "rvoip").then(|| {
        RelayDriver::start(
            RelayConfig {
                port_min: a.port_min,
                port_max: a.port_max,
                ..RelayConfig::default()
            },
            LOCALHOST,
        )
        .expect("relay driver")
    });
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
        direct.sent,
        direct.recv,
        direct.other,
        direct.hist.q(0.5),
        direct.hist.q(0.99),
        direct.hist.q(0.999),
        direct.hist.max_us,
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
    let call_id = |i: usize| format!("relay-bench-{}-{i}", std::process::id());
    let rss_before = relay_rss();
    let t_setup = Instant::now();
    for c in 0..n {
        let (pa, pb) = (eps[2 * c].addr, eps[2 * c + 1].addr);
        let (to_a_leg, to_b_leg) = if let Some(h) = handle.as_mut() {
            let now = Instant::now();
            let id = h.create(now).expect("relay create");
            let st = |rtp| Stream {
                index: 0,
                rtp,
                rtcp: None,
                rtcp_mux: false,
                clock_rate: 8000,
            };
            h.set_remote(id, Side::Caller, &st(pa)).expect("set_remote");
            h.set_remote(id, Side::Callee, &st(pb)).expect("set_remote");
            h.confirm(now, id);
            (
                SocketAddr::new(LOCALHOST, h.local_port(id, Side::Caller).unwrap()),
                SocketAddr::new(LOCALHOST, h.local_port(id, Side::Callee).unwrap()),
            )
        } else {
            let ng = ng.as_mut().unwrap();
            let cid = call_id(c);
            let common = |cmd: &str, port: u16, sess: usize| -> Vec<(&'static str, Val)> {
                vec![
                    ("command", s(cmd)),
                    ("call-id", s(cid.clone())),
                    ("from-tag", s(format!("a{c}"))),
                    ("sdp", s(sdp(port, sess))),
                    (
                        "replace",
                        Val::L(vec!["origin".into(), "session-connection".into()]),
                    ),
                    ("ICE", s("remove")),
                ]
            };
            let send = |ng: &mut Ng, items: Vec<(&str, Val)>| {
                let r = ng.cmd(items);
                assert_eq!(
                    benc_get(&r, "result").as_deref(),
                    Some("ok"),
                    "rtpengine: {}",
                    String::from_utf8_lossy(&r)
                );
                sdp_addr(&benc_get(&r, "sdp").expect("sdp in reply")).expect("m=audio in reply")
            };
            // The offer's SDP goes to B: its address is where B sends. The answer's goes to A.
            let to_b = send(ng, common("offer", pa.port(), 2 * c + 1));
            let mut answer = common("answer", pb.port(), 2 * c + 2);
            answer.push(("to-tag", s(format!("b{c}"))));
            let to_a = send(ng, answer);
            (to_a, to_b)
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
    let pkts = relay.recv_window as f64;
    let cpu_per_m = relay.relay_cpu_s / pkts * 1e6;
    let loss = 100.0 * (relay.sent.saturating_sub(relay.recv)) as f64 / relay.sent.max(1) as f64;
    let (p50, p99, p999) = (relay.hist.q(0.5), relay.hist.q(0.99), relay.hist.q(0.999));
    let (d50, d99) = (direct.hist.q(0.5), direct.hist.q(0.99));
    println!(
        "relay ({:.1} s window): sent {} received {} (other {}, send errors {}), loss {loss:.4} %, forwarded in window {} ({:.0} pps)",
        a.seconds,
        relay.sent,
        relay.recv,
        relay.other,
        relay.send_errors,
        relay.recv_window,
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
        relay.hist.max_us,
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
            let cid = call_id(c);
            let from = format!("a{c}");
            ng.cmd(vec![
                ("command", s("delete")),
                ("call-id", s(cid)),
                ("from-tag", s(from)),
            ]);
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
            if relay.sent == relay.recv {
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
        relay.sent,
        relay.recv,
        relay.recv_window,
        pkts / a.seconds,
        relay.relay_cpu_s,
        relay.relay_cpu_s / a.seconds * 100.0,
        relay.hist.max_us,
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
