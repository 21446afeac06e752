//! Audio codecs behind one interface: an [`Encoder`] turns one frame of mono 16-bit PCM at the
//! codec's audio rate into an RTP payload; a [`Decoder`] turns a payload back into PCM and
//! conceals a lost frame (packet-loss concealment, PLC).
//!
//! - G.711 µ-law/A-law (ITU-T G.711, RFC 3551 §4.5.14): 8000 Hz audio, 8000 Hz RTP clock.
//! - G.722 (ITU-T G.722 64 kbit/s, RFC 3551 §4.5.2): 16000 Hz audio, 8000 Hz RTP clock.
//! - Opus (RFC 6716/7587, `opus` feature, system libopus): 48000 Hz audio and RTP clock.
//!
//! G.711 and G.722 conceal by repeating the last good frame with a fade (−6 dB per lost frame,
//! silence after [`FadeRepeat::MAX_FRAMES`]); Opus uses its own PLC.

use crate::media::{g711, g722};
use crate::sdp::AudioCodec;

/// Codec failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The codec is not built into this library (e.g. Opus without the `opus` feature) or unknown.
    #[error("codec {0} is not available")]
    Unavailable(String),
    /// The payload could not be decoded (corrupt or truncated Opus packet).
    #[error("undecodable payload: {0}")]
    Corrupt(String),
    /// The frame has a length the codec cannot encode (Opus: 2.5/5/10/20/40/60 ms only).
    #[error("bad frame length: {0} samples")]
    FrameLength(usize),
}

/// Turns PCM frames into RTP payloads.
pub trait Encoder: Send {
    /// Appends the payload for `pcm` (mono, [`audio_rate`] Hz, usually 20 ms) to `out`.
    /// Errors: [`CodecError::FrameLength`].
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// Turns RTP payloads into PCM frames.
pub trait Decoder: Send {
    /// Appends the decoded samples (mono, [`audio_rate`] Hz) of `payload` to `out`.
    /// Errors: [`CodecError::Corrupt`].
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError>;
    /// Appends `samples` samples that stand in for a lost frame (PLC) to `out`.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>);
}

/// The PCM sample rate (Hz) the codec's encoder takes and decoder gives: 8000 for G.711, 16000
/// for G.722, 48000 for Opus. Unknown codecs: their RTP clock rate.
pub fn audio_rate(codec: &AudioCodec) -> u32 {
    if codec.name.eq_ignore_ascii_case("G722") {
        16000
    } else {
        codec.clock_rate
    }
}

/// Samples per frame of `frame_ms` ms at the codec's [`audio_rate`].
pub fn frame_samples(codec: &AudioCodec, frame_ms: u32) -> usize {
    (audio_rate(codec) as usize) * (frame_ms as usize) / 1000
}

/// RTP timestamp units per frame of `frame_ms` ms (the RTP clock, not the audio rate).
pub fn frame_units(codec: &AudioCodec, frame_ms: u32) -> u32 {
    codec.clock_rate * frame_ms / 1000
}

/// Whether this build can encode and decode `codec`.
pub fn is_available(codec: &AudioCodec) -> bool {
    new_decoder(codec).is_ok()
}

/// An encoder for `codec`. Errors: [`CodecError::Unavailable`].
pub fn new_encoder(codec: &AudioCodec) -> Result<Box<dyn Encoder>, CodecError> {
    new_encoder_with(codec, None)
}

/// An encoder for `codec`, with Opus at computational complexity `complexity` (0–10; `None`:
/// 10). Other codecs have no such setting and ignore it. Errors: [`CodecError::Unavailable`]
/// (also for a complexity above 10).
pub fn new_encoder_with(
    codec: &AudioCodec,
    complexity: Option<u8>,
) -> Result<Box<dyn Encoder>, CodecError> {
    let name = codec.name;
    if name.eq_ignore_ascii_case("PCMU") {
        return Ok(Box::new(G711Encoder { alaw: false }));
    }
    if name.eq_ignore_ascii_case("PCMA") {
        return Ok(Box::new(G711Encoder { alaw: true }));
    }
    // G722-ENCODER-ARM
    if name.eq_ignore_ascii_case("G722") {
        return Ok(Box::new(g722::G722Encoder::new()));
    }
    // OPUS-ENCODER-ARM
    #[cfg(feature = "opus")]
    if name.eq_ignore_ascii_case("opus") {
        let mut enc = crate::media::opus::OpusEncoder::new()?;
        if let Some(c) = complexity {
            enc.set_complexity(c)?;
        }
        return Ok(Box::new(enc));
    }
    let _ = complexity;
    Err(CodecError::Unavailable(name.to_string()))
}

/// A decoder for `codec`. Errors: [`CodecError::Unavailable`].
pub fn new_decoder(codec: &AudioCodec) -> Result<Box<dyn Decoder>, CodecError> {
    let name = codec.name;
    if name.eq_ignore_ascii_case("PCMU") {
        return Ok(Box::new(G711Decoder {
            alaw: false,
            plc: FadeRepeat::default(),
        }));
    }
    if name.eq_ignore_ascii_case("PCMA") {
        return Ok(Box::new(G711Decoder {
            alaw: true,
            plc: FadeRepeat::default(),
        }));
    }
    // G722-DECODER-ARM
    if name.eq_ignore_ascii_case("G722") {
        return Ok(Box::new(g722::G722Decoder::new()));
    }
    // OPUS-DECODER-ARM
    #[cfg(feature = "opus")]
    if name.eq_ignore_ascii_case("opus") {
        return Ok(Box::new(crate::media::opus::OpusDecoder::new()?));
    }
    Err(CodecError::Unavailable(name.to_string()))
}

struct G711Encoder {
    alaw: bool,
}

impl Encoder for G711Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if self.alaw {
            g711::encode_alaw(pcm, out);
        } else {
            g711::encode_ulaw(pcm, out);
        }
        Ok(())
    }
}

