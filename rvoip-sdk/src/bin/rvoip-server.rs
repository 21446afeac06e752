//! `rvoip-server`: a headless SIP registrar and record-routing stateful proxy.
//!
//! With no arguments it listens on UDP and TCP 0.0.0.0:5060 and TLS 0.0.0.0:5061 (with a
//! self-signed certificate made once in the data directory; its fingerprint is printed) and
//! serves the demo accounts it prints. See `rvoip-server --help` and the README for flags and the TOML config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rvoip_sdk::driver::BoundServer;
use rvoip_sdk::server::config::{DEMO_USERS, ListenSpec, PortRange, ServerConfig};
use rvoip_sdk::server::proxy::anchor::RelayMode;

/// mimalloc returns freed memory to the OS shortly after a burst (a flood, thousands of
/// closed connections); glibc malloc keeps the process at its peak RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SIP registrar (digest auth) and stateful proxy. Zero configuration: UDP+TCP on 0.0.0.0:5060,
/// TLS on 0.0.0.0:5061.
#[derive(Debug, Clone, Parser)]
#[command(name = "rvoip-server", version, about)]
struct Args {
    /// Listen address, `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT`; repeatable. Default
    /// udp+tcp 0.0.0.0:5060 and tls 0.0.0.0:5061.
    #[arg(long = "listen", value_name = "PROTO:IP:PORT")]
    listen: Vec<ListenSpec>,
    /// The SIP domain served; the digest realm defaults to it.
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Another host name or IP of the default domain (served like `--domain`: REGISTERs for it
    /// are accepted, requests for it are local); repeatable. Adds to `aliases` of the config
    /// file.
    #[arg(long = "alias", value_name = "HOST")]
    aliases: Vec<String>,
    /// Users file: one `user:password` per line, `#` comments.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// One credential may register and call as any AOR of the domain (Kamailio's lax mode).
    #[arg(long)]
    lax_auth_user: bool,
    /// Do not challenge (407) INVITE/MESSAGE/SUBSCRIBE from local users.
    #[arg(long)]
    no_invite_auth: bool,
    /// Redirect server: answer an INVITE for a local user 302 with its bindings (or its
    /// unconditional forward target) instead of proxying it.
    #[arg(long)]
    redirect: bool,
    /// Do not store MESSAGEs for users without a binding (RFC 3428 offline messages).
    #[arg(long)]
    no_offline_messages: bool,
    /// Do not run the presence agent: PUBLISH and SUBSCRIBE (presence, dialog) for local users
    /// are proxied to their bindings instead of answered by the server.
    #[arg(long)]
    no_presence: bool,
    /// Digest algorithms offered in challenges, preferred first: `md5`, `sha-256,md5`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    digest_algorithms: Vec<String>,
    /// When the media relay anchors RTP/RTCP: `always` (default), `nat` (only when a party is
    /// behind a NAT) or `off` (signalling only).
    #[arg(long, value_name = "MODE")]
    relay: Option<RelayMode>,
    /// The relay's UDP port range, `MIN-MAX` (default 30000-39999).
    #[arg(long, value_name = "MIN-MAX")]
    relay_ports: Option<PortRange>,
    /// End a call (BYE both ways) after this many seconds without media (default 60).
    #[arg(long, value_name = "SECONDS")]
    relay_timeout: Option<u64>,
    /// Never re-latch a relay leg once it learned its peer's address.
    #[arg(long)]
    relay_strict_source: bool,
    /// Rewrite SSRC/sequence/timestamp so each relayed direction stays one continuous stream.
    #[arg(long)]
    relay_rewrite_ssrc: bool,
    /// Never transcode: parties with no codec in common get the callee's 488.
    #[arg(long)]
    no_transcode: bool,
    /// The user-part prefix of conference room URIs (default conf-; "" turns rooms off).
    #[arg(long, value_name = "PREFIX")]
    conference_prefix: Option<String>,
    /// Members per conference room at most (default 30).
    #[arg(long, value_name = "N")]
    conference_max_members: Option<usize>,
    /// Record every relayed call: one stereo WAV per call (caller left, callee right).
    #[arg(long)]
    record_calls: bool,
    /// Record the calls of this user (as caller or callee); repeatable.
    #[arg(long = "record-user", value_name = "USER")]
    record_users: Vec<String>,
    /// Where recordings go (default: recordings/ in the data directory).
    #[arg(long, value_name = "DIR")]
    recording_dir: Option<std::path::PathBuf>,
    /// The address written into relayed SDP (default: the listen address, else the advertised).
    #[arg(long, value_name = "IP")]
    relay_advertise: Option<std::net::IpAddr>,
    /// The TLS certificate chain (PEM). Default: a self-signed one in the data directory.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the server keeps what it makes itself (the self-signed certificate). Default
    /// `$RVOIP_DATA_DIR`, else `$XDG_DATA_HOME/rvoip`, else `~/.local/share/rvoip`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where registrations are kept: `redb` (default: `registrations.redb` in the data
    /// directory, kept across restarts), `redis` (shared by several nodes: `--redis-url`) or
    /// `memory` (lost on restart). Overrides `store` of the
    /// config file.
    #[arg(long, value_name = "KIND")]
    store: Option<rvoip_sdk::server::config::StoreKind>,
    /// The Redis server of `--store redis` (`redis://HOST:PORT/DB`, default
    /// `redis://127.0.0.1:6379/`); several nodes sharing it serve one domain.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// The DNS server for RFC 3263 lookups of other domains (NAPTR, SRV, A/AAAA), `IP:PORT`.
    /// Default: the system's resolver configuration.
    #[arg(long, value_name = "IP:PORT")]
    dns_server: Option<std::net::SocketAddr>,
    /// A source network never rate-limited or banned (a trunk, an SBC, a test driver), as an
    /// IP address or a CIDR; repeatable. Adds to `trusted_sources` of the config file.
    #[arg(long = "trusted-source", value_name = "IP/LEN")]
    trusted_sources: Vec<ipnet::IpNet>,
    /// Run the media relay alone, controlled over rtpengine's ng protocol (`--ng`) by
    /// Kamailio's or OpenSIPS's `rtpengine` module: no SIP listener.
    #[arg(long, requires = "ng")]
    relay_only: bool,
    /// The ng control socket of `--relay-only`, `udp:IP:PORT` (rtpengine's `--listen-ng`;
    /// Kamailio's `rtpengine_sock "udp:IP:PORT"`).
    #[arg(long, value_name = "udp:IP:PORT", requires = "relay_only")]
    ng: Option<ListenSpec>,
    /// The operator's HTTP listener, `IP:PORT` (e.g. 127.0.0.1:9090): GET /metrics
    /// (Prometheus), /healthz and /status (JSON). Off by default; `http_listen` in the config.
    #[arg(long = "http", value_name = "IP:PORT")]
    http: Option<std::net::SocketAddr>,
    /// Worker threads, each with its own server core; messages are sharded by Call-ID and
    /// registrations replicated between them. Default: the number of CPUs, or 1 when presence,
    /// offline messages or conference rooms are on (they need one worker).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// TOML config file (see README); flags given here override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Before the runtime's threads and arenas exist: RSS in 4 KiB pages, not 2 MiB ones.
    rvoip_sdk::driver::disable_transparent_huge_pages();
    let args = Args::parse();
    // Colours only on a terminal: a log file or journald gets plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rvoip-server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rvoip-server: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(ng) = &args.ng {
        return rt.block_on(run_relay_only(&cfg, ng));
    }
    rt.block_on(async move {
        let server = match BoundServer::bind(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rvoip-server: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (t, addr) in server.bound() {
            println!("rvoip-server listening on {t}:{addr}");
        }
        if let Some(f) = server.tls_fingerprint() {
            println!("TLS certificate SHA-256 fingerprint: {f}");
        }
        println!("domain/realm: {}", server.domain());
        println!("workers: {}", server.worker_count());
        if let Some(a) = server.http_addr() {
            println!("http listening on {a} (/metrics, /healthz, /status)");
        }
        match server.relay() {
            Some(_) => println!(
                "media relay: {}, UDP ports {}-{}",
                format!("{:?}", cfg.relay).to_lowercase(),
                cfg.relay_ports.min,
                cfg.relay_ports.max
            ),
            None => println!("media relay: off (signalling only)"),
        }
        if !cfg.domains.is_empty() {
            let names: Vec<&String> = cfg.domains.keys().collect();
            println!("also serving domains: {names:?}");
        }
        if cfg.users_file.is_none() && cfg.users.is_empty() && cfg.domains.is_empty() {
            println!("demo accounts (user / password):");
            for (u, p) in DEMO_USERS {
                println!("  {u} / {p}");
            }
        } else {
            println!("{} user accounts loaded", server.user_count());
        }
        let demo = cfg.users_file.is_none() && cfg.users.is_empty() && cfg.domains.is_empty();
        let example_user = if demo {
            DEMO_USERS.first().map(|(u, _)| *u).unwrap_or("USER")
        } else {
            "USER"
        };
        println!(
            "ready: register a softphone as sip:{example_user}@{} (INVITE auth {})",
            server.domain(),
            if cfg.invite_auth { "on" } else { "off" }
        );
        if cfg.redirect {
            println!("redirect mode: INVITEs for local users are answered 302");
        }
        // SIGHUP re-reads the config and users files into the running server.
        tokio::spawn(reload_on_hangup(
            args.clone(),
            cfg.clone(),
            server.control(),
        ));
        // The event loop runs as a task, not as the `block_on` future: a socket task waking it
        // then just queues it, where waking the `block_on` future makes the current-thread
        // scheduler poll the I/O driver once more (an extra `epoll_wait`) per wake-up.
        if let Err(e) = tokio::spawn(server.run(shutdown_flag())).await {
            eprintln!("rvoip-server: event loop failed: {e}");
            return ExitCode::FAILURE;
        }
        println!("rvoip-server: shut down");
        ExitCode::SUCCESS
    })
}

/// The configuration: the `--config` file (or the defaults) with the flags applied over it.
/// Read at start and again on SIGHUP. Errors: the file's (unreadable, malformed), a bad flag
/// value.
fn load_config(args: &Args) -> Result<ServerConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => ServerConfig::from_toml_file(path).map_err(|e| e.to_string())?,
        None => ServerConfig::default(),
    };
    if !args.listen.is_empty() {
        cfg.listen = args.listen.clone();
    }
    cfg.aliases.extend(args.aliases.iter().cloned());
    if args.domain.is_some() {
        cfg.domain = args.domain.clone();
    }
    if args.users.is_some() {
        cfg.users_file = args.users.clone();
    }
    cfg.lax_auth_user |= args.lax_auth_user;
    if args.no_invite_auth {
        cfg.invite_auth = false;
    }
    cfg.redirect |= args.redirect;
    cfg.offline_messages &= !args.no_offline_messages;
    cfg.presence &= !args.no_presence;
    if !args.digest_algorithms.is_empty() {
        cfg.digest_algorithms =
            rvoip_sdk::server::config::parse_algorithms(&args.digest_algorithms)?;
    }
    if let Some(m) = args.relay {
        cfg.relay = m;
    }
    if let Some(r) = args.relay_ports {
        cfg.relay_ports = r;
    }
    if let Some(t) = args.relay_timeout {
        cfg.relay_timeout_s = t;
    }
    cfg.relay_strict_source |= args.relay_strict_source;
    cfg.relay_rewrite_ssrc |= args.relay_rewrite_ssrc;
    cfg.relay_transcode &= !args.no_transcode;
    cfg.record_calls |= args.record_calls;
    if let Some(p) = &args.conference_prefix {
        cfg.conference_prefix = p.clone();
    }
    if let Some(n) = args.conference_max_members {
        cfg.conference_max_members = n;
    }
    cfg.record_users.extend(args.record_users.iter().cloned());
    if args.recording_dir.is_some() {
        cfg.recording_dir = args.recording_dir.clone();
    }
    if args.relay_advertise.is_some() {
        cfg.relay_advertise = args.relay_advertise;
    }
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert.clone();
        cfg.tls_key = args.tls_key.clone();
    }
    if args.data_dir.is_some() {
        cfg.data_dir = args.data_dir.clone();
    }
    if args.redis_url.is_some() {
        cfg.redis_url = args.redis_url.clone();
    }
    // The binary keeps registrations across restarts unless told otherwise.
    if let Some(s) = args.store {
        cfg.store = Some(s);
    } else if cfg.store.is_none() {
        cfg.store = Some(rvoip_sdk::server::config::StoreKind::Redb);
    }
    if args.workers.is_some() {
        cfg.workers = args.workers;
    }
    if args.dns_server.is_some() {
        cfg.dns_server = args.dns_server;
    }
    cfg.trusted_sources
        .extend(args.trusted_sources.iter().copied());
    if args.http.is_some() {
        cfg.http_listen = args.http;
    }
    Ok(cfg)
}

