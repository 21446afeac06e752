//! ng control-protocol load: offer/answer/delete throughput and latency of one or more media
//! relays reached over rtpengine's "ng" protocol (rtpengine-daemon, the userspace reference, and
//! `rvoip-server --relay-only --ng udp:IP:PORT`), measured in the same invocation so that their
//! ratio means something on a shared, noisy machine.
//!
//! Every call is three ng requests, each sent when the previous one's reply has arrived, as a
//! SIP proxy (Kamailio 5.6's rtpengine module) sends them:
//! 1. `offer`: `supports ["load limit"]`, `sdp` (the caller's G.711 PCMU/PCMA +
//!    telephone-event audio offer, `c=IN IP4 127.0.0.2`), `ICE "remove"`,
//!    `replace ["origin", "session-connection"]`, `flags ["trust-address"]`, `call-id`,
//!    `received-from ["IP4", "127.0.0.1"]`, `from-tag`, `command "offer"` (in this order);
//! 2. `answer`: the same keys with the callee's SDP (`c=IN IP4 127.0.0.3`) and `to-tag` after
//!    `from-tag`;
//! 3. `delete`: `call-id`, `from-tag`, `command "delete"`.
//!
//! No media is sent. Wire format: one UDP datagram `COOKIE SP BENCODED-DICT` per request; the
//! reply starts with the same cookie and a space. One thread and one UDP socket per round keep
//! `--window` calls in flight (each with exactly one request outstanding), so at most that many
//! calls (2 × window port pairs) exist in the relay at any time. Replies are matched by cookie;
//! a reply whose `result` is not `ok` counts as an error of its request (the first
//! `error-reason` is printed). A request without a reply for 2 s is sent again with the same
//! cookie (a retransmission, counted), up to 3 times, then it counts as a timeout. A failed
//! offer or answer fails the call, which is then deleted (a clean-up delete, not measured).
//! A malformed or unknown reply never panics the bench: it is counted (`stray` / error).
//!
//! Rounds alternate between the targets (`--rounds 2`: A, B, A, B) so that the machine's drift
//! touches all of them; each target first gets `--warmup` unmeasured calls. Figures per target
//! and round: calls completed (all three requests answered `ok`) and failed, wall seconds (first
//! send to last reply), requests/s (3 per call) and calls/s, latency (request sent → reply
//! received, from the first transmission, µs) p50/p99/max per request kind, retransmissions,
//! and with `--pid NAME=PID` the server's CPU seconds (all its threads, from
//! `/proc/PID/task/*/schedstat` field 1, ns on CPU) per 1000 calls and in cores; also the
//! bench's own CPU and the rest of the machine's busy cores during the round (`other`), to tell
//! a noisy round. The summary takes per target the round with the highest calls/s and the round
//! with the lowest CPU per call, and prints the ratios of every target to the reference
//! (`rtpengine` if present, else the first target).
//!
//! Lines starting `ng_load ` are machine-readable (`key=value`).
//!
//! `cargo bench -p rvoip-sdk --bench ng_load -- --target rtpengine=127.0.0.1:2232
//! --pid rtpengine=PID --target rvoip=127.0.0.1:2223 --pid rvoip=PID [--calls 20000]
//! [--window 64] [--rounds 2] [--warmup 500]` (`benches/ng_load.sh` starts both relays and runs it).

#[path = "relay_load/sys.rs"]
#[allow(dead_code)]
mod sys;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use sys::{load1, machine_idle_ns};

/// Time without a reply after which a request is sent again (same cookie).
const RETRANSMIT_AFTER: Duration = Duration::from_secs(2);
/// Retransmissions per request before it counts as timed out.
const MAX_RETRANSMITS: u32 = 3;
/// A round is abandoned when no reply at all arrived for this long while requests were out.
const SILENT_ABORT: Duration = Duration::from_secs(10);
/// How long one blocking `recv` waits before the retransmission timers are looked at.
const RECV_TIMEOUT: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// Arguments

/// Command-line options (see the file header).
struct Args {
    /// `(name, ng address)` in the order given.
    targets: Vec<(String, SocketAddr)>,
    /// `(name, pid)`: the process whose CPU time is measured for the target of that name.
    pids: Vec<(String, u32)>,
    /// Calls per measured round.
    calls: usize,
    /// Calls in flight (one outstanding request each).
    window: usize,
    /// Measured rounds per target.
    rounds: usize,
    /// Unmeasured calls per target before the first round.
    warmup: usize,
}

