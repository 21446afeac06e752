//! `/metrics`: a [`ServerStats`] snapshot in the Prometheus / OpenMetrics text format
//! (prometheus-client's encoder). Counter names get `_total` appended by the encoder.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::sip::msg::Method;
use crate::sip::transaction::{CLASS_NAMES, LATENCY_BUCKETS_US, LatencyHistogram, METHOD_NAMES};

use super::stats::ServerStats;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The methods whose latency histograms are always exposed (others once they have data).
const LATENCY_METHODS: [Method; 2] = [Method::Invite, Method::Register];

/// The server's metrics as exposition text. Errors only if formatting fails (it does not for
/// a `String`); the caller answers 500 then.
pub fn render(stats: &ServerStats) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(stats.clone())));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct Snapshot(ServerStats);

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
}

/// One counter family with a single label `key`, one sample per `(value, count)`.
fn labelled_counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &str,
    samples: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in samples {
        let labels = [(key, *value)];
        ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram_sample(
    m: &mut prometheus_client::encoding::MetricEncoder,
    method: &str,
    h: &LatencyHistogram,
) -> std::fmt::Result {
    let labels = [("method", method)];
    // prometheus-client takes per-bucket counts (it sums them itself) and writes `le="+Inf"`
    // for an f64::MAX bound only.
    let mut buckets = [(f64::MAX, 0); LATENCY_BUCKETS_US.len() + 1];
    for (i, (slot, n)) in buckets.iter_mut().zip(h.buckets.iter()).enumerate() {
        let le = LATENCY_BUCKETS_US
            .get(i)
            .map_or(f64::MAX, |us| *us as f64 / 1e6);
        *slot = (le, *n);
    }
    m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
        h.sum_us as f64 / 1e6,
        h.count,
        &buckets,
        None,
    )
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let msg = &s.messages;
        // Requests and responses by method and class.
        let mut m = enc.encode_descriptor(
            "rvoip_sip_requests",
            "SIP requests received, by method (retransmissions excluded; ACKs included)",
            None,
            MetricType::Counter,
        )?;
        for (name, n) in METHOD_NAMES.iter().zip(msg.requests_received.iter()) {
            let labels = [("method", *name)];
            ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
        }
        counter(
            &mut enc,
            "rvoip_sip_request_retransmissions",
            "Retransmitted SIP requests absorbed by their server transaction",
            msg.retransmissions_received,
        )?;
        let mut m = enc.encode_descriptor(
            "rvoip_sip_responses",
            "SIP responses sent, by request method and status class (100 Trying included; \
             retransmissions excluded)",
            None,
            MetricType::Counter,
        )?;
        for (name, row) in METHOD_NAMES.iter().zip(msg.responses_sent.iter()) {
            for (class, n) in CLASS_NAMES.iter().zip(row.iter()) {
                let labels = [("method", *name), ("class", *class)];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "rvoip_sip_response_latency_seconds",
            "Time from a request's arrival to its first response other than 100 Trying \
             (REGISTER: the final response; INVITE: the first 18x or final, made here or \
             relayed from the callee)",
            None,
            MetricType::Histogram,
        )?;
        for (name, h) in METHOD_NAMES.iter().zip(msg.first_response_latency.iter()) {
            let always = LATENCY_METHODS.iter().any(|l| l.as_str() == *name);
            if always || h.count > 0 {
                histogram_sample(&mut m, name, h)?;
            }
        }
        // State (gauges).
        let mut m = enc.encode_descriptor(
            "rvoip_transactions",
            "SIP transactions in progress",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in [
            ("client", s.client_transactions),
            ("server", s.server_transactions),
        ] {
            let labels = [("kind", kind)];
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
        let gauges: [(&str, &str, usize); 5] = [
            (
                "rvoip_calls",
                "Calls in progress (dialogs the proxy record-routed, early or confirmed)",
                s.calls,
            ),
            (
                "rvoip_proxy_contexts",
                "Requests the proxy is forwarding now",
                s.proxy_contexts,
            ),
            (
                "rvoip_bindings",
                "Registered contact bindings (location service)",
                s.bindings,
            ),
            (
                "rvoip_aors",
                "Addresses of record with at least one binding",
                s.aors,
            ),
            (
                "rvoip_held_bytes",
                "Bytes of requests held by transactions",
                s.held_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            gauge(&mut enc, name, help, v as u64)?;
        }
        gauge(
            &mut enc,
            "rvoip_uptime_seconds",
            "Seconds since the server started",
            s.uptime_s,
        )?;
        // Authentication.
        counter(
            &mut enc,
            "rvoip_auth_challenges",
            "Digest challenges sent (401 and 407)",
            s.core.challenges,
        )?;
        counter(
            &mut enc,
            "rvoip_auth_failures",
            "Failed digest attempts (wrong password, unknown user)",
            s.guard.auth_failures,
        )?;
        counter(
            &mut enc,
            "rvoip_registrations",
            "Successful registrations (200 to REGISTER)",
            s.core.registrations,
        )?;
        // Errors, drops and limits.
        counter(
            &mut enc,
            "rvoip_parse_errors",
            "Messages that could not be parsed",
            s.core.parse_errors,
        )?;
        counter(
            &mut enc,
            "rvoip_requests_rejected",
            "Requests the server answered itself with an error (challenges excluded)",
            s.core.rejected,
        )?;
        labelled_counters(
            &mut enc,
            "rvoip_dropped_messages",
            "Messages dropped unanswered, by reason",
            "reason",
            &[
                ("guard", s.guard.dropped),
                ("reply_budget", s.core.replies_dropped),
            ],
        )?;
        labelled_counters(
            &mut enc,
            "rvoip_limits_hit",
            "Requests or connections refused by a configured limit, by limit",
            "limit",
            &[
                ("overload", s.core.overloaded),
                ("max_forward_body_bytes", s.core.body_too_large),
                ("flood_limit", s.guard.flood_bans),
                ("auth_fail_limit", s.guard.auth_bans),
                ("max_connections", s.connections.refused_total),
                (
                    "max_connections_per_source",
                    s.connections.refused_per_source,
                ),
                ("message_timeout", s.connections.slow_closed),
                ("max_message_bytes", s.connections.too_large_closed),
            ],
        )?;
        // Proxy.
        labelled_counters(
            &mut enc,
            "rvoip_proxy_events",
            "Proxy events, by kind",
            "event",
            &[
                ("forwarded", s.core.forwarded),
                ("nat_flow_used", s.core.nat_flows_used),
                ("dns_lookup", s.core.dns_lookups),
                ("failover", s.core.failovers),
                ("relay_denied", s.core.relay_denied),
                ("diverted", s.core.diverted),
                ("redirected", s.core.redirected),
                ("media_timeout", s.core.media_timeouts),
                ("offline_stored", s.core.offline_stored),
                ("offline_delivered", s.core.offline_delivered),
            ],
        )?;
        // Connections.
        gauge(
            &mut enc,
            "rvoip_connections_open",
            "Stream connections (TCP, TLS, WS) open",
            s.connections.open,
        )?;
        counter(
            &mut enc,
            "rvoip_connections_accepted",
            "Stream connections accepted",
            s.connections.accepted,
        )?;
        labelled_counters(
            &mut enc,
            "rvoip_connections_closed",
            "Stream connections closed by the server, by reason",
            "reason",
            &[
                ("idle", s.connections.idle_closed),
                ("slow", s.connections.slow_closed),
                ("too_large", s.connections.too_large_closed),
                ("bad_framing", s.connections.bad_framing_closed),
            ],
        )?;
        let h = &s.handshakes;
        labelled_counters(
            &mut enc,
            "rvoip_handshakes",
            "TLS handshakes and WebSocket upgrades, by result",
            "result",
            &[
                ("tls_accepted", h.tls_accepted),
                ("tls_failed", h.tls_failed),
                ("tls_timed_out", h.tls_timed_out),
                ("ws_accepted", h.ws_accepted),
                ("ws_failed", h.ws_failed),
                ("ws_protocol_error", h.ws_protocol_errors),
            ],
        )?;
        // Media relay.
        if let Some(r) = &s.relay {
            gauge(
                &mut enc,
                "rvoip_relay_sessions",
                "Media relay sessions (contexts) in use",
                r.contexts as u64,
            )?;
            gauge(
                &mut enc,
                "rvoip_relay_ports_in_use",
                "Media relay UDP ports in use",
                r.ports_in_use as u64,
            )?;
            counter(
                &mut enc,
                "rvoip_relay_packets_forwarded",
                "RTP/RTCP packets the relay forwarded",
                r.forwarded,
            )?;
            counter(
                &mut enc,
                "rvoip_relay_bytes_forwarded",
                "Bytes (UDP payload) the relay forwarded",
                r.forwarded_bytes,
            )?;
            counter(
                &mut enc,
                "rvoip_relay_packets_transcoded",
                "Packets taken in by a transcoder",
                r.transcoded,
            )?;
            labelled_counters(
                &mut enc,
                "rvoip_relay_packets_dropped",
                "Packets the relay dropped, by reason",
                "reason",
                &[
                    ("foreign_source", r.dropped_foreign),
                    ("malformed", r.dropped_malformed),
                    ("oversized", r.dropped_oversized),
                    ("unknown_port", r.dropped_unknown_port),
                    ("no_destination", r.dropped_no_destination),
                ],
            )?;
            counter(
                &mut enc,
                "rvoip_relay_media_timeouts",
                "Calls whose media stopped (relay timeout)",
                r.media_timeouts,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(text: &str, sample: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    #[test]
    fn counters_gauges_and_histograms_are_exposed_with_their_labels() {
        let mut s = ServerStats::default();
        s.messages.requests_received[4] = 7; // REGISTER
        s.messages.responses_sent[4][3] = 3; // REGISTER 4xx
        s.messages.responses_sent[0][0] = 2; // INVITE 1xx
        s.messages.first_response_latency[4].observe(Duration::from_millis(2));
        s.messages.first_response_latency[4].observe(Duration::from_millis(40));
        s.bindings = 5;
        s.core.challenges = 3;
        s.guard.auth_failures = 1;
        s.relay = Some(crate::media::relay::RelayStats {
            contexts: 2,
            ports_in_use: 8,
            ..Default::default()
        });
        let text = render(&s).unwrap();
        assert_eq!(
            value(&text, r#"rvoip_sip_requests_total{method="REGISTER"}"#),
            Some(7.0)
        );
        assert_eq!(
            value(&text, r#"rvoip_sip_requests_total{method="BYE"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_responses_total{method="REGISTER",class="4xx"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_responses_total{method="INVITE",class="1xx"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_response_latency_seconds_count{method="REGISTER"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_response_latency_seconds_bucket{le="0.0025",method="REGISTER"}"#
            )
            .or_else(|| value(
                &text,
                r#"rvoip_sip_response_latency_seconds_bucket{method="REGISTER",le="0.0025"}"#
            )),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_response_latency_seconds_count{method="INVITE"}"#
            ),
            Some(0.0),
            "INVITE's histogram is always there"
        );
        assert!(!text.contains(r#"rvoip_sip_response_latency_seconds_count{method="BYE"}"#));
        assert_eq!(value(&text, "rvoip_bindings"), Some(5.0));
        assert_eq!(value(&text, "rvoip_auth_challenges_total"), Some(3.0));
        assert_eq!(value(&text, "rvoip_auth_failures_total"), Some(1.0));
        assert_eq!(value(&text, "rvoip_relay_ports_in_use"), Some(8.0));
        assert_eq!(value(&text, "rvoip_relay_sessions"), Some(2.0));
        assert_eq!(
            value(
                &text,
                r#"rvoip_sip_response_latency_seconds_bucket{le="+Inf",method="REGISTER"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert!(!text.contains("\"inf\""), "{text}");
        for (le, want) in [
            ("0.001", 0.0),
            ("0.0025", 1.0),
            ("0.025", 1.0),
            ("0.05", 2.0),
            ("10.0", 2.0),
        ] {
            let sample = format!(
                r#"rvoip_sip_response_latency_seconds_bucket{{le="{le}",method="REGISTER"}}"#
            );
            assert_eq!(value(&text, &sample), Some(want), "{sample}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn no_relay_no_relay_metrics() {
        let text = render(&ServerStats::default()).unwrap();
        assert!(!text.contains("rvoip_relay_"));
        assert!(text.contains("# TYPE rvoip_sip_requests counter"));
    }
}
