//! SDK accounts and calls located by DNS (RFC 3263), against a real rvoip-server started in
//! process and a private dnsmasq (tests/common/dns.rs) serving the test domains:
//! - `sip:alice@sip.test` over TCP follows NAPTR (`SIP+D2T` only) → SRV → A to the server's real
//!   port; an account-less call goes where the target domain's SRV record points;
//! - failover (RFC 3263 §4.3): SRV priority 10 names a refused port, priority 20 the server:
//!   registered at once (well under Timer F), after trying the refused port first; the same after
//!   a 503 from the first target; with only the refused port, a 503 naming the connect error;
//! - `sips:`: a domain whose NAPTR offers only plaintext is refused when the account is added and
//!   nothing reaches the wire (a `sip:` account of the same domain is the control that does); over
//!   TLS the certificate is checked against the AOR's domain, not the SRV target (RFC 5922);
//! - the synchronous API resolves names from inside tokio runtimes (current-thread and a
//!   multi-thread worker) and from the event handler without panicking or deadlocking.
//!
//! Each test fails without RFC 3263 in the SDK. Checked by making `api::net::resolve` do what
//! the SDK did before (one `to_socket_addrs` A/AAAA lookup of the host on the transport's default
//! port): the test domains are unknown to the system resolver, so every `add_account` and the
//! account-less `make_call` fail with "cannot resolve sip.test: failed to lookup address" and all
//! tests fail at their first `expect` (the sips refusal test at its check of the refusal text "no
//! TLS transport offered", which the old error lacks). With the resolver but failover disabled in
//! the UA core (`Registration::failover_or_fail` reporting at once), the two failover tests end
//! in `Failed { 503 }` at the refused or busy first target.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::dns::{Dnsmasq, Record};
use common::{Party, Ports, serial, start_server};
use rvoip_sdk::api::{
    Account, AccountOptions, ApiError, CallOptions, EndpointConfig, Event, RegistrationState,
    Server, TlsOptions, Transport,
};

const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

/// A registrar for `domain` (users alice and bob) on 127.0.0.1 with the given listeners (port
/// 0) and certificate; relay off. Returns it with its bound ports by transport.
fn server(domain: &str, listen: &[&str], tls: Option<(&Path, &Path)>) -> (Server, Ports) {
    start_server(domain, listen, |cfg| {
        if let Some((cert, key)) = tls {
            cfg.tls_cert = Some(cert.to_path_buf());
            cfg.tls_key = Some(key.to_path_buf());
        }
    })
}

/// An endpoint on 127.0.0.1 that asks `dns` for names.
fn party(dns: &Dnsmasq) -> Party {
    Party::with_config(EndpointConfig {
        stats_interval: None,
        dns_server: Some(dns.addr()),
        ..EndpointConfig::loopback()
    })
}

/// Alice's account at `aor` (server: the AOR's domain) over `transport`.
fn alice(aor: &str, transport: Transport) -> AccountOptions {
    let mut o = AccountOptions::new(aor, "apw");
    o.transport = transport;
    o.expires_s = 300;
    o
}

/// Registers `acc` and waits for the outcome: Ok, or Err((status, reason)).
fn register(p: &mut Party, acc: &Account) -> Result<(), (u16, String)> {
    acc.register().unwrap();
    let id = acc.id();
    p.wait("registration result", |e| match e {
        Event::RegistrationState { account, state } if *account == id => match state {
            RegistrationState::Registered { .. } => Some(Ok(())),
            RegistrationState::Failed { status, reason, .. } => {
                Some(Err((*status, reason.clone())))
            }
            _ => None,
        },
        _ => None,
    })
}

