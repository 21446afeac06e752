//! Message counters of a [`super::TransactionLayer`]: requests received and responses sent by
//! method and status class, and the time from a request to its first answer (RFC 3261 §17.2).
//!
//! Fixed arrays indexed by method ([`method_index`]) and class: counting a message costs an
//! index and an add, never an allocation. Time comes from the layer's `now` inputs (sans-IO).

use std::time::Duration;

use crate::sip::msg::Method;

/// How many method slots the counters have: the 14 methods this stack knows
/// ([`METHOD_NAMES`]) and one for every extension method ("other").
pub const METHOD_SLOTS: usize = 15;

/// The method of each counter slot, as written on the wire (`"other"`: any extension method).
pub const METHOD_NAMES: [&str; METHOD_SLOTS] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// The status classes of response counters (RFC 3261 §7.2, §21): `1xx` to `6xx`.
pub const CLASS_NAMES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

/// The slot of `method` in the counters (see [`METHOD_NAMES`]).
pub fn method_index(method: &Method) -> usize {
    match method {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Register => 4,
        Method::Options => 5,
        Method::Info => 6,
        Method::Update => 7,
        Method::Prack => 8,
        Method::Subscribe => 9,
        Method::Notify => 10,
        Method::Refer => 11,
        Method::Message => 12,
        Method::Publish => 13,
        Method::Extension(_) => 14,
    }
}

/// The slot of a status code's class (`1xx` → 0 … `6xx` → 5); `None` outside 100..=699.
pub fn class_index(status: u16) -> Option<usize> {
    (100..=699)
        .contains(&status)
        .then(|| usize::from(status / 100 - 1))
}

