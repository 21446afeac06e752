//! The dispatcher's clock-driven work: OPTIONS probes every `probe_interval_s` (each with its
//! deadline), and the RFC 3263 lookups of destinations named by DNS (refreshed every
//! [`DNS_REFRESH`], retried after [`DNS_RETRY`] on failure).

use super::*;

impl Dispatcher {
    /// Runs what is due at `now`: probes past their deadline count as failures (down), and a
    /// new probe round is queued ([`Dispatcher::poll_probe`]) for every destination with an
    /// address and no probe in flight; DNS lookups due are queued ([`Dispatcher::poll_dns`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut lookups = Vec::new();
        for d in self.sets.iter_mut().flat_map(|s| s.destinations.iter_mut()) {
            if let Some((p, deadline)) = d.probe {
                if deadline <= now {
                    expired.push((d.id, p));
                }
            }
            if d.needs_dns && !d.dns_in_flight && d.dns_due.is_some_and(|t| t <= now) {
                d.dns_in_flight = true;
                d.dns_due = None;
                lookups.push((d.id, resolve::Target::from_uri(&d.uri)));
            }
        }
        for (id, p) in expired {
            self.probe_answered(id, p, None);
            self.expired.push_back(p);
        }
        self.dns.extend(lookups);
        let (Some(interval), Some(due)) = (self.probe_interval, self.next_probe) else {
            return;
        };
        if due > now {
            return;
        }
        self.next_probe = Some(now + interval);
        let deadline = now + self.probe_timeout;
        let mut round = Vec::new();
        for d in self.sets.iter_mut().flat_map(|s| s.destinations.iter_mut()) {
            let Some(&(addr, transport)) = d.addrs.first() else {
                continue;
            };
            if d.probe.is_some() {
                continue;
            }
            self.next_probe_id += 1;
            d.probe = Some((self.next_probe_id, deadline));
            round.push(Probe {
                id: self.next_probe_id,
                dest: d.id,
                uri: d.uri.clone(),
                addr,
                transport,
            });
        }
        self.stats.probes += round.len() as u64;
        self.probes.extend(round);
    }

    /// The next instant [`Dispatcher::handle_timeout`] has work: a probe round, a probe
    /// deadline, a DNS lookup.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dests = self.sets.iter().flat_map(|s| s.destinations.iter());
        let probes = dests.clone().filter_map(|d| d.probe.map(|(_, t)| t));
        let lookups = dests
            .filter(|d| d.needs_dns && !d.dns_in_flight)
            .filter_map(|d| d.dns_due);
        probes
            .chain(lookups)
            .chain(self.probe_interval.and(self.next_probe))
            .min()
    }

    /// The next probe to send (an OPTIONS to [`Probe::addr`]); its outcome goes to
    /// [`Dispatcher::probe_answered`].
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.probes.pop_front()
    }

    /// The next probe given up at its deadline (its id): the caller ends its transaction, so
    /// that it stops retransmitting.
    pub fn poll_expired_probe(&mut self) -> Option<u64> {
        self.expired.pop_front()
    }

    /// The next DNS lookup a destination needs (RFC 3263 §4); its answer goes to
    /// [`Dispatcher::resolved`].
    pub fn poll_dns(&mut self) -> Option<(DestId, resolve::Target)> {
        self.dns.pop_front()
    }

    /// The answer to the lookup of destination `id`: its addresses (in RFC 3263 order; those
    /// over WebSocket left out), looked up again after [`DNS_REFRESH`]. A failure keeps the
    /// addresses it had (none at first: it takes no requests) and retries after
    /// [`DNS_RETRY`].
    pub fn resolved(
        &mut self,
        id: DestId,
        now: Instant,
        result: Result<Vec<resolve::Destination>, ResolveError>,
    ) {
        let Some((set, d)) = self.locate(id) else {
            return;
        };
        d.dns_in_flight = false;
        match result {
            Ok(list) => {
                let addrs: Vec<(SocketAddr, Transport)> =
                    list.iter().filter_map(transport_of).collect();
                if addrs.is_empty() {
                    tracing::warn!(%set, uri = %d.uri, "dispatch destination: no usable address");
                    d.dns_due = Some(now + DNS_RETRY);
                } else {
                    if d.addrs != addrs {
                        tracing::info!(%set, uri = %d.uri, ?addrs, "dispatch destination resolved");
                    }
                    d.addrs = addrs;
                    d.dns_due = Some(now + DNS_REFRESH);
                }
            }
            Err(e) => {
                tracing::warn!(%set, uri = %d.uri, error = %e, "dispatch destination not resolved");
                d.dns_due = Some(now + DNS_RETRY);
            }
        }
    }

    /// The next change of a destination's state.
    pub fn poll_event(&mut self) -> Option<DispatchEvent> {
        self.events.pop_front()
    }
}
