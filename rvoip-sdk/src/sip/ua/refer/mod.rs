//! Call transfer (RFC 3515 REFER, RFC 3891 Replaces, RFC 5589 flows) as a usage of a call's
//! dialog (RFC 5057): the REFER and its implicit subscription share the dialog with the INVITE
//! usage and keep it alive after the call's BYE until the subscription ends.
//!
//! - Transferor: [`UserAgent::transfer`] / [`UserAgent::transfer_to_call`] send REFER; the
//!   NOTIFYs' `message/sipfrag` bodies (RFC 3420) become [`UaEvent::TransferStatus`] events up
//!   to the final status.
//! - Transferee: an in-dialog REFER becomes [`UaEvent::TransferRequested`]; on
//!   [`UserAgent::accept_transfer`] it is answered 202, the new call placed (with `Replaces` and
//!   `Referred-By` when the target carries them), its progress NOTIFYed (100, 180, then the
//!   final status, `Subscription-State: terminated`), and the transferred call ended with BYE
//!   once the new call is up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::build;

mod values;
use super::{AccountId, CallId, CallState, Owner, TransferId, UaError, UaEvent, UserAgent};
use crate::sip::msg::{HeaderName, Method, NameAddr, Request, Response, Uri, reason_phrase};
use crate::sip::transaction::{ServerTxId, Transport};
pub(super) use values::{ReplacesValue, event_package, terminated};
use values::{escape_hvalue, event_id, sipfrag_status};

/// How long the app has to accept or refuse a REFER before it is answered 480.
const DECISION_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a transferor waits for the final NOTIFY after sending REFER.
const TRANSFEROR_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a transferee keeps its notifier side after accepting.
const TRANSFEREE_TIMEOUT: Duration = Duration::from_secs(300);
/// The implicit subscription's lifetime we announce in NOTIFY (s).
const SUBSCRIPTION_EXPIRES_S: u32 = 300;

/// Our side of one REFER.
pub(super) enum Role {
    /// We sent the REFER: NOTIFYs come to us.
    Transferor {
        /// The REFER as last sent (a challenge is answered from it).
        req: Request,
        /// A final status was reported.
        reported_final: bool,
    },
    /// We received the REFER: we NOTIFY.
    Transferee {
        /// The REFER's server transaction, until the app decides.
        tx: Option<ServerTxId>,
        /// The REFER.
        req: Request,
        /// The Refer-To URI (with its headers).
        target: Box<Uri>,
        /// The call placed to the target.
        new_call: Option<u64>,
        /// The last status we NOTIFYed.
        notified: u16,
    },
}

/// One REFER usage.
pub(super) struct Refer {
    /// The call whose dialog carries it.
    pub call: u64,
    /// The dialog's key.
    pub dialog: u64,
    /// The implicit subscription's `id`: the REFER's CSeq number (RFC 3515 §2.4.6).
    pub event_id: u32,
    /// Transferor or transferee.
    pub role: Role,
    /// When the usage gives up (see the constants).
    pub deadline: Instant,
}

impl UserAgent {
    /// Blind transfer (RFC 3515, RFC 5589 §6): sends REFER with `Refer-To: <target>` in the
    /// call's dialog. Progress arrives as [`UaEvent::TransferStatus`]; the call itself goes on
    /// until one side hangs up (the transferee ends it when the new call is up).
    /// Errors: [`UaError::NotFound`], [`UaError::InvalidState`] (not established),
    /// [`UaError::InvalidUri`] (not a SIP URI).
    pub fn transfer(&mut self, now: Instant, call: CallId, target: Uri) -> Result<(), UaError> {
        if !target.is_sip() {
            return Err(UaError::InvalidUri(target.to_string()));
        }
        self.send_refer(now, call, format!("<{target}>"))
    }

