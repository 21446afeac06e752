//! Audio a call sends ([`AudioSource`]) and where what it receives goes ([`AudioSink`]): mono
//! 16-bit PCM at the object's own sample rate (resampled to the codec's). Each object is
//! handed to one call (`CallOptions`, `Call.set_source` / `set_sink`), which takes it: using
//! it a second time raises `RvoipError.InvalidState`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rvoip_sdk::api as sdk;
use rvoip_sdk::media::audio::{
    CallbackSink, CallbackSource, NullSink, SilenceSource, ToneSource, WavSink, WavSource,
};

use crate::RvoipError;

/// Lowest and highest accepted app sample rate (Hz).
const RATES: std::ops::RangeInclusive<u32> = 8000..=192_000;

fn check_rate(rate_hz: u32) -> Result<(), RvoipError> {
    if RATES.contains(&rate_hz) {
        Ok(())
    } else {
        Err(RvoipError::invalid(format!(
            "sample rate {rate_hz} Hz (8000..=192000)"
        )))
    }
}

fn media(e: impl std::fmt::Display) -> RvoipError {
    RvoipError::Media {
        detail: e.to_string(),
    }
}

fn used() -> RvoipError {
    RvoipError::InvalidState {
        detail: "audio object already given to a call".into(),
    }
}

/// Produces the audio an app sends, frame by frame (implemented in Swift, Kotlin or Python).
#[uniffi::export(with_foreign)]
pub trait AudioProducer: Send + Sync {
    /// Returns up to `samples` mono samples to send next (fewer: the rest is silence). Called
    /// on the media task once per frame (e.g. every 20 ms): keep it fast. If it raises, that
    /// frame is silence and the call goes on.
    fn read_frame(&self, samples: u32) -> Vec<i16>;
}

/// Consumes the audio a call receives, frame by frame (implemented in Swift, Kotlin or Python).
#[uniffi::export(with_foreign)]
pub trait AudioConsumer: Send + Sync {
    /// Takes the next block of received mono samples (one frame, e.g. 20 ms). Called on the
    /// media task: keep it fast. If it raises, that frame is dropped and the call goes on.
    fn write_frame(&self, samples: Vec<i16>);
}

/// An audio object's engine part, handed to one call: taken out once.
struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    fn new(t: T) -> Slot<T> {
        Slot(Mutex::new(Some(t)))
    }

    /// Takes it out for a call. Errors: [`RvoipError::InvalidState`] if already taken.
    fn take(&self) -> Result<T, RvoipError> {
        self.0.lock().map_err(|_| used())?.take().ok_or_else(used)
    }
}

/// Something a call sends. Create with a constructor, hand to one call.
#[derive(uniffi::Object)]
pub struct AudioSource(Slot<Box<dyn sdk::AudioSource>>);

impl AudioSource {
    fn wrap(s: Box<dyn sdk::AudioSource>) -> Arc<AudioSource> {
        Arc::new(AudioSource(Slot::new(s)))
    }

    /// Takes the source out for a call. Errors: [`RvoipError::InvalidState`] if already taken.
    pub(crate) fn take(&self) -> Result<Box<dyn sdk::AudioSource>, RvoipError> {
        self.0.take()
    }
}

#[uniffi::export]
impl AudioSource {
    /// An endless sine tone of `freq_hz` at `sample_rate_hz` (8000..=192000) with peak
    /// `amplitude` (0..=32767). Errors: `InvalidArgument` (rate, or not 0 < freq < rate/2).
    #[uniffi::constructor(default(amplitude = 8000))]
    pub fn tone(
        freq_hz: f64,
        sample_rate_hz: u32,
        amplitude: i16,
    ) -> Result<Arc<Self>, RvoipError> {
        check_rate(sample_rate_hz)?;
        if !(freq_hz > 0.0 && freq_hz < f64::from(sample_rate_hz) / 2.0) {
            return Err(RvoipError::invalid(format!(
                "tone frequency {freq_hz} Hz at {sample_rate_hz} Hz"
            )));
        }
        Ok(Self::wrap(Box::new(ToneSource::new(
            freq_hz,
            sample_rate_hz,
            amplitude.max(0),
        ))))
    }

    /// Silence at 8 kHz (a call that only listens).
    #[uniffi::constructor]
    pub fn silence() -> Arc<Self> {
        Self::wrap(Box::new(SilenceSource { rate: 8000 }))
    }

    /// A PCM WAV file (8/16/24/32-bit integer or 32-bit float, mixed down to mono); the call
    /// sends silence after its end. Errors: `Media` (unreadable or unsupported file).
    #[uniffi::constructor]
    pub fn wav(path: String) -> Result<Arc<Self>, RvoipError> {
        let s = WavSource::open(Path::new(&path)).map_err(|e| media(format!("{path}: {e}")))?;
        Ok(Self::wrap(Box::new(s)))
    }

