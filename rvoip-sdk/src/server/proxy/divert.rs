//! The proxy's side of call forwarding on busy and on no answer ([`crate::server::forward`]):
//! the core tells the proxy which INVITE to watch ([`Proxy::watch`]); when its branches end
//! busy (a 600 at once, cancelling the others; or 486 as the best response), when the no-answer
//! time passes without a 2xx (the ringing branches are cancelled, like Timer C does), or when
//! nothing answered at all (408/480), the proxy sends nothing upstream and hands the request
//! back ([`Proxy::poll_diverted`]) for the core to send on to the forward target on the same
//! server transaction. A CANCEL from the caller, a 2xx or Timer C ends the watch.

use super::*;

/// Why the proxy gave a call back for forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DivertCause {
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// No 2xx within the no-answer time, or nothing answered (408, 480).
    NoAnswer,
    /// A dispatched request failed at its destination (408, 5xx, no first response in time) or
    /// was challenged (401/407) by a destination the server has credentials for
    /// ([`crate::server::dispatch`]): the core tries the next destination or authenticates.
    Failover,
}

/// What the proxy watches a dispatched request for ([`crate::server::dispatch`]).
#[derive(Debug)]
pub(crate) struct Failover {
    /// A destination that sends no response at all by then is given up (Kamailio's
    /// `fr_timer`): its branch ends as timed out.
    pub reply_by: Instant,
    /// The destination has credentials: a 401/407 comes back to the core.
    pub challenge: bool,
    /// The request's way through its set.
    pub attempt: Box<crate::server::dispatch::Attempt>,
}

impl Failover {
    /// Whether a request whose branches ended with `best` (`None`: nothing answered) goes back
    /// to the core: 408, 5xx and no answer fail over; 401/407 with credentials authenticate.
    pub fn wants(&self, best: Option<u16>) -> bool {
        match best {
            None | Some(408) | Some(500..=599) => true,
            Some(401 | 407) => self.challenge,
            Some(_) => false,
        }
    }
}

/// What the proxy watches an INVITE for.
#[derive(Debug)]
pub(crate) struct DivertWatch {
    /// Forward on busy.
    pub busy: bool,
    /// Forward on no answer at this instant (and on 408/480 before it).
    pub no_answer_at: Option<Instant>,
    /// The request as received (our Route entries removed), to send on.
    pub request: Request,
    /// Where it came from.
    pub in_t: Transport,
    /// Its sender.
    pub source: SocketAddr,
    /// The user whose forwarding this is.
    pub user: String,
    /// Whether the sender authenticated as one of our users.
    pub authenticated: bool,
    /// Set once the outcome is known; the context then waits for its branches to end.
    pub fired: Option<DivertCause>,
    /// A dispatched request: failover and trunk authentication instead of forwarding.
    pub failover: Option<Box<Failover>>,
}

/// An INVITE whose branches ended busy or unanswered, for the core to forward.
#[derive(Debug)]
pub(crate) struct Diverted {
    /// Its server transaction (still without a final response).
    pub stx: ServerTxId,
    /// The request as received.
    pub request: Request,
    /// Where it came from.
    pub in_t: Transport,
    /// Its sender.
    pub source: SocketAddr,
    /// The user whose forwarding applies.
    pub user: String,
    /// Whether the sender authenticated as one of our users.
    pub authenticated: bool,
    /// Why.
    pub cause: DivertCause,
    /// The response that would have gone upstream (the best one), to send when the forward
    /// cannot be made (a loop); `None` for a no-answer (then 480). For a failover, the best
    /// response of the destination that failed (`None`: it sent none).
    pub fallback: Option<Response>,
    /// A dispatched request's attempt ([`DivertCause::Failover`]).
    pub failover: Option<Box<Failover>>,
}

