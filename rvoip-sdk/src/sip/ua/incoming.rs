//! Requests arriving at the user agent (RFC 3261 §8.2, §12.2.2): ACK for a 2xx, CANCEL (§9.2),
//! in-dialog requests handed to their call (481 without one), a new INVITE (a new incoming
//! call), OPTIONS (§11.2), MESSAGE (RFC 3428), and 405 with `Allow` for everything else.

use std::net::SocketAddr;
use std::time::Instant;

use super::*;

impl UserAgent {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        tx: Option<ServerTxId>,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        local: SocketAddr,
    ) {
        let Some(tx) = tx else {
            // ACK for a 2xx: find the dialog.
            if req.method == Method::Ack {
                let found = self
                    .invite_usage(&req)
                    .and_then(|id| self.calls.get_mut(&id).map(|c| (id, c)))
                    .map(|(id, c)| (id, c.on_ack(now, cx!(self), &req)));
                if let Some((id, (ev, tx))) = found {
                    if let Some(tx) = tx {
                        self.owners.insert(tx, Owner::InDialog(id));
                    }
                    self.events.extend(ev);
                }
            }
            return;
        };
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        match req.method {
            Method::Cancel => {
                let invite = self.tl.matching_invite(&req);
                let ok = build::response(&req, 200, None, None);
                let Some(inv) = invite else {
                    let resp = build::response(&req, 481, None, None);
                    self.tl.respond(now, tx, resp);
                    return;
                };
                self.tl.respond(now, tx, ok);
                if let Some(c) = self.calls.values_mut().find(|c| c.server_tx() == Some(inv)) {
                    let ev = c.on_cancel(now, cx!(self));
                    self.events.extend(ev);
                }
            }
            _ if to_tag.is_some() => self.on_in_dialog(now, tx, req),
            Method::Invite => {
                let replaces = match req.headers.get(&HeaderName::Replaces) {
                    None => None,
                    Some(v) => match self.replaced_call(v) {
                        Some(old) => Some(old),
                        None => {
                            // RFC 3891 §3: no matching dialog (or it ended).
                            let resp = build::response(&req, 481, Some(&build::token()), None);
                            self.tl.respond(now, tx, resp);
                            return;
                        }
                    },
                };
                let account = self.account_for(&req);
                let srtp = account
                    .and_then(|a| self.accounts.get(&a))
                    .map_or(self.cfg.srtp, |r| r.cfg.srtp);
                let contact_addr = self.contact_addr_for(account, local);
                let id = self.alloc();
                let (call, ev) = Call::new_incoming(
                    id,
                    account,
                    now,
                    cx!(self),
                    tx,
                    req,
                    source,
                    transport,
                    local,
                    contact_addr,
                    &self.cfg,
                    srtp,
                    replaces,
                );
                self.events.extend(ev);
                if let Some(call) = call {
                    self.calls.insert(id, call);
                    if let Some(old) = replaces {
                        self.replacing.insert(id, old);
                    }
                }
            }
            Method::Options => {
                let mut resp = build::response(&req, 200, Some(&build::token()), None);
                resp.headers.push(HeaderName::Allow, build::ALLOW);
                resp.headers.push(HeaderName::Accept, "application/sdp");
                self.tl.respond(now, tx, resp);
            }
            Method::Message => self.on_message_request(now, tx, &req),
            Method::Bye => {
                let resp = build::response(&req, 481, None, None);
                self.tl.respond(now, tx, resp);
            }
            _ => {
                let mut resp = build::response(&req, 405, Some(&build::token()), None);
                resp.headers.push(HeaderName::Allow, build::ALLOW);
                self.tl.respond(now, tx, resp);
            }
        }
    }

    /// A request inside a dialog (§12.2.2): 481 without one, 500 for a CSeq out of order, else
    /// to its usage: REFER and NOTIFY of a REFER to the transfer usage (RFC 3515), the rest to
    /// the INVITE usage.
    fn on_in_dialog(&mut self, now: Instant, tx: ServerTxId, req: Request) {
        let Some(key) = self.dialogs.find(&req.headers, true) else {
            // A NOTIFY that overtook the 2xx to our SUBSCRIBE forms its dialog (RFC 6665
            // §4.1.2.4).
            if req.method == Method::Notify {
                if let Some(id) = self.notify_subscription(&req, None) {
                    self.on_sub_notify(now, tx, &req, id);
                    return;
                }
            }
            let resp = build::response(&req, 481, None, None);
            self.tl.respond(now, tx, resp);
            return;
        };
        let seq_ok = match (self.dialogs.get_mut(Some(key)), req.headers.cseq()) {
            (Some(e), Ok(c)) => e.dialog.accept_remote_seq(c.seq),
            _ => false,
        };
        if !seq_ok {
            let resp = build::response(&req, 500, None, None);
            self.tl.respond(now, tx, resp);
            return;
        }
        if req.method == Method::Refer {
            self.on_refer(now, tx, req, key);
            return;
        }
        if req.method == Method::Notify && refer::event_package(&req).as_deref() == Some("refer") {
            self.on_refer_notify(now, tx, &req, key);
            return;
        }
        if req.method == Method::Notify {
            if let Some(id) = self.notify_subscription(&req, Some(key)) {
                self.on_sub_notify(now, tx, &req, id);
                return;
            }
        }
        let call = self.dialogs.get(Some(key)).and_then(|e| e.invite);
        match call.and_then(|id| self.calls.get_mut(&id)) {
            Some(c) => {
                let ev = c.on_in_dialog(now, cx!(self), tx, &req);
                self.events.extend(ev);
            }
            None => {
                let resp = build::response(&req, 481, None, None);
                self.tl.respond(now, tx, resp);
            }
        }
    }

    /// The live call a `Replaces` value names (RFC 3891 §3): its Call-ID, our tag as `to-tag`
    /// and the peer's as `from-tag`.
    fn replaced_call(&self, value: &str) -> Option<u64> {
        let r = refer::ReplacesValue::parse(value)?;
        self.calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, CallState::Ended { .. }))
            .find(|(_, c)| {
                self.dialogs.get(c.dialog).is_some_and(|e| {
                    *e.dialog.call_id == *r.call_id
                        && *e.dialog.local_tag == *r.to_tag
                        && *e.dialog.remote_tag == *r.from_tag
                })
            })
            .map(|(id, _)| *id)
    }

    /// The call whose dialog an incoming request belongs to (§12.2.2).
    fn invite_usage(&self, req: &Request) -> Option<u64> {
        let key = self.dialogs.find(&req.headers, true)?;
        self.dialogs.get(Some(key))?.invite
    }

    /// The address a dialog of `account` over the socket at `local` names in its Contact:
    /// the account's learned public address (RFC 3581 §4) when the dialog uses the socket
    /// the account registers from, else `local`.
    pub(super) fn contact_addr_for(&self, account: Option<u64>, local: SocketAddr) -> SocketAddr {
        account
            .and_then(|a| self.accounts.get(&a))
            .filter(|r| r.cfg.local == local)
            .map_or(local, |r| r.contact_addr())
    }

    /// The account an incoming request is for (RFC 3261 §8.2.2.1 leaves the mapping to the
    /// UA): the one whose registered Contact's `line` parameter the Request-URI carries, else
    /// the one whose AOR user and host it names, else the one whose user it names at our own
    /// address (a request sent to the Contact), else the first whose user it names.
    pub(super) fn account_for(&self, req: &Request) -> Option<u64> {
        let uri = &req.uri;
        if let Some(Some(line)) = uri.param("line") {
            if let Some((id, _)) = self.accounts.iter().find(|(_, r)| r.line == line) {
                return Some(*id);
            }
        }
        let user = uri.user.as_deref()?;
        let mut named: Vec<(&u64, &register::Registration)> = self
            .accounts
            .iter()
            .filter(|(_, r)| r.cfg.aor.user.as_deref() == Some(user))
            .collect();
        named.sort_by_key(|(id, _)| **id);
        let aor_host = named.iter().find(|(_, r)| {
            r.cfg.aor.host.eq_ignore_ascii_case(&uri.host)
                && r.cfg.aor.port.unwrap_or(5060) == uri.port.unwrap_or(5060)
        });
        let local = named.iter().find(|(_, r)| {
            build::host_of(r.cfg.local.ip()) == *uri.host && Some(r.cfg.local.port()) == uri.port
        });
        aor_host.or(local).or(named.first()).map(|(id, _)| **id)
    }
}