/// Prints `msg` and the usage, exits with status 2.
fn usage(msg: &str) -> ! {
    eprintln!("ng_load: {msg}");
    eprintln!(
        "usage: ng_load --target NAME=IP:PORT [--target ...] [--pid NAME=PID ...] \
         [--calls N=20000] [--window W=64] [--rounds R=2] [--warmup N=500]"
    );
    std::process::exit(2)
}

/// Parses the command line (unknown flags such as cargo's `--bench` are skipped).
fn args() -> Args {
    let mut a = Args {
        targets: Vec::new(),
        pids: Vec::new(),
        calls: 20000,
        window: 64,
        rounds: 2,
        warmup: 500,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let val = argv.get(i + 1).map(String::as_str);
        let num = |v: Option<&str>| -> usize {
            v.and_then(|s| s.parse().ok())
                .unwrap_or_else(|| usage(&format!("{flag} needs a number")))
        };
        let pair = |v: Option<&str>| -> (String, String) {
            v.and_then(|s| s.split_once('='))
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, x)| (n.to_string(), x.to_string()))
                .unwrap_or_else(|| usage(&format!("{flag} needs NAME=VALUE")))
        };
        match flag {
            "--target" => {
                let (n, addr) = pair(val);
                let addr = addr.parse().unwrap_or_else(|_| {
                    usage(&format!("--target {n}=IP:PORT: bad address {addr}"))
                });
                if a.targets.iter().any(|(m, _)| *m == n) {
                    usage(&format!("target {n} given twice"));
                }
                a.targets.push((n, addr));
            }
            "--pid" => {
                let (n, pid) = pair(val);
                let pid = pid
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("--pid {n}=PID: bad pid {pid}")));
                a.pids.push((n, pid));
            }
            "--calls" => a.calls = num(val),
            "--window" => a.window = num(val),
            "--rounds" => a.rounds = num(val),
            "--warmup" => a.warmup = num(val),
            _ => {
                i += 1; // `--bench` and other harness flags from cargo
                continue;
            }
        }
        i += 2;
    }
    if a.targets.is_empty() {
        if argv.iter().all(|f| f.starts_with("--") && !f.contains('='))
            && !argv.iter().any(|f| f == "--bench")
        {
            // `cargo test --all-targets` runs every bench bare: there is no relay to measure.
            println!(
                "ng_load: no --target (run by cargo test?): nothing to measure; see benches/ng_load.sh"
            );
            std::process::exit(0);
        }
        usage("at least one --target NAME=IP:PORT");
    }
    if a.calls == 0 || a.window == 0 || a.rounds == 0 {
        usage("--calls, --window and --rounds must be ≥ 1");
    }
    for (n, _) in &a.pids {
        if !a.targets.iter().any(|(m, _)| m == n) {
            usage(&format!("--pid {n}=...: no target named {n}"));
        }
    }
    a
}

// ---------------------------------------------------------------------------------------------
// /proc readers

/// Summed on-CPU time in ns of every thread of `pid` (`"self"` allowed), from
/// `/proc/PID/task/*/schedstat`; `None` when the process is gone.
fn cpu_ns(pid: &str) -> Option<u64> {
    std::path::Path::new(&format!("/proc/{pid}/task"))
        .exists()
        .then(|| sys::cpu_ns(pid, None))
}

// ---------------------------------------------------------------------------------------------
// Bencode

/// Appends a bencoded byte string (`LEN:BYTES`).
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

/// Appends a bencoded list of byte strings.
fn put_list(out: &mut Vec<u8>, items: &[&[u8]]) {
    out.push(b'l');
    for i in items {
        put_str(out, i);
    }
    out.push(b'e');
}