impl Proxy {
    /// Watches the INVITE of server transaction `stx` (just forked) for busy and no answer.
    /// Does nothing when the fork did not happen (the context does not exist).
    pub(crate) fn watch(&mut self, stx: ServerTxId, w: DivertWatch) {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return;
        };
        if let Some(at) = w.no_answer_at {
            self.no_answer.push(Reverse((at, stx)));
        }
        if let Some(f) = &w.failover {
            self.no_answer.push(Reverse((f.reply_by, stx)));
        }
        ctx.divert = Some(Box::new(w));
    }

    /// Whether calls wait to be forwarded ([`Proxy::poll_diverted`]).
    pub(crate) fn has_diverted(&self) -> bool {
        !self.diverted.is_empty()
    }

    /// The next call given back for forwarding.
    pub(crate) fn poll_diverted(&mut self) -> Option<Diverted> {
        self.diverted.pop_front()
    }

    /// A 600 on a branch of a watched INVITE: the call is busy everywhere; the other branches
    /// are cancelled and the call goes to the busy target once they end. Returns whether the
    /// response was taken (not to be relayed).
    pub(super) fn busy_everywhere(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        stx: ServerTxId,
        bi: usize,
        resp: &Response,
    ) -> bool {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return false;
        };
        let watched = ctx
            .divert
            .as_ref()
            .is_some_and(|w| w.busy && w.fired.is_none());
        if resp.status != 600 || ctx.final_sent || !watched {
            return false;
        }
        if let Some(w) = ctx.divert.as_mut() {
            w.fired = Some(DivertCause::Busy);
        }
        if let Some(b) = ctx.branches.get_mut(bi) {
            b.done = true;
        }
        ctx.best = Some(resp.clone());
        self.cancel_pending_branches(io, now, stx);
        self.branch_failed(now, stx, bi);
        self.finish_if_done(io, now, stx);
        true
    }

    /// Fires the due no-answer timers: the ringing branches are cancelled, the silent ones
    /// given up (as Timer C does); the call is forwarded once they have ended.
    pub(super) fn run_no_answer(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(&Reverse((at, stx))) = self.no_answer.peek() {
            if at > now {
                break;
            }
            self.no_answer.pop();
            let Some(ctx) = self.contexts.get_mut(&stx) else {
                continue;
            };
            let Some(w) = ctx.divert.as_mut() else {
                continue;
            };
            if let Some(f) = &w.failover {
                if f.reply_by == at && !ctx.final_sent {
                    // Kamailio's fr_timer: a silent destination is given up (its branch ends
                    // as timed out, then fails over).
                    let silent: Vec<ClientTxId> = ctx
                        .branches
                        .iter()
                        .filter(|b| !b.done && !b.provisional)
                        .map(|b| b.tx)
                        .collect();
                    for tx in silent {
                        io.tl.transport_error(tx);
                    }
                }
                continue;
            }
            if w.no_answer_at != Some(at) || w.fired.is_some() || ctx.final_sent {
                continue;
            }
            w.fired = Some(DivertCause::NoAnswer);
            tracing::debug!(user = %w.user, "no answer: cancelling the branches to forward");
            for b in ctx
                .branches
                .iter_mut()
                .filter(|b| !b.done && !b.provisional)
            {
                b.done = true;
            }
            self.cancel_pending_branches(io, now, stx);
            self.finish_if_done(io, now, stx);
        }
    }

    /// The earliest no-answer deadline (may be stale).
    pub(super) fn no_answer_timeout(&self) -> Option<Instant> {
        self.no_answer.peek().map(|Reverse((t, _))| *t)
    }

    /// A finished context with no final response sent: whether its watch turns it into a
    /// forward (queued for the core) instead of sending `best` upstream.
    pub(super) fn divert_finished(
        &mut self,
        stx: ServerTxId,
        divert: Option<Box<DivertWatch>>,
        best: &Option<Response>,
    ) -> bool {
        let Some(w) = divert else {
            return false;
        };
        let best_status = best.as_ref().map(|b| b.status);
        if let Some(f) = &w.failover {
            if !f.wants(best_status) {
                return false;
            }
        }
        let cause = w.fired.or(match best_status {
            _ if w.failover.is_some() => Some(DivertCause::Failover),
            Some(486 | 600) if w.busy => Some(DivertCause::Busy),
            Some(408 | 480) | None if w.no_answer_at.is_some() => Some(DivertCause::NoAnswer),
            _ => None,
        });
        let Some(cause) = cause else {
            return false;
        };
        let w = *w;
        self.diverted.push_back(Diverted {
            stx,
            request: w.request,
            in_t: w.in_t,
            source: w.source,
            user: w.user,
            authenticated: w.authenticated,
            cause,
            fallback: match cause {
                DivertCause::Busy | DivertCause::Failover => best.clone(),
                DivertCause::NoAnswer => None,
            },
            failover: w.failover,
        });
        true
    }
}
