//! The `[dispatch]` table of the server's TOML file: destination sets (trunks, gateways), their
//! selection algorithm and credentials, OPTIONS probing, and the routing rules that send a
//! request to a set (what Kamailio's `dispatcher.list` and the `ds_*` parameters hold).
//!
//! ```toml
//! [dispatch]
//! probe_interval_s = 5
//!
//! [[dispatch.sets]]
//! name = "pstn"
//! algorithm = "weighted"
//! username = "acct-1234"      # trunk credentials (RFC 3261 §22), for every destination
//! password = "s3cret"
//! destinations = [
//!   { uri = "sip:192.0.2.10:5060", weight = 50 },
//!   { uri = "sip:gw.trunk.example;transport=tcp", weight = 50 },
//! ]
//!
//! [[dispatch.routes]]
//! prefix = "00"
//! set = "pstn"
//! ```
//!
//! Checked when the file is read: an unknown key, a set without destinations, a destination URI
//! that is not `sip:`/`sips:` (or names a user, a transport this server cannot open, or port 0),
//! a password without a user name, a route naming no set or naming both a prefix and a domain,
//! and two routes with the same prefix or domain are refused with the reason.

use serde::Deserialize;

use crate::sip::msg::{ByteString, Scheme, Uri};

/// Default OPTIONS probing interval in seconds (Kamailio's `ds_ping_interval`, which is off by
/// default; here probing is on).
pub const DEFAULT_PROBE_INTERVAL_S: u64 = 5;
/// Default time a probe has to be answered, in milliseconds.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 2000;
/// Default time a destination has to send its first response to a forwarded request (Kamailio
/// tm's `fr_timer`), in milliseconds.
pub const DEFAULT_FR_TIMER_MS: u64 = 5000;
/// Default weight of a destination.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest weight accepted (Kamailio normalizes to percentages; any positive weight works here).
pub const MAX_WEIGHT: u32 = 10_000;

/// How a set picks the destination for a new request (Kamailio's dispatcher algorithm numbers
/// in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Each request goes to the next destination that is up, in list order (4).
    #[default]
    RoundRobin,
    /// Requests are spread by weight, deterministically: over every run of requests as long
    /// as the sum of the weights of the destinations that are up, each gets exactly its
    /// weight's share (smooth weighted round robin; Kamailio's 9 spreads per 100 calls).
    Weighted,
    /// A hash of the Call-ID picks the destination, so every request of one Call-ID goes to the
    /// same destination while it is up (0). Weights are not used.
    HashCallId,
}

impl Algorithm {
    /// The configuration name (`round-robin`, `weighted`, `hash-call-id`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::Weighted => "weighted",
            Algorithm::HashCallId => "hash-call-id",
        }
    }
}

/// Credentials the server answers a destination's 401/407 challenge with (RFC 3261 §22.2,
/// RFC 7616).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkCredentials {
    /// The digest user name.
    pub username: String,
    /// The password.
    pub password: String,
    /// Answer only challenges of this realm; `None`: any realm.
    pub realm: Option<String>,
}

/// One destination of a set as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Where requests go: `sip:HOST[:PORT][;transport=udp|tcp|tls]` or `sips:…`. An IP literal
    /// is used as it is; a DNS name is resolved by RFC 3263 (NAPTR, SRV, A/AAAA).
    pub uri: String,
    /// Its share of the requests with the `weighted` algorithm (1…10000). Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Trunk credentials of this destination (over the set's).
    pub username: Option<String>,
    /// The password of `username`.
    pub password: Option<String>,
    /// The realm `username` is for; default: any.
    pub realm: Option<String>,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// A destination set as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// The name routes refer to.
    pub name: String,
    /// How a destination is picked. Default `round-robin`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// How long a destination has to send its first response (provisional or final) to a
    /// forwarded request, in milliseconds, before the request fails over to the next one and
    /// the destination is marked down (Kamailio tm's `fr_timer`). Default 5000.
    #[serde(default = "default_fr_timer")]
    pub fr_timer_ms: u64,
    /// Trunk credentials for every destination of the set (a destination's own win).
    pub username: Option<String>,
    /// The password of `username`.
    pub password: Option<String>,
    /// The realm `username` is for; default: any.
    pub realm: Option<String>,
    /// The destinations, in order (round robin and failover go down this list).
    pub destinations: Vec<DestinationConfig>,
}

fn default_fr_timer() -> u64 {
    DEFAULT_FR_TIMER_MS
}

/// One routing rule: a Request-URI user prefix or a Request-URI domain, and the set it
/// routes to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matches Request-URIs for this server's domain whose user part starts with it (and
    /// that name no local user); the longest matching prefix wins. `""` matches every such
    /// number (a default route).
    pub prefix: Option<String>,
    /// Matches Request-URIs whose host is this domain (case-insensitive), which this server
    /// does not serve itself.
    pub domain: Option<String>,
    /// The set's name.
    pub set: String,
}

