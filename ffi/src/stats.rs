//! `rvoip_server_get_stats`: a running server's counters and gauges as a plain C struct (the
//! figures of its `/metrics` endpoint).

use std::ffi::c_char;

use rvoip_sdk::api::ServerStats;
use rvoip_sdk::sip::msg::Method;
use rvoip_sdk::sip::transaction::METHOD_SLOTS;

use crate::rvoip_result;
use crate::server::rvoip_server;
use crate::util::{boundary, ref_arg, write_out};

/// How many method slots `rvoip_server_stats::requests` and `::responses` have: one per
/// method of [`rvoip_sip_method_name`] (index 0 to 13) and one for every other method (14).
pub const RVOIP_SIP_METHODS: usize = 15;
/// The index of INVITE in `rvoip_server_stats::requests` and `::responses`.
pub const RVOIP_SIP_METHOD_INVITE: usize = 0;
/// The index of ACK.
pub const RVOIP_SIP_METHOD_ACK: usize = 1;
/// The index of BYE.
pub const RVOIP_SIP_METHOD_BYE: usize = 2;
/// The index of CANCEL.
pub const RVOIP_SIP_METHOD_CANCEL: usize = 3;
/// The index of REGISTER.
pub const RVOIP_SIP_METHOD_REGISTER: usize = 4;
/// The index of OPTIONS.
pub const RVOIP_SIP_METHOD_OPTIONS: usize = 5;

/// A running server's counters (growing while it runs) and gauges (current values), from
/// [`rvoip_server_get_stats`]. `responses[m][c]` counts responses of class `c + 1` (0: 1xx … 5:
/// 6xx) sent for requests of method `m`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_server_stats {
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// SIP requests received, by method index (retransmissions excluded, ACKs included).
    pub requests: [u64; RVOIP_SIP_METHODS],
    /// SIP responses sent, by method index and class (100 Trying included, retransmissions
    /// excluded).
    pub responses: [[u64; 6]; RVOIP_SIP_METHODS],
    /// Retransmitted requests absorbed by their transaction.
    pub request_retransmissions: u64,
    /// REGISTERs answered (final response) and the sum of their latencies, in microseconds.
    pub register_latency_count: u64,
    /// See `register_latency_count`.
    pub register_latency_sum_us: u64,
    /// INVITEs given a first response other than 100 Trying, and the sum of the times to it,
    /// in microseconds.
    pub invite_latency_count: u64,
    /// See `invite_latency_count`.
    pub invite_latency_sum_us: u64,
    /// Client transactions in progress.
    pub client_transactions: u64,
    /// Server transactions in progress.
    pub server_transactions: u64,
    /// Calls in progress (record-routed dialogs, early or confirmed).
    pub calls: u64,
    /// Registered contact bindings.
    pub bindings: u64,
    /// Successful registrations (200 to REGISTER).
    pub registrations: u64,
    /// Digest challenges sent (401 and 407).
    pub challenges: u64,
    /// Failed digest attempts.
    pub auth_failures: u64,
    /// Messages that could not be parsed.
    pub parse_errors: u64,
    /// Requests answered by the server itself with an error (challenges excluded).
    pub rejected: u64,
    /// Requests forwarded by the proxy (each fork branch once).
    pub forwarded: u64,
    /// Messages dropped by the flood and brute-force guard.
    pub guard_dropped: u64,
    /// Requests refused with 503 by a load limit (`max_transactions*`, `max_held_bytes*`).
    pub overloaded: u64,
    /// Stream connections open.
    pub connections_open: u64,
    /// Whether the media relay runs (the `relay_*` fields are 0 when not).
    pub relay: bool,
    /// Media relay sessions in use.
    pub relay_sessions: u64,
    /// Media relay UDP ports in use.
    pub relay_ports_in_use: u64,
    /// Packets the relay forwarded.
    pub relay_packets_forwarded: u64,
}