    /// Attended transfer (RFC 5589 §7): sends REFER on `call` whose Refer-To names the peer of
    /// the consultation call `other` with a `Replaces` header for `other`'s dialog (RFC 3891),
    /// so that the transferee's new call takes `other`'s place at its peer.
    /// Errors: [`UaError::NotFound`] (either call), [`UaError::InvalidState`] (either not
    /// established).
    pub fn transfer_to_call(
        &mut self,
        now: Instant,
        call: CallId,
        other: CallId,
    ) -> Result<(), UaError> {
        let o = self.live(other)?;
        if !o.is_established() {
            return Err(UaError::InvalidState(
                "consultation call is not established",
            ));
        }
        let e = self
            .dialogs
            .get(o.dialog)
            .ok_or(UaError::InvalidState("consultation call has no dialog"))?;
        let d = &e.dialog;
        // Seen from the peer of `other`: its To tag is its own (our remote) tag.
        let replaces = format!(
            "{};to-tag={};from-tag={}",
            d.call_id, d.remote_tag, d.local_tag
        );
        let target = d.remote_uri.uri.without_headers();
        let refer_to = format!("<{target}?Replaces={}>", escape_hvalue(&replaces));
        self.send_refer(now, call, refer_to)
    }

    fn send_refer(&mut self, now: Instant, call: CallId, refer_to: String) -> Result<(), UaError> {
        let c = self.live(call)?;
        if !c.is_established() {
            return Err(UaError::InvalidState("call is not established"));
        }
        let key = c.dialog.ok_or(UaError::InvalidState("no dialog"))?;
        let e = self
            .dialogs
            .get_mut(Some(key))
            .ok_or(UaError::InvalidState("no dialog"))?;
        let mut req = e.request(Method::Refer, None);
        req.headers.push(HeaderName::ReferTo, refer_to);
        req.headers.push(
            HeaderName::ReferredBy,
            format!("<{}>", e.dialog.local_uri.uri),
        );
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let hop = e.next_hop();
        let transport = e.path.transport;
        let id = self.alloc();
        if let Some(e) = self.dialogs.get_mut(Some(key)) {
            e.subs.push(id);
        }
        let tx = self.tl.send_request(now, req.clone(), hop, transport);
        self.owners.insert(tx, Owner::Refer(id));
        self.refers.insert(
            id,
            Refer {
                call: call.0,
                dialog: key,
                event_id: seq,
                role: Role::Transferor {
                    req,
                    reported_final: false,
                },
                deadline: now + TRANSFEROR_TIMEOUT,
            },
        );
        Ok(())
    }

    /// The target of a REFER we received, without its `?headers` (what to resolve before
    /// [`UserAgent::accept_transfer`]), and the account of the transferred call.
    /// Errors: [`UaError::NotFound`] (unknown, decided or expired).
    pub fn transfer_target(
        &self,
        transfer: TransferId,
    ) -> Result<(Uri, Option<AccountId>), UaError> {
        match self.refers.get(&transfer.0) {
            Some(Refer {
                role:
                    Role::Transferee {
                        tx: Some(_),
                        target,
                        ..
                    },
                call,
                ..
            }) => {
                let account = self.calls.get(call).and_then(|c| c.account).map(AccountId);
                Ok((target.without_headers(), account))
            }
            _ => Err(UaError::NotFound),
        }
    }

