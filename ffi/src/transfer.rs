//! Call transfer (RFC 3515 REFER, RFC 3891 Replaces, RFC 5589 flows): the transferor's
//! `rvoip_call_transfer` / `rvoip_call_transfer_to_call`, whose progress arrives as
//! TRANSFER_STATUS events, and the transferee's `rvoip_endpoint_accept_transfer` /
//! `rvoip_endpoint_reject_transfer` for a TRANSFER_REQUESTED event.

use std::ffi::c_char;

use rvoip_sdk::api::TransferId;

use crate::call::{call, rvoip_call_opts, take_audio};
use crate::endpoint::rvoip_endpoint;
use crate::rvoip_result;
use crate::util::{boundary, ref_arg, str_arg, write_out};

/// Blind transfer (RFC 3515, RFC 5589 §6): asks the peer of the established call `call_id` to
/// call `target` (a SIP URI, e.g. `sip:carol@example.com`; copied) with a REFER. Its progress
/// arrives as TRANSFER_STATUS events on `call_id` (100 first, then the new call's 180, 200 or
/// failure; or the REFER's own failure, e.g. 603 when the peer refuses), the last with
/// `is_final`. After a successful transfer the peer ends `call_id` (CALL_STATE ENDED).
/// Errors: NULL_ARGUMENT (`ep`, `target`), INVALID_ARGUMENT (not a SIP URI, invalid UTF-8),
/// NOT_FOUND (no such call), INVALID_STATE (not established), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_transfer(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    target: *const c_char,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint / a valid C string (caller's contract).
        let (ep, target) = unsafe { (ref_arg(ep)?, str_arg(target)?) };
        Ok(call(ep, call_id)?.transfer(target)?)
    })
}

/// Attended transfer (RFC 5589 §7): asks the peer of `call_id` to call the peer of our
/// consultation call `other_call_id`, replacing that call there (a REFER whose Refer-To
/// carries `Replaces`, RFC 3891). Progress arrives as TRANSFER_STATUS events on `call_id`, as
/// for [`rvoip_call_transfer`]; once the transfer succeeds both our calls end.
/// Errors: NULL_ARGUMENT (`ep`), NOT_FOUND (either call), INVALID_ARGUMENT (both ids name the
/// same call), INVALID_STATE (either call not established), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_call_transfer_to_call(
    ep: *mut rvoip_endpoint,
    call_id: u64,
    other_call_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        let (this, other) = (call(ep, call_id)?, call(ep, other_call_id)?);
        if call_id == other_call_id {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        }
        Ok(this.transfer_to_call(&other)?)
    })
}

/// Accepts the transfer request `transfer_id` (from a TRANSFER_REQUESTED event): the REFER is
/// answered 202 Accepted, a new call is placed to its target through the transferred call's
/// account with `opts`' audio (taken by the call whether or not this succeeds, as
/// `rvoip_call_make`; NULL for the defaults), its progress is reported to the transferor
/// (NOTIFY, RFC 3515 §2.4.4), and the transferred call is ended once the new one is up.
/// `*out_call_id` gets the new call's id; its progress arrives as CALL_STATE events.
/// Errors: NULL_ARGUMENT (`ep`, `out_call_id`), NOT_FOUND (no such request: unknown, already
/// accepted or rejected, or expired after 8 s), NETWORK (resolution, media ports), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_accept_transfer(
    ep: *mut rvoip_endpoint,
    transfer_id: u64,
    opts: *const rvoip_call_opts,
    out_call_id: *mut u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: the call takes the audio objects whatever happens next.
        let audio = unsafe { take_audio(opts) };
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        if out_call_id.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let c = ep.ep.accept_transfer(TransferId(transfer_id), audio)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_call_id, c.id().0) };
        Ok(())
    })
}

/// Refuses the transfer request `transfer_id` (from a TRANSFER_REQUESTED event) with a final
/// SIP `status` in 300..=699 (e.g. 603 Decline); the transferor sees it as its final
/// TRANSFER_STATUS. The transferred call stays up. Errors: NULL_ARGUMENT (`ep`),
/// INVALID_ARGUMENT (`status` outside 300..=699), NOT_FOUND (no such request: unknown,
/// already decided, or expired), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_reject_transfer(
    ep: *mut rvoip_endpoint,
    transfer_id: u64,
    status: u16,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(ep.ep.reject_transfer(TransferId(transfer_id), status)?)
    })
}