/// The `[dispatch]` table, checked ([`DispatchConfig::check`] runs when it is read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawDispatch")]
pub struct DispatchConfig {
    /// OPTIONS probing interval in seconds; 0 switches probing off. Default 5.
    pub probe_interval_s: u64,
    /// How long a probe waits for its final response, in milliseconds. Default 2000.
    pub probe_timeout_ms: u64,
    /// The destination sets.
    pub sets: Vec<SetConfig>,
    /// The routing rules.
    pub routes: Vec<RouteConfig>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            probe_interval_s: DEFAULT_PROBE_INTERVAL_S,
            probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
            sets: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The table as read, before [`DispatchConfig::check`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDispatch {
    probe_interval_s: u64,
    probe_timeout_ms: u64,
    sets: Vec<SetConfig>,
    routes: Vec<RouteConfig>,
}

impl Default for RawDispatch {
    fn default() -> Self {
        let d = DispatchConfig::default();
        RawDispatch {
            probe_interval_s: d.probe_interval_s,
            probe_timeout_ms: d.probe_timeout_ms,
            sets: d.sets,
            routes: d.routes,
        }
    }
}

impl TryFrom<RawDispatch> for DispatchConfig {
    type Error = String;

    fn try_from(r: RawDispatch) -> Result<Self, String> {
        let c = DispatchConfig {
            probe_interval_s: r.probe_interval_s,
            probe_timeout_ms: r.probe_timeout_ms,
            sets: r.sets,
            routes: r.routes,
        };
        c.check()?;
        Ok(c)
    }
}

/// Parses a destination URI: `sip:` or `sips:`, a host, no user part, a known transport, no
/// port 0. Errors: why it is refused.
pub fn parse_destination_uri(s: &str) -> Result<Uri, String> {
    let uri = Uri::parse(&ByteString::from(s.trim()))
        .map_err(|_| format!("destination {s:?} is not a SIP URI"))?;
    if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) || !uri.is_sip() {
        return Err(format!("destination {s:?}: only sip: and sips: URIs"));
    }
    if uri.user.is_some() {
        return Err(format!(
            "destination {s:?}: no user part (the request's user is kept)"
        ));
    }
    if uri.host.is_empty() || uri.port == Some(0) {
        return Err(format!(
            "destination {s:?}: needs a host and a non-zero port"
        ));
    }
    if crate::sip::resolve::Target::unknown_transport(&uri) {
        return Err(format!("destination {s:?}: unknown transport"));
    }
    if let Some(Some(t)) = uri.param("transport") {
        if matches!(t.to_ascii_lowercase().as_str(), "ws" | "wss") {
            return Err(format!(
                "destination {s:?}: a server cannot open WebSocket connections"
            ));
        }
    }
    Ok(uri)
}

/// The credentials of a destination: its own, else its set's; `None` without a user name.
fn credentials(
    user: &Option<String>,
    password: &Option<String>,
    realm: &Option<String>,
) -> Option<TrunkCredentials> {
    user.as_ref().map(|u| TrunkCredentials {
        username: u.clone(),
        password: password.clone().unwrap_or_default(),
        realm: realm.clone(),
    })
}

impl SetConfig {
    /// The trunk credentials of destination `d` of this set: the destination's own user name
    /// (with its password and realm), else the set's.
    pub fn credentials_of(&self, d: &DestinationConfig) -> Option<TrunkCredentials> {
        credentials(&d.username, &d.password, &d.realm)
            .or_else(|| credentials(&self.username, &self.password, &self.realm))
    }
}

impl DispatchConfig {
    /// Whether any route is configured (no route: the dispatcher is idle).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.sets.is_empty()
    }

    /// Checks the table. Errors: the first problem found, as a sentence naming the set, the
    /// destination or the route.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for s in &self.sets {
            let name = s.name.trim();
            if name.is_empty() {
                return Err("a dispatch set needs a name".into());
            }
            if !names.insert(name.to_string()) {
                return Err(format!("dispatch set {name:?} is defined twice"));
            }
            if s.destinations.is_empty() {
                return Err(format!("dispatch set {name:?} has no destinations"));
            }
            if s.fr_timer_ms == 0 {
                return Err(format!("dispatch set {name:?}: fr_timer_ms must be > 0"));
            }
            if s.password.is_some() && s.username.is_none() {
                return Err(format!("dispatch set {name:?}: password without username"));
            }
            let mut uris = std::collections::HashSet::new();
            for d in &s.destinations {
                let uri = parse_destination_uri(&d.uri)
                    .map_err(|e| format!("dispatch set {name:?}: {e}"))?;
                if !uris.insert(uri.to_string()) {
                    return Err(format!("dispatch set {name:?}: {} listed twice", d.uri));
                }
                if d.weight == 0 || d.weight > MAX_WEIGHT {
                    return Err(format!(
                        "dispatch set {name:?}: {}: weight must be 1..={MAX_WEIGHT}",
                        d.uri
                    ));
                }
                if d.password.is_some() && d.username.is_none() {
                    return Err(format!(
                        "dispatch set {name:?}: {}: password without username",
                        d.uri
                    ));
                }
            }
        }
        let mut prefixes = std::collections::HashSet::new();
        let mut domains = std::collections::HashSet::new();
        for r in &self.routes {
            if !names.contains(r.set.trim()) {
                return Err(format!("dispatch route to unknown set {:?}", r.set));
            }
            match (&r.prefix, &r.domain) {
                (Some(p), None) => {
                    if !prefixes.insert(p.clone()) {
                        return Err(format!("dispatch prefix {p:?} is routed twice"));
                    }
                }
                (None, Some(d)) => {
                    let d = d.trim().to_ascii_lowercase();
                    if d.is_empty() {
                        return Err("a dispatch route has an empty domain".into());
                    }
                    if !domains.insert(d.clone()) {
                        return Err(format!("dispatch domain {d:?} is routed twice"));
                    }
                }
                _ => {
                    return Err(format!(
                        "a dispatch route to {:?} needs exactly one of prefix or domain",
                        r.set
                    ));
                }
            }
        }
        if self.probe_interval_s > 0 && self.probe_timeout_ms == 0 {
            return Err("dispatch probe_timeout_ms must be > 0".into());
        }
        Ok(())
    }
}