/// The upper bounds of the latency buckets, in microseconds (Prometheus `le`: 0.5 ms to 10 s).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with the fixed buckets [`LATENCY_BUCKETS_US`] (and +Inf).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket, not cumulative: `buckets[i]` counts the latencies above bucket
    /// `i - 1`'s bound and at most bucket `i`'s; the last slot counts those above 10 s.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Observations in all.
    pub count: u64,
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(slot) = self.buckets.get_mut(i) {
            *slot += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds `other`'s observations to this histogram (the buckets are the same everywhere, so
    /// the sum is exact: the histogram of both sets of latencies).
    pub fn add(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Cumulative counts per bound in seconds, as Prometheus exposes them (`le`, the last
    /// being +Inf).
    pub fn cumulative(&self) -> [(f64, u64); LATENCY_BUCKETS_US.len() + 1] {
        let mut out = [(f64::INFINITY, 0); LATENCY_BUCKETS_US.len() + 1];
        let mut total = 0;
        for (i, (slot, n)) in out.iter_mut().zip(self.buckets.iter()).enumerate() {
            total += n;
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
            *slot = (le, total);
        }
        out
    }
}

/// What a transaction layer received and sent, by method and class. Retransmissions the layer
/// absorbs or makes itself (§17.2.1, Timer G) are counted apart from the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCounts {
    /// Requests received, by method: every request that started a server transaction, every
    /// ACK (for a non-2xx final it ends its transaction; for a 2xx it is passed on). Request
    /// retransmissions are in `retransmissions_received`.
    pub requests_received: [u64; METHOD_SLOTS],
    /// Retransmitted requests absorbed by their server transaction (§17.2.1, §17.2.2).
    pub retransmissions_received: u64,
    /// Responses sent, by the method of their request (CSeq) and class: the layer's own
    /// `100 Trying` to INVITE, and every response the element gave the layer to send (made
    /// itself or relayed from a next hop). Retransmissions by Timer G or for a retransmitted
    /// request are not counted.
    pub responses_sent: [[u64; CLASS_NAMES.len()]; METHOD_SLOTS],
    /// Per method, the time from a request's arrival to the first response sent for it other
    /// than `100 Trying`: for REGISTER its final response; for INVITE the first provisional
    /// (180, 183) or final response — whether the element made it (401/407, 404, 480, 503) or
    /// relayed it from the callee.
    pub first_response_latency: [LatencyHistogram; METHOD_SLOTS],
}

impl Default for MessageCounts {
    fn default() -> Self {
        MessageCounts {
            requests_received: [0; METHOD_SLOTS],
            retransmissions_received: 0,
            responses_sent: [[0; CLASS_NAMES.len()]; METHOD_SLOTS],
            first_response_latency: [LatencyHistogram::default(); METHOD_SLOTS],
        }
    }
}

impl MessageCounts {
    /// Counts a received request of method slot `method`.
    pub(crate) fn request(&mut self, method: usize) {
        if let Some(n) = self.requests_received.get_mut(method) {
            *n += 1;
        }
    }

    /// Counts a response with `status` sent for a request of method slot `method`.
    pub(crate) fn response(&mut self, method: usize, status: u16) {
        let slot = class_index(status).and_then(|c| {
            self.responses_sent
                .get_mut(method)
                .and_then(|row| row.get_mut(c))
        });
        if let Some(n) = slot {
            *n += 1;
        }
    }

    /// Records the time to the first answer of a request of method slot `method`.
    pub(crate) fn latency(&mut self, method: usize, d: Duration) {
        if let Some(h) = self.first_response_latency.get_mut(method) {
            h.observe(d);
        }
    }

    /// Adds `other`'s counts to these (several transaction layers' counts, e.g. one per
    /// worker, as one server's): every counter and histogram bucket summed.
    pub fn add(&mut self, other: &MessageCounts) {
        for (a, b) in self
            .requests_received
            .iter_mut()
            .zip(other.requests_received.iter())
        {
            *a += b;
        }
        self.retransmissions_received += other.retransmissions_received;
        for (row, other_row) in self
            .responses_sent
            .iter_mut()
            .zip(other.responses_sent.iter())
        {
            for (a, b) in row.iter_mut().zip(other_row.iter()) {
                *a += b;
            }
        }
        for (a, b) in self
            .first_response_latency
            .iter_mut()
            .zip(other.first_response_latency.iter())
        {
            a.add(b);
        }
    }

    /// Requests of `method` received.
    pub fn requests(&self, method: &Method) -> u64 {
        self.requests_received[method_index(method)]
    }

    /// Responses of class `class` (1 to 6) sent for requests of `method`; 0 for another class.
    pub fn responses(&self, method: &Method, class: u16) -> u64 {
        class_index(class.saturating_mul(100))
            .map_or(0, |c| self.responses_sent[method_index(method)][c])
    }

    /// The first-response latency histogram of `method`.
    pub fn latency_of(&self, method: &Method) -> &LatencyHistogram {
        &self.first_response_latency[method_index(method)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_method_has_its_own_slot() {
        for name in METHOD_NAMES.iter().take(METHOD_SLOTS - 1) {
            let m = Method::from_token(name);
            assert_eq!(METHOD_NAMES[method_index(&m)], *name);
        }
        assert_eq!(method_index(&Method::from_token("FOO")), METHOD_SLOTS - 1);
    }

    #[test]
    fn classes_cover_100_to_699_only() {
        assert_eq!(class_index(100), Some(0));
        assert_eq!(class_index(199), Some(0));
        assert_eq!(class_index(407), Some(3));
        assert_eq!(class_index(699), Some(5));
        assert_eq!(class_index(99), None);
        assert_eq!(class_index(700), None);
        let mut c = MessageCounts::default();
        c.response(0, 700);
        c.response(99, 200);
        assert_eq!(c, MessageCounts::default());
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inclusive_bounds() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500)); // le 0.0005
        h.observe(Duration::from_micros(501)); // le 0.001
        h.observe(Duration::from_millis(30)); // le 0.05
        h.observe(Duration::from_secs(60)); // +Inf
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_us, 500 + 501 + 30_000 + 60_000_000);
        let cum = h.cumulative();
        assert_eq!(cum[0], (0.0005, 1));
        assert_eq!(cum[1], (0.001, 2));
        assert_eq!(cum[5], (0.025, 2));
        assert_eq!(cum[6], (0.05, 3));
        assert_eq!(cum[13], (10.0, 3));
        assert_eq!(cum[14], (f64::INFINITY, 4));
    }

    #[test]
    fn counts_of_two_layers_add_up_exactly() {
        let mut a = MessageCounts::default();
        a.request(4);
        a.response(4, 401);
        a.latency(4, Duration::from_millis(2));
        let mut b = MessageCounts::default();
        b.request(4);
        b.request(0);
        b.response(4, 200);
        b.retransmissions_received = 3;
        b.latency(4, Duration::from_millis(40));
        b.latency(4, Duration::from_secs(20));
        let mut t = a;
        t.add(&b);
        assert_eq!(t.requests_received[4], 2);
        assert_eq!(t.requests_received[0], 1);
        assert_eq!(t.retransmissions_received, 3);
        assert_eq!((t.responses_sent[4][3], t.responses_sent[4][1]), (1, 1));
        let h = &t.first_response_latency[4];
        assert_eq!((h.count, h.sum_us), (3, 20_042_000));
        // Bucket by bucket: the merged histogram is the histogram of all three latencies.
        let mut direct = LatencyHistogram::default();
        for ms in [2, 40, 20_000] {
            direct.observe(Duration::from_millis(ms));
        }
        assert_eq!(*h, direct);
    }
}
