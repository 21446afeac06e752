//! The payload formats of anchored streams, for transcoding (RFC 3264 §5.1, §6.1; RFC 4566
//! `a=rtpmap`/`a=fmtp`; RFC 3551 static payload types): read an `m=` line's formats, widen an
//! offer with the codecs the relay can convert (PCMU, PCMA, G.722, and Opus when built), and
//! write an answer's formats back in the caller's numbering.

use rtc_sdp::description::common::Attribute;

use super::sdp::Sdp;
use crate::media::codec;
use crate::media::relay::TranscodeSpec;
use crate::sdp::AudioCodec;

/// One payload format of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// The payload type (0..=127).
    pub pt: u8,
    /// The encoding name (`PCMU`, `opus`, `telephone-event`…); empty for an unknown dynamic
    /// type without `a=rtpmap`.
    pub name: String,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The `a=rtpmap` encoding parameters (channels), if written.
    pub params: Option<String>,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

impl Format {
    /// The codec the relay can encode and decode for this format, if any (name and clock rate
    /// as in RFC 3551 / RFC 7587; Opus only when built with the `opus` feature).
    pub fn codec(&self) -> Option<AudioCodec> {
        transcodable()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(&self.name) && c.clock_rate == self.clock_rate)
    }

    /// Whether this is RFC 4733 `telephone-event`.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Whether `other` is the same codec (name and clock rate), whatever its payload type.
    pub fn same_codec(&self, other: &Format) -> bool {
        self.name.eq_ignore_ascii_case(&other.name) && self.clock_rate == other.clock_rate
    }

    fn of(codec: AudioCodec, pt: u8) -> Format {
        Format {
            pt,
            name: codec.name.to_string(),
            clock_rate: codec.clock_rate,
            params: (codec.channels > 1).then(|| codec.channels.to_string()),
            fmtp: None,
        }
    }

    fn rtpmap(&self) -> String {
        match &self.params {
            Some(p) => format!("{} {}/{}/{p}", self.pt, self.name, self.clock_rate),
            None => format!("{} {}/{}", self.pt, self.name, self.clock_rate),
        }
    }
}

/// The codecs the relay converts between: PCMU, PCMA, G.722 and (feature `opus`) Opus.
pub fn transcodable() -> Vec<AudioCodec> {
    [
        AudioCodec::PCMU,
        AudioCodec::PCMA,
        AudioCodec::G722,
        AudioCodec::OPUS,
    ]
    .into_iter()
    .filter(codec::is_available)
    .collect()
}

/// The static audio payload types of RFC 3551 table 4: name, clock rate, channels (when not 1).
fn static_format(pt: u8) -> Option<(&'static str, u32, Option<&'static str>)> {
    Some(match pt {
        0 => ("PCMU", 8000, None),
        3 => ("GSM", 8000, None),
        4 => ("G723", 8000, None),
        5 => ("DVI4", 8000, None),
        6 => ("DVI4", 16000, None),
        7 => ("LPC", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        10 => ("L16", 44100, Some("2")),
        11 => ("L16", 44100, None),
        12 => ("QCELP", 8000, None),
        13 => ("CN", 8000, None),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, None),
        16 => ("DVI4", 11025, None),
        17 => ("DVI4", 22050, None),
        18 => ("G729", 8000, None),
        _ => return None,
    })
}

/// What the transcoder needs for one party, from its formats: the first codec the relay can
/// convert (in the party's preference order) and its telephone-event type. `None` when the
/// party has no such codec.
pub fn spec_of(formats: &[Format]) -> Option<TranscodeSpec> {
    let (f, codec) = formats.iter().find_map(|f| f.codec().map(|c| (f, c)))?;
    Some(TranscodeSpec {
        codec,
        payload_type: f.pt,
        telephone_event: formats
            .iter()
            .find(|f| f.is_telephone_event() && f.clock_rate == codec.clock_rate)
            .or_else(|| formats.iter().find(|f| f.is_telephone_event()))
            .map(|f| f.pt),
        ptime_ms: 20,
    })
}