/// A TCP port on 127.0.0.1 where nothing listens: a connect is refused at once.
fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The SDK driver's debug log (connection attempts), captured for the whole test binary.
fn driver_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "rvoip_sdk::driver::tcp=debug",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(w.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The driver log lines about a failed TCP connect to `peer`, in order.
fn connect_failures(log: &Mutex<Vec<u8>>, peer: SocketAddr) -> Vec<String> {
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains("connect failed") && l.contains(&format!("peer={peer}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn naptr_srv_and_a_lead_an_account_to_the_servers_tcp_port() {
    let _s = serial();
    let (_srv, ports) = server("sip.test", &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], None);
    let tcp = ports.port(Transport::Tcp);
    // UDP is preferred by NAPTR but leads nowhere; TCP's service names an SRV owner of its own,
    // so only a resolver that follows NAPTR finds the server (no _sip._tcp.sip.test, no A for
    // sip.test).
    let dns = Dnsmasq::start(&[
        Record::naptr("sip.test", 10, 10, "SIP+D2U", "_sip._udp.nowhere.test"),
        Record::naptr("sip.test", 20, 10, "SIP+D2T", "_sip._tcp.pool.sip.test"),
        Record::srv("_sip._tcp.pool.sip.test", 10, 0, tcp, "pbx.sip.test"),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let mut p = party(&dns);
    let acc =
        p.ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .expect("sip.test resolved");
    assert_eq!(
        acc.server().unwrap(),
        (Transport::Tcp, SocketAddr::from((LOCALHOST, tcp)))
    );
    register(&mut p, &acc).expect("registered over TCP");
    assert!(dns.was_asked("NAPTR", "sip.test"), "{}", dns.log());
    assert!(dns.was_asked("SRV", "_sip._tcp.pool.sip.test"));
    assert!(dns.was_asked("A", "pbx.sip.test"));
    // A TCP account follows only the TCP service.
    assert!(!dns.was_asked("SRV", "_sip._udp.nowhere.test"));
    p.ep.shutdown();
}

#[test]
fn a_call_without_account_goes_where_the_targets_srv_record_points() {
    let _s = serial();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = callee.local_addr().unwrap().port();
    let dns = Dnsmasq::start(&[
        Record::srv("_sip._udp.callee.test", 10, 0, port, "ua.callee.test"),
        Record::a("ua.callee.test", LOCALHOST),
    ]);
    let p = party(&dns);
    let call =
        p.ep.make_call(None, "sip:bob@callee.test", CallOptions::default())
            .expect("callee.test resolved");
    let mut buf = [0u8; 4096];
    let (n, _) = callee.recv_from(&mut buf).expect("the INVITE arrives");
    let invite = String::from_utf8_lossy(&buf[..n]);
    assert!(
        invite.starts_with("INVITE sip:bob@callee.test SIP/2.0"),
        "{invite}"
    );
    let _ = call.hangup();
    p.ep.shutdown();
}

#[test]
fn registration_fails_over_from_a_refused_port_to_the_next_srv_target() {
    let _s = serial();
    let log = driver_log();
    let (_srv, ports) = server("sip.test", &["tcp:127.0.0.1:0"], None);
    let live = ports.port(Transport::Tcp);
    let dead = refused_port();
    let dns = Dnsmasq::start(&[
        Record::srv("_sip._tcp.sip.test", 10, 0, dead, "pbx.sip.test"),
        Record::srv("_sip._tcp.sip.test", 20, 0, live, "pbx.sip.test"),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let mut p = party(&dns);
    let acc =
        p.ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .expect("sip.test resolved");
    // The priority-10 target comes first.
    let dead_addr = SocketAddr::from((LOCALHOST, dead));
    assert_eq!(acc.server().unwrap(), (Transport::Tcp, dead_addr));
    let start = Instant::now();
    register(&mut p, &acc).expect("registered at the second target");
    let took = start.elapsed();
    // Timer F would be 32 s: the refused connect moved on at once.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The REGISTER was tried at the refused port first (the driver reports the refused connect),
    // and the account now uses the live one (later calls go there too).
    let failures = connect_failures(&log, dead_addr);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        acc.server().unwrap(),
        (Transport::Tcp, SocketAddr::from((LOCALHOST, live)))
    );
    assert!(
        !p.seen.iter().any(|e| matches!(
            e,
            Event::RegistrationState {
                state: RegistrationState::Failed { .. },
                ..
            }
        )),
        "a failure was reported: {:?}",
        p.seen
    );
    p.ep.shutdown();
}

/// A stand-in registrar on TCP that answers every REGISTER with 503 and counts them.
struct Busy {
    port: u16,
    registers: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Busy {
    fn start() -> Busy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let registers = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (registers.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let n = n.clone();
                        conns.push(std::thread::spawn(move || answer_503(c, &n)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Busy {
            port,
            registers,
            stop,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads requests from `c` and answers each with 503 (Via, From, To, Call-ID, CSeq copied).
fn answer_503(c: std::net::TcpStream, count: &AtomicUsize) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    loop {
        let mut head = Vec::new();
        let mut body_len = 0usize;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                body_len = v.trim().parse().unwrap_or(0);
            }
            head.push(line);
        }
        let mut body = vec![0u8; body_len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if !head.first().is_some_and(|l| l.starts_with("REGISTER ")) {
            continue;
        }
        count.fetch_add(1, Ordering::SeqCst);
        let mut resp = String::from("SIP/2.0 503 Service Unavailable\r\n");
        for h in &head {
            let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
            if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                resp.push_str(h);
                resp.push_str("\r\n");
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn registration_fails_over_after_a_503_from_the_first_srv_target() {
    let _s = serial();
    let (_srv, ports) = server("sip.test", &["tcp:127.0.0.1:0"], None);
    let live = ports.port(Transport::Tcp);
    let busy = Busy::start();
    let dns = Dnsmasq::start(&[
        Record::srv("_sip._tcp.sip.test", 10, 0, busy.port, "busy.sip.test"),
        Record::srv("_sip._tcp.sip.test", 20, 0, live, "pbx.sip.test"),
        Record::a("busy.sip.test", LOCALHOST),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let mut p = party(&dns);
    let acc =
        p.ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .expect("sip.test resolved");
    let start = Instant::now();
    register(&mut p, &acc).expect("registered at the second target");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The busy target got the first REGISTER (and only that one): priority order, then failover.
    assert_eq!(busy.registers.load(Ordering::SeqCst), 1);
    assert_eq!(
        acc.server().unwrap(),
        (Transport::Tcp, SocketAddr::from((LOCALHOST, live)))
    );
    p.ep.shutdown();
}

#[test]
fn only_a_refused_target_fails_with_a_503_naming_the_connect_error() {
    let _s = serial();
    let dead = refused_port();
    let dns = Dnsmasq::start(&[
        Record::srv("_sip._tcp.sip.test", 10, 0, dead, "pbx.sip.test"),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let mut p = party(&dns);
    let acc =
        p.ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .expect("sip.test resolved");
    let start = Instant::now();
    let (status, reason) = register(&mut p, &acc).expect_err("nothing to register at");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.contains("TCP connect") && reason.contains(&format!("127.0.0.1:{dead}")),
        "{reason}"
    );
    p.ep.shutdown();
}

/// Everything that arrives on `udp`, and the first bytes of every TCP connection on `tcp`,
/// within `d` or until `done` says so (the capture of tests/no_downgrade.rs).
fn capture(
    udp: &UdpSocket,
    tcp: &TcpListener,
    d: Duration,
    done: impl Fn(&[Vec<u8>], &[Vec<u8>]) -> bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    tcp.set_nonblocking(true).unwrap();
    let end = Instant::now() + d;
    let (mut datagrams, mut conns) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !done(&datagrams, &conns) {
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            datagrams.push(buf[..n].to_vec());
        }
        if let Ok((mut c, _)) = tcp.accept() {
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut first = [0u8; 16];
            let n = c.read(&mut first).unwrap_or(0);
            conns.push(first[..n].to_vec());
        }
    }
    (datagrams, conns)
}

#[test]
fn sips_aor_of_a_plaintext_only_domain_is_refused_and_nothing_is_sent() {
    let _s = serial();
    // One port, UDP and TCP, catching whatever comes; every record of the domain points at it.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let dns = Dnsmasq::start(&[
        Record::naptr("plain.test", 10, 10, "SIP+D2T", "_sip._tcp.plain.test"),
        Record::naptr("plain.test", 20, 10, "SIP+D2U", "_sip._udp.plain.test"),
        Record::srv("_sip._tcp.plain.test", 10, 0, port, "pbx.plain.test"),
        Record::srv("_sip._udp.plain.test", 10, 0, port, "pbx.plain.test"),
        // Not offered by NAPTR: a resolver must not guess its way here.
        Record::srv("_sips._tcp.plain.test", 10, 0, port, "pbx.plain.test"),
        Record::a("pbx.plain.test", LOCALHOST),
        Record::a("plain.test", LOCALHOST),
    ]);
    let p = party(&dns);
    let err =
        p.ep.add_account(alice("sips:alice@plain.test", Transport::Tls))
            .expect_err("a sips: AOR of a plaintext-only domain");
    assert!(matches!(err, ApiError::Network(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no TLS transport offered") && text.contains("plain.test"),
        "{text}"
    );
    let (datagrams, conns) = capture(&udp, &tcp, Duration::from_millis(700), |_, _| false);
    assert!(datagrams.is_empty(), "sent over UDP: {datagrams:?}");
    assert!(conns.is_empty(), "connections opened: {conns:?}");
    assert!(!dns.was_asked("SRV", "_sips._tcp.plain.test"));
    // Control: a sip: account of the same domain does reach the capture, in plaintext.
    let acc =
        p.ep.add_account(alice("sip:alice@plain.test", Transport::Tcp))
            .expect("sip: AOR resolved");
    acc.register().unwrap();
    let (_, conns) = capture(&udp, &tcp, common::WAIT, |_, conns| {
        conns.iter().any(|c| c.starts_with(b"REGISTER "))
    });
    assert!(
        conns.iter().any(|c| c.starts_with(b"REGISTER ")),
        "the control REGISTER was not captured: {conns:?}"
    );
    p.ep.shutdown();
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvoip-dns-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test CA and a leaf for `names` it signs, written into `dir`: (cert, key, ca) paths.
fn ca_signed(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "rvoip dns test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let (c, k, a) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca.pem()).unwrap();
    (c, k, a)
}

#[test]
fn sips_aor_registers_over_tls_verified_for_its_domain_not_the_srv_target() {
    let _s = serial();
    let dir = temp_dir("tls");
    // The certificate names the domain only: neither the SRV target nor the IP address.
    let (cert, key, ca) = ca_signed(&dir, &["sip.test"]);
    let (_srv, ports) = server("sip.test", &["tls:127.0.0.1:0"], Some((&cert, &key)));
    let tls = ports.port(Transport::Tls);
    let dns = Dnsmasq::start(&[
        Record::naptr("sip.test", 10, 10, "SIPS+D2T", "_sips._tcp.sip.test"),
        Record::srv("_sips._tcp.sip.test", 10, 0, tls, "pbx.sip.test"),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let mut p = party(&dns);
    let mut o = alice("sips:alice@sip.test", Transport::Tls);
    o.tls = TlsOptions {
        ca_file: Some(ca),
        ..TlsOptions::default()
    };
    let acc = p.ep.add_account(o).expect("sip.test resolved");
    assert_eq!(
        acc.server().unwrap(),
        (Transport::Tls, SocketAddr::from((LOCALHOST, tls)))
    );
    register(&mut p, &acc).expect("registered over TLS, certificate valid for sip.test");
    p.ep.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_resolve_from_inside_tokio_runtimes_and_the_event_handler() {
    let _s = serial();
    let (_srv, ports) = server("sip.test", &["tcp:127.0.0.1:0"], None);
    let tcp = ports.port(Transport::Tcp);
    let dns = Dnsmasq::start(&[
        Record::srv("_sip._tcp.sip.test", 10, 0, tcp, "pbx.sip.test"),
        Record::a("pbx.sip.test", LOCALHOST),
    ]);
    let p = party(&dns);
    let want = (Transport::Tcp, SocketAddr::from((LOCALHOST, tcp)));
    let add = |ep: &rvoip_sdk::api::Endpoint| {
        ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .and_then(|a| a.server())
    };
    // An app's current-thread runtime (blocked while the endpoint's own runtime looks up).
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(current.block_on(async { add(&p.ep) }).unwrap(), want);
    // A worker of an app's multi-thread runtime.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ep = p.ep.clone();
    let r = multi
        .block_on(async move { tokio::spawn(async move { add(&ep) }).await })
        .unwrap();
    assert_eq!(r.unwrap(), want);
    // The event handler: an account added while handling the first account's registration.
    let (tx, rx) = std::sync::mpsc::channel();
    let ep = p.ep.clone();
    let tx = Mutex::new(Some(tx));
    p.ep.set_event_handler(Box::new(move |ev| {
        if let Event::RegistrationState { .. } = ev {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(add(&ep));
            }
        }
    }))
    .unwrap();
    let first =
        p.ep.add_account(alice("sip:alice@sip.test", Transport::Tcp))
            .unwrap();
    first.register().unwrap();
    let r = rx
        .recv_timeout(common::WAIT)
        .expect("the handler added an account");
    assert_eq!(r.unwrap(), want);
    p.ep.shutdown();
}
