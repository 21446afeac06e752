//! Sharding the server over several workers (the sans-IO part; the threads are
//! [`crate::driver::workers`]).
//!
//! Each worker owns a whole [`ServerCore`] (transaction layer, proxy, dialogs, guard). A message
//! belongs to the worker chosen by a hash of its Call-ID ([`worker_for`]), so that every
//! transaction and dialog of a call, and every REGISTER of a registration (RFC 3261 §10.2: one
//! Call-ID per registration), stays on one worker. The Call-ID is found by a cheap scan of the raw
//! bytes ([`call_id`]: `Call-ID` or its compact form `i`, RFC 3261 §7.3.3), without a full parse.
//!
//! The location service is shared by replication, not by a lock: each worker's
//! [`crate::server::location::Location`] is a replica. After each input batch a worker takes the
//! binding changes it made ([`ServerCore::take_binding_changes`]) and hands them to the others,
//! which apply them ([`ServerCore::apply_binding_changes`]) without recording them again (no
//! echo). The same changes go to the persistent store, so the store gets each change exactly
//! once: an expiry seen by every replica is reported by the worker that owns the binding's
//! Call-ID only.

use std::time::Instant;

use crate::server::config::{ConfigError, ServerConfig};
use crate::server::core::ServerCore;
use crate::server::guard::GuardStats;
use crate::server::location::{BindingChange, ChangeKind, contact_uri_eq};
use crate::server::reply::Stats;

/// The value of the first `Call-ID` (or compact `i`) header of a raw SIP message, trimmed of
/// surrounding whitespace; `None` when the header section has none (or the bytes are not a SIP
/// message). Only header lines are looked at (the scan stops at the empty line before the
/// body); a folded Call-ID keeps its first line only. Never panics.
pub fn call_id(msg: &[u8]) -> Option<&[u8]> {
    // Skip the start line (request line or status line).
    let mut rest = msg.get(memchr::memchr(b'\n', msg)? + 1..)?;
    loop {
        let end = memchr::memchr(b'\n', rest);
        let line = rest.get(..end.unwrap_or(rest.len()))?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // end of the header section
        }
        if let Some(value) = call_id_value(line) {
            return Some(value);
        }
        rest = rest.get(end? + 1..)?;
    }
}

/// The trimmed value of `line` when it is a Call-ID header line (`Call-ID:` or `i:`, any case,
/// optional whitespace before the colon).
fn call_id_value(line: &[u8]) -> Option<&[u8]> {
    match line.first()? {
        b'c' | b'C' | b'i' | b'I' => {}
        _ => return None,
    }
    let colon = memchr::memchr(b':', line)?;
    let name = line.get(..colon)?.trim_ascii_end();
    if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
        return None;
    }
    Some(line.get(colon + 1..)?.trim_ascii())
}

/// The worker (of `workers`) that owns the Call-ID `call_id`: FNV-1a of its bytes (Call-IDs
/// compare case-sensitively, RFC 3261 §20.8), the same on every worker and in every run. Always
/// 0 with one worker (or none).
pub fn worker_of_call_id(call_id: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits mix poorly for short keys.
    h ^= h >> 32;
    (h % workers as u64) as usize
}

/// The worker (of `workers`) that handles the raw message `msg`: the owner of its Call-ID
/// ([`worker_of_call_id`]). A message without a Call-ID (garbage, a keep-alive) goes to worker
/// 0, which answers or drops it as one worker would.
pub fn worker_for(msg: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    call_id(msg).map_or(0, |id| worker_of_call_id(id, workers))
}

/// The number of workers `cfg` asks for, with `cpus` the number of CPUs the process may use.
///
/// `workers = N` (N ≥ 1) is taken as is; `workers` unset or 0 means automatic: `cpus` when the
/// configuration uses only sharded features, else 1. The presence agent, conference rooms and
/// offline messages keep per-user state outside any one Call-ID (a PUBLISH and a SUBSCRIBE, two
/// members of a room, a MESSAGE stored for a user and that user's REGISTER each have their own),
/// so they need one worker. Errors ([`ConfigError::Invalid`]): more than one worker asked for
/// together with one of those features.
pub fn resolve_workers(cfg: &ServerConfig, cpus: usize) -> Result<usize, ConfigError> {
    let unsharded = unsharded_features(cfg);
    match cfg.workers {
        Some(n) if n >= 1 => {
            if n > 1 && !unsharded.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "workers = {n} needs {} off (they keep per-user state across Call-IDs, \
                     which one worker must hold): set them off, or workers = 1",
                    unsharded.join(", ")
                )));
            }
            Ok(n)
        }
        _ if unsharded.is_empty() => Ok(cpus.max(1)),
        _ => Ok(1),
    }
}

