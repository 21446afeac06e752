//! The paced RTP generator / receiver (one thread per group of endpoints) and the phase
//! runner that measures the relay's CPU over its window.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::epoll;
use crate::hist::{COARSE, FINE, Hist};
use crate::sys::{cpu_ns, machine_idle_ns, now_ns};

pub const FRAME: Duration = Duration::from_millis(20);
const PKT_LEN: usize = 172;
/// The generator's shortest sleep between sends, in ns.
const QUANTUM_NS: u64 = 100_000;

/// One endpoint (A or B side of a call).
pub struct Ep {
    /// Endpoint number: call c has A = 2c, B = 2c + 1.
    pub idx: usize,
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    /// Where it sends: its relay port, or the other endpoint (direct phase).
    pub dest: SocketAddr,
    pub ssrc: u32,
    /// The SSRC it expects to receive (the other endpoint's).
    pub peer_ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    /// Offset of its frames on the 20 ms grid, in ns.
    pub phase_ns: u64,
}

/// What one generator thread saw in one phase, or (in `Phase`) all of them.
pub struct Traffic {
    pub sent: u64,
    pub recv: u64,
    /// Received with a receive time inside the measured window.
    pub recv_window: u64,
    /// Received packets not of this phase or malformed / wrong SSRC.
    pub other: u64,
    pub send_errors: u64,
    pub hist: Hist,
}

impl Traffic {
    fn new(hist: Hist) -> Traffic {
        Traffic {
            sent: 0,
            recv: 0,
            recv_window: 0,
            other: 0,
            send_errors: 0,
            hist,
        }
    }

    fn add(&mut self, o: &Traffic) {
        self.sent += o.sent;
        self.recv += o.recv;
        self.recv_window += o.recv_window;
        self.other += o.other;
        self.send_errors += o.send_errors;
        self.hist.merge(&o.hist);
    }
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
fn generate(eps: &mut [Ep], plan: Plan, mut hist: Hist, thread: usize) -> Traffic {
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
    let mut r = Traffic::new(Hist {
        b: Vec::new(),
        n: 0,
        max_us: 0,
    });
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
    r: &mut Traffic,
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

/// Result of one phase over all generator threads, with the relay's CPU over the window.
pub struct Phase {
    pub traffic: Traffic,
    pub relay_cpu_s: f64,
    pub own_cpu_s: f64,
    pub other_cores: f64,
    /// Busy cores of the whole machine during the window.
    pub machine_cores: f64,
    pub rss_end_kb: u64,
}

/// Runs one phase on `groups` (one per thread), measuring `relay_cpu` over the window.
#[allow(clippy::too_many_arguments)]
pub fn run_phase(
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
        let res: Vec<Traffic> = handles
            .into_iter()
            .map(|h| h.join().expect("generator"))
            .collect();
        (res, (c1 - c0, o1 - o0, m1.saturating_sub(m0), rss))
    });
    let mut p = Phase {
        traffic: Traffic::new(Hist {
            b: vec![0; (FINE + COARSE) as usize],
            n: 0,
            max_us: 0,
        }),
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
        p.traffic.add(&r);
        let mut h = r.hist;
        h.b.iter_mut().for_each(|x| *x = 0);
        h.n = 0;
        h.max_us = 0;
        hists.push(h);
    }
    p
}
