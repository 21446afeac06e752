//! Session descriptions edited as structures (RFC 4566 via `rtc-sdp`) for media anchoring:
//! read each RTP stream's address, RTCP address (RFC 3605 `a=rtcp`) and rtcp-mux (RFC 5761);
//! write the relay's address and ports into `c=`, `m=`, `a=rtcp` and `o=`, and drop ICE
//! candidates (RFC 8445) that would let the parties bypass the relay. Directions
//! (`a=sendonly`…) and security attributes (`a=crypto`, `a=fingerprint`) pass untouched.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use rtc_sdp::SessionDescription;
use rtc_sdp::description::common::{Address, ConnectionInformation};

/// One RTP stream (`m=` line) of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Index of the `m=` line.
    pub index: usize,
    /// Where the party receives RTP (connection address and `m=` port).
    pub rtp: SocketAddr,
    /// Where it receives RTCP, when `a=rtcp` says so (else RTP port + 1, RFC 3550 §11).
    pub rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// The clock rate of the first payload format, in Hz (8000 when unknown).
    pub clock_rate: u32,
    /// The transport protocol of the `m=` line (RFC 4566 §5.14), e.g. `RTP/AVP`, `RTP/SAVP`,
    /// `UDP/TLS/RTP/SAVPF`.
    pub proto: String,
    /// SRTP (RFC 3711): a secure profile (`RTP/SAVP`, `UDP/TLS/RTP/SAVP`…) or SDES/DTLS
    /// attributes. The relay then never rewrites a byte of the stream (the tag covers it).
    pub secure: bool,
}

/// A parsed SDP body and its RTP streams.
#[derive(Debug)]
pub struct Sdp {
    pub(super) sd: SessionDescription,
    /// The RTP streams with a non-zero port.
    pub streams: Vec<Stream>,
}

/// Ice attributes removed from anchored streams.
const ICE_ATTRIBUTES: [&str; 7] = [
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
];

fn address_of(c: Option<&ConnectionInformation>) -> Option<IpAddr> {
    c.and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.split('/').next())
        .and_then(|a| a.parse().ok())
}

impl Sdp {
    /// Parses `body`. Errors: the text of the parser's error (not SDP, or not UTF-8).
    pub fn parse(body: &[u8]) -> Result<Sdp, String> {
        let sd =
            SessionDescription::unmarshal(&mut Cursor::new(body)).map_err(|e| e.to_string())?;
        let session_addr = address_of(sd.connection_information.as_ref());
        let mut streams = Vec::new();
        for (index, m) in sd.media_descriptions.iter().enumerate() {
            let rtp_profile = m.media_name.protos.iter().any(|p| p == "RTP");
            let Ok(port) = u16::try_from(m.media_name.port.value) else {
                continue;
            };
            if !rtp_profile || port == 0 {
                continue;
            }
            let Some(ip) = address_of(m.connection_information.as_ref()).or(session_addr) else {
                continue;
            };
            let rtcp = m
                .attributes
                .iter()
                .find(|a| a.key == "rtcp")
                .and_then(|a| a.value.as_deref())
                .and_then(|v| {
                    let mut it = v.split_whitespace();
                    let p: u16 = it.next()?.parse().ok()?;
                    let addr = match (it.next(), it.next(), it.next()) {
                        (Some(_), Some(_), Some(a)) => a.parse().ok()?,
                        _ => ip,
                    };
                    Some(SocketAddr::new(addr, p))
                });
            let clock_rate = m
                .media_name
                .formats
                .first()
                .and_then(|f| f.parse::<u8>().ok())
                .and_then(|pt| {
                    m.attributes
                        .iter()
                        .filter(|a| a.key == "rtpmap")
                        .filter_map(|a| a.value.as_deref())
                        .find(|v| v.split_whitespace().next() == Some(&pt.to_string()))
                        .and_then(|v| v.split_whitespace().nth(1))
                        .and_then(|enc| enc.split('/').nth(1))
                        .and_then(|r| r.parse().ok())
                        .or(match pt {
                            0 | 8 | 9 | 18 => Some(8000),
                            _ => None,
                        })
                })
                .unwrap_or(8000);
            streams.push(Stream {
                index,
                rtp: SocketAddr::new(ip, port),
                rtcp,
                rtcp_mux: m.attributes.iter().any(|a| a.key == "rtcp-mux"),
                clock_rate,
                proto: m.media_name.protos.join("/"),
                secure: m.media_name.protos.iter().any(|p| p.contains("SAVP"))
                    || m.attributes
                        .iter()
                        .any(|a| a.key == "crypto" || a.key == "fingerprint")
                    || sd.attributes.iter().any(|a| a.key == "fingerprint"),
            });
        }
        Ok(Sdp { sd, streams })
    }

    /// The `o=` session version (RFC 4566 §5.2).
    pub fn version(&self) -> u64 {
        self.sd.origin.session_version
    }

