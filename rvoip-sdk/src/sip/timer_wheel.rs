//! A queue of many deadlines (transaction Timers A–M of RFC 3261 §17 and RFC 6026, the proxy's
//! Timer C of §16.6 and §16.8), sans-IO.
//!
//! A [`std::collections::BinaryHeap`] of every armed deadline costs `O(log n)` cache misses per
//! push and pop. At 500 calls/s the heap holds about 100 000 entries: every call arms about ten
//! timers, most live for 32 s (Timers J, L, M), and timers that are re-armed or cancelled stay
//! in it until their time comes. Here the deadlines are grouped by a coarse tick
//! ([`TICK`], 8 ms) in an ordered map of tick → entries:
//! - a push is one lookup among the ticks that hold entries (about 4 000 over 32 s) and a
//!   vector push;
//! - the front tick's entries are sorted once, when it becomes the front, and then taken from
//!   its end;
//! - the earliest deadline is kept exactly (the last entry of the sorted front tick).
//!
//! Entries that were cancelled or re-armed are not searched for. The owner checks each entry
//! when it is due and drops dead ones from the front with [`TimerWheel::prune`], which stops at
//! the first live entry, as with lazy deletion in a heap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The width of one bucket of deadlines. Deadlines stay exact: the tick only groups them.
pub const TICK: Duration = Duration::from_millis(8);

/// Deadlines with an item each, taken in deadline order when due.
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// Tick 0 starts here: the first deadline ever pushed. Earlier deadlines fall in tick 0.
    origin: Option<Instant>,
    /// Tick number → its entries: unordered, except the bucket of `sorted`.
    buckets: BTreeMap<u64, Vec<(Instant, T)>>,
    /// The tick whose bucket is sorted latest-first (the front bucket once it was pruned or
    /// taken from), so that its earliest entry is popped from the end and pushes keep the order.
    sorted: Option<u64>,
    /// Entries held, dead ones included.
    len: usize,
    /// The earliest deadline held (`None` when empty).
    earliest: Option<Instant>,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel {
            origin: None,
            buckets: BTreeMap::new(),
            sorted: None,
            len: 0,
            earliest: None,
        }
    }
}

impl<T: Copy + Ord> TimerWheel<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn tick_of(origin: Instant, at: Instant) -> u64 {
        let n = at.saturating_duration_since(origin).as_nanos() / TICK.as_nanos();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Adds `item`, due at `at`.
    pub fn push(&mut self, at: Instant, item: T) {
        let origin = *self.origin.get_or_insert(at);
        let tick = Self::tick_of(origin, at);
        let v = self.buckets.entry(tick).or_default();
        if self.sorted == Some(tick) {
            // Latest first: the new entry goes after every later one.
            let i = v.partition_point(|e| *e > (at, item));
            v.insert(i, (at, item));
        } else {
            v.push((at, item));
        }
        self.len += 1;
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
    }

    /// The earliest deadline held, dead entries included until [`TimerWheel::prune`] drops them.
    pub fn earliest(&self) -> Option<Instant> {
        self.earliest
    }

    /// How many entries are held, dead ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The front bucket, sorted latest-first (sorted once when it becomes the front).
    fn front_sorted(&mut self) -> Option<(u64, &mut Vec<(Instant, T)>)> {
        let mut entry = self.buckets.first_entry()?;
        let tick = *entry.key();
        if self.sorted != Some(tick) {
            entry.get_mut().sort_unstable_by(|a, b| b.cmp(a));
            self.sorted = Some(tick);
        }
        Some((tick, entry.into_mut()))
    }