    /// Accepts a REFER (RFC 3515 §2.4.2): answers it 202, NOTIFYs `100 Trying`, and places the
    /// new call to its target through `dest` over `transport` from `local` with `media`,
    /// carrying the target's `Replaces` and the REFER's `Referred-By`. The new call's progress
    /// is NOTIFYed; once it is up, the transferred call is ended (BYE). Returns the new call.
    /// Errors: [`UaError::NotFound`] (unknown, decided or expired), [`UaError::Sdp`].
    pub fn accept_transfer(
        &mut self,
        now: Instant,
        transfer: TransferId,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        media: crate::sdp::LocalMedia,
    ) -> Result<CallId, UaError> {
        let (target, account) = self.transfer_target(transfer)?;
        let (tx, req, full_target) = match self.refers.get_mut(&transfer.0) {
            Some(Refer {
                role: Role::Transferee {
                    tx, req, target, ..
                },
                ..
            }) => (tx.take(), req.clone(), (**target).clone()),
            _ => return Err(UaError::NotFound),
        };
        let Some(tx) = tx else {
            return Err(UaError::NotFound);
        };
        let mut extra = Vec::new();
        if let Some(r) = full_target.header("Replaces") {
            extra.push((HeaderName::Replaces, r));
        }
        if let Some(rb) = req.headers.get(&HeaderName::ReferredBy) {
            extra.push((HeaderName::ReferredBy, rb.to_string()));
        }
        let account = account.filter(|a| self.accounts.contains_key(&a.0));
        let placed =
            self.make_call_with(now, account, target, dest, transport, local, media, extra);
        match placed {
            Ok(new_call) => {
                let resp = build::response(&req, 202, None, None);
                self.tl.respond(now, tx, resp);
                if let Some(r) = self.refers.get_mut(&transfer.0) {
                    r.deadline = now + TRANSFEREE_TIMEOUT;
                    if let Role::Transferee { new_call: n, .. } = &mut r.role {
                        *n = Some(new_call.0);
                    }
                }
                self.notify_refer(now, transfer.0, 100, "Trying", false);
                Ok(new_call)
            }
            Err(e) => {
                let resp = build::response(&req, 500, None, None);
                self.tl.respond(now, tx, resp);
                self.drop_refer(transfer.0);
                Err(e)
            }
        }
    }

    /// Refuses a REFER with a final status 300..=699 (e.g. 603 Decline, 403 Forbidden).
    /// Errors: [`UaError::NotFound`] (unknown, decided or expired), [`UaError::InvalidStatus`].
    pub fn reject_transfer(
        &mut self,
        now: Instant,
        transfer: TransferId,
        status: u16,
    ) -> Result<(), UaError> {
        if !(300..=699).contains(&status) {
            return Err(UaError::InvalidStatus(status));
        }
        let (tx, req) = match self.refers.get_mut(&transfer.0) {
            Some(Refer {
                role: Role::Transferee { tx, req, .. },
                ..
            }) => (tx.take().ok_or(UaError::NotFound)?, req.clone()),
            _ => return Err(UaError::NotFound),
        };
        let resp = build::response(&req, status, None, None);
        self.tl.respond(now, tx, resp);
        self.drop_refer(transfer.0);
        Ok(())
    }

    /// A REFER in the dialog `key` (RFC 3515 §2.4.2): 400 without exactly one SIP Refer-To,
    /// 481 when no call uses the dialog, else offered to the app.
    pub(super) fn on_refer(&mut self, now: Instant, tx: ServerTxId, req: Request, key: u64) {
        let call = self.dialogs.get(Some(key)).and_then(|e| e.invite);
        let Some(call) = call.filter(|c| self.live(CallId(*c)).is_ok()) else {
            let resp = build::response(&req, 481, None, None);
            self.tl.respond(now, tx, resp);
            return;
        };
        let target = {
            let mut values = req.headers.get_all(&HeaderName::ReferTo);
            match (values.next(), values.next()) {
                (Some(v), None) => NameAddr::parse(v).ok().map(|n| n.uri),
                _ => None,
            }
        };
        let Some(target) = target.filter(|u| u.is_sip()) else {
            let resp = build::response(&req, 400, None, None);
            self.tl.respond(now, tx, resp);
            return;
        };
        let id = self.alloc();
        let event_id = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        if let Some(e) = self.dialogs.get_mut(Some(key)) {
            e.subs.push(id);
        }
        self.events.push_back(UaEvent::TransferRequested {
            call: CallId(call),
            transfer: TransferId(id),
            target: target.to_string(),
            referred_by: req
                .headers
                .get(&HeaderName::ReferredBy)
                .map(|v| v.to_string()),
            replaces: target.header("Replaces").is_some(),
        });
        self.refers.insert(
            id,
            Refer {
                call,
                dialog: key,
                event_id,
                role: Role::Transferee {
                    tx: Some(tx),
                    req,
                    target: Box::new(target),
                    new_call: None,
                    notified: 0,
                },
                deadline: now + DECISION_TIMEOUT,
            },
        );
    }