    /// Writes the relay's `ip` and ports into the description: every `c=` line, the `m=` port of
    /// each listed stream (`(m-line index, RTP port)`, RTCP on port + 1 in `a=rtcp`), the `o=`
    /// address and `version`; removes ICE attributes. Returns the new body.
    pub fn anchor(self, ip: IpAddr, ports: &[(usize, u16)], version: u64) -> String {
        self.rewrite(ip, ports, Some(version))
    }

    /// As [`Sdp::anchor`], with the `o=` line replaced (address and `version`) only when
    /// `origin_version` is given, else left as the party wrote it (rtpengine without its
    /// `replace-origin` flag).
    pub fn rewrite(
        mut self,
        ip: IpAddr,
        ports: &[(usize, u16)],
        origin_version: Option<u64>,
    ) -> String {
        let addr_type = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let conn = || ConnectionInformation {
            network_type: "IN".into(),
            address_type: addr_type.into(),
            address: Some(Address {
                address: ip.to_string(),
                ttl: None,
                range: None,
            }),
        };
        if let Some(version) = origin_version {
            self.sd.origin.unicast_address = ip.to_string();
            self.sd.origin.address_type = addr_type.into();
            self.sd.origin.session_version = version;
        }
        if self.sd.connection_information.is_some() {
            self.sd.connection_information = Some(conn());
        }
        self.sd
            .attributes
            .retain(|a| !ICE_ATTRIBUTES.contains(&a.key.as_str()));
        for &(index, port) in ports {
            let Some(m) = self.sd.media_descriptions.get_mut(index) else {
                continue;
            };
            m.media_name.port.value = isize::try_from(port).unwrap_or(0);
            m.media_name.port.range = None;
            if m.connection_information.is_some() || self.sd.connection_information.is_none() {
                m.connection_information = Some(conn());
            }
            m.attributes
                .retain(|a| !ICE_ATTRIBUTES.contains(&a.key.as_str()));
            for a in m.attributes.iter_mut().filter(|a| a.key == "rtcp") {
                a.value = Some(format!("{} IN {addr_type} {ip}", port.saturating_add(1)));
            }
        }
        self.sd.marshal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 100 7 IN IP4 10.0.1.2\r\ns=-\r\nc=IN IP4 10.0.1.2\r\nt=0 0\r\n\
        a=ice-lite\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=rtcp:4001 IN IP4 10.0.1.2\r\na=sendonly\r\na=candidate:1 1 UDP 2130706431 10.0.1.2 4000 typ host\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
        m=video 0 RTP/AVP 96\r\nm=audio 5000 RTP/AVP 111\r\nc=IN IP4 10.0.1.3\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n";

    #[test]
    fn streams_are_read_with_their_rtcp_and_clock() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.version(), 7);
        assert_eq!(
            sdp.streams,
            vec![
                Stream {
                    index: 0,
                    rtp: "10.0.1.2:4000".parse().unwrap(),
                    rtcp: Some("10.0.1.2:4001".parse().unwrap()),
                    rtcp_mux: false,
                    clock_rate: 8000,
                    proto: "RTP/AVP".into(),
                    // Best-effort SDES (a=crypto in RTP/AVP) is SRTP too.
                    secure: true,
                },
                Stream {
                    index: 2,
                    rtp: "10.0.1.3:5000".parse().unwrap(),
                    rtcp: None,
                    rtcp_mux: true,
                    clock_rate: 48000,
                    proto: "RTP/AVP".into(),
                    secure: false,
                },
            ]
        );
        assert!(
            Sdp::parse(b"not sdp").is_err() || Sdp::parse(b"not sdp").unwrap().streams.is_empty()
        );
    }

    #[test]
    fn anchoring_rewrites_addresses_ports_rtcp_and_origin_only() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        let out = sdp.anchor(
            "198.51.100.7".parse().unwrap(),
            &[(0, 30000), (2, 30004)],
            8,
        );
        assert!(out.contains("o=alice 100 8 IN IP4 198.51.100.7"), "{out}");
        assert!(out.contains("c=IN IP4 198.51.100.7\r\n"), "{out}");
        assert!(!out.contains("10.0.1."), "private address left: {out}");
        assert!(out.contains("m=audio 30000 RTP/AVP 8 101"), "{out}");
        assert!(out.contains("a=rtcp:30001 IN IP4 198.51.100.7"), "{out}");
        assert!(out.contains("m=audio 30004 RTP/AVP 111"), "{out}");
        assert!(out.contains("m=video 0 RTP/AVP 96"), "{out}");
        // Untouched: direction, crypto, rtcp-mux, codecs.
        for keep in [
            "a=sendonly",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
        ] {
            assert!(out.contains(keep), "{keep} lost: {out}");
        }
        // ICE removed (it would let the parties bypass the relay).
        assert!(
            !out.contains("candidate") && !out.contains("ice-lite"),
            "{out}"
        );
        // It parses back.
        let back = Sdp::parse(out.as_bytes()).unwrap();
        assert_eq!(
            back.streams[0].rtp,
            "198.51.100.7:30000"
                .parse::<std::net::SocketAddr>()
                .unwrap()
        );
    }
}
