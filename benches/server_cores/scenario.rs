//! The in-process load of the server-cores benchmarks (issue 16 point 7): whole datagrams fed
//! to the server cores, no sockets, so the load generator needs no core of its own.
//!
//! The traffic is a mix of flows between 1000 users, all registered (and replicated) before
//! the timed part:
//! - **registration**: REGISTER → 401, then REGISTER with digest credentials → 200 (a new
//!   Call-ID, so the binding is refreshed and replicated). Nonces are minted beforehand with the
//!   server's secret and the answers computed then: no MD5 on the client side while timed.
//! - **call** through the proxy between two registered users: INVITE (SDP) → 100 + INVITE to the
//!   callee; the callee's 180 and 200 (SDP) → forwarded to the caller; ACK and BYE along the
//!   Record-Route → forwarded; the callee's 200 to BYE → forwarded. The callee's responses are
//!   made from the forwarded requests by copying header lines (no parse).
//!
//! Every message goes through parse, transaction layer, registrar or proxy, and serialisation
//! (`poll_transmit` drained). With N workers each thread owns a `ServerCore`: a flow's first
//! datagram arrives at worker `flow % N` (as `SO_REUSEPORT` spreads sources), which scans its
//! Call-ID ([`worker_for`]) and hands the flow to its owner over a channel; the owner feeds the
//! rest of the flow (its own socket, in the server). Binding changes are replicated to the other
//! workers after every 16 flows, as the driver does after each batch. Virtual time advances by
//! 500 µs per message over the whole server (transactions then time out as under a steady load).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rvoip_sdk::auth::{Authenticator, UserDb, authorization_value};
use rvoip_sdk::server::config::ServerConfig;
use rvoip_sdk::server::core::{ServerCore, Stats};
use rvoip_sdk::server::local::LocalIdentity;
use rvoip_sdk::server::location::BindingChange;
use rvoip_sdk::server::shard::{sum_stats, worker_for};
use rvoip_sdk::sip::msg::{Auth, ByteString};
use rvoip_sdk::sip::transaction::Transport;

/// The digest nonce secret every core and the client share.
const SECRET: [u8; 32] = [42; 32];
/// Wall-clock seconds at the start (nonce time stamps).
const T0_UNIX: u64 = 1_800_000_000;
const DOMAIN: &str = "example.com";
const HOST: &str = "127.0.0.1";
/// Virtual time per message over the whole server (each of N workers: N × this).
const STEP: Duration = Duration::from_micros(500);
/// Flows between two replications.
const REPLICATE_EVERY: usize = 16;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.9.0.1\r\ns=-\r\nc=IN IP4 10.9.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// One flow of the load.
enum Flow {
    Register {
        from: SocketAddr,
        first: Bytes,
        authorized: Bytes,
    },
    Call {
        caller: SocketAddr,
        callee: SocketAddr,
        invite: Bytes,
        ack: Bytes,
        bye: Bytes,
        tag: String,
        contact: String,
    },
}

impl Flow {
    fn first(&self) -> &Bytes {
        match self {
            Flow::Register { first, .. } => first,
            Flow::Call { invite, .. } => invite,
        }
    }
}

/// The prepared traffic, shared by every run.
pub struct Load {
    pre: Vec<Flow>,
    flows: Vec<Flow>,
    /// Inbound messages of the timed flows.
    pub messages: u64,
    /// Registration flows among them.
    pub registrations: usize,
    /// Call flows among them.
    pub calls: usize,
}

/// What one run measured.
pub struct Outcome {
    pub workers: usize,
    /// Inbound messages the cores handled while timed.
    pub messages: u64,
    pub elapsed: Duration,
    /// CPU time the worker threads used while timed (CLOCK_THREAD_CPUTIME_ID, summed).
    pub cpu: Duration,
    /// Flows that did not complete as expected (0 in a sound run).
    pub failed: usize,
    /// Flows handed to another worker after the Call-ID scan.
    pub handed_over: usize,
    /// The cores' counters, summed.
    pub stats: Stats,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages per CPU-second of the worker threads: what one core does when it is not shared.
    pub fn per_cpu_second(&self) -> f64 {
        self.messages as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn user_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250 + 1) as u8], 5060))
}