    /// A NOTIFY with `Event: refer` in the dialog `key` (RFC 3515 §2.4.4): 481 without a
    /// matching REFER of ours, else 200 and the sipfrag's status as
    /// [`UaEvent::TransferStatus`].
    pub(super) fn on_refer_notify(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        key: u64,
    ) {
        let wanted = req
            .headers
            .get(&HeaderName::Event)
            .and_then(|v| event_id(v));
        let found = self.refers.iter_mut().find(|(_, r)| {
            r.dialog == key
                && matches!(r.role, Role::Transferor { .. })
                && wanted.is_none_or(|w| w == r.event_id)
        });
        let Some((&id, r)) = found else {
            let resp = build::response(req, 481, None, None);
            self.tl.respond(now, tx, resp);
            return;
        };
        let resp = build::response(req, 200, None, None);
        self.tl.respond(now, tx, resp);
        let ended = terminated(req);
        let (status, reason) = sipfrag_status(&req.body).unwrap_or((100, "Trying".into()));
        let call = CallId(r.call);
        if let Role::Transferor { reported_final, .. } = &mut r.role {
            let is_final = ended || status >= 200;
            if !*reported_final {
                *reported_final = is_final;
                self.events.push_back(UaEvent::TransferStatus {
                    call,
                    status,
                    reason,
                    is_final,
                });
            }
        }
        if ended {
            self.drop_refer(id);
        }
    }

    /// A response to our REFER or NOTIFY (or a synthesized 408/503).
    pub(super) fn on_refer_response(&mut self, now: Instant, id: u64, resp: &Response) {
        if resp.status < 200 {
            return;
        }
        let Some(r) = self.refers.get_mut(&id) else {
            return;
        };
        let Role::Transferor {
            req,
            reported_final,
        } = &mut r.role
        else {
            // A response to our NOTIFY: 481 or 408 ends the subscription (RFC 6665 §4.2.2).
            if matches!(resp.status, 481 | 408) {
                self.drop_refer(id);
            }
            return;
        };
        let is_refer = resp.headers.cseq().is_ok_and(|c| c.method == Method::Refer);
        if !is_refer || resp.status < 300 {
            return;
        }
        if matches!(resp.status, 401 | 407) {
            let e = self.dialogs.get_mut(Some(r.dialog));
            let retry = e.and_then(|e| {
                let creds = e.path.creds.clone()?;
                if build::is_rejected_credential(req, resp) {
                    return None;
                }
                let new = build::authorize(req, resp, &creds, e.path.local, e.path.transport)?;
                if let Ok(c) = new.headers.cseq() {
                    e.dialog.local_seq = c.seq;
                }
                Some((new, e.next_hop(), e.path.transport))
            });
            if let Some((new, hop, transport)) = retry {
                r.event_id = new.headers.cseq().map(|c| c.seq).unwrap_or(r.event_id);
                *req = new.clone();
                let tx = self.tl.send_request(now, new, hop, transport);
                self.owners.insert(tx, Owner::Refer(id));
                return;
            }
        }
        if !*reported_final {
            *reported_final = true;
            let reason = if resp.reason.is_empty() {
                reason_phrase(resp.status).to_string()
            } else {
                resp.reason.to_string()
            };
            self.events.push_back(UaEvent::TransferStatus {
                call: CallId(r.call),
                status: resp.status,
                reason,
                is_final: true,
            });
        }
        self.drop_refer(id);
    }

