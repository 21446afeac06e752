//! Client transactions (RFC 3261 §17.1, Figures 5 and 6; RFC 6026 §7.2): sending requests,
//! matching responses to them, the automatic ACK of a non-2xx final response (§17.1.1.3), and
//! transport failures (§8.1.3.1).

#![allow(clippy::collapsible_if)]

use super::load::{held_cost, release_request};
use super::*;

impl TransactionLayer {
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        source: SocketAddr,
        transport: Transport,
    ) {
        let key = resp.headers.top_via().ok().and_then(|v| {
            let branch = branch_of(&v)?;
            let method = resp.headers.cseq().ok()?.method;
            Some(ClientKey { branch, method })
        });
        let id = key
            .as_ref()
            .and_then(|k| self.find_client_by_key(k, self.client_index.hash(k)));
        let Some((id, tx)) = id.and_then(|id| self.clients.get_mut(&id).map(|tx| (id, tx))) else {
            self.events.push_back(TxEvent::StrayResponse {
                resp,
                source,
                transport,
            });
            return;
        };
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return;
        }
        let reliable = tx.transport.is_reliable();
        let txid = ClientTxId(id);
        match tx.state {
            ClientState::Calling | ClientState::Proceeding if tx.invite => {
                tx.retx_at = None;
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                    tx.provisional = true;
                    tx.end_at = None; // Timer B runs in Calling only (Figure 5).
                } else if status < 300 {
                    tx.state = ClientState::Accepted;
                    tx.request = None;
                    release_request(&mut self.held_bytes, &mut tx.bytes);
                    let at = now + self.cfg.t64();
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
                } else {
                    if let Some(req) = tx.request.take() {
                        let ack = build_ack(&req, &resp).to_bytes();
                        push_transmit(&mut self.transmits, tx.dest, tx.transport, ack.clone());
                        tx.ack = Some(ack);
                    }
                    release_request(&mut self.held_bytes, &mut tx.bytes);
                    tx.state = ClientState::Completed;
                    if reliable {
                        self.events.push_back(TxEvent::Response { tx: txid, resp });
                        self.remove_client(id);
                        return;
                    }
                    arm(
                        &mut self.timers,
                        &mut tx.end_at,
                        now + TIMER_D,
                        id,
                        Slot::ClientEnd,
                    );
                }
                self.events.push_back(TxEvent::Response { tx: txid, resp });
            }
            ClientState::Completed if tx.invite => {
                if status >= 300 {
                    if let Some(ack) = &tx.ack {
                        push_transmit(&mut self.transmits, tx.dest, tx.transport, ack.clone());
                    }
                }
            }
            ClientState::Accepted => {
                if (200..300).contains(&status) {
                    self.events.push_back(TxEvent::Response { tx: txid, resp });
                }
            }
            ClientState::Trying | ClientState::Proceeding => {
                if status < 200 {
                    tx.state = ClientState::Proceeding;
                    tx.provisional = true;
                } else {
                    tx.state = ClientState::Completed;
                    tx.retx_at = None;
                    tx.request = None;
                    release_request(&mut self.held_bytes, &mut tx.bytes);
                    if reliable {
                        self.events.push_back(TxEvent::Response { tx: txid, resp });
                        self.remove_client(id);
                        return;
                    }
                    let at = now + self.cfg.t4;
                    arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
                }
                self.events.push_back(TxEvent::Response { tx: txid, resp });
            }
            // non-INVITE Completed absorbs; INVITE Calling/Proceeding/Completed handled above.
            ClientState::Calling | ClientState::Completed => {}
        }
    }

    /// Start a client transaction for `req` (its top Via with a fresh branch must already be
    /// there: use [`new_branch`]), sending to `dest`. An ACK creates no transaction (§17.1.1.3): it
    /// is sent once and the returned id is unknown to the layer.
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> ClientTxId {
        let id = self.alloc_id();
        let bytes = req.to_bytes();
        push_transmit(&mut self.transmits, dest, transport, bytes.clone());
        if req.method == Method::Ack {
            return ClientTxId(id);
        }
        let invite = req.method == Method::Invite;
        let key = req
            .headers
            .top_via()
            .ok()
            .and_then(|v| branch_of(&v))
            .map(|branch| ClientKey {
                branch,
                method: req.method.clone(),
            });
        let key = key.map(|k| k.detached());
        let mut key_hash = 0;
        if let Some(k) = &key {
            // A TU that reuses a live branch gets the responses on the new transaction.
            key_hash = self.client_index.hash(k);
            if let Some(old) = self.find_client_by_key(k, key_hash) {
                self.client_index.remove(key_hash, old);
            }
            self.client_index.insert(key_hash, id);
        }
        let mut tx = ClientTx {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request: Some(Box::new(req)),
            bytes,
            key,
            key_hash,
            dest,
            transport,
            ack: None,
            provisional: false,
            retx_interval: self.cfg.t1,
            retx_at: None,
            end_at: None,
        };
        if !transport.is_reliable() {
            let at = now + self.cfg.t1;
            arm(&mut self.timers, &mut tx.retx_at, at, id, Slot::ClientRetx);
        }
        let at = now + self.cfg.t64();
        arm(&mut self.timers, &mut tx.end_at, at, id, Slot::ClientEnd);
        self.held_bytes += held_cost(tx.bytes.len());
        self.clients.insert(id, Box::new(tx));
        ClientTxId(id)
    }

    /// Send bytes outside any transaction (ACK for 2xx forwarded by a proxy, stateless forwarding
    /// of stray responses).
    pub fn send_stateless(&mut self, dest: SocketAddr, transport: Transport, bytes: Bytes) {
        push_transmit(&mut self.transmits, dest, transport, bytes);
    }

    /// The transport layer failed to send a client transaction's request (§17.1.4): the
    /// transaction ends with a [`TxEvent::Timeout`] if it had no final response yet. Returns false
    /// if the transaction is unknown.
    pub fn transport_error(&mut self, tx: ClientTxId) -> bool {
        let Some(t) = self.clients.get(&tx.0) else {
            return false;
        };
        if matches!(
            t.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        ) {
            self.events.push_back(TxEvent::Timeout { tx });
        }
        self.remove_client(tx.0);
        self.prune();
        true
    }

    /// The transport could not open (or lost) the connection to `dest` over `transport`: every
    /// live client transaction sending there without a final response yet ends with a
    /// [`TxEvent::TransportError`] carrying `reason` (RFC 3261 §8.1.3.1). Returns how many
    /// ended. Only reliable transports have connections; for UDP this does nothing.
    pub fn connection_failed(
        &mut self,
        dest: SocketAddr,
        transport: Transport,
        reason: &str,
    ) -> usize {
        if !transport.is_reliable() {
            return 0;
        }
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, t)| {
                t.dest == dest
                    && t.transport == transport
                    && matches!(
                        t.state,
                        ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            let request = self.clients.get_mut(id).and_then(|t| t.request.take());
            self.events.push_back(TxEvent::TransportError {
                tx: ClientTxId(*id),
                request,
                reason: reason.to_string(),
            });
            self.remove_client(*id);
        }
        self.prune();
        ids.len()
    }

    /// The original request of a live client transaction (to build a CANCEL for it, §9.1).
    pub fn client_request(&self, tx: ClientTxId) -> Option<&Request> {
        self.clients.get(&tx.0).and_then(|t| t.request.as_deref())
    }

    /// Whether a client INVITE transaction has received a provisional response yet (a CANCEL may
    /// only be sent after one, §9.1).
    pub fn client_has_provisional(&self, tx: ClientTxId) -> bool {
        self.clients.get(&tx.0).is_some_and(|t| t.provisional)
    }

    pub(super) fn remove_client(&mut self, id: u64) {
        let Some(mut tx) = self.clients.remove(&id) else {
            return;
        };
        release_request(&mut self.held_bytes, &mut tx.bytes);
        if tx.key.is_some() {
            self.client_index.remove(tx.key_hash, id);
        }
    }
}

/// The hop-by-hop ACK for a non-2xx final response (§17.1.1.3).
pub(super) fn build_ack(req: &Request, resp: &Response) -> Request {
    let mut h = Headers::with_capacity(8);
    if let Some(v) = req.headers.get(&HeaderName::Via) {
        h.push(HeaderName::Via, v.clone());
    }
    for r in req.headers.get_all(&HeaderName::Route) {
        h.push(HeaderName::Route, r.clone());
    }
    h.push(HeaderName::MaxForwards, ByteString::from_static("70"));
    if let Some(f) = req.headers.get(&HeaderName::From) {
        h.push(HeaderName::From, f.clone());
    }
    if let Some(t) = resp
        .headers
        .get(&HeaderName::To)
        .or_else(|| req.headers.get(&HeaderName::To))
    {
        h.push(HeaderName::To, t.clone());
    }
    if let Some(c) = req.headers.call_id() {
        h.push(HeaderName::CallId, c.clone());
    }
    let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(1);
    h.push(HeaderName::CSeq, format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: req.uri.clone(),
        headers: h,
        body: Bytes::new(),
    }
}
