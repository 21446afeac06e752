//! The replay window of the SRTP and SRTCP contexts (RFC 3711 §3.3.2), started by the first
//! authenticated packet.
//!
//! `rtc-srtp` 0.21's `WrappedSlidingWindowDetector` takes the start of its window from the
//! first index it is asked to check, before that packet is authenticated. One forged packet
//! sent ahead of the peer's first genuine one therefore places the window: with a sequence
//! number up to 32,767 ahead of the genuine stream, every genuine RTP packet behind it is
//! refused as a replay until the stream catches up (11 minutes of audio at 50 packets/s), and
//! one forged SRTCP index does the same to all RTCP of the call. [`AuthenticatedStart`] lets
//! every index through until one is accepted (authenticated), and only then starts the
//! upstream window there.

use rtc_shared::replay_detector::{ReplayDetector, WrappedSlidingWindowDetector};
use rtc_srtp::option::ContextOption;

/// Highest SRTP sequence number (16 bits, RFC 3550 §5.1).
const MAX_SRTP_SEQ: u64 = 0xFFFF;
/// Highest SRTCP index (31 bits, RFC 3711 §3.4).
const MAX_SRTCP_INDEX: u64 = 0x7FFF_FFFF;

/// A replay detector whose window starts at the first accepted (authenticated) index, then
/// behaves as `rtc-srtp`'s wrapped sliding window of `window` packets.
struct AuthenticatedStart {
    window: usize,
    max: u64,
    /// The index of the last [`ReplayDetector::check`] while no window exists yet.
    pending: Option<u64>,
    inner: Option<WrappedSlidingWindowDetector>,
}

impl ReplayDetector for AuthenticatedStart {
    fn check(&mut self, seq: u64) -> bool {
        match &mut self.inner {
            Some(w) => w.check(seq),
            None => {
                // Nothing authenticated yet: nothing can be a replay.
                self.pending = (seq <= self.max).then_some(seq);
                self.pending.is_some()
            }
        }
    }

    fn accept(&mut self) {
        match &mut self.inner {
            Some(w) => w.accept(),
            None => {
                if let Some(seq) = self.pending.take() {
                    let mut w = WrappedSlidingWindowDetector::new(self.window, self.max);
                    if w.check(seq) {
                        w.accept();
                    }
                    self.inner = Some(w);
                }
            }
        }
    }
}

/// The SRTP replay protection of a receiving context: a `window`-packet window over the
/// 16-bit sequence number, started by the first authenticated packet.
pub(super) fn srtp_replay_protection(window: usize) -> ContextOption {
    authenticated_start(window, MAX_SRTP_SEQ)
}

/// The SRTCP replay protection of a receiving context: a `window`-packet window over the
/// 31-bit SRTCP index, started by the first authenticated packet.
pub(super) fn srtcp_replay_protection(window: usize) -> ContextOption {
    authenticated_start(window, MAX_SRTCP_INDEX)
}

/// A factory of [`AuthenticatedStart`] detectors (one per SSRC) over indexes up to `max`.
fn authenticated_start(window: usize, max: u64) -> ContextOption {
    Box::new(move || -> Box<dyn ReplayDetector> {
        Box::new(AuthenticatedStart {
            window,
            max,
            pending: None,
            inner: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_the_first_accepted_index() {
        let mut d = srtp_replay_protection(64)();
        // A forged index, checked but never accepted (its authentication failed).
        assert!(d.check(20_000));
        // The genuine stream starts far behind it and is not a replay.
        assert!(d.check(1));
        d.accept();
        assert!(d.check(2));
        d.accept();
        // Now the window exists: a repeat is refused, an index far behind it too.
        assert!(!d.check(2));
        assert!(d.check(3));
        d.accept();
        for s in 4..200 {
            assert!(d.check(s));
            d.accept();
        }
        assert!(!d.check(100), "older than the 64-packet window");
        assert!(!d.check(70_000), "past the 16-bit maximum");
    }
}
