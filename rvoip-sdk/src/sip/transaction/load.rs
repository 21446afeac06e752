//! What the live transactions hold, for the server's hostile-input limits: bytes of the requests
//! kept for retransmission, and the server transactions in progress per source IP.

#![allow(clippy::collapsible_if)]

use super::*;

impl TransactionLayer {
    /// Bytes held by live transactions: the received requests of server transactions (as
    /// given to [`TransactionLayer::handle_received`]) and the sent requests of client
    /// transactions.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Server transactions in progress (not yet answered finally) whose requests came from
    /// `ip`, and their bytes.
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
    let freed = std::mem::take(&mut tx.wire_len);
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
