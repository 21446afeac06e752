//! System audio devices through cpal (feature `audio-device`): device listing, a microphone
//! [`DeviceSource`] and a speaker [`DeviceSink`] that speak the engine's mono 16-bit PCM.
//!
//! cpal streams are not `Send` on every platform, so each open device runs on its own dedicated
//! thread that owns the cpal stream. The stream callback and the engine exchange samples through
//! a bounded ring buffer of [`RING_MS`] milliseconds behind a mutex: when it is full the oldest
//! samples are dropped, and when it is empty the source reads (and the speaker plays) silence, so
//! the media clock never stalls on a device. Dropping a source or sink stops its thread.
//!
//! Device channels are mixed down to mono on capture (the mean of the channels) and mono is
//! copied to every channel on playback; 8/16/32-bit integer (signed or unsigned) and 32/64-bit
//! float device formats are converted. Samples stay at the device's native rate
//! ([`AudioSource::sample_rate`], [`AudioSink::sample_rate`]); resampling to a codec's rate is
//! the caller's job (`media::resample`).
//!
//! On Linux the default cpal host is ALSA (Debian: `libasound2-dev` to build).

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig, SupportedStreamConfig};

use crate::media::audio::{AudioError, AudioSink, AudioSource};

/// Length of each device's ring buffer (ms of mono audio at the device rate).
pub const RING_MS: u32 = 200;

/// Standard rates (Hz) reported in [`AudioDevice::sample_rates`] for a device that accepts a
/// continuous range of rates.
const STANDARD_RATES: [u32; 12] = [
    8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000,
];

/// Audio device failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The host has no default device for the requested direction.
    #[error("no default audio device")]
    NoDevice,
    /// No device has this id (or name).
    #[error("audio device not found: {0}")]
    NotFound(String),
    /// The audio backend (ALSA, CoreAudio, WASAPI…) refused: the device is busy or gone, or it
    /// offers no sample format this module converts.
    #[error("audio backend: {0}")]
    Backend(String),
}

impl From<cpal::Error> for DeviceError {
    fn from(e: cpal::Error) -> DeviceError {
        DeviceError::Backend(e.to_string())
    }
}

/// One system audio device, as [`list_devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// Identifier to pass to [`DeviceSource::open`] / [`DeviceSink::open`]: the backend's device
    /// id as `host:device` (e.g. `alsa:default`, `alsa:hw:CARD=0,DEV=0`); stable for the device
    /// within a process run (and usually across runs).
    pub id: String,
    /// Human-readable name (may not be unique).
    pub name: String,
    /// It can capture (a microphone).
    pub is_input: bool,
    /// It can play (a speaker).
    pub is_output: bool,
    /// It is the host's default input or default output device.
    pub is_default: bool,
    /// Sample rates it accepts (Hz), ascending: each discrete rate the device reports, and for a
    /// continuous range the standard rates from 8 to 192 kHz inside it. Empty when the device
    /// could not be queried (busy, unplugged).
    pub sample_rates: Vec<u32>,
}

