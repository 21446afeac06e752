//! Presence (RFC 3856, RFC 3863 PIDF, RFC 4480 RPID) and busy-lamp fields (RFC 4235 dialog
//! package) over RFC 6665 subscriptions, and publishing one's own status (RFC 3903 PUBLISH):
//! `rvoip_account_subscribe` / `rvoip_endpoint_unsubscribe`, whose notifications arrive as
//! SUBSCRIPTION_STATE, BUDDY_PRESENCE and LINE_STATE events, and
//! `rvoip_account_publish_presence` / `rvoip_account_unpublish_presence`, whose outcome
//! arrives as PUBLISH_RESULT.

use std::ffi::c_char;

use rvoip_sdk::api::{EventPackage, SubscriptionId};

use crate::call::account;
use crate::endpoint::rvoip_endpoint;
use crate::rvoip_result;
use crate::util::{boundary, opt_str_arg, ref_arg, str_arg, write_out};

/// The event package of a subscription ([`rvoip_account_subscribe`]): one of
/// [`RVOIP_EVENT_PACKAGE_PRESENCE`] or [`RVOIP_EVENT_PACKAGE_DIALOG`]. A plain integer rather
/// than a C enum so that any value a caller passes is defined behaviour: other values give
/// INVALID_ARGUMENT.
pub type rvoip_event_package = u32;
/// `presence` (RFC 3856): the buddy's status as BUDDY_PRESENCE events (online, note,
/// activity).
pub const RVOIP_EVENT_PACKAGE_PRESENCE: u32 = 0;
/// `dialog` (RFC 4235): the calls of a line as LINE_STATE events (idle, ringing, in call), for
/// a busy-lamp field.
pub const RVOIP_EVENT_PACKAGE_DIALOG: u32 = 1;

/// The SDK's event package of a C code; INVALID_ARGUMENT for any other value.
fn event_package(code: rvoip_event_package) -> Result<EventPackage, rvoip_result> {
    match code {
        RVOIP_EVENT_PACKAGE_PRESENCE => Ok(EventPackage::Presence),
        RVOIP_EVENT_PACKAGE_DIALOG => Ok(EventPackage::Dialog),
        _ => Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT),
    }
}

/// Subscribes through the account's server to `package` of `target` (a SIP URI, e.g.
/// `sip:bob@example.com`; copied): [`RVOIP_EVENT_PACKAGE_PRESENCE`] for the buddy's status,
/// [`RVOIP_EVENT_PACKAGE_DIALOG`] for its line (RFC 6665 SUBSCRIBE, answering a digest challenge
/// with the account's credentials). `*out_subscription_id` gets the subscription's id
/// (non-zero, never reused). Its state arrives as SUBSCRIPTION_STATE events, its notifications
/// as BUDDY_PRESENCE or LINE_STATE events with this id (the first one at once: offline for a
/// buddy that never published, idle for a quiet line). The subscription is refreshed until
/// [`rvoip_endpoint_unsubscribe`] or the notifier ends it (SUBSCRIPTION_STATE TERMINATED).
/// Errors: NULL_ARGUMENT (`ep`, `target`, `out_subscription_id`), INVALID_ARGUMENT (not a SIP
/// URI, invalid UTF-8, `package` none of the `RVOIP_EVENT_PACKAGE_*` values), NOT_FOUND (no
/// such account), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_subscribe(
    ep: *mut rvoip_endpoint,
    account_id: u64,
    target: *const c_char,
    package: rvoip_event_package,
    out_subscription_id: *mut u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint / a valid C string (caller's contract).
        let (ep, target) = unsafe { (ref_arg(ep)?, str_arg(target)?) };
        if out_subscription_id.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let package = event_package(package)?;
        let id = account(ep, account_id)?.subscribe(target, package)?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_subscription_id, id.0) };
        Ok(())
    })
}

/// Ends the subscription `subscription_id` (SUBSCRIBE with Expires 0); a SUBSCRIPTION_STATE
/// TERMINATED event with reason `unsubscribed` follows and the id is stale from then on.
/// Errors: NULL_ARGUMENT (`ep`), NOT_FOUND (unknown or already terminated), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_endpoint_unsubscribe(
    ep: *mut rvoip_endpoint,
    subscription_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(ep.ep.unsubscribe(SubscriptionId(subscription_id))?)
    })
}

/// Publishes the account's presence through its server (RFC 3903 PUBLISH of a PIDF document,
/// answering a digest challenge): `online` (reachable) or offline, with an optional `note`
/// (free text, e.g. `Away`) and RPID `activity` (e.g. `away`, `busy`, `on-the-phone`; letters,
/// digits, `-` and `_` only); NULL or "" for none (both copied). Subscribers to the account's
/// presence are notified. The outcome arrives as one PUBLISH_RESULT event (2xx: published);
/// the publication is refreshed until [`rvoip_account_unpublish_presence`], and a new call
/// replaces the status. Errors: NULL_ARGUMENT (`ep`), INVALID_ARGUMENT (invalid UTF-8, an
/// activity with other characters), NOT_FOUND (no such account), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_publish_presence(
    ep: *mut rvoip_endpoint,
    account_id: u64,
    online: bool,
    note: *const c_char,
    activity: *const c_char,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint / NULL or valid C strings (caller's contract).
        let (ep, note, activity) =
            unsafe { (ref_arg(ep)?, opt_str_arg(note)?, opt_str_arg(activity)?) };
        Ok(account(ep, account_id)?.publish_presence(online, note, activity)?)
    })
}

/// Removes the account's published presence (PUBLISH with Expires 0) and stops refreshing
/// it; subscribers see the account offline. Errors: NULL_ARGUMENT (`ep`), NOT_FOUND (no such
/// account, or nothing published), SHUTDOWN.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_account_unpublish_presence(
    ep: *mut rvoip_endpoint,
    account_id: u64,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live endpoint.
        let ep = unsafe { ref_arg(ep) }?;
        Ok(account(ep, account_id)?.unpublish_presence()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_package_codes() {
        assert_eq!(
            event_package(RVOIP_EVENT_PACKAGE_PRESENCE),
            Ok(EventPackage::Presence)
        );
        assert_eq!(
            event_package(RVOIP_EVENT_PACKAGE_DIALOG),
            Ok(EventPackage::Dialog)
        );
        for v in [2, 7, u32::MAX] {
            assert_eq!(
                event_package(v),
                Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)
            );
        }
    }
}
