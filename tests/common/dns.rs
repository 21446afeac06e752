//! A private DNS server for tests: `dnsmasq` (Debian `dnsmasq-base`, installed by
//! `tests/run-all.sh`) on 127.0.0.1 with a free port (UDP and TCP), answering only the records a
//! test gives (NAPTR, SRV, A/AAAA) and NXDOMAIN for every other name; killed on drop.
//!
//! ```ignore
//! let dns = Dnsmasq::start(&[
//!     Record::naptr("sip.test", 10, 10, "SIP+D2T", "_sip._tcp.sip.test"),
//!     Record::srv("_sip._tcp.sip.test", 10, 0, 5060, "pbx.sip.test"),
//!     Record::a("pbx.sip.test", [127, 0, 0, 1]),
//! ]);
//! let cfg = EndpointConfig { dns_server: Some(dns.addr()), ..EndpointConfig::loopback() };
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where Debian's `dnsmasq-base` puts the binary.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// How long [`Dnsmasq::start`] waits for the server to answer.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// One DNS record to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A NAPTR record (RFC 3403), as RFC 3263 §4.1 uses it (the regexp field is empty).
    Naptr {
        /// Owner name, e.g. `sip.test`.
        name: String,
        /// Lower first.
        order: u16,
        /// Lower first among equal orders.
        preference: u16,
        /// `S` for "next lookup is SRV".
        flags: String,
        /// The service, e.g. `SIP+D2T`, `SIPS+D2T`, `SIP+D2U`.
        service: String,
        /// The SRV name to query next, e.g. `_sip._tcp.sip.test`.
        replacement: String,
    },
    /// An SRV record (RFC 2782).
    Srv {
        /// Owner name, e.g. `_sip._tcp.sip.test`.
        name: String,
        /// Lower first.
        priority: u16,
        /// Relative weight among equal priorities.
        weight: u16,
        /// Port on the target.
        port: u16,
        /// Host name of the target (needs its own [`Record::A`]).
        target: String,
    },
    /// An A (IPv4) or AAAA (IPv6) record.
    A {
        /// Host name.
        name: String,
        /// Its address.
        ip: IpAddr,
    },
}

impl Record {
    /// A NAPTR record with flags `S` (the replacement is an SRV name).
    pub fn naptr(
        name: &str,
        order: u16,
        preference: u16,
        service: &str,
        replacement: &str,
    ) -> Record {
        Record::Naptr {
            name: name.into(),
            order,
            preference,
            flags: "S".into(),
            service: service.into(),
            replacement: replacement.into(),
        }
    }

    /// An SRV record: `name` → `target:port`.
    pub fn srv(name: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
        Record::Srv {
            name: name.into(),
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    /// An A record (or AAAA for an IPv6 address).
    pub fn a(name: &str, ip: impl Into<IpAddr>) -> Record {
        Record::A {
            name: name.into(),
            ip: ip.into(),
        }
    }

    /// The dnsmasq option that serves this record.
    fn arg(&self) -> String {
        let s = match self {
            Record::Naptr {
                name,
                order,
                preference,
                flags,
                service,
                replacement,
            } => format!(
                "--naptr-record={name},{order},{preference},{flags},{service},,{replacement}"
            ),
            Record::Srv {
                name,
                priority,
                weight,
                port,
                target,
            } => format!("--srv-host={name},{target},{port},{priority},{weight}"),
            Record::A { name, ip } => format!("--host-record={name},{ip}"),
        };
        assert_eq!(
            s.matches(',').count(),
            match self {
                Record::Naptr { .. } => 6,
                Record::Srv { .. } => 4,
                Record::A { .. } => 1,
            },
            "a comma inside a record field: {self:?}"
        );
        s
    }
}

/// A running dnsmasq; stopped (killed and reaped) on drop.
pub struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq on 127.0.0.1 (a free port, UDP and TCP) serving `records` and NXDOMAIN
    /// for any other name, and waits until it answers. Panics if dnsmasq is not installed or
    /// does not come up within 10 s (with its output).
    pub fn start(records: &[Record]) -> Dnsmasq {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: apt-get install -y dnsmasq-base (tests/run-all.sh does)"
        );
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rvoip-dnsmasq-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut last_error = String::new();
        // The port is free when chosen but may be taken before dnsmasq binds it: try again.
        for _ in 0..10 {
            std::fs::create_dir_all(&dir).expect("dnsmasq temp dir");
            let port = free_port();
            let log = dir.join("dnsmasq.log");
            let log_file = std::fs::File::create(&log).expect("dnsmasq log");
            let mut cmd = Command::new(DNSMASQ);
            cmd.args([
                "--no-resolv",
                "--no-hosts",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                // Every name not given here is local: NXDOMAIN (or NODATA), never REFUSED.
                "--local=/#/",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .args(records.iter().map(Record::arg))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
            let child = cmd.spawn().expect("dnsmasq starts");
            let mut d = Dnsmasq {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                dir: dir.clone(),
            };
            match d.wait_ready() {
                Ok(()) => return d,
                Err(e) => last_error = format!("{e}; output:\n{}", d.log()),
            }
        }
        panic!("dnsmasq did not come up: {last_error}");
    }

    /// The name server address (UDP and TCP) for `EndpointConfig::dns_server` or
    /// `DnsResolver::with_nameserver`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// dnsmasq's output so far: one `query[TYPE] name from …` line per query it got.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// Whether dnsmasq was asked for `rtype` (`NAPTR`, `SRV`, `A`, `AAAA`) records of `name`.
    pub fn was_asked(&self, rtype: &str, name: &str) -> bool {
        let needle = format!("query[{rtype}] {name} ");
        self.log().contains(&needle)
    }

    /// Polls with a query until dnsmasq answers (or exits, or 10 s pass).
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let end = Instant::now() + READY_WITHIN;
        let mut id: u16 = 0x5a00;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("dnsmasq exited: {status}"));
            }
            id = id.wrapping_add(1);
            let _ = sock.send_to(&probe(id), self.addr);
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n >= 2 && buf[..2] == id.to_be_bytes() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no answer on {} within {READY_WITHIN:?}",
            self.addr
        ))
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = udp.local_addr().expect("udp addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A DNS query (RFC 1035 §4.1) for the A records of `ready.invalid`, with id `id`.
fn probe(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in ["ready", "invalid"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root; QTYPE A; QCLASS IN
    q
}
