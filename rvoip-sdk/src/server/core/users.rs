//! Requests for this server's own domain (RFC 3261 §16.5): authentication of local senders
//! (407), the media checks a relaying proxy needs (415, 406), the location lookup of the
//! Request-URI's user (404 unknown, 480 no binding, in [`super::forward`] with call forwarding)
//! and the forwarding targets of a user's bindings (NAT and connection flows, TLS-only contacts); requests for other domains go on to
//! [`super::outbound`].

use std::net::SocketAddr;
use std::time::Instant;

use super::domains::DomainId;
use super::*;

impl ServerCore {
    /// The location key of the sender when the From header names one of the served domains
    /// (Kamailio's `from_uri==myself`, per domain), with that domain.
    pub(super) fn local_from(&self, req: &Request) -> Option<(DomainId, String)> {
        let from = req.headers.from().ok()?;
        if !from.uri.is_sip() {
            return None;
        }
        let d = self.domain_of(&from.uri.host)?;
        Some((
            d,
            self.domains
                .key(d, from.uri.user.as_deref().unwrap_or_default()),
        ))
    }

    /// The location key of the sender when its From names a served domain.
    pub(super) fn local_from_user(&self, req: &Request) -> Option<ByteString> {
        self.local_from(req).map(|(_, key)| ByteString::from(key))
    }

    pub(super) fn route_to_user(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        mut req: Request,
        source: SocketAddr,
        transport: Transport,
        loop_hash: u64,
    ) {
        // Another domain: only this server's own users may send there (no open relay, checked
        // below), and when requests are authenticated, every such request is (whatever its
        // method).
        let foreign = self.is_foreign(&req.uri);
        // A route to a trunk or gateway ([`super::dispatch`]): authenticated as for another
        // domain.
        let dispatch_set = self.dispatch_route(&req);
        let mut authenticated = false;
        let challenged = foreign
            || dispatch_set.is_some()
            || matches!(
                req.method,
                Method::Invite | Method::Message | Method::Subscribe
            )
            || (req.method == Method::Publish && self.presence.enabled);
        if let Some((d, from_user)) = self.local_from(&req) {
            // The From domain's own policy and realm.
            if challenged && self.domains.get(d).invite_auth {
                if !self.authenticate(now, tx, &mut req, source, &from_user, 407) {
                    return;
                }
                authenticated = true;
            }
        }
        if req.method == Method::Invite {
            // This server anchors media later (relay), so it must understand the session
            // description: RFC 4475 §3.3.6 (415) and §3.3.15 (406).
            if !req.body.is_empty() {
                let ct = req
                    .headers
                    .content_type()
                    .map(|c| c.to_ascii_lowercase())
                    .unwrap_or_default();
                if !(ct.starts_with("application/sdp") || ct.starts_with("multipart/")) {
                    return self.reply(
                        now,
                        tx,
                        &req,
                        415,
                        vec![(HeaderName::Accept, "application/sdp".into())],
                    );
                }
            }
            let accepts: Vec<&ByteString> = req.headers.get_all(&HeaderName::Accept).collect();
            if !accepts.is_empty() {
                let ok = accepts.iter().flat_map(|a| a.split(',')).any(|t| {
                    let t = t
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    t == "application/sdp" || t == "application/*" || t == "*/*"
                });
                if !ok {
                    return self.reply(
                        now,
                        tx,
                        &req,
                        406,
                        vec![(HeaderName::Accept, "application/sdp".into())],
                    );
                }
            }
        }
        if !foreign
            && dispatch_set.is_none()
            && self.presence_request(now, tx, &req, source, transport, authenticated)
        {
            return;
        }
        if !self.admit_held(now, tx, &req, source) {
            return;
        }
        let user = self.request_key(&req);
        if req.method == Method::Invite && self.records(&req, &user) {
            if let Some(call_id) = req.headers.get(&HeaderName::CallId) {
                let call_id = call_id.to_string();
                self.proxy.record_call(&call_id);
            }
        }
        if let Some(set) = dispatch_set {
            return self.dispatch_request(now, tx, req, source, transport, set, authenticated);
        }
        if foreign {
            if self.local_from_user(&req).is_none() {
                self.stats.relay_denied += 1;
                return self.reply(now, tx, &req, 403, vec![]);
            }
            return self.route_foreign(now, tx, req, source, transport, loop_hash);
        }
        if let Some(room) = self.conference_room(&req) {
            return self.conference_request(now, tx, req, source, transport, room, authenticated);
        }
        self.route_local(now, tx, req, source, transport, loop_hash, authenticated);
    }

    /// The recording policy: every call (`record_calls`), or the calls of the users listed in
    /// `record_users`, as caller (a local From) or callee (`callee`, the Request-URI user).
    fn records(&self, req: &Request, callee: &str) -> bool {
        if self.record_all {
            return true;
        }
        if self.record_users.is_empty() {
            return false;
        }
        self.record_users.contains(callee)
            || self
                .local_from_user(req)
                .is_some_and(|u| self.record_users.contains(u.as_ref() as &str))
    }
    /// The forwarding targets for a user: its registered contacts, best q first. A binding
    /// behind a NAT is reached at the flow its REGISTER came from (the source address, and for
    /// TCP and TLS the connection). One whose contact needs TLS (sips:, transport=tls) is used
    /// only when it registered over TLS (down that connection), never reached in plaintext.
    /// A user agent instance that registered several flows (RFC 5626) is reached over the one
    /// refreshed last ([`crate::server::outbound::one_flow_per_instance`]).
    /// `user` is the location key ([`crate::server::domains::aor_key`]).
    pub(crate) fn proxy_targets(&self, now: Instant, user: &str) -> Vec<Target> {
        let bindings = self.registrar.location.lookup(user, self.unix_secs(now));
        crate::server::outbound::one_flow_per_instance(bindings)
            .into_iter()
            .filter(|b| route::flow_reachable(&b.contact, b.transport))
            .filter_map(|b| self.path_target(b))
            .collect()
    }
}

/// Where requests for binding `b` go (see [`ServerCore::proxy_targets`]).
pub(super) fn binding_target(b: &crate::server::location::Binding) -> Target {
    let (dest, transport) = match b.transport {
        Transport::Udp if !b.behind_nat => {
            route::resolve(&b.contact).unwrap_or((b.source, Transport::Udp))
        }
        Transport::Udp => (b.source, Transport::Udp),
        // Stream bindings reuse the connection the REGISTER came on, over the same transport.
        t => (b.source, t),
    };
    Target {
        uri: Some(b.contact.clone()),
        dest,
        transport,
        nat: b.behind_nat,
        alternates: Vec::new(),
        route: Vec::new(),
        flow: false,
    }
}
