//! Tones: a sine generator whose phase never drifts (it advances by samples, not by wall-clock
//! time), and the Goertzel detectors the media tests use to find a tone in received audio (over a
//! whole window, and per 20 ms block, which a jitter buffer's phase jumps do not upset).

use std::f64::consts::TAU;

/// A sine tone generator at `freq_hz`, `sample_rate_hz` samples per second, peak `amplitude`
/// (16-bit scale). Continuous across calls to [`ToneGenerator::fill`].
///
/// Samples come from a rotating phasor (two multiply-adds per sample instead of a `sin`); the
/// phasor is re-anchored on the exact phase `sin`/`cos` at the start of every `fill`, so
/// rounding never accumulates and the phase never drifts.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    step: f64,
    /// Samples generated so far modulo one period's worth of phase (exact phase bookkeeping).
    phase: f64,
    amplitude: f64,
    /// (cos, sin) of one step.
    rot: (f64, f64),
}

impl ToneGenerator {
    /// A tone of `freq_hz` Hz sampled at `sample_rate_hz` Hz with peak `amplitude` (0..=32767).
    /// A zero sample rate gives silence.
    pub fn new(freq_hz: f64, sample_rate_hz: u32, amplitude: i16) -> ToneGenerator {
        let step = if sample_rate_hz == 0 {
            0.0
        } else {
            TAU * freq_hz / f64::from(sample_rate_hz)
        };
        ToneGenerator {
            step,
            phase: 0.0,
            amplitude: f64::from(amplitude.max(0)),
            rot: (step.cos(), step.sin()),
        }
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let (mut c, mut s) = (self.phase.cos(), self.phase.sin());
        let (rc, rs) = self.rot;
        for v in out.iter_mut() {
            *v = (s * self.amplitude).round() as i16;
            (c, s) = (c * rc - s * rs, s * rc + c * rs);
        }
        self.phase = (self.phase + self.step * out.len() as f64) % TAU;
    }
}