/// A decoded bencode value borrowing from the datagram.
#[derive(Debug)]
enum Value<'a> {
    Int(#[allow(dead_code)] i64),
    Bytes(&'a [u8]),
    List(#[allow(dead_code)] Vec<Value<'a>>),
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The byte string under `key` of a dictionary.
    fn get_bytes(&self, key: &str) -> Option<&'a [u8]> {
        match self {
            Value::Dict(d) => {
                d.iter()
                    .find(|(k, _)| *k == key.as_bytes())
                    .and_then(|(_, v)| match v {
                        Value::Bytes(b) => Some(*b),
                        _ => None,
                    })
            }
            _ => None,
        }
    }
}

/// Decodes exactly one bencode value filling `b`; `None` on any malformation (never panics).
fn decode(b: &[u8]) -> Option<Value<'_>> {
    let (v, rest) = parse(b, 0)?;
    rest.is_empty().then_some(v)
}

/// Parses one value at the start of `b`; returns it and the rest. Nesting is limited to 32.
fn parse(b: &[u8], depth: u32) -> Option<(Value<'_>, &[u8])> {
    if depth > 32 {
        return None;
    }
    match *b.first()? {
        b'i' => {
            let end = b.iter().position(|&c| c == b'e')?;
            let n = std::str::from_utf8(b.get(1..end)?).ok()?.parse().ok()?;
            Some((Value::Int(n), b.get(end + 1..)?))
        }
        b'l' => {
            let mut rest = b.get(1..)?;
            let mut items = Vec::new();
            while *rest.first()? != b'e' {
                let (v, r) = parse(rest, depth + 1)?;
                items.push(v);
                rest = r;
            }
            Some((Value::List(items), rest.get(1..)?))
        }
        b'd' => {
            let mut rest = b.get(1..)?;
            let mut items = Vec::new();
            while *rest.first()? != b'e' {
                let (k, r) = parse(rest, depth + 1)?;
                let Value::Bytes(k) = k else { return None };
                let (v, r) = parse(r, depth + 1)?;
                items.push((k, v));
                rest = r;
            }
            Some((Value::Dict(items), rest.get(1..)?))
        }
        b'0'..=b'9' => {
            let colon = b.iter().take(12).position(|&c| c == b':')?;
            let len: usize = std::str::from_utf8(b.get(..colon)?).ok()?.parse().ok()?;
            let start = colon + 1;
            let end = start.checked_add(len)?;
            Some((Value::Bytes(b.get(start..end)?), b.get(end..)?))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The three requests of a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Offer = 0,
    Answer = 1,
    Delete = 2,
}

/// The request kinds in call order (index = `Op as usize`).
const OPS: [Op; 3] = [Op::Offer, Op::Answer, Op::Delete];

impl Op {
    /// The ng `command` of this request.
    fn name(self) -> &'static str {
        match self {
            Op::Offer => "offer",
            Op::Answer => "answer",
            Op::Delete => "delete",
        }
    }
}

/// A G.711 + telephone-event audio SDP from `ip`, RTP port `port`.
fn sdp(ip: &str, port: u16, sess: u64) -> String {
    format!(
        "v=0\r\no=- {sess} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Identity of one call on the wire.
struct CallIds {
    call_id: String,
    from_tag: String,
    to_tag: String,
    /// Index of the call within its round (ports and session ids derive from it).
    index: usize,
}

/// The datagram of `op` for `call`, with `cookie`.
fn request(op: Op, call: &CallIds, cookie: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(700);
    m.extend_from_slice(cookie.as_bytes());
    m.push(b' ');
    m.push(b'd');
    if op != Op::Delete {
        let (ip, base) = if op == Op::Offer {
            ("127.0.0.2", 20000)
        } else {
            ("127.0.0.3", 30000)
        };
        let port = base + 2 * (call.index % 4000) as u16;
        put_str(&mut m, b"supports");
        put_list(&mut m, &[b"load limit"]);
        put_str(&mut m, b"sdp");
        put_str(
            &mut m,
            sdp(ip, port, 1_000_000 + call.index as u64).as_bytes(),
        );
        put_str(&mut m, b"ICE");
        put_str(&mut m, b"remove");
        put_str(&mut m, b"replace");
        put_list(&mut m, &[b"origin", b"session-connection"]);
        put_str(&mut m, b"flags");
        put_list(&mut m, &[b"trust-address"]);
    }
    put_str(&mut m, b"call-id");
    put_str(&mut m, call.call_id.as_bytes());
    if op != Op::Delete {
        put_str(&mut m, b"received-from");
        put_list(&mut m, &[b"IP4", b"127.0.0.1"]);
    }
    put_str(&mut m, b"from-tag");
    put_str(&mut m, call.from_tag.as_bytes());
    if op == Op::Answer {
        put_str(&mut m, b"to-tag");
        put_str(&mut m, call.to_tag.as_bytes());
    }
    put_str(&mut m, b"command");
    put_str(&mut m, op.name().as_bytes());
    m.push(b'e');
    m
}

// ---------------------------------------------------------------------------------------------
// One round

/// A call in flight and its one outstanding request.
struct Slot {
    ids: CallIds,
    op: Op,
    cookie: String,
    msg: Vec<u8>,
    first_sent: Instant,
    last_sent: Instant,
    retransmits: u32,
    /// The call already failed; this is the clean-up delete (not measured).
    failed: bool,
}

/// Figures of one round against one target.
#[derive(Default)]
struct RoundResult {
    /// Calls whose offer, answer and delete were all answered `ok`.
    completed: usize,
    /// Calls with an error reply or a timeout.
    failed: usize,
    /// First send to last reply, seconds.
    wall_s: f64,
    /// Latencies (ns) of `ok` replies per request kind (offer, answer, delete), sorted.
    lat_ns: [Vec<u64>; 3],
    /// Error replies per request kind.
    errors: [usize; 3],
    /// Requests without a reply after all retransmissions, per kind.
    timeouts: [usize; 3],
    /// Retransmissions sent.
    retransmits: usize,
    /// Replies with an unknown cookie or none (e.g. a late reply to a retransmitted request).
    stray: usize,
    /// The first `error-reason` seen (or a description of a malformed reply).
    first_error: Option<String>,
    /// The round was abandoned: the target went silent.
    aborted: bool,
    /// Server CPU seconds during the round (`None` without a pid).
    server_cpu_s: Option<f64>,
    /// This bench's CPU seconds during the round.
    self_cpu_s: f64,
    /// Busy cores of the rest of the machine during the round.
    other_cores: f64,
}

impl RoundResult {
    /// Completed calls per wall second.
    fn calls_per_s(&self) -> f64 {
        self.completed as f64 / self.wall_s.max(1e-9)
    }
    /// Server CPU-seconds per 1000 completed calls (`None` without a pid or calls).
    fn cpu_s_per_1k(&self) -> Option<f64> {
        self.server_cpu_s
            .filter(|_| self.completed > 0)
            .map(|c| c * 1000.0 / self.completed as f64)
    }
}

/// Sends the requests of one round: fresh cookies (`TAG.SEQ`), registered for reply matching.
struct Sender<'a> {
    sock: &'a UdpSocket,
    addr: SocketAddr,
    tag: &'a str,
    seq: u64,
    /// Failed `send_to` calls.
    errors: usize,
}

impl Sender<'_> {
    /// Sends `op` of call `ids` with a new cookie and puts it in `slot` (index `idx`).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        slot: &mut Option<Slot>,
        idx: usize,
        ids: CallIds,
        op: Op,
        failed: bool,
        by_cookie: &mut HashMap<String, usize>,
        r: &mut RoundResult,
    ) {
        self.seq += 1;
        let cookie = format!("{}.{}", self.tag, self.seq);
        let msg = request(op, &ids, &cookie);
        if let Err(e) = self.sock.send_to(&msg, self.addr) {
            self.errors += 1;
            if r.first_error.is_none() {
                r.first_error = Some(format!("send: {e}"));
            }
        }
        let now = Instant::now();
        by_cookie.insert(cookie.clone(), idx);
        *slot = Some(Slot {
            ids,
            op,
            cookie,
            msg,
            first_sent: now,
            last_sent: now,
            retransmits: 0,
            failed,
        });
    }
}

