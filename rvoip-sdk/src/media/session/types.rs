//! The public types of a [`super::MediaSession`]: its configuration, errors, events,
//! transmissions and statistics.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::media::codec::CodecError;
use crate::media::dtls::DtlsIdentity;
use crate::media::resample::ResampleError;
use crate::sdp::{AudioCodec, Direction, MediaSecurity};

/// Media session failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The codec has no encoder/decoder in this build.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A source or sink rate cannot be converted to the codec's.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// `frame_ms` outside 10..=120, or another unusable setting.
    #[error("invalid media configuration: {0}")]
    Config(String),
    /// DTMF asked for, but the peer negotiated no telephone-event payload type (RFC 4733).
    #[error("no telephone-event payload type negotiated")]
    NoTelephoneEvent,
    /// DTMF asked for while the direction does not send (sendonly/sendrecv needed).
    #[error("the stream is not sending")]
    NotSending,
    /// A character that is not a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`).
    #[error("not a DTMF key: {0:?}")]
    InvalidDigit(char),
    /// The agreed SRTP cannot be set up: keys that make no context, DTLS-SRTP without our
    /// certificate.
    #[error("SRTP: {0}")]
    Security(String),
}

/// What a [`super::MediaSession`] needs from offer/answer (see [`crate::sdp::Negotiated`]).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The codec.
    pub codec: AudioCodec,
    /// Its payload type in this stream (0..=127).
    pub payload_type: u8,
    /// telephone-event payload type (RFC 4733), if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP (from the SDP; replaced by the latched source, RFC 4961).
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP (usually the RTP port + 1, RFC 3550 §11).
    pub remote_rtcp: SocketAddr,
    /// Our direction (RFC 3264 §6.1).
    pub direction: Direction,
    /// Packetization time in ms (20 usually; 10..=120).
    pub frame_ms: u32,
    /// Receive loss emulation in percent (0..=100) of RTP packets dropped on arrival with a
    /// seeded RNG (tests, like pjsua `--rx-drop-pct`). 0 in production.
    pub rx_loss_percent: f32,
    /// Plain RTP, or SRTP keyed by SDES or DTLS (RFC 3711, 4568, 5764), from offer/answer.
    pub security: MediaSecurity,
    /// Our DTLS certificate, needed when `security` is DTLS-SRTP.
    pub dtls_identity: Option<DtlsIdentity>,
    /// The Opus encoder's computational complexity, 0–10 (`None`: 10, the best). Other codecs
    /// ignore it. The relay's transcoders and conference members use 5, as PJSIP does.
    pub encoder_complexity: Option<u8>,
}

impl MediaConfig {
    /// Defaults for `codec` to `remote_rtp`: its own payload type, no telephone-event, RTCP on
    /// the next port, sendrecv, 20 ms, no loss emulation.
    pub fn new(codec: AudioCodec, remote_rtp: SocketAddr) -> MediaConfig {
        let mut remote_rtcp = remote_rtp;
        remote_rtcp.set_port(remote_rtp.port().wrapping_add(1));
        MediaConfig {
            codec,
            payload_type: codec.payload_type,
            telephone_event_pt: None,
            remote_rtp,
            remote_rtcp,
            direction: Direction::SendRecv,
            frame_ms: 20,
            rx_loss_percent: 0.0,
            security: MediaSecurity::Plain,
            dtls_identity: None,
            encoder_complexity: None,
        }
    }
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTransmit {
    /// Destination address.
    pub dest: SocketAddr,
    /// Whether it goes out of the RTCP socket (else the RTP socket).
    pub rtcp: bool,
    /// The datagram.
    pub bytes: Bytes,
}

/// What happened on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The first valid RTP packet arrived (media started), from `from`.
    FirstPacket {
        /// Its source address.
        from: SocketAddr,
    },
    /// A DTMF key was received (RFC 4733), once per key press, in order.
    Dtmf(char),
    /// No RTP for [`super::RTP_TIMEOUT`] while receiving; raised again only after RTP resumed.
    RtpTimeout,
    /// The remote address changed to the packets' source (symmetric RTP, RFC 4961).
    Latched {
        /// The new address.
        addr: SocketAddr,
        /// Whether it is the RTCP address (else RTP).
        rtcp: bool,
    },
    /// The peer sent an RTCP BYE (RFC 3550 §6.6).
    Bye,
    /// SRTP keys were agreed on the media path (DTLS-SRTP, RFC 5764): media flows from now.
    Secured {
        /// `DTLS`.
        keying: &'static str,
        /// The SRTP protection profile, as an SDES suite name (`AES_CM_128_HMAC_SHA1_80`).
        suite: &'static str,
    },
    /// The DTLS-SRTP handshake failed (wrong fingerprint, no common profile, a fatal alert):
    /// no media can flow. Raised once.
    SecurityFailed(String),
}

/// Call statistics (a snapshot, [`super::MediaSession::stats`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallStats {
    /// Codec encoding name (`PCMU`, `opus`, …).
    pub codec: &'static str,
    /// RTP packets sent (audio and telephone-events).
    pub tx_packets: u64,
    /// RTP payload bytes sent.
    pub tx_bytes: u64,
    /// RTP packets received (after loss emulation), from the current source.
    pub rx_packets: u64,
    /// RTP payload bytes received.
    pub rx_bytes: u64,
    /// Cumulative packets lost (RFC 3550 A.3; negative with duplicates).
    pub rx_lost: i64,
    /// Cumulative loss fraction 0.0..=1.0 (lost / expected).
    pub rx_loss_fraction: f64,
    /// Interarrival jitter in ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time from RTCP in ms (RFC 3550 §6.4.1), once measured.
    pub rtt_ms: Option<f64>,
    /// MOS estimate 1.0..=4.5 (E-model, one-way delay = rtt/2 + jitter buffer delay).
    pub mos: f64,
    /// Jitter buffer target delay in ms.
    pub jitter_buffer_ms: u32,
    /// Frames concealed (codec PLC) by the jitter buffer.
    pub concealed_frames: u64,
    /// DTMF keys received.
    pub dtmf_received: u64,
    /// DTMF keys sent.
    pub dtmf_sent: u64,
    /// RTCP reports sent / received.
    pub rtcp_sent: u64,
    /// RTCP compound packets received and parsed.
    pub rtcp_received: u64,
    /// Where RTP goes now (after latching).
    pub remote_rtp: Option<SocketAddr>,
    /// SRTP key exchange, `SDES` or `DTLS`; `None` for plain RTP.
    pub srtp_keying: Option<&'static str>,
    /// SRTP crypto suite in use (`AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32`,
    /// `AEAD_AES_128_GCM`), once keyed.
    pub srtp_suite: Option<&'static str>,
    /// Received SRTP/SRTCP packets dropped because authentication failed (RFC 3711 §3.4).
    pub srtp_auth_failures: u64,
    /// Received SRTP/SRTCP packets dropped as replays (RFC 3711 §3.3.2).
    pub srtp_replays: u64,
    /// Received packets dropped as not SRTP at all (plain, malformed, before the keys).
    pub srtp_dropped: u64,
}
