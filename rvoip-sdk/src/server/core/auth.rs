//! Digest authentication of REGISTER (RFC 3261 §22, RFC 7616, RFC 8760): the challenges the
//! server sends (in the realm of the request's domain) and the registrar path behind them.

use std::net::SocketAddr;
use std::time::Instant;

use super::domains::DomainId;
use super::*;

impl ServerCore {
    /// The digest challenges of domain `d` to send (RFC 8760 §2.4: one per configured
    /// algorithm, in order).
    pub(super) fn challenges(&self, d: DomainId, secs: u64, stale: bool) -> Vec<String> {
        self.domains
            .get(d)
            .auth
            .challenges_for(secs, stale, &self.digest_algorithms)
    }

    /// Answers `req` with a 401 or 407 `status` carrying domain `d`'s challenges.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        d: DomainId,
        secs: u64,
        stale: bool,
        status: u16,
    ) {
        self.stats.challenges += 1;
        let name = if status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let hdrs = self
            .challenges(d, secs, stale)
            .into_iter()
            .map(|c| (name.clone(), c))
            .collect();
        self.reply(now, tx, req, status, hdrs);
    }

    /// A failed digest attempt for `user` from `source`: counted by the guard. Returns true
    /// when the request is to be answered like any challenge; false when this failure got the
    /// source banned: the request is then dropped unanswered, as everything from it will be.
    pub(super) fn auth_failed(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        source: SocketAddr,
        user: &str,
    ) -> bool {
        if self.guard.auth_failed(now, source.ip(), user).is_none() {
            return true;
        }
        self.tl.discard(tx);
        false
    }

    /// Checks the digest credentials of `req` for the user of location key `key`, in the realm
    /// and user database of its domain (RFC 3261 §22.2 with `status` 401 and
    /// `Authorization`, §22.3 with 407 and `Proxy-Authorization`). Returns true when they are
    /// valid: the credentials are removed from `req`, which goes on. Otherwise answers it
    /// itself and returns false: a fresh challenge (stale when the nonce expired), the same
    /// challenge after a failed attempt (counted by the guard, so an attacker cannot tell an
    /// unknown user from a wrong password), or nothing when that failure banned the source.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &mut Request,
        source: SocketAddr,
        key: &str,
        status: u16,
    ) -> bool {
        let (d, user) = self.domains.split_key(key);
        let header = if status == 407 {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let secs = self.unix_secs(now);
        let outcome = self.domains.get_mut(d).auth.check_request(
            secs,
            req.method.as_str(),
            req.headers.get_all(&header),
            user,
            request_id(req),
        );
        match outcome {
            AuthOutcome::Authorized { .. } => {
                req.headers.remove_all(&header);
                return true;
            }
            AuthOutcome::Challenge { stale } => {
                self.challenge(now, tx, req, d, secs, stale, status)
            }
            AuthOutcome::Failed { user } => {
                if self.auth_failed(now, tx, source, &user) {
                    self.challenge(now, tx, req, d, secs, false, status);
                }
            }
        }
        false
    }

    pub(super) fn register(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        mut req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let to = match req.headers.to() {
            Ok(to) => to.uri,
            Err(_) => return self.reply(now, tx, &req, 400, vec![]),
        };
        // RFC 3261 §10.3 step 1: bindings only for a domain we serve (the Request-URI's), and
        // the AOR (To) must be one of ours too: else 403, as Kamailio's `is_domain_local`
        // check answers (this registrar does not forward REGISTERs to other domains).
        let d = match (self.domain_of(&req.uri.host), self.domain_of(&to.host)) {
            (Some(_), Some(d)) if to.is_sip() => d,
            // An AOR that is not a sip/sips URI names no user here: authentication (§10.3
            // step 3) still comes first, in the Request-URI's domain, then the registrar's 404
            // (step 5), as RFC 4475 §3.3.4 (unksm2) expects.
            (Some(d), _) if !to.is_sip() => d,
            _ => return self.reply(now, tx, &req, 403, vec![]),
        };
        let aor_user = self.domains.key(d, to.user.as_deref().unwrap_or_default());
        if !self.authenticate(now, tx, &mut req, source, &aor_user, 401) {
            return;
        }
        if !self.store_available {
            // The bindings' store is unreachable: a binding made now could be lost, so the
            // client is asked to come back (calls to the bindings held here still work).
            self.stats.store_unavailable += 1;
            return self.reply_overloaded(now, tx, &req);
        }
        let policy = self.domains.get(d).registrar;
        self.registrar.min_expires = policy.min_expires;
        self.registrar.max_expires = policy.max_expires;
        self.registrar.default_expires = policy.default_expires;
        self.registrar.location.max_bindings_per_aor = policy.max_bindings_per_aor;
        let unix = self.unix_secs(now);
        let path = self.register_path(&req, source, transport);
        let mut resp = self
            .registrar
            .handle_register_to(unix, &req, &to, &aor_user, source, transport, &path);
        Self::echo_path(&req, &mut resp);
        let ok = resp.status == 200;
        if ok {
            self.stats.registrations += 1;
            if transport.is_reliable() && self.new_flows.len() < MAX_NEW_FLOWS {
                self.new_flows.push(source);
            }
        }
        reply::send_authenticated_response(&mut self.tl, &mut self.stats, now, tx, resp);
        if ok {
            // Offline messages go to the binding this REGISTER made (RFC 3428).
            self.deliver_offline(now, &aor_user, source);
        }
    }
}

/// Identifies one request across its retransmissions (top Via, Call-ID, CSeq), for the digest
/// nonce-count check ([`Authenticator::check_request`]).
fn request_id(req: &Request) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for name in [HeaderName::Via, HeaderName::CallId, HeaderName::CSeq] {
        req.headers.get(&name).map(|v| v.as_bytes()).hash(&mut h);
    }
    h.finish()
}
