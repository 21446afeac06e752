//! Subscriptions we make (RFC 6665) to a buddy's presence (RFC 3856, PIDF RFC 3863) or a line's
//! dialogs (RFC 4235, busy-lamp field), as usages of their own dialog (RFC 5057): SUBSCRIBE
//! through the account's server with digest auth, the dialog formed by the 2xx or by a NOTIFY
//! that overtakes it (RFC 6665 §4.1.2.4), NOTIFY bodies reported as events, refresh before
//! expiry, a fresh subscription after `deactivated`/`timeout` (§4.1.3), and un-SUBSCRIBE
//! (`Expires: 0`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::build;
use super::dialogs::PeerPath;
use super::{
    AccountId, EventPackage, Owner, SubscriptionId, SubscriptionState, UaError, UaEvent, UserAgent,
};
use crate::sip::dialog::Dialog;
use crate::sip::msg::{HeaderName, Method, Request, Response, Uri};
use crate::sip::presence;
use crate::sip::transaction::{ServerTxId, Transport};

/// Refresh this long before the subscription expires (or at half its lifetime when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(15);
/// How long an un-SUBSCRIBE waits for the final NOTIFY before the usage is dropped.
const UNSUBSCRIBE_WAIT: Duration = Duration::from_secs(32);
/// Fresh subscriptions after a `deactivated`/`timeout` termination in a row, at most.
const MAX_RESUBSCRIBE: u32 = 3;

/// One subscription.
pub(super) struct Subscription {
    account: u64,
    target: Uri,
    package: EventPackage,
    /// The lifetime we ask for (s).
    expires_s: u32,
    call_id: String,
    from_tag: String,
    /// The dialog's key once a 2xx or NOTIFY formed it.
    dialog: Option<u64>,
    /// The last SUBSCRIBE sent (a challenge is answered from it).
    req: Request,
    dest: SocketAddr,
    transport: Transport,
    local: SocketAddr,
    /// When to refresh (or, unsubscribing, give up).
    due: Option<Instant>,
    /// The last state reported.
    state: SubscriptionState,
    /// False once the app unsubscribed.
    wanted: bool,
    /// Fresh subscriptions in a row after deactivated/timeout.
    restarts: u32,
}

/// `Subscription-State` (RFC 6665 §8.2.3): the state token, `expires`, `reason`.
fn subscription_state(req: &Request) -> Option<(String, Option<u32>, Option<String>)> {
    let v = req.headers.get(&HeaderName::SubscriptionState)?;
    let mut parts = v.split(';');
    let state = parts.next()?.trim().to_ascii_lowercase();
    let (mut expires, mut reason) = (None, None);
    for p in parts {
        if let Some((n, val)) = p.split_once('=') {
            match n.trim().to_ascii_lowercase().as_str() {
                "expires" => expires = val.trim().parse().ok(),
                "reason" => reason = Some(val.trim().to_ascii_lowercase()),
                _ => {}
            }
        }
    }
    Some((state, expires, reason))
}

fn refresh_in(expires_s: u32) -> Duration {
    let life = Duration::from_secs(expires_s.max(1) as u64);
    if life > REFRESH_MARGIN * 2 {
        life - REFRESH_MARGIN
    } else {
        life / 2
    }
}

impl UserAgent {
    /// Subscribes through the account's server to `target`'s `package` (presence: buddy status;
    /// dialog: its line's calls) for `expires_s` seconds (refreshed until
    /// [`UserAgent::unsubscribe`]). Events: [`UaEvent::SubscriptionState`],
    /// [`UaEvent::PresenceNotify`], [`UaEvent::LineNotify`].
    /// Errors: [`UaError::NotFound`] (account), [`UaError::InvalidUri`] (not a SIP URI).
    pub fn subscribe(
        &mut self,
        now: Instant,
        account: AccountId,
        target: Uri,
        package: EventPackage,
        expires_s: u32,
    ) -> Result<SubscriptionId, UaError> {
        if !target.is_sip() {
            return Err(UaError::InvalidUri(target.to_string()));
        }
        let reg = self.accounts.get(&account.0).ok_or(UaError::NotFound)?;
        let (dest, transport, local) = (reg.cfg.server, reg.cfg.transport, reg.cfg.local);
        let id = self.alloc();
        let mut sub = Subscription {
            account: account.0,
            target,
            package,
            expires_s: expires_s.max(60),
            call_id: String::new(),
            from_tag: String::new(),
            dialog: None,
            req: Request {
                method: Method::Subscribe,
                uri: Uri::new_sip(None, "invalid", None, ""),
                headers: Default::default(),
                body: Default::default(),
            },
            dest,
            transport,
            local,
            due: None,
            state: SubscriptionState::Subscribing,
            wanted: true,
            restarts: 0,
        };
        self.start_subscription(now, id, &mut sub);
        self.subs.insert(id, sub);
        self.events.push_back(UaEvent::SubscriptionState {
            subscription: SubscriptionId(id),
            state: SubscriptionState::Subscribing,
        });
        Ok(SubscriptionId(id))
    }

