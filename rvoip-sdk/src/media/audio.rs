//! Audio sources and sinks the media engine reads from and writes to: mono 16-bit PCM at a
//! stated sample rate. Tone and silence sources, WAV file source and sink (the `hound` crate),
//! and an in-memory sink for tests. System devices (cpal) come behind the `audio-device` feature.

use std::path::Path;

use crate::media::tone::ToneGenerator;

/// Audio I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A WAV file could not be opened, read or written.
    #[error("WAV file: {0}")]
    Wav(#[from] hound::Error),
    /// A WAV format this engine does not read (only 8/16/24/32-bit integer and 32-bit float PCM).
    #[error("unsupported WAV format: {0}")]
    Format(String),
}

/// Something that produces mono 16-bit samples.
pub trait AudioSource: Send {
    /// Samples per second (Hz).
    fn sample_rate(&self) -> u32;
    /// Fills `out` with the next samples; returns how many were written (fewer than `out.len()`
    /// only at the end of a finite source).
    fn read(&mut self, out: &mut [i16]) -> usize;
}

/// Something that consumes mono 16-bit samples.
pub trait AudioSink: Send {
    /// Samples per second (Hz) it expects.
    fn sample_rate(&self) -> u32;
    /// Takes the next samples. Errors: [`AudioError::Wav`] for a file sink.
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError>;
    /// Flushes and closes (a WAV sink writes its header sizes). Errors as [`AudioSink::write`].
    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
}

/// An endless sine tone.
#[derive(Debug, Clone)]
pub struct ToneSource {
    rate: u32,
    tone: ToneGenerator,
}

impl ToneSource {
    /// A tone of `freq_hz` at `sample_rate_hz` with peak `amplitude` (16-bit scale).
    pub fn new(freq_hz: f64, sample_rate_hz: u32, amplitude: i16) -> ToneSource {
        ToneSource {
            rate: sample_rate_hz,
            tone: ToneGenerator::new(freq_hz, sample_rate_hz, amplitude),
        }
    }
}

impl AudioSource for ToneSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        self.tone.fill(out);
        out.len()
    }
}

/// Endless silence.
#[derive(Debug, Clone, Copy)]
pub struct SilenceSource {
    /// Samples per second (Hz).
    pub rate: u32,
}

impl AudioSource for SilenceSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        out.fill(0);
        out.len()
    }
}

/// A WAV file, mixed down to mono and converted to 16 bit; finite.
pub struct WavSource {
    rate: u32,
    channels: usize,
    samples: std::vec::IntoIter<i16>,
}

impl WavSource {
    /// Opens and decodes a WAV file (8/16/24/32-bit integer or 32-bit float PCM, any channel
    /// count). Errors: [`AudioError::Wav`], [`AudioError::Format`].
    pub fn open(path: &Path) -> Result<WavSource, AudioError> {
        let reader = hound::WavReader::open(path)?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let interleaved: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8..=16) => {
                let shift = 16 - u32::from(spec.bits_per_sample);
                reader
                    .into_samples::<i16>()
                    .map(|s| s.map(|v| v << shift))
                    .collect::<Result<_, _>>()?
            }
            (hound::SampleFormat::Int, 17..=32) => {
                let shift = u32::from(spec.bits_per_sample) - 16;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| (v >> shift) as i16))
                    .collect::<Result<_, _>>()?
            }
            (hound::SampleFormat::Float, 32) => reader
                .into_samples::<f32>()
                .map(|s| s.map(|v| (v.clamp(-1.0, 1.0) * 32767.0) as i16))
                .collect::<Result<_, _>>()?,
            (f, b) => return Err(AudioError::Format(format!("{f:?} {b}-bit"))),
        };
        let mono: Vec<i16> = interleaved
            .chunks(channels)
            .map(|frame| {
                (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len().max(1) as i32)
                    as i16
            })
            .collect();
        Ok(WavSource {
            rate: spec.sample_rate,
            channels,
            samples: mono.into_iter(),
        })
    }

    /// Channels in the file (mixed down to mono on read).
    pub fn file_channels(&self) -> usize {
        self.channels
    }
}

impl AudioSource for WavSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        let mut n = 0;
        for (slot, s) in out.iter_mut().zip(&mut self.samples) {
            *slot = s;
            n += 1;
        }
        n
    }
}

/// Writes mono 16-bit PCM to a WAV file.
pub struct WavSink {
    rate: u32,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
}

impl WavSink {
    /// Creates (truncates) `path` for mono 16-bit samples at `sample_rate_hz`.
    /// Errors: [`AudioError::Wav`].
    pub fn create(path: &Path, sample_rate_hz: u32) -> Result<WavSink, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: sample_rate_hz,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(WavSink {
            rate: sample_rate_hz,
            writer: Some(hound::WavWriter::create(path, spec)?),
        })
    }
}