impl Sdp {
    /// The payload formats of `m=` line `index`, in its order, with their `a=rtpmap` and
    /// `a=fmtp` values (static types without rtpmap per RFC 3551). Empty for a missing index
    /// or a non-RTP line; tokens that are not payload types are skipped.
    pub fn formats(&self, index: usize) -> Vec<Format> {
        let Some(m) = self.sd.media_descriptions.get(index) else {
            return Vec::new();
        };
        let attr = |key: &str, pt: u8| {
            m.attributes
                .iter()
                .filter(|a| a.key == key)
                .filter_map(|a| a.value.as_deref())
                .find_map(|v| {
                    let (p, rest) = v.split_once(' ')?;
                    (p.parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
                })
        };
        m.media_name
            .formats
            .iter()
            .filter_map(|t| t.parse::<u8>().ok().filter(|pt| *pt < 128))
            .map(|pt| {
                let (name, clock_rate, params) = match attr("rtpmap", pt) {
                    Some(map) => {
                        let mut it = map.split('/');
                        let name = it.next().unwrap_or_default().to_string();
                        let rate = it.next().and_then(|r| r.parse().ok()).unwrap_or(8000);
                        (name, rate, it.next().map(str::to_string))
                    }
                    None => match static_format(pt) {
                        Some((n, r, c)) => (n.to_string(), r, c.map(str::to_string)),
                        None => (String::new(), 8000, None),
                    },
                };
                Format {
                    pt,
                    name,
                    clock_rate,
                    params,
                    fmtp: attr("fmtp", pt),
                }
            })
            .collect()
    }

    /// Whether `m=` line `index` is an audio stream.
    pub fn is_audio(&self, index: usize) -> bool {
        self.sd
            .media_descriptions
            .get(index)
            .is_some_and(|m| m.media_name.media.eq_ignore_ascii_case("audio"))
    }

    /// Replaces the formats of `m=` line `index` with `formats`: the `m=` list, and one
    /// `a=rtpmap` (and `a=fmtp` when given) per format where the old ones stood; a format
    /// with no known name (a dynamic type the SDP did not map) gets no `a=rtpmap`. Other
    /// attributes (direction, ptime, crypto, rtcp) stay.
    pub fn set_formats(&mut self, index: usize, formats: &[Format]) {
        let Some(m) = self.sd.media_descriptions.get_mut(index) else {
            return;
        };
        let at = m
            .attributes
            .iter()
            .position(|a| a.key == "rtpmap" || a.key == "fmtp")
            .unwrap_or(0);
        m.attributes
            .retain(|a| a.key != "rtpmap" && a.key != "fmtp");
        let at = at.min(m.attributes.len());
        let mut new = Vec::with_capacity(formats.len() * 2);
        for f in formats {
            if !f.name.is_empty() {
                new.push(Attribute {
                    key: "rtpmap".into(),
                    value: Some(f.rtpmap()),
                });
            }
            if let Some(p) = &f.fmtp {
                new.push(Attribute {
                    key: "fmtp".into(),
                    value: Some(format!("{} {p}", f.pt)),
                });
            }
        }
        m.attributes.splice(at..at, new);
        m.media_name.formats = formats.iter().map(|f| f.pt.to_string()).collect();
    }

    /// Appends to `m=` line `index` every codec the relay can convert that the line lacks
    /// (compared by name and clock rate), after the party's own formats so that its order of
    /// preference stands: each with its RFC 3551 static type when free, else the first free
    /// dynamic type (96–127). Returns the formats added (none when the line has no codec the
    /// relay can decode: then there is nothing to convert from).
    pub fn widen(&mut self, index: usize) -> Vec<Format> {
        let mut formats = self.formats(index);
        if !formats.iter().any(|f| f.codec().is_some()) {
            return Vec::new();
        }
        let mut added = Vec::new();
        for c in transcodable() {
            if formats.iter().any(|f| f.codec() == Some(c)) {
                continue;
            }
            let used = |pt: u8| formats.iter().any(|f| f.pt == pt);
            let pt = if c.payload_type < 96 && !used(c.payload_type) {
                Some(c.payload_type)
            } else {
                (96..=127u8).find(|&pt| !used(pt))
            };
            let Some(pt) = pt else {
                break; // every dynamic type taken
            };
            let f = Format::of(c, pt);
            formats.push(f.clone());
            added.push(f);
        }
        if !added.is_empty() {
            self.set_formats(index, &formats);
        }
        added
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCMU_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
        a=ptime:20\r\na=sendrecv\r\n";

    #[test]
    fn formats_are_read_with_static_types_rtpmap_and_fmtp() {
        let sdp = Sdp::parse(PCMU_ONLY.as_bytes()).unwrap();
        let f = sdp.formats(0);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].pt, f[0].name.as_str(), f[0].clock_rate),
            (0, "PCMU", 8000)
        );
        assert_eq!(f[0].codec(), Some(AudioCodec::PCMU));
        assert!(f[1].is_telephone_event());
        assert_eq!(f[1].fmtp.as_deref(), Some("0-16"));
        let spec = spec_of(&f).unwrap();
        assert_eq!((spec.payload_type, spec.telephone_event), (0, Some(101)));
        assert!(sdp.formats(7).is_empty());
    }

    #[test]
    fn widening_appends_the_convertible_codecs_after_the_party_s_own() {
        let mut sdp = Sdp::parse(PCMU_ONLY.as_bytes()).unwrap();
        let added = sdp.widen(0);
        let names: Vec<_> = added.iter().map(|f| f.name.as_str()).collect();
        let mut want = vec!["PCMA", "G722"];
        if codec::is_available(&AudioCodec::OPUS) {
            want.push("opus");
        }
        assert_eq!(names, want);
        let text = sdp.rewrite("192.0.2.1".parse().unwrap(), &[(0, 30000)], None);
        let m = text.lines().find(|l| l.starts_with("m=audio")).unwrap();
        let expect = if want.len() == 3 {
            "m=audio 30000 RTP/AVP 0 101 8 9 96"
        } else {
            "m=audio 30000 RTP/AVP 0 101 8 9"
        };
        assert_eq!(m, expect, "{text}");
        for keep in [
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
            "a=rtpmap:8 PCMA/8000",
        ] {
            assert!(text.contains(keep), "{keep} missing: {text}");
        }
        if want.len() == 3 {
            assert!(text.contains("a=rtpmap:96 opus/48000/2"), "{text}");
        }
        // Back to the caller's own formats (an answer in its numbering).
        let mut back = Sdp::parse(text.as_bytes()).unwrap();
        let first_two: Vec<Format> = back.formats(0).into_iter().take(2).collect();
        back.set_formats(0, &first_two);
        let text = back.rewrite("192.0.2.1".parse().unwrap(), &[], None);
        assert!(text.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(!text.contains("PCMA") && !text.contains("opus"), "{text}");
    }

    #[test]
    fn static_types_without_rtpmap_keep_their_names_and_unknown_ones_get_none() {
        // CN (13) is in most phones' offers, with no rtpmap; 98 is a dynamic type left unmapped.
        let cn = PCMU_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 0 101 13 98");
        let mut sdp = Sdp::parse(cn.as_bytes()).unwrap();
        let f = sdp.formats(0);
        assert_eq!((f[2].name.as_str(), f[2].clock_rate), ("CN", 8000));
        assert!(f[3].name.is_empty());
        assert!(!sdp.widen(0).is_empty());
        let text = sdp.rewrite("192.0.2.1".parse().unwrap(), &[], None);
        assert!(text.contains("a=rtpmap:13 CN/8000"), "{text}");
        assert!(
            !text.contains("a=rtpmap:98") && !text.contains(" /8000"),
            "{text}"
        );
        assert!(text.contains(" 0 101 13 98 8 9"), "{text}");
    }

    #[test]
    fn nothing_is_added_to_a_line_without_a_codec_to_convert_from() {
        let g729 = PCMU_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 18 101");
        let mut sdp = Sdp::parse(g729.as_bytes()).unwrap();
        assert!(sdp.widen(0).is_empty());
    }
}