/// Nearest-rank percentile `p` (0..1) of sorted `v`, in µs.
fn pct_us(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}

/// Runs `calls` calls against `addr` with `window` in flight; `tag` makes call-ids and cookies
/// unique across rounds (a relay caches replies by cookie).
fn run_round(
    addr: SocketAddr,
    calls: usize,
    window: usize,
    tag: &str,
    pid: Option<u32>,
) -> RoundResult {
    let mut r = RoundResult::default();
    let sock = match UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.set_read_timeout(Some(RECV_TIMEOUT)).map(|_| s))
    {
        Ok(s) => s,
        Err(e) => {
            r.first_error = Some(format!("socket: {e}"));
            r.aborted = true;
            return r;
        }
    };
    // Up to `window` replies (~2-4 kB of buffer each on loopback) can arrive while this thread
    // is descheduled: the default 208 kB receive buffer overflowed at window 64 (counted as
    // retransmissions), so ask for 4 MiB (capped by net.core.rmem_max).
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, 4 << 20);
    let window = window.min(calls);
    let mut slots: Vec<Option<Slot>> = (0..window).map(|_| None).collect();
    let mut by_cookie: HashMap<String, usize> = HashMap::new();
    let mut next_call = 0usize;
    let mut live = 0usize;
    let mut buf = vec![0u8; 65536];

    let pid_s = pid.map(|p| p.to_string());
    let cpu0 = pid_s.as_deref().and_then(cpu_ns);
    let self0 = cpu_ns("self").unwrap_or(0);
    let (idle0, ncpu) = machine_idle_ns();
    let t0 = Instant::now();
    let mut last_reply = t0;
    let mut last_check = t0;

    let mut tx = Sender {
        sock: &sock,
        addr,
        tag,
        seq: 0,
        errors: 0,
    };
    let new_ids = |i: usize| CallIds {
        call_id: format!("ngl-{tag}-{i}@bench"),
        from_tag: format!("ft-{i}"),
        to_tag: format!("tt-{i}"),
        index: i,
    };

    for (idx, slot) in slots.iter_mut().enumerate() {
        tx.send(
            slot,
            idx,
            new_ids(next_call),
            Op::Offer,
            false,
            &mut by_cookie,
            &mut r,
        );
        next_call += 1;
        live += 1;
    }

    // What happens to a call after its outstanding request got `ok` (true) or failed (false):
    // the next request, or the end of the call and the start of the next one.
    enum Next {
        Send(CallIds, Op, bool),
        Done,
    }
    while live > 0 {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let now = Instant::now();
                last_reply = now;
                let d = &buf[..n];
                let Some(sp) = d.iter().position(|&c| c == b' ') else {
                    r.stray += 1;
                    continue;
                };
                let Some(idx) = std::str::from_utf8(&d[..sp])
                    .ok()
                    .and_then(|c| by_cookie.remove(c))
                else {
                    r.stray += 1;
                    continue;
                };
                let Some(s) = slots.get_mut(idx).and_then(Option::take) else {
                    r.stray += 1;
                    continue;
                };
                let body = decode(&d[sp + 1..]);
                let result = body.as_ref().and_then(|v| v.get_bytes("result"));
                let ok = result == Some(b"ok".as_slice());
                let k = s.op as usize;
                if !s.failed {
                    if ok {
                        r.lat_ns[k].push((now - s.first_sent).as_nanos() as u64);
                    } else {
                        r.errors[k] += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(match (&body, result) {
                                (None, _) => format!(
                                    "{}: undecodable reply {:?}",
                                    s.op.name(),
                                    String::from_utf8_lossy(&d[sp + 1..d.len().min(sp + 1 + 120)])
                                ),
                                (Some(v), res) => format!(
                                    "{}: result {:?}, error-reason {:?}",
                                    s.op.name(),
                                    res.map(String::from_utf8_lossy).unwrap_or_default(),
                                    v.get_bytes("error-reason")
                                        .map(String::from_utf8_lossy)
                                        .unwrap_or_default()
                                ),
                            });
                        }
                    }
                }
                let next = match (s.op, ok && !s.failed) {
                    (Op::Offer, true) => Next::Send(s.ids, Op::Answer, false),
                    (Op::Answer, true) => Next::Send(s.ids, Op::Delete, false),
                    (Op::Offer | Op::Answer, false) => Next::Send(s.ids, Op::Delete, true),
                    (Op::Delete, true) => {
                        r.completed += 1;
                        Next::Done
                    }
                    (Op::Delete, false) => {
                        r.failed += 1;
                        Next::Done
                    }
                };
                match next {
                    Next::Send(ids, op, failed) => tx.send(
                        &mut slots[idx],
                        idx,
                        ids,
                        op,
                        failed,
                        &mut by_cookie,
                        &mut r,
                    ),
                    Next::Done if next_call < calls => {
                        tx.send(
                            &mut slots[idx],
                            idx,
                            new_ids(next_call),
                            Op::Offer,
                            false,
                            &mut by_cookie,
                            &mut r,
                        );
                        next_call += 1;
                    }
                    Next::Done => live -= 1,
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // E.g. ECONNREFUSED reported on an unconnected socket: keep going, the timers
                // decide; but do not spin on it.
                if r.first_error.is_none() {
                    r.first_error = Some(format!("recv: {e}"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let now = Instant::now();
        if now - last_check < Duration::from_millis(50) {
            continue;
        }
        last_check = now;
        if now - last_reply > SILENT_ABORT {
            r.aborted = true;
            r.failed += live + (calls - next_call);
            if r.first_error.is_none() {
                r.first_error = Some(format!(
                    "no reply for {} s: abandoned",
                    SILENT_ABORT.as_secs()
                ));
            }
            break;
        }
        for (idx, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot.as_mut() else {
                continue;
            };
            if now - s.last_sent < RETRANSMIT_AFTER {
                continue;
            }
            if s.retransmits < MAX_RETRANSMITS {
                s.retransmits += 1;
                s.last_sent = now;
                r.retransmits += 1;
                if sock.send_to(&s.msg, addr).is_err() {
                    tx.errors += 1;
                }
                continue;
            }
            // Timed out.
            let Some(s) = slot.take() else { continue };
            by_cookie.remove(&s.cookie);
            if !s.failed {
                r.timeouts[s.op as usize] += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(format!(
                        "{}: no reply after {MAX_RETRANSMITS} retransmissions",
                        s.op.name()
                    ));
                }
            }
            if s.op != Op::Delete {
                tx.send(slot, idx, s.ids, Op::Delete, true, &mut by_cookie, &mut r);
            } else {
                r.failed += 1;
                if next_call < calls {
                    tx.send(
                        slot,
                        idx,
                        new_ids(next_call),
                        Op::Offer,
                        false,
                        &mut by_cookie,
                        &mut r,
                    );
                    next_call += 1;
                } else {
                    live -= 1;
                }
            }
        }
    }
    let wall = last_reply.max(t0) - t0;
    r.wall_s = wall.as_secs_f64();
    let elapsed_ns = t0.elapsed().as_nanos() as u64;
    r.self_cpu_s = cpu_ns("self").unwrap_or(0).saturating_sub(self0) as f64 / 1e9;
    let server_ns = match (cpu0, pid_s.as_deref().and_then(cpu_ns)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    r.server_cpu_s = server_ns.map(|n| n as f64 / 1e9);
    let (idle1, _) = machine_idle_ns();
    let busy_ns = (ncpu * elapsed_ns).saturating_sub(idle1.saturating_sub(idle0));
    let mine = (r.self_cpu_s * 1e9) as u64 + server_ns.unwrap_or(0);
    r.other_cores = busy_ns.saturating_sub(mine) as f64 / elapsed_ns.max(1) as f64;
    if tx.errors > 0 {
        eprintln!("  ({} send errors)", tx.errors);
    }
    for v in &mut r.lat_ns {
        v.sort_unstable();
    }
    r
}

/// Sends an ng `ping` and waits up to 2 s for `pong`.
fn ping(addr: SocketAddr, tag: &str) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let cookie = format!("{tag}.ping");
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(b"d7:command4:pinge");
    let mut buf = vec![0u8; 65536];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        sock.send_to(&msg, addr).map_err(|e| e.to_string())?;
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let d = &buf[..n];
            let Some(rest) = d
                .strip_prefix(cookie.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            else {
                continue;
            };
            return match decode(rest).as_ref().and_then(|v| v.get_bytes("result")) {
                Some(b"pong") => Ok(()),
                other => Err(format!(
                    "ping answered {:?}",
                    other.map(String::from_utf8_lossy)
                )),
            };
        }
    }
    Err("no reply to ping within 2 s".into())
}