    /// Moves every entry due at `now` (deadline ≤ `now`) into `out`, sorted by deadline and
    /// then item (the order a heap would give).
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<(Instant, T)>) {
        let (Some(origin), Some(earliest)) = (self.origin, self.earliest) else {
            return;
        };
        if earliest > now {
            return;
        }
        let start = out.len();
        let now_tick = Self::tick_of(origin, now);
        while let Some(mut entry) = self.buckets.first_entry() {
            let tick = *entry.key();
            if tick > now_tick {
                break;
            }
            if tick < now_tick {
                // Every deadline of an earlier tick is before the start of now's tick.
                out.append(entry.get_mut());
                entry.remove();
                continue;
            }
            if let Some((_, v)) = self.front_sorted() {
                while v.last().is_some_and(|e| e.0 <= now) {
                    out.extend(v.pop());
                }
                if v.is_empty() {
                    self.buckets.remove(&tick);
                }
            }
            break;
        }
        self.len -= out.len() - start;
        out[start..].sort_unstable();
        self.recompute_earliest();
    }

    /// Drops the entries for which `live(deadline, item)` is false, in deadline order from the
    /// front, until the earliest entry left is live: [`TimerWheel::earliest`] is then exact.
    /// Each call asks `live` about the dead entries it drops and one live entry, so a caller
    /// may prune after every event.
    pub fn prune(&mut self, mut live: impl FnMut(Instant, T) -> bool) {
        while let Some((tick, v)) = self.front_sorted() {
            let before = v.len();
            while let Some(&(at, item)) = v.last() {
                if live(at, item) {
                    break;
                }
                v.pop();
            }
            let (dropped, empty) = (before - v.len(), v.is_empty());
            self.len -= dropped;
            if !empty {
                break;
            }
            self.buckets.remove(&tick);
        }
        self.recompute_earliest();
    }

    fn recompute_earliest(&mut self) {
        self.earliest = match self.buckets.first_key_value() {
            None => None,
            Some((&tick, v)) if self.sorted == Some(tick) => v.last().map(|e| e.0),
            Some((_, v)) => v.iter().map(|e| e.0).min(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn due_entries_come_out_in_deadline_order_and_exactly_on_time() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new();
        for (i, d) in [500u64, 3, 32_000, 9, 500, 1, 16_000]
            .into_iter()
            .enumerate()
        {
            w.push(t0 + ms(d), i as u32);
        }
        assert_eq!(w.len(), 7);
        assert_eq!(w.earliest(), Some(t0 + ms(1)));
        let mut out = Vec::new();
        w.take_due(t0, &mut out);
        assert!(out.is_empty(), "nothing is due before its deadline");
        w.take_due(t0 + ms(8), &mut out);
        assert_eq!(out, vec![(t0 + ms(1), 5), (t0 + ms(3), 1)]);
        assert_eq!(w.earliest(), Some(t0 + ms(9)));
        out.clear();
        w.take_due(t0 + ms(499), &mut out);
        assert_eq!(out, vec![(t0 + ms(9), 3)]);
        out.clear();
        w.take_due(t0 + ms(500), &mut out);
        assert_eq!(out, vec![(t0 + ms(500), 0), (t0 + ms(500), 4)]);
        out.clear();
        w.take_due(t0 + ms(60_000), &mut out);
        assert_eq!(out, vec![(t0 + ms(16_000), 6), (t0 + ms(32_000), 2)]);
        assert!(w.is_empty());
        assert_eq!(w.earliest(), None);
    }

    #[test]
    fn deadlines_before_the_first_one_still_come_first() {
        let t0 = Instant::now() + ms(1000);
        let mut w = TimerWheel::new();
        w.push(t0 + ms(100), 1u8);
        w.push(t0, 2);
        w.push(t0 - ms(900), 3);
        assert_eq!(w.earliest(), Some(t0 - ms(900)));
        let mut out = Vec::new();
        w.take_due(t0 - ms(500), &mut out);
        assert_eq!(out, vec![(t0 - ms(900), 3)]);
        out.clear();
        w.take_due(t0 + ms(100), &mut out);
        assert_eq!(out, vec![(t0, 2), (t0 + ms(100), 1)]);
    }

    #[test]
    fn prune_drops_dead_entries_until_a_live_one_leads() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new();
        for i in 0..100u32 {
            w.push(t0 + ms(u64::from(i) * 3), i);
        }
        // Entries below 50 are dead (cancelled).
        w.prune(|_, i| i >= 50);
        assert_eq!(w.earliest(), Some(t0 + ms(150)));
        assert!(w.len() >= 50 && w.len() < 100);
        let mut out = Vec::new();
        w.take_due(t0 + ms(1000), &mut out);
        assert!(out.iter().all(|&(_, i)| i >= 50));
        assert!(out.windows(2).all(|p| p[0] <= p[1]));
        // A live entry up front stops the pruning at once.
        let mut w = TimerWheel::new();
        w.push(t0, 1u32);
        w.push(t0 + ms(1), 0);
        let mut asked = 0;
        w.prune(|_, i| {
            asked += 1;
            i == 1
        });
        assert_eq!(w.earliest(), Some(t0));
        assert_eq!(asked, 1, "only the leading entry is looked at");
        assert_eq!(w.len(), 2, "the dead entry behind it waits its turn");
        // Once the live entry is gone, the dead one behind it goes on the next prune.
        let mut out = Vec::new();
        w.take_due(t0, &mut out);
        assert_eq!(out, vec![(t0, 1)]);
        w.prune(|_, i| i == 1);
        assert!(w.is_empty());
        assert_eq!(w.earliest(), None);
    }

    #[test]
    fn pushing_a_due_entry_while_taking_keeps_it_for_the_next_take() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new();
        w.push(t0 + ms(20), 1u8);
        let mut out = Vec::new();
        w.take_due(t0 + ms(20), &mut out);
        assert_eq!(out.len(), 1);
        w.push(t0 + ms(20), 2);
        assert_eq!(w.earliest(), Some(t0 + ms(20)));
        out.clear();
        w.take_due(t0 + ms(20), &mut out);
        assert_eq!(out, vec![(t0 + ms(20), 2)]);
    }

    #[test]
    fn matches_a_sorted_list_under_random_pushes_takes_and_prunes() {
        // A reference model: every entry in a Vec, dead ones by a predicate on the item.
        let t0 = Instant::now();
        let mut w = TimerWheel::new();
        let mut model: Vec<(Instant, u32)> = Vec::new();
        let mut seed = 0x2545_f491_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let dead = |i: u32| i % 3 == 0;
        let mut now = t0;
        let mut out = Vec::new();
        for step in 0..20_000u32 {
            match rand(10) {
                0..=5 => {
                    let at = now + ms(rand(100));
                    w.push(at, step);
                    model.push((at, step));
                }
                6..=7 => {
                    now += ms(rand(20));
                    out.clear();
                    w.take_due(now, &mut out);
                    let mut due: Vec<_> = model.iter().copied().filter(|e| e.0 <= now).collect();
                    due.sort_unstable();
                    model.retain(|e| e.0 > now);
                    // Entries the wheel pruned earlier are dead and missing from `out`.
                    let live: Vec<_> = due.iter().copied().filter(|e| !dead(e.1)).collect();
                    let got: Vec<_> = out.iter().copied().filter(|e| !dead(e.1)).collect();
                    assert_eq!(got, live, "step {step}");
                    assert!(out.windows(2).all(|p| p[0] <= p[1]));
                }
                _ => {
                    w.prune(|_, i| !dead(i));
                    let first_live = model.iter().filter(|e| !dead(e.1)).map(|e| e.0).min();
                    assert_eq!(w.earliest(), first_live, "step {step}: exact after prune");
                    model.retain(|e| !dead(e.1) || first_live.is_some_and(|f| e.0 > f));
                }
            }
            assert!(w.len() >= model.iter().filter(|e| !dead(e.1)).count());
        }
    }
}