/// The enabled features of `cfg` that cannot be sharded by Call-ID (config key names).
pub fn unsharded_features(cfg: &ServerConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg.presence {
        v.push("presence");
    }
    if cfg.offline_messages {
        v.push("offline_messages");
    }
    if !cfg.conference_prefix.is_empty() {
        v.push("conference_prefix");
    }
    v
}

/// The sum of several workers' counters (the whole server's [`Stats`]).
pub fn sum_stats<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
    let mut t = Stats::default();
    for s in all {
        // Destructured in full: a counter added to `Stats` must be added here too.
        let Stats {
            parse_errors,
            rejected,
            registrations,
            challenges,
            forwarded,
            nat_flows_used,
            media_timeouts,
            dns_lookups,
            failovers,
            relay_denied,
            body_too_large,
            overloaded,
            diverted,
            redirected,
            offline_stored,
            offline_delivered,
            replies_trimmed,
            store_unavailable,
            replies_dropped,
        } = *s;
        t.parse_errors += parse_errors;
        t.rejected += rejected;
        t.registrations += registrations;
        t.challenges += challenges;
        t.forwarded += forwarded;
        t.nat_flows_used += nat_flows_used;
        t.media_timeouts += media_timeouts;
        t.dns_lookups += dns_lookups;
        t.failovers += failovers;
        t.relay_denied += relay_denied;
        t.body_too_large += body_too_large;
        t.overloaded += overloaded;
        t.diverted += diverted;
        t.redirected += redirected;
        t.offline_stored += offline_stored;
        t.offline_delivered += offline_delivered;
        t.replies_trimmed += replies_trimmed;
        t.store_unavailable += store_unavailable;
        t.replies_dropped += replies_dropped;
    }
    t
}

/// The sum of several workers' guard counters.
pub fn sum_guard_stats<'a>(all: impl IntoIterator<Item = &'a GuardStats>) -> GuardStats {
    let mut t = GuardStats::default();
    for s in all {
        let GuardStats {
            dropped,
            flood_bans,
            auth_bans,
            auth_failures,
        } = *s;
        t.dropped += dropped;
        t.flood_bans += flood_bans;
        t.auth_bans += auth_bans;
        t.auth_failures += auth_failures;
    }
    t
}

impl ServerCore {
    /// Makes this core's location record its binding changes, for
    /// [`ServerCore::take_binding_changes`] (a store, or other workers' replicas).
    pub fn record_binding_changes(&mut self) {
        self.registrar.location.record_changes(true);
    }

    /// The binding changes this core made since the last call (oldest first), for the store
    /// and the other replicas; this core is `worker` of `workers`. An expiry is kept only by the
    /// worker owning the binding's Call-ID: every replica sweeps the same expired binding, and
    /// the store must get the change once. Empty unless recording is on
    /// ([`ServerCore::record_binding_changes`]).
    pub fn take_binding_changes(&mut self, worker: usize, workers: usize) -> Vec<BindingChange> {
        let location = &mut self.registrar.location;
        if !location.has_changes() {
            return Vec::new();
        }
        let mut changes = location.take_changes();
        if workers > 1 {
            changes.retain(|c| {
                c.kind != ChangeKind::Expired
                    || worker_of_call_id(c.binding.call_id.as_bytes(), workers) == worker
            });
        }
        changes
    }

    /// Applies binding changes made by another replica (another worker, or a node sharing the
    /// store) at `now`, recording none of them; returns how many changed this replica. An expiry
    /// of a binding that this replica holds with a later expiry is ignored: it was refreshed
    /// (under a new Call-ID, by another worker) while the old copy expired elsewhere.
    pub fn apply_binding_changes(&mut self, now: Instant, changes: &[BindingChange]) -> usize {
        let unix = self.unix_secs(now);
        let location = &mut self.registrar.location;
        changes
            .iter()
            .filter(|c| {
                let refreshed = c.kind == ChangeKind::Expired
                    && location.bindings(&c.aor).iter().any(|b| {
                        contact_uri_eq(&b.contact, &c.binding.contact)
                            && b.expires_at > c.binding.expires_at
                    });
                !refreshed && location.apply_remote(c, unix)
            })
            .count()
    }

