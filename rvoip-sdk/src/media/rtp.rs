//! RTP packets (RFC 3550 §5) over the webrtc-rs `rtc-rtp` crate: a sender that keeps SSRC,
//! sequence number and timestamp, and a parser that tells RTP from RTCP on a shared port
//! (RFC 5761 §4). Sans-IO: payloads in, datagrams out and back.

use bytes::Bytes;
use rtc_rtp::header::Header;
use rtc_rtp::packet::Packet;
use rtc_shared::marshal::{Marshal, Unmarshal};

/// RTP failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Not an RTP version 2 packet, or truncated.
    #[error("malformed RTP packet: {0}")]
    Malformed(String),
    /// An RTCP packet (payload type 200–204 in the second byte, RFC 5761 §4).
    #[error("RTCP, not RTP")]
    Rtcp,
    /// The packet could not be serialized.
    #[error("cannot serialize RTP: {0}")]
    Marshal(String),
}

/// One received RTP packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type (0..=127).
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp, in the payload type's clock units.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The payload (padding removed).
    pub payload: Bytes,
}

/// Whether a datagram on a muxed RTP/RTCP port is RTCP (RFC 5761 §4: second byte 192–223
/// holds RTCP packet types 200–204 and friends).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|&b| (192..=223).contains(&b))
}

/// Parses one RTP datagram. Errors: [`RtpError::Rtcp`] for RTCP, [`RtpError::Malformed`].
pub fn parse(datagram: &Bytes) -> Result<RtpPacket, RtpError> {
    if is_rtcp(datagram) {
        return Err(RtpError::Rtcp);
    }
    if datagram.first().is_none_or(|b| b >> 6 != 2) {
        return Err(RtpError::Malformed("version is not 2".into()));
    }
    let mut buf = datagram.clone();
    let p = Packet::unmarshal(&mut buf).map_err(|e| RtpError::Malformed(e.to_string()))?;
    Ok(RtpPacket {
        payload_type: p.header.payload_type,
        marker: p.header.marker,
        sequence_number: p.header.sequence_number,
        timestamp: p.header.timestamp,
        ssrc: p.header.ssrc,
        payload: p.payload,
    })
}

/// The sending side of one RTP stream: SSRC, next sequence number, next timestamp.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence_number: u16,
    timestamp: u32,
    payload_type: u8,
    talkspurt: bool,
    /// Packets sent.
    pub packets: u64,
    /// Payload bytes sent.
    pub bytes: u64,
}

impl RtpSender {
    /// A sender with explicit starting values (tests, or continuing a stream).
    pub fn new(
        ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
        payload_type: u8,
    ) -> RtpSender {
        RtpSender {
            ssrc,
            sequence_number: first_sequence,
            timestamp: first_timestamp,
            payload_type: payload_type & 0x7F,
            talkspurt: true,
            packets: 0,
            bytes: 0,
        }
    }

    /// A sender with a random SSRC, sequence number and timestamp (RFC 3550 §5.1).
    pub fn random(payload_type: u8) -> RtpSender {
        RtpSender::new(rand::random(), rand::random(), rand::random(), payload_type)
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next frame will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Marks the next packet as the start of a talkspurt (marker bit, RFC 3551 §4.1).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt = true;
    }

    fn datagram(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<Bytes, RtpError> {
        let len = payload.len() as u64;
        let p = Packet {
            header: Header {
                version: 2,
                marker,
                payload_type: payload_type & 0x7F,
                sequence_number: self.sequence_number,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        let out = p
            .marshal()
            .map_err(|e| RtpError::Marshal(e.to_string()))?
            .freeze();
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.packets += 1;
        self.bytes += len;
        Ok(out)
    }

    /// One media frame that covers `duration_units` timestamp units (160 for 20 ms at 8 kHz).
    /// Errors: [`RtpError::Marshal`].
    pub fn frame(&mut self, payload: Bytes, duration_units: u32) -> Result<Bytes, RtpError> {
        let marker = std::mem::take(&mut self.talkspurt);
        let ts = self.timestamp;
        let out = self.datagram(self.payload_type, marker, ts, payload)?;
        self.timestamp = ts.wrapping_add(duration_units);
        Ok(out)
    }

    /// A packet of another payload type sharing this stream's SSRC and sequence space, with
    /// its own timestamp and marker: telephone-events (RFC 4733 §2.1). The media timestamp
    /// does not advance. Errors: [`RtpError::Marshal`].
    pub fn event(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<Bytes, RtpError> {
        self.datagram(payload_type, marker, timestamp, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_sequence_and_timestamp() {
        let mut s = RtpSender::new(0xDEAD_BEEF, 65_534, u32::MAX - 159, 0);
        let mut got = Vec::new();
        for i in 0..3u8 {
            let d = s.frame(Bytes::from(vec![i; 160]), 160).unwrap();
            assert_eq!(d.len(), 12 + 160);
            got.push(parse(&d).unwrap());
        }
        assert_eq!(
            got.iter().map(|p| p.sequence_number).collect::<Vec<_>>(),
            vec![65_534, 65_535, 0]
        );
        assert_eq!(
            got.iter().map(|p| p.timestamp).collect::<Vec<_>>(),
            vec![u32::MAX - 159, 0, 160]
        );
        assert_eq!(
            got.iter().map(|p| p.marker).collect::<Vec<_>>(),
            vec![true, false, false]
        );
        assert!(
            got.iter()
                .all(|p| p.ssrc == 0xDEAD_BEEF && p.payload_type == 0)
        );
        assert_eq!(got[2].payload, Bytes::from(vec![2u8; 160]));
        assert_eq!((s.packets, s.bytes), (3, 480));
    }

    #[test]
    fn events_share_the_sequence_but_not_the_media_clock() {
        let mut s = RtpSender::new(1, 100, 8000, 8);
        s.frame(Bytes::from_static(&[0; 160]), 160).unwrap();
        let e = parse(
            &s.event(101, true, 8160, Bytes::from_static(&[1, 0x0A, 0, 160]))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (e.payload_type, e.sequence_number, e.timestamp, e.marker),
            (101, 101, 8160, true)
        );
        assert_eq!(
            s.next_timestamp(),
            8160,
            "events do not advance the media timestamp"
        );
        s.start_talkspurt();
        let f = parse(&s.frame(Bytes::from_static(&[0; 160]), 160).unwrap()).unwrap();
        assert!(f.marker);
        assert_eq!(f.sequence_number, 102);
    }

    #[test]
    fn rtcp_and_garbage_are_told_apart() {
        // An RTCP receiver report header: V=2, PT=201.
        let rr = Bytes::from_static(&[0x80, 201, 0, 1, 0, 0, 0, 1]);
        assert!(is_rtcp(&rr));
        assert_eq!(parse(&rr), Err(RtpError::Rtcp));
        assert!(matches!(
            parse(&Bytes::from_static(&[0x40, 0, 0])),
            Err(RtpError::Malformed(_))
        ));
        assert!(matches!(
            parse(&Bytes::from_static(&[0x80, 0, 0, 1])),
            Err(RtpError::Malformed(_))
        ));
        assert!(parse(&Bytes::new()).is_err());
    }
}
