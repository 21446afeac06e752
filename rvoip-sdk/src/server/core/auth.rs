//! Digest authentication of REGISTER (RFC 3261 §22, RFC 7616, RFC 8760): the challenges the
//! server sends and the registrar path behind them.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;

impl ServerCore {
    /// The digest challenges to send (RFC 8760 §2.4: one per configured algorithm, in order).
    pub(super) fn challenges(&self, secs: u64, stale: bool) -> Vec<String> {
        let [sha256, md5] = self.auth.challenges(secs, stale);
        self.digest_algorithms
            .iter()
            .map(|a| match a {
                Algorithm::Sha256 => sha256.clone(),
                Algorithm::Md5 => md5.clone(),
            })
            .collect()
    }

    /// Answers `req` with a 401 or 407 `status` carrying the challenges.
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
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
            .challenges(secs, stale)
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

    /// Checks the digest credentials of `req` for `user` (RFC 3261 §22.2 with `status` 401 and
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
        user: &str,
        status: u16,
    ) -> bool {
        let header = if status == 407 {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let secs = self.unix_secs(now);
        let outcome = self.auth.check_request(
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
            AuthOutcome::Challenge { stale } => self.challenge(now, tx, req, secs, stale, status),
            AuthOutcome::Failed { user } => {
                if self.auth_failed(now, tx, source, &user) {
                    self.challenge(now, tx, req, secs, false, status);
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
        let aor_user = match req.headers.to() {
            Ok(to) => to.uri.user.clone().unwrap_or_default(),
            Err(_) => return self.reply(now, tx, &req, 400, vec![]),
        };
        if !self.authenticate(now, tx, &mut req, source, &aor_user, 401) {
            return;
        }
        if !self.store_available {
            // The bindings' store is unreachable: a binding made now could be lost, so the
            // client is asked to come back (calls to the bindings held here still work).
            self.stats.store_unavailable += 1;
            return self.reply_overloaded(now, tx, &req);
        }
        let resp = self
            .registrar
            .handle_register(self.unix_secs(now), &req, source, transport);
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
