//! Picking a destination of a set: round robin, smooth weighted round robin and a hash of the
//! Call-ID, over the destinations that are up (all of them with an address when none is).

use super::{Algorithm, Set};

/// FNV-1a (64 bit) of the Call-ID: stable across restarts and nodes, so one Call-ID always
/// maps to the same destination.
fn call_id_hash(call_id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in call_id.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The destination to try first (an index into `s.destinations`), the others to fail over to
/// in order (the next ones in list order after it, wrapping around), and whether this is a last
/// resort (no destination is up: all with an address are candidates). `None`: no destination
/// has an address.
pub(super) fn pick(s: &mut Set, call_id: &str) -> Option<(usize, Vec<usize>, bool)> {
    let mut eligible: Vec<usize> = (0..s.destinations.len())
        .filter(|&i| s.destinations.get(i).is_some_and(|d| d.is_usable()))
        .collect();
    let mut last_resort = false;
    if eligible.is_empty() {
        eligible = (0..s.destinations.len())
            .filter(|&i| s.destinations.get(i).is_some_and(|d| !d.addrs.is_empty()))
            .collect();
        last_resort = true;
    }
    if eligible.is_empty() {
        return None;
    }
    let n = s.destinations.len();
    let first = match s.algorithm {
        Algorithm::RoundRobin => {
            let start = s.rr_next % n;
            let first = (0..n)
                .map(|k| (start + k) % n)
                .find(|i| eligible.contains(i))?;
            s.rr_next = (first + 1) % n;
            first
        }
        Algorithm::Weighted => {
            // Smooth weighted round robin (as nginx's upstream): every eligible destination
            // gains its weight, the richest is picked and pays the total back. Over each run of
            // `total` picks every destination gets exactly its weight, spread evenly.
            let total: i64 = eligible
                .iter()
                .filter_map(|&i| s.destinations.get(i))
                .map(|d| i64::from(d.weight))
                .sum();
            for &i in &eligible {
                if let Some(d) = s.destinations.get_mut(i) {
                    d.credit += i64::from(d.weight);
                }
            }
            // The richest; the first in list order on a tie.
            let best = eligible
                .iter()
                .filter_map(|&i| s.destinations.get(i).map(|d| (i, d.credit)))
                .fold(None::<(usize, i64)>, |acc, (i, c)| match acc {
                    Some((_, bc)) if bc >= c => acc,
                    _ => Some((i, c)),
                })
                .map(|(i, _)| i);
            let first = best?;
            if let Some(d) = s.destinations.get_mut(first) {
                d.credit -= total;
            }
            first
        }
        Algorithm::HashCallId => {
            let start = (call_id_hash(call_id) % n as u64) as usize;
            (0..n)
                .map(|k| (start + k) % n)
                .find(|i| eligible.contains(i))?
        }
    };
    let order = (1..n)
        .map(|k| (first + k) % n)
        .filter(|i| eligible.contains(i))
        .collect();
    Some((first, order, last_resort))
}
