//! Opus (RFC 6716) through the system libopus (`audiopus`), packetised per RFC 7587.
//!
//! Audio is mono 16-bit PCM at 48000 Hz, usually in 20 ms frames of [`FRAME_SAMPLES`] samples;
//! the RTP clock is 48000 Hz too. RFC 7587 §7 makes the SDP say `opus/48000/2` whatever is sent;
//! we encode mono, and the decoder downmixes any stereo packet a peer sends to mono.
//!
//! The encoder runs libopus in VoIP mode at [`OpusEncoder::DEFAULT_BITRATE`] with in-band FEC on
//! (tuned for [`EXPECTED_LOSS_PERCENT`] loss) and DTX off. The decoder conceals a lost frame with
//! Opus's own PLC, and can rebuild it from the FEC data of the next packet
//! ([`OpusDecoder::recover`]).

use audiopus::coder::{Decoder as LibDecoder, Encoder as LibEncoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};

use crate::media::codec::{CodecError, Decoder, Encoder};

/// Audio sample rate and RTP clock rate of Opus (RFC 7587 §4.1): 48000 Hz.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms frame at 48 kHz: 960.
pub const FRAME_SAMPLES: usize = 960;

/// Samples in the longest Opus packet, 120 ms at 48 kHz (RFC 6716 §3.2.5): 5760.
pub const MAX_FRAME_SAMPLES: usize = 5760;

/// The packet loss (%) the encoder spends its in-band FEC on: 10.
pub const EXPECTED_LOSS_PERCENT: u8 = 10;

/// Largest packet the encoder may produce, in bytes (the libopus recommendation; 60 ms at
/// 510 kbit/s is 3825 bytes).
const MAX_PACKET_BYTES: usize = 4000;

/// Frame lengths (samples at 48 kHz) libopus encodes: 2.5, 5, 10, 20, 40 and 60 ms.
const ENCODABLE_FRAMES: [usize; 6] = [120, 240, 480, 960, 1920, 2880];

/// The PLC and FEC granule: 2.5 ms at 48 kHz. Concealed lengths are multiples of it.
const PLC_STEP: usize = 120;

fn unavailable(what: &str, e: audiopus::Error) -> CodecError {
    CodecError::Unavailable(format!("opus ({what}: {e})"))
}

/// An Opus encoder: mono 48 kHz i16 PCM frames of 2.5/5/10/20/40/60 ms in, one RTP payload
/// (RFC 7587 §4.2: one Opus packet) out. VoIP application, in-band FEC on, DTX off.
pub struct OpusEncoder {
    inner: LibEncoder,
    packet: Box<[u8; MAX_PACKET_BYTES]>,
}

impl OpusEncoder {
    /// Target bitrate of [`OpusEncoder::new`]: 32000 bit/s (wideband-to-fullband speech).
    pub const DEFAULT_BITRATE: u32 = 32_000;
    /// Lowest bitrate [`OpusEncoder::with_bitrate`] sets: 6000 bit/s (RFC 7587 §3.1.1).
    pub const MIN_BITRATE: u32 = 6_000;
    /// Highest bitrate [`OpusEncoder::with_bitrate`] sets: 300000 bit/s. RFC 7587 §3.1.1 allows
    /// up to 510 kbit/s, but libopus caps a request at 300 kbit/s per channel, and this
    /// encoder is mono; clamping here keeps [`OpusEncoder::bitrate`] equal to what was set.
    pub const MAX_BITRATE: u32 = 300_000;

    /// An encoder at [`OpusEncoder::DEFAULT_BITRATE`] (32 kbit/s).
    /// Errors: [`CodecError::Unavailable`] if libopus refuses to create or configure it.
    pub fn new() -> Result<OpusEncoder, CodecError> {
        OpusEncoder::with_bitrate(OpusEncoder::DEFAULT_BITRATE)
    }

