//! Forwarding requests (RFC 3261 §16.6): Via, Record-Route and Max-Forwards, parallel forking
//! with the SDP hook per branch, in-dialog routing (NAT flows), and ACK for 2xx (§16.11).

use super::*;

impl Proxy {
    /// Adds Max-Forwards, Record-Route (if asked) and our Via to a request about to be forwarded
    /// (§16.6 steps 3, 4, 8). Returns the branch used.
    pub(crate) fn prepare_forward(
        io: &mut Io<'_>,
        req: &mut Request,
        in_t: Transport,
        out_t: Transport,
        record_route: bool,
        hash: u64,
    ) -> String {
        let mf = match req.headers.max_forwards() {
            Ok(Some(n)) => n.saturating_sub(1),
            _ => 70,
        };
        req.headers.set(HeaderName::MaxForwards, mf.to_string());
        // §16.6 step 4: a sips: request is record-routed with a sips: URI.
        let sips = req.uri.scheme == crate::sip::msg::Scheme::Sips;
        let rr = |i: Option<&crate::server::local::LocalInterface>| {
            i.map(|i| match i.transport {
                Transport::Udp => format!("<sip:{}:{};lr>", i.host, i.port),
                Transport::Tls if sips => format!("<sips:{}:{};lr>", i.host, i.port),
                t if sips => format!("<sips:{}:{};transport={t};lr>", i.host, i.port),
                t => format!("<sip:{}:{};transport={t};lr>", i.host, i.port),
            })
        };
        if record_route {
            if let Some(v) = rr(io.local.interface(in_t)) {
                req.headers.push_front(HeaderName::RecordRoute, v);
            }
            if in_t != out_t {
                // RFC 5658 double Record-Route when the transport changes.
                if let Some(v) = rr(io.local.interface(out_t)) {
                    req.headers.push_front(HeaderName::RecordRoute, v);
                }
            }
        }
        let random = new_branch();
        let branch = format!(
            "{BRANCH_MAGIC}{hash:016x}{}",
            random.trim_start_matches(BRANCH_MAGIC)
        );
        let (host, port) = match io
            .local
            .interface(out_t)
            .or_else(|| io.local.interfaces.first())
        {
            Some(i) => (i.host.clone(), i.port),
            None => ("127.0.0.1".to_string(), 5060),
        };
        req.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {host}:{port};branch={branch}",
                transport_token(out_t)
            ),
        );
        io.stats.forwarded += 1;
        branch
    }

    /// Forwards `req` statefully to every target in parallel (§16.6, §16.7). `req` is the
    /// request as received from `source` (our Route entries removed, credentials consumed).
    /// An initial INVITE starts a call record; its SDP passes the media hook once per branch,
    /// and a refusal there (503: no relay ports; 488) answers the request instead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fork(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: Transport,
        source: SocketAddr,
        targets: Vec<Target>,
        hash: u64,
    ) {
        let in_dialog = req.headers.to_tag().is_some();
        let record_route = !in_dialog
            && matches!(
                req.method,
                Method::Invite | Method::Subscribe | Method::Refer
            );
        let call_id = call_id_of(&req.headers);
        let initial = !in_dialog && req.method == Method::Invite;
        let (sender, media_branch, nat) = if initial {
            let caller_nat = sender_behind_nat(&req, source, in_t);
            let contact = req
                .headers
                .get(&HeaderName::Contact)
                .and_then(|c| NameAddr::parse(c).ok())
                .map(|na| na.uri.to_string());
            self.dialogs.insert(
                &call_id,
                CallRecord {
                    caller_tag: from_tag(&req).unwrap_or_default(),
                    caller: PartyInfo {
                        flow: Some((source, in_t)),
                        nat: caller_nat,
                        contact,
                        header: req.headers.get(&HeaderName::From).map(|v| v.to_string()),
                        cseq: req.headers.cseq().map(|c| c.seq).unwrap_or(1),
                    },
                    callee: PartyInfo::default(),
                    branches: targets
                        .iter()
                        .map(|t| BranchInfo {
                            dest: t.dest,
                            transport: t.transport,
                            nat: t.nat,
                        })
                        .collect(),
                    answered: None,
                    last_activity: now,
                    callee_cseq_offset: 0,
                    started: now,
                    to: req.headers.get(&HeaderName::To).map(|v| v.to_string()),
                },
            );
            self.arm_sweep(now);
            if self.progress.is_some() {
                self.progress(CallProgress::Invite {
                    call_id: call_id.clone(),
                    from: req.headers.from().ok().map(|f| Box::new(f.uri)),
                    to: Box::new(req.uri.clone()),
                });
            }
            (Party::Caller, 0, caller_nat)
        } else {
            match self.dialogs.get(&call_id) {
                Some(rec) => (
                    rec.sender_of(from_tag(&req).as_deref()),
                    rec.answered.unwrap_or(0),
                    rec.any_nat(),
                ),
                None => (Party::Caller, 0, false),
            }
        };
        // The caller's in-dialog requests toward a callee whose challenge we answered carry
        // the CSeq numbers the callee knows (`trunk`).
        let cseq_offset = if initial || sender != Party::Caller {
            0
        } else {
            self.dialogs
                .get(&call_id)
                .map_or(0, |r| r.callee_cseq_offset)
        };
        // Run the SDP hook for every copy before sending any, so that a refusal sends nothing.
        let with_sdp = carries_sdp(&req.method) && is_sdp(&req.headers, &req.body);
        let mut copies = Vec::with_capacity(targets.len());
        for (i, t) in targets.into_iter().enumerate() {
            let mut copy = req.clone();
            if let Some(uri) = &t.uri {
                copy.uri = uri.clone();
            }
            for r in t.route.iter().rev() {
                copy.headers.push_front(HeaderName::Route, r.clone());
            }
            trunk::shift_cseq(&mut copy.headers, cseq_offset, true);
            let index = if initial { i as u32 } else { media_branch };
            if with_sdp {
                let p = SdpPassage {
                    call_id: &call_id,
                    branch: index,
                    sender,
                    method: req.method.clone(),
                    status: None,
                    initial,
                    source: Some(source),
                    nat: nat || t.nat,
                };
                if let Err(status) = self.media.on_sdp(now, &p, &mut copy.body) {
                    tracing::debug!(%call_id, status, "media hook refused the request");
                    if initial {
                        self.end_call(now, &call_id, EndReason::Failure);
                        self.dialogs.remove(&call_id);
                    }
                    return io.reply(now, stx, &req, status, vec![]);
                }
            }
            copies.push((index, t, copy));
        }
        let mut ctx = Context {
            branches: Vec::with_capacity(copies.len()),
            best: None,
            final_sent: false,
            cancelled: false,
            timer_c: None,
            call_id,
            method: req.method.clone(),
            sender,
            initial,
            head: req.response_head(),
            divert: None,
            cseq_offset,
        };
        for (index, t, mut copy) in copies {
            // A copy is kept for RFC 3263 failover, and for an initial offer the media hook
            // could widen for transcoding should the callee refuse it with 488.
            let widenable = initial && with_sdp && self.media.may_widen();
            let retry = (!t.alternates.is_empty() || widenable).then(|| {
                Box::new(Retry {
                    widened: false,
                    alternates: t.alternates.iter().copied().collect(),
                    request: copy.clone(),
                    in_t,
                    record_route,
                    hash,
                })
            });
            Self::prepare_forward(io, &mut copy, in_t, t.transport, record_route, hash);
            let ctid = io.tl.send_request(now, copy, t.dest, t.transport);
            self.branch_owner.insert(ctid, stx);
            ctx.branches.push(Branch {
                tx: ctid,
                index,
                dest: t.dest,
                transport: t.transport,
                provisional: false,
                done: false,
                cancel_sent: false,
                flow: t.flow,
                retry,
            });
        }
        let invite = req.method == Method::Invite;
        self.contexts.insert(stx, ctx);
        if invite {
            self.arm_timer_c(stx, now + TIMER_C);
        }
    }

    /// RFC 3263 §4.3: branch `bi` failed (transport error, timeout or 503) before any final
    /// response went upstream: sends its request to the branch's next destination as a new
    /// client transaction. Returns whether it did (the branch then goes on).
    pub(super) fn try_next_destination(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        bi: usize,
    ) -> bool {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return false;
        };
        if ctx.cancelled || ctx.final_sent {
            return false;
        }
        let Some(b) = ctx.branches.get_mut(bi) else {
            return false;
        };
        if b.provisional {
            return false;
        }
        let Some(retry) = b.retry.as_mut() else {
            return false;
        };
        let Some((dest, transport)) = retry.alternates.pop_front() else {
            return false;
        };
        let mut copy = retry.request.clone();
        let (in_t, rr, hash) = (retry.in_t, retry.record_route, retry.hash);
        Self::prepare_forward(io, &mut copy, in_t, transport, rr, hash);
        let ctid = io.tl.send_request(now, copy, dest, transport);
        tracing::debug!(old = %b.dest, new = %dest, %transport, "next destination (RFC 3263 §4.3)");
        self.branch_owner.remove(&b.tx);
        self.branch_owner.insert(ctid, stx);
        b.tx = ctid;
        b.dest = dest;
        b.transport = transport;
        let index = b.index as usize;
        if let Some(rec) = self.dialogs.get_mut(&ctx.call_id) {
            if let Some(br) = rec.branches.get_mut(index) {
                br.dest = dest;
                br.transport = transport;
            }
        }
        io.stats.failovers += 1;
        true
    }

    /// Branch `bi` of an initial INVITE was refused with 488 (RFC 3261 §21.4.26: no common
    /// codec): when the media hook can widen its offer with codecs the relay transcodes, sends
    /// the widened request to the same destination as a new client transaction, once per
    /// branch (what Kamailio does with rtpengine's transcoding flags in a failure route).
    /// Returns whether it did (the branch then goes on).
    pub(super) fn try_widened_offer(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        bi: usize,
    ) -> bool {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return false;
        };
        if ctx.cancelled || ctx.final_sent || !ctx.initial {
            return false;
        }
        let Some(b) = ctx.branches.get_mut(bi) else {
            return false;
        };
        let Some(retry) = b.retry.as_mut() else {
            return false;
        };
        if retry.widened {
            return false;
        }
        retry.widened = true;
        let mut body = retry.request.body.clone();
        if !self
            .media
            .widen_offer(now, &ctx.call_id, b.index, &mut body)
        {
            return false;
        }
        retry.request.body = body;
        let mut copy = retry.request.clone();
        let (in_t, rr, hash) = (retry.in_t, retry.record_route, retry.hash);
        Self::prepare_forward(io, &mut copy, in_t, b.transport, rr, hash);
        let ctid = io.tl.send_request(now, copy, b.dest, b.transport);
        tracing::debug!(call_id = %ctx.call_id, dest = %b.dest, "488: offer widened for transcoding");
        self.branch_owner.remove(&b.tx);
        self.branch_owner.insert(ctid, stx);
        b.tx = ctid;
        b.provisional = false;
        true
    }

    fn arm_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
    }

    /// The next hop of an in-dialog request that has no Route left: the other party's flow when
    /// it is behind a NAT (its Contact is unreachable) or connected over TLS or WebSocket, else
    /// its Request-URI. Updates the call
    /// record (sender's CSeq and flow, activity). `None` when the URI cannot be used.
    fn in_dialog_next_hop(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        req: &Request,
        source: SocketAddr,
        in_t: Transport,
    ) -> Option<(SocketAddr, Transport, bool)> {
        let call_id = call_id_of(&req.headers);
        if let Some(rec) = self.dialogs.get_mut(&call_id) {
            rec.last_activity = now;
            let sender = rec.sender_of(from_tag(req).as_deref());
            let s = rec.party_mut(sender);
            if let Ok(c) = req.headers.cseq() {
                if req.method != Method::Ack && req.method != Method::Cancel {
                    s.cseq = s.cseq.max(c.seq);
                }
            }
            if s.nat {
                // A NAT may rebind; the newest source is the flow.
                s.flow = Some((source, in_t));
            }
            let dst = rec.party(sender.other());
            if let (true, Some((a, t))) = (dst.nat, dst.flow) {
                io.stats.nat_flows_used += 1;
                return Some((a, t, true));
            }
            // A TLS or WebSocket party is reached down its connection (RFC 5626 flow, RFC 7118
            // §5.3): such clients usually listen nowhere, whatever their Contact says.
            if let Some((a, t)) = dst
                .flow
                .filter(|(_, t)| t.is_secure() || *t == Transport::Ws)
            {
                return Some((a, t, false));
            }
        }
        resolve(&req.uri).map(|(a, t)| (a, t, false))
    }

    /// Forwards a request along its Route set, or to the other party of the call (its NAT
    /// flow or its Request-URI) when no Route is left. A BYE ends the call's media.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_routed(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        req: Request,
        in_t: Transport,
        source: SocketAddr,
        hash: u64,
    ) {
        let next = match req.headers.get(&HeaderName::Route) {
            Some(r) => NameAddr::parse(r)
                .ok()
                .and_then(|na| resolve(&na.uri))
                .map(|(a, t)| (a, t, false)),
            None => self.in_dialog_next_hop(io, now, &req, source, in_t),
        };
        // A BYE ends the call once forwarded (`fork` still reads its record: CSeq offset).
        let bye = (req.method == Method::Bye).then(|| call_id_of(&req.headers));
        match next {
            Some((dest, transport, nat)) => self.fork(
                io,
                now,
                stx,
                req,
                in_t,
                source,
                vec![Target {
                    uri: None,
                    dest,
                    transport,
                    nat,
                    alternates: Vec::new(),
                    route: Vec::new(),
                    flow: false,
                }],
                hash,
            ),
            None => io.reply(now, stx, &req, 503, vec![]),
        }
        if let Some(call_id) = bye {
            if self.dialogs.remove(&call_id).is_some() {
                self.end_call(now, &call_id, EndReason::Bye);
            }
        }
    }

    /// ACK for a 2xx (no server transaction): forwarded statelessly along the route (§16.11),
    /// to the callee's NAT flow when needed; an SDP answer in it (late offer) passes the hook.
    pub(crate) fn ack(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        mut req: Request,
        source: SocketAddr,
        in_t: Transport,
    ) {
        if req.method != Method::Ack || req.headers.top_via().is_err() {
            return;
        }
        let popped = pop_own_routes(io.local, &mut req);
        let next = match req.headers.get(&HeaderName::Route) {
            // Not on this ACK's route set: not relayed (as for other requests, 403 there).
            Some(_) if !popped => None,
            Some(r) => NameAddr::parse(r).ok().and_then(|na| resolve(&na.uri)),
            // Our Record-Route brought it here: on to the remote target.
            None if popped => self
                .in_dialog_next_hop(io, now, &req, source, in_t)
                .map(|(a, t, _)| (a, t)),
            None => None,
        };
        let Some((dest, out_t)) = next else { return };
        if let Ok(Some(0)) = req.headers.max_forwards() {
            return;
        }
        self.shift_ack_cseq(&mut req);
        if is_sdp(&req.headers, &req.body) {
            let call_id = call_id_of(&req.headers);
            if let Some(rec) = self.dialogs.get(&call_id) {
                let p = SdpPassage {
                    call_id: &call_id,
                    branch: rec.answered.unwrap_or(0),
                    sender: rec.sender_of(from_tag(&req).as_deref()),
                    method: Method::Ack,
                    status: None,
                    initial: true,
                    source: Some(source),
                    nat: rec.any_nat(),
                };
                let mut body = req.body.clone();
                if self.media.on_sdp(now, &p, &mut body).is_ok() {
                    req.body = body;
                }
            }
        }
        // Deterministic branch for a stateless hop (§16.11): derived from the received branch.
        let h = fnv(
            0xcbf2_9ce4_8422_2325,
            req.headers
                .top_via()
                .ok()
                .and_then(|v| v.branch().map(|b| b.as_bytes().to_vec()))
                .unwrap_or_default()
                .as_slice(),
        );
        Self::prepare_forward(io, &mut req, in_t, out_t, false, h);
        io.tl.send_stateless(dest, out_t, req.to_bytes());
    }
}
