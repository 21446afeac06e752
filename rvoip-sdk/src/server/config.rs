//! Server settings: what `rvoip-server` reads from its flags or a TOML file (`--config FILE`).
//!
//! Every field has a default, so an empty file (or no file) gives the zero-configuration server:
//! UDP and TCP on `0.0.0.0:5060`, demo users, digest auth on REGISTER and on INVITE from local users.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::Algorithm;
use crate::sip::transaction::Transport;

/// Parses a list of digest algorithm names (`MD5`, `SHA-256`, case-insensitive).
/// Errors: an unknown name.
pub fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    names
        .iter()
        .map(|n| {
            Algorithm::from_wire(n.trim())
                .ok_or_else(|| format!("unknown digest algorithm {n:?} (MD5 or SHA-256)"))
        })
        .collect()
}

fn de_algorithms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    parse_algorithms(&names).map_err(serde::de::Error::custom)
}

/// One listening socket: a transport and a local address, written `udp:IP:PORT`, `tcp:…`,
/// `tls:…`, `ws:…` or `wss:…` (RFC 3261 §18, RFC 5630, RFC 7118).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    /// UDP, TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// The local address to bind; port 0 picks a free port.
    pub addr: SocketAddr,
}

impl std::str::FromStr for ListenSpec {
    type Err = ConfigError;

    /// Parses `udp:IP:PORT`, `tcp:IP:PORT`, `tls:IP:PORT`, `ws:IP:PORT`, `wss:IP:PORT` (IPv6 as
    /// `udp:[::1]:5060`).
    /// Errors: [`ConfigError::Listen`] for an unknown transport or a bad address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::Listen(s.to_string());
        let (proto, rest) = s.split_once(':').ok_or_else(bad)?;
        let transport = Transport::from_name(proto).ok_or_else(bad)?;
        let addr = rest.parse::<SocketAddr>().map_err(|_| bad())?;
        Ok(ListenSpec { transport, addr })
    }
}

impl std::fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl<'de> Deserialize<'de> for ListenSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A UDP port range for the media relay, written `MIN-MAX` (e.g. `30000-39999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub min: u16,
    /// Highest port (inclusive).
    pub max: u16,
}

/// Where the server keeps its registrations (TOML `store`, flag `--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In memory only: a restart loses every binding.
    Memory,
    /// The embedded redb database `registrations.redb` in the data directory.
    Redb,
    /// A Redis server (`redis_url`) shared by several rvoip-server nodes of one domain.
    Redis,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    /// Parses `memory`, `redb` or `redis` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreKind::Memory),
            "redb" => Ok(StoreKind::Redb),
            "redis" => Ok(StoreKind::Redis),
            _ => Err(format!("store must be memory, redb or redis, not {s:?}")),
        }
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    /// Parses `MIN-MAX` with 1024 ≤ MIN < MAX and room for at least two RTP/RTCP pairs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad port range {s:?}: expected MIN-MAX, e.g. 30000-39999");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let (min, max): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if min < 1024 || max < min.saturating_add(3) {
            return Err(bad());
        }
        Ok(PortRange { min, max })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Errors from reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A listen address is not `udp:IP:PORT`, `tcp:…`, `tls:…`, `ws:…` or `wss:…`.
    #[error("bad listen address {0:?}: expected udp|tcp|tls|ws|wss:IP:PORT")]
    Listen(String),
    /// Settings that do not fit together (e.g. `tls_cert` without `tls_key`).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The config or users file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML file is malformed or has unknown keys.
    #[error("bad config file {path}: {msg}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        msg: String,
    },
    /// A users file line is not `user:password`.
    #[error("bad users file {path}: {msg}")]
    Users {
        /// The file.
        path: PathBuf,
        /// Which line and why.
        msg: String,
    },
}