    /// Ends a subscription (SUBSCRIBE with `Expires: 0`, RFC 6665 §4.1.2.3); it is reported
    /// terminated (`unsubscribed`) at the final NOTIFY, or after 32 s without one.
    /// Errors: [`UaError::NotFound`] (unknown or already terminated).
    pub fn unsubscribe(&mut self, now: Instant, sub: SubscriptionId) -> Result<(), UaError> {
        let s = self
            .subs
            .get_mut(&sub.0)
            .filter(|s| s.wanted)
            .ok_or(UaError::NotFound)?;
        s.wanted = false;
        s.due = Some(now + UNSUBSCRIBE_WAIT);
        if s.dialog.is_some() {
            self.send_subscribe(now, sub.0, 0);
        } else {
            self.end_subscription(sub.0, "unsubscribed");
        }
        Ok(())
    }

    /// Starts subscription `id` afresh: a new dialog-forming SUBSCRIBE.
    fn restart_subscription(&mut self, now: Instant, id: u64) {
        if let Some(mut s) = self.subs.remove(&id) {
            self.start_subscription(now, id, &mut s);
            self.subs.insert(id, s);
        }
    }

    /// Sends the dialog-forming SUBSCRIBE of `sub` (new Call-ID and tag).
    fn start_subscription(&mut self, now: Instant, id: u64, sub: &mut Subscription) {
        let Some(reg) = self.accounts.get(&sub.account) else {
            return;
        };
        let from = reg.cfg.aor.to_string();
        let user = reg.cfg.aor.user.as_deref().unwrap_or("").to_string();
        sub.call_id = format!("{}@{}", build::token(), build::host_of(sub.local.ip()));
        sub.from_tag = build::token();
        sub.dialog = None;
        let target_s = sub.target.to_string();
        let mut req = build::new_request(
            Method::Subscribe,
            sub.target.clone(),
            &from,
            &sub.from_tag,
            &target_s,
            &sub.call_id,
            1,
        );
        let contact = build::contact_uri(&user, sub.local, sub.transport);
        req.headers
            .push(HeaderName::Contact, format!("<{contact}>"));
        add_subscribe_headers(&mut req, sub.package, sub.expires_s);
        build::finish_request(&mut req, sub.local, sub.transport);
        let tx = self
            .tl
            .send_request(now, req.clone(), sub.dest, sub.transport);
        self.owners.insert(tx, Owner::Subscribe(id));
        sub.req = req;
        sub.due = Some(now + refresh_in(sub.expires_s));
    }

    /// Sends an in-dialog SUBSCRIBE of `id` asking for `expires_s` (0: unsubscribe).
    fn send_subscribe(&mut self, now: Instant, id: u64, expires_s: u32) {
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        let Some(e) = self.dialogs.get_mut(sub.dialog) else {
            return;
        };
        let mut req = e.request(Method::Subscribe, None);
        add_subscribe_headers(&mut req, sub.package, expires_s);
        let hop = e.next_hop();
        let tx = self.tl.send_request(now, req.clone(), hop, sub.transport);
        self.owners.insert(tx, Owner::Subscribe(id));
        sub.req = req;
    }

