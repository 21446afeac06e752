//! Media cores (sans-IO, no clock): the codecs G.711, G.722 and (feature `opus`) Opus behind
//! one interface ([`codec`]), DTMF telephone-events (RFC 4733), an adaptive jitter buffer, RTP
//! receiver statistics and MOS (RFC 3550, G.107), RTCP SR/RR with round-trip time ([`rtcp`]),
//! resampling ([`resample`]), tone generation and detection, audio sources/sinks (tone,
//! silence, WAV, memory, callbacks; system devices via cpal with feature `audio-device`), and
//! [`session::MediaSession`], one call's audio stream, which `driver::media` runs on tokio.
//! SRTP is not done yet.

pub mod audio;
pub mod codec;
#[cfg(feature = "audio-device")]
pub mod device;
pub mod dtls;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod jitter;
#[cfg(feature = "opus")]
pub mod opus;
pub mod record;
pub mod relay;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
pub mod session;
pub mod srtp;
pub mod stats;
pub mod tone;