    /// An encoder targeting `bits_per_second` bit/s, clamped to
    /// [`OpusEncoder::MIN_BITRATE`]..=[`OpusEncoder::MAX_BITRATE`] (variable bitrate, so
    /// single packets vary around it).
    /// Errors: [`CodecError::Unavailable`] if libopus refuses to create or configure it.
    pub fn with_bitrate(bits_per_second: u32) -> Result<OpusEncoder, CodecError> {
        let bps = bits_per_second.clamp(Self::MIN_BITRATE, Self::MAX_BITRATE);
        let mut inner = LibEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
            .map_err(|e| unavailable("encoder", e))?;
        // The clamp keeps bps far below i32::MAX.
        inner
            .set_bitrate(Bitrate::BitsPerSecond(bps as i32))
            .map_err(|e| unavailable("bitrate", e))?;
        inner
            .set_inband_fec(true)
            .map_err(|e| unavailable("in-band FEC", e))?;
        inner
            .set_packet_loss_perc(EXPECTED_LOSS_PERCENT)
            .map_err(|e| unavailable("expected loss", e))?;
        inner.set_dtx(false).map_err(|e| unavailable("DTX", e))?;
        Ok(OpusEncoder {
            inner,
            packet: Box::new([0; MAX_PACKET_BYTES]),
        })
    }

    /// Sets the encoder's computational complexity, 0 (cheapest) to 10 (best, libopus's and
    /// this encoder's default). Errors: [`CodecError::Unavailable`] for a value above 10 or
    /// when libopus refuses it.
    pub fn set_complexity(&mut self, complexity: u8) -> Result<(), CodecError> {
        self.inner
            .set_complexity(complexity)
            .map_err(|e| unavailable("complexity", e))
    }

    /// The configured target bitrate in bit/s, as libopus reports it (`None` if it cannot say).
    pub fn bitrate(&self) -> Option<u32> {
        match self.inner.bitrate() {
            Ok(Bitrate::BitsPerSecond(b)) => u32::try_from(b).ok(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("bitrate", &self.bitrate())
            .finish_non_exhaustive()
    }
}

impl Encoder for OpusEncoder {
    /// Appends one Opus packet for `pcm` (mono, 48 kHz, 120/240/480/960/1920/2880 samples,
    /// i.e. 2.5–60 ms) to `out`.
    /// Errors: [`CodecError::FrameLength`] for any other length; [`CodecError::Corrupt`] if
    /// libopus fails to encode (not expected).
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if !ENCODABLE_FRAMES.contains(&pcm.len()) {
            return Err(CodecError::FrameLength(pcm.len()));
        }
        let n = self
            .inner
            .encode(pcm, &mut self.packet[..])
            .map_err(|e| CodecError::Corrupt(format!("opus encode: {e}")))?;
        let packet = self
            .packet
            .get(..n)
            .ok_or_else(|| CodecError::Corrupt(format!("opus encode: length {n}")))?;
        out.extend_from_slice(packet);
        Ok(())
    }
}

/// An Opus decoder: one RTP payload (an Opus packet of 2.5–120 ms, mono or stereo) in, mono
/// 48 kHz i16 PCM out; Opus's own PLC for lost packets.
pub struct OpusDecoder {
    inner: LibDecoder,
    pcm: Box<[i16; MAX_FRAME_SAMPLES]>,
}

impl OpusDecoder {
    /// A mono 48 kHz decoder.
    /// Errors: [`CodecError::Unavailable`] if libopus refuses to create it.
    pub fn new() -> Result<OpusDecoder, CodecError> {
        let inner = LibDecoder::new(SampleRate::Hz48000, Channels::Mono)
            .map_err(|e| unavailable("decoder", e))?;
        Ok(OpusDecoder {
            inner,
            pcm: Box::new([0; MAX_FRAME_SAMPLES]),
        })
    }

