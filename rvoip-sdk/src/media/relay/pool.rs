//! The relay's port pool: RTP/RTCP port pairs (RTP even, RTCP = RTP + 1, RFC 3550 §11) in the
//! configured range, handed out from a FIFO free list and mapped back to their owner in O(1).

use std::collections::VecDeque;

/// Owner value of a pair that no context holds.
const NO_OWNER: u32 = u32::MAX;

/// Who holds one port pair: a context slot and the side its leg faces, packed as
/// `slot << 1 | side`.
#[derive(Debug, Clone, Copy)]
struct Pair {
    owner: u32,
    /// The driver could not bind one of the two ports: never hand the pair out again.
    unusable: bool,
}

/// Where a local port leads: the owning context slot, the side index (0 caller, 1 callee)
/// and whether the port is the pair's RTCP port (RTP + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PortOwner {
    pub(super) slot: u16,
    pub(super) side: usize,
    pub(super) rtcp: bool,
}

/// Port pairs `base, base + 2, …` (RTP ports) with their RTCP ports `+ 1`, all within
/// `[port_min, port_max]`.
#[derive(Debug)]
pub(super) struct PortPool {
    /// The first RTP port: `port_min` rounded up to an even number.
    base: u32,
    pairs: Vec<Pair>,
    /// Free pair indices, least recently freed first (rtpengine's reuse order).
    free: VecDeque<u16>,
    in_use: usize,
}

impl PortPool {
    /// A pool over `[port_min, port_max]`; empty when the range holds no even/odd pair.
    pub(super) fn new(port_min: u16, port_max: u16) -> PortPool {
        let base = (u32::from(port_min) + 1) & !1;
        let top = u32::from(port_max);
        // Pairs (p, p + 1) with p even, p >= base, p + 1 <= top.
        let count = (top + 1).saturating_sub(base) / 2;
        // At most 32768 pairs fit in the 16-bit port space, so indices fit in u16.
        let count = count.min(1 << 15) as usize;
        PortPool {
            base,
            pairs: vec![
                Pair {
                    owner: NO_OWNER,
                    unusable: false,
                };
                count
            ],
            free: (0..count).filter_map(|i| u16::try_from(i).ok()).collect(),
            in_use: 0,
        }
    }

    /// Number of pairs the range holds (whatever their state).
    pub(super) fn capacity(&self) -> usize {
        self.pairs.len()
    }

    /// Number of pairs currently held by contexts.
    pub(super) fn pairs_in_use(&self) -> usize {
        self.in_use
    }

    /// Number of pairs ready to be handed out.
    pub(super) fn free_pairs(&self) -> usize {
        self.free.len()
    }

    /// The RTP port of pair `index`.
    pub(super) fn rtp_port(&self, index: u16) -> u16 {
        // base + 2 * index + 1 <= port_max <= u16::MAX for every existing index.
        u16::try_from(self.base + 2 * u32::from(index)).unwrap_or(u16::MAX)
    }

    /// The pair index and RTCP flag of `port`, if it lies in the range.
    fn index_of(&self, port: u16) -> Option<(usize, bool)> {
        let offset = u32::from(port).checked_sub(self.base)? as usize;
        let index = offset >> 1;
        (index < self.pairs.len()).then_some((index, offset & 1 == 1))
    }

    /// Whether `port` is one of the range's RTP or RTCP ports (allocated or not).
    pub(super) fn contains(&self, port: u16) -> bool {
        self.index_of(port).is_some()
    }

    /// The owner of `port`, if a context holds it: the packet-path lookup (two Vec indexings).
    #[inline]
    pub(super) fn owner(&self, port: u16) -> Option<PortOwner> {
        let (index, rtcp) = self.index_of(port)?;
        let owner = self.pairs.get(index)?.owner;
        if owner == NO_OWNER {
            return None;
        }
        Some(PortOwner {
            slot: u16::try_from(owner >> 1).ok()?,
            side: (owner & 1) as usize,
            rtcp,
        })
    }

    /// Takes two free pairs for context slot `slot` (caller-facing first), or `None` when
    /// fewer than two are free (nothing is taken then).
    pub(super) fn take_two(&mut self, slot: u16) -> Option<[u16; 2]> {
        if self.free.len() < 2 {
            return None;
        }
        let caller = self.free.pop_front()?;
        let callee = self.free.pop_front()?;
        for (side, index) in [caller, callee].into_iter().enumerate() {
            if let Some(pair) = self.pairs.get_mut(usize::from(index)) {
                pair.owner = (u32::from(slot) << 1) | side as u32;
            }
        }
        self.in_use += 2;
        Some([caller, callee])
    }

    /// Returns pair `index` to the back of the free list (unless it was marked unusable).
    pub(super) fn give_back(&mut self, index: u16) {
        let Some(pair) = self.pairs.get_mut(usize::from(index)) else {
            return;
        };
        if pair.owner == NO_OWNER {
            return;
        }
        pair.owner = NO_OWNER;
        self.in_use = self.in_use.saturating_sub(1);
        if !pair.unusable {
            self.free.push_back(index);
        }
    }

    /// Marks the pair holding `port` unusable: it leaves the free list now, or is not returned
    /// to it when its context is released. Ports outside the range are ignored.
    pub(super) fn mark_unusable(&mut self, port: u16) {
        let Some((index, _)) = self.index_of(port) else {
            return;
        };
        let Some(pair) = self.pairs.get_mut(index) else {
            return;
        };
        if pair.unusable {
            return;
        }
        pair.unusable = true;
        if pair.owner == NO_OWNER {
            // Rare control-plane call: a linear scan of the free list is fine.
            self.free.retain(|&i| usize::from(i) != index);
        }
    }
}