/// `v` with `prec` decimals, or `n/a` when absent or not finite.
fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// Prints a round's figures: a human-readable block and one `ng_load ...` line.
fn report(name: &str, round: usize, r: &RoundResult) {
    let ops = r.completed as f64 * 3.0 / r.wall_s.max(1e-9);
    println!(
        "{name} round {round}: {} calls ok, {} failed{}, {:.3} s, {:.0} requests/s, {:.0} calls/s, \
         {} retransmissions, {} stray replies, load1 {}",
        r.completed,
        r.failed,
        if r.aborted { " (ABANDONED)" } else { "" },
        r.wall_s,
        ops,
        r.calls_per_s(),
        r.retransmits,
        r.stray,
        load1()
    );
    for op in OPS {
        let v = &r.lat_ns[op as usize];
        println!(
            "  {:<6} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs  ({} ok, {} errors, {} timeouts)",
            op.name(),
            pct_us(v, 0.50),
            pct_us(v, 0.99),
            v.last().map_or(f64::NAN, |&x| x as f64 / 1000.0),
            v.len(),
            r.errors[op as usize],
            r.timeouts[op as usize]
        );
    }
    println!(
        "  server CPU {} s = {} CPU-s per 1000 calls ({} cores); bench CPU {:.3} s ({:.2} cores); other {:.2} cores",
        fmt_opt(r.server_cpu_s, 3),
        fmt_opt(r.cpu_s_per_1k(), 4),
        fmt_opt(r.server_cpu_s.map(|c| c / r.wall_s.max(1e-9)), 2),
        r.self_cpu_s,
        r.self_cpu_s / r.wall_s.max(1e-9),
        r.other_cores
    );
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
    let mut line = format!(
        "ng_load target={name} round={round} calls={} failed={} aborted={} wall_s={:.4} ops_per_s={:.1} calls_per_s={:.1} retransmits={} stray={}",
        r.completed,
        r.failed,
        r.aborted as u8,
        r.wall_s,
        ops,
        r.calls_per_s(),
        r.retransmits,
        r.stray
    );
    for op in OPS {
        let v = &r.lat_ns[op as usize];
        let n = op.name();
        line += &format!(
            " {n}_p50_us={:.1} {n}_p99_us={:.1} {n}_max_us={:.1} {n}_errors={} {n}_timeouts={}",
            pct_us(v, 0.5),
            pct_us(v, 0.99),
            v.last().map_or(f64::NAN, |&x| x as f64 / 1000.0),
            r.errors[op as usize],
            r.timeouts[op as usize]
        );
    }
    line += &format!(
        " server_cpu_s={} cpu_s_per_1k_calls={} bench_cpu_s={:.4} other_cores={:.2}",
        fmt_opt(r.server_cpu_s, 4),
        fmt_opt(r.cpu_s_per_1k(), 5),
        r.self_cpu_s,
        r.other_cores
    );
    println!("{line}");
}