    /// A REFER or NOTIFY of ours ended without a response to hand over (its request is gone).
    pub(super) fn on_refer_failure(&mut self, id: u64, status: u16, reason: &str) {
        if let Some(Refer {
            call,
            role:
                Role::Transferor {
                    reported_final: false,
                    ..
                },
            ..
        }) = self.refers.get(&id)
        {
            self.events.push_back(UaEvent::TransferStatus {
                call: CallId(*call),
                status,
                reason: reason.to_string(),
                is_final: true,
            });
        }
        self.drop_refer(id);
    }

    /// Sends a NOTIFY of a REFER we accepted with `status` as sipfrag (RFC 3515 §2.4.5).
    fn notify_refer(&mut self, now: Instant, id: u64, status: u16, reason: &str, last: bool) {
        let Some(r) = self.refers.get_mut(&id) else {
            return;
        };
        if let Role::Transferee { notified, .. } = &mut r.role {
            *notified = status;
        }
        let Some(e) = self.dialogs.get_mut(Some(r.dialog)) else {
            return;
        };
        let mut req = e.request(Method::Notify, None);
        req.headers
            .push(HeaderName::Event, format!("refer;id={}", r.event_id));
        let state = if last {
            "terminated;reason=noresource".to_string()
        } else {
            format!("active;expires={SUBSCRIPTION_EXPIRES_S}")
        };
        req.headers.push(HeaderName::SubscriptionState, state);
        req.headers
            .push(HeaderName::ContentType, "message/sipfrag;version=2.0");
        req.body = bytes::Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        let hop = e.next_hop();
        let transport = e.path.transport;
        let tx = self.tl.send_request(now, req, hop, transport);
        if last {
            self.drop_refer(id);
        } else {
            self.owners.insert(tx, Owner::Refer(id));
        }
    }

    /// Follows the calls placed for accepted REFERs: NOTIFYs their progress, and ends the
    /// transferred call once the new one is up (RFC 5589 §6.1).
    pub(super) fn watch_transfer(&mut self, now: Instant, call: u64, state: &CallState) {
        let found = self.refers.iter().find_map(|(id, r)| match &r.role {
            Role::Transferee {
                new_call: Some(c),
                notified,
                ..
            } if *c == call => Some((*id, r.call, *notified)),
            _ => None,
        });
        let Some((id, old, notified)) = found else {
            return;
        };
        match state {
            CallState::Ringing | CallState::EarlyMedia if notified < 180 => {
                self.notify_refer(now, id, 180, "Ringing", false);
            }
            CallState::Connected | CallState::Held { .. } => {
                self.notify_refer(now, id, 200, "OK", true);
                if self.live(CallId(old)).is_ok() {
                    let _ = self.hangup(now, CallId(old));
                }
            }
            CallState::Ended { status, reason } => {
                let status = if *status < 300 { 487 } else { *status };
                self.notify_refer(now, id, status, reason, true);
            }
            _ => {}
        }
    }

    /// Expired REFER usages: an undecided REFER gets 480, a transferor without a final NOTIFY
    /// reports 408.
    pub(super) fn refer_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .refers
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(r) = self.refers.get_mut(&id) else {
                continue;
            };
            match &mut r.role {
                Role::Transferee { tx, req, .. } => {
                    if let Some(tx) = tx.take() {
                        let resp = build::response(req, 480, None, None);
                        self.tl.respond(now, tx, resp);
                    }
                }
                Role::Transferor { reported_final, .. } => {
                    if !*reported_final {
                        self.events.push_back(UaEvent::TransferStatus {
                            call: CallId(r.call),
                            status: 408,
                            reason: "no final NOTIFY".into(),
                            is_final: true,
                        });
                    }
                }
            }
            self.drop_refer(id);
        }
    }

    /// The earliest REFER deadline.
    pub(super) fn refer_poll_timeout(&self) -> Option<Instant> {
        self.refers.values().map(|r| r.deadline).min()
    }

    fn drop_refer(&mut self, id: u64) {
        if let Some(r) = self.refers.remove(&id) {
            self.dialogs.drop_sub(r.dialog, id);
        }
        self.owners.retain(|_, o| *o != Owner::Refer(id));
    }
}
