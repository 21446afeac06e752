//! Tones: a sine generator whose phase never drifts (it advances by samples, not by wall-clock
//! time), and the Goertzel detector the media tests use to find a tone in received audio.

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
