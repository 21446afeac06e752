//! Responses on the proxy's branches (RFC 3261 §16.7): best-response selection, the SDP hook
//! for 18x/2xx, the end of a call on a final failure, and stateless forwarding of stray 2xx.

use super::*;

impl Proxy {
    /// Passes a response's SDP through the media hook (the answer or a late offer).
    fn response_sdp(&mut self, now: Instant, stx: ServerTxId, bi: usize, resp: &mut Response) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !carries_sdp(&ctx.method) || !is_sdp(&resp.headers, &resp.body) {
            return;
        }
        let Some(b) = ctx.branches.get(bi) else {
            return;
        };
        let nat = self.dialogs.get(&ctx.call_id).is_some_and(|r| {
            r.any_nat() || r.branches.get(b.index as usize).is_some_and(|br| br.nat)
        });
        let p = SdpPassage {
            call_id: &ctx.call_id,
            branch: b.index,
            sender: ctx.sender.other(),
            method: ctx.method.clone(),
            status: Some(resp.status),
            initial: ctx.initial,
            source: Some(b.dest),
            nat,
        };
        let mut body = resp.body.clone();
        if self.media.on_sdp(now, &p, &mut body).is_ok() {
            resp.body = body;
        }
    }

    /// A 2xx retransmitted after its transaction ended carries the same SDP as the first: it is
    /// rewritten the same way, so the caller never sees the callee's own address.
    fn retransmitted_2xx_sdp(&mut self, now: Instant, resp: &mut Response) {
        if !is_sdp(&resp.headers, &resp.body) {
            return;
        }
        let call_id = call_id_of(&resp.headers);
        let Some(rec) = self.dialogs.get(&call_id) else {
            return;
        };
        let p = SdpPassage {
            call_id: &call_id,
            branch: rec.answered.unwrap_or(0),
            sender: Party::Callee,
            method: Method::Invite,
            status: Some(resp.status),
            initial: true,
            source: rec.callee.flow.map(|(a, _)| a),
            nat: rec.any_nat(),
        };
        let mut body = resp.body.clone();
        if self.media.on_sdp(now, &p, &mut body).is_ok() {
            resp.body = body;
        }
    }

    /// The initial INVITE was answered on branch `bi`: record the callee and collapse the media.
    fn answered(&mut self, now: Instant, stx: ServerTxId, bi: usize, resp: &Response) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.initial {
            return;
        }
        let Some(b) = ctx.branches.get(bi) else {
            return;
        };
        let (index, call_id) = (b.index, ctx.call_id.clone());
        if let Some(rec) = self.dialogs.get_mut(&call_id) {
            if rec.answered.is_some() {
                return;
            }
            rec.answered = Some(index);
            rec.last_activity = now;
            let nat = rec.branches.get(index as usize).is_some_and(|br| br.nat);
            rec.callee = PartyInfo {
                flow: Some((b.dest, b.transport)),
                nat,
                contact: resp
                    .headers
                    .get(&HeaderName::Contact)
                    .and_then(|c| NameAddr::parse(c).ok())
                    .map(|na| na.uri.to_string()),
                header: resp.headers.get(&HeaderName::To).map(|v| v.to_string()),
                cseq: 0,
            };
        }
        self.media.on_answered(now, &call_id, index);
        if self.progress.is_some() {
            self.progress(CallProgress::Confirmed(call_id));
        }
    }

    /// A response on a branch (§16.7).
    pub(crate) fn on_response(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        ctid: ClientTxId,
        mut resp: Response,
    ) {
        let Some(&stx) = self.branch_owner.get(&ctid) else {
            // Responses to our CANCELs and BYEs end here; a 2xx retransmission after the context
            // is gone is still forwarded (§16.7 step 5).
            let invite = resp
                .headers
                .cseq()
                .map(|c| c.method == Method::Invite)
                .unwrap_or(false);
            if invite && (200..300).contains(&resp.status) {
                self.retransmitted_2xx_sdp(now, &mut resp);
                self.forward_response_stateless(io, resp);
            }
            return;
        };
        let status = resp.status;
        resp.headers.remove_first(&HeaderName::Via);
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return;
        };
        trunk::shift_cseq(&mut resp.headers, ctx.cseq_offset, false);
        let Some(bi) = ctx.branches.iter().position(|b| b.tx == ctid) else {
            return;
        };
        if status < 200 {
            let b = &mut ctx.branches[bi];
            b.provisional = true;
            let cancel_now = ctx.cancelled && !b.cancel_sent && !b.done;
            if cancel_now {
                b.cancel_sent = true;
            }
            let (dest, t, fwd) = (b.dest, b.transport, status != 100 && !ctx.final_sent);
            let early = (fwd && ctx.initial && self.progress.is_some())
                .then(|| resp.headers.to().ok().and_then(|to| to.tag().map(|_| ())))
                .flatten()
                .map(|_| ctx.call_id.clone());
            if cancel_now {
                Self::send_cancel(io, now, ctid, dest, t);
            }
            if let Some(call_id) = early {
                self.progress(CallProgress::Early(call_id));
            }
            if fwd {
                self.response_sdp(now, stx, bi, &mut resp);
                io.tl.respond(now, stx, resp);
            }
            if status > 100 && self.contexts.get(&stx).is_some_and(|c| c.timer_c.is_some()) {
                self.arm_timer_c(stx, now + TIMER_C);
            }
            return;
        }
        if status == 503 && self.try_next_destination(io, now, stx, bi) {
            return;
        }
        if status == 488 && self.try_widened_offer(io, now, stx, bi) {
            return;
        }
        if status == 600 && self.busy_everywhere(io, now, stx, bi, &resp) {
            return;
        }
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return;
        };
        ctx.branches[bi].done = true;
        if (200..300).contains(&status) || (600..700).contains(&status) && !ctx.final_sent {
            let first_final = !ctx.final_sent;
            ctx.final_sent = true;
            if (200..300).contains(&status) {
                // SDP first: a late offer in the 2xx creates the branch's relay contexts,
                // which `answered` then confirms (arming their media timeout).
                self.response_sdp(now, stx, bi, &mut resp);
                self.answered(now, stx, bi, &resp);
            } else {
                self.branch_failed(now, stx, bi);
            }
            io.tl.respond(now, stx, resp);
            if first_final {
                self.cancel_pending_branches(io, now, stx);
            }
            if (600..700).contains(&status) {
                self.call_failed(now, stx);
            }
        } else {
            if !ctx.final_sent
                && ctx
                    .best
                    .as_ref()
                    .is_none_or(|b| rank(status) < rank(b.status))
            {
                ctx.best = Some(resp);
            }
            self.branch_failed(now, stx, bi);
        }
        self.finish_if_done(io, now, stx);
    }

    /// A branch of the initial INVITE ended without a 2xx.
    pub(super) fn branch_failed(&mut self, now: Instant, stx: ServerTxId, bi: usize) {
        if let Some(ctx) = self.contexts.get(&stx) {
            if let (true, Some(b)) = (ctx.initial, ctx.branches.get(bi)) {
                let (call_id, index) = (ctx.call_id.clone(), b.index);
                let why = if ctx.cancelled {
                    EndReason::Cancel
                } else {
                    EndReason::Failure
                };
                self.media.on_branch_end(now, &call_id, index, why);
            }
        }
    }

    /// The initial INVITE got a final non-2xx upstream: the call is over.
    fn call_failed(&mut self, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.initial {
            return;
        }
        let answered = self
            .dialogs
            .get(&ctx.call_id)
            .is_some_and(|r| r.answered.is_some());
        if answered {
            return;
        }
        let why = if ctx.cancelled {
            EndReason::Cancel
        } else {
            EndReason::Failure
        };
        let call_id = ctx.call_id.clone();
        self.dialogs.remove(&call_id);
        self.end_call(now, &call_id, why);
    }

    /// Timer B/F on a branch: as if a 408 had arrived (§16.7 step 2 / §16.8).
    pub(crate) fn on_branch_timeout(&mut self, io: &mut Io<'_>, now: Instant, ctid: ClientTxId) {
        let Some(&stx) = self.branch_owner.get(&ctid) else {
            return;
        };
        let mut failed = None;
        let bi = self
            .contexts
            .get(&stx)
            .and_then(|ctx| ctx.branches.iter().position(|b| b.tx == ctid));
        if let Some(bi) = bi {
            if self.try_next_destination(io, now, stx, bi) {
                return;
            }
        }
        if let Some(ctx) = self.contexts.get_mut(&stx) {
            if let Some(bi) = bi {
                ctx.branches[bi].done = true;
                failed = Some(bi);
            }
        }
        if let Some(bi) = failed {
            self.branch_failed(now, stx, bi);
        }
        self.finish_if_done(io, now, stx);
    }

    /// When every branch is final: send the best response if no final went yet, drop the context.
    pub(super) fn finish_if_done(&mut self, io: &mut Io<'_>, now: Instant, stx: ServerTxId) {
        let Some(ctx) = self.contexts.get(&stx) else {
            return;
        };
        if !ctx.branches.iter().all(|b| b.done) {
            return;
        }
        if !ctx.final_sent {
            self.call_failed(now, stx);
        }
        let Some(mut ctx) = self.contexts.remove(&stx) else {
            return;
        };
        for b in &ctx.branches {
            self.branch_owner.remove(&b.tx);
        }
        if ctx.final_sent {
            return;
        }
        if self.divert_finished(stx, ctx.divert.take(), &ctx.best) {
            return;
        }
        match ctx.best {
            Some(mut best) => {
                if best.status == 503 {
                    // §16.7 step 6: a 503 from downstream must not make upstream think we are down.
                    best.status = 500;
                    best.reason = ByteString::from_static("Server Internal Error");
                }
                io.tl.respond(now, stx, best);
            }
            None => io.reply(now, stx, &ctx.head, 408, vec![]),
        }
    }

    /// Forwards a response that matches no transaction (§16.7 step 3 / §18.1.2): only when the
    /// top Via is ours; it is removed and the response goes to the next Via.
    pub(crate) fn forward_response_stateless(&mut self, io: &mut Io<'_>, mut resp: Response) {
        let Ok(top) = resp.headers.top_via() else {
            return;
        };
        if !io.local.is_local_via(&top) {
            return;
        }
        resp.headers.remove_first(&HeaderName::Via);
        let Ok(next) = resp.headers.top_via() else {
            return;
        };
        if let Some((dest, t)) = via_destination(&next) {
            if let Ok(cseq) = resp.headers.cseq() {
                io.tl.count_stateless_response(&cseq.method, resp.status);
            }
            io.tl.send_stateless(dest, t, resp.to_bytes());
        }
    }
}
