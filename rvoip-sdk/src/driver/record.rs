//! Call recording to disk: one stereo WAV file per call (caller left, callee right), written by
//! one thread ("rvoip-recorder") off the packet path.
//!
//! The relay's packet thread hands each RTP packet to a [`RecorderHandle`] (a copy into a
//! bounded queue, never blocking: a full queue drops the packet and counts it); the recorder
//! thread feeds it to the call's sans-IO [`StereoRecorder`], and every [`DRAIN_INTERVAL`]
//! writes the final samples (16-bit PCM, the configured rate, RIFF/WAVE through `hound`).
//!
//! A write error (a full disk, ENOSPC, or anything else) stops that recording only: nothing is
//! written to it again, a `tracing` warning names the file and the error once, and further
//! packets for it are ignored. The call and every other recording go on.
//!
//! Files are named `<UTC start, YYYYMMDDTHHMMSSZ>_<Call-ID>.wav` (RFC 3261 §8.1.1.4 Call-ID,
//! every character outside `[A-Za-z0-9._-]` replaced by `_`, at most [`MAX_CALL_ID_CHARS`]);
//! an existing name gets `-2`, `-3`… before `.wav`.

#![warn(missing_docs)]

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::media::record::{MAX_RATE_HZ, MIN_RATE_HZ, StereoRecorder};
use crate::media::relay::Side;
use crate::sdp::AudioCodec;
use crate::sip::msg::civil_from_days;

/// Packets the queue to the recorder thread holds at most (about 40 s of one call's two
/// 20 ms streams, or 400 ms of 100 calls'); more are dropped and counted.
pub const PACKET_QUEUE: usize = 4096;

/// Queue slots kept for requests (open, codecs, close, sync) beyond [`PACKET_QUEUE`], so that
/// a queue full of packets never loses a call's start or end.
pub const REQUEST_RESERVE: usize = 256;

/// Longest RTP packet recorded, in bytes; longer ones are dropped and counted.
pub const MAX_PACKET_BYTES: usize = 2048;

/// How often the thread writes out the final samples of every open recording.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// How often an open recording's WAV header is brought up to date (so that a file of a process
/// that died is readable up to this point).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// The longest Call-ID part of a file name, in characters.
pub const MAX_CALL_ID_CHARS: usize = 100;

/// Bytes buffered per recording before a write to the file.
const WRITE_BUFFER: usize = 64 * 1024;

/// `hound` and RIFF count a WAV file's data bytes in 32 bits: a recording ends (finished, not
/// failed) a little before 4 GiB (about 18 h at 16 kHz stereo).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - (1 << 20);

/// A file a recording is written to: anything that writes and seeks (`hound` rewrites the
/// header sizes at the end).
pub trait WriteSeek: Write + Seek {}

impl<T: Write + Seek + ?Sized> WriteSeek for T {}

/// Creates the file at a path for [`Recorder::start_with`]. An
/// [`io::ErrorKind::AlreadyExists`] error makes the recorder try the next name (`-2`, `-3`…).
pub type OpenFile = Box<dyn FnMut(&Path) -> io::Result<Box<dyn WriteSeek + Send>> + Send>;

/// Where and how calls are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The directory the WAV files go to (created by [`Recorder::start`] if missing).
    pub dir: PathBuf,
    /// The files' sample rate in Hz, both channels (8000..=48000). Default
    /// [`RecorderConfig::DEFAULT_RATE_HZ`].
    pub rate_hz: u32,
    /// A recording that got no packet for this long is finished, as if closed: its close
    /// request may have been lost (a queue full of packets) or its call ended unseen. Default
    /// [`RecorderConfig::DEFAULT_IDLE`].
    pub idle_timeout: Duration,
}

impl RecorderConfig {
    /// The default file rate: 16000 Hz, G.722's audio rate (G.711 is upsampled to it).
    pub const DEFAULT_RATE_HZ: u32 = 16_000;

    /// The default idle timeout: 10 minutes without a packet from either party.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

    /// Files in `dir` at the default rate and idle timeout.
    pub fn new(dir: impl Into<PathBuf>) -> RecorderConfig {
        RecorderConfig {
            dir: dir.into(),
            rate_hz: Self::DEFAULT_RATE_HZ,
            idle_timeout: Self::DEFAULT_IDLE,
        }
    }
}

impl Default for RecorderConfig {
    /// Files in `./recordings` at 16000 Hz.
    fn default() -> Self {
        RecorderConfig::new("recordings")
    }
}