/// Warm-up, alternating rounds, per-round reports, then the summary and ratios.
fn main() {
    let a = args();
    let nonce = (std::process::id() as u64) << 20
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64 & 0xfffff);
    let nonce = format!("{:x}", nonce & 0xffff_ffff);
    let pid_of = |n: &str| a.pids.iter().find(|(m, _)| m == n).map(|&(_, p)| p);
    println!(
        "=== ng load: {} calls × {} rounds per target, window {}, warm-up {} calls, {} CPUs, load1 {} ===",
        a.calls,
        a.rounds,
        a.window,
        a.warmup,
        machine_idle_ns().1,
        load1()
    );
    // Reachability and warm-up.
    let mut live: Vec<bool> = Vec::new();
    for (ti, (name, addr)) in a.targets.iter().enumerate() {
        if let Some(p) = pid_of(name) {
            if cpu_ns(&p.to_string()).is_none() {
                println!("{name}: pid {p} not found: no CPU figures");
            }
        }
        match ping(*addr, &format!("{nonce}w{ti}")) {
            Ok(()) => {
                live.push(true);
                if a.warmup > 0 {
                    let r = run_round(*addr, a.warmup, a.window, &format!("{nonce}w{ti}"), None);
                    println!(
                        "{name} ({addr}): warm-up {} calls ok, {} failed, {:.0} calls/s{}",
                        r.completed,
                        r.failed,
                        r.calls_per_s(),
                        r.first_error
                            .as_ref()
                            .map(|e| format!("; first error: {e}"))
                            .unwrap_or_default()
                    );
                } else {
                    println!("{name} ({addr}): pong");
                }
            }
            Err(e) => {
                println!("{name} ({addr}): {e}; skipped");
                live.push(false);
            }
        }
    }
    let mut results: Vec<Vec<RoundResult>> = a.targets.iter().map(|_| Vec::new()).collect();
    for round in 1..=a.rounds {
        for (ti, (name, addr)) in a.targets.iter().enumerate() {
            if !live[ti] {
                continue;
            }
            let r = run_round(
                *addr,
                a.calls,
                a.window,
                &format!("{nonce}r{round}t{ti}"),
                pid_of(name),
            );
            report(name, round, &r);
            results[ti].push(r);
        }
    }

    // Summary: per target the round with the most calls/s and the one with the least CPU/call.
    println!();
    println!(
        "=== summary: {} calls per round, window {}; best of {} rounds (calls/s: highest; CPU: lowest per call) ===",
        a.calls, a.window, a.rounds
    );
    println!(
        "{:<10} {:>9} {:>10} {:>7} {:>17} {:>17} {:>17} {:>13}",
        "target",
        "calls/s",
        "requests/s",
        "failed",
        "offer p50/p99 µs",
        "answer p50/p99 µs",
        "delete p50/p99 µs",
        "CPU-s/1k calls"
    );
    let mut best: Vec<Option<(f64, Option<f64>)>> = Vec::new();
    for (ti, (name, _)) in a.targets.iter().enumerate() {
        let rs = &results[ti];
        let Some(b) = rs
            .iter()
            .filter(|r| !r.aborted)
            .max_by(|x, y| x.calls_per_s().total_cmp(&y.calls_per_s()))
        else {
            println!("{name:<10} (no complete round)");
            best.push(None);
            continue;
        };
        let cpu = rs
            .iter()
            .filter_map(RoundResult::cpu_s_per_1k)
            .min_by(f64::total_cmp);
        let pp = |k: usize| {
            format!(
                "{:.0}/{:.0}",
                pct_us(&b.lat_ns[k], 0.5),
                pct_us(&b.lat_ns[k], 0.99)
            )
        };
        let failed: usize = rs.iter().map(|r| r.failed).sum();
        println!(
            "{name:<10} {:>9.0} {:>10.0} {:>7} {:>17} {:>17} {:>17} {:>13}",
            b.calls_per_s(),
            b.calls_per_s() * 3.0,
            failed,
            pp(0),
            pp(1),
            pp(2),
            fmt_opt(cpu, 4)
        );
        println!(
            "ng_load_summary target={name} calls_per_s={:.1} ops_per_s={:.1} failed_all_rounds={failed} offer_p50_us={:.1} offer_p99_us={:.1} answer_p50_us={:.1} answer_p99_us={:.1} delete_p50_us={:.1} delete_p99_us={:.1} cpu_s_per_1k_calls={}",
            b.calls_per_s(),
            b.calls_per_s() * 3.0,
            pct_us(&b.lat_ns[0], 0.5),
            pct_us(&b.lat_ns[0], 0.99),
            pct_us(&b.lat_ns[1], 0.5),
            pct_us(&b.lat_ns[1], 0.99),
            pct_us(&b.lat_ns[2], 0.5),
            pct_us(&b.lat_ns[2], 0.99),
            fmt_opt(cpu, 5)
        );
        best.push(Some((b.calls_per_s(), cpu)));
    }
    let reference = a
        .targets
        .iter()
        .position(|(n, _)| n == "rtpengine")
        .unwrap_or(0);
    let ref_name = &a.targets[reference].0;
    for (ti, (name, _)) in a.targets.iter().enumerate() {
        if ti == reference {
            continue;
        }
        let (Some(x), Some(r)) = (best[ti], best[reference]) else {
            println!("ratio {name}/{ref_name}: n/a");
            continue;
        };
        let cpu = match (x.1, r.1) {
            (Some(c), Some(d)) if d > 0.0 => Some(c / d),
            _ => None,
        };
        println!(
            "ratio {name}/{ref_name}: calls/s {:.2} (higher is better), CPU per call {} (lower is better)",
            x.0 / r.0.max(1e-9),
            fmt_opt(cpu, 2)
        );
        println!(
            "ng_load_ratio target={name} reference={ref_name} calls_per_s_ratio={:.3} cpu_per_call_ratio={}",
            x.0 / r.0.max(1e-9),
            fmt_opt(cpu, 3)
        );
    }
}
