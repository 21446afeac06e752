//! SDP offer/answer for one audio stream (RFC 3264 over RFC 4566 syntax, parsed and printed by
//! the webrtc-rs `rtc-sdp` crate). Sans-IO: text in, text and the negotiated result out.
//!
//! The answerer takes the first codec of *its own* preference list that the offer contains
//! (the preference order is configuration), plus telephone-event (RFC 4733) when both sides
//! offer it. No common codec: [`SdpError::NoCommonCodec`], which a UAS answers with 488.
//!
//! SRTP (the profile and the SDES or DTLS-SRTP attributes) is decided in [`security`] by the
//! call's [`SrtpPolicy`]: a secure offer is answered securely or refused, never in plaintext.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaName, RangedPort};
use rtc_sdp::description::session::{Origin, TimeDescription, Timing};
use rtc_sdp::{MediaDescription, SessionDescription};

pub mod security;

pub use security::{LocalSecurity, MediaSecurity, SrtpConfig, SrtpKeying, SrtpPolicy};
use security::{Profile, RemoteSecurity};

/// An audio codec as SDP names it (RFC 3551 static types and dynamic ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioCodec {
    /// Encoding name as in `a=rtpmap` (compared case-insensitively).
    pub name: &'static str,
    /// The payload type we offer it with (static for G.711/G.722, dynamic otherwise).
    pub payload_type: u8,
    /// RTP clock rate in Hz (8000 for G.722 by RFC 3551's historical rule; 48000 for Opus).
    pub clock_rate: u32,
    /// Channels (Opus is always written `opus/48000/2`, RFC 7587).
    pub channels: u8,
}

impl AudioCodec {
    /// G.711 µ-law, static payload type 0.
    pub const PCMU: AudioCodec = AudioCodec {
        name: "PCMU",
        payload_type: 0,
        clock_rate: 8000,
        channels: 1,
    };
    /// G.711 A-law, static payload type 8.
    pub const PCMA: AudioCodec = AudioCodec {
        name: "PCMA",
        payload_type: 8,
        clock_rate: 8000,
        channels: 1,
    };
    /// G.722, static payload type 9 (RTP clock 8000 although it samples at 16 kHz).
    pub const G722: AudioCodec = AudioCodec {
        name: "G722",
        payload_type: 9,
        clock_rate: 8000,
        channels: 1,
    };
    /// Opus (RFC 7587), dynamic payload type 111.
    pub const OPUS: AudioCodec = AudioCodec {
        name: "opus",
        payload_type: 111,
        clock_rate: 48000,
        channels: 2,
    };

    /// The static payload type assignments of RFC 3551 that an offer may use without rtpmap.
    fn static_type(pt: u8) -> Option<AudioCodec> {
        match pt {
            0 => Some(Self::PCMU),
            8 => Some(Self::PCMA),
            9 => Some(Self::G722),
            _ => None,
        }
    }

    fn rtpmap(&self, pt: u8) -> String {
        if self.channels > 1 {
            format!("{pt} {}/{}/{}", self.name, self.clock_rate, self.channels)
        } else {
            format!("{pt} {}/{}", self.name, self.clock_rate)
        }
    }
}

/// The payload type we offer telephone-event (RFC 4733) with.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Media direction (RFC 3264 §5.1, §6.1, §8.4 for hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Send and receive.
    SendRecv,
    /// Send only (we put the peer on hold).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer must have for an offer with this direction, given what we want
    /// (RFC 3264 §6.1): sendonly ↔ recvonly, inactive stays inactive.
    pub fn answer_to(self, wanted: Direction) -> Direction {
        let (offer_sends, offer_recvs) = self.flags();
        let (we_send, we_recv) = wanted.flags();
        match (offer_recvs && we_send, offer_sends && we_recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    fn flags(self) -> (bool, bool) {
        match self {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        }
    }
}

/// Our side of the audio stream.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// The address the peer must send RTP to: the local address that faces the peer, never a
    /// wildcard (callers resolve it; a wildcard is refused with [`SdpError::Unspecified`]).
    pub addr: IpAddr,
    /// Our RTP port (RTCP on port + 1).
    pub port: u16,
    /// Codecs in preference order.
    pub codecs: Vec<AudioCodec>,
    /// Offer/accept telephone-event for DTMF.
    pub dtmf: bool,
    /// The direction we want.
    pub direction: Direction,
    /// SRTP policy and our keys (SDES attributes, DTLS fingerprint).
    pub security: LocalSecurity,
}

