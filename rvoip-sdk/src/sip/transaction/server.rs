//! Server transactions (RFC 3261 §17.2, Figures 7 and 8; RFC 6026 §7.1): matching a received
//! request to its transaction (or creating one and passing the request up), sending the TU's
//! responses and their retransmissions, and where those responses go (§18.2.2, RFC 3581).

#![allow(clippy::collapsible_if)]

use super::load::{held_cost, settle};
use super::*;

impl TransactionLayer {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let via = req.headers.top_via().ok();
        let key = via.as_ref().and_then(|v| server_key(v, &req.method));
        // Hashed once: for the lookups below and, for a new transaction, the index.
        let key_hash = key.as_ref().map_or(0, |k| self.server_index.hash(k));
        let key_ref = key.as_ref().map(|k| (k, key_hash));
        let legacy = if key.is_none() {
            Some(LegacyKey::of(&req))
        } else {
            None
        };

        if req.method == Method::Ack {
            let id = self.find_server(key_ref, legacy.as_ref(), LegacyMatch::Ack);
            if let Some(id) = id {
                if let Some(tx) = self.servers.get_mut(&id) {
                    if tx.invite {
                        match tx.state {
                            ServerState::Completed => {
                                self.counts.request(method_index(&Method::Ack));
                                tx.state = ServerState::Confirmed;
                                tx.last_resp = None;
                                tx.retx_at = None;
                                if tx.transport.is_reliable() {
                                    self.remove_server(id);
                                } else {
                                    let at = now + self.cfg.t4;
                                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                                }
                                return;
                            }
                            ServerState::Confirmed => {
                                self.counts.retransmissions_received += 1;
                                return;
                            }
                            _ => {}
                        }
                    }
                }
            }
            self.counts.request(method_index(&Method::Ack));
            self.events.push_back(TxEvent::Request {
                tx: None,
                req,
                source,
                transport,
            });
            return;
        }

        let existing = self.find_server(key_ref, legacy.as_ref(), LegacyMatch::Same);
        if let Some(id) = existing {
            if let Some(tx) = self.servers.get(&id) {
                self.counts.retransmissions_received += 1;
                // A retransmission (§17.2.1, §17.2.2): re-send the last response, if any.
                match tx.state {
                    ServerState::Proceeding | ServerState::Completed => {
                        if let Some(b) = &tx.last_resp {
                            push_transmit(&mut self.transmits, tx.dest, tx.transport, b.clone());
                        }
                    }
                    ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => {}
                }
                return;
            }
        }