/// All server settings. TOML keys are the field names (see the README's example file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Sockets to listen on. Default: `udp:0.0.0.0:5060`, `tcp:0.0.0.0:5060` and
    /// `tls:0.0.0.0:5061`.
    pub listen: Vec<ListenSpec>,
    /// The SIP domain this server is authoritative for; also the default digest realm.
    /// Default: the advertised address (see `advertise`), or `localhost`.
    pub domain: Option<String>,
    /// The digest realm (RFC 7616 §3.3). Default: the domain.
    pub realm: Option<String>,
    /// Other host names or IPs that mean "this server" in Request-URIs, Route and From headers.
    pub aliases: Vec<String>,
    /// The address written into Via and Record-Route when listening on a wildcard address.
    /// Default: the host's primary IPv4 address (found without sending traffic), else 127.0.0.1.
    pub advertise: Option<String>,
    /// A `user:password` file (one per line, `#` comments). Default: the demo users.
    pub users_file: Option<PathBuf>,
    /// Users given inline in the TOML file: `[users] alice = "secret"`.
    pub users: std::collections::BTreeMap<String, String>,
    /// Call forwarding per user: `[forward.bob]` with `unconditional`, `busy`, `no_answer`
    /// (targets: `sip:` URIs or user names of this domain) and `no_answer_s` (default 20). See
    /// [`crate::server::forward`].
    pub forward: std::collections::BTreeMap<String, crate::server::forward::Forwarding>,
    /// Most diversions in one call's chain (its Diversion headers); past it 480. Default 5.
    pub forward_max_chain: u32,
    /// Redirect server mode (RFC 3261 §8.3): an INVITE for a local user is answered 302 with
    /// the user's bindings as Contacts (q and expires), or its unconditional forward target,
    /// instead of being proxied. Other requests are proxied as usual. Default false.
    pub redirect: bool,
    /// Store a MESSAGE (RFC 3428) for a known user without a binding and deliver it at the
    /// user's next REGISTER (answer 202). Default true.
    pub offline_messages: bool,
    /// Most stored messages per user; past it (or `offline_max_bytes`) 486. Default 50.
    pub offline_max_messages: usize,
    /// Most stored body bytes per user. Default 262144 (256 KiB).
    pub offline_max_bytes: usize,
    /// How long a stored message is kept, in seconds. Default 604800 (7 days).
    pub offline_ttl_s: u64,
    /// The presence agent ([`crate::server::presence`]): PUBLISH (RFC 3903) and SUBSCRIBE
    /// (RFC 6665) with `Event: presence` (RFC 3856) or `dialog` (RFC 4235) for this domain's
    /// users are answered by the server itself. Off: they are proxied to the bindings. Default
    /// true.
    pub presence: bool,
    /// Presence: shortest accepted PUBLISH/SUBSCRIBE lifetime in seconds (shorter: 423 with
    /// Min-Expires). Default 60.
    pub presence_min_expires_s: u32,
    /// Presence: longest granted lifetime in seconds (longer requests are cut). Default 3600.
    pub presence_max_expires_s: u32,
    /// Presence: largest published document in bytes (larger: 413). Default 8192.
    pub presence_max_body_bytes: usize,
    /// Presence: most live publications per user (one more: 403). Default 8.
    pub presence_max_publications: usize,
    /// Presence: most subscriptions one user holds (one more: 403). Default 64.
    pub presence_max_subscriptions_per_user: usize,
    /// Presence: most subscriptions in all (one more: 503 with Retry-After). Default 10000.
    pub presence_max_subscriptions: usize,
    /// One credential may register and call as any AOR of the domain (Kamailio's lax mode).
    pub lax_auth_user: bool,
    /// Challenge (407) INVITE, MESSAGE and SUBSCRIBE whose From is a local user. Default true.
    pub invite_auth: bool,
    /// Digest algorithms offered in 401/407 challenges, most preferred first (RFC 8760 §2.4),
    /// written `"MD5"` / `"SHA-256"`. Default `["MD5"]`, as Kamailio and Asterisk do: Debian's
    /// baresip 1.0 (libre 1.1) fails to register when any SHA-256 challenge is present, and SIPp
    /// 3.6 answers only the first challenge and only MD5. `["SHA-256", "MD5"]` offers both.
    #[serde(deserialize_with = "de_algorithms")]
    pub digest_algorithms: Vec<Algorithm>,
    /// Digest nonce lifetime in seconds (then `stale=true`). Default 300.
    pub nonce_lifetime_s: u64,
    /// Registrar: shortest accepted registration in seconds (shorter gets 423). Default 60.
    pub min_expires_s: u32,
    /// Registrar: longest granted registration in seconds. Default 3600.
    pub max_expires_s: u32,
    /// Registrar: expiry when the REGISTER names none. Default 3600.
    pub default_expires_s: u32,
    /// Registrar: most bindings kept for one AOR. Default 10.
    pub max_bindings_per_aor: usize,
    /// Largest accepted SIP message in bytes (larger: 513, over TCP then the connection is
    /// closed; an oversized UDP datagram is dropped). Default 65535.
    pub max_message_bytes: usize,
    /// Most header fields accepted in one message. Default 128.
    pub max_headers: usize,
    /// Most live server transactions; beyond it new requests get 503. Default 200000.
    pub max_transactions: usize,
    /// RFC 3261 T1 in ms (RTT estimate). Default 500.
    pub t1_ms: u64,
    /// RFC 3261 T2 in ms (max non-INVITE retransmit interval). Default 4000.
    pub t2_ms: u64,
    /// RFC 3261 T4 in ms (max time a message stays in the network). Default 5000.
    pub t4_ms: u64,
    /// When the media relay anchors a call's RTP/RTCP: `"always"` (default), `"nat"` (only when
    /// a party is behind a NAT) or `"off"` (signalling only).
    pub relay: crate::server::proxy::anchor::RelayMode,
    /// The relay's UDP ports, `"MIN-MAX"`; each relayed stream takes two RTP/RTCP pairs.
    /// Default `"30000-39999"`.
    pub relay_ports: PortRange,
    /// A call whose media stopped in both directions for this many seconds is ended with BYE to
    /// both sides. Default 60.
    pub relay_timeout_s: u64,
    /// Never re-latch a relay leg once it learned its peer's source (default false: re-latch on
    /// an SSRC change from the same IP, or from another address after 5 s of silence from the
    /// old source).
    pub relay_strict_source: bool,
    /// Rewrite SSRC, sequence numbers and timestamps so each direction stays one continuous
    /// stream across re-INVITEs and re-latching. Default false.
    pub relay_rewrite_ssrc: bool,
    /// Transcode between parties that share no codec (default true): an offer the callee
    /// refuses with 488 is sent again with the codecs the relay converts added (PCMU, PCMA,
    /// G.722, Opus), and the relay converts the streams of such calls frame by frame. Calls
    /// with a codec in common are forwarded as they are, never decoded.
    pub relay_transcode: bool,
    /// The user-part prefix of conference room URIs: a call to `sip:<prefix><name>@<domain>`
    /// joins room `<name>`, a mixing bridge on the server's relay. Default `"conf-"`; empty
    /// turns rooms off.
    pub conference_prefix: String,
    /// Members per room at most; more get 486 Busy Here. Default 30.
    pub conference_max_members: usize,
    /// Rooms open at once at most; a join that would open another gets 486. Default 100.
    pub conference_max_rooms: usize,
    /// Record every call the relay anchors (default false): one stereo WAV per answered call
    /// in `recording_dir`, caller left, callee right.
    pub record_calls: bool,
    /// Record the calls of these users only (as caller or callee; user parts, e.g. `"alice"`),
    /// when `record_calls` is false. Default empty.
    pub record_users: Vec<String>,
    /// Where recordings go (created if missing). Default: `recordings` in `data_dir`, else
    /// `./recordings`.
    pub recording_dir: Option<PathBuf>,
    /// The address written into relayed SDP. Default: the first non-wildcard listen address,
    /// else `advertise`.
    pub relay_advertise: Option<std::net::IpAddr>,
    /// The local address relay ports bind to. Default: the first non-wildcard listen address,
    /// else `0.0.0.0`.
    pub relay_bind: Option<std::net::IpAddr>,
    /// The TLS listeners' certificate chain (PEM). Without it (and `tls_key`), a self-signed
    /// certificate is made once in `data_dir` and reused.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where the server keeps state it makes itself (the self-signed certificate). Default:
    /// `$RVOIP_DATA_DIR`, else `$XDG_DATA_HOME/rvoip`, else `~/.local/share/rvoip`.
    pub data_dir: Option<PathBuf>,
    /// Where registrations (and digest nonce keys) are kept: `memory` (lost on restart),
    /// `redb` (`registrations.redb` in `data_dir`, durable across restarts and `kill -9`), or
    /// `redis` (shared by several nodes: `redis_url`).
    /// Default (`None`): in memory for a server embedded through [`crate::api::Server`], redb for
    /// the `rvoip-server` binary.
    pub store: Option<StoreKind>,
    /// The Redis server of `store = "redis"`, `redis://HOST:PORT/DB`. Default
    /// `redis://127.0.0.1:6379/`.
    pub redis_url: Option<String>,
    /// Whether this node records its own Path URI (RFC 3327, with an RFC 5626 flow token) for a
    /// binding made over a connection (TCP, TLS, WS, WSS) or through a NAT, so that the other
    /// nodes sharing the store send that user's requests through this node, down the flow only
    /// it holds ([`crate::server::path`]), as Kamailio's path module `add_path()` with the
    /// registrar's `use_path`. Default (`None`): on when
    /// `store = "redis"`, else off.
    pub record_path: Option<bool>,
    /// Worker threads, each with its own server core, sharded by Call-ID
    /// ([`crate::server::shard`]). Unset or 0: the number of CPUs, or 1 when `presence`,
    /// `offline_messages` or conference rooms are on (they need one worker; asking for more
    /// with them on is an error).
    pub workers: Option<usize>,
    /// The DNS server (`IP:PORT`) for RFC 3263 lookups of other domains' SIP servers
    /// (NAPTR, SRV, A/AAAA). Default: the system's resolver configuration (`/etc/resolv.conf`).
    pub dns_server: Option<std::net::SocketAddr>,
    /// Flood defence (Kamailio's pike): most messages one source IP may send per
    /// `flood_window_ms`, counted before parsing; past it the source's messages are dropped
    /// for `flood_ban_s`. 0 switches it off. Default 1000.
    pub flood_limit: u32,
    /// The flood counting window in ms. Default 1000.
    pub flood_window_ms: u64,
    /// How long a flooding source is ignored, in seconds. Default 10.
    pub flood_ban_s: u64,
    /// Brute-force defence: failed digest attempts (a wrong password, an unknown user) from
    /// one source IP within `auth_fail_window_s` that get the source banned (its messages
    /// dropped) for `auth_ban_s`. 0 switches it off. Default 10.
    pub auth_fail_limit: u32,
    /// The window in seconds over which failed digest attempts are counted. Default 60.
    pub auth_fail_window_s: u64,
    /// Failed digest attempts on one user name, from any source, within the window, past
    /// which each source is banned at its first failure on that user (a distributed attack).
    /// The user's own correct credentials keep working. 0 switches it off. Default 20.
    pub auth_user_fail_limit: u32,
    /// How long a source is banned after failed digest attempts, in seconds. Default 300.
    pub auth_ban_s: u64,
    /// Source networks exempt from the flood limit, from bans and from the per-source limits
    /// on transactions, held bytes and connections (e.g. a trunk or an SBC),
    /// written as IP addresses or CIDRs: `["10.0.0.0/8", "192.0.2.7"]`. Default none.
    pub trusted_sources: Vec<ipnet::IpNet>,
    /// Most server transactions in progress from one source IP; beyond it a request the
    /// proxy would hold gets 503 with Retry-After. Default 1000.
    pub max_transactions_per_source: usize,
    /// Most bytes of requests held by transactions in progress (server and client), in
    /// total; a request that the proxy would hold past it gets 503. Each held request counts
    /// as the heap it costs ([`crate::sip::transaction::held_cost`]: its allocator block plus
    /// its transaction's state), so RSS growth stays under it. Default 64 MiB.
    pub max_held_bytes: usize,
    /// Most bytes of requests from one source IP held by server transactions in progress,
    /// counted as for `max_held_bytes`; past it 503. Default 8 MiB.
    pub max_held_bytes_per_source: usize,
    /// Largest body of a request the proxy forwards, in bytes; larger gets 513. Default 16384.
    pub max_forward_body_bytes: usize,
    /// Most open TCP, TLS and WebSocket connections accepted in total; more are closed at
    /// once. Default 10000.
    pub max_connections: usize,
    /// Most open connections accepted from one source IP. Default 256.
    pub max_connections_per_source: usize,
    /// A connection that received no message for this long, in seconds, is closed, unless a
    /// live registration uses it. Default 120.
    pub connection_idle_timeout_s: u64,
    /// A message on a connection must arrive complete within this many seconds of its first
    /// byte (slowloris); else the connection is closed. Default 10.
    pub message_timeout_s: u64,
    /// The receive buffer asked for each UDP listening socket, in bytes (`SO_RCVBUF`; as root
    /// `SO_RCVBUFFORCE` when the kernel's `net.core.rmem_max` is lower). It absorbs bursts and
    /// short stalls of the event loop: Linux's default (208 KiB, about 160 datagrams) fills in
    /// 10 ms at 16,000 messages/s, and every datagram dropped there costs a retransmission
    /// 500 ms later (RFC 3261 §17.1.1.2). 0 keeps the system default. Default 4 MiB.
    pub udp_receive_buffer_bytes: usize,
    /// Virtual hosting: other domains served, each with its own users, realm and registrar
    /// settings (`[domains."a.example"]`, see [`crate::server::domains`]). Default none: only
    /// the default domain (`domain`) and the server's own addresses are served.
    pub domains: std::collections::BTreeMap<String, crate::server::domains::DomainConfig>,
    /// Outbound routing to trunks and gateways: destination sets, probing and routes
    /// (`[dispatch]`, see [`crate::server::dispatch::config`]). Default: none.
    pub dispatch: crate::server::dispatch::DispatchConfig,
    /// The operator's HTTP listener, `IP:PORT` (e.g. `127.0.0.1:9090`): `GET /metrics`
    /// (Prometheus), `/healthz` (liveness, store reachability) and `/status` (bindings and
    /// calls, JSON). No authentication: bind it to a loopback or management address. Default
    /// off.
    pub http_listen: Option<std::net::SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                ListenSpec {
                    transport: Transport::Udp,
                    addr: ([0, 0, 0, 0], 5060).into(),
                },
                ListenSpec {
                    transport: Transport::Tcp,
                    addr: ([0, 0, 0, 0], 5060).into(),
                },
                ListenSpec {
                    transport: Transport::Tls,
                    addr: ([0, 0, 0, 0], 5061).into(),
                },
            ],
            domain: None,
            realm: None,
            aliases: Vec::new(),
            advertise: None,
            users_file: None,
            users: Default::default(),
            forward: Default::default(),
            forward_max_chain: crate::server::forward::DEFAULT_MAX_CHAIN,
            redirect: false,
            offline_messages: true,
            offline_max_messages: 50,
            offline_max_bytes: 256 << 10,
            offline_ttl_s: 7 * 86_400,
            presence: true,
            presence_min_expires_s: 60,
            presence_max_expires_s: 3600,
            presence_max_body_bytes: 8192,
            presence_max_publications: 8,
            presence_max_subscriptions_per_user: 64,
            presence_max_subscriptions: 10_000,
            lax_auth_user: false,
            invite_auth: true,
            digest_algorithms: vec![Algorithm::Md5],
            nonce_lifetime_s: 300,
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 3600,
            max_bindings_per_aor: 10,
            max_message_bytes: 65_535,
            max_headers: 128,
            max_transactions: 200_000,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            relay: Default::default(),
            relay_ports: PortRange {
                min: 30_000,
                max: 39_999,
            },
            relay_timeout_s: 60,
            relay_strict_source: false,
            relay_rewrite_ssrc: false,
            relay_transcode: true,
            conference_prefix: "conf-".into(),
            conference_max_members: 30,
            conference_max_rooms: 100,
            record_calls: false,
            record_users: Vec::new(),
            recording_dir: None,
            relay_advertise: None,
            relay_bind: None,
            tls_cert: None,
            tls_key: None,
            data_dir: None,
            store: None,
            redis_url: None,
            record_path: None,
            workers: None,
            dns_server: None,
            flood_limit: 1000,
            flood_window_ms: 1000,
            flood_ban_s: 10,
            auth_fail_limit: 10,
            auth_fail_window_s: 60,
            auth_user_fail_limit: 20,
            auth_ban_s: 300,
            trusted_sources: Vec::new(),
            max_transactions_per_source: 1000,
            max_held_bytes: 64 << 20,
            max_held_bytes_per_source: 8 << 20,
            max_forward_body_bytes: 16_384,
            max_connections: 10_000,
            max_connections_per_source: 256,
            connection_idle_timeout_s: 120,
            message_timeout_s: 10,
            udp_receive_buffer_bytes: 4 << 20,
            domains: Default::default(),
            dispatch: Default::default(),
            http_listen: None,
        }
    }
}