    /// A response to one of our SUBSCRIBEs (or a synthesized 408/503 with `resp` None).
    pub(super) fn on_subscribe_response(
        &mut self,
        now: Instant,
        id: u64,
        resp: Option<&Response>,
        status: u16,
        reason: &str,
    ) {
        if status < 200 {
            return;
        }
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if (200..300).contains(&status) {
            let Some(resp) = resp else { return };
            if !sub.wanted {
                return; // the un-SUBSCRIBE's 2xx: the final NOTIFY ends it
            }
            let granted = resp
                .headers
                .get(&HeaderName::Expires)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(sub.expires_s);
            sub.due = Some(now + refresh_in(granted));
            match sub.dialog {
                Some(k) => {
                    if let Some(e) = self.dialogs.get_mut(Some(k)) {
                        e.dialog.refresh_target(&resp.headers);
                    }
                }
                None => {
                    if let Ok(d) = Dialog::from_uac(&sub.req, resp) {
                        let key = self.attach_sub_dialog(id, d);
                        if let Some(s) = self.subs.get_mut(&id) {
                            s.dialog = Some(key);
                        }
                    }
                }
            }
            return;
        }
        if let Some(resp) = resp {
            if matches!(status, 401 | 407) {
                let creds = self
                    .accounts
                    .get(&sub.account)
                    .map(|r| r.cfg.credentials.clone());
                let retry = creds.and_then(|c| {
                    if build::is_rejected_credential(&sub.req, resp) {
                        None
                    } else {
                        build::authorize(&sub.req, resp, &c, sub.local, sub.transport)
                    }
                });
                if let Some(req) = retry {
                    let hop = match self.dialogs.get_mut(sub.dialog) {
                        Some(e) => {
                            if let Ok(c) = req.headers.cseq() {
                                e.dialog.local_seq = c.seq;
                            }
                            e.next_hop()
                        }
                        None => sub.dest,
                    };
                    let tx = self.tl.send_request(now, req.clone(), hop, sub.transport);
                    self.owners.insert(tx, Owner::Subscribe(id));
                    sub.req = req;
                    return;
                }
            }
            if status == 423 {
                // Interval Too Brief (RFC 6665 §4.1.2.1): ask again with Min-Expires.
                let min = resp
                    .headers
                    .get(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if let Some(min) = min.filter(|m| *m > sub.expires_s && *m <= 86_400) {
                    sub.expires_s = min;
                    if sub.dialog.is_some() {
                        self.send_subscribe(now, id, min);
                    } else {
                        self.restart_subscription(now, id);
                    }
                    return;
                }
            }
        }
        if status == 481 && sub.wanted && sub.dialog.is_some() {
            // The notifier forgot us (§4.1.2.2): start a new subscription.
            let key = sub.dialog.take();
            if let Some(k) = key {
                self.dialogs.drop_sub(k, id);
            }
            self.restart_subscription(now, id);
            return;
        }
        let why = if reason.is_empty() {
            status.to_string()
        } else {
            format!("{status} {reason}")
        };
        self.end_subscription(id, &why);
    }

    /// Puts a subscription's dialog in the table as its usage.
    fn attach_sub_dialog(&mut self, id: u64, d: Dialog) -> u64 {
        let Some(sub) = self.subs.get(&id) else {
            return 0;
        };
        let reg = self.accounts.get(&sub.account);
        let path = PeerPath {
            dest: sub.dest,
            transport: sub.transport,
            local: sub.local,
            contact_addr: self.contact_addr_for(Some(sub.account), sub.local),
            user: reg
                .and_then(|r| r.cfg.aor.user.as_deref())
                .unwrap_or("")
                .to_string(),
            creds: reg.map(|r| r.cfg.credentials.clone()),
        };
        let key = self.dialogs.insert(d, path);
        if let Some(e) = self.dialogs.get_mut(Some(key)) {
            e.subs.push(id);
        }
        key
    }

    /// The subscription an incoming NOTIFY is for: by its dialog, or (a NOTIFY that overtook
    /// the 2xx, RFC 6665 §4.1.2.4) by Call-ID, our tag and the package, forming the dialog.
    pub(super) fn notify_subscription(&mut self, req: &Request, key: Option<u64>) -> Option<u64> {
        let package = super::refer::event_package(req)?;
        if let Some(k) = key {
            return self
                .subs
                .iter()
                .find(|(_, s)| s.dialog == Some(k) && s.package.token() == package)
                .map(|(id, _)| *id);
        }
        let call_id = req.headers.call_id()?.to_string();
        let to_tag = req.headers.to().ok()?.tag()?.to_string();
        let id = self
            .subs
            .iter()
            .find(|(_, s)| {
                s.dialog.is_none()
                    && s.call_id == call_id
                    && s.from_tag == to_tag
                    && s.package.token() == package
            })
            .map(|(id, _)| *id)?;
        let seq = self.subs.get(&id)?.req.headers.cseq().ok()?.seq;
        let mut d = Dialog::from_uas(req, &to_tag).ok()?;
        d.local_seq = seq;
        let key = self.attach_sub_dialog(id, d);
        if let Some(s) = self.subs.get_mut(&id) {
            s.dialog = Some(key);
        }
        Some(id)
    }

    /// A NOTIFY of subscription `id` (RFC 6665 §4.1.3): 200, its document reported, its
    /// Subscription-State followed.
    pub(super) fn on_sub_notify(&mut self, now: Instant, tx: ServerTxId, req: &Request, id: u64) {
        let resp = build::response(req, 200, None, None);
        self.tl.respond(now, tx, resp);
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        if let Some(e) = self.dialogs.get_mut(sub.dialog) {
            e.dialog.refresh_target(&req.headers);
        }
        let subscription = SubscriptionId(id);
        let doc_ok = req
            .headers
            .content_type()
            .and_then(|c| c.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(sub.package.content_type()));
        if doc_ok && !req.body.is_empty() {
            match sub.package {
                EventPackage::Presence => {
                    if let Some(p) = presence::parse_pidf(&req.body) {
                        self.events.push_back(UaEvent::PresenceNotify {
                            subscription,
                            presence: p,
                        });
                    }
                }
                EventPackage::Dialog => {
                    if let Some(d) = presence::parse_dialog_info(&req.body) {
                        self.events.push_back(UaEvent::LineNotify {
                            subscription,
                            entity: d.entity,
                            line: d.line,
                        });
                    }
                }
            }
        }
        let Some((state, expires, reason)) = subscription_state(req) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(&id) else {
            return;
        };
        match state.as_str() {
            "active" | "pending" => {
                let st = if state == "active" {
                    SubscriptionState::Active
                } else {
                    SubscriptionState::Pending
                };
                sub.restarts = 0;
                if let (Some(e), true) = (expires, sub.wanted) {
                    let at = now + refresh_in(e);
                    if sub.due.is_none_or(|d| at < d) {
                        sub.due = Some(at);
                    }
                }
                if sub.state != st && sub.wanted {
                    sub.state = st.clone();
                    self.events.push_back(UaEvent::SubscriptionState {
                        subscription,
                        state: st,
                    });
                }
            }
            "terminated" => {
                let reason = reason.unwrap_or_else(|| "noresource".into());
                let again = sub.wanted
                    && matches!(reason.as_str(), "deactivated" | "timeout")
                    && sub.restarts < MAX_RESUBSCRIBE;
                if let Some(k) = sub.dialog.take() {
                    self.dialogs.drop_sub(k, id);
                }
                if again {
                    sub.restarts += 1;
                    self.restart_subscription(now, id);
                } else {
                    let why = if sub.wanted {
                        reason
                    } else {
                        "unsubscribed".into()
                    };
                    self.end_subscription(id, &why);
                }
            }
            _ => {}
        }
    }

    /// Refreshes due subscriptions; drops un-SUBSCRIBEs that got no final NOTIFY.
    pub(super) fn subscription_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .subs
            .iter()
            .filter(|(_, s)| s.due.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(s) = self.subs.get_mut(&id) else {
                continue;
            };
            if !s.wanted {
                self.end_subscription(id, "unsubscribed");
                continue;
            }
            let expires = s.expires_s;
            s.due = Some(now + refresh_in(expires));
            if s.dialog.is_some() {
                self.send_subscribe(now, id, expires);
            } else {
                self.restart_subscription(now, id);
            }
        }
    }

