//! `Server.stats()`: a running server's counters and gauges (the figures of its `/metrics`
//! endpoint) as a record.

use std::collections::HashMap;

use rvoip_sdk::api as sdk;
use rvoip_sdk::sip::msg::Method;
use rvoip_sdk::sip::transaction::{CLASS_NAMES, METHOD_NAMES};

use crate::RvoipError;
use crate::server::Server;

/// Responses of one class sent for requests of one method.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResponseCount {
    /// The request method (`"INVITE"`, `"REGISTER"`, …, `"other"`).
    pub method: String,
    /// The status class, `"1xx"` to `"6xx"`.
    pub status_class: String,
    /// Responses sent.
    pub count: u64,
}

/// A running server's counters (growing while it runs) and gauges (current values).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ServerStats {
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// SIP requests received by method (every method, `"other"` for extensions;
    /// retransmissions excluded, ACKs included).
    pub requests: HashMap<String, u64>,
    /// SIP responses sent by method and class (100 Trying included; retransmissions
    /// excluded); classes with no response are left out.
    pub responses: Vec<ResponseCount>,
    /// Retransmitted requests absorbed by their transaction.
    pub request_retransmissions: u64,
    /// REGISTERs answered with a final response.
    pub register_latency_count: u64,
    /// The sum of their times to that response, in microseconds.
    pub register_latency_sum_us: u64,
    /// INVITEs given a first response other than 100 Trying.
    pub invite_latency_count: u64,
    /// The sum of their times to that response, in microseconds.
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
    /// Requests refused with 503 by a load limit.
    pub overloaded: u64,
    /// Stream connections open.
    pub connections_open: u64,
    /// Media relay sessions in use (`None` when the relay is off).
    pub relay_sessions: Option<u64>,
    /// Media relay UDP ports in use (`None` when the relay is off).
    pub relay_ports_in_use: Option<u64>,
    /// Packets the relay forwarded (`None` when the relay is off).
    pub relay_packets_forwarded: Option<u64>,
}

impl From<&sdk::ServerStats> for ServerStats {
    fn from(s: &sdk::ServerStats) -> ServerStats {
        let m = &s.messages;
        let requests = METHOD_NAMES
            .iter()
            .zip(m.requests_received.iter())
            .map(|(name, n)| (name.to_string(), *n))
            .collect();
        let responses = METHOD_NAMES
            .iter()
            .zip(m.responses_sent.iter())
            .flat_map(|(name, row)| {
                CLASS_NAMES
                    .iter()
                    .zip(row.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(move |(class, n)| ResponseCount {
                        method: name.to_string(),
                        status_class: class.to_string(),
                        count: *n,
                    })
            })
            .collect();
        let register = m.latency_of(&Method::Register);
        let invite = m.latency_of(&Method::Invite);
        ServerStats {
            uptime_s: s.uptime_s,
            requests,
            responses,
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
            relay_sessions: s.relay.as_ref().map(|r| r.contexts as u64),
            relay_ports_in_use: s.relay.as_ref().map(|r| r.ports_in_use as u64),
            relay_packets_forwarded: s.relay.as_ref().map(|r| r.forwarded),
        }
    }
}

#[uniffi::export]
impl Server {
    /// The running server's counters and gauges; blocks until its event loop answers (at
    /// most 2 s). Errors: `InvalidState` (stopped, or no answer in time).
    pub fn stats(&self) -> Result<ServerStats, RvoipError> {
        Ok(ServerStats::from(&self.inner.stats()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_listed_and_only_nonzero_classes() {
        let mut s = sdk::ServerStats::default();
        s.messages.requests_received[4] = 3;
        s.messages.responses_sent[4][3] = 2;
        let r = ServerStats::from(&s);
        assert_eq!(r.requests.len(), METHOD_NAMES.len());
        assert_eq!(r.requests["REGISTER"], 3);
        assert_eq!(r.requests["INVITE"], 0);
        assert_eq!(
            r.responses,
            vec![ResponseCount {
                method: "REGISTER".into(),
                status_class: "4xx".into(),
                count: 2
            }]
        );
        assert_eq!(r.relay_sessions, None);
    }
}
