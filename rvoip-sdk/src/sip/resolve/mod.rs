//! Locating SIP servers (RFC 3263): from a SIP or SIPS URI's host, port, `transport=` and `maddr=`
//! to an ordered list of (address, transport) destinations to try, failing over to the next.
//!
//! - [`select`] is the sans-IO core: a [`Plan`] asks for NAPTR, SRV and A/AAAA records one
//!   [`Query`] at a time and orders the answers (RFC 3263 §4.1–4.2, RFC 2782, RFC 7118 §5).
//! - [`resolve`] drives a plan over any async [`Lookup`]; [`DnsResolver`] is the `Lookup` over
//!   `hickory-resolver` (system configuration, or one name server for tests).
//!
//! A `sips:` target never yields a plaintext destination: if DNS offers only plaintext the result
//! is [`ResolveError::NoSecureTransport`], not a downgrade.
//!
//! ```no_run
//! # async fn f() -> Result<(), rvoip_sdk::sip::resolve::ResolveError> {
//! use rvoip_sdk::sip::resolve::{DnsResolver, Target};
//! let dns = DnsResolver::from_system()?;
//! let target = Target { host: "example.com".into(), ..Target::default() };
//! for d in dns.resolve(&target).await? {
//!     println!("{:?} {}", d.proto, d.addr);
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;

mod dns;
pub mod select;

pub use dns::DnsResolver;
pub use select::{
    MAX_DESTINATIONS, MAX_QUERIES, NaptrSelection, Plan, Proto, order_addrs, order_srv,
    select_naptr,
};

#[cfg(test)]
mod tests;

/// What to resolve: the parts of a SIP or SIPS URI that RFC 3263 §4 looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The URI host: a domain name or an IP literal (IPv6 without brackets; brackets are tolerated).
    pub host: String,
    /// The URI port, if it has one. Port 0 is rejected as [`ResolveError::InvalidTarget`].
    pub port: Option<u16>,
    /// The `transport=` parameter, if present and known (see [`Proto::from_param`]).
    pub transport: Option<Proto>,
    /// True for a `sips:` URI: every destination is then TLS or WSS (RFC 3261 §26.2.2).
    pub secure: bool,
    /// The `maddr=` parameter; when present it replaces `host` (RFC 3261 §19.1.2).
    pub maddr: Option<String>,
}

impl Target {
    /// The target of a SIP or SIPS URI (RFC 3263 §4): its host (IPv6 brackets removed;
    /// `localhost` as 127.0.0.1, which never needs DNS), port, `transport=` (an unknown name
    /// counts as none: check [`Target::unknown_transport`]), `maddr=`, and whether it is `sips:`.
    pub fn from_uri(uri: &crate::sip::msg::Uri) -> Target {
        let param = |n: &str| match uri.param(n) {
            Some(Some(v)) => Some(v.to_string()),
            _ => None,
        };
        Target {
            host: loopback_alias(&uri.host),
            port: uri.port,
            transport: param("transport").and_then(|t| Proto::from_param(&t)),
            secure: uri.scheme == crate::sip::msg::Scheme::Sips,
            maddr: param("maddr").map(|m| loopback_alias(&m)),
        }
    }

    /// Whether `uri` names a transport this stack does not know (`transport=sctp`, or an empty
    /// one): such a URI must not be reached over a default transport instead.
    pub fn unknown_transport(uri: &crate::sip::msg::Uri) -> bool {
        match uri.param("transport") {
            None => false,
            Some(Some(t)) => Proto::from_param(t).is_none(),
            Some(None) => true,
        }
    }
}

/// A host without IPv6 brackets; `localhost` as `127.0.0.1`.
fn loopback_alias(host: &str) -> String {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.to_string()
    } else {
        host.to_string()
    }
}

/// Resolves a target that needs no DNS (an IP literal host or `maddr`): `Some` with the
/// destinations (RFC 3263 §4.1–4.2: the URI's transport, else UDP (`sips:` TLS), the URI's
/// port, else the transport's default), or the error; `None` when a lookup is needed.
pub fn resolve_numeric(target: &Target) -> Option<Result<Vec<Destination>, ResolveError>> {
    match Plan::new(target) {
        Err(e) => Some(Err(e)),
        Ok(mut plan) => match plan.poll_query() {
            Some(_) => None,
            None => Some(plan.finish()),
        },
    }
}

/// One address to try, in list order; on failure the caller moves to the next one (RFC 3263 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Where to send: IP address and port.
    pub addr: SocketAddr,
    /// The transport to send with.
    pub proto: Proto,
    /// The domain this destination serves: the URI host (or `maddr`), lower case, without a
    /// trailing dot. It is the name to check a TLS certificate against (RFC 5922 §4.1), not the
    /// SRV target.
    pub host: String,
}

