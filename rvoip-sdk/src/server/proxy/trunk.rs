//! CSeq numbers of a call whose INVITE the proxy authenticated to a trunk itself
//! ([`crate::server::dispatch`]): answering the trunk's 401/407 is a new request with the next
//! CSeq number (RFC 3261 §22.2, §8.1.3.5), so the trunk's view of the caller's CSeq runs ahead
//! of the caller's own by that offset. The proxy adds it to the caller's later requests of the
//! dialog (ACK, re-INVITE, BYE…) toward the trunk and takes it off the responses going back,
//! as Kamailio's dialog module does with `dlg_cseq_update`.

use super::*;

/// Adds (`up`) or takes off `offset` from the CSeq number of `headers` (within 0…2³¹−1,
/// RFC 3261 §8.1.1.5). Does nothing for 0 or a CSeq that does not parse.
pub(super) fn shift_cseq(headers: &mut Headers, offset: u32, up: bool) {
    if offset == 0 {
        return;
    }
    let Ok(c) = headers.cseq() else {
        return;
    };
    let seq = if up {
        c.seq.saturating_add(offset).min(0x7fff_ffff)
    } else {
        c.seq.saturating_sub(offset)
    };
    headers.set(HeaderName::CSeq, format!("{seq} {}", c.method));
}

impl Proxy {
    /// The request of server transaction `stx` went out with its CSeq number raised by
    /// `offset` (answering a trunk's challenge): its responses go upstream with the number
    /// the caller sent, and for an initial INVITE the call's later requests from the caller
    /// are raised as well.
    pub(crate) fn set_cseq_offset(&mut self, stx: ServerTxId, offset: u32) {
        let Some(ctx) = self.contexts.get_mut(&stx) else {
            return;
        };
        ctx.cseq_offset = offset;
        shift_cseq(&mut ctx.head.headers, offset, false);
        if ctx.initial {
            if let Some(rec) = self.dialogs.get_mut(&ctx.call_id) {
                rec.callee_cseq_offset = offset;
            }
        }
    }

    /// The offset of the caller's requests toward the callee in the call of `req`, when the
    /// caller sent it (0 otherwise).
    pub(super) fn caller_offset(rec: &CallRecord, req: &Request) -> u32 {
        if rec.sender_of(from_tag(req).as_deref()) == Party::Caller {
            rec.callee_cseq_offset
        } else {
            0
        }
    }

    /// An ACK for a 2xx from the caller carries the INVITE's CSeq number as the callee knows
    /// it (RFC 3261 §13.2.2.4).
    pub(super) fn shift_ack_cseq(&self, req: &mut Request) {
        let call_id = call_id_of(&req.headers);
        let offset = self
            .dialogs
            .get(&call_id)
            .map_or(0, |rec| Self::caller_offset(rec, req));
        shift_cseq(&mut req.headers, offset, true);
    }
}
