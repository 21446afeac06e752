//! The domains this core serves ([`crate::server::domains`]): which domain a host names, the
//! location-service key of a user of it, and each domain's digest verifier and registrar
//! settings.
//!
//! Domain 0 is the default domain: the top-level settings, answering for the server's own
//! addresses ([`LocalIdentity::is_local_host`]). The configured domains follow. A host that
//! names none of them is not served: a REGISTER for it gets 403, other requests go to it as
//! to any other domain ([`super::outbound`]).

use crate::auth::{Authenticator, UserDb};
use crate::server::domains::{DomainSettings, RegistrarPolicy, aor_key};
use crate::server::local::LocalIdentity;
use crate::sip::msg::{Request, Uri};

use super::ServerCore;

/// Index of a served domain in [`Domains`]; [`DEFAULT_DOMAIN`] is the default one.
pub(crate) type DomainId = usize;

/// The default domain (the top-level settings).
pub(crate) const DEFAULT_DOMAIN: DomainId = 0;

/// One served domain in the core.
#[derive(Debug)]
pub(crate) struct Domain {
    /// The name (lower-cased); the default domain's is the server's `domain`.
    pub name: String,
    /// The names and aliases that mean it (lower-cased); empty for the default domain, which
    /// answers for [`LocalIdentity::is_local_host`].
    pub hosts: Vec<String>,
    /// Its digest verifier: realm and users.
    pub auth: Authenticator,
    /// Whether INVITE, MESSAGE and SUBSCRIBE from its users are challenged (407).
    pub invite_auth: bool,
    /// Its registrar settings.
    pub registrar: RegistrarPolicy,
}

/// The served domains, default first.
#[derive(Debug)]
pub(crate) struct Domains {
    list: Vec<Domain>,
    /// The nonce secret every domain's verifier shares (drawn once per core).
    secret: [u8; 32],
    /// The top-level `aliases`: [`LocalIdentity::aliases`] is these plus every domain's hosts.
    base_aliases: Vec<String>,
}

/// A digest verifier for `realm` over `users`.
pub(crate) fn verifier(
    realm: &str,
    users: &[(String, String)],
    lax: bool,
    nonce_lifetime: u64,
    secret: [u8; 32],
) -> Authenticator {
    let mut auth = Authenticator::with_secret(realm, user_db(realm, users), lax, secret);
    auth.nonce_lifetime = nonce_lifetime;
    auth
}

/// The user database of `users` in `realm`.
pub(crate) fn user_db(realm: &str, users: &[(String, String)]) -> UserDb {
    let mut db = UserDb::new(realm);
    for (u, p) in users {
        db.add(u, p);
    }
    db
}

impl Domains {
    /// The default domain alone.
    pub(crate) fn new(default: Domain, secret: [u8; 32], base_aliases: Vec<String>) -> Domains {
        Domains {
            list: vec![default],
            secret,
            base_aliases,
        }
    }

    /// Replaces the shared nonce secret (kept by the bindings' store) in every domain's
    /// verifier.
    pub(crate) fn set_secret(&mut self, secret: [u8; 32]) {
        self.secret = secret;
        for d in &mut self.list {
            d.auth.set_secret(secret);
        }
    }

    /// The shared nonce secret.
    pub(crate) fn secret(&self) -> [u8; 32] {
        self.secret
    }

    /// Domain `d`; the default domain for an unknown id.
    pub(crate) fn get(&self, d: DomainId) -> &Domain {
        self.list.get(d).unwrap_or(&self.list[DEFAULT_DOMAIN])
    }

    /// Domain `d` to change; the default domain for an unknown id.
    pub(crate) fn get_mut(&mut self, d: DomainId) -> &mut Domain {
        let d = if d < self.list.len() {
            d
        } else {
            DEFAULT_DOMAIN
        };
        &mut self.list[d]
    }

    /// The domain `host` (as written in a URI) names, if served.
    pub(crate) fn find(&self, local: &LocalIdentity, host: &str) -> Option<DomainId> {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        let named = self
            .list
            .iter()
            .position(|d| d.hosts.iter().any(|x| x.eq_ignore_ascii_case(h)));
        named.or_else(|| local.is_local_host(host).then_some(DEFAULT_DOMAIN))
    }

    /// The location key of `user` in domain `d` ([`aor_key`]).
    pub(crate) fn key(&self, d: DomainId, user: &str) -> String {
        match d {
            DEFAULT_DOMAIN => aor_key(user, None),
            _ => aor_key(user, Some(&self.get(d).name)),
        }
    }