/// One recording (one call), named by [`RecorderHandle::open`]. Never reused within a
/// [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingId(pub u64);

/// The recorder's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Files created (header written).
    pub opened: u64,
    /// Files finished and closed with correct header sizes.
    pub finished: u64,
    /// Recordings that could not be created or stopped on a write error.
    pub failed: u64,
    /// Packets dropped before the recorder thread: the queue was full, the packet longer than
    /// [`MAX_PACKET_BYTES`], or the recorder stopped.
    pub dropped: u64,
    /// Requests (open, codecs, close) lost because the queue was full or the recorder stopped.
    pub requests_lost: u64,
}

/// Counters shared by the handles and the thread.
#[derive(Debug, Default)]
struct Counters {
    next_id: AtomicU64,
    /// Packets in the queue (admitted by `packet`, not yet taken by the thread).
    queued: AtomicUsize,
    opened: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    requests_lost: AtomicU64,
}

impl Counters {
    fn stats(&self) -> RecorderStats {
        RecorderStats {
            opened: self.opened.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            requests_lost: self.requests_lost.load(Ordering::Relaxed),
        }
    }
}

/// What the handles ask the thread.
enum Request {
    Open {
        id: u64,
        /// The file name without `.wav`.
        name: String,
        now: Instant,
    },
    Codecs {
        id: u64,
        side: Side,
        codecs: Vec<(u8, AudioCodec)>,
    },
    Packet {
        id: u64,
        side: Side,
        arrival: Instant,
        rtp: Box<[u8]>,
    },
    Close {
        id: u64,
        now: Instant,
    },
    /// Answered once everything before it is handled and written.
    Sync(SyncSender<()>),
    Stop,
}

