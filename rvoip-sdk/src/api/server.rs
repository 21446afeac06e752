//! The embedded server: the same registrar and stateful proxy as the `rvoip-server` binary
//! ([`crate::driver::BoundServer`] over [`crate::server`]), run on its own tokio runtime so an
//! app (C, Swift, Kotlin, Python) can start and stop it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::ApiError;
use crate::driver::BoundServer;
use crate::driver::conn::ConnCounters;
use crate::driver::tls::TlsCounters;
use crate::driver::ws::WsCounters;
use crate::server::config::ServerConfig;
use crate::server::forward::Forwarding;
use crate::sip::transaction::Transport;

struct Running {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    bound: Vec<(Transport, SocketAddr)>,
    domain: String,
    tls_fingerprint: Option<String>,
    relay: Option<crate::driver::relay::RelayHandle>,
    tls_counters: Arc<TlsCounters>,
    ws_counters: Arc<WsCounters>,
    conn_counters: Arc<ConnCounters>,
    control: crate::driver::ControlHandle,
    /// The configuration it started with (settings that need a restart keep these values).
    started_cfg: ServerConfig,
    queries: crate::driver::query::QueryHandle,
    http_addr: Option<SocketAddr>,
}

/// A registrar + proxy that can be started and stopped. Thread-safe.
pub struct Server {
    cfg: ServerConfig,
    running: Mutex<Option<Running>>,
    /// The users' call forwarding: the configuration's, then [`Server::set_forwarding`]'s.
    forwarding: Mutex<BTreeMap<String, Forwarding>>,
    /// The configuration of the last [`Server::reload`], used by the next start.
    reloaded: Mutex<Option<ServerConfig>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.cfg.listen)
            .field("running", &self.is_running())
            .finish()
    }
}

impl Server {
    /// A stopped server with `cfg` (see the README's config section; `ServerConfig::default()`
    /// is the zero-config server: UDP+TCP on 0.0.0.0:5060, demo users).
    pub fn new(cfg: ServerConfig) -> Server {
        Server {
            forwarding: Mutex::new(cfg.forward.clone()),
            cfg,
            running: Mutex::new(None),
            reloaded: Mutex::new(None),
        }
    }

    /// A stopped server from a TOML config file (the `--config` format of `rvoip-server`).
    /// Errors: [`ApiError::InvalidArgument`] (unreadable or invalid file).
    pub fn from_toml_file(path: &std::path::Path) -> Result<Server, ApiError> {
        let cfg = ServerConfig::from_toml_file(path)
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        Ok(Server::new(cfg))
    }

    /// The configuration given to [`Server::new`] (a [`Server::reload`] does not change it).
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Binds the listen addresses and starts serving. Errors: [`ApiError::InvalidState`]
    /// (already running), [`ApiError::Network`] (bind failed), [`ApiError::InvalidArgument`]
    /// (users file unreadable).
    pub fn start(&self) -> Result<(), ApiError> {
        let mut running = self.running.lock().map_err(|_| ApiError::Shutdown)?;
        if running.is_some() {
            return Err(ApiError::InvalidState("server already running".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rvoip-server")
            .enable_all()
            .build()
            .map_err(|e| ApiError::Network(format!("runtime: {e}")))?;
        let mut cfg = self
            .reloaded
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| self.cfg.clone());
        if let Ok(f) = self.forwarding.lock() {
            cfg.forward = f.clone();
        }
        let server = runtime
            .block_on(BoundServer::bind(&cfg))
            .map_err(|e| match e {
                crate::driver::DriverError::Config(c) => ApiError::InvalidArgument(c.to_string()),
                other => ApiError::Network(other.to_string()),
            })?;
        let bound = server.bound().to_vec();
        let domain = server.domain().to_string();
        let tls_fingerprint = server.tls_fingerprint().map(str::to_string);
        let relay = server.relay();
        let (tls_counters, ws_counters) = (server.tls_counters(), server.ws_counters());
        let conn_counters = server.conn_counters();
        let control = server.control();
        let queries = server.queries();
        let http_addr = server.http_addr();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server.run(async move {
            let _ = rx.await;
        }));
        *running = Some(Running {
            runtime,
            stop,
            bound,
            domain,
            tls_fingerprint,
            relay,
            tls_counters,
            ws_counters,
            conn_counters,
            control,
            started_cfg: cfg,
            queries,
            http_addr,
        });
        Ok(())
    }

    /// Stops serving and closes the sockets. A no-op when not running.
    pub fn stop(&self) {
        let r = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = r {
            let _ = r.stop.send(());
            if tokio::runtime::Handle::try_current().is_ok() {
                r.runtime.shutdown_background();
            } else {
                r.runtime
                    .shutdown_timeout(std::time::Duration::from_millis(500));
            }
        }
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// The bound sockets with their real ports (empty when stopped).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.bound.clone()))
            .unwrap_or_default()
    }

    /// The domain the running server answers for (empty when stopped).
    pub fn domain(&self) -> String {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.domain.clone()))
            .unwrap_or_default()
    }
}