/// A NAPTR record (RFC 3403 §4.1) as RFC 3263 §4.1 reads it; the regexp field is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naptr {
    /// Lower orders are processed first.
    pub order: u16,
    /// Among equal orders, lower preferences are tried first.
    pub preference: u16,
    /// Only `"S"` (next lookup is SRV) is followed.
    pub flags: String,
    /// The service field, e.g. `"SIPS+D2T"`.
    pub services: String,
    /// The SRV owner name to query next; `""` or `"."` means none.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Srv {
    /// Lower priorities are tried first.
    pub priority: u16,
    /// Relative weight for random selection among records of equal priority.
    pub weight: u16,
    /// Port on the target; 0 makes the record unusable.
    pub port: u16,
    /// Host name to look up; `"."` means the service is not available.
    pub target: String,
}

/// A DNS lookup a [`Plan`] needs answered next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// NAPTR records of this name.
    Naptr(String),
    /// SRV records of this name (e.g. `_sip._udp.example.com`).
    Srv(String),
    /// A and AAAA records of this host, answered together as one [`Answer::Addrs`].
    Addrs(String),
}

/// The records that answer a [`Query`]; an empty list means NXDOMAIN or no records of that type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Answers [`Query::Naptr`].
    Naptr(Vec<Naptr>),
    /// Answers [`Query::Srv`].
    Srv(Vec<Srv>),
    /// Answers [`Query::Addrs`], in DNS order; IPv4 and IPv6 may be mixed.
    Addrs(Vec<IpAddr>),
}

/// Why a target could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// DNS has no usable NAPTR, SRV or A/AAAA records for this host (RFC 3263 §4).
    #[error("no SIP server found for {0}")]
    NotFound(String),
    /// A `sips:` target (RFC 3261 §26.2.2) for which only plaintext transports are offered: by its
    /// NAPTR records, or by `transport=udp`.
    #[error("no TLS transport offered for sips target {0}")]
    NoSecureTransport(String),
    /// The target cannot be resolved as given: empty host or port 0.
    #[error("invalid SIP target: {0}")]
    InvalidTarget(String),
    /// A DNS lookup failed (timeout, SERVFAIL, bad configuration); NXDOMAIN is not a failure.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
}

/// Async DNS lookups that a [`Plan`] needs. NXDOMAIN or no records of the type is `Ok(vec![])`;
/// `Err` is for failures (use [`ResolveError::Dns`]).
pub trait Lookup {
    /// NAPTR records of `name` (RFC 3403), in DNS order.
    fn naptr(&self, name: &str) -> impl Future<Output = Result<Vec<Naptr>, ResolveError>> + Send;
    /// SRV records of `name` (RFC 2782), in DNS order.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<Srv>, ResolveError>> + Send;
    /// A and AAAA records of `host`, in DNS order (IPv4 and IPv6 may be mixed).
    fn addrs(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send;
}

/// Resolves `target` per RFC 3263 §4: the destinations to try, in order (RFC 3263 §4.3 failover:
/// on a transport error or 503, try the next one).
///
/// Queries run one after the other (at most [`MAX_QUERIES`]); a failed query is skipped like an
/// empty answer. `rng` orders SRV records of equal priority by weight (RFC 2782); pass a `Send` RNG
/// such as `StdRng` if the future must be `Send`.
///
/// Errors: [`ResolveError::NotFound`], [`ResolveError::NoSecureTransport`],
/// [`ResolveError::InvalidTarget`], or the first [`ResolveError::Dns`] failure when nothing was found.
pub async fn resolve<L, R>(
    lookup: &L,
    target: &Target,
    rng: &mut R,
) -> Result<Vec<Destination>, ResolveError>
where
    L: Lookup + ?Sized,
    R: Rng + ?Sized,
{
    resolve_with_transports(lookup, target, &Proto::ALL, rng).await
}

/// [`resolve`] for a client that can use only the `supported` transports (see
/// [`Plan::with_transports`]): e.g. an account configured for TCP follows only `SIP+D2T` NAPTR
/// services and probes only `_sip._tcp`.
///
/// Errors: as [`resolve`]; [`ResolveError::InvalidTarget`] also when `transport=` names an
/// unsupported transport or none of `supported` can reach the target.
pub async fn resolve_with_transports<L, R>(
    lookup: &L,
    target: &Target,
    supported: &[Proto],
    rng: &mut R,
) -> Result<Vec<Destination>, ResolveError>
where
    L: Lookup + ?Sized,
    R: Rng + ?Sized,
{
    let mut plan = Plan::with_transports(target, supported)?;
    while let Some(query) = plan.poll_query() {
        let answer = match &query {
            Query::Naptr(name) => lookup.naptr(name).await.map(Answer::Naptr),
            Query::Srv(name) => lookup.srv(name).await.map(Answer::Srv),
            Query::Addrs(host) => lookup.addrs(host).await.map(Answer::Addrs),
        };
        match answer {
            Ok(answer) => plan.handle_answer(answer, rng),
            Err(e) => plan.handle_failure(e),
        }
    }
    plan.finish()
}
