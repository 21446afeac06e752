//! Event-loop lag: the longest time one step of the server's event task took since the last
//! status line, per step. A step that runs for more than T1 (500 ms) makes every UDP peer
//! retransmit (RFC 3261 §17.1.1.2) and can overflow the socket's receive buffer, so the status
//! line reports it and a step past [`LAG_WARN`] is logged at once.

use std::time::{Duration, Instant};

/// A step longer than this is logged as a warning when it happens (a quarter of T1).
pub const LAG_WARN: Duration = Duration::from_millis(125);

/// One kind of step of the event task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Draining up to 256 datagrams from one UDP socket into the core.
    Udp,
    /// Handling up to 256 messages from the connection tasks and the resolver.
    Inbound,
    /// Running due timers (`ServerCore::handle_timeout`).
    Timers,
    /// Sending what the core transmits.
    Transmit,
    /// Handing freed memory back to the OS (`mi_collect`).
    Collect,
    /// Handing the pinned stream flows to the connection tasks.
    Pin,
}

const STEPS: [Step; 6] = [
    Step::Udp,
    Step::Inbound,
    Step::Timers,
    Step::Transmit,
    Step::Collect,
    Step::Pin,
];

/// The longest duration of each [`Step`] since the last [`LoopLag::take`], in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopLag {
    max_us: [u64; 6],
}

impl LoopLag {
    /// Records that `step` ran from `start` until now; warns when it took longer than
    /// [`LAG_WARN`]. Returns the current instant, so that steps can be chained.
    pub fn record(&mut self, step: Step, start: Instant) -> Instant {
        let now = Instant::now();
        let took = now.saturating_duration_since(start);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = step as usize;
        if let Some(m) = self.max_us.get_mut(i) {
            *m = (*m).max(us);
        }
        if took > LAG_WARN {
            tracing::warn!(
                ?step,
                ms = us / 1000,
                "event loop step took longer than T1/4"
            );
        }
        now
    }

    /// The longest step so far, as (step, µs), and resets the record.
    pub fn take(&mut self) -> (Step, u64) {
        let (i, us) = self
            .max_us
            .iter()
            .copied()
            .enumerate()
            .rev() // on a tie, the first step wins
            .max_by_key(|(_, us)| *us)
            .unwrap_or((0, 0));
        *self = Self::default();
        (STEPS.get(i).copied().unwrap_or(Step::Udp), us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_step_is_reported_then_reset() {
        let mut lag = LoopLag::default();
        let t0 = Instant::now();
        lag.record(Step::Udp, t0);
        let past = t0.checked_sub(Duration::from_millis(3)).unwrap_or(t0);
        lag.record(Step::Timers, past);
        let (step, us) = lag.take();
        assert_eq!(step, Step::Timers);
        assert!(us >= 3000, "{us}");
        assert_eq!(lag.take(), (Step::Udp, 0));
    }
}
