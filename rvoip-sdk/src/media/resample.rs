//! Frame-by-frame sample-rate conversion between an audio device or file and a codec (e.g.
//! 48 000 Hz ↔ 8 000 Hz), over the `rubato` FFT resampler. One call converts one frame of
//! `frame_ms` at the input rate into exactly one frame of `frame_ms` at the output rate: the
//! resampler's variable output is kept in a small FIFO, so there is no drift and no partial frame.
//! Equal rates are a plain copy.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// Resampler construction failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// A rate of 0 Hz, a frame shorter than one sample, or a ratio rubato refuses.
    #[error("cannot resample {from} Hz to {to} Hz: {reason}")]
    Unsupported {
        /// Input rate in Hz.
        from: u32,
        /// Output rate in Hz.
        to: u32,
        /// Why.
        reason: String,
    },
}

/// Converts frames of `frame_ms` from one rate to another (mono, 16-bit).
pub struct FrameResampler {
    from_hz: u32,
    to_hz: u32,
    in_frame: usize,
    out_frame: usize,
    inner: Option<Box<Fft<f32>>>,
    in_buf: Vec<f32>,
    out_buf: Vec<f32>,
    fifo: VecDeque<i16>,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field(
                "frame_ms",
                &(self.in_frame as u64 * 1000 / u64::from(self.from_hz)),
            )
            .finish()
    }
}

impl FrameResampler {
    /// A converter from `from_hz` to `to_hz` for frames of `frame_ms` ms.
    /// Errors: [`ResampleError::Unsupported`].
    pub fn new(from_hz: u32, to_hz: u32, frame_ms: u32) -> Result<FrameResampler, ResampleError> {
        let err = |reason: String| ResampleError::Unsupported {
            from: from_hz,
            to: to_hz,
            reason,
        };
        let in_frame = (u64::from(from_hz) * u64::from(frame_ms) / 1000) as usize;
        let out_frame = (u64::from(to_hz) * u64::from(frame_ms) / 1000) as usize;
        if in_frame == 0 || out_frame == 0 {
            return Err(err("frame shorter than one sample".into()));
        }
        let inner = if from_hz == to_hz {
            None
        } else {
            let fft = Fft::<f32>::new(
                from_hz as usize,
                to_hz as usize,
                in_frame,
                1,
                FixedSync::Input,
            )
            .map_err(|e| err(e.to_string()))?;
            Some(Box::new(fft))
        };
        let out_max = inner.as_ref().map(|r| r.output_frames_max()).unwrap_or(0);
        Ok(FrameResampler {
            from_hz,
            to_hz,
            in_frame,
            out_frame,
            inner,
            in_buf: vec![0.0; in_frame],
            out_buf: vec![0.0; out_max],
            fifo: VecDeque::with_capacity(4 * out_frame),
        })
    }

    /// Samples per input frame.
    pub fn input_frame(&self) -> usize {
        self.in_frame
    }

    /// Samples per output frame.
    pub fn output_frame(&self) -> usize {
        self.out_frame
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Converts one input frame (shorter input is padded with silence, longer is cut) and appends
    /// exactly [`FrameResampler::output_frame`] samples to `out`. The first frames carry the
    /// resampler's delay (a few ms of silence).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(inner) = self.inner.as_mut() else {
            let n = input.len().min(self.out_frame);
            out.extend_from_slice(input.get(..n).unwrap_or_default());
            out.resize(out.len() + (self.out_frame - n), 0);
            return;
        };
        for (i, slot) in self.in_buf.iter_mut().enumerate() {
            *slot = input.get(i).map_or(0.0, |&s| f32::from(s) / 32768.0);
        }
        let out_len = self.out_buf.len();
        let produced = match (
            InterleavedSlice::new(&self.in_buf[..], 1, self.in_frame),
            InterleavedSlice::new_mut(&mut self.out_buf[..], 1, out_len),
        ) {
            (Ok(inp), Ok(mut outp)) => inner
                .process_into_buffer(&inp, &mut outp, None::<&Indexing>)
                .map(|(_, n)| n)
                .unwrap_or(0),
            _ => 0,
        };
        for &v in self.out_buf.iter().take(produced) {
            self.fifo
                .push_back((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
        }
        // Keep the FIFO bounded (it only fluctuates by a sub-chunk in steady state).
        while self.fifo.len() > 4 * self.out_frame {
            self.fifo.pop_front();
        }
        let have = self.fifo.len().min(self.out_frame);
        let missing = self.out_frame - have;
        out.resize(out.len() + missing, 0);
        out.extend(self.fifo.drain(..have));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{ToneGenerator, tone_energy_fraction};

    fn convert(from: u32, to: u32) -> Vec<i16> {
        let mut r = FrameResampler::new(from, to, 20).unwrap();
        let mut tone = ToneGenerator::new(440.0, from, 10_000);
        let mut frame = vec![0i16; r.input_frame()];
        let mut out = Vec::new();
        for i in 0..50 {
            tone.fill(&mut frame);
            let before = out.len();
            r.process(&frame, &mut out);
            assert_eq!(out.len() - before, (to / 50) as usize, "frame {i}");
        }
        out
    }

    #[test]
    fn frames_keep_their_length_and_the_tone() {
        for (from, to) in [
            (48_000, 8000),
            (8000, 48_000),
            (8000, 16_000),
            (44_100, 8000),
            (8000, 8000),
        ] {
            let out = convert(from, to);
            let skip = to as usize / 10;
            let f = tone_energy_fraction(&out[skip..], 440.0, to);
            assert!(f > 0.9, "{from}->{to}: {f}");
        }
    }

    #[test]
    fn short_input_is_padded_and_bad_rates_refused() {
        let mut r = FrameResampler::new(16_000, 8000, 20).unwrap();
        let mut out = Vec::new();
        r.process(&[1, 2, 3], &mut out);
        assert_eq!(out.len(), 160);
        assert!(FrameResampler::new(0, 8000, 20).is_err());
        assert!(FrameResampler::new(8000, 8000, 0).is_err());
    }
}