/// Lists the default host's audio devices, the default input and output first.
///
/// Errors: [`DeviceError::Backend`] when the host cannot enumerate devices. A device that cannot
/// be queried is still listed, with empty [`AudioDevice::sample_rates`].
pub fn list_devices() -> Result<Vec<AudioDevice>, DeviceError> {
    let host = cpal::default_host();
    let default_in = host.default_input_device();
    let default_out = host.default_output_device();
    let default_in_id = default_in.as_ref().and_then(device_id);
    let default_out_id = default_out.as_ref().and_then(device_id);

    let mut candidates: Vec<cpal::Device> = Vec::new();
    candidates.extend(default_in);
    candidates.extend(default_out);
    candidates.extend(host.devices()?);

    let mut out: Vec<AudioDevice> = Vec::new();
    for device in candidates {
        let Some(id) = device_id(&device) else {
            continue;
        };
        let is_default_in = default_in_id.as_deref() == Some(id.as_str());
        let is_default_out = default_out_id.as_deref() == Some(id.as_str());
        // Some backends (ALSA's "default") cannot tell a device's direction without opening it;
        // a default device is usable in its default direction.
        let is_input = device.supports_input() || is_default_in;
        let is_output = device.supports_output() || is_default_out;
        if let Some(seen) = out.iter_mut().find(|d| d.id == id) {
            seen.is_input |= is_input;
            seen.is_output |= is_output;
            continue;
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        if is_input && let Ok(configs) = device.supported_input_configs() {
            ranges.extend(configs.map(|c| (c.min_sample_rate(), c.max_sample_rate())));
        }
        if is_output && let Ok(configs) = device.supported_output_configs() {
            ranges.extend(configs.map(|c| (c.min_sample_rate(), c.max_sample_rate())));
        }
        out.push(AudioDevice {
            name: device_name(&device).unwrap_or_else(|| id.clone()),
            id,
            is_input,
            is_output,
            is_default: is_default_in || is_default_out,
            sample_rates: rates_in_ranges(&ranges),
        });
    }
    Ok(out)
}

/// The rates listed for these (min, max) ranges (Hz): see [`AudioDevice::sample_rates`].
fn rates_in_ranges(ranges: &[(u32, u32)]) -> Vec<u32> {
    let mut rates: Vec<u32> = Vec::new();
    for &(min, max) in ranges {
        if min == max {
            rates.push(min);
        } else {
            rates.extend(
                STANDARD_RATES
                    .iter()
                    .copied()
                    .filter(|r| (min..=max).contains(r)),
            );
        }
    }
    rates.sort_unstable();
    rates.dedup();
    rates
}

fn device_id(device: &cpal::Device) -> Option<String> {
    device.id().ok().map(|id| id.to_string())
}

fn device_name(device: &cpal::Device) -> Option<String> {
    device.description().ok().map(|d| d.name().to_owned())
}

/// Counters of one open device, from [`DeviceSource::stats`] / [`DeviceSink::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames (one sample per device channel) the device delivered (source) or consumed (sink).
    pub device_frames: u64,
    /// Mono samples dropped because the ring buffer was full (the oldest go first): the engine
    /// read too slowly (source) or wrote faster than the device plays (sink).
    pub overflow_samples: u64,
    /// Mono samples replaced by silence because the ring buffer was empty: [`AudioSource::read`]
    /// asked for more than was captured (source), or the device played before the engine wrote
    /// (sink).
    pub underflow_samples: u64,
    /// Mono samples waiting in the ring buffer now.
    pub buffered_samples: usize,
    /// Stream errors the backend reported (e.g. the device was unplugged).
    pub errors: u64,
    /// The latest of those errors.
    pub last_error: Option<String>,
}

/// The ring buffer and counters shared by a stream callback and its source or sink.
#[derive(Debug)]
struct Ring {
    buf: VecDeque<i16>,
    cap: usize,
    stats: DeviceStats,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        let cap = cap.max(1);
        Ring {
            buf: VecDeque::with_capacity(cap),
            cap,
            stats: DeviceStats::default(),
        }
    }

    /// Appends one mono sample, dropping the oldest when full.
    fn push(&mut self, s: i16) {
        if self.buf.len() >= self.cap {
            self.buf.pop_front();
            self.stats.overflow_samples += 1;
        }
        self.buf.push_back(s);
    }

    /// Fills `out` from the front, silence (and an underflow count) past the buffered samples.
    fn pop_into(&mut self, out: &mut [i16]) {
        let n = out.len().min(self.buf.len());
        for (slot, s) in out.iter_mut().zip(self.buf.drain(..n)) {
            *slot = s;
        }
        if let Some(rest) = out.get_mut(n..) {
            rest.fill(0);
            self.stats.underflow_samples += rest.len() as u64;
        }
    }

    /// Captured device frames: mean of the channels of each frame, pushed as mono.
    fn push_frames<T>(&mut self, data: &[T], channels: usize)
    where
        T: Sample,
        i16: FromSample<T>,
    {
        for frame in data.chunks(channels.max(1)) {
            self.push(downmix(frame));
            self.stats.device_frames += 1;
        }
    }

    /// Device frames to play: each mono sample (silence once empty) on every channel.
    fn pop_frames<T>(&mut self, data: &mut [T], channels: usize)
    where
        T: Sample + FromSample<i16>,
    {
        for frame in data.chunks_mut(channels.max(1)) {
            let s = match self.buf.pop_front() {
                Some(s) => s,
                None => {
                    self.stats.underflow_samples += 1;
                    0
                }
            };
            frame.fill(T::from_sample(s));
            self.stats.device_frames += 1;
        }
    }

    fn record_error(&mut self, e: &cpal::Error) {
        self.stats.errors += 1;
        self.stats.last_error = Some(e.to_string());
    }

    fn snapshot(&self) -> DeviceStats {
        DeviceStats {
            buffered_samples: self.buf.len(),
            ..self.stats.clone()
        }
    }
}