/// The demo accounts served when no users are configured: (user, password).
pub const DEMO_USERS: &[(&str, &str)] = &[("alice", "alice-secret"), ("bob", "bob-secret")];

impl ServerConfig {
    /// Reads a TOML file. Errors: [`ConfigError::Io`], [`ConfigError::Toml`] (unknown keys too).
    pub fn from_toml_file(path: &std::path::Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// The checked forwarding rules of `[forward.<user>]`. Errors: [`ConfigError::Invalid`] (a
    /// bad target or `no_answer_s`).
    pub fn forward_rules(
        &self,
    ) -> Result<Vec<(String, crate::server::forward::ForwardRule)>, ConfigError> {
        self.forward
            .iter()
            .map(|(user, f)| {
                f.rule()
                    .map(|r| (user.clone(), r))
                    .map_err(|e| ConfigError::Invalid(format!("[forward.{user}]: {e}")))
            })
            .collect()
    }

    /// The (user, password) pairs to serve: the users file, then inline users; the demo users if
    /// neither gives any and no `[domains]` are configured. Errors: [`ConfigError::Io`], [`ConfigError::Users`].
    pub fn load_users(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = match &self.users_file {
            Some(path) => crate::server::domains::read_users_file(path)?,
            None => Vec::new(),
        };
        out.extend(self.users.iter().map(|(u, p)| (u.clone(), p.clone())));
        // With `[domains]` configured, the default domain gets no demo users.
        if out.is_empty() && self.domains.is_empty() {
            out = DEMO_USERS
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_spec_parses_and_rejects() {
        let l: ListenSpec = "udp:127.0.0.1:5070".parse().unwrap();
        assert_eq!(l.transport, Transport::Udp);
        assert_eq!(l.addr.port(), 5070);
        let l: ListenSpec = "tcp:[::1]:5060".parse().unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert!("sctp:1.2.3.4:5060".parse::<ListenSpec>().is_err());
        assert!("udp:1.2.3.4".parse::<ListenSpec>().is_err());
    }

    #[test]
    fn toml_example_parses_and_unknown_key_fails() {
        let c: ServerConfig = toml::from_str(
            "listen = [\"udp:127.0.0.1:5080\"]\ndomain = \"example.com\"\nlax_auth_user = true\n[users]\nalice = \"pw\"\n",
        )
        .unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.domain.as_deref(), Some("example.com"));
        assert!(c.lax_auth_user && c.invite_auth);
        assert_eq!(
            c.load_users().unwrap(),
            vec![("alice".to_string(), "pw".to_string())]
        );
        assert!(toml::from_str::<ServerConfig>("no_such_key = 1").is_err());
        let c: ServerConfig = toml::from_str("digest_algorithms = [\"SHA-256\", \"md5\"]").unwrap();
        assert_eq!(c.digest_algorithms, vec![Algorithm::Sha256, Algorithm::Md5]);
        assert!(toml::from_str::<ServerConfig>("digest_algorithms = [\"SHA-1\"]").is_err());
    }

    #[test]
    fn readme_example_config_parses() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start =
            readme.find("```toml\n").expect("README has a toml example") + "```toml\n".len();
        let len = readme[start..].find("```").unwrap();
        let c: ServerConfig =
            toml::from_str(&readme[start..start + len]).expect("README example parses");
        // The example lists the zero-config listeners: udp and tcp 5060, tls 5061.
        assert_eq!(c.listen, ServerConfig::default().listen);
        assert_eq!(c.digest_algorithms, vec![Algorithm::Md5]);
        assert_eq!(
            c.users.get("alice").map(String::as_str),
            Some("alice-secret")
        );
    }

    #[test]
    fn forward_tables_parse_and_bad_targets_fail() {
        let c: ServerConfig = toml::from_str(
            "redirect = true\n[forward.bob]\nbusy = \"carol\"\nno_answer = \"sip:vm@example.com\"\nno_answer_s = 3\n",
        )
        .unwrap();
        assert!(c.redirect);
        let rules = c.forward_rules().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].1.no_answer_after.as_secs(), 3);
        let c: ServerConfig = toml::from_str("[forward.bob]\nbusy = \"tel:1\"\n").unwrap();
        assert!(c.forward_rules().is_err());
        assert!(toml::from_str::<ServerConfig>("[forward.bob]\nbusyy = \"x\"\n").is_err());
    }

    #[test]
    fn demo_users_when_none_configured() {
        let users = ServerConfig::default().load_users().unwrap();
        assert_eq!(users.len(), DEMO_USERS.len());
    }
}