    /// Rebuilds a lost frame of `samples` samples (48 kHz) from the in-band FEC data (RFC 6716
    /// §2.1.7, LBRR) carried in `next_payload`, the packet that followed the loss, and appends
    /// it to `out`. Call it before decoding `next_payload` itself. When the packet has no FEC
    /// data libopus falls back to PLC. `samples` is rounded up to a multiple of 2.5 ms (120
    /// samples), at most [`MAX_FRAME_SAMPLES`], but exactly `samples` samples are appended.
    /// Errors: [`CodecError::Corrupt`] if `next_payload` is empty or not an Opus packet (nothing
    /// is appended then; [`Decoder::conceal`] instead).
    pub fn recover(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<(), CodecError> {
        let packet = Packet::try_from(next_payload).map_err(corrupt)?;
        let want = samples.min(MAX_FRAME_SAMPLES);
        let len = want.div_ceil(PLC_STEP) * PLC_STEP;
        let buf = self
            .pcm
            .get_mut(..len)
            .ok_or(CodecError::FrameLength(samples))?;
        let signals = MutSignals::try_from(buf).map_err(corrupt)?;
        let n = self
            .inner
            .decode(Some(packet), signals, true)
            .map_err(corrupt)?;
        let got = self.pcm.get(..n.min(want)).unwrap_or_default();
        out.extend_from_slice(got);
        // Pad if libopus gave less than asked, and conceal whatever exceeded 120 ms.
        out.resize(out.len() + (want - got.len()), 0);
        if samples > want {
            self.conceal(samples - want, out);
        }
        Ok(())
    }
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

fn corrupt(e: audiopus::Error) -> CodecError {
    CodecError::Corrupt(format!("opus: {e}"))
}

impl Decoder for OpusDecoder {
    /// Appends the samples of the Opus packet `payload` (mono, 48 kHz, up to
    /// [`MAX_FRAME_SAMPLES`]) to `out`.
    /// Errors: [`CodecError::Corrupt`] for an empty payload or one libopus rejects (RFC 6716
    /// §3.4 malformed packet); nothing is appended then.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let packet = Packet::try_from(payload).map_err(corrupt)?;
        let signals = MutSignals::try_from(&mut self.pcm[..]).map_err(corrupt)?;
        let n = self
            .inner
            .decode(Some(packet), signals, false)
            .map_err(corrupt)?;
        let pcm = self
            .pcm
            .get(..n)
            .ok_or_else(|| CodecError::Corrupt(format!("opus: {n} samples decoded")))?;
        out.extend_from_slice(pcm);
        Ok(())
    }

    /// Appends exactly `samples` samples (48 kHz) of Opus PLC to `out`. libopus conceals in
    /// steps of 2.5 ms (120 samples) and at most 120 ms per call, so longer gaps are concealed
    /// in several calls and a length that is not a multiple of 120 is rounded up, the extra
    /// samples dropped. Should libopus fail, silence is appended instead.
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let mut left = samples;
        while left > 0 {
            let want = left.min(MAX_FRAME_SAMPLES);
            let len = want.div_ceil(PLC_STEP) * PLC_STEP;
            let decoded = match (
                self.pcm.get_mut(..len).map(MutSignals::try_from),
                len <= MAX_FRAME_SAMPLES,
            ) {
                (Some(Ok(signals)), true) => self.inner.decode(None, signals, false).ok(),
                _ => None,
            };
            let got = decoded
                .and_then(|n| self.pcm.get(..n.min(want)))
                .unwrap_or_default();
            out.extend_from_slice(got);
            out.resize(out.len() + (want - got.len()), 0);
            left -= want;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::{audio_rate, frame_samples, is_available, new_decoder, new_encoder};
    use crate::media::tone::{ToneGenerator, tone_energy_fraction};
    use crate::sdp::AudioCodec;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// 100 ms at 48 kHz: the encoder's lookahead and the codec's start-up are skipped.
    const SETTLE: usize = 4800;

    fn encode_tone(enc: &mut OpusEncoder, freq: f64, frames: usize) -> Vec<Vec<u8>> {
        let mut tone = ToneGenerator::new(freq, SAMPLE_RATE, 8000);
        let mut pcm = [0i16; FRAME_SAMPLES];
        (0..frames)
            .map(|_| {
                tone.fill(&mut pcm);
                let mut payload = Vec::new();
                enc.encode(&pcm, &mut payload).unwrap();
                payload
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
    }

    #[test]
    fn tones_survive_the_round_trip() {
        for freq in [440.0, 1000.0] {
            let mut enc = OpusEncoder::new().unwrap();
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = Vec::new();
            let mut bytes = 0;
            for payload in encode_tone(&mut enc, freq, 50) {
                bytes += payload.len();
                dec.decode(&payload, &mut out).unwrap();
            }
            assert_eq!(out.len(), 50 * FRAME_SAMPLES);
            let kept = tone_energy_fraction(&out[SETTLE..], freq, SAMPLE_RATE);
            assert!(kept >= 0.9, "{freq} Hz: {kept}");
            let other = if freq == 440.0 { 1000.0 } else { 440.0 };
            assert!(tone_energy_fraction(&out[SETTLE..], other, SAMPLE_RATE) < 0.01);
            // About 32 kbit/s: 50 frames are one second, 4000 bytes; VBR gives or takes.
            assert!((1000..=6000).contains(&bytes), "{bytes} bytes/s");
        }
    }

    #[test]
    fn a_lower_complexity_still_carries_the_tone_and_eleven_is_refused() {
        let mut enc = OpusEncoder::new().unwrap();
        assert!(enc.set_complexity(11).is_err());
        enc.set_complexity(5).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for payload in encode_tone(&mut enc, 440.0, 50) {
            dec.decode(&payload, &mut out).unwrap();
        }
        let kept = tone_energy_fraction(&out[SETTLE..], 440.0, SAMPLE_RATE);
        assert!(kept >= 0.9, "{kept}");
    }

    #[test]
    fn encoder_is_configured_as_asked() {
        assert_eq!(OpusEncoder::new().unwrap().bitrate(), Some(32_000));
        assert_eq!(
            OpusEncoder::with_bitrate(64_000).unwrap().bitrate(),
            Some(64_000)
        );
        assert_eq!(OpusEncoder::with_bitrate(1).unwrap().bitrate(), Some(6_000));
        assert_eq!(
            OpusEncoder::with_bitrate(u32::MAX).unwrap().bitrate(),
            Some(OpusEncoder::MAX_BITRATE)
        );
        let enc = OpusEncoder::new().unwrap();
        assert_eq!(enc.inner.inband_fec().ok(), Some(true));
        assert_eq!(
            enc.inner.packet_loss_perc().ok(),
            Some(EXPECTED_LOSS_PERCENT)
        );
        assert_eq!(enc.inner.dtx().ok(), Some(false));
        assert_eq!(enc.inner.application().ok(), Some(Application::Voip));
    }

    #[test]
    fn bad_frame_lengths_are_refused() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut out = Vec::new();
        for n in [0, 1, 160, 959, 961, 5760, 100_000] {
            let pcm = vec![0i16; n];
            assert_eq!(enc.encode(&pcm, &mut out), Err(CodecError::FrameLength(n)));
        }
        assert!(out.is_empty());
        for n in ENCODABLE_FRAMES {
            let mut out = Vec::new();
            enc.encode(&vec![0i16; n], &mut out).unwrap();
            let mut pcm = Vec::new();
            OpusDecoder::new().unwrap().decode(&out, &mut pcm).unwrap();
            assert_eq!(pcm.len(), n);
        }
    }

    #[test]
    fn conceal_continues_the_tone() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for payload in encode_tone(&mut enc, 440.0, 25) {
            dec.decode(&payload, &mut out).unwrap();
        }
        let good = rms(&out[out.len() - FRAME_SAMPLES..]);
        let start = out.len();
        dec.conceal(FRAME_SAMPLES, &mut out);
        assert_eq!(out.len(), start + FRAME_SAMPLES);
        let lost = &out[start..];
        assert!(rms(lost) > good / 4.0, "PLC rms {} vs {good}", rms(lost));
        let at_440 = tone_energy_fraction(lost, 440.0, SAMPLE_RATE);
        assert!(
            at_440 > 0.5,
            "440 Hz share of the concealed frame: {at_440}"
        );

        // Odd and long lengths still give exactly what was asked for.
        for n in [0, 1, 100, 121, 5760, 5761, 12_000] {
            let before = out.len();
            dec.conceal(n, &mut out);
            assert_eq!(out.len(), before + n, "conceal({n})");
        }
        // Before any packet, concealment is silence of the right length.
        let mut fresh = OpusDecoder::new().unwrap();
        let mut pcm = Vec::new();
        fresh.conceal(FRAME_SAMPLES, &mut pcm);
        assert_eq!(pcm.len(), FRAME_SAMPLES);
    }

    #[test]
    fn fec_recovers_a_lost_frame() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let payloads = encode_tone(&mut enc, 440.0, 30);
        let mut out = Vec::new();
        for payload in &payloads[..25] {
            dec.decode(payload, &mut out).unwrap();
        }
        // Packet 25 is lost; 26 carries its FEC copy.
        let start = out.len();
        dec.recover(&payloads[26], FRAME_SAMPLES, &mut out).unwrap();
        assert_eq!(out.len(), start + FRAME_SAMPLES);
        let at_440 = tone_energy_fraction(&out[start..], 440.0, SAMPLE_RATE);
        assert!(
            at_440 > 0.5,
            "440 Hz share of the recovered frame: {at_440}"
        );
        for payload in &payloads[26..] {
            dec.decode(payload, &mut out).unwrap();
        }
        assert_eq!(out.len(), 30 * FRAME_SAMPLES);
        assert!(matches!(
            dec.recover(&[], FRAME_SAMPLES, &mut out),
            Err(CodecError::Corrupt(_))
        ));
        assert_eq!(out.len(), 30 * FRAME_SAMPLES);
    }

    #[test]
    fn garbage_never_panics() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(CodecError::Corrupt(_))
        ));
        assert!(out.is_empty());
        let mut rng = StdRng::seed_from_u64(7587);
        let (mut ok, mut bad) = (0, 0);
        for i in 0..5000 {
            let len = if i % 10 == 0 {
                rng.gen_range(0..4000)
            } else {
                rng.gen_range(0..64)
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let before = out.len();
            match dec.decode(&payload, &mut out) {
                Ok(()) => {
                    ok += 1;
                    assert!(out.len() - before <= MAX_FRAME_SAMPLES);
                }
                Err(CodecError::Corrupt(_)) => {
                    bad += 1;
                    assert_eq!(out.len(), before);
                }
                Err(e) => panic!("unexpected {e}"),
            }
            let _ = dec.recover(&payload, FRAME_SAMPLES, &mut out);
            out.clear();
        }
        assert!(ok > 0 && bad > 0, "ok {ok}, corrupt {bad}");
        // The decoder is not wedged: a good stream still decodes to the tone.
        let mut enc = OpusEncoder::new().unwrap();
        for payload in encode_tone(&mut enc, 1000.0, 25) {
            dec.decode(&payload, &mut out).unwrap();
        }
        assert!(tone_energy_fraction(&out[SETTLE..], 1000.0, SAMPLE_RATE) > 0.9);
    }