/// Feeds the recorder thread. Cheap to clone; every method returns at once (except
/// [`RecorderHandle::sync`]) and none fails: problems are counted in [`RecorderStats`] and
/// logged.
#[derive(Clone)]
pub struct RecorderHandle {
    tx: SyncSender<Request>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RecorderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RecorderHandle {
    /// Starts recording the call `call_id` (RFC 3261 §8.1.1.4) that began at `wall` (names
    /// the file, in UTC) and at `now` (sample 0 of the file; the clock of the packets'
    /// arrival instants). The file is created on the recorder thread; if that fails the
    /// recording counts as failed and its packets are ignored.
    pub fn open(&self, call_id: &str, wall: SystemTime, now: Instant) -> RecordingId {
        let id = self.counters.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let name = file_name(call_id, wall);
        self.request(Request::Open { id, name, now });
        RecordingId(id)
    }

    /// Sets the payload types of `side`'s packets (from the SDP, RFC 4566 §6 `a=rtpmap`).
    /// Payload types not listed (telephone-event, RFC 4733) are not recorded.
    pub fn set_codecs(&self, id: RecordingId, side: Side, codecs: Vec<(u8, AudioCodec)>) {
        self.request(Request::Codecs {
            id: id.0,
            side,
            codecs,
        });
    }

    /// Records one plain RTP packet (RFC 3550 §5.1; the relay never taps SRTP) from `side`, received at
    /// `arrival`. For the packet path: never blocks, allocates only the packet's copy; a full
    /// queue drops the packet (counted in [`RecorderStats::dropped`]).
    pub fn packet(&self, id: RecordingId, side: Side, arrival: Instant, rtp: &[u8]) {
        let c = &self.counters;
        if rtp.len() > MAX_PACKET_BYTES {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if c.queued.fetch_add(1, Ordering::Relaxed) >= PACKET_QUEUE {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let request = Request::Packet {
            id: id.0,
            side,
            arrival,
            rtp: Box::from(rtp),
        };
        if self.tx.try_send(request).is_err() {
            c.queued.fetch_sub(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the recording at `now`: the rest of its audio is written, then the WAV header sizes,
    /// and `recording finished` is logged (info) with the path, seconds and bytes.
    pub fn close(&self, id: RecordingId, now: Instant) {
        self.request(Request::Close { id: id.0, now });
    }

    /// Waits until the thread has handled every earlier request and packet of this handle and
    /// written the final samples and header of every open recording. Blocks (not for the packet
    /// path); returns at once if the recorder stopped.
    pub fn sync(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Request::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// The recorder's counters.
    pub fn stats(&self) -> RecorderStats {
        self.counters.stats()
    }

    fn request(&self, request: Request) {
        match self.tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.requests_lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("recorder queue full: a recording request is lost");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.requests_lost.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("recorder stopped: a recording request is lost");
            }
        }
    }
}

/// The recorder thread. Dropping it finishes every open recording and joins the thread.
pub struct Recorder {
    handle: RecorderHandle,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Recorder {
    /// Starts the recorder thread writing files in `cfg.dir`, which is created if missing.
    /// Errors: the directory cannot be created, the rate is outside 8000..=48000 Hz
    /// ([`io::ErrorKind::InvalidInput`]), the thread cannot start.
    pub fn start(cfg: RecorderConfig) -> io::Result<Recorder> {
        check_rate(cfg.rate_hz)?;
        std::fs::create_dir_all(&cfg.dir)?;
        let open: OpenFile = Box::new(|path: &Path| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            Ok(Box::new(file) as Box<dyn WriteSeek + Send>)
        });
        Recorder::start_with(cfg, open)
    }

    /// [`Recorder::start`] with files made by `open` (tests; other storage), given the path
    /// `<cfg.dir>/<name>.wav`. The directory is not created. The recorder buffers writes
    /// itself ([`WRITE_BUFFER`] per file): `open` need not.
    /// Errors: as [`Recorder::start`], less the directory.
    pub fn start_with(cfg: RecorderConfig, open: OpenFile) -> io::Result<Recorder> {
        check_rate(cfg.rate_hz)?;
        let (tx, rx) = sync_channel(PACKET_QUEUE + REQUEST_RESERVE);
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            dir: cfg.dir.clone(),
            rate_hz: cfg.rate_hz,
            idle_timeout: cfg.idle_timeout,
            create: open,
            recordings: HashMap::new(),
            counters: counters.clone(),
            scratch: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("rvoip-recorder".into())
            .spawn(move || worker.run(rx))?;
        Ok(Recorder {
            handle: RecorderHandle { tx, counters },
            thread: Some(thread),
            dir: cfg.dir,
        })
    }

    /// A handle to feed the recorder (for the relay's packet thread and the SIP side).
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// The recorder's counters.
    pub fn stats(&self) -> RecorderStats {
        self.handle.stats()
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A blocking send: the thread is alive until it takes `Stop`, so this waits at most
        // until it has made room.
        let _ = self.handle.tx.send(Request::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Refuses a file rate outside [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`] ([`io::ErrorKind::InvalidInput`]).
fn check_rate(rate_hz: u32) -> io::Result<()> {
    if (MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("recording rate {rate_hz} Hz is outside {MIN_RATE_HZ}..={MAX_RATE_HZ}"),
    ))
}

/// `<UTC YYYYMMDDTHHMMSSZ>_<Call-ID, sanitised>`: the file name without `.wav`.
fn file_name(call_id: &str, wall: SystemTime) -> String {
    let safe: String = call_id
        .chars()
        .take(MAX_CALL_ID_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}_{safe}", utc_stamp(wall))
}

/// `wall` in UTC as ISO 8601 basic format, `YYYYMMDDTHHMMSSZ` (whole seconds; a time before
/// 1970 is written as 1970-01-01T00:00:00Z).
fn utc_stamp(wall: SystemTime) -> String {
    let secs = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let of_day = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// What a [`Fuse`] and its recording share: whether the recording stopped, and the file's size.
#[derive(Debug, Default)]
struct FuseState {
    stopped: AtomicBool,
    size: AtomicU64,
}

/// A recording's file: buffers writes and, after the first error (or when its recording stops),
/// refuses every write, seek and flush without touching the file again (`hound` rewrites the
/// header when dropped; a full disk must not see that).
struct Fuse {
    inner: Box<dyn WriteSeek + Send>,
    buf: Vec<u8>,
    /// The logical position (the file's, plus what is buffered).
    pos: u64,
    state: Arc<FuseState>,
}

impl Fuse {
    fn new(inner: Box<dyn WriteSeek + Send>) -> Fuse {
        Fuse {
            inner,
            buf: Vec::with_capacity(WRITE_BUFFER),
            pos: 0,
            state: Arc::default(),
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.state.stopped.load(Ordering::Relaxed) {
            Err(io::Error::other("recording stopped"))
        } else {
            Ok(())
        }
    }

    /// Records an error of the file: nothing is written again.
    fn blow<T>(&mut self, e: io::Error) -> io::Result<T> {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.buf = Vec::new();
        Err(e)
    }

    fn write_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.inner.write_all(&self.buf) {
            Ok(()) => {
                self.buf.clear();
                Ok(())
            }
            Err(e) => self.blow(e),
        }
    }
}

impl Write for Fuse {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if self.buf.len() + data.len() > WRITE_BUFFER {
            self.write_buffered()?;
        }
        if data.len() > WRITE_BUFFER {
            if let Err(e) = self.inner.write_all(data) {
                return self.blow(e);
            }
        } else {
            self.buf.extend_from_slice(data);
        }
        self.pos += data.len() as u64;
        self.state.size.fetch_max(self.pos, Ordering::Relaxed);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.write_buffered()?;
        match self.inner.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.blow(e),
        }
    }
}

impl Seek for Fuse {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.check()?;
        self.write_buffered()?;
        match self.inner.seek(to) {
            Ok(pos) => {
                self.pos = pos;
                Ok(pos)
            }
            Err(e) => self.blow(e),
        }
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        if self.check().is_ok() {
            let _ = self.write_buffered();
        }
    }
}

/// One open recording on the thread.
struct Recording {
    path: PathBuf,
    core: StereoRecorder,
    wav: hound::WavWriter<Fuse>,
    file: Arc<FuseState>,
    next_checkpoint: Instant,
    /// The latest arrival of a packet (or the opening).
    last_packet: Instant,
}

/// Why a recording stops early.
enum Stop {
    /// A write failed.
    Failed(String),
    /// The file reached the WAV size limit: finish it.
    Full,
}

/// The recorder thread's state.
struct Worker {
    dir: PathBuf,
    rate_hz: u32,
    /// See [`RecorderConfig::idle_timeout`].
    idle_timeout: Duration,
    /// Creates a recording's file.
    create: OpenFile,
    recordings: HashMap<u64, Recording>,
    counters: Arc<Counters>,
    /// Reused sample buffer.
    scratch: Vec<i16>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Request>) {
        let mut next_drain = Instant::now() + DRAIN_INTERVAL;
        loop {
            let wait = next_drain.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(request) => self.handle(request),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_drain {
                self.drain_all(now);
                next_drain = now + DRAIN_INTERVAL;
            }
        }
        let now = Instant::now();
        let ids: Vec<u64> = self.recordings.keys().copied().collect();
        for id in ids {
            if let Some(rec) = self.recordings.remove(&id) {
                self.finish(rec, now);
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Open { id, name, now } => self.open(id, &name, now),
            Request::Codecs { id, side, codecs } => {
                if let Some(rec) = self.recordings.get_mut(&id) {
                    rec.core.set_codecs(side, &codecs);
                }
            }
            Request::Packet {
                id,
                side,
                arrival,
                rtp,
            } => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                if let Some(rec) = self.recordings.get_mut(&id) {
                    rec.core.push_rtp(side, arrival, &rtp);
                    rec.last_packet = rec.last_packet.max(arrival);
                }
            }
            Request::Close { id, now } => {
                if let Some(rec) = self.recordings.remove(&id) {
                    self.finish(rec, now);
                }
            }
            Request::Sync(reply) => {
                let now = Instant::now();
                self.drain_all(now);
                let ids: Vec<u64> = self.recordings.keys().copied().collect();
                for id in ids {
                    self.checkpoint(id, now);
                }
                let _ = reply.send(());
            }
            Request::Stop => {}
        }
    }

    /// Creates the file (the next free name) and writes the WAV header.
    fn open(&mut self, id: u64, name: &str, now: Instant) {
        let mut path = self.dir.join(format!("{name}.wav"));
        let mut n = 1;
        let file = loop {
            match (self.create)(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                    n += 1;
                    path = self.dir.join(format!("{name}-{n}.wav"));
                }
                other => break other,
            }
        };
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: self.rate_hz,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let made = file.map_err(|e| e.to_string()).and_then(|f| {
            let fuse = Fuse::new(f);
            let state = fuse.state.clone();
            hound::WavWriter::new(fuse, spec)
                .map(|wav| (wav, state))
                .map_err(|e| e.to_string())
        });
        match made {
            Ok((wav, file)) => {
                self.counters.opened.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), "recording started");
                self.recordings.insert(
                    id,
                    Recording {
                        path,
                        core: StereoRecorder::new(now, self.rate_hz),
                        wav,
                        file,
                        next_checkpoint: now + CHECKPOINT_INTERVAL,
                        last_packet: now,
                    },
                );
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), %error, "recording not started");
            }
        }
    }

    /// Writes the final samples of every recording; stops those whose writes fail.
    fn drain_all(&mut self, now: Instant) {
        let mut stopped = Vec::new();
        for (&id, rec) in &mut self.recordings {
            self.scratch.clear();
            rec.core.drain(now, &mut self.scratch);
            if let Err(stop) = write(rec, &self.scratch) {
                stopped.push((id, stop));
            }
        }
        for (id, stop) in stopped {
            self.stop(id, stop, now);
        }
        let due: Vec<u64> = self
            .recordings
            .iter()
            .filter(|(_, r)| r.next_checkpoint <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.checkpoint(id, now);
        }
        let idle: Vec<u64> = self
            .recordings
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.last_packet) >= self.idle_timeout)
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            if let Some(rec) = self.recordings.remove(&id) {
                tracing::info!(path = %rec.path.display(), "recording idle: finishing it");
                self.finish(rec, now);
            }
        }
    }

    /// Brings the header of recording `id` up to date and flushes it to the file.
    fn checkpoint(&mut self, id: u64, now: Instant) {
        let Some(rec) = self.recordings.get_mut(&id) else {
            return;
        };
        rec.next_checkpoint = now + CHECKPOINT_INTERVAL;
        if let Err(e) = rec.wav.flush() {
            self.stop(id, Stop::Failed(e.to_string()), now);
        }
    }

    /// Ends recording `id` early: a failure (counted, logged once, nothing written again) or a
    /// full file (finished).
    fn stop(&mut self, id: u64, stop: Stop, now: Instant) {
        let Some(rec) = self.recordings.remove(&id) else {
            return;
        };
        match stop {
            Stop::Failed(error) => self.fail(rec, &error),
            Stop::Full => {
                tracing::info!(path = %rec.path.display(), "recording reached the WAV size limit");
                self.finish(rec, now);
            }
        }
    }

    fn fail(&self, rec: Recording, error: &str) {
        rec.file.stopped.store(true, Ordering::Relaxed);
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %rec.path.display(), %error, "recording stopped: write error");
    }

    /// Writes the rest of the audio (up to `now`) and the header sizes, and closes the file.
    fn finish(&mut self, mut rec: Recording, now: Instant) {
        self.scratch.clear();
        rec.core.drain(now, &mut self.scratch);
        rec.core.finish(&mut self.scratch);
        match write(&mut rec, &self.scratch) {
            Ok(()) | Err(Stop::Full) => {}
            Err(Stop::Failed(error)) => return self.fail(rec, &error),
        }
        let Recording {
            path,
            wav,
            file,
            core,
            ..
        } = rec;
        let seconds = f64::from(wav.duration()) / f64::from(core.rate_hz());
        match wav.finalize() {
            Ok(()) => {
                self.counters.finished.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    path = %path.display(),
                    seconds,
                    bytes = file.size.load(Ordering::Relaxed),
                    "recording finished"
                );
            }
            Err(e) => {
                file.stopped.store(true, Ordering::Relaxed);
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), error = %e, "recording stopped: write error");
            }
        }
    }
}

/// Appends interleaved samples to the recording's file; at the WAV size limit, only what fits.
fn write(rec: &mut Recording, samples: &[i16]) -> Result<(), Stop> {
    let written = u64::from(rec.wav.len()) * 2;
    let room = usize::try_from(MAX_DATA_BYTES.saturating_sub(written) / 4 * 2).unwrap_or(0);
    let fits = samples.get(..room).unwrap_or(samples);
    for &s in fits {
        rec.wav
            .write_sample(s)
            .map_err(|e| Stop::Failed(e.to_string()))?;
    }
    if fits.len() < samples.len() {
        return Err(Stop::Full);
    }
    Ok(())
}

impl crate::media::relay::MediaTap for RecorderHandle {
    fn packet(&mut self, recording: u64, side: Side, arrival: Instant, rtp: &[u8]) {
        RecorderHandle::packet(self, RecordingId(recording), side, arrival, rtp);
    }
}

impl crate::server::relay::CallRecorder for RecorderHandle {
    fn open(&mut self, call_id: &str, now: Instant) -> u64 {
        RecorderHandle::open(self, call_id, SystemTime::now(), now).0
    }
    fn set_codecs(&mut self, recording: u64, side: Side, codecs: Vec<(u8, AudioCodec)>) {
        RecorderHandle::set_codecs(self, RecordingId(recording), side, codecs);
    }
    fn close(&mut self, recording: u64, now: Instant) {
        RecorderHandle::close(self, RecordingId(recording), now);
    }
}
