//! The dialog state of this domain's users (RFC 4235 §3.7.1) for the dialog event package,
//! fed by the calls the proxy routes ([`crate::server::proxy::CallProgress`]): an initial
//! INVITE starts a dialog `trying` for its local caller (`initiator`) and local callee
//! (`recipient`); a provisional response with a To tag makes it `early`, a 2xx `confirmed`, and
//! a final failure, a CANCEL or a BYE `terminated`. States only move forward. A terminated
//! dialog is listed once (in the documents built right after it ended) and then forgotten.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sip::presence::DialogEntry;

/// How long a tracked call without any progress is kept (calls whose end the proxy never saw).
pub const IDLE_CALL_LIFETIME: Duration = Duration::from_secs(4 * 3600 + 60);

/// The dialog states in the order they go (RFC 4235 §3.7.1).
const STATES: [&str; 4] = ["trying", "early", "confirmed", "terminated"];

/// One call of a local user.
#[derive(Debug, Clone)]
struct TrackedCall {
    /// Short id for the documents (unique within this server).
    id: u64,
    /// The local caller's user name, if the caller is ours.
    caller: Option<String>,
    /// The local callee's user name, if the callee is ours.
    callee: Option<String>,
    /// Index into [`STATES`].
    state: usize,
    /// Last change.
    since: Instant,
}

/// The calls of local users by Call-ID.
#[derive(Debug)]
pub struct DialogTracker {
    calls: HashMap<String, TrackedCall>,
    max_calls: usize,
    next_id: u64,
}

impl DialogTracker {
    /// An empty tracker following at most `max_calls` calls at once (more are not shown).
    pub fn new(max_calls: usize) -> DialogTracker {
        DialogTracker {
            calls: HashMap::new(),
            max_calls,
            next_id: 0,
        }
    }

    /// An initial INVITE `call_id` from local user `caller` and/or to local user `callee`
    /// (`trying`). The same Call-ID again (a forwarded call) replaces its parties. Returns the
    /// users whose dialogs changed.
    pub fn started(
        &mut self,
        now: Instant,
        call_id: &str,
        caller: Option<String>,
        callee: Option<String>,
    ) -> Vec<String> {
        if caller.is_none() && callee.is_none() {
            return self.ended(now, call_id);
        }
        let mut changed: Vec<String> = Vec::new();
        if let Some(old) = self.calls.remove(call_id) {
            changed.extend(old.caller.into_iter().chain(old.callee));
        } else if self.calls.len() >= self.max_calls {
            return changed;
        }
        self.next_id += 1;
        for u in caller.iter().chain(callee.iter()) {
            if !changed.contains(u) {
                changed.push(u.clone());
            }
        }
        self.calls.insert(
            call_id.to_string(),
            TrackedCall {
                id: self.next_id,
                caller,
                callee,
                state: 0,
                since: now,
            },
        );
        changed
    }

    /// Call `call_id` reached `state` (`early`, `confirmed` or `terminated`); a state it has
    /// passed already changes nothing. Returns the users whose dialogs changed.
    pub fn progressed(&mut self, now: Instant, call_id: &str, state: &str) -> Vec<String> {
        let Some(rank) = STATES.iter().position(|s| *s == state) else {
            return Vec::new();
        };
        let Some(c) = self.calls.get_mut(call_id) else {
            return Vec::new();
        };
        if rank <= c.state {
            return Vec::new();
        }
        c.state = rank;
        c.since = now;
        c.caller.iter().chain(c.callee.iter()).cloned().collect()
    }

    /// Call `call_id` ended (`terminated`).
    pub fn ended(&mut self, now: Instant, call_id: &str) -> Vec<String> {
        self.progressed(now, call_id, "terminated")
    }

    /// `user`'s dialogs for a full-state document (RFC 4235 §4.1).
    pub fn entries(&self, user: &str) -> Vec<DialogEntry> {
        let mut v: Vec<(u64, DialogEntry)> = Vec::new();
        for (call_id, c) in &self.calls {
            for (party, initiator) in [(&c.caller, true), (&c.callee, false)] {
                if party.as_deref() == Some(user) {
                    v.push((
                        c.id,
                        DialogEntry {
                            id: format!("d{}{}", c.id, if initiator { "i" } else { "r" }),
                            call_id: call_id.clone(),
                            initiator,
                            state: STATES[c.state],
                        },
                    ));
                }
            }
        }
        v.sort_by_key(|(id, e)| (*id, !e.initiator));
        v.into_iter().map(|(_, e)| e).collect()
    }

    /// Forgets `call_id` if it is terminated (after its last documents went out): one lookup,
    /// not a scan of every call followed.
    pub fn forget_if_terminated(&mut self, call_id: &str) {
        if self
            .calls
            .get(call_id)
            .is_some_and(|c| c.state == STATES.len() - 1)
        {
            self.calls.remove(call_id);
        }
    }

    /// Forgets calls without progress for [`IDLE_CALL_LIFETIME`]; returns their users.
    pub fn sweep(&mut self, now: Instant) -> Vec<String> {
        let mut users = Vec::new();
        self.calls.retain(|_, c| {
            let keep = now.saturating_duration_since(c.since) <= IDLE_CALL_LIFETIME;
            if !keep {
                users.extend(c.caller.iter().chain(c.callee.iter()).cloned());
            }
            keep
        });
        users
    }

    /// Calls followed.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is followed.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_forward_and_terminated_is_shown_once() {
        let t0 = Instant::now();
        let mut t = DialogTracker::new(10);
        let users = t.started(t0, "c1", Some("alice".into()), Some("bob".into()));
        assert_eq!(users, vec!["alice".to_string(), "bob".to_string()]);
        assert_eq!(t.entries("bob")[0].state, "trying");
        assert!(!t.entries("bob")[0].initiator && t.entries("alice")[0].initiator);
        assert_eq!(t.progressed(t0, "c1", "early").len(), 2);
        assert!(t.progressed(t0, "c1", "early").is_empty(), "no change");
        t.progressed(t0, "c1", "confirmed");
        assert!(t.progressed(t0, "c1", "early").is_empty(), "never back");
        assert_eq!(t.entries("bob")[0].state, "confirmed");
        assert_eq!(t.ended(t0, "c1").len(), 2);
        assert_eq!(t.entries("bob")[0].state, "terminated");
        t.forget_if_terminated("c1");
        assert!(t.entries("bob").is_empty() && t.is_empty());
        // Unknown calls and the limit.
        assert!(t.ended(t0, "nope").is_empty());
        let mut t = DialogTracker::new(1);
        t.started(t0, "a", None, Some("bob".into()));
        assert!(t.started(t0, "b", None, Some("bob".into())).is_empty());
        assert_eq!(
            t.sweep(t0 + IDLE_CALL_LIFETIME * 2),
            vec!["bob".to_string()]
        );
    }
}