    #[test]
    fn factory_builds_opus() {
        let codec = AudioCodec::OPUS;
        assert!(is_available(&codec));
        assert_eq!(audio_rate(&codec), SAMPLE_RATE);
        assert_eq!(frame_samples(&codec, 20), FRAME_SAMPLES);
        let upper = AudioCodec {
            name: "OPUS",
            ..AudioCodec::OPUS
        };
        assert!(new_encoder(&upper).is_ok());
        let mut enc = new_encoder(&codec).unwrap();
        let mut dec = new_decoder(&codec).unwrap();
        let mut tone = ToneGenerator::new(440.0, SAMPLE_RATE, 8000);
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut out = Vec::new();
        for _ in 0..50 {
            tone.fill(&mut pcm);
            let mut payload = Vec::new();
            enc.encode(&pcm, &mut payload).unwrap();
            dec.decode(&payload, &mut out).unwrap();
        }
        assert_eq!(out.len(), 50 * FRAME_SAMPLES);
        assert!(tone_energy_fraction(&out[SETTLE..], 440.0, SAMPLE_RATE) >= 0.9);
        let mut payload = Vec::new();
        assert_eq!(
            enc.encode(&pcm[..160], &mut payload),
            Err(CodecError::FrameLength(160))
        );
    }
}
