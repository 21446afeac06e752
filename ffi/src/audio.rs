//! Audio for calls: tone, WAV file, PCM callback and device sources and sinks, and the device
//! list. A source or sink is an opaque object the app creates and hands to a call (which takes
//! ownership) or frees with `_free` if unused.

use std::ffi::{c_char, c_void};

use rvoip_sdk::api::{AudioSink, AudioSource};
use rvoip_sdk::media::audio::{CallbackSink, CallbackSource, ToneSource, WavSink, WavSource};

use crate::rvoip_result;
use crate::util::{boundary, boundary_void, copy_into, opt_str_arg, str_arg, write_out};

/// Something a call sends: mono 16-bit PCM at its own rate (resampled to the codec's).
pub struct rvoip_audio_source(Box<dyn AudioSource>);

/// Something a call's received audio goes to: mono 16-bit PCM at its own rate.
pub struct rvoip_audio_sink(Box<dyn AudioSink>);

/// Consumes a source object: `None` for NULL.
///
/// # Safety
/// `p` is NULL or from this library and not used again.
pub(crate) unsafe fn take_source(p: *mut rvoip_audio_source) -> Option<Box<dyn AudioSource>> {
    // SAFETY: caller's contract: a Box from this library, consumed once.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) }.0)
}

/// Consumes a sink object: `None` for NULL.
///
/// # Safety
/// As [`take_source`].
pub(crate) unsafe fn take_sink(p: *mut rvoip_audio_sink) -> Option<Box<dyn AudioSink>> {
    // SAFETY: caller's contract.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) }.0)
}

fn put_source(out: *mut *mut rvoip_audio_source, s: Box<dyn AudioSource>) {
    // SAFETY: the callers checked `out` for NULL.
    unsafe { write_out(out, Box::into_raw(Box::new(rvoip_audio_source(s)))) };
}

fn put_sink(out: *mut *mut rvoip_audio_sink, s: Box<dyn AudioSink>) {
    // SAFETY: the callers checked `out` for NULL.
    unsafe { write_out(out, Box::into_raw(Box::new(rvoip_audio_sink(s)))) };
}

fn check_rate(rate_hz: u32) -> Result<(), rvoip_result> {
    if (8000..=192_000).contains(&rate_hz) {
        Ok(())
    } else {
        Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT)
    }
}

/// An endless sine tone of `freq_hz` at `rate_hz` (8000..=192000) with peak `amplitude`.
/// Errors: NULL_ARGUMENT (`out`), INVALID_ARGUMENT (rate, or frequency not in 0 < f < rate/2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_source_tone_new(
    freq_hz: f64,
    rate_hz: u32,
    amplitude: i16,
    out: *mut *mut rvoip_audio_source,
) -> rvoip_result {
    boundary(|| {
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        check_rate(rate_hz)?;
        if !(freq_hz > 0.0 && freq_hz < f64::from(rate_hz) / 2.0) {
            return Err(rvoip_result::RVOIP_RESULT_INVALID_ARGUMENT);
        }
        put_source(out, Box::new(ToneSource::new(freq_hz, rate_hz, amplitude)));
        Ok(())
    })
}

/// A WAV file (any PCM WAV; mixed down to mono; ends with the file).
/// Errors: NULL_ARGUMENT, INVALID_ARGUMENT (UTF-8), MEDIA (unreadable or unsupported file).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_source_wav_new(
    path: *const c_char,
    out: *mut *mut rvoip_audio_source,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a valid C string.
        let path = unsafe { str_arg(path) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let w = WavSource::open(std::path::Path::new(path))
            .map_err(|_| rvoip_result::RVOIP_RESULT_MEDIA)?;
        put_source(out, Box::new(w));
        Ok(())
    })
}

/// Frees a source not handed to a call. NULL is a no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_source_free(source: *mut rvoip_audio_source) {
    // SAFETY: NULL or a library object, freed once (caller's contract).
    boundary_void(|| drop(unsafe { take_source(source) }));
}