impl Server {
    /// The SHA-256 fingerprint (`AB:CD:…`, RFC 4572 form) of the running server's TLS
    /// certificate, for clients to pin; `None` when stopped or not listening on TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.tls_fingerprint.clone()))
    }

    /// The TLS listeners' counters (handshakes accepted, failed, timed out) while running.
    pub fn tls_counters(&self) -> Option<Arc<TlsCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.tls_counters.clone()))
    }

    /// The WebSocket listeners' counters (upgrades, refusals without the `sip` subprotocol,
    /// handshake failures and timeouts, protocol errors) while running.
    pub fn ws_counters(&self) -> Option<Arc<WsCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.ws_counters.clone()))
    }

    /// The stream connections' counters (open, accepted, refused by `max_connections*`, closed
    /// idle, slow, oversized or unframable) while running.
    pub fn conn_counters(&self) -> Option<Arc<ConnCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.conn_counters.clone()))
    }

    /// The media relay's counters while running with `relay` other than `"off"`: contexts and
    /// ports in use, packets forwarded, drops by reason. `None` when stopped or off.
    pub fn relay_stats(&self) -> Option<crate::media::relay::RelayStats> {
        let relay = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.relay.clone()))?;
        Some(relay.stats())
    }
}

/// How long [`Server::stats`] waits for the event loop.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Server {
    /// A snapshot of the running server's counters and gauges: SIP requests and responses by
    /// method and class, first-response latencies, transactions, calls, bindings, digest
    /// challenges and failures, parse errors, drops and limits hit, connections and the media
    /// relay (the figures `/metrics` exposes). Blocks the calling thread until the event loop
    /// answers, at most 2 s; do not call it from inside an async task of the server's runtime.
    /// Errors: [`ApiError::InvalidState`] (stopped, or the event loop did not answer in time).
    pub fn stats(&self) -> Result<crate::driver::stats::ServerStats, ApiError> {
        let queries = self
            .running
            .lock()
            .map_err(|_| ApiError::Shutdown)?
            .as_ref()
            .map(|r| r.queries.clone())
            .ok_or_else(|| ApiError::InvalidState("server not running".into()))?;
        queries
            .stats_blocking(STATS_TIMEOUT)
            .map_err(|e| ApiError::InvalidState(e.to_string()))
    }

    /// The address of the operator's HTTP listener (`http_listen`: `/metrics`, `/healthz`,
    /// `/status`) while running, with the real port when 0 was asked for.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.http_addr))
    }
}

impl Server {
    /// Sets (`Some`) or clears (`None`) call forwarding for `user` (the user part of the
    /// AOR, e.g. `"bob"`): unconditional, on busy (486/600), on no answer after
    /// `no_answer_s` seconds (default 20) — see [`crate::server::forward`]. Takes effect at
    /// once when running (for calls that start after it; a ringing call uses the rule set
    /// when it ends) and is kept across [`Server::stop`]/[`Server::start`]; it replaces the
    /// config file's `[forward.<user>]` for this server object (the file is not written).
    /// Errors: [`ApiError::InvalidArgument`] (an empty user, a target that is neither a
    /// `sip:`/`sips:` URI with a user nor a user name, `no_answer_s` outside 1..=180),
    /// [`ApiError::InvalidState`] (the running server's control queue is full or it stopped).
    pub fn set_forwarding(
        &self,
        user: &str,
        forwarding: Option<Forwarding>,
    ) -> Result<(), ApiError> {
        if user.is_empty() || user.contains(char::is_whitespace) {
            return Err(ApiError::InvalidArgument(format!("user {user:?}")));
        }
        let rule = forwarding
            .as_ref()
            .map(Forwarding::rule)
            .transpose()
            .map_err(ApiError::InvalidArgument)?;
        // The same lock order as `start`: running, then forwarding.
        let running = self.running.lock().map_err(|_| ApiError::Shutdown)?;
        let mut table = self.forwarding.lock().map_err(|_| ApiError::Shutdown)?;
        if let Some(r) = running.as_ref() {
            r.control
                .set_forwarding(user, rule)
                .map_err(ApiError::InvalidState)?;
        }
        match forwarding {
            Some(f) => table.insert(user.to_string(), f),
            None => table.remove(user),
        };
        Ok(())
    }

    /// The call forwarding of `user`, if any (the configuration's or the last
    /// [`Server::set_forwarding`]'s).
    pub fn forwarding(&self, user: &str) -> Option<Forwarding> {
        self.forwarding.lock().ok()?.get(user).cloned()
    }
}