/// One device frame mixed to mono 16-bit: the mean of its channels (silence for no channel).
fn downmix<T>(frame: &[T]) -> i16
where
    T: Sample,
    i16: FromSample<T>,
{
    if frame.is_empty() {
        return 0;
    }
    let sum: i32 = frame.iter().map(|&s| i32::from(i16::from_sample(s))).sum();
    // The mean of i16 values is within i16.
    (sum / frame.len() as i32) as i16
}

type SharedRing = Arc<Mutex<Ring>>;

fn lock(ring: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    ring.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

/// What the stream thread opened.
#[derive(Debug, Clone)]
struct Opened {
    id: String,
    name: String,
    rate: u32,
    channels: u16,
    format: SampleFormat,
}

/// The thread that owns one cpal stream; dropping it stops the stream and joins the thread.
#[derive(Debug)]
struct Worker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Worker {
    fn stop(&mut self) {
        // Dropping the sender wakes the thread's `recv`, which then drops the stream.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens the device on a new thread and returns once its stream plays (or failed to).
fn spawn_stream(
    dir: Direction,
    id: Option<&str>,
    ring: SharedRing,
) -> Result<(Worker, Opened), DeviceError> {
    let id = id.map(str::to_owned);
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Opened, DeviceError>>(1);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let name = match dir {
        Direction::Input => "rvoip-audio-in",
        Direction::Output => "rvoip-audio-out",
    };
    let thread = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || match open_stream(dir, id.as_deref(), ring) {
            Ok((stream, opened)) => {
                if ready_tx.send(Ok(opened)).is_ok() {
                    // Blocks until the Worker drops its sender.
                    let _ = stop_rx.recv();
                }
                drop(stream);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| DeviceError::Backend(format!("cannot start audio thread: {e}")))?;
    let mut worker = Worker {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(opened)) => Ok((worker, opened)),
        Ok(Err(e)) => {
            worker.stop();
            Err(e)
        }
        Err(_) => {
            worker.stop();
            Err(DeviceError::Backend("audio thread exited".to_owned()))
        }
    }
}

/// Finds a device by id (as listed) or, failing that, by name.
fn find_device(
    host: &cpal::Host,
    dir: Direction,
    id: Option<&str>,
) -> Result<cpal::Device, DeviceError> {
    let Some(id) = id else {
        let default = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or(DeviceError::NoDevice);
    };
    let mut candidates: Vec<cpal::Device> = Vec::new();
    candidates.extend(host.default_input_device());
    candidates.extend(host.default_output_device());
    if let Ok(devices) = host.devices() {
        candidates.extend(devices);
    }
    if let Some(i) = candidates
        .iter()
        .position(|d| device_id(d).as_deref() == Some(id))
    {
        return Ok(candidates.swap_remove(i));
    }
    candidates
        .into_iter()
        .find(|d| device_name(d).as_deref() == Some(id))
        .ok_or_else(|| DeviceError::NotFound(id.to_owned()))
}

/// Whether this module converts the format.
fn convertible(f: SampleFormat) -> bool {
    matches!(
        f,
        SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I32
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::U32
            | SampleFormat::F32
            | SampleFormat::F64
    )
}

/// The device's default configuration, or failing a convertible format there, a configuration
/// in a convertible format (16-bit first) at the default rate if possible.
fn pick_config(
    device: &cpal::Device,
    dir: Direction,
) -> Result<SupportedStreamConfig, DeviceError> {
    let default = match dir {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    };
    let default_rate = match &default {
        Ok(c) if convertible(c.sample_format()) => return default.map_err(DeviceError::from),
        Ok(c) => Some(c.sample_rate()),
        Err(_) => None,
    };
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match dir {
        Direction::Input => device.supported_input_configs()?.collect(),
        Direction::Output => device.supported_output_configs()?.collect(),
    };
    let rank = |f: SampleFormat| match f {
        SampleFormat::I16 => 0,
        SampleFormat::F32 => 1,
        SampleFormat::I32 => 2,
        SampleFormat::U16 => 3,
        _ => 4,
    };
    let mut usable: Vec<cpal::SupportedStreamConfigRange> = ranges
        .into_iter()
        .filter(|r| convertible(r.sample_format()))
        .collect();
    usable.sort_by_key(|r| rank(r.sample_format()));
    if let Some(rate) = default_rate
        && let Some(c) = usable.iter().find_map(|r| r.try_with_sample_rate(rate))
    {
        return Ok(c);
    }
    match usable.into_iter().next() {
        Some(r) => Ok(r
            .try_with_standard_sample_rate()
            .unwrap_or_else(|| r.with_max_sample_rate())),
        None => Err(match default {
            Ok(c) => DeviceError::Backend(format!(
                "unsupported device sample format {}",
                c.sample_format()
            )),
            Err(e) => e.into(),
        }),
    }
}

/// Builds and starts the stream (on the calling, dedicated thread).
fn open_stream(
    dir: Direction,
    id: Option<&str>,
    ring: SharedRing,
) -> Result<(cpal::Stream, Opened), DeviceError> {
    let host = cpal::default_host();
    let device = find_device(&host, dir, id)?;
    let supported = pick_config(&device, dir)?;
    let format = supported.sample_format();
    let config: StreamConfig = supported.config();
    let rate = config.sample_rate;
    if rate == 0 {
        return Err(DeviceError::Backend(
            "device reports a 0 Hz sample rate".to_owned(),
        ));
    }
    *lock(&ring) = Ring::new((rate as usize * RING_MS as usize) / 1000);
    let channels = usize::from(config.channels.max(1));
    let stream = match dir {
        Direction::Input => match format {
            SampleFormat::I8 => build_input::<i8>(&device, config, channels, ring),
            SampleFormat::I16 => build_input::<i16>(&device, config, channels, ring),
            SampleFormat::I32 => build_input::<i32>(&device, config, channels, ring),
            SampleFormat::U8 => build_input::<u8>(&device, config, channels, ring),
            SampleFormat::U16 => build_input::<u16>(&device, config, channels, ring),
            SampleFormat::U32 => build_input::<u32>(&device, config, channels, ring),
            SampleFormat::F32 => build_input::<f32>(&device, config, channels, ring),
            SampleFormat::F64 => build_input::<f64>(&device, config, channels, ring),
            f => {
                return Err(DeviceError::Backend(format!(
                    "unsupported sample format {f}"
                )));
            }
        },
        Direction::Output => match format {
            SampleFormat::I8 => build_output::<i8>(&device, config, channels, ring),
            SampleFormat::I16 => build_output::<i16>(&device, config, channels, ring),
            SampleFormat::I32 => build_output::<i32>(&device, config, channels, ring),
            SampleFormat::U8 => build_output::<u8>(&device, config, channels, ring),
            SampleFormat::U16 => build_output::<u16>(&device, config, channels, ring),
            SampleFormat::U32 => build_output::<u32>(&device, config, channels, ring),
            SampleFormat::F32 => build_output::<f32>(&device, config, channels, ring),
            SampleFormat::F64 => build_output::<f64>(&device, config, channels, ring),
            f => {
                return Err(DeviceError::Backend(format!(
                    "unsupported sample format {f}"
                )));
            }
        },
    }?;
    stream.play()?;
    let id = device_id(&device).unwrap_or_default();
    let opened = Opened {
        name: device_name(&device).unwrap_or_else(|| id.clone()),
        id,
        rate,
        channels: config.channels,
        format,
    };
    Ok((stream, opened))
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    channels: usize,
    ring: SharedRing,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    i16: FromSample<T>,
{
    let err_ring = ring.clone();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| lock(&ring).push_frames(data, channels),
        move |e| lock(&err_ring).record_error(&e),
        None,
    )
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    channels: usize,
    ring: SharedRing,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<i16>,
{
    let err_ring = ring.clone();
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| lock(&ring).pop_frames(data, channels),
        move |e| lock(&err_ring).record_error(&e),
        None,
    )
}

/// A capture device (microphone) as an endless [`AudioSource`]: mono 16-bit at the device's
/// native rate. `read` always fills the whole buffer; silence stands in for samples not yet
/// captured (counted in [`DeviceStats::underflow_samples`]).
#[derive(Debug)]
pub struct DeviceSource {
    ring: SharedRing,
    opened: Opened,
    worker: Worker,
}

impl DeviceSource {
    /// Opens and starts capturing from the device with this id (or name) from
    /// [`list_devices`], or the default input for `None`.
    ///
    /// Errors: [`DeviceError::NoDevice`] (no default input), [`DeviceError::NotFound`] (no such
    /// id), [`DeviceError::Backend`] (busy, gone, not an input, or no convertible format).
    pub fn open(id: Option<&str>) -> Result<DeviceSource, DeviceError> {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(1)));
        let (worker, opened) = spawn_stream(Direction::Input, id, ring.clone())?;
        Ok(DeviceSource {
            ring,
            opened,
            worker,
        })
    }

    /// The opened device's id, as in [`AudioDevice::id`].
    pub fn id(&self) -> &str {
        &self.opened.id
    }

    /// The opened device's name.
    pub fn name(&self) -> &str {
        &self.opened.name
    }

    /// Channels the device captures (mixed down to mono on read).
    pub fn device_channels(&self) -> u16 {
        self.opened.channels
    }

    /// The device's sample format, e.g. `f32` or `i16` (converted to 16 bit on read).
    pub fn device_format(&self) -> String {
        self.opened.format.to_string()
    }

    /// Counters so far.
    pub fn stats(&self) -> DeviceStats {
        lock(&self.ring).snapshot()
    }
}

impl AudioSource for DeviceSource {
    fn sample_rate(&self) -> u32 {
        self.opened.rate
    }

    fn read(&mut self, out: &mut [i16]) -> usize {
        lock(&self.ring).pop_into(out);
        out.len()
    }
}

impl Drop for DeviceSource {
    fn drop(&mut self) {
        self.worker.stop();
    }
}

/// A playback device (speaker) as an [`AudioSink`]: takes mono 16-bit at the device's native
/// rate and plays it on every device channel. `write` never blocks: past [`RING_MS`] of
/// unplayed audio the oldest samples are dropped.
#[derive(Debug)]
pub struct DeviceSink {
    ring: SharedRing,
    opened: Opened,
    worker: Worker,
}

impl DeviceSink {
    /// Opens and starts the device with this id (or name) from [`list_devices`], or the
    /// default output for `None`. It plays silence until samples are written.
    ///
    /// Errors: [`DeviceError::NoDevice`] (no default output), [`DeviceError::NotFound`] (no
    /// such id), [`DeviceError::Backend`] (busy, gone, not an output, or no convertible format).
    pub fn open(id: Option<&str>) -> Result<DeviceSink, DeviceError> {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(1)));
        let (worker, opened) = spawn_stream(Direction::Output, id, ring.clone())?;
        Ok(DeviceSink {
            ring,
            opened,
            worker,
        })
    }

    /// The opened device's id, as in [`AudioDevice::id`].
    pub fn id(&self) -> &str {
        &self.opened.id
    }

    /// The opened device's name.
    pub fn name(&self) -> &str {
        &self.opened.name
    }

    /// Channels the device plays (each gets the mono signal).
    pub fn device_channels(&self) -> u16 {
        self.opened.channels
    }

    /// The device's sample format, e.g. `f32` or `i16`.
    pub fn device_format(&self) -> String {
        self.opened.format.to_string()
    }

    /// Counters so far.
    pub fn stats(&self) -> DeviceStats {
        lock(&self.ring).snapshot()
    }
}