    /// Number of bindings in this core's location (expired ones count until swept).
    pub fn binding_count(&self) -> usize {
        self.registrar.location.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn finds_the_call_id_long_and_compact_any_case() {
        assert_eq!(
            call_id(INVITE),
            Some(&b"a84b4c76e66710@pc33.example.com"[..])
        );
        let compact =
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h\r\ni :  a84b4c76e66710@pc33.example.com \r\n\r\n";
        assert_eq!(call_id(compact), call_id(INVITE));
        let lower = b"BYE sip:b SIP/2.0\ncall-id:a84b4c76e66710@pc33.example.com\n\n";
        assert_eq!(call_id(lower), call_id(INVITE));
        // A header merely starting with "c" or "i" is not it.
        let other =
            b"BYE sip:b SIP/2.0\r\nContact: <sip:x>\r\nIn-Reply-To: y\r\nCall-Info: z\r\n\r\n";
        assert_eq!(call_id(other), None);
    }

    #[test]
    fn stops_at_the_body_and_survives_garbage() {
        let in_body = b"MESSAGE sip:b SIP/2.0\r\nCSeq: 1 MESSAGE\r\n\r\nCall-ID: body\r\n";
        assert_eq!(call_id(in_body), None);
        for junk in [
            &b""[..],
            b"\r\n",
            b"no newline",
            b"X\r\nCall-ID",
            b"X\ni:",
            b"\n\n\n",
        ] {
            let _ = call_id(junk);
            assert!(worker_for(junk, 4) < 4);
        }
        assert_eq!(call_id(b"X\ni:"), Some(&b""[..]));
    }

    #[test]
    fn same_call_id_same_worker_and_the_spread_is_fair() {
        let resp = b"SIP/2.0 180 Ringing\r\ni: a84b4c76e66710@pc33.example.com\r\n\r\n";
        for n in 1..=8 {
            assert_eq!(worker_for(INVITE, n), worker_for(resp, n));
        }
        // A missing Call-ID goes to worker 0, every time.
        assert_eq!(worker_for(b"OPTIONS sip:x SIP/2.0\r\n\r\n", 4), 0);
        // Many Call-IDs spread over 2 and 3 workers within 10 % of even.
        for n in [2usize, 3] {
            let mut count = vec![0usize; n];
            for i in 0..30_000 {
                let id = format!("{i:x}-{}@host", i * 7919);
                count[worker_of_call_id(id.as_bytes(), n)] += 1;
            }
            let even = 30_000 / n;
            assert!(
                count.iter().all(|c| c.abs_diff(even) < even / 10),
                "{n}: {count:?}"
            );
        }
        assert_eq!(worker_of_call_id(b"anything", 1), 0);
    }

    #[test]
    fn workers_auto_and_explicit() {
        let mut cfg = ServerConfig::default();
        // Presence, offline messages and conferences are on by default: one worker.
        assert_eq!(resolve_workers(&cfg, 8).unwrap(), 1);
        cfg.workers = Some(2);
        let e = resolve_workers(&cfg, 8).unwrap_err().to_string();
        assert!(
            e.contains("presence") && e.contains("conference_prefix"),
            "{e}"
        );
        cfg.presence = false;
        cfg.offline_messages = false;
        cfg.conference_prefix.clear();
        assert_eq!(resolve_workers(&cfg, 8).unwrap(), 2);
        // The HTTP listener, the Redis store and the dispatcher work with workers.
        cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
        cfg.store = Some(crate::server::config::StoreKind::Redis);
        cfg.dispatch = toml::from_str(
            "[[sets]]\nname = \"gw\"\ndestinations = [{ uri = \"sip:192.0.2.9\" }]\n",
        )
        .unwrap();
        assert!(!cfg.dispatch.is_empty());
        assert!(unsharded_features(&cfg).is_empty());
        assert_eq!(resolve_workers(&cfg, 8).unwrap(), 2);
        cfg.workers = None;
        assert_eq!(resolve_workers(&cfg, 8).unwrap(), 8);
        cfg.workers = Some(0);
        assert_eq!(resolve_workers(&cfg, 0).unwrap(), 1);
    }

    #[test]
    fn stats_add_up() {
        let a = Stats {
            registrations: 3,
            forwarded: 5,
            ..Stats::default()
        };
        let b = Stats {
            registrations: 4,
            replies_dropped: 1,
            ..Stats::default()
        };
        let t = sum_stats([&a, &b]);
        assert_eq!((t.registrations, t.forwarded, t.replies_dropped), (7, 5, 1));
        let g = GuardStats {
            dropped: 2,
            ..GuardStats::default()
        };
        assert_eq!(sum_guard_stats([&g, &g]).dropped, 4);
    }
}