/// `--relay-only --ng udp:IP:PORT`: the relay under the ng control until SIGINT/SIGTERM.
async fn run_relay_only(cfg: &ServerConfig, ng: &ListenSpec) -> ExitCode {
    if ng.transport != rvoip_sdk::sip::transaction::Transport::Udp {
        eprintln!("rvoip-server: --ng takes udp:IP:PORT (the ng protocol runs over UDP), not {ng}");
        return ExitCode::from(2);
    }
    let server = match rvoip_sdk::driver::ng::NgServer::bind(cfg, ng.addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rvoip-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let at = server.local_addr().unwrap_or(ng.addr);
    println!("ng control listening on udp:{at}");
    println!(
        "media relay: UDP ports {}-{} (relay only, no SIP)",
        cfg.relay_ports.min, cfg.relay_ports.max
    );
    let stats = server.run(shutdown_flag()).await;
    println!(
        "rvoip-server: shut down ({} ng requests, {} errors, {} retransmissions answered from the cache)",
        stats.requests, stats.errors, stats.replayed
    );
    ExitCode::SUCCESS
}

/// On each SIGHUP: reads the configuration again (`--config` file, users files, flags),
/// checks it and applies it to the running server ([`ServerCore::reload`]); a bad file keeps
/// the running settings and logs why. Changed settings that need a restart are logged as such
/// (compared with `started`, the configuration the server started with).
///
/// [`ServerCore::reload`]: rvoip_sdk::server::core::ServerCore::reload
async fn reload_on_hangup(
    args: Args,
    started: ServerConfig,
    control: rvoip_sdk::driver::ControlHandle,
) {
    #[cfg(unix)]
    {
        use rvoip_sdk::server::domains::LoadedConfig;
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler: reload needs a restart");
                return;
            }
        };
        while hup.recv().await.is_some() {
            let file = args.config.as_ref().map(|p| p.display().to_string());
            tracing::info!(config = ?file, "SIGHUP: reloading the configuration");
            let loaded = match load_config(&args)
                .and_then(|c| LoadedConfig::load(c).map_err(|e| e.to_string()))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "reload failed: keeping the running settings");
                    continue;
                }
            };
            let restart = rvoip_sdk::server::core::restart_needed(&started, &loaded.cfg);
            if !restart.is_empty() {
                tracing::warn!(settings = ?restart, "changed settings need a restart to take effect");
            }
            if let Err(e) = control.reload(loaded) {
                tracing::warn!(error = %e, "reload not applied");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (args, started, control);
    }
}

/// Completes on SIGINT or SIGTERM, as [`shutdown_signal`], but cheap to poll: the signal
/// streams are watched by a task of their own, and this future only checks a oneshot. The
/// event loop polls its shutdown future on every wake-up (several thousand a second under
/// load), where polling the signal streams themselves took about 2 % of the server's CPU.
fn shutdown_flag() -> impl std::future::Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
