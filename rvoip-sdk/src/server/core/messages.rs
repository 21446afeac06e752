//! Offline instant messages (RFC 3428, [`crate::server::offline`]): a MESSAGE for a known user
//! without a binding is stored and answered 202 Accepted; the user's next successful REGISTER
//! sends every stored message to the binding that REGISTER made, each as a new non-INVITE
//! client transaction of the server (From: the original sender, the original Content-Type and
//! body, and a Date header with the time it was received). A 2xx removes it; a failure
//! (non-2xx, timeout, transport error) keeps it for the REGISTER after.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::*;
use crate::server::offline::{MessageStore, StoredMessage};
use crate::server::proxy::Proxy;
use crate::sip::msg::{Headers, NameAddr, sip_date};
use crate::sip::transaction::ClientTxId;

/// The offline store and the deliveries in flight.
pub(super) struct Offline {
    /// `None` when `offline_messages` is off.
    pub store: Option<Box<dyn MessageStore>>,
    /// Delivery transactions: (user, message id).
    pub in_flight: HashMap<ClientTxId, (String, u64)>,
}

impl std::fmt::Debug for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offline")
            .field("stored", &self.store.as_ref().map(|s| s.len()))
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

/// A header value (From, To) without its `tag` parameter.
fn without_tag(v: &ByteString) -> String {
    match NameAddr::parse(v) {
        Ok(mut na) => {
            let params: Vec<&str> = na
                .params
                .0
                .split(';')
                .filter(|p| !p.is_empty())
                .filter(|p| {
                    !p.split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("tag")
                })
                .collect();
            let joined: String = params.iter().map(|p| format!(";{p}")).collect();
            na.params = crate::sip::msg::Params(ByteString::from(joined));
            na.angle = true;
            na.to_string()
        }
        Err(_) => v.to_string(),
    }
}

impl ServerCore {
    /// Replaces the offline message store (e.g. a durable one); messages in the old store are
    /// dropped. A store is used even when `offline_messages` was off.
    pub fn set_message_store(&mut self, store: Box<dyn MessageStore>) {
        self.offline.store = Some(store);
        self.offline.in_flight.clear();
    }

    /// How many offline messages are stored.
    pub fn offline_messages(&self) -> usize {
        self.offline.store.as_ref().map_or(0, |s| s.len())
    }

    /// A MESSAGE for a local user without a binding: stored and answered 202 (true), 486
    /// "Offline Store Full" over the user's limits (true), or left to the caller (false: the
    /// store is off, or the user is unknown to an authenticated sender, who gets 404). To a
    /// sender that did not authenticate, an unknown user's MESSAGE is also answered 202 and
    /// dropped, so that 202 does not tell which users exist.
    pub(super) fn store_offline(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        authenticated: bool,
    ) -> bool {
        let received_unix = self.unix_secs(now);
        let user = self.request_key(req);
        let known = self.user_known(&user);
        let Some(store) = self.offline.store.as_mut() else {
            return false;
        };
        if !known {
            if authenticated {
                return false;
            }
            self.reply(now, tx, req, 202, vec![]);
            return true;
        }
        let (Some(from), Some(to)) = (
            req.headers.get(&HeaderName::From),
            req.headers.get(&HeaderName::To),
        ) else {
            return false;
        };
        let msg = StoredMessage {
            id: 0,
            from: without_tag(from),
            to: without_tag(to),
            content_type: req.headers.content_type().map(|c| c.to_string()),
            body: req.body.clone(),
            received_unix,
        };
        match store.push(&user, msg) {
            Ok(_) => {
                self.stats.offline_stored += 1;
                self.reply(now, tx, req, 202, vec![]);
            }
            Err(e) => {
                tracing::info!(%user, error = %e, "offline message refused");
                let mut resp = Response::for_request(req, 486);
                resp.reason = ByteString::from_static("Offline Store Full");
                if let Some(to) = req.headers.get(&HeaderName::To) {
                    let v = format!("{to};tag={}", self.replier.new_tag());
                    resp.headers.set(HeaderName::To, v);
                }
                self.stats.rejected += 1;
                self.send_local_response(now, tx, resp);
            }
        }
        true
    }

    /// After a successful REGISTER of `user` from `source`: sends each stored message not
    /// already on its way to the binding that REGISTER made (else the user's best one).
    pub(super) fn deliver_offline(&mut self, now: Instant, user: &str, source: SocketAddr) {
        let Some(store) = self.offline.store.as_ref() else {
            return;
        };
        let pending = store.pending(user);
        if pending.is_empty() {
            return;
        }
        let bindings: Vec<&crate::server::location::Binding> = self
            .registrar
            .location
            .lookup(user, self.unix_secs(now))
            .into_iter()
            .filter(|b| route::flow_reachable(&b.contact, b.transport))
            .collect();
        let Some(binding) = bindings
            .iter()
            .find(|b| b.source == source)
            .or(bindings.first())
        else {
            return;
        };
        let target = users::binding_target(binding);
        let Some(uri) = target.uri.clone() else {
            return;
        };
        for msg in pending {
            if self.offline.in_flight.values().any(|(_, id)| *id == msg.id) {
                continue;
            }
            let mut h = Headers::with_capacity(10);
            h.push(
                HeaderName::From,
                format!("{};tag={}", msg.from, self.replier.new_tag()),
            );
            h.push(HeaderName::To, msg.to.clone());
            h.push(
                HeaderName::CallId,
                format!("{}@{}", self.replier.new_tag(), self.local.domain),
            );
            h.push(HeaderName::CSeq, "1 MESSAGE");
            h.push(HeaderName::Date, sip_date(msg.received_unix));
            if let Some(ct) = &msg.content_type {
                h.push(HeaderName::ContentType, ct.clone());
            }
            let mut req = Request {
                method: Method::Message,
                uri: uri.clone(),
                headers: h,
                body: msg.body.clone(),
            };
            let hash = route::loop_hash(&req);
            let (_, mut io) = self.io();
            Proxy::prepare_forward(
                &mut io,
                &mut req,
                target.transport,
                target.transport,
                false,
                hash,
            );
            let ctid = self
                .tl
                .send_request(now, req, target.dest, target.transport);
            self.offline
                .in_flight
                .insert(ctid, (user.to_string(), msg.id));
        }
    }

    /// The outcome of a delivery transaction, if `tx` is one (true): a 2xx removes the
    /// message; a provisional response is waited on; anything else keeps it.
    pub(super) fn delivery_outcome(&mut self, tx: ClientTxId, status: Option<u16>) -> bool {
        if status.is_some_and(|s| s < 200) {
            return self.offline.in_flight.contains_key(&tx);
        }
        let Some((user, id)) = self.offline.in_flight.remove(&tx) else {
            return false;
        };
        if status.is_some_and(|s| (200..300).contains(&s)) {
            if let Some(store) = self.offline.store.as_mut() {
                store.remove(&user, id);
            }
            self.stats.offline_delivered += 1;
        } else {
            tracing::debug!(%user, id, ?status, "offline message kept for the next REGISTER");
        }
        true
    }

    /// Drops the stored messages past their time to live.
    pub(super) fn expire_offline(&mut self, now: Instant) {
        let secs = self.unix_secs(now);
        if let Some(store) = self.offline.store.as_mut() {
            let n = store.expire(secs);
            if n > 0 {
                tracing::debug!(expired = n, "offline messages expired");
            }
        }
    }
}
