//! What the live transactions hold, for the server's hostile-input limits: bytes of the requests
//! kept for retransmission, and the server transactions in progress per source IP.

#![allow(clippy::collapsible_if)]

use super::*;

/// Heap bytes one live transaction costs besides its request's bytes: the transaction, its
/// parsed request (headers as slices, the rewritten ones as new strings), its index keys and
/// timers, and its share of the proxy's context. Measured with a counting allocator on a
/// proxied request with ten headers: about 5.9 KB for a server and a client transaction
/// together, besides the two copies of the request (`held_bytes_cover_the_heap` in the
/// server's guard tests). On the running server the allocator's size classes and the hash
/// tables' spare capacity add to it: with 4 KiB, `held.py` (60 KB bodies) grew RSS by
/// 32.3 MiB under a 32 MiB cap; with 6 KiB by 31.4 MiB.
pub const TX_STATE_BYTES: usize = 6 << 10;

/// The heap block that holds `n` bytes: `n` rounded up to the allocator's size class. Size
/// classes of mimalloc (the server's allocator) and of most modern allocators come four per
/// power of two, e.g. a 61,724-byte request takes a 65,536-byte block and a 16,422-byte one a
/// 20,480-byte block. 0 for 0.
pub fn allocation_size(n: usize) -> usize {
    match n {
        0 => 0,
        1..=64 => n.next_multiple_of(16),
        _ => n.next_multiple_of((1usize << n.ilog2()) / 4),
    }
}

/// What a request of `n` bytes held by a transaction costs in the held-bytes accounting: its
/// block ([`allocation_size`]) plus [`TX_STATE_BYTES`].
pub fn held_cost(n: usize) -> usize {
    allocation_size(n) + TX_STATE_BYTES
}

/// A client transaction no longer keeps its request for retransmission (a final response
/// arrived, or it ended): its whole cost leaves the accounting at once, like a server
/// transaction's at its final response. What is left until Timer K ends is bounded by the
/// request rate, not by what others make the proxy hold. Idempotent.
pub(super) fn release_request(held: &mut usize, bytes: &mut Bytes) {
    if !bytes.is_empty() {
        *held = held.saturating_sub(held_cost(std::mem::take(bytes).len()));
    }
}

impl TransactionLayer {
    /// Bytes held by live transactions, as the heap they cost ([`held_cost`]): the received
    /// requests of server transactions in progress (as given to
    /// [`TransactionLayer::handle_received`]) and the sent requests of client transactions, each
    /// with its transaction's state.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Server transactions in progress (not yet answered finally) whose requests came from
    /// `ip`, and their bytes ([`held_cost`]).
    pub fn source_load(&self, ip: IpAddr) -> (usize, usize) {
        self.per_source
            .get(&ip)
            .map_or((0, 0), |&(n, b)| (n as usize, b))
    }

    /// For a server transaction whose request arrived over UDP with a known size: that size in
    /// bytes, which a reply the element makes itself should not exceed (no reflection
    /// amplification). `None` for stream transports and unknown transactions.
    pub fn reply_budget(&self, tx: ServerTxId) -> Option<usize> {
        let t = self.servers.get(&tx.0)?;
        (t.transport == Transport::Udp && t.wire_len > 0).then_some(t.wire_len)
    }

    /// Forgets a server transaction without answering it (a request dropped on purpose).
    /// Returns false if it is unknown.
    pub fn discard(&mut self, tx: ServerTxId) -> bool {
        let known = self.servers.contains_key(&tx.0);
        self.remove_server(tx.0);
        known
    }
}

/// A server transaction is no longer in progress (it was answered finally, or it ended): it
/// leaves its source's count, and its request's bytes leave the held-bytes accounting (total
/// and per source). Idempotent.
pub(super) fn settle(
    held: &mut usize,
    per_source: &mut HashMap<IpAddr, (u32, usize)>,
    tx: &mut ServerTx,
) {
    if !std::mem::take(&mut tx.in_progress) {
        return;
    }
    let freed = held_cost(std::mem::take(&mut tx.wire_len));
    *held = held.saturating_sub(freed);
    let ip = tx.dest.ip();
    if let Some(load) = per_source.get_mut(&ip) {
        load.0 = load.0.saturating_sub(1);
        load.1 = load.1.saturating_sub(freed);
        if load.0 == 0 {
            per_source.remove(&ip);
        }
    }
}
