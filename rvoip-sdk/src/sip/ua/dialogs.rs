//! The user agent's dialogs and the usages each one carries (RFC 5057, PJSIP's dialog/usage
//! split). A dialog (RFC 3261 §12) belongs to the user agent, not to a call: one dialog can carry
//! an INVITE usage (a [`super::call::Call`]) and subscription usages (the implicit subscription
//! of a REFER, RFC 3515 §2.4.4), which share its CSeq space, route set and remote target. The
//! dialog ends when its last usage ends (RFC 5057 §5).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::build::{self, Credentials};
use crate::sip::dialog::Dialog;
use crate::sip::msg::{HeaderName, Headers, Method, Request};
use crate::sip::transaction::Transport;

/// How requests of a dialog reach the peer when the route set and remote target give no
/// address: where the dialog-forming request went or came from, over which transport, and our
/// address facing it.
#[derive(Debug, Clone)]
pub(super) struct PeerPath {
    /// The first hop of the dialog-forming request (UAC) or its source (UAS).
    pub dest: SocketAddr,
    /// UDP, TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// Our address facing `dest` (Via).
    pub local: SocketAddr,
    /// The address our Contact names: `local`, or the account's learned public address
    /// (RFC 3581 §4).
    pub contact_addr: SocketAddr,
    /// The user part of our Contact.
    pub user: String,
    /// Credentials for challenged in-dialog requests (§22.2), if the dialog is an account's.
    pub creds: Option<Credentials>,
}

impl PeerPath {
    /// Our Contact URI in this dialog (§8.1.1.8).
    pub fn contact(&self) -> String {
        build::contact_uri(&self.user, self.contact_addr, self.transport)
    }
}

/// One dialog and its usages.
pub(super) struct DialogEntry {
    /// The RFC 3261 dialog state.
    pub dialog: Dialog,
    /// How to reach the peer.
    pub path: PeerPath,
    /// The INVITE usage (a call id), if any.
    pub invite: Option<u64>,
    /// Subscription usages (ids of [`super::refer::Refer`] and [`super::subscribe::Subscription`]).
    pub subs: Vec<u64>,
}

impl DialogEntry {
    /// The next hop of an in-dialog request (§12.2.1.1, §8.1.2): the first Route, else the
    /// remote target, else where the dialog-forming request went / came from.
    pub fn next_hop(&self) -> SocketAddr {
        if let Some(first) = self.dialog.route_set.first() {
            if let Some(addr) = build::route_uri(first).as_ref().and_then(build::uri_addr) {
                return addr;
            }
        }
        build::uri_addr(&self.dialog.remote_target).unwrap_or(self.path.dest)
    }

    /// An in-dialog request of `method` (§12.2.1.1) with the next CSeq (or `seq` for ACK), a
    /// fresh Via, Max-Forwards, and our Contact on target-refresh requests (INVITE, SUBSCRIBE,
    /// REFER, NOTIFY: RFC 6665 §4.1.2, RFC 3515 §2.4.5).
    pub fn request(&mut self, method: Method, seq: Option<u32>) -> Request {
        let mut req = match seq {
            Some(s) => self.dialog.request_with_cseq(method.clone(), s),
            None => self.dialog.new_request(method.clone()),
        };
        if matches!(
            method,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
        ) {
            req.headers
                .push(HeaderName::Contact, format!("<{}>", self.path.contact()));
        }
        if matches!(method, Method::Invite) {
            req.headers.push(HeaderName::Allow, build::ALLOW);
        }
        build::finish_request(&mut req, self.path.local, self.path.transport);
        req
    }

    /// Whether nothing uses the dialog any more.
    pub fn unused(&self) -> bool {
        self.invite.is_none() && self.subs.is_empty()
    }
}

/// The user agent's dialog table.
#[derive(Default)]
pub(super) struct Dialogs {
    entries: HashMap<u64, DialogEntry>,
    next: u64,
}

impl Dialogs {
    /// Adds a dialog; returns its key.
    pub fn insert(&mut self, dialog: Dialog, path: PeerPath) -> u64 {
        self.next += 1;
        let key = self.next;
        self.entries.insert(
            key,
            DialogEntry {
                dialog,
                path,
                invite: None,
                subs: Vec::new(),
            },
        );
        key
    }

    /// The dialog with `key`.
    pub fn get(&self, key: Option<u64>) -> Option<&DialogEntry> {
        self.entries.get(&key?)
    }

    /// The dialog with `key`, mutably.
    pub fn get_mut(&mut self, key: Option<u64>) -> Option<&mut DialogEntry> {
        self.entries.get_mut(&key?)
    }

    /// The dialog `headers` belong to (§12.2.2 for requests we receive, §12.2.1.2 for responses).
    pub fn find(&self, headers: &Headers, incoming_request: bool) -> Option<u64> {
        self.entries
            .iter()
            .find(|(_, e)| e.dialog.matches(headers, incoming_request))
            .map(|(k, _)| *k)
    }

    /// Replaces the dialog state of `key` (an early dialog confirmed by a 2xx of another To tag).
    pub fn replace(&mut self, key: u64, dialog: Dialog) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.dialog = dialog;
        }
    }

    /// Detaches the INVITE usage; the dialog goes when no usage is left.
    pub fn drop_invite(&mut self, key: Option<u64>) {
        if let Some(k) = key {
            if let Some(e) = self.entries.get_mut(&k) {
                e.invite = None;
                if e.unused() {
                    self.entries.remove(&k);
                }
            }
        }
    }

    /// Detaches subscription usage `sub`; the dialog goes when no usage is left.
    pub fn drop_sub(&mut self, key: u64, sub: u64) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.subs.retain(|s| *s != sub);
            if e.unused() {
                self.entries.remove(&key);
            }
        }
    }

    /// Number of dialogs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}