/// The outcome of offer/answer: where to send, with which codec and payload types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// The codec to use.
    pub codec: AudioCodec,
    /// The payload type for that codec in the stream (the offerer's numbering).
    pub payload_type: u8,
    /// telephone-event payload type, when both sides support it.
    pub telephone_event_pt: Option<u8>,
    /// Our direction after the exchange.
    pub direction: Direction,
    /// Plain RTP, or SRTP and how it is keyed.
    pub security: MediaSecurity,
}

/// Offer/answer failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The SDP does not parse.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No `m=audio` section with an RTP profile and a usable port.
    #[error("no audio stream in the SDP")]
    NoAudio,
    /// No connection address for the audio stream.
    #[error("no connection address")]
    NoAddress,
    /// No codec in common (answer 488 Not Acceptable Here).
    #[error("no codec in common")]
    NoCommonCodec,
    /// Our own address is a wildcard: the peer could not reach it.
    #[error("local media address is unspecified (0.0.0.0 / ::)")]
    Unspecified,
    /// The audio stream asks for a secure profile (RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP…) that
    /// this version cannot provide; answered 488 rather than silently downgraded to RTP/AVP.
    /// Answered 488.
    #[error("the peer wants SRTP ({0}) and this account's SRTP policy is off")]
    SecureProfile(String),
    /// An SRTP offer or answer whose crypto suites, keys or key exchange we cannot use (488).
    #[error("no SRTP crypto suite or key exchange in common")]
    NoCommonCrypto,
    /// SRTP is mandatory and the peer offered or answered plain RTP (488).
    #[error("SRTP is mandatory for this account and the peer offered or answered plain RTP")]
    SrtpRequired,
    /// SDES keys (`a=crypto`) would travel over signalling that is not encrypted, which the
    /// account does not allow (RFC 4568 §8.3); answered 488.
    #[error("SDES keys may only be exchanged over TLS signalling (sdes_over_insecure is off)")]
    InsecureKeys,
    /// SRTP is mandatory but neither SDES (insecure signalling) nor DTLS-SRTP may be offered.
    #[error(
        "SRTP is mandatory but no key exchange is possible: SDES needs TLS signalling and DTLS-SRTP is off"
    )]
    NoKeyExchange,
}