impl rvoip_server_stats {
    fn of(s: &ServerStats) -> rvoip_server_stats {
        let m = &s.messages;
        let register = m.latency_of(&Method::Register);
        let invite = m.latency_of(&Method::Invite);
        let relay = s.relay.clone().unwrap_or_default();
        rvoip_server_stats {
            uptime_s: s.uptime_s,
            requests: m.requests_received,
            responses: m.responses_sent,
            request_retransmissions: m.retransmissions_received,
            register_latency_count: register.count,
            register_latency_sum_us: register.sum_us,
            invite_latency_count: invite.count,
            invite_latency_sum_us: invite.sum_us,
            client_transactions: s.client_transactions as u64,
            server_transactions: s.server_transactions as u64,
            calls: s.calls as u64,
            bindings: s.bindings as u64,
            registrations: s.core.registrations,
            challenges: s.core.challenges,
            auth_failures: s.guard.auth_failures,
            parse_errors: s.core.parse_errors,
            rejected: s.core.rejected,
            forwarded: s.core.forwarded,
            guard_dropped: s.guard.dropped,
            overloaded: s.core.overloaded,
            connections_open: s.connections.open,
            relay: s.relay.is_some(),
            relay_sessions: relay.contexts as u64,
            relay_ports_in_use: relay.ports_in_use as u64,
            relay_packets_forwarded: relay.forwarded,
        }
    }
}

// The C constants follow the SDK's slots.
const _: () = assert!(RVOIP_SIP_METHODS == METHOD_SLOTS);

/// Writes the running server's counters and gauges to `out`; blocks until its event loop
/// answers (at most 2 s). Errors: NULL_ARGUMENT, INVALID_STATE (stopped, or no answer in
/// time).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_server_get_stats(
    server: *const rvoip_server,
    out: *mut rvoip_server_stats,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a live server.
        let s = unsafe { ref_arg(server) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let stats = s.0.stats()?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(out, rvoip_server_stats::of(&stats)) };
        Ok(())
    })
}

/// The method of slot `index` of `rvoip_server_stats::requests` / `::responses` (`"INVITE"`,
/// …, `"other"` for 14), or NULL past the last slot. Static; never freed.
#[unsafe(no_mangle)]
pub extern "C" fn rvoip_sip_method_name(index: usize) -> *const c_char {
    const NAMES: [&std::ffi::CStr; RVOIP_SIP_METHODS] = [
        c"INVITE",
        c"ACK",
        c"BYE",
        c"CANCEL",
        c"REGISTER",
        c"OPTIONS",
        c"INFO",
        c"UPDATE",
        c"PRACK",
        c"SUBSCRIBE",
        c"NOTIFY",
        c"REFER",
        c"MESSAGE",
        c"PUBLISH",
        c"other",
    ];
    NAMES.get(index).map_or(std::ptr::null(), |n| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvoip_sdk::sip::transaction::{METHOD_NAMES, method_index};

    #[test]
    fn method_names_and_indices_match_the_sdk() {
        for (i, name) in METHOD_NAMES.iter().enumerate() {
            // SAFETY: a static C string for every index below RVOIP_SIP_METHODS.
            let c = unsafe { std::ffi::CStr::from_ptr(rvoip_sip_method_name(i)) };
            assert_eq!(c.to_str().unwrap(), *name);
        }
        assert!(rvoip_sip_method_name(RVOIP_SIP_METHODS).is_null());
        assert_eq!(method_index(&Method::Invite), RVOIP_SIP_METHOD_INVITE);
        assert_eq!(method_index(&Method::Ack), RVOIP_SIP_METHOD_ACK);
        assert_eq!(method_index(&Method::Bye), RVOIP_SIP_METHOD_BYE);
        assert_eq!(method_index(&Method::Cancel), RVOIP_SIP_METHOD_CANCEL);
        assert_eq!(method_index(&Method::Register), RVOIP_SIP_METHOD_REGISTER);
        assert_eq!(method_index(&Method::Options), RVOIP_SIP_METHOD_OPTIONS);
    }
}