        let id = self.alloc_id();
        let invite = req.method == Method::Invite;
        let method = method_index(&req.method);
        self.counts.request(method);
        let dest = response_dest(via.as_ref(), source, transport);
        match (&key, &legacy) {
            (Some(_), _) => {
                // No live transaction has this key: `find_server` found none above.
                self.server_index.insert(key_hash, id);
            }
            (None, Some(l)) => self
                .legacy_index
                .entry(l.call_id.clone())
                .or_default()
                .push(id),
            (None, None) => {}
        }
        let mut tx = ServerTx {
            invite,
            // METHOD_SLOTS (15) fits a u8.
            method: method as u8,
            started: now,
            answered: false,
            state: ServerState::Trying,
            request: (invite || self.keep_non_invite_requests).then(|| {
                Box::new(match self.keep_request_heads {
                    true => req.response_head(),
                    false => req.clone(),
                })
            }),
            wire_len: self.incoming_len,
            in_progress: true,
            key: key.map(|k| k.detached()),
            key_hash,
            legacy: legacy.map(Box::new),
            dest,
            transport,
            last_resp: None,
            resp_to_tag: None,
            retx_interval: self.cfg.t1,
            retx_at: None,
            end_at: None,
        };
        if invite && self.defer_trying {
            self.owed_trying.push(id);
            tx.state = ServerState::Proceeding;
        } else if invite {
            let trying = Response::for_request(&req, 100).to_bytes();
            self.counts.response(method, 100);
            push_transmit(&mut self.transmits, dest, transport, trying.clone());
            tx.last_resp = Some(trying);
            tx.state = ServerState::Proceeding;
        }
        let cost = held_cost(tx.wire_len);
        self.held_bytes += cost;
        let load = self.per_source.entry(tx.dest.ip()).or_default();
        load.0 += 1;
        load.1 += cost;
        self.servers.insert(id, Box::new(tx));
        self.events.push_back(TxEvent::Request {
            tx: Some(ServerTxId(id)),
            req,
            source,
            transport,
        });
    }

    /// Send a response on a server transaction (1xx..6xx). Destination per §18.2.2 + RFC 3581:
    /// reliable transport → the source address of the request; UDP with `rport` → the source
    /// address; UDP without → (source IP, Via sent-by port or 5060). Returns false if the
    /// transaction is unknown or already completed (a 2xx after a 2xx is allowed for INVITE in the
    /// Accepted state: forwarded 2xx retransmissions).
    pub fn respond(&mut self, now: Instant, tx: ServerTxId, resp: Response) -> bool {
        let id = tx.0;
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return false;
        }
        let Some(tx) = self.servers.get_mut(&id) else {
            return false;
        };
        let sendable = match tx.state {
            ServerState::Trying | ServerState::Proceeding => true,
            ServerState::Accepted => (200..300).contains(&status),
            ServerState::Completed | ServerState::Confirmed => false,
        };
        if sendable {
            note_sent(&mut self.counts, tx, now, status);
        }
        let reliable = tx.transport.is_reliable();
        match tx.state {
            ServerState::Proceeding if tx.invite => {
                let bytes = resp.to_bytes();
                push_transmit(&mut self.transmits, tx.dest, tx.transport, bytes.clone());
                tx.last_resp = Some(bytes);
                if tx.legacy.is_some() {
                    tx.resp_to_tag = resp.headers.to().ok().and_then(|n| tag_of(&n));
                }
                tx.request = None;
                settle(&mut self.held_bytes, &mut self.per_source, tx);
                if (200..300).contains(&status) {
                    tx.state = ServerState::Accepted;
                    tx.last_resp = None;
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                } else if status >= 300 {
                    tx.state = ServerState::Completed;
                    if !reliable {
                        tx.retx_interval = self.cfg.t1;
                        let at = now + self.cfg.t1;
                        arm(&mut self.timers, &mut tx.retx_at, at, id, Slot::ServerRetx);
                    }
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                }
                true
            }
            ServerState::Accepted => {
                if !(200..300).contains(&status) {
                    return false;
                }
                push_transmit(&mut self.transmits, tx.dest, tx.transport, resp.to_bytes());
                true
            }
            ServerState::Trying | ServerState::Proceeding => {
                let bytes = resp.to_bytes();
                push_transmit(&mut self.transmits, tx.dest, tx.transport, bytes.clone());
                tx.last_resp = Some(bytes);
                if status < 200 {
                    tx.state = ServerState::Proceeding;
                } else {
                    tx.state = ServerState::Completed;
                    tx.request = None;
                    settle(&mut self.held_bytes, &mut self.per_source, tx);
                    if reliable {
                        self.remove_server(id);
                    } else {
                        let at = now + self.cfg.t64();
                        arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ServerEnd);
                    }
                }
                self.prune();
                true
            }
            ServerState::Completed | ServerState::Confirmed => false,
        }
    }

    /// Sends a final response and forgets the server transaction at once (§8.2.7 stateless UAS
    /// behaviour, as a registrar or an element rejecting a request may use). A retransmitted
    /// request then starts a new transaction and is answered again. Returns false if the
    /// transaction is unknown or the status is not final.
    /// `now` times the request's first answer ([`MessageCounts::first_response_latency`]).
    pub fn respond_stateless(&mut self, now: Instant, tx: ServerTxId, resp: Response) -> bool {
        if !(200..=699).contains(&resp.status) {
            return false;
        }
        let Some(t) = self.servers.get_mut(&tx.0) else {
            return false;
        };
        if !matches!(t.state, ServerState::Trying | ServerState::Proceeding) {
            return false;
        }
        note_sent(&mut self.counts, t, now, resp.status);
        push_transmit(&mut self.transmits, t.dest, t.transport, resp.to_bytes());
        self.remove_server(tx.0);
        true
    }

    /// The original request of a live server transaction (the proxy builds CANCEL/branch state
    /// from it), until its final response; `None` for a non-INVITE one when
    /// [`TransactionLayer::set_keep_non_invite_requests`] is off; only its response head when
    /// [`TransactionLayer::set_keep_request_heads`] is on.
    pub fn server_request(&self, tx: ServerTxId) -> Option<&Request> {
        self.servers.get(&tx.0).and_then(|t| t.request.as_deref())
    }

    /// For a CANCEL request: the INVITE server transaction it cancels (§9.2: same branch, sent-by
    /// etc. with method INVITE, or the RFC 2543 rules), if live.
    pub fn matching_invite(&self, cancel: &Request) -> Option<ServerTxId> {
        let via = cancel.headers.top_via().ok();
        let id = match via.as_ref().and_then(|v| server_key(v, &Method::Invite)) {
            Some(k) => self.find_server_by_key(&k, self.server_index.hash(&k)),
            None => self.find_legacy(&LegacyKey::of(cancel), LegacyMatch::Cancel),
        }?;
        self.servers
            .get(&id)
            .filter(|t| t.invite)
            .map(|_| ServerTxId(id))
    }

    /// Whether a server transaction has sent a final response (or is unknown).
    pub fn server_is_final(&self, tx: ServerTxId) -> bool {
        self.servers
            .get(&tx.0)
            .is_none_or(|t| !matches!(t.state, ServerState::Trying | ServerState::Proceeding))
    }

    pub(super) fn remove_server(&mut self, id: u64) {
        let Some(tx) = self.servers.remove(&id) else {
            return;
        };
        let mut tx = tx;
        settle(&mut self.held_bytes, &mut self.per_source, &mut tx);
        if tx.key.is_some() {
            self.server_index.remove(tx.key_hash, id);
        }
        if let Some(l) = tx.legacy {
            if let Some(ids) = self.legacy_index.get_mut(&l.call_id) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.legacy_index.remove(&l.call_id);
                }
            }
        }
    }
}

/// Counts a response with `status` sent on `tx` at `now`, and the request's first-answer
/// latency when it is the first response other than 100 Trying.
fn note_sent(counts: &mut MessageCounts, tx: &mut ServerTx, now: Instant, status: u16) {
    let method = usize::from(tx.method);
    counts.response(method, status);
    if status > 100 && !tx.answered {
        tx.answered = true;
        counts.latency(method, now.saturating_duration_since(tx.started));
    }
}

/// Where the responses of a server transaction go (§18.2.2, RFC 3581). The `received` parameter
/// of an incoming Via is not trusted: the source IP is what a correct `received` would say, and
/// using it cannot be turned into a reflection attack.
pub(super) fn response_dest(
    via: Option<&Via>,
    source: SocketAddr,
    transport: Transport,
) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    match via {
        Some(v) if !v.has_rport() => SocketAddr::new(source.ip(), v.port.unwrap_or(5060)),
        _ => source,
    }
}
