//! Timer C (RFC 3261 §16.8), CANCEL (§16.10), the media hook's timers (BYE to both sides on a
//! media timeout) and the sweep of idle call records.

use super::*;

impl Proxy {
    /// Runs Timer C (§16.8), the media hook's timers (a media timeout ends the call with BYE to
    /// both sides) and the sweep of idle call records.
    pub(crate) fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.run_timer_c(io, now);
        self.run_no_answer(io, now);
        self.media.handle_timeout(now);
        while let Some(call_id) = self.media.poll_media_timeout() {
            self.end_call_for_media_timeout(io, now, &call_id);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            for call_id in self.dialogs.sweep(now) {
                self.end_call(now, &call_id, EndReason::Timeout);
            }
            self.next_sweep = (!self.dialogs.is_empty()).then(|| now + SWEEP_INTERVAL);
        }
    }

    /// Timer C (§16.8): cancels the branches that rang too long (a branch without a provisional
    /// response counts as a 408) and re-arms for 64·T1; a branch whose CANCEL got no final
    /// response by then is given up as a 408 (§9.1), so that a vanished callee cannot hold the
    /// context (and its relay ports) forever.
    fn run_timer_c(&mut self, io: &mut Io<'_>, now: Instant) {
        let mut due = Vec::new();
        self.timer_c.take_due(now, &mut due);
        for (at, stx) in due {
            let Some(ctx) = self.contexts.get_mut(&stx) else {
                continue;
            };
            if ctx.timer_c != Some(at) {
                continue;
            }
            ctx.timer_c = None;
            ctx.cancelled = true;
            ctx.divert = None;
            let mut to_cancel = Vec::new();
            let mut give_up = Vec::new();
            for b in ctx.branches.iter_mut().filter(|b| !b.done) {
                if b.cancel_sent {
                    give_up.push(b.tx);
                } else if b.provisional {
                    b.cancel_sent = true;
                    to_cancel.push((b.tx, b.dest, b.transport));
                } else {
                    b.done = true;
                }
            }
            let rearm = !to_cancel.is_empty();
            for (tx, dest, t) in to_cancel {
                Self::send_cancel(io, now, tx, dest, t);
            }
            // Ends the INVITE client transaction with a Timeout event (handled as a 408 by
            // `on_branch_timeout`).
            for tx in give_up {
                io.tl.transport_error(tx);
            }
            if rearm {
                self.arm_timer_c(stx, now + 64 * io.tl.timer_config().t1);
            }
            self.finish_if_done(io, now, stx);
        }
        // Deadlines that moved or whose context ended are dropped, so that `poll_timeout` is
        // exact (re-arming above is at least 64·T1 later: nothing new is due now).
        let contexts = &self.contexts;
        self.timer_c
            .prune(|at, stx| contexts.get(&stx).is_some_and(|c| c.timer_c == Some(at)));
    }

    /// Sends BYE to both parties of an answered call whose media stopped (RFC 3261 §15.1.1 as a
    /// B2BUA-ish proxy would, like Kamailio's `dlg_end_dlg`), and forgets the call.
    fn end_call_for_media_timeout(&mut self, io: &mut Io<'_>, now: Instant, call_id: &str) {
        let Some(rec) = self.dialogs.remove(call_id) else {
            self.end_call(now, call_id, EndReason::MediaTimeout);
            return;
        };
        tracing::info!(%call_id, "media timeout: ending the call with BYE to both sides");
        io.stats.media_timeouts += 1;
        for to in [Party::Caller, Party::Callee] {
            let (target, from_p) = (rec.party(to), rec.party(to.other()));
            let (Some(contact), Some(to_hdr), Some(from_hdr)) =
                (&target.contact, &target.header, &from_p.header)
            else {
                continue;
            };
            let Ok(uri) = Uri::parse(&ByteString::from(contact.as_str())) else {
                continue;
            };
            let dest = match (target.nat, target.flow) {
                (true, Some(f)) => Some(f),
                _ => resolve(&uri).or(target.flow),
            };
            let Some((dest, t)) = dest else { continue };
            let mut h = Headers::with_capacity(8);
            h.push(HeaderName::MaxForwards, "70");
            h.push(HeaderName::From, from_hdr.clone());
            h.push(HeaderName::To, to_hdr.clone());
            h.push(HeaderName::CallId, call_id.to_string());
            h.push(
                HeaderName::CSeq,
                format!("{} BYE", from_p.cseq.saturating_add(1)),
            );
            h.push(
                HeaderName::Other(ByteString::from_static("Reason")),
                "SIP;cause=408;text=\"media timeout\"".to_string(),
            );
            let mut bye = Request {
                method: Method::Bye,
                uri,
                headers: h,
                body: Bytes::new(),
            };
            let hash = loop_hash(&bye);
            Self::prepare_forward(io, &mut bye, t, t, false, hash);
            io.tl.send_request(now, bye, dest, t);
        }
        self.end_call(now, call_id, EndReason::MediaTimeout);
    }

    /// Cancels every branch without a final response (§16.7 step 10, §16.10). Branches without
    /// a provisional response are cancelled when one arrives (§9.1).
    pub(super) fn cancel_pending_branches(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
    ) {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return;
        };
        ctx.cancelled = true;
        let mut to_cancel = Vec::new();
        for b in ctx
            .branches
            .iter_mut()
            .filter(|b| !b.done && b.provisional && !b.cancel_sent)
        {
            b.cancel_sent = true;
            to_cancel.push((b.tx, b.dest, b.transport));
        }
        // Timer C now waits 64·T1 for the final responses (see `run_timer_c`).
        let rearm = !to_cancel.is_empty() && ctx.timer_c.is_some();
        for (tx, dest, t) in to_cancel {
            Self::send_cancel(io, now, tx, dest, t);
        }
        if rearm {
            self.arm_timer_c(stx, now + 64 * io.tl.timer_config().t1);
        }
    }

    /// Sends a CANCEL for a branch (§9.1): same Request-URI, Call-ID, From, To, CSeq number, top
    /// Via and Route as the INVITE it cancels.
    pub(super) fn send_cancel(
        io: &mut Io<'_>,
        now: Instant,
        ctid: ClientTxId,
        dest: SocketAddr,
        t: Transport,
    ) {
        let Some(orig) = io.tl.client_request(ctid) else {
            return;
        };
        let Ok(cseq) = orig.headers.cseq() else {
            return;
        };
        let mut h = Headers::with_capacity(8);
        if let Some(v) = orig.headers.get(&HeaderName::Via) {
            h.push(HeaderName::Via, v.clone());
        }
        h.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = orig.headers.get(&name) {
                h.push(name, v.clone());
            }
        }
        h.push(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
        for r in orig.headers.get_all(&HeaderName::Route) {
            h.push(HeaderName::Route, r.clone());
        }
        let cancel = Request {
            method: Method::Cancel,
            uri: orig.uri.clone(),
            headers: h,
            body: Bytes::new(),
        };
        io.tl.send_request(now, cancel, dest, t);
    }

    /// A CANCEL received (§16.10): 200 to it, then CANCEL on every pending branch; the 487s
    /// from downstream become the final response. 481 if it matches no INVITE.
    pub(crate) fn cancel(&mut self, io: &mut Io<'_>, now: Instant, tx: ServerTxId, req: Request) {
        let Some(inv) = io.tl.matching_invite(&req) else {
            return io.reply(now, tx, &req, 481, vec![]);
        };
        io.reply(now, tx, &req, 200, vec![]);
        if io.tl.server_is_final(inv) {
            return;
        }
        // The caller gave up: no forwarding either.
        if let Some(ctx) = self.contexts.get_mut(&inv) {
            ctx.divert = None;
        }
        let pending = self.contexts.get(&inv).is_some_and(|c| !c.final_sent);
        if pending {
            self.cancel_pending_branches(io, now, inv);
        } else if !self.contexts.contains_key(&inv) {
            // Not forwarded anywhere (still being processed): answer 487 ourselves.
            if let Some(ireq) = io.tl.server_request(inv).cloned() {
                io.reply(now, inv, &ireq, 487, vec![]);
            }
        }
    }
}