impl Server {
    /// Applies `cfg` to the running server without dropping calls or bindings: its users
    /// files are read and checked here, then users, `[domains]`, `[forward]` (replacing the
    /// rules of [`Server::set_forwarding`]), registrar, guard and held-request limits apply to
    /// the next message ([`crate::server::core::ServerCore::reload`]). A stopped server keeps
    /// `cfg` for its next start. Returns the changed settings that need a restart (listen
    /// addresses, the relay, TLS files…; [`crate::server::core::restart_needed`]), which keep
    /// their running values. Errors: [`ApiError::InvalidArgument`] (an unreadable or bad users
    /// file, a bad domain or forwarding rule: nothing changes), [`ApiError::InvalidState`]
    /// (the running server's control queue is full or it stopped).
    pub fn reload(&self, cfg: ServerConfig) -> Result<Vec<&'static str>, ApiError> {
        let loaded = crate::server::domains::LoadedConfig::load(cfg)
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        // The same lock order as `start`: running, then forwarding.
        let running = self.running.lock().map_err(|_| ApiError::Shutdown)?;
        let mut reloaded = self.reloaded.lock().map_err(|_| ApiError::Shutdown)?;
        let mut restart = Vec::new();
        if let Some(r) = running.as_ref() {
            restart = crate::server::core::restart_needed(&r.started_cfg, &loaded.cfg);
            r.control
                .reload(loaded.clone())
                .map_err(ApiError::InvalidState)?;
        }
        if let Ok(mut f) = self.forwarding.lock() {
            *f = loaded.cfg.forward.clone();
        }
        *reloaded = Some(loaded.cfg);
        Ok(restart)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn invite(n: u32, from: SocketAddr, server: SocketAddr) -> String {
        format!(
            "INVITE sip:bob@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKapi{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{server}>;tag=a{n}\r\nTo: <sip:bob@{server}>\r\n\
             Call-ID: api{n}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{from}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// Registers carol from `sock`, answering the 401.
    fn register(sock: &UdpSocket, server: SocketAddr) {
        use crate::sip::msg::{Auth, HeaderName, Limits, Message};
        let me = sock.local_addr().unwrap();
        let reg = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:carol@{server}>;tag=r\r\nTo: <sip:carol@{server}>\r\n\
                 Call-ID: reg@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:carol@{me}>\r\n{auth}\
                 Expires: 600\r\nContent-Length: 0\r\n\r\n"
            )
        };
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send(reg(1, "").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        let Ok(Message::Response(r401)) =
            Message::parse(bytes::Bytes::copy_from_slice(&buf[..n]), &Limits::default())
        else {
            panic!("no 401");
        };
        let ch = r401.headers.get(&HeaderName::WwwAuthenticate).unwrap();
        let auth = Auth::parse(ch).unwrap();
        let uri = format!("sip:{server}");
        let authz =
            crate::auth::authorization_value(&auth, "carol", "cpw", "REGISTER", &uri, 1, "c1")
                .unwrap();
        sock.send(reg(2, &format!("Authorization: {authz}\r\n")).as_bytes())
            .unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
    }

    /// The first lines of the datagrams `sock` receives until one satisfies `want` (then
    /// true) or 5 s pass (then false).
    fn wait_for(sock: &UdpSocket, want: impl Fn(&str) -> bool) -> (bool, Vec<String>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = sock.recv(&mut buf) else { break };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let line = text.lines().next().unwrap_or("").to_string();
            let hit = want(&line);
            seen.push(line);
            if hit {
                return (true, seen);
            }
        }
        (false, seen)
    }

