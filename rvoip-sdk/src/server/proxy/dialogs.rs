//! What the proxy remembers of each call it record-routed: who the caller is (its From tag),
//! each party's signalling flow and whether it sits behind a NAT, the dialog's identifiers for
//! a BYE of our own (media timeout), and the fork branch that answered.
//!
//! A NATed party's Contact names a private address that cannot be reached; in-dialog requests
//! toward it go to the flow its REGISTER or INVITE came from instead (RFC 5626's flow, Kamailio's
//! `fix_nated_register` / `handle_ruri_alias`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sip::transaction::Transport;

use super::media::Party;

/// How long a call record without any request lives (dialogs whose BYE the proxy never saw).
pub const IDLE_CALL_LIFETIME: Duration = Duration::from_secs(4 * 3600);

/// One party's side of a call.
#[derive(Debug, Clone, Default)]
pub struct PartyInfo {
    /// Where its signalling comes from (the INVITE's source, or the binding's flow).
    pub flow: Option<(SocketAddr, Transport)>,
    /// Whether it sits behind a NAT (so requests to it go to `flow`).
    pub nat: bool,
    /// Its Contact URI (the dialog's remote target for the other side), as text.
    pub contact: Option<String>,
    /// Its From/To header value with its tag (the caller's From, the callee's To).
    pub header: Option<String>,
    /// The highest CSeq number it used in this dialog.
    pub cseq: u32,
}

/// One fork branch of the initial INVITE.
#[derive(Debug, Clone)]
pub struct BranchInfo {
    /// The branch's next hop.
    pub dest: SocketAddr,
    /// Its transport.
    pub transport: Transport,
    /// Whether the target binding is behind a NAT.
    pub nat: bool,
}

/// A call the proxy forwarded the initial INVITE of.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The caller's From tag.
    pub caller_tag: String,
    /// The caller.
    pub caller: PartyInfo,
    /// The callee (filled from the branch that answered).
    pub callee: PartyInfo,
    /// The fork branches of the initial INVITE.
    pub branches: Vec<BranchInfo>,
    /// The branch whose 2xx was forwarded first.
    pub answered: Option<u32>,
    /// Last request or response seen.
    pub last_activity: Instant,
    /// What the proxy adds to the CSeq numbers of the caller's requests toward the callee
    /// (it answered the callee's challenge to the INVITE with the next CSeq, RFC 3261 §22.2)
    /// and takes off their responses. 0 for most calls.
    pub callee_cseq_offset: u32,
    /// When the initial INVITE was forwarded (the call's age in `/status`).
    pub started: Instant,
    /// The initial INVITE's To header value (the called party, before any tag).
    pub to: Option<String>,
}

impl CallRecord {
    /// The party `p`.
    pub fn party(&self, p: Party) -> &PartyInfo {
        match p {
            Party::Caller => &self.caller,
            Party::Callee => &self.callee,
        }
    }

    /// The party `p`, mutable.
    pub fn party_mut(&mut self, p: Party) -> &mut PartyInfo {
        match p {
            Party::Caller => &mut self.caller,
            Party::Callee => &mut self.callee,
        }
    }

    /// Who sent a request with this From tag.
    pub fn sender_of(&self, from_tag: Option<&str>) -> Party {
        if from_tag == Some(self.caller_tag.as_str()) {
            Party::Caller
        } else {
            Party::Callee
        }
    }

    /// Whether either party is behind a NAT.
    pub fn any_nat(&self) -> bool {
        self.caller.nat || self.callee.nat || self.branches.iter().any(|b| b.nat)
    }
}

/// Call records by Call-ID.
#[derive(Debug, Default)]
pub struct Dialogs {
    calls: HashMap<String, CallRecord>,
}

impl Dialogs {
    /// Records a new call (initial INVITE being forked).
    pub fn insert(&mut self, call_id: &str, rec: CallRecord) {
        self.calls.insert(call_id.to_string(), rec);
    }

    /// The record of a call.
    pub fn get(&self, call_id: &str) -> Option<&CallRecord> {
        self.calls.get(call_id)
    }

    /// The record of a call, mutable.
    pub fn get_mut(&mut self, call_id: &str) -> Option<&mut CallRecord> {
        self.calls.get_mut(call_id)
    }

    /// Forgets a call.
    pub fn remove(&mut self, call_id: &str) -> Option<CallRecord> {
        self.calls.remove(call_id)
    }

    /// Every call remembered, by Call-ID, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CallRecord)> {
        self.calls.iter().map(|(k, r)| (k.as_str(), r))
    }

    /// Number of calls remembered.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is remembered.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Removes calls idle for longer than [`IDLE_CALL_LIFETIME`]; returns their Call-IDs.
    pub fn sweep(&mut self, now: Instant) -> Vec<String> {
        let old: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_activity) > IDLE_CALL_LIFETIME)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.calls.remove(k);
        }
        old
    }
}