    /// Frames from app code at `sample_rate_hz` (8000..=192000). Errors: `InvalidArgument`.
    #[uniffi::constructor]
    pub fn callback(
        sample_rate_hz: u32,
        producer: Arc<dyn AudioProducer>,
    ) -> Result<Arc<Self>, RvoipError> {
        check_rate(sample_rate_hz)?;
        let f = move |out: &mut [i16]| {
            let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
            // An exception in foreign code must not take the media task down: silence instead.
            let Ok(got) = catch_unwind(AssertUnwindSafe(|| producer.read_frame(want))) else {
                tracing::warn!("AudioProducer.read_frame failed; sending silence for this frame");
                return 0;
            };
            let n = got.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), got.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        };
        Ok(Self::wrap(Box::new(CallbackSource::new(
            sample_rate_hz,
            Box::new(f),
        ))))
    }

    /// A capture device by id (from [`list_audio_devices`]), or the default input for `None`.
    /// Errors: `Media` (no such device, device busy, or built without the `audio-device`
    /// feature).
    #[uniffi::constructor(default(device_id = None))]
    pub fn device(device_id: Option<String>) -> Result<Arc<Self>, RvoipError> {
        #[cfg(feature = "audio-device")]
        {
            let s = rvoip_sdk::media::device::DeviceSource::open(device_id.as_deref())
                .map_err(media)?;
            Ok(Self::wrap(Box::new(s)))
        }
        #[cfg(not(feature = "audio-device"))]
        {
            let _ = device_id;
            Err(media("built without the audio-device feature"))
        }
    }
}

/// Where a call's received audio goes. Create with a constructor, hand to one call.
#[derive(uniffi::Object)]
pub struct AudioSink(Slot<Box<dyn sdk::AudioSink>>);

impl AudioSink {
    fn wrap(s: Box<dyn sdk::AudioSink>) -> Arc<AudioSink> {
        Arc::new(AudioSink(Slot::new(s)))
    }

    /// Takes the sink out for a call. Errors: [`RvoipError::InvalidState`] if already taken.
    pub(crate) fn take(&self) -> Result<Box<dyn sdk::AudioSink>, RvoipError> {
        self.0.take()
    }
}

#[uniffi::export]
impl AudioSink {
    /// A 16-bit mono WAV file at `sample_rate_hz` (8000..=192000), finished when the call ends.
    /// Errors: `InvalidArgument` (rate), `Media` (cannot create the file).
    #[uniffi::constructor(default(sample_rate_hz = 16000))]
    pub fn wav(path: String, sample_rate_hz: u32) -> Result<Arc<Self>, RvoipError> {
        check_rate(sample_rate_hz)?;
        let s = WavSink::create(Path::new(&path), sample_rate_hz)
            .map_err(|e| media(format!("{path}: {e}")))?;
        Ok(Self::wrap(Box::new(s)))
    }

    /// Discards the audio.
    #[uniffi::constructor]
    pub fn discard() -> Arc<Self> {
        Self::wrap(Box::new(NullSink { rate: 8000 }))
    }

    /// Hands each received frame at `sample_rate_hz` (8000..=192000) to app code.
    /// Errors: `InvalidArgument`.
    #[uniffi::constructor]
    pub fn callback(
        sample_rate_hz: u32,
        consumer: Arc<dyn AudioConsumer>,
    ) -> Result<Arc<Self>, RvoipError> {
        check_rate(sample_rate_hz)?;
        let f = move |s: &[i16]| {
            let frame = s.to_vec();
            if catch_unwind(AssertUnwindSafe(|| consumer.write_frame(frame))).is_err() {
                tracing::warn!("AudioConsumer.write_frame failed; frame dropped");
            }
        };
        Ok(Self::wrap(Box::new(CallbackSink::new(
            sample_rate_hz,
            Box::new(f),
        ))))
    }

    /// A playback device by id (from [`list_audio_devices`]), or the default output for
    /// `None`. Errors: `Media` (as [`AudioSource::device`]).
    #[uniffi::constructor(default(device_id = None))]
    pub fn device(device_id: Option<String>) -> Result<Arc<Self>, RvoipError> {
        #[cfg(feature = "audio-device")]
        {
            let s =
                rvoip_sdk::media::device::DeviceSink::open(device_id.as_deref()).map_err(media)?;
            Ok(Self::wrap(Box::new(s)))
        }
        #[cfg(not(feature = "audio-device"))]
        {
            let _ = device_id;
            Err(media("built without the audio-device feature"))
        }
    }
}

/// One system audio device.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AudioDeviceInfo {
    /// Id for `AudioSource.device` / `AudioSink.device`, e.g. `alsa:default`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// It can capture.
    pub is_input: bool,
    /// It can play.
    pub is_output: bool,
    /// It is a default input or output device.
    pub is_default: bool,
    /// Sample rates it accepts (Hz), ascending; empty when it could not be queried.
    pub sample_rates: Vec<u32>,
}

/// The host's audio devices, default input and output first. Errors: `Media` (the host
/// cannot enumerate devices, or built without the `audio-device` feature).
#[uniffi::export]
pub fn list_audio_devices() -> Result<Vec<AudioDeviceInfo>, RvoipError> {
    #[cfg(feature = "audio-device")]
    {
        let list = rvoip_sdk::media::device::list_devices().map_err(media)?;
        Ok(list
            .into_iter()
            .map(|d| AudioDeviceInfo {
                id: d.id,
                name: d.name,
                is_input: d.is_input,
                is_output: d.is_output,
                is_default: d.is_default,
                sample_rates: d.sample_rates,
            })
            .collect())
    }
    #[cfg(not(feature = "audio-device"))]
    {
        Err(media("built without the audio-device feature"))
    }
}