struct G711Decoder {
    alaw: bool,
    plc: FadeRepeat,
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        if self.alaw {
            g711::decode_alaw(payload, out);
        } else {
            g711::decode_ulaw(payload, out);
        }
        self.plc.remember(&out[start..]);
        Ok(())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.plc.conceal(samples, out);
    }
}

/// Waveform-substitution PLC for codecs without their own: repeats the last good frame, each
/// repetition 6 dB quieter, then silence. Resets on the next good frame.
#[derive(Debug, Default, Clone)]
pub struct FadeRepeat {
    last: Vec<i16>,
    lost_run: u32,
}

impl FadeRepeat {
    /// Consecutive lost frames concealed by repetition before it goes silent.
    pub const MAX_FRAMES: u32 = 3;

    /// Records a correctly decoded frame.
    pub fn remember(&mut self, frame: &[i16]) {
        self.last.clear();
        self.last.extend_from_slice(frame);
        self.lost_run = 0;
    }

    /// Appends `samples` concealment samples to `out`.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        self.lost_run = self.lost_run.saturating_add(1);
        if self.last.is_empty() || self.lost_run > Self::MAX_FRAMES {
            out.resize(out.len() + samples, 0);
            return;
        }
        let shift = self.lost_run; // −6 dB per lost frame
        // Fade within the frame too, so consecutive repeats do not click at the boundary.
        let n = samples.max(1) as i32;
        for i in 0..samples {
            let s = self.last[i % self.last.len()] >> shift;
            let ramp = (n - i as i32 / 2) as i64;
            out.push(((s as i64 * ramp) / n as i64) as i16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{ToneGenerator, tone_energy_fraction};

    /// Every codec this build has, with the sample rate it runs at.
    fn built_codecs() -> Vec<AudioCodec> {
        let mut codecs = vec![AudioCodec::PCMU, AudioCodec::PCMA, AudioCodec::G722];
        if cfg!(feature = "opus") {
            codecs.push(AudioCodec::OPUS);
        }
        codecs
    }

    /// Encodes and decodes 50 frames of 20 ms (one second) of a `freq` Hz tone through the
    /// factories; gives the decoded audio and the payload sizes.
    fn round_trip(codec: &AudioCodec, freq: f64) -> (Vec<i16>, Vec<usize>) {
        let rate = audio_rate(codec);
        let n = frame_samples(codec, 20);
        let mut enc = new_encoder(codec).unwrap();
        let mut dec = new_decoder(codec).unwrap();
        let mut tone = ToneGenerator::new(freq, rate, 8000);
        let mut pcm = vec![0i16; n];
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..50 {
            tone.fill(&mut pcm);
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            sizes.push(payload.len());
            dec.decode(&payload, &mut out).unwrap();
        }
        (out, sizes)
    }

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|&x| f64::from(x).powi(2)).sum()
    }

    #[test]
    fn every_codec_keeps_440_and_1000_hz_tones() {
        for codec in built_codecs() {
            let rate = audio_rate(&codec);
            let frame = frame_samples(&codec, 20);
            for (freq, other) in [(440.0, 1000.0), (1000.0, 440.0)] {
                let (out, sizes) = round_trip(&codec, freq);
                assert_eq!(out.len(), 50 * frame, "{}", codec.name);
                // Skip the first 20 ms: QMF delay, ADPCM adaptation, the Opus lookahead.
                let settled = &out[frame..];
                let kept = tone_energy_fraction(settled, freq, rate);
                assert!(kept >= 0.9, "{} {freq} Hz: {kept}", codec.name);
                let leak = tone_energy_fraction(settled, other, rate);
                assert!(
                    leak < 0.01,
                    "{} {freq} Hz leaks {leak} at {other} Hz",
                    codec.name
                );
                // Level kept within ±3 dB (an 8000-peak sine has an rms of about 5657).
                let rms = (energy(settled) / settled.len() as f64).sqrt();
                assert!(
                    (4000.0..8000.0).contains(&rms),
                    "{} {freq} Hz rms {rms}",
                    codec.name
                );
                match codec.name {
                    // 64 kbit/s: one byte per 8 kHz sample (G.711) or per 16 kHz pair (G.722).
                    "PCMU" | "PCMA" | "G722" => assert!(sizes.iter().all(|&b| b == 160)),
                    // VBR around 32 kbit/s, i.e. about 80 bytes per 20 ms.
                    _ => assert!(sizes.iter().all(|&b| (10..=400).contains(&b)), "{sizes:?}"),
                }
            }
        }
    }