/// A WAV file sink, 16-bit mono at `rate_hz`, finished (header written) when the call's media
/// stops. Errors: NULL_ARGUMENT, INVALID_ARGUMENT, MEDIA (cannot create the file).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_sink_wav_new(
    path: *const c_char,
    rate_hz: u32,
    out: *mut *mut rvoip_audio_sink,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a valid C string.
        let path = unsafe { str_arg(path) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        check_rate(rate_hz)?;
        let w = WavSink::create(std::path::Path::new(path), rate_hz)
            .map_err(|_| rvoip_result::RVOIP_RESULT_MEDIA)?;
        put_sink(out, Box::new(w));
        Ok(())
    })
}

/// Frees a sink not handed to a call. NULL is a no-op.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_sink_free(sink: *mut rvoip_audio_sink) {
    // SAFETY: NULL or a library object, freed once.
    boundary_void(|| drop(unsafe { take_sink(sink) }));
}

/// Receives PCM: `user_data`, `count` mono 16-bit samples at `rate_hz`. Called on the call's
/// media thread every packetization interval (20 ms): return quickly, do not block.
pub type rvoip_pcm_sink_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, samples: *const i16, count: usize, rate_hz: u32),
>;

/// Supplies PCM: fill up to `count` samples at `rate_hz` into `samples` and return how many
/// were written (the rest is silence). Called on the media thread every 20 ms.
pub type rvoip_pcm_source_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        samples: *mut i16,
        count: usize,
        rate_hz: u32,
    ) -> usize,
>;

struct Ud(*mut c_void);
// SAFETY: handed back only to the app's own callback; the app promised it may be used from the
// media thread.
unsafe impl Send for Ud {}

/// A sink that calls `cb(user_data, samples, count, rate_hz)` with each block of received audio
/// (apps with their own audio path). Errors: NULL_ARGUMENT (`cb`, `out`), INVALID_ARGUMENT.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_sink_callback_new(
    rate_hz: u32,
    cb: rvoip_pcm_sink_cb,
    user_data: *mut c_void,
    out: *mut *mut rvoip_audio_sink,
) -> rvoip_result {
    boundary(|| {
        let cb = cb.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        check_rate(rate_hz)?;
        let ud = Ud(user_data);
        let f = Box::new(move |s: &[i16]| {
            let ud = &ud;
            // SAFETY: the app's callback with a valid buffer for the duration of the call.
            unsafe { cb(ud.0, s.as_ptr(), s.len(), rate_hz) }
        });
        put_sink(out, Box::new(CallbackSink::new(rate_hz, f)));
        Ok(())
    })
}

/// A source that asks `cb(user_data, samples, count, rate_hz)` for each block to send.
/// Errors: NULL_ARGUMENT (`cb`, `out`), INVALID_ARGUMENT (rate).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_source_callback_new(
    rate_hz: u32,
    cb: rvoip_pcm_source_cb,
    user_data: *mut c_void,
    out: *mut *mut rvoip_audio_source,
) -> rvoip_result {
    boundary(|| {
        let cb = cb.ok_or(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT)?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        check_rate(rate_hz)?;
        let ud = Ud(user_data);
        let f = Box::new(move |s: &mut [i16]| {
            let ud = &ud;
            // SAFETY: the app's callback with a valid writable buffer of `len` samples.
            unsafe { cb(ud.0, s.as_mut_ptr(), s.len(), rate_hz) }
        });
        put_source(out, Box::new(CallbackSource::new(rate_hz, f)));
        Ok(())
    })
}

/// One audio device.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rvoip_audio_device {
    /// Id to open it with, NUL-terminated (e.g. `alsa:default`).
    pub id: [c_char; 128],
    /// Human-readable name, NUL-terminated.
    pub name: [c_char; 128],
    /// Can capture.
    pub is_input: bool,
    /// Can play.
    pub is_output: bool,
    /// The system's default input or output.
    pub is_default: bool,
}

