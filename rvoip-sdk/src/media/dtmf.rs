//! DTMF as RTP telephone-events (RFC 4733 §2.3, event codes of §3.2): the 4-byte payload, a
//! sender that produces one event's packets, and a receiver that reports each digit exactly once
//! however its packets are repeated, reordered or partly lost. Sans-IO.

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D` (RFC 4733 §3.2).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in −dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// A telephone-event payload that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// Fewer than 4 bytes.
    #[error("telephone-event payload shorter than 4 bytes")]
    Short,
}

impl TelephoneEvent {
    /// The 4-byte wire form: event, E|R|volume, duration (network order).
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// Reads the first 4 bytes of a payload (later bytes are further events of RFC 4733 §2.5.1.5
    /// redundancy and are ignored). Errors: [`DtmfError::Short`].
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let [event, flags, d0, d1] = *payload.first_chunk::<4>().ok_or(DtmfError::Short)?;
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// The event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`, case-insensitive).
pub fn event_code(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        c @ '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        c @ 'A'..='D' => Some(c as u8 - b'A' + 12),
        _ => None,
    }
}

/// The DTMF key of an event code, if it is one (0–15).
pub fn event_key(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

/// One packet to send for an event: the payload, whether the RTP marker bit is set (first
/// packet of the event), and the RTP timestamp (the event's start, the same for all its packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The payload.
    pub event: TelephoneEvent,
    /// RTP marker bit (set on the first packet only, RFC 4733 §2.5.1.3).
    pub marker: bool,
    /// RTP timestamp: the event's start time.
    pub timestamp: u32,
}

/// The packets of one key press (RFC 4733 §2.5.1): every `interval_ms` a packet with the growing
/// duration, then the final duration three times with the E bit (§2.5.1.4).
pub fn event_packets(
    key: char,
    start_timestamp: u32,
    clock_rate_hz: u32,
    duration_ms: u32,
    interval_ms: u32,
) -> Option<Vec<EventPacket>> {
    let event = event_code(key)?;
    let units =
        |ms: u32| (u64::from(clock_rate_hz) * u64::from(ms) / 1000).min(u64::from(u16::MAX)) as u16;
    let total = units(duration_ms.max(1));
    let step = units(interval_ms.max(1)).max(1);
    let mut out = Vec::new();
    let mut d = step.min(total);
    loop {
        let end = d >= total;
        let n = if end { 3 } else { 1 };
        for _ in 0..n {
            out.push(EventPacket {
                event: TelephoneEvent {
                    event,
                    end,
                    volume: 10,
                    duration: d,
                },
                marker: out.is_empty(),
                timestamp: start_timestamp,
            });
        }
        if end {
            return Some(out);
        }
        d = d.saturating_add(step).min(total);
    }
}

/// Reports each received key once: an event is identified by its RTP timestamp, so repeated
/// end packets and lost start packets neither duplicate nor hide it (RFC 4733 §2.5.2).
#[derive(Debug, Default, Clone)]
pub struct DtmfReceiver {
    last_timestamp: Option<u32>,
}

impl DtmfReceiver {
    /// A receiver with no event seen.
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Feeds one telephone-event packet (its RTP timestamp and payload). Returns the key the
    /// first time a packet of a new event arrives. Malformed payloads and unknown codes give `None`.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = TelephoneEvent::parse(payload).ok()?;
        let key = event_key(ev.event)?;
        if self.last_timestamp == Some(timestamp) {
            return None;
        }
        self.last_timestamp = Some(timestamp);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_rfc4733_layout() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Ok(ev));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::Short));
    }

    #[test]
    fn keys_and_codes() {
        for (k, c) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('d', 15),
        ] {
            assert_eq!(event_code(k), Some(c));
            assert_eq!(event_key(c), Some(k.to_ascii_uppercase()));
        }
        assert_eq!(event_code('x'), None);
        assert_eq!(event_key(16), None);
    }

    #[test]
    fn sender_packets_follow_rfc4733() {
        // 100 ms at 8 kHz, a packet every 50 ms: durations 400, 800, 800, 800 (three ends).
        let p = event_packets('5', 1234, 8000, 100, 50).unwrap();
        let d: Vec<(u16, bool, bool)> = p
            .iter()
            .map(|p| (p.event.duration, p.event.end, p.marker))
            .collect();
        assert_eq!(
            d,
            vec![
                (400, false, true),
                (800, true, false),
                (800, true, false),
                (800, true, false)
            ]
        );
        assert!(p.iter().all(|p| p.timestamp == 1234 && p.event.event == 5));
        assert!(event_packets('x', 0, 8000, 100, 50).is_none());
    }

    #[test]
    fn receiver_reports_each_key_once_despite_repeats_and_loss() {
        let mut rx = DtmfReceiver::new();
        let mut got = String::new();
        let mut ts = 10_000u32;
        for (i, key) in "1234#*".chars().enumerate() {
            let packets = event_packets(key, ts, 8000, 120, 50).unwrap();
            for (j, p) in packets.iter().enumerate() {
                if i == 2 && j == 0 {
                    continue; // the first packet of '3' is lost
                }
                got.extend(rx.on_packet(p.timestamp, &p.event.to_bytes()));
            }
            ts = ts.wrapping_add(8000);
        }
        assert_eq!(got, "1234#*");
        assert_eq!(rx.on_packet(ts, &[1, 2]), None, "malformed");
    }
}
