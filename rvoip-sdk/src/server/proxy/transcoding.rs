//! What the anchor does with the callee's answer to a widened offer (see
//! `RelayAnchor::with_transcoding`): forward as it is when the callee picked a codec the caller
//! offered, else transcode; and the formats each party must see from then on, so that every
//! later offer or answer (re-INVITE, UPDATE) reaches each party in its own codec.

use crate::media::relay::TranscodeSpec;
use crate::server::relay::codecs::{Format, spec_of};

/// The decision for one stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
    /// The callee's first codec is one the caller offered: plain forwarding. The answer reaches
    /// the caller with only the formats it offered (`formats`: the widened-only ones removed).
    Forward {
        /// The answer's formats the caller offered.
        formats: Vec<Format>,
    },
    /// Transcoding between `specs` (caller's, callee's); `formats[i]` is what party `i` must
    /// see in every SDP it receives from now on.
    Transcode {
        /// The caller's and the callee's codecs and payload types.
        specs: [TranscodeSpec; 2],
        /// The formats the caller and the callee must see.
        formats: [Vec<Format>; 2],
    },
    /// The answer cannot be transcoded (why): it passes as it is.
    Refuse(&'static str),
}

/// Decides for one stream from the caller's formats (`offered`), the formats the widened
/// offer added (`added`) and the callee's answer (`answer`). `None` when the answer has no
/// codec.
pub(super) fn decide(offered: &[Format], added: &[Format], answer: &[Format]) -> Option<Decision> {
    let chosen = answer.iter().find(|f| !f.is_telephone_event())?;
    if offered.iter().any(|f| f.same_codec(chosen)) {
        let formats = answer
            .iter()
            .filter(|a| offered.iter().any(|o| o.same_codec(a) && o.pt == a.pt))
            .cloned()
            .collect();
        return Some(Decision::Forward { formats });
    }
    // RFC 3264 §6.1: the answer should keep the offer's numbering. The relay's session for the
    // callee sends and receives on one payload type, so a renumbered answer is not transcoded.
    match added.iter().find(|f| f.same_codec(chosen)) {
        Some(ours) if ours.pt == chosen.pt => {}
        Some(_) => return Some(Decision::Refuse("the answer renumbered the codec")),
        None => return Some(Decision::Refuse("the answer picked a codec nobody offered")),
    }
    let Some(caller) = spec_of(offered) else {
        return Some(Decision::Refuse("no caller codec the relay converts"));
    };
    let Some(mut callee) = spec_of(std::slice::from_ref(chosen)) else {
        return Some(Decision::Refuse(
            "the callee's codec is not one the relay converts",
        ));
    };
    let answer_te = answer.iter().find(|f| f.is_telephone_event());
    let offer_te = offered.iter().find(|f| f.is_telephone_event());
    // telephone-events cross only when both parties have them, on the same numbering.
    let te = match (offer_te, answer_te) {
        (Some(o), Some(a)) if o.pt == a.pt => Some(a.clone()),
        _ => None,
    };
    callee.telephone_event = te.as_ref().map(|f| f.pt);
    let mut caller_formats: Vec<Format> = offered
        .iter()
        .filter(|f| f.pt == caller.payload_type)
        .cloned()
        .collect();
    let mut callee_formats = vec![chosen.clone()];
    let caller_spec = TranscodeSpec {
        telephone_event: te.as_ref().and(caller.telephone_event),
        ..caller
    };
    if let Some(te) = te {
        caller_formats.extend(offer_te.cloned());
        callee_formats.push(te);
    }
    Some(Decision::Transcode {
        specs: [caller_spec, callee],
        formats: [caller_formats, callee_formats],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::AudioCodec;

    fn f(pt: u8, name: &str, rate: u32) -> Format {
        Format {
            pt,
            name: name.into(),
            clock_rate: rate,
            params: None,
            fmtp: None,
        }
    }

    #[test]
    fn decisions() {
        let offered = [f(0, "PCMU", 8000), f(101, "telephone-event", 8000)];
        let added = [f(8, "PCMA", 8000), f(9, "G722", 8000)];
        // A shared codec first: forward, the widened-only formats trimmed.
        let d = decide(&offered, &added, &[f(0, "PCMU", 8000), f(9, "G722", 8000)]);
        assert_eq!(
            d,
            Some(Decision::Forward {
                formats: vec![f(0, "PCMU", 8000)]
            })
        );
        // An added codec: transcode, each party in its own formats, events on both.
        let d = decide(
            &offered,
            &added,
            &[f(9, "G722", 8000), f(101, "telephone-event", 8000)],
        );
        let Some(Decision::Transcode { specs, formats }) = d else {
            panic!("{d:?}");
        };
        assert_eq!(
            (specs[0].codec, specs[0].payload_type),
            (AudioCodec::PCMU, 0)
        );
        assert_eq!(
            (specs[1].codec, specs[1].payload_type),
            (AudioCodec::G722, 9)
        );
        assert_eq!(specs[0].telephone_event, Some(101));
        assert_eq!(specs[1].telephone_event, Some(101));
        assert_eq!(formats[0], offered.to_vec());
        assert_eq!(
            formats[1],
            vec![f(9, "G722", 8000), f(101, "telephone-event", 8000)]
        );
        // Renumbered: refused. Without events on the callee's side: none on either.
        assert!(matches!(
            decide(&offered, &added, &[f(100, "G722", 8000)]),
            Some(Decision::Refuse(_))
        ));
        let Some(Decision::Transcode { specs, formats }) =
            decide(&offered, &added, &[f(8, "PCMA", 8000)])
        else {
            panic!()
        };
        assert_eq!(
            (specs[0].telephone_event, specs[1].telephone_event),
            (None, None)
        );
        assert_eq!(formats[0], vec![f(0, "PCMU", 8000)]);
        assert_eq!(
            decide(&offered, &added, &[f(101, "telephone-event", 8000)]),
            None
        );
    }
}