    /// One HTTP/1.0 GET to `addr`: (status code, body).
    fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    /// `stats()` and the HTTP listener see the same counters: an OPTIONS and a challenged
    /// REGISTER are counted once each, `/metrics` exposes them, `/healthz` is ok, `/status`
    /// lists no binding; a stopped server has no stats.
    #[test]
    fn stats_and_http_endpoints_count_what_was_sent() {
        let cfg = ServerConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            relay: crate::server::proxy::anchor::RelayMode::Off,
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerConfig::default()
        };
        let server = Server::new(cfg);
        assert!(matches!(server.stats(), Err(ApiError::InvalidState(_))));
        server.start().unwrap();
        let addr = server.local_addrs()[0].1;
        let http = server.http_addr().expect("http listener");
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(addr).unwrap();
        let me = sock.local_addr().unwrap();
        for (method, want) in [("OPTIONS", "SIP/2.0 200"), ("REGISTER", "SIP/2.0 401")] {
            let req = format!(
                "{method} sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKst{method}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:carol@{addr}>;tag=s\r\nTo: <sip:carol@{addr}>\r\n\
                 Call-ID: st{method}@test\r\nCSeq: 1 {method}\r\nContact: <sip:carol@{me}>\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            sock.send(req.as_bytes()).unwrap();
            let (ok, lines) = wait_for(&sock, |l| l.starts_with(want));
            assert!(ok, "{lines:?}");
        }
        let s = server.stats().unwrap();
        use crate::sip::msg::Method;
        assert_eq!(s.messages.requests(&Method::Options), 1);
        assert_eq!(s.messages.requests(&Method::Register), 1);
        assert_eq!(s.messages.responses(&Method::Options, 2), 1);
        assert_eq!(s.messages.responses(&Method::Register, 4), 1);
        assert_eq!(s.messages.latency_of(&Method::Register).count, 1);
        assert_eq!(s.core.challenges, 1);
        assert!(s.relay.is_none());

        let (code, body) = http_get(http, "/metrics");
        assert_eq!(code, 200);
        assert!(
            body.contains("rvoip_sip_requests_total{method=\"REGISTER\"} 1\n"),
            "{body}"
        );
        assert!(body.contains("rvoip_sip_responses_total{method=\"OPTIONS\",class=\"2xx\"} 1\n"));
        let (code, body) = http_get(http, "/healthz");
        assert_eq!(code, 200, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["stores"][0]["kind"], "memory");
        let (code, body) = http_get(http, "/status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["bindings_total"], 0);
        assert_eq!(http_get(http, "/other").0, 404);
        server.stop();
        assert!(matches!(server.stats(), Err(ApiError::InvalidState(_))));
    }

    /// Forwarding set through the API reaches the running core: bob (no binding) is 480
    /// before, and after `set_forwarding` his call goes to the target; bad rules are refused.
    #[test]
    fn set_forwarding_applies_to_the_running_server() {
        let cfg = ServerConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            invite_auth: false,
            relay: crate::server::proxy::anchor::RelayMode::Off,
            users: [("bob", "bpw"), ("carol", "cpw")]
                .into_iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            ..ServerConfig::default()
        };
        let server = Server::new(cfg);
        let bad = Forwarding {
            unconditional: Some("tel:+1555".into()),
            ..Forwarding::default()
        };
        assert!(matches!(
            server.set_forwarding("bob", Some(bad)),
            Err(ApiError::InvalidArgument(_))
        ));
        server.start().unwrap();
        let addr = server.local_addrs()[0].1;
        let alice = UdpSocket::bind("127.0.0.1:0").unwrap();
        alice.connect(addr).unwrap();
        let from = alice.local_addr().unwrap();
        alice.send(invite(1, from, addr).as_bytes()).unwrap();
        let (ok, lines) = wait_for(&alice, |l| l.starts_with("SIP/2.0 480"));
        assert!(ok, "{lines:?}");

        // carol registers (answering the digest challenge); bob's calls will go to her.
        let carol = UdpSocket::bind("127.0.0.1:0").unwrap();
        carol.connect(addr).unwrap();
        register(&carol, addr);
        let f = Forwarding {
            unconditional: Some("carol".into()),
            ..Forwarding::default()
        };
        server.set_forwarding("bob", Some(f.clone())).unwrap();
        assert_eq!(server.forwarding("bob"), Some(f));
        alice.send(invite(2, from, addr).as_bytes()).unwrap();
        let (ok, lines) = wait_for(&carol, |l| l.starts_with("INVITE sip:carol@"));
        assert!(ok, "{lines:?}");
        server.set_forwarding("bob", None).unwrap();
        assert_eq!(server.forwarding("bob"), None);
        server.stop();
    }

    /// `reload` gives the running server a new user (carol registers after it); a missing
    /// users file is refused and changes nothing; a new listen address needs a restart.
    #[test]
    fn reload_adds_a_user_to_the_running_server() {
        let users = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect()
        };
        let cfg = ServerConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            relay: crate::server::proxy::anchor::RelayMode::Off,
            users: users(&[("bob", "bpw")]),
            ..ServerConfig::default()
        };
        let server = Server::new(cfg.clone());
        server.start().unwrap();
        let addr = server.local_addrs()[0].1;
        let bad = ServerConfig {
            users_file: Some("/nonexistent/rvoip-users.txt".into()),
            ..cfg.clone()
        };
        assert!(matches!(
            server.reload(bad),
            Err(ApiError::InvalidArgument(_))
        ));
        let good = ServerConfig {
            users: users(&[("bob", "bpw"), ("carol", "cpw")]),
            ..cfg.clone()
        };
        assert_eq!(server.reload(good.clone()).unwrap(), Vec::<&str>::new());
        let carol = UdpSocket::bind("127.0.0.1:0").unwrap();
        carol.connect(addr).unwrap();
        register(&carol, addr);
        let moved = ServerConfig {
            listen: vec!["udp:127.0.0.1:1".parse().unwrap()],
            ..good
        };
        assert_eq!(server.reload(moved).unwrap(), vec!["listen"]);
        server.stop();
    }
}