    #[test]
    fn rates_and_timestamps_per_codec() {
        let g722 = AudioCodec::G722;
        assert_eq!(audio_rate(&g722), 16000);
        assert_eq!(frame_samples(&g722, 20), 320);
        assert_eq!(frame_units(&g722, 20), 160);
        assert_eq!(frame_samples(&AudioCodec::PCMU, 20), 160);
        assert_eq!(frame_units(&AudioCodec::PCMA, 20), 160);
        assert_eq!(frame_samples(&AudioCodec::OPUS, 20), 960);
        assert_eq!(frame_units(&AudioCodec::OPUS, 20), 960);
        let upper = AudioCodec {
            name: "g722",
            ..g722
        };
        assert!(is_available(&upper));
        assert_eq!(audio_rate(&upper), 16000);
    }

    #[test]
    fn opus_is_there_exactly_with_its_feature() {
        assert_eq!(is_available(&AudioCodec::OPUS), cfg!(feature = "opus"));
        if !cfg!(feature = "opus") {
            assert!(matches!(
                new_encoder(&AudioCodec::OPUS),
                Err(CodecError::Unavailable(_))
            ));
            assert!(matches!(
                new_decoder(&AudioCodec::OPUS),
                Err(CodecError::Unavailable(_))
            ));
        }
    }

    #[test]
    fn every_codec_conceals_the_asked_length_and_fades() {
        for codec in built_codecs() {
            let rate = audio_rate(&codec);
            let frame = frame_samples(&codec, 20);
            let mut enc = new_encoder(&codec).unwrap();
            let mut dec = new_decoder(&codec).unwrap();
            // Before any good frame: silence of the asked length.
            let mut fresh = Vec::new();
            dec.conceal(frame, &mut fresh);
            assert_eq!(fresh.len(), frame, "{}", codec.name);
            assert!(fresh.iter().all(|&s| s == 0), "{}", codec.name);

            let mut tone = ToneGenerator::new(440.0, rate, 8000);
            let mut pcm = vec![0i16; frame];
            let mut last = Vec::new();
            for _ in 0..25 {
                tone.fill(&mut pcm);
                let mut payload = Vec::new();
                enc.encode(&pcm, &mut payload).unwrap();
                last.clear();
                dec.decode(&payload, &mut last).unwrap();
            }
            let good = energy(&last);
            let mut lost = Vec::new();
            for _ in 0..8 {
                let mut one = Vec::new();
                dec.conceal(frame, &mut one);
                assert_eq!(one.len(), frame, "{}", codec.name);
                lost.push(energy(&one));
            }
            // The first concealed frame still carries the tone, below the good level.
            assert!(
                lost[0] > 0.0 && lost[0] < good * 1.1,
                "{}: {lost:?} vs {good}",
                codec.name
            );
            // Eight lost frames (160 ms) later the sound has faded far down.
            assert!(lost[7] < lost[0] / 4.0, "{}: {lost:?}", codec.name);
            if codec.name != "opus" {
                // FadeRepeat: −6 dB per frame, then silence.
                for w in lost.windows(2).take(FadeRepeat::MAX_FRAMES as usize - 1) {
                    assert!(w[1] < w[0], "{}: {lost:?}", codec.name);
                }
                assert!(
                    lost[FadeRepeat::MAX_FRAMES as usize..]
                        .iter()
                        .all(|&e| e == 0.0)
                );
            }
            // Odd lengths are honoured exactly.
            for n in [0, 1, 77, frame + 1, 3 * frame] {
                let mut out = vec![7i16; 3];
                dec.conceal(n, &mut out);
                assert_eq!(out.len(), 3 + n, "{} conceal({n})", codec.name);
            }
            // A good frame after the loss decodes normally again.
            tone.fill(&mut pcm);
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            let mut back = Vec::new();
            dec.decode(&payload, &mut back).unwrap();
            assert_eq!(back.len(), frame, "{}", codec.name);
        }
    }

    #[test]
    fn fade_repeat_fades_then_goes_silent() {
        let mut plc = FadeRepeat::default();
        plc.remember(&[1000; 160]);
        let mut out = Vec::new();
        for _ in 0..FadeRepeat::MAX_FRAMES + 1 {
            plc.conceal(160, &mut out);
        }
        assert_eq!(out.len(), 160 * 4);
        assert!(out[0] > 0 && out[0] <= 500);
        assert!(out[160] < out[0]);
        assert!(out[480..].iter().all(|&s| s == 0));
        plc.remember(&[10; 160]);
        let mut again = Vec::new();
        plc.conceal(160, &mut again);
        assert!(again[0] > 0);
    }

    #[test]
    fn unknown_codec_is_unavailable() {
        let c = AudioCodec {
            name: "iLBC",
            payload_type: 97,
            clock_rate: 8000,
            channels: 1,
        };
        assert!(matches!(new_encoder(&c), Err(CodecError::Unavailable(_))));
        assert!(!is_available(&c));
    }
}
