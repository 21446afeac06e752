//! The `ng` fuzz target.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::media::relay::{Relay, RelayConfig};
use crate::server::ng::{NgConfig, NgControl};
use crate::server::relay::RelayControl;

/// The ng control core ([`crate::server::ng::NgControl`]) over the sans-IO relay, fed a
/// session of control datagrams: the input split at NUL bytes, one datagram per piece, from
/// one client, one simulated second apart (timers run between them). Nothing may panic; every
/// datagram with a cookie gets a reply that starts with that cookie; the relay holds exactly
/// four ports per live context and never more calls than the port pool allows.
pub fn ng(data: &[u8]) {
    let relay = Relay::new(RelayConfig {
        port_min: 40000,
        port_max: 40063,
        media_timeout: Duration::from_secs(3),
        ..RelayConfig::default()
    });
    let mut ng = NgControl::new(relay, NgConfig::new([203, 0, 113, 5].into()));
    let from = SocketAddr::from(([127, 0, 0, 1], 45000));
    let t0 = Instant::now();
    for (i, dg) in data.split(|&b| b == 0).take(64).enumerate() {
        let now = t0 + Duration::from_secs(i as u64);
        let reply = ng.handle_datagram(now, SystemTime::now(), from, dg);
        if let Some(r) = &reply {
            let cookie_len = dg.iter().position(|&b| b == b' ').unwrap_or(0);
            assert_eq!(r.get(..=cookie_len), dg.get(..=cookie_len), "reply cookie");
        }
        ng.handle_timeout(now);
        let contexts = ng.relay().contexts();
        assert_eq!(ng.relay().ports_in_use(), contexts * 4);
        assert!(RelayControl::ports_in_use(ng.relay()) <= 64);
    }
}