    /// The earliest subscription deadline.
    pub(super) fn subscription_poll_timeout(&self) -> Option<Instant> {
        self.subs.values().filter_map(|s| s.due).min()
    }

    /// Reports a subscription terminated and forgets it and its dialog usage.
    fn end_subscription(&mut self, id: u64, reason: &str) {
        if let Some(s) = self.subs.remove(&id) {
            if let Some(k) = s.dialog {
                self.dialogs.drop_sub(k, id);
            }
            self.events.push_back(UaEvent::SubscriptionState {
                subscription: SubscriptionId(id),
                state: SubscriptionState::Terminated {
                    reason: reason.to_string(),
                },
            });
        }
        self.owners.retain(|_, o| *o != Owner::Subscribe(id));
    }
}

fn add_subscribe_headers(req: &mut Request, package: EventPackage, expires_s: u32) {
    req.headers.push(HeaderName::Event, package.token());
    req.headers.push(HeaderName::Accept, package.content_type());
    req.headers.push(HeaderName::Expires, expires_s.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_values_and_refresh_times() {
        let mut req = Request {
            method: Method::Notify,
            uri: Uri::new_sip(None, "h", None, ""),
            headers: Default::default(),
            body: Default::default(),
        };
        req.headers.push(
            HeaderName::SubscriptionState,
            "Terminated;reason=Deactivated;retry-after=5",
        );
        assert_eq!(
            subscription_state(&req),
            Some(("terminated".into(), None, Some("deactivated".into())))
        );
        req.headers
            .set(HeaderName::SubscriptionState, "active;expires=600");
        assert_eq!(
            subscription_state(&req),
            Some(("active".into(), Some(600), None))
        );
        assert_eq!(refresh_in(600), Duration::from_secs(585));
        assert_eq!(refresh_in(20), Duration::from_secs(10));
        assert_eq!(refresh_in(0), Duration::from_millis(500));
    }
}