impl AudioSink for DeviceSink {
    fn sample_rate(&self) -> u32 {
        self.opened.rate
    }

    /// Queues samples for playback; after [`AudioSink::finish`] they are discarded. Never fails.
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        if self.worker.thread.is_some() {
            let mut ring = lock(&self.ring);
            for &s in samples {
                ring.push(s);
            }
        }
        Ok(())
    }

    /// Waits until the queued samples have played (at most [`RING_MS`] plus 500 ms), then stops
    /// the device. Never fails.
    fn finish(&mut self) -> Result<(), AudioError> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(RING_MS) + 500);
        while self.worker.thread.is_some()
            && !lock(&self.ring).buf.is_empty()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(5));
        }
        self.worker.stop();
        Ok(())
    }
}

impl Drop for DeviceSink {
    fn drop(&mut self) {
        self.worker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    // ---- conversions and the ring buffer (no device) ----

    #[test]
    fn downmix_averages_channels_in_every_format() {
        assert_eq!(downmix::<i16>(&[1000, 3000]), 2000);
        assert_eq!(downmix::<i16>(&[i16::MAX, i16::MAX]), i16::MAX);
        assert_eq!(downmix::<i16>(&[i16::MIN, i16::MIN, i16::MIN]), i16::MIN);
        assert_eq!(downmix::<i16>(&[]), 0);
        // f32 full scale is ±1.0; out-of-range floats saturate instead of wrapping.
        assert_eq!(downmix::<f32>(&[0.5, 0.0]), 8192);
        assert_eq!(downmix::<f32>(&[-1.0]), -32768);
        assert_eq!(downmix::<f32>(&[4.0]), i16::MAX);
        assert_eq!(downmix::<f32>(&[f32::NAN]), 0);
        // u16 is offset binary: 32768 is silence.
        assert_eq!(downmix::<u16>(&[32768, 32768]), 0);
        assert_eq!(downmix::<u16>(&[0]), i16::MIN);
        assert_eq!(downmix::<u16>(&[65535, 32768]), 16383);
    }

    #[test]
    fn ring_capture_downmixes_frames_and_drops_oldest_on_overflow() {
        let mut ring = Ring::new(4);
        // Three stereo f32 frames, then three more: capacity 4 keeps the newest 4.
        ring.push_frames::<f32>(&[0.5, 0.5, 0.25, 0.25, 0.0, 0.0], 2);
        ring.push_frames::<f32>(&[-0.5, -0.5, 1.0, 0.0, 0.5, -0.5], 2);
        let st = ring.snapshot();
        assert_eq!(st.device_frames, 6);
        assert_eq!(st.overflow_samples, 2);
        assert_eq!(st.buffered_samples, 4);
        let mut out = [1i16; 6];
        ring.pop_into(&mut out);
        // (1.0 + 0.0) / 2: +1.0 saturates to 32767 first.
        assert_eq!(out, [0, -16384, 16383, 0, 0, 0]);
        assert_eq!(ring.snapshot().underflow_samples, 2);
        assert_eq!(ring.snapshot().buffered_samples, 0);
    }

    #[test]
    fn ring_playback_copies_mono_to_every_channel_and_fills_silence() {
        let mut ring = Ring::new(8);
        for s in [16384i16, -32768] {
            ring.push(s);
        }
        let mut f = [9.0f32; 6];
        ring.pop_frames(&mut f, 2);
        assert_eq!(f, [0.5, 0.5, -1.0, -1.0, 0.0, 0.0]);
        ring.push(0);
        let mut u = [0u16; 4];
        ring.pop_frames(&mut u, 2);
        assert_eq!(u, [32768; 4], "u16 silence is the midpoint");
        ring.push(100);
        let mut i = [7i16; 3];
        ring.pop_frames(&mut i, 1);
        assert_eq!(i, [100, 0, 0]);
        let st = ring.snapshot();
        assert_eq!(st.device_frames, 3 + 2 + 3);
        assert_eq!(st.underflow_samples, 1 + 1 + 2);
    }

    #[test]
    fn rates_for_ranges_list_standard_rates_and_discrete_ones() {
        assert_eq!(
            rates_in_ranges(&[(44_100, 44_100), (8_000, 16_000)]),
            [8_000, 11_025, 16_000, 44_100]
        );
        assert_eq!(
            rates_in_ranges(&[(48_000, 48_000), (48_000, 48_000)]),
            [48_000]
        );
        assert_eq!(rates_in_ranges(&[(1, u32::MAX)]), STANDARD_RATES);
        assert!(rates_in_ranges(&[]).is_empty());
    }

    // ---- real cpal/ALSA streams on a hardware-free ALSA configuration ----

    /// Set in the child process that runs a device test under [`NULL_ALSA_CONF`].
    const CHILD_ENV: &str = "RVOIP_TEST_NULL_ALSA_DIR";
    /// Sample rate (Hz) and channels of the test microphone's file (and the plugins' slaves).
    const FILE_RATE: u32 = 48_000;
    /// Peak of the test microphone's left channel (its right channel is silent).
    const MIC_PEAK: i16 = 16_000;

    /// A complete ALSA configuration (loaded instead of the system's alsa.conf through
    /// `ALSA_CONFIG_PATH`) that needs no sound card, only plugins built into libasound2:
    /// `rvoip_mic` captures a stereo file (`mic.raw`: a 1 kHz tone on the left channel, silence on
    /// the right), `rvoip_speaker` plays into the null device, and `default` is both. `plug`
    /// converts whatever format and rate cpal picks to the files' S16_LE stereo 48 kHz. The null
    /// device has no clock: streams run faster than real time. A hint's direction (`IOID`) is
    /// only probed on sound cards, so it is appended to the description (`|IOIDInput`), which
    /// the hint string is built from (as BlueALSA does).
    const NULL_ALSA_CONF: &str = r#"
pcm.!default {
    type asym
    playback.pcm "rvoip_speaker"
    capture.pcm "rvoip_mic"
    hint { show on description "rvoip test default" }
}
pcm.rvoip_speaker {
    type plug
    slave { pcm { type null } format S16_LE channels 2 rate 48000 }
    hint { show on description "rvoip test speaker|IOIDOutput" }
}
pcm.rvoip_mic {
    type plug
    slave {
        pcm { type file slave.pcm { type null } file "/dev/null" infile "@DIR@/mic.raw" format "raw" }
        format S16_LE
        channels 2
        rate 48000
    }
    hint { show on description "rvoip test microphone|IOIDInput" }
}
"#;

    /// Runs `body` in a child process of this test binary (only the test `name`) with
    /// `ALSA_CONFIG_PATH` pointing at [`NULL_ALSA_CONF`] written to a fresh directory, so the
    /// tests need no sound card and never touch a real one. In the child, runs `body`.
    fn with_null_alsa(name: &str, body: impl FnOnce(&Path)) {
        if let Some(dir) = std::env::var_os(CHILD_ENV) {
            body(Path::new(&dir));
            return;
        }
        let _realtime = crate::realtime_test_lock();
        let dir: PathBuf =
            std::env::temp_dir().join(format!("rvoip-null-alsa-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("asound.conf");
        let dir_str = dir.to_str().expect("utf-8 temp dir");
        std::fs::write(&conf, NULL_ALSA_CONF.replace("@DIR@", dir_str)).expect("write conf");
        // 10 s of the test tone, S16_LE stereo: left 1 kHz at MIC_PEAK, right silent.
        let mut raw = Vec::with_capacity(FILE_RATE as usize * 10 * 4);
        for n in 0..FILE_RATE * 10 {
            let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / f64::from(FILE_RATE);
            let left = (f64::from(MIC_PEAK) * phase.sin()).round() as i16;
            raw.extend_from_slice(&left.to_le_bytes());
            raw.extend_from_slice(&0i16.to_le_bytes());
        }
        std::fs::write(dir.join("mic.raw"), raw).expect("write mic.raw");

        let test = format!(
            "{}::{name}",
            module_path!()
                .split_once("::")
                .map_or(module_path!(), |(_, rest)| rest)
        );
        let out = Command::new(std::env::current_exe().expect("test exe"))
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env("ALSA_CONFIG_PATH", &conf)
            .env(CHILD_ENV, &dir)
            .output()
            .expect("run child test");
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test {test} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
    }

    /// Names of the `rvoip-audio-*` threads alive in this process (Linux).
    fn audio_threads() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|comm| comm.trim_end().to_owned())
            .filter(|comm| comm.starts_with("rvoip-audio-"))
            .collect();
        names.sort_unstable();
        names
    }

    /// Polls `cond` for up to 5 s.
    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn lists_devices_of_the_null_alsa_config() {
        with_null_alsa("lists_devices_of_the_null_alsa_config", |_| {
            let devices = list_devices().expect("list");
            let again = list_devices().expect("list again");
            let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(
                ids,
                again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                "ids are stable"
            );
            let mut unique = ids.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");

            let get = |id: &str| {
                devices
                    .iter()
                    .find(|d| d.id == id)
                    .unwrap_or_else(|| panic!("{id} missing from {devices:#?}"))
            };
            let default = get("alsa:default");
            assert!(
                default.is_default && default.is_input && default.is_output,
                "{default:?}"
            );
            let mic = get("alsa:rvoip_mic");
            assert_eq!(mic.name, "rvoip test microphone");
            assert!(mic.is_input && !mic.is_output && !mic.is_default, "{mic:?}");
            let speaker = get("alsa:rvoip_speaker");
            assert_eq!(speaker.name, "rvoip test speaker");
            assert!(speaker.is_output && !speaker.is_input, "{speaker:?}");
            for d in [default, mic, speaker] {
                for rate in [8_000, 16_000, 48_000] {
                    assert!(d.sample_rates.contains(&rate), "{d:?}");
                }
            }
        });
    }

    #[test]
    fn default_source_reads_one_second_of_the_downmixed_tone() {
        with_null_alsa(
            "default_source_reads_one_second_of_the_downmixed_tone",
            |_| {
                let mut src = DeviceSource::open(None).expect("open default input");
                assert_eq!(src.id(), "alsa:default");
                let rate = src.sample_rate();
                assert!((8_000..=192_000).contains(&rate), "rate {rate}");
                assert_eq!(src.device_channels(), 2, "cpal prefers stereo");
                let chunk = rate as usize / 50; // 20 ms
                wait_for("captured audio", || src.stats().buffered_samples >= chunk);

                let mut peak = 0i16;
                let mut total = 0usize;
                let mut buf = vec![0i16; chunk];
                for _ in 0..50 {
                    buf.fill(i16::MAX);
                    assert_eq!(src.read(&mut buf), chunk, "read fills the whole buffer");
                    total += chunk;
                    peak = peak.max(buf.iter().map(|s| s.saturating_abs()).max().unwrap_or(0));
                }
                assert_eq!(total, rate as usize, "one second");
                // Left at MIC_PEAK, right silent: the mono mean peaks at half (the plug may
                // resample if cpal picked another rate than the file's).
                let half = i32::from(MIC_PEAK / 2);
                assert!(
                    (i32::from(peak) - half).abs() < half / 10,
                    "peak {peak}, expected about {half}"
                );
                let st = src.stats();
                assert!(st.device_frames >= chunk as u64, "{st:?}");
                assert_eq!(st.errors, 0, "{st:?}");
            },
        );
    }

    #[test]
    fn default_sink_plays_one_second() {
        with_null_alsa("default_sink_plays_one_second", |_| {
            let mut sink = DeviceSink::open(None).expect("open default output");
            assert_eq!(sink.id(), "alsa:default");
            let rate = sink.sample_rate();
            assert!((8_000..=192_000).contains(&rate), "rate {rate}");
            let mut tone = crate::media::audio::ToneSource::new(440.0, rate, 8000);
            let chunk = rate as usize / 50;
            let mut buf = vec![0i16; chunk];
            let mut written = 0u64;
            for _ in 0..50 {
                tone.read(&mut buf);
                sink.write(&buf).expect("write");
                written += chunk as u64;
                // Never more than the ring buffer is kept.
                let st = sink.stats();
                assert!(
                    st.buffered_samples <= (rate * RING_MS / 1000) as usize,
                    "{st:?}"
                );
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(written, u64::from(rate), "one second");
            sink.finish().expect("finish");
            let st = sink.stats();
            assert_eq!(st.buffered_samples, 0, "finish drains: {st:?}");
            let played = st.device_frames - st.underflow_samples;
            assert!(played > 0, "the device took samples: {st:?}");
            assert_eq!(
                played + st.overflow_samples,
                written,
                "every sample is played or dropped: {st:?}"
            );
            assert_eq!(st.errors, 0, "{st:?}");
            // After finish the device is stopped and writes are discarded.
            sink.write(&buf).expect("write after finish");
            assert_eq!(sink.stats().buffered_samples, 0);
        });
    }

    #[test]
    fn opens_listed_devices_by_id_and_by_name() {
        with_null_alsa("opens_listed_devices_by_id_and_by_name", |_| {
            let mut src = DeviceSource::open(Some("alsa:rvoip_mic")).expect("mic by id");
            assert_eq!(src.name(), "rvoip test microphone");
            let mut buf = vec![0i16; 160];
            assert_eq!(src.read(&mut buf), 160);
            let sink = DeviceSink::open(Some("rvoip test speaker")).expect("speaker by name");
            assert_eq!(sink.id(), "alsa:rvoip_speaker");
            // (A thread cpal spawns carries its parent's name until it names itself.)
            wait_for("one thread per device", || {
                audio_threads() == ["rvoip-audio-in", "rvoip-audio-out"]
            });
            drop(src);
            drop(sink);
            assert!(
                audio_threads().is_empty(),
                "dropping stops the device threads"
            );
        });
    }

    #[test]
    fn unknown_ids_are_not_found() {
        with_null_alsa("unknown_ids_are_not_found", |_| {
            for id in ["alsa:no_such_device", "", "in:7:ghost"] {
                assert_eq!(
                    DeviceSource::open(Some(id)).err(),
                    Some(DeviceError::NotFound(id.to_owned()))
                );
                assert_eq!(
                    DeviceSink::open(Some(id)).err(),
                    Some(DeviceError::NotFound(id.to_owned()))
                );
            }
            assert!(
                audio_threads().is_empty(),
                "failed opens leave no thread behind"
            );
        });
    }
}