impl SdpError {
    /// The status a UAS answers an offer it cannot take with: 488 Not Acceptable Here for
    /// codec and SRTP disagreements, 400 for SDP that does not parse.
    pub fn status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) | SdpError::NoAddress => 400,
            SdpError::Unspecified => 500,
            _ => 488,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    local: &LocalMedia,
    session_id: u64,
    version: u64,
    formats: &[(u8, String)],
    te: Option<u8>,
    direction: Direction,
    proto: &str,
    extra: Vec<(String, String)>,
) -> Result<String, SdpError> {
    if local.addr.is_unspecified() {
        return Err(SdpError::Unspecified);
    }
    let addr_type = if local.addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut attributes: Vec<Attribute> = formats
        .iter()
        .map(|(_, rtpmap)| Attribute {
            key: "rtpmap".into(),
            value: Some(rtpmap.clone()),
        })
        .collect();
    let mut pts: Vec<String> = formats.iter().map(|(pt, _)| pt.to_string()).collect();
    if let Some(te) = te {
        pts.push(te.to_string());
        attributes.push(Attribute {
            key: "rtpmap".into(),
            value: Some(format!("{te} telephone-event/8000")),
        });
        attributes.push(Attribute {
            key: "fmtp".into(),
            value: Some(format!("{te} 0-16")),
        });
    }
    attributes.push(Attribute {
        key: "ptime".into(),
        value: Some("20".into()),
    });
    attributes.push(Attribute {
        key: direction.as_str().into(),
        value: None,
    });
    attributes.extend(extra.into_iter().map(|(key, value)| Attribute {
        key,
        value: Some(value),
    }));
    let media = MediaDescription {
        media_name: MediaName {
            media: "audio".into(),
            port: RangedPort {
                value: local.port as isize,
                range: None,
            },
            protos: proto.split('/').map(str::to_string).collect(),
            formats: pts,
        },
        attributes,
        ..Default::default()
    };
    let sd = SessionDescription {
        version: 0,
        origin: Origin {
            username: "rvoip".into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: addr_type.into(),
            unicast_address: local.addr.to_string(),
        },
        session_name: "rvoip".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: addr_type.into(),
            address: Some(Address {
                address: local.addr.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        media_descriptions: vec![media],
        ..Default::default()
    };
    Ok(sd.marshal())
}

/// Our offer (RFC 3264 §5): every configured codec in preference order, telephone-event if
/// enabled, the profile and SRTP attributes of our policy (`RTP/SAVP` with `a=crypto`,
/// `UDP/TLS/RTP/SAVP` with `a=fingerprint` and `a=setup:actpass`, or `RTP/AVP`).
/// Errors: [`SdpError::Unspecified`], [`SdpError::NoKeyExchange`].
pub fn create_offer(local: &LocalMedia, session_id: u64, version: u64) -> Result<String, SdpError> {
    let (proto, extra) = security::offer(&local.security)?;
    let formats: Vec<(u8, String)> = local
        .codecs
        .iter()
        .map(|c| (c.payload_type, c.rtpmap(c.payload_type)))
        .collect();
    build(
        local,
        session_id,
        version,
        &formats,
        local.dtmf.then_some(TELEPHONE_EVENT_PT),
        local.direction,
        proto,
        extra,
    )
}

/// What one audio section of a remote SDP offers.
struct Remote {
    addr: SocketAddr,
    /// (payload type, codec name lower-case, clock rate) in the peer's order.
    formats: Vec<(u8, String, u32)>,
    direction: Direction,
    /// The transport profile and its protocol as written (`RTP/SAVP`).
    profile: Profile,
    proto: String,
    security: RemoteSecurity,
}

/// The audio sections of a remote SDP with an RTP profile, in order. Errors:
/// [`SdpError::Malformed`], [`SdpError::NoAudio`], [`SdpError::NoAddress`].
fn parse_remote(text: &str) -> Result<Vec<Remote>, SdpError> {
    let sd = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    let mut out = Vec::new();
    let mut no_address = false;
    for media in sd
        .media_descriptions
        .iter()
        .filter(|m| m.media_name.media.eq_ignore_ascii_case("audio"))
    {
        let Some(profile) = Profile::of(&media.media_name.protos) else {
            continue;
        };
        let Ok(port) = u16::try_from(media.media_name.port.value) else {
            continue;
        };
        let conn = media
            .connection_information
            .as_ref()
            .or(sd.connection_information.as_ref());
        let Some(ip) = conn.and_then(|c| c.address.as_ref()).and_then(|a| {
            a.address
                .split('/')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
        }) else {
            no_address = true;
            continue;
        };
        let codecs = media.codecs();
        let mut formats = Vec::new();
        for f in &media.media_name.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            if let Some(c) = codecs.get(&pt) {
                formats.push((pt, c.name.to_ascii_lowercase(), c.clock_rate));
            } else if let Some(s) = AudioCodec::static_type(pt) {
                formats.push((pt, s.name.to_ascii_lowercase(), s.clock_rate));
            }
        }
        let direction = if media.has_attribute("sendonly") || sd.has_attribute("sendonly") {
            Direction::SendOnly
        } else if media.has_attribute("recvonly") || sd.has_attribute("recvonly") {
            Direction::RecvOnly
        } else if media.has_attribute("inactive") || sd.has_attribute("inactive") || port == 0 {
            Direction::Inactive
        } else {
            Direction::SendRecv
        };
        let attr = |key: &str| {
            media
                .attribute(key)
                .flatten()
                .or_else(|| sd.attribute(key).map(String::as_str))
        };
        let crypto_values: Vec<&str> = media
            .attributes
            .iter()
            .filter(|a| a.key.eq_ignore_ascii_case("crypto"))
            .filter_map(|a| a.value.as_deref())
            .collect();
        let security = RemoteSecurity {
            crypto: crypto_values
                .iter()
                .filter_map(|v| crate::media::sdes::CryptoAttribute::parse(v).ok())
                .filter(|c| c.is_acceptable())
                .collect(),
            crypto_lines: !crypto_values.is_empty(),
            fingerprint: attr("fingerprint").and_then(crate::media::dtls::Fingerprint::parse),
            setup: attr("setup").and_then(crate::media::dtls::Setup::parse),
        };
        out.push(Remote {
            addr: SocketAddr::new(ip, port),
            formats,
            direction,
            profile,
            proto: media.media_name.protos.join("/"),
            security,
        });
    }
    if out.is_empty() {
        return Err(if no_address {
            SdpError::NoAddress
        } else {
            SdpError::NoAudio
        });
    }
    Ok(out)
}

fn find(remote: &Remote, codec: &AudioCodec) -> Option<u8> {
    remote
        .formats
        .iter()
        .find(|(_, name, rate)| name.eq_ignore_ascii_case(codec.name) && *rate == codec.clock_rate)
        .map(|(pt, _, _)| *pt)
}

/// The peer's telephone-event payload type, when both sides want DTMF events (RFC 4733).
fn telephone_event_pt(remote: &Remote, local: &LocalMedia) -> Option<u8> {
    if !local.dtmf {
        return None;
    }
    remote
        .formats
        .iter()
        .find(|(_, n, _)| n == "telephone-event")
        .map(|(pt, _, _)| *pt)
}

/// Answers a remote offer (RFC 3264 §6): the first of our codecs the offer has, in the
/// offerer's payload numbering, telephone-event if both support it, the direction of §6.1, and
/// the offer's profile with SRTP as our policy allows ([`security`]). With several audio
/// sections, the first one we can serve is answered. Errors: [`SdpError::Malformed`],
/// [`SdpError::NoAudio`], [`SdpError::NoAddress`], [`SdpError::NoCommonCodec`] (488),
/// [`SdpError::Unspecified`], and the SRTP refusals (488): [`SdpError::SecureProfile`],
/// [`SdpError::NoCommonCrypto`], [`SdpError::SrtpRequired`], [`SdpError::InsecureKeys`].
pub fn answer(
    offer: &str,
    local: &LocalMedia,
    session_id: u64,
    version: u64,
) -> Result<(String, Negotiated), SdpError> {
    let mut first_error = None;
    for remote in parse_remote(offer)? {
        match answer_one(&remote, local, session_id, version) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SdpError::NoAudio))
}

