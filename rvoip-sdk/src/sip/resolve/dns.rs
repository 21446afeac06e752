//! The [`Lookup`] over `hickory-resolver` (tokio): NAPTR, SRV, A and AAAA queries for the sans-IO
//! RFC 3263 [`Plan`](super::Plan). Only lookups happen here; the RFC 3263 choices are in `select`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Name, TokioResolver};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Destination, Lookup, Naptr, ResolveError, Srv, Target};

/// Timeout of one DNS query to the name server given to [`DnsResolver::with_nameserver`].
const NAMESERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries per query for [`DnsResolver::with_nameserver`].
const NAMESERVER_ATTEMPTS: usize = 2;

/// An async DNS client (hickory-resolver on tokio) that answers RFC 3263 lookups; it caches answers
/// for their TTL. Clone-free: share it behind an `Arc`.
pub struct DnsResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("name_servers", &self.inner.config().name_servers())
            .finish()
    }
}

impl DnsResolver {
    /// A resolver with the system configuration (`/etc/resolv.conf` on Unix: name servers, search
    /// domains, timeouts) and the hosts file.
    ///
    /// Errors: [`ResolveError::Dns`] if the system configuration cannot be read.
    pub fn from_system() -> Result<DnsResolver, ResolveError> {
        let builder =
            TokioResolver::builder_tokio().map_err(|e| ResolveError::Dns(e.to_string()))?;
        Ok(DnsResolver {
            inner: builder.build(),
        })
    }

    /// A resolver that asks only `server` (UDP, then TCP on the same port), e.g. a local dnsmasq in
    /// tests: no search domains, no hosts file, 2 s timeout per query, 2 attempts. Its NXDOMAIN
    /// answers are trusted as final.
    pub fn with_nameserver(server: SocketAddr) -> DnsResolver {
        let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        opts.timeout = NAMESERVER_TIMEOUT;
        opts.attempts = NAMESERVER_ATTEMPTS;
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
        DnsResolver { inner }
    }

    /// Resolves `target` per RFC 3263 with this resolver and a fresh entropy-seeded RNG; see
    /// [`super::resolve`] for the order of the result and the errors.
    pub async fn resolve(&self, target: &Target) -> Result<Vec<Destination>, ResolveError> {
        let mut rng = StdRng::from_entropy();
        super::resolve(self, target, &mut rng).await
    }

    /// All records of `rtype` at `name`; a name that is not a valid DNS name, NXDOMAIN and NODATA
    /// give an empty list.
    async fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, ResolveError> {
        let Ok(name) = Name::from_utf8(name) else {
            return Ok(Vec::new());
        };
        match self.inner.lookup(name, rtype).await {
            Ok(lookup) => Ok(lookup.iter().cloned().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(ResolveError::Dns(e.to_string())),
        }
    }
}

impl Lookup for DnsResolver {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        let records = self.records(name, RecordType::NAPTR).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order(),
                    preference: n.preference(),
                    flags: String::from_utf8_lossy(n.flags()).into_owned(),
                    services: String::from_utf8_lossy(n.services()).into_owned(),
                    replacement: n.replacement().to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        let records = self.records(name, RecordType::SRV).await?;
        Ok(records
            .iter()
            .filter_map(|r| match r {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    /// A and AAAA in parallel; one failing is tolerated when the other has addresses.
    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let (v4, v6) = tokio::join!(
            self.records(host, RecordType::A),
            self.records(host, RecordType::AAAA)
        );
        let ips: Vec<IpAddr> = [&v4, &v6]
            .into_iter()
            .flat_map(|r| r.iter().flatten())
            .filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        match (v4, v6) {
            (Err(e), _) | (_, Err(e)) if ips.is_empty() => Err(e),
            _ => Ok(ips),
        }
    }
}