fn register(i: usize, call_id: &str, auth: &Authenticator, cnonce: usize) -> Flow {
    let user = format!("u{i:04}");
    let from = user_addr(i);
    let branch = call_id.replace('@', ".");
    let msg = |cseq: u32, extra: &str| {
        Bytes::from(format!(
            "REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{HOST}>;tag=f{cnonce}\r\nTo: <sip:{user}@{HOST}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{from}>\r\n{extra}\
             Expires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let [_, md5] = auth.challenges(T0_UNIX, false);
    let challenge = Auth::parse(&ByteString::from(md5)).expect("own challenge parses");
    let authz = authorization_value(
        &challenge,
        &user,
        &format!("pw{i}"),
        "REGISTER",
        &format!("sip:{HOST}"),
        1,
        &format!("c{cnonce:08x}"),
    )
    .expect("digest answer");
    Flow::Register {
        from,
        first: msg(1, ""),
        authorized: msg(2, &format!("Authorization: {authz}\r\n")),
    }
}

fn call(k: usize, a: usize, b: usize, record_route: &str) -> Flow {
    let (caller, callee) = (user_addr(a), user_addr(b));
    let (ua, ub) = (format!("u{a:04}"), format!("u{b:04}"));
    let call_id = format!("c{k}x{a}@bench");
    let tag = format!("t{k}");
    let contact = format!("{ub}@{callee}");
    let head = |method: &str, uri: &str, cseq: u32, branch: &str, to_tag: &str, extra: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{ua}@{HOST}>;tag=a{k}\r\nTo: <sip:{ub}@{HOST}>{to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}"
        )
    };
    let invite = head(
        "INVITE",
        &format!("sip:{ub}@{HOST}"),
        1,
        &format!("i{k}"),
        "",
        &format!(
            "Contact: <sip:{ua}@{caller}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    );
    let to_tag = format!(";tag={tag}");
    let route = format!("Route: {record_route}\r\nContent-Length: 0\r\n\r\n");
    let ack = head(
        "ACK",
        &format!("sip:{contact}"),
        1,
        &format!("a{k}"),
        &to_tag,
        &route,
    );
    let bye = head(
        "BYE",
        &format!("sip:{contact}"),
        2,
        &format!("b{k}"),
        &to_tag,
        &route,
    );
    Flow::Call {
        caller,
        callee,
        invite: Bytes::from(invite),
        ack: Bytes::from(ack),
        bye: Bytes::from(bye),
        tag,
        contact,
    }
}

/// A UAS response to `req` (a forwarded request's bytes): its Via, From, To (with `tag` unless
/// it has one), Call-ID, CSeq and Record-Route lines copied, a Contact, and `body` as SDP.
fn respond(req: &[u8], status: &str, tag: &str, contact: &str, body: &str) -> Bytes {
    let mut out = Vec::with_capacity(req.len() + body.len());
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut lines = req.split(|b| *b == b'\n').skip(1);
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii().to_ascii_lowercase();
        match name.as_slice() {
            b"via" | b"v" | b"from" | b"f" | b"call-id" | b"i" | b"cseq" | b"record-route" => {
                out.extend_from_slice(line);
            }
            b"to" | b"t" => {
                out.extend_from_slice(line);
                if !line.windows(5).any(|w| w == b";tag=") {
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(tag.as_bytes());
                }
            }
            _ => continue,
        }
        out.extend_from_slice(b"\r\n");
    }
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    out.extend_from_slice(
        format!(
            "Contact: <sip:{contact}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Bytes::from(out)
}

fn config() -> ServerConfig {
    ServerConfig {
        domain: Some(DOMAIN.into()),
        invite_auth: false,
        presence: false,
        offline_messages: false,
        conference_prefix: String::new(),
        ..ServerConfig::default()
    }
}

fn new_core(users: usize, now: Instant) -> ServerCore {
    let local = LocalIdentity::new(
        &[(
            Transport::Udp,
            format!("{HOST}:5060").parse().expect("address"),
        )],
        HOST,
        DOMAIN,
        &[],
    );
    let list: Vec<(String, String)> = (0..users)
        .map(|i| (format!("u{i:04}"), format!("pw{i}")))
        .collect();
    let mut core = ServerCore::new(&config(), local, &list, now, T0_UNIX);
    core.set_nonce_secret(SECRET);
    core
}

impl Load {
    /// `users` users (at least 2, all registered first) and `flows` timed flows, one
    /// registration per `calls_per_registration` calls. The nonces are minted for the start:
    /// keep the virtual time of a run (500 µs × messages) under the 300 s nonce lifetime, i.e.
    /// `flows` under about 150 000.
    pub fn new(users: usize, flows: usize, calls_per_registration: usize) -> Load {
        let auth = Authenticator::with_secret(DOMAIN, UserDb::new(DOMAIN), false, SECRET);
        let pre: Vec<Flow> = (0..users)
            .map(|i| register(i, &format!("p{i}@bench"), &auth, i))
            .collect();
        let record_route = learn_record_route(users, &pre);
        let (mut registrations, mut calls) = (0, 0);
        let flows: Vec<Flow> = (0..flows)
            .map(|k| {
                if k % (calls_per_registration + 1) == 0 {
                    registrations += 1;
                    let i = (k * 7) % users;
                    register(i, &format!("r{k}@bench"), &auth, users + k)
                } else {
                    calls += 1;
                    let a = (k * 13) % users;
                    let b = (a + 1 + (k * 31) % (users - 1)) % users;
                    call(k, a, b, &record_route)
                }
            })
            .collect();
        Load {
            pre,
            flows,
            messages: (registrations * 2 + calls * 6) as u64,
            registrations,
            calls,
        }
    }
}

/// The Record-Route value the proxy inserts (one call through a scratch core).
fn learn_record_route(users: usize, pre: &[Flow]) -> String {
    let mut sim = Sim::new(0, 1, new_core(users, Instant::now()));
    for f in pre.iter().take(2) {
        sim.run(f);
    }
    let (Some(Flow::Register { .. }), Some(Flow::Register { from, .. })) =
        (pre.first(), pre.get(1))
    else {
        return format!("<sip:{HOST};lr>");
    };
    let Flow::Call { invite, caller, .. } = call(0, 0, 1, "") else {
        return format!("<sip:{HOST};lr>");
    };
    let out = sim.feed(&invite, caller);
    let fwd = out
        .iter()
        .find(|(d, b)| d == from && b.starts_with(b"INVITE"))
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .unwrap_or_default();
    fwd.lines()
        .find_map(|l| l.strip_prefix("Record-Route:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| format!("<sip:{HOST};lr>"))
}

/// One worker's core and virtual clock.
struct Sim {
    me: usize,
    n: usize,
    core: ServerCore,
    now: Instant,
    step: Duration,
    handled: u64,
}

impl Sim {
    fn new(me: usize, n: usize, core: ServerCore) -> Sim {
        Sim {
            me,
            n,
            now: Instant::now(),
            core,
            step: STEP * n as u32,
            handled: 0,
        }
    }

    /// Feeds one datagram as the driver does (copied out of the receive buffer) and returns
    /// what the core transmits.
    fn feed(&mut self, data: &Bytes, from: SocketAddr) -> Vec<(SocketAddr, Bytes)> {
        self.now += self.step;
        self.handled += 1;
        self.core
            .handle_datagram(self.now, Bytes::copy_from_slice(data), from, Transport::Udp);
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
        }
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            out.push((t.dest, t.bytes));
        }
        out
    }

    /// Runs one flow to its end; whether every expected message came out.
    fn run(&mut self, f: &Flow) -> bool {
        let to = |out: &[(SocketAddr, Bytes)], d: SocketAddr, start: &[u8]| {
            out.iter()
                .find(|(a, b)| *a == d && b.starts_with(start))
                .map(|(_, b)| b.clone())
        };
        match f {
            Flow::Register {
                from,
                first,
                authorized,
            } => {
                let a = self.feed(first, *from);
                let b = self.feed(authorized, *from);
                if std::env::var_os("SERVER_CORES_DEBUG").is_some() {
                    for (d, m) in a.iter().chain(&b) {
                        eprintln!("-> {d}\n{}", String::from_utf8_lossy(m));
                    }
                }
                to(&a, *from, b"SIP/2.0 401").is_some() && to(&b, *from, b"SIP/2.0 200").is_some()
            }
            Flow::Call {
                caller,
                callee,
                invite,
                ack,
                bye,
                tag,
                contact,
            } => {
                let out = self.feed(invite, *caller);
                let Some(fwd) = to(&out, *callee, b"INVITE") else {
                    return false;
                };
                self.feed(&respond(&fwd, "180 Ringing", tag, contact, ""), *callee);
                let ok = respond(&fwd, "200 OK", tag, contact, SDP);
                let out = self.feed(&ok, *callee);
                if to(&out, *caller, b"SIP/2.0 200").is_none() {
                    return false;
                }
                let out = self.feed(ack, *caller);
                if to(&out, *callee, b"ACK").is_none() {
                    return false;
                }
                let out = self.feed(bye, *caller);
                let Some(fwd) = to(&out, *callee, b"BYE") else {
                    return false;
                };
                let out = self.feed(&respond(&fwd, "200 OK", tag, contact, ""), *callee);
                to(&out, *caller, b"SIP/2.0 200").is_some()
            }
        }
    }

    /// Sends this worker's binding changes to the others.
    fn replicate(&mut self, peers: &[mpsc::Sender<Msg>]) {
        if self.n < 2 {
            return;
        }
        let changes = self.core.take_binding_changes(self.me, self.n);
        if changes.is_empty() {
            return;
        }
        let shared: Arc<[BindingChange]> = changes.into();
        for (i, p) in peers.iter().enumerate() {
            if i != self.me {
                let _ = p.send(Msg::Changes(shared.clone()));
            }
        }
    }
}

/// What workers send each other.
enum Msg {
    /// A flow whose Call-ID this worker owns (by index into the timed flows).
    Flow(usize),
    /// Binding changes made by another worker.
    Changes(Arc<[BindingChange]>),
}

/// Runs the timed flows of `load` on `workers` threads, each owning a core (see the module
/// documentation), after registering every user.
pub fn run(load: &Load, workers: usize) -> Outcome {
    let n = workers.max(1);
    let users = load.pre.len();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Msg>()).unzip();
    let ready = Barrier::new(n);
    let go = Barrier::new(n + 1);
    let done = AtomicUsize::new(0);
    let total = load.flows.len();
    let (start, results) = std::thread::scope(|s| {
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(me, rx)| {
                let (txs, ready, go, done) = (txs.clone(), &ready, &go, &done);
                s.spawn(move || {
                    let mut sim = Sim::new(me, n, new_core(users, Instant::now()));
                    if n > 1 {
                        sim.core.record_binding_changes();
                    }
                    // Untimed: each worker registers the users whose Call-ID it owns, and
                    // every replica gets every binding.
                    let mut failed = 0;
                    for f in &load.pre {
                        let owner = match f {
                            Flow::Register { first, .. } => worker_for(first, n),
                            Flow::Call { .. } => 0,
                        };
                        if owner == me && !sim.run(f) {
                            failed += 1;
                        }
                    }
                    sim.replicate(&txs);
                    ready.wait();
                    while let Ok(m) = rx.try_recv() {
                        if let Msg::Changes(c) = m {
                            let now = sim.now;
                            sim.core.apply_binding_changes(now, &c);
                        }
                    }
                    let pre_stats = sim.core.stats;
                    let pre_handled = sim.handled;
                    go.wait();
                    // Timed.
                    let cpu_start = thread_cpu();
                    let (mut handed_over, mut since) = (0, 0);
                    let mut handle = |sim: &mut Sim, m: Msg, failed: &mut usize| match m {
                        Msg::Flow(k) => {
                            if !sim.run(&load.flows[k]) {
                                *failed += 1;
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                            since += 1;
                            if since >= REPLICATE_EVERY {
                                since = 0;
                                sim.replicate(&txs);
                            }
                        }
                        Msg::Changes(c) => {
                            let now = sim.now;
                            sim.core.apply_binding_changes(now, &c);
                        }
                    };
                    for k in (me..total).step_by(n) {
                        while let Ok(m) = rx.try_recv() {
                            handle(&mut sim, m, &mut failed);
                        }
                        let owner = worker_for(load.flows[k].first(), n);
                        if owner == me {
                            handle(&mut sim, Msg::Flow(k), &mut failed);
                        } else {
                            handed_over += 1;
                            let _ = txs[owner].send(Msg::Flow(k));
                        }
                    }
                    while done.load(Ordering::Relaxed) < total {
                        match rx.recv_timeout(Duration::from_micros(200)) {
                            Ok(m) => handle(&mut sim, m, &mut failed),
                            Err(_) => continue,
                        }
                    }
                    let end = Instant::now();
                    let cpu = thread_cpu().saturating_sub(cpu_start);
                    sim.replicate(&txs);
                    let mut stats = sim.core.stats;
                    // Only the timed part's counters.
                    stats.registrations -= pre_stats.registrations;
                    stats.challenges -= pre_stats.challenges;
                    (
                        end,
                        sim.handled - pre_handled,
                        failed,
                        handed_over,
                        stats,
                        cpu,
                    )
                })
            })
            .collect();
        go.wait();
        let start = Instant::now();
        let results: Vec<_> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        (start, results)
    });
    let end = results.iter().map(|r| r.0).max().unwrap_or(start);
    Outcome {
        workers: n,
        messages: results.iter().map(|r| r.1).sum(),
        elapsed: end.saturating_duration_since(start),
        cpu: results.iter().map(|r| r.5).sum(),
        failed: results.iter().map(|r| r.2).sum(),
        handed_over: results.iter().map(|r| r.3).sum(),
        stats: sum_stats(results.iter().map(|r| &r.4)),
    }
}

/// The 1-minute load average (`/proc/loadavg`), for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