/// Lists audio devices into `out[0..capacity]`; `*count` gets the number of devices (also
/// when it exceeds `capacity`: then BUFFER_TOO_SMALL and the first `capacity` are filled).
/// `out` may be NULL when `capacity` is 0. Errors: NULL_ARGUMENT (`count`), BUFFER_TOO_SMALL,
/// UNSUPPORTED (built without audio devices), MEDIA (the audio system failed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_devices(
    out: *mut rvoip_audio_device,
    capacity: usize,
    count: *mut usize,
) -> rvoip_result {
    boundary(|| {
        if count.is_null() || (out.is_null() && capacity > 0) {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        let list = list_devices()?;
        // SAFETY: checked non-NULL.
        unsafe { write_out(count, list.len()) };
        for (i, d) in list.iter().take(capacity).enumerate() {
            let mut dev = rvoip_audio_device {
                id: [0; 128],
                name: [0; 128],
                is_input: d.is_input,
                is_output: d.is_output,
                is_default: d.is_default,
            };
            copy_into(&mut dev.id, &d.id);
            copy_into(&mut dev.name, &d.name);
            // SAFETY: i < capacity and the caller gave `capacity` writable elements.
            unsafe { write_out(out.add(i), dev) };
        }
        if list.len() > capacity {
            return Err(rvoip_result::RVOIP_RESULT_BUFFER_TOO_SMALL);
        }
        Ok(())
    })
}

#[cfg(feature = "audio-device")]
fn list_devices() -> Result<Vec<rvoip_sdk::media::device::AudioDevice>, rvoip_result> {
    rvoip_sdk::media::device::list_devices().map_err(|_| rvoip_result::RVOIP_RESULT_MEDIA)
}

#[cfg(not(feature = "audio-device"))]
fn list_devices() -> Result<Vec<DeviceStub>, rvoip_result> {
    Err(rvoip_result::RVOIP_RESULT_UNSUPPORTED)
}

#[cfg(not(feature = "audio-device"))]
struct DeviceStub {
    id: String,
    name: String,
    is_input: bool,
    is_output: bool,
    is_default: bool,
}

/// Opens a capture device by id (NULL: the default input).
/// Errors: NULL_ARGUMENT (`out`), NOT_FOUND (no such id), MEDIA, UNSUPPORTED.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_source_device_new(
    id: *const c_char,
    out: *mut *mut rvoip_audio_source,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a valid C string.
        let id = unsafe { opt_str_arg(id) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        put_source(out, open_input(id)?);
        Ok(())
    })
}

/// Opens a playback device by id (NULL: the default output). Errors: as
/// [`rvoip_audio_source_device_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rvoip_audio_sink_device_new(
    id: *const c_char,
    out: *mut *mut rvoip_audio_sink,
) -> rvoip_result {
    boundary(|| {
        // SAFETY: NULL or a valid C string.
        let id = unsafe { opt_str_arg(id) }?;
        if out.is_null() {
            return Err(rvoip_result::RVOIP_RESULT_NULL_ARGUMENT);
        }
        put_sink(out, open_output(id)?);
        Ok(())
    })
}

#[cfg(feature = "audio-device")]
fn device_err(e: rvoip_sdk::media::device::DeviceError) -> rvoip_result {
    match e {
        rvoip_sdk::media::device::DeviceError::NotFound(_) => rvoip_result::RVOIP_RESULT_NOT_FOUND,
        _ => rvoip_result::RVOIP_RESULT_MEDIA,
    }
}

#[cfg(feature = "audio-device")]
fn open_input(id: Option<&str>) -> Result<Box<dyn AudioSource>, rvoip_result> {
    Ok(Box::new(
        rvoip_sdk::media::device::DeviceSource::open(id).map_err(device_err)?,
    ))
}

#[cfg(feature = "audio-device")]
fn open_output(id: Option<&str>) -> Result<Box<dyn AudioSink>, rvoip_result> {
    Ok(Box::new(
        rvoip_sdk::media::device::DeviceSink::open(id).map_err(device_err)?,
    ))
}

#[cfg(not(feature = "audio-device"))]
fn open_input(_id: Option<&str>) -> Result<Box<dyn AudioSource>, rvoip_result> {
    Err(rvoip_result::RVOIP_RESULT_UNSUPPORTED)
}

#[cfg(not(feature = "audio-device"))]
fn open_output(_id: Option<&str>) -> Result<Box<dyn AudioSink>, rvoip_result> {
    Err(rvoip_result::RVOIP_RESULT_UNSUPPORTED)
}