impl AudioSink for WavSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        if let Some(w) = self.writer.as_mut() {
            let mut w16 = w.get_i16_writer(samples.len() as u32);
            for &s in samples {
                w16.write_sample(s);
            }
            w16.flush()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), AudioError> {
        match self.writer.take() {
            Some(w) => Ok(w.finalize()?),
            None => Ok(()),
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Keeps everything written, for tests and analysis.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// Samples per second (Hz).
    pub rate: u32,
    /// Everything written so far.
    pub samples: Vec<i16>,
}

impl AudioSink for MemorySink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        self.samples.extend_from_slice(samples);
        Ok(())
    }
}

/// Discards everything written (a call whose received audio nobody listens to).
#[derive(Debug, Clone, Copy)]
pub struct NullSink {
    /// Samples per second (Hz).
    pub rate: u32,
}

impl AudioSink for NullSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, _samples: &[i16]) -> Result<(), AudioError> {
        Ok(())
    }
}

/// A sink whose samples stay readable from elsewhere while the call runs: clones share one
/// buffer (an app's level meter, a test's tone check).
#[derive(Debug, Clone)]
pub struct SharedSink {
    rate: u32,
    buf: std::sync::Arc<std::sync::Mutex<Vec<i16>>>,
}

impl SharedSink {
    /// An empty shared buffer taking `rate_hz` samples per second.
    pub fn new(rate_hz: u32) -> SharedSink {
        SharedSink {
            rate: rate_hz,
            buf: Default::default(),
        }
    }

    /// A copy of everything written so far.
    pub fn samples(&self) -> Vec<i16> {
        self.buf.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Number of samples written so far.
    pub fn len(&self) -> usize {
        self.buf.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        if let Ok(mut b) = self.buf.lock() {
            b.clear();
        }
    }
}

impl AudioSink for SharedSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        if let Ok(mut b) = self.buf.lock() {
            b.extend_from_slice(samples);
        }
        Ok(())
    }
}

/// The callback of a [`CallbackSink`]: gets each block of samples.
pub type SinkFn = Box<dyn FnMut(&[i16]) + Send>;

/// The callback of a [`CallbackSource`]: fills the slice, returns how many samples it wrote.
pub type SourceFn = Box<dyn FnMut(&mut [i16]) -> usize + Send>;

/// Hands every block of received samples to an app callback (apps that run their own audio).
pub struct CallbackSink {
    rate: u32,
    f: SinkFn,
}

impl CallbackSink {
    /// A sink at `rate_hz` calling `f` with each block (one frame, e.g. 20 ms) on the media task.
    pub fn new(rate_hz: u32, f: SinkFn) -> CallbackSink {
        CallbackSink { rate: rate_hz, f }
    }
}

impl AudioSink for CallbackSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        (self.f)(samples);
        Ok(())
    }
}

/// Asks an app callback for each block of samples to send; the callback fills the slice and
/// returns how many samples it wrote (the rest is silence).
pub struct CallbackSource {
    rate: u32,
    f: SourceFn,
}

impl CallbackSource {
    /// A source at `rate_hz` calling `f` for each block on the media task.
    pub fn new(rate_hz: u32, f: SourceFn) -> CallbackSource {
        CallbackSource { rate: rate_hz, f }
    }
}

impl AudioSource for CallbackSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        let n = (self.f)(out).min(out.len());
        if let Some(rest) = out.get_mut(n..) {
            rest.fill(0);
        }
        out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tone_energy_fraction;

    #[test]
    fn tone_through_a_wav_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("rvoip-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.wav");
        let mut src = ToneSource::new(440.0, 8000, 10_000);
        let mut sink = WavSink::create(&path, 8000).unwrap();
        let mut frame = [0i16; 160];
        for _ in 0..50 {
            assert_eq!(src.read(&mut frame), 160);
            sink.write(&frame).unwrap();
        }
        sink.finish().unwrap();
        let mut wav = WavSource::open(&path).unwrap();
        assert_eq!((wav.sample_rate(), wav.file_channels()), (8000, 1));
        let mut mem = MemorySink {
            rate: 8000,
            samples: Vec::new(),
        };
        loop {
            let n = wav.read(&mut frame);
            mem.write(&frame[..n]).unwrap();
            if n < frame.len() {
                break;
            }
        }
        assert_eq!(mem.samples.len(), 8000);
        assert!(tone_energy_fraction(&mem.samples, 440.0, 8000) > 0.95);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stereo_48k_wav_is_mixed_to_mono_and_bad_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("rvoip-wav2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..10 {
            w.write_sample(1000i16).unwrap();
            w.write_sample(3000i16).unwrap();
        }
        w.finalize().unwrap();
        let mut src = WavSource::open(&path).unwrap();
        assert_eq!((src.sample_rate(), src.file_channels()), (48_000, 2));
        let mut out = [0i16; 16];
        assert_eq!(src.read(&mut out), 10);
        assert!(out[..10].iter().all(|&s| s == 2000));
        let bad = dir.join("bad.wav");
        std::fs::write(&bad, b"RIFF not really").unwrap();
        assert!(WavSource::open(&bad).is_err());
        assert!(WavSource::open(&dir.join("missing.wav")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn silence_is_silent() {
        let mut s = SilenceSource { rate: 16_000 };
        let mut out = [7i16; 320];
        assert_eq!(s.read(&mut out), 320);
        assert!(out.iter().all(|&x| x == 0));
    }
}
