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

/// What [`DeviceSource`] and [`DeviceSink`] share: the opened device, its stream thread and the
/// ring buffer between them. Both dereference to it for [`DeviceStream::id`],
/// [`DeviceStream::name`], [`DeviceStream::stats`] and the rest.
#[derive(Debug)]
pub struct DeviceStream {
    ring: SharedRing,
    opened: Opened,
    worker: Worker,
}

impl DeviceStream {
    fn open(direction: Direction, id: Option<&str>) -> Result<DeviceStream, DeviceError> {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(1)));
        let (worker, opened) = spawn_stream(direction, id, ring.clone())?;
        Ok(DeviceStream {
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

    /// Channels of the device (a source mixes them down to mono, a sink plays mono on each).
    pub fn device_channels(&self) -> u16 {
        self.opened.channels
    }

    /// The device's sample format, e.g. `f32` or `i16` (converted to and from 16 bit).
    pub fn device_format(&self) -> String {
        self.opened.format.to_string()
    }

    /// Counters so far.
    pub fn stats(&self) -> DeviceStats {
        lock(&self.ring).snapshot()
    }
}

/// A capture device (microphone) as an endless [`AudioSource`]: mono 16-bit at the device's
/// native rate. `read` always fills the whole buffer; silence stands in for samples not yet
/// captured (counted in [`DeviceStats::underflow_samples`]).
#[derive(Debug)]
pub struct DeviceSource(DeviceStream);

impl DeviceSource {
    /// Opens and starts capturing from the device with this id (or name) from
    /// [`list_devices`], or the default input for `None`.
    ///
    /// Errors: [`DeviceError::NoDevice`] (no default input), [`DeviceError::NotFound`] (no such
    /// id), [`DeviceError::Backend`] (busy, gone, not an input, or no convertible format).
    pub fn open(id: Option<&str>) -> Result<DeviceSource, DeviceError> {
        DeviceStream::open(Direction::Input, id).map(DeviceSource)
    }
}

impl std::ops::Deref for DeviceSource {
    type Target = DeviceStream;
    fn deref(&self) -> &DeviceStream {
        &self.0
    }
}

impl AudioSource for DeviceSource {
    fn sample_rate(&self) -> u32 {
        self.0.opened.rate
    }

    fn read(&mut self, out: &mut [i16]) -> usize {
        lock(&self.0.ring).pop_into(out);
        out.len()
    }
}

impl Drop for DeviceSource {
    fn drop(&mut self) {
        self.0.worker.stop();
    }
}

/// A playback device (speaker) as an [`AudioSink`]: takes mono 16-bit at the device's native
/// rate and plays it on every device channel. `write` never blocks: past [`RING_MS`] of
/// unplayed audio the oldest samples are dropped.
#[derive(Debug)]
pub struct DeviceSink(DeviceStream);

impl DeviceSink {
    /// Opens and starts the device with this id (or name) from [`list_devices`], or the
    /// default output for `None`. It plays silence until samples are written.
    ///
    /// Errors: [`DeviceError::NoDevice`] (no default output), [`DeviceError::NotFound`] (no
    /// such id), [`DeviceError::Backend`] (busy, gone, not an output, or no convertible format).
    pub fn open(id: Option<&str>) -> Result<DeviceSink, DeviceError> {
        DeviceStream::open(Direction::Output, id).map(DeviceSink)
    }
}

impl std::ops::Deref for DeviceSink {
    type Target = DeviceStream;
    fn deref(&self) -> &DeviceStream {
        &self.0
    }
}

impl AudioSink for DeviceSink {
    fn sample_rate(&self) -> u32 {
        self.0.opened.rate
    }

    /// Queues samples for playback; after [`AudioSink::finish`] they are discarded. Never fails.
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        if self.0.worker.thread.is_some() {
            let mut ring = lock(&self.0.ring);
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
        while self.0.worker.thread.is_some()
            && !lock(&self.0.ring).buf.is_empty()
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(5));
        }
        self.0.worker.stop();
        Ok(())
    }
}

impl Drop for DeviceSink {
    fn drop(&mut self) {
        self.0.worker.stop();
    }
}

#[cfg(test)]
mod tests;