    /// The domain and user of a location key (the inverse of [`Domains::key`]).
    pub(crate) fn split_key<'k>(&self, key: &'k str) -> (DomainId, &'k str) {
        if let Some((user, name)) = key.rsplit_once('@') {
            if let Some(d) = self.list.iter().skip(1).position(|d| d.name == name) {
                return (d + 1, user);
            }
        }
        (DEFAULT_DOMAIN, key)
    }

    /// Replaces the configured domains (the default one stays), keeping the nonce state of a
    /// domain whose name and realm did not change. Rewrites `local`'s aliases to the top-level
    /// ones plus every domain's hosts, so the rest of the core takes them for this server
    /// (Route, loop detection, From checks).
    pub(crate) fn set(
        &mut self,
        local: &mut LocalIdentity,
        settings: &[DomainSettings],
        lax: bool,
        nonce_lifetime: u64,
    ) {
        let mut old: Vec<Domain> = self.list.drain(1..).collect();
        for s in settings {
            let hosts: Vec<String> = std::iter::once(s.name.clone())
                .chain(s.aliases.iter().cloned())
                .collect();
            let kept = old
                .iter()
                .position(|d| d.name == s.name && d.auth.realm() == s.realm)
                .map(|i| old.swap_remove(i));
            let auth = match kept {
                Some(mut d) => {
                    d.auth.set_users(user_db(&s.realm, &s.users));
                    d.auth.lax = lax;
                    d.auth.nonce_lifetime = nonce_lifetime;
                    d.auth
                }
                None => verifier(&s.realm, &s.users, lax, nonce_lifetime, self.secret),
            };
            self.list.push(Domain {
                name: s.name.clone(),
                hosts,
                auth,
                invite_auth: s.invite_auth,
                registrar: s.registrar,
            });
        }
        self.set_base_aliases(local, None);
    }

    /// Sets the top-level aliases (`Some`, a reload) and rewrites `local`'s aliases to them
    /// plus every configured domain's hosts.
    pub(crate) fn set_base_aliases(&mut self, local: &mut LocalIdentity, base: Option<&[String]>) {
        if let Some(b) = base {
            self.base_aliases = b.iter().map(|a| a.to_ascii_lowercase()).collect();
        }
        let mut aliases = self.base_aliases.clone();
        for d in self.list.iter().skip(1) {
            aliases.extend(d.hosts.iter().cloned());
        }
        local.aliases = aliases;
    }

    /// How many domains are served, the default one included.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

impl ServerCore {
    /// The served domain `host` names, if any.
    pub(crate) fn domain_of(&self, host: &str) -> Option<DomainId> {
        self.domains.find(&self.local, host)
    }

    /// The location key of `uri`'s user when its host is a served domain (a URI without a
    /// user gives the key of the empty user).
    pub(crate) fn uri_key(&self, uri: &Uri) -> Option<String> {
        if !uri.is_sip() {
            return None;
        }
        let d = self.domain_of(&uri.host)?;
        Some(self.domains.key(d, uri.user.as_deref().unwrap_or_default()))
    }

    /// The location key of a Request-URI already known to be served (the user part alone
    /// when its host is not).
    pub(crate) fn request_key(&self, req: &Request) -> String {
        self.uri_key(&req.uri)
            .unwrap_or_else(|| req.uri.user.as_deref().unwrap_or_default().to_string())
    }

    /// The `sip:user@domain` AOR of location key `key`.
    pub(crate) fn key_uri(&self, key: &str) -> String {
        let (d, user) = self.domains.split_key(key);
        format!("sip:{user}@{}", self.domains.get(d).name)
    }

    /// The user part and domain name of location key `key`.
    pub(crate) fn key_parts<'k>(&self, key: &'k str) -> (&'k str, String) {
        let (d, user) = self.domains.split_key(key);
        (user, self.domains.get(d).name.clone())
    }

    /// Whether the user of location key `key` has an account in its domain.
    pub(crate) fn user_known(&self, key: &str) -> bool {
        let (d, user) = self.domains.split_key(key);
        self.domains.get(d).auth.users().get(user).is_some()
    }

    /// Whether requests from the sender of `req` are challenged: its From domain's
    /// `invite_auth`, the default domain's for a From that is not ours.
    pub(crate) fn invite_auth_of(&self, req: &Request) -> bool {
        let d = req
            .headers
            .from()
            .ok()
            .filter(|f| f.uri.is_sip())
            .and_then(|f| self.domain_of(&f.uri.host))
            .unwrap_or(DEFAULT_DOMAIN);
        self.domains.get(d).invite_auth
    }

    /// How many domains are served, the default one included.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Serves `domains` besides the default one, replacing those served before (bindings are
    /// kept; a domain no longer served keeps its bindings until they expire, but gets no
    /// requests). Nonces of a domain whose realm did not change stay valid.
    pub fn set_domains(&mut self, domains: &[DomainSettings]) {
        let (lax, lifetime) = {
            let d = self.domains.get(DEFAULT_DOMAIN);
            (d.auth.lax, d.auth.nonce_lifetime)
        };
        self.domains.set(&mut self.local, domains, lax, lifetime);
    }
}