/// Goertzel power of `freq_hz` in `samples` (sampled at `sample_rate_hz`): |X(f)|², the squared
/// magnitude of one DFT bin, on the 16-bit scale.
pub fn goertzel_power(samples: &[i16], freq_hz: f64, sample_rate_hz: u32) -> f64 {
    if sample_rate_hz == 0 || samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * freq_hz / f64::from(sample_rate_hz)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The share (0.0..=1.0) of the energy of `samples` that lies at `freq_hz`: the Goertzel bin
/// power against the total energy, scaled so that a pure tone at `freq_hz` gives about 1.0
/// (Parseval: a pure sine of N samples puts N/2 · Σx² into its bin). Silence gives 0.
pub fn tone_energy_fraction(samples: &[i16], freq_hz: f64, sample_rate_hz: u32) -> f64 {
    let total: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let n = samples.len() as f64;
    (goertzel_power(samples, freq_hz, sample_rate_hz) / (n / 2.0 * total)).clamp(0.0, 1.0)
}

/// The share (0.0..=1.0) of the energy of `samples` that lies at `freq_hz`, measured block by
/// block so that it does not depend on the tone's phase staying continuous.
///
/// `samples` is mono 16-bit PCM at `sample_rate_hz` Hz; `block_len_samples` is the block length
/// in samples (20 ms is `sample_rate_hz / 50`: 160 at 8 kHz, 320 at 16 kHz). `samples` is cut
/// into consecutive blocks from its first sample; each block's Goertzel power at `freq_hz`,
/// scaled as in [`tone_energy_fraction`] (a pure tone's power equals its energy), is summed, and
/// the sum is divided by the summed energy of the same blocks: an energy-weighted mean of the
/// per-block shares, where a loud block counts more than a quiet one.
///
/// Why: one Goertzel over a whole window adds the tone's phasor across the window, so a phase
/// jump (a jitter buffer that grows or shrinks by a frame, a concealed or repeated frame)
/// cancels part of it: an 880 Hz tone that jumps by one 20 ms frame (17.6 cycles) halfway
/// through a window scores about 10 %. Per block, only the blocks that straddle a jump lose.
///
/// A trailing partial block is left out when there is at least one whole block; a `samples`
/// shorter than one block is measured as a single block. An empty `samples`, silence, a zero
/// `sample_rate_hz` or a zero `block_len_samples` give 0.0. Never panics.
pub fn tone_fraction_blocks(
    samples: &[i16],
    freq_hz: f64,
    sample_rate_hz: u32,
    block_len_samples: usize,
) -> f64 {
    if block_len_samples == 0 || sample_rate_hz == 0 || samples.is_empty() {
        return 0.0;
    }
    // Whole blocks only; a `samples` shorter than one block is its own (only) block.
    let short = (samples.len() < block_len_samples).then_some(samples);
    let (mut tone, mut total) = (0.0f64, 0.0f64);
    for block in samples.chunks_exact(block_len_samples).chain(short) {
        let n = block.len() as f64;
        tone += goertzel_power(block, freq_hz, sample_rate_hz) / (n / 2.0);
        total += block
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
    }
    if total <= 0.0 || !tone.is_finite() {
        return 0.0;
    }
    (tone / total).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(freq, rate, 12_000);
        let mut v = vec![0i16; n];
        // Filled in 20 ms frames, as a media loop would: the phase must carry over.
        for chunk in v.chunks_mut((rate / 50) as usize) {
            g.fill(chunk);
        }
        v
    }

    #[test]
    fn pure_tone_is_found_and_others_are_not() {
        let t = tone(440.0, 8000, 8000);
        assert!(tone_energy_fraction(&t, 440.0, 8000) > 0.95);
        assert!(tone_energy_fraction(&t, 1000.0, 8000) < 0.01);
        let t = tone(1000.0, 16_000, 16_000);
        assert!(tone_energy_fraction(&t, 1000.0, 16_000) > 0.95);
        assert!(tone_energy_fraction(&t, 440.0, 16_000) < 0.01);
    }

    #[test]
    fn tone_survives_g711_and_silence_scores_zero() {
        let t = tone(440.0, 8000, 8000);
        let (mut enc, mut dec) = (Vec::new(), Vec::new());
        g711::encode_ulaw(&t, &mut enc);
        g711::decode_ulaw(&enc, &mut dec);
        assert!(tone_energy_fraction(&dec, 440.0, 8000) > 0.9);
        enc.clear();
        dec.clear();
        g711::encode_alaw(&t, &mut enc);
        g711::decode_alaw(&enc, &mut dec);
        assert!(tone_energy_fraction(&dec, 440.0, 8000) > 0.9);
        assert_eq!(tone_energy_fraction(&[0; 800], 440.0, 8000), 0.0);
        assert_eq!(tone_energy_fraction(&[], 440.0, 8000), 0.0);
    }

    /// `freq` Hz at `rate` in 20 ms frames, as a jitter buffer would play it, with the previous
    /// frame played once more (the buffer grew by a frame) after each frame index in `repeat_after`.
    fn tone_with_repeated_frames(
        freq: f64,
        rate: u32,
        frames: usize,
        repeat_after: &[usize],
    ) -> Vec<i16> {
        let len = (rate / 50) as usize;
        let mut g = ToneGenerator::new(freq, rate, 12_000);
        let mut frame = vec![0i16; len];
        let mut v = Vec::new();
        for i in 0..frames {
            g.fill(&mut frame);
            v.extend_from_slice(&frame);
            if repeat_after.contains(&i) {
                v.extend_from_slice(&frame);
            }
        }
        v
    }

    /// Issue 10: baresip's 880 Hz through a jitter buffer that grew by one 20 ms frame in the
    /// middle of the 2 s tail (a jump of 0.6 cycle). The whole-window Goertzel loses most of it;
    /// per 20 ms block it is all there.
    #[test]
    fn per_block_share_ignores_a_phase_jump_that_breaks_the_whole_window_measure() {
        let v = tone_with_repeated_frames(880.0, 16_000, 100, &[50]);
        let old = tone_energy_fraction(&v, 880.0, 16_000);
        assert!(
            old < 0.2,
            "the whole-window measure was expected to fail: {old}"
        );
        let new = tone_fraction_blocks(&v, 880.0, 16_000, 320);
        assert!(new >= 0.9, "per-block share {new}");
        // The tail need not start on a frame boundary: blocks that straddle the jump lose a bit.
        for skip in [1, 77, 160, 319] {
            let f = tone_fraction_blocks(&v[skip..], 880.0, 16_000, 320);
            assert!(f >= 0.9, "skip {skip}: per-block share {f}");
        }
    }

    #[test]
    fn per_block_share_survives_a_jump_every_few_blocks() {
        // 440 Hz at 8 kHz (8.8 cycles a frame): a repeated frame every 4 frames, 3 s.
        let repeats: Vec<usize> = (3..150).step_by(4).collect();
        let v = tone_with_repeated_frames(440.0, 8000, 150, &repeats);
        let old = tone_energy_fraction(&v, 440.0, 8000);
        assert!(
            old < 0.2,
            "the whole-window measure was expected to fail: {old}"
        );
        let new = tone_fraction_blocks(&v, 440.0, 8000, 160);
        assert!(new >= 0.9, "per-block share {new}");
        // A phase that flips by half a cycle every 3 blocks (80 samples of silence inserted).
        let mut flips = Vec::new();
        let mut g = ToneGenerator::new(1000.0, 8000, 12_000);
        let mut frame = [0i16; 160];
        for i in 0..100 {
            g.fill(&mut frame);
            flips.extend_from_slice(&frame);
            if i % 3 == 2 {
                g.fill(&mut [0i16; 4]); // 4 samples of 1000 Hz at 8 kHz: half a cycle
            }
        }
        assert!(tone_energy_fraction(&flips, 1000.0, 8000) < 0.2);
        assert!(tone_fraction_blocks(&flips, 1000.0, 8000, 160) >= 0.9);
    }

    #[test]
    fn per_block_share_is_low_for_noise_silence_and_other_tones() {
        // Deterministic white-ish noise (xorshift).
        let mut x = 0x2545_f491_u32;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 16) as i16
            })
            .collect();
        let f = tone_fraction_blocks(&noise, 440.0, 8000, 160);
        assert!(f < 0.05, "noise {f}");
        assert_eq!(tone_fraction_blocks(&[0; 1600], 440.0, 8000, 160), 0.0);
        let t = tone(1000.0, 8000, 8000);
        assert!(tone_fraction_blocks(&t, 440.0, 8000, 160) < 0.01);
        assert!(tone_fraction_blocks(&t, 1000.0, 8000, 160) > 0.95);
        let t = tone(880.0, 16_000, 32_000);
        assert!(tone_fraction_blocks(&t, 440.0, 16_000, 320) < 0.01);
        assert!(tone_fraction_blocks(&t, 880.0, 16_000, 320) > 0.95);
        // A tone plus an equally loud other tone: about half.
        let a = tone(440.0, 8000, 8000);
        let mix: Vec<i16> = a
            .iter()
            .zip(tone(1000.0, 8000, 8000))
            .map(|(&p, q)| p / 2 + q / 2)
            .collect();
        let f = tone_fraction_blocks(&mix, 440.0, 8000, 160);
        assert!((0.4..=0.6).contains(&f), "mix {f}");
    }

    #[test]
    fn per_block_share_takes_any_input_without_panicking() {
        let t = tone(440.0, 8000, 1000);
        assert_eq!(tone_fraction_blocks(&[], 440.0, 8000, 160), 0.0);
        assert_eq!(tone_fraction_blocks(&t, 440.0, 8000, 0), 0.0);
        assert_eq!(tone_fraction_blocks(&t, 440.0, 0, 160), 0.0);
        // Shorter than one block: one block. Odd lengths: the partial last block is left out.
        assert!(tone_fraction_blocks(&t[..100], 440.0, 8000, 160) > 0.8);
        assert!(tone_fraction_blocks(&t[..1], 440.0, 8000, 160) <= 1.0);
        assert!(tone_fraction_blocks(&t[..333], 440.0, 8000, 160) > 0.95);
        assert!(tone_fraction_blocks(&t, 440.0, 8000, usize::MAX) > 0.95);
        assert!(tone_fraction_blocks(&t, 440.0, 8000, 1) <= 1.0);
        let loud = [i16::MIN, i16::MAX, i16::MIN, i16::MAX, 0, 7];
        for freq in [0.0, -5.0, 4000.0, 1e12, f64::NAN, f64::INFINITY] {
            let f = tone_fraction_blocks(&loud, freq, 8000, 3);
            assert!((0.0..=1.0).contains(&f), "{freq}: {f}");
        }
    }

    #[test]
    fn generator_does_not_drift() {
        // After an hour of 20 ms frames the phase is where an ideal oscillator would be.
        let mut g = ToneGenerator::new(440.0, 8000, 10_000);
        let mut frame = [0i16; 160];
        for _ in 0..(3600 * 50) {
            g.fill(&mut frame);
        }
        let ideal = (TAU * 440.0 * 3600.0) % TAU;
        let diff = (g.phase - ideal).abs().min(TAU - (g.phase - ideal).abs());
        assert!(diff < 1e-6, "phase error {diff}");
    }
}

#[cfg(test)]
mod phasor_tests {
    use super::*;

    #[test]
    fn phasor_matches_sin_within_one_lsb_over_a_minute_of_frames() {
        let mut g = ToneGenerator::new(440.0, 8000, 12_000);
        let step = TAU * 440.0 / 8000.0;
        let mut frame = [0i16; 160];
        let mut n = 0u64;
        for _ in 0..3000 {
            g.fill(&mut frame);
            for v in frame {
                let exact = ((step * n as f64) % TAU).sin() * 12_000.0;
                assert!(
                    (f64::from(v) - exact).abs() <= 1.5,
                    "sample {n}: {v} vs {exact}"
                );
                n += 1;
            }
        }
    }
}