fn answer_one(
    remote: &Remote,
    local: &LocalMedia,
    session_id: u64,
    version: u64,
) -> Result<(String, Negotiated), SdpError> {
    let (codec, pt) = local
        .codecs
        .iter()
        .find_map(|c| find(remote, c).map(|pt| (*c, pt)))
        .ok_or(SdpError::NoCommonCodec)?;
    let (security, extra) = security::answer(
        remote.profile,
        &remote.proto,
        &remote.security,
        &local.security,
    )?;
    let te = telephone_event_pt(remote, local);
    let direction = remote.direction.answer_to(local.direction);
    let text = build(
        local,
        session_id,
        version,
        &[(pt, codec.rtpmap(pt))],
        te,
        direction,
        &remote.proto,
        extra,
    )?;
    Ok((
        text,
        Negotiated {
            remote: remote.addr,
            codec,
            payload_type: pt,
            telephone_event_pt: te,
            direction,
            security,
        },
    ))
}

/// Reads the answer to our offer (RFC 3264 §7): the codec it chose (must be one we offered)
/// and the SRTP it agreed on. Errors as [`answer`]; [`SdpError::NoCommonCodec`] if it picked
/// nothing we offered; [`SdpError::SrtpRequired`] for a plain answer when SRTP is mandatory.
pub fn process_answer(answer: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let remotes = parse_remote(answer)?;
    let remote = remotes
        .iter()
        .find(|r| r.addr.port() != 0)
        .or(remotes.first())
        .ok_or(SdpError::NoAudio)?;
    let (codec, pt) = remote
        .formats
        .iter()
        .find_map(|(pt, name, rate)| {
            local
                .codecs
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name) && c.clock_rate == *rate)
                .map(|c| (*c, *pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let security = security::process_answer(remote.profile, &remote.security, &local.security)?;
    let te = telephone_event_pt(remote, local);
    let direction = remote.direction.answer_to(local.direction);
    Ok(Negotiated {
        remote: remote.addr,
        codec,
        payload_type: pt,
        telephone_event_pt: te,
        direction,
        security,
    })
}

#[cfg(test)]
mod tests;
