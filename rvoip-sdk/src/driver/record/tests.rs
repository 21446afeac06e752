use std::io::Cursor;
use std::sync::Mutex;
use std::sync::mpsc;

use super::*;
use crate::media::codec::{Encoder, new_encoder};
use crate::media::tone::{ToneGenerator, tone_fraction_blocks};

const RATE: u32 = 16_000;
const BLOCK: usize = 320;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A PCMU stream of a tone in 20 ms RTP packets (RFC 3550 §5.1, RFC 3551 payload type 0).
struct Pcmu {
    encoder: Box<dyn Encoder>,
    tone: ToneGenerator,
    seq: u16,
    ssrc: u32,
}

impl Pcmu {
    fn new(freq: f64, ssrc: u32) -> Pcmu {
        Pcmu {
            encoder: new_encoder(&AudioCodec::PCMU).unwrap(),
            tone: ToneGenerator::new(freq, 8000, 8000),
            seq: 0,
            ssrc,
        }
    }

    fn packet(&mut self) -> Vec<u8> {
        let mut pcm = [0i16; 160];
        self.tone.fill(&mut pcm);
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        self.encoder.encode(&pcm, &mut p).unwrap();
        self.seq = self.seq.wrapping_add(1);
        p
    }
}

const TELEPHONE_EVENT: AudioCodec = AudioCodec {
    name: "telephone-event",
    payload_type: 101,
    clock_rate: 8000,
    channels: 1,
};

/// Feeds `secs` of a call to recording `id`: 440 Hz from the caller and 1000 Hz from the
/// callee, 20 ms apart with a few ms of jitter, arriving from `base` on; a telephone-event
/// packet (not recorded) now and then.
fn feed_call(h: &RecorderHandle, id: RecordingId, base: Instant, secs: u64) {
    h.set_codecs(
        id,
        Side::Caller,
        vec![(0, AudioCodec::PCMU), (101, TELEPHONE_EVENT)],
    );
    h.set_codecs(id, Side::Callee, vec![(0, AudioCodec::PCMU)]);
    let (mut caller, mut callee) = (Pcmu::new(440.0, 0xca11), Pcmu::new(1000.0, 0xca1e));
    for i in 0..secs * 50 {
        let jitter = ms((i * 7) % 13);
        h.packet(
            id,
            Side::Caller,
            base + ms(20 * i) + jitter,
            &caller.packet(),
        );
        h.packet(
            id,
            Side::Callee,
            base + ms(20 * i + 5) + jitter,
            &callee.packet(),
        );
        if i % 10 == 0 {
            let dtmf = [0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0x0a, 0, 160];
            h.packet(id, Side::Caller, base + ms(20 * i + 1), &dtmf);
        }
    }
}

/// Left and right channels of a 16-bit stereo WAV, after checking its format.
fn read_wav<R: io::Read>(reader: hound::WavReader<R>) -> (Vec<i16>, Vec<i16>) {
    let spec = reader.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, RATE);
    assert_eq!(spec.bits_per_sample, 16);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// 440 Hz left, 1000 Hz right, neither leaking into the other, over `[from, to)` seconds.
fn assert_tones(left: &[i16], right: &[i16], from: f64, to: f64) {
    let (a, b) = ((from * 16_000.0) as usize, (to * 16_000.0) as usize);
    let (l, r) = (&left[a..b], &right[a..b]);
    let f = tone_fraction_blocks(l, 440.0, RATE, BLOCK);
    assert!(f >= 0.9, "left 440 Hz: {f}");
    let f = tone_fraction_blocks(r, 1000.0, RATE, BLOCK);
    assert!(f >= 0.9, "right 1000 Hz: {f}");
    let f = tone_fraction_blocks(l, 1000.0, RATE, BLOCK);
    assert!(f < 0.05, "left leaks 1000 Hz: {f}");
    let f = tone_fraction_blocks(r, 440.0, RATE, BLOCK);
    assert!(f < 0.05, "right leaks 440 Hz: {f}");
}

/// A directory of its own under the system's temporary directory.
fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("rvoip-record-{tag}-{}-{nanos}", std::process::id()))
}

/// A real file: the directory is created, the name is the UTC start and the sanitised
/// Call-ID, and the file reads back as 2 s of 16 kHz stereo with each party on its side.
#[test]
fn a_call_becomes_one_stereo_wav_file() {
    let top = temp_dir("file");
    let dir = top.join("calls");
    let recorder = Recorder::start(RecorderConfig::new(&dir)).unwrap();
    assert!(dir.is_dir());
    let h = recorder.handle();
    // The packets arrive from 1 s from now on: the thread's own drains (at the real `now`)
    // never overtake them however slowly this test is scheduled.
    let base = Instant::now() + ms(1000);
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let id = h.open("a84b4c76e66710@pc33.atlanta.example.com", wall, base);
    feed_call(&h, id, base, 2);
    h.close(id, base + ms(2000));
    drop(recorder);

    let stats = h.stats();
    assert_eq!(
        stats,
        RecorderStats {
            opened: 1,
            finished: 1,
            ..RecorderStats::default()
        }
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["20231114T221320Z_a84b4c76e66710_pc33.atlanta.example.com.wav"]
    );
    let path = dir.join(&names[0]);
    let (left, right) = read_wav(hound::WavReader::open(&path).unwrap());
    let secs = left.len() as f64 / f64::from(RATE);
    assert!((1.98..=2.05).contains(&secs), "{secs} s");
    assert_tones(&left, &right, 0.1, 1.95);
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size, 44 + 4 * left.len() as u64);
    std::fs::remove_dir_all(&top).unwrap();
}

/// A file that fails with "no space left on device" after some bytes.
struct FullDisk {
    written: usize,
    limit: usize,
    full: bool,
    /// Writes, seeks and flushes tried after the disk was full.
    after_full: Arc<AtomicUsize>,
}

impl Write for FullDisk {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.full {
            self.after_full.fetch_add(1, Ordering::Relaxed);
        }
        let room = self.limit - self.written;
        if room == 0 {
            self.full = true;
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let n = room.min(data.len());
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.full {
            self.after_full.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Seek for FullDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if self.full {
            self.after_full.fetch_add(1, Ordering::Relaxed);
        }
        match to {
            SeekFrom::Start(n) => Ok(n),
            _ => Ok(self.written as u64),
        }
    }
}

/// An in-memory file the test can read back.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Cursor<Vec<u8>>>>);

impl Write for Memory {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Memory {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.lock().unwrap().seek(to)
    }
}

/// The disk fills up during the first call: that recording stops (counted failed, the file
/// never touched again), nothing panics, and the next call is recorded whole.
#[test]
fn a_full_disk_stops_only_that_recording() {
    let after_full = Arc::new(AtomicUsize::new(0));
    let memory = Memory::default();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let open: OpenFile = {
        let (after_full, memory, paths) = (after_full.clone(), memory.clone(), paths.clone());
        Box::new(move |path: &Path| {
            let mut paths = paths.lock().unwrap();
            paths.push(path.to_path_buf());
            if paths.len() == 1 {
                Ok(Box::new(FullDisk {
                    written: 0,
                    limit: 50_000,
                    full: false,
                    after_full: after_full.clone(),
                }) as Box<dyn WriteSeek + Send>)
            } else {
                Ok(Box::new(memory.clone()) as Box<dyn WriteSeek + Send>)
            }
        })
    };
    let recorder = Recorder::start_with(RecorderConfig::new("/rec"), open).unwrap();
    let h = recorder.handle();
    let wall = UNIX_EPOCH + Duration::from_secs(951_782_400);

    // Call 1: 3 s is 192 kB of audio; the disk is full at 50 kB.
    let base = Instant::now() + ms(1000);
    let first = h.open("call 1/x", wall, base);
    feed_call(&h, first, base, 3);
    h.close(first, base + ms(3000));
    h.sync();
    let s = h.stats();
    assert_eq!((s.opened, s.finished, s.failed), (1, 0, 1), "{s:?}");
    // More for the stopped recording: ignored.
    feed_call(&h, first, base, 1);
    h.close(first, base + ms(4000));

    // Call 2, after the failure: recorded whole.
    let base = Instant::now() + ms(1000);
    let second = h.open("call-2", wall, base);
    feed_call(&h, second, base, 1);
    h.close(second, base + ms(1000));
    drop(recorder);

    let s = h.stats();
    assert_eq!(
        s,
        RecorderStats {
            opened: 2,
            finished: 1,
            failed: 1,
            ..RecorderStats::default()
        }
    );
    assert_eq!(
        after_full.load(Ordering::Relaxed),
        0,
        "the full file was written again"
    );
    assert_eq!(
        *paths.lock().unwrap(),
        [
            PathBuf::from("/rec/20000229T000000Z_call_1_x.wav"),
            PathBuf::from("/rec/20000229T000000Z_call-2.wav")
        ]
    );
    let bytes = memory.0.lock().unwrap().get_ref().clone();
    let (left, right) = read_wav(hound::WavReader::new(Cursor::new(bytes)).unwrap());
    let secs = left.len() as f64 / f64::from(RATE);
    assert!((0.98..=1.05).contains(&secs), "{secs} s");
    assert_tones(&left, &right, 0.1, 0.95);
}

/// While the thread is busy (here: stuck creating a file), the packet path never blocks: the
/// queue takes PACKET_QUEUE packets and the rest are dropped and counted; requests still get
/// through, and the recording is finished once the thread goes on.
#[test]
fn a_busy_thread_drops_packets_and_never_blocks() {
    let (release, wait) = mpsc::channel::<()>();
    let memory = Memory::default();
    let open: OpenFile = {
        let memory = memory.clone();
        Box::new(move |_: &Path| {
            let _ = wait.recv();
            Ok(Box::new(memory.clone()) as Box<dyn WriteSeek + Send>)
        })
    };
    let recorder = Recorder::start_with(RecorderConfig::new("/rec"), open).unwrap();
    let h = recorder.handle();
    let base = Instant::now() + ms(1000);
    let id = h.open("busy", SystemTime::now(), base);
    h.set_codecs(id, Side::Caller, vec![(0, AudioCodec::PCMU)]);
    let mut caller = Pcmu::new(440.0, 1);
    let packet = caller.packet();
    let extra = 500;
    for i in 0..(PACKET_QUEUE + extra) as u64 {
        h.packet(id, Side::Caller, base + ms(i), &packet);
    }
    h.packet(id, Side::Caller, base, &[0x80; MAX_PACKET_BYTES + 1]);
    assert_eq!(h.stats().dropped, extra as u64 + 1);
    h.close(id, base + ms(100));
    release.send(()).unwrap();
    drop(recorder);
    let s = h.stats();
    assert_eq!(
        (s.opened, s.finished, s.failed, s.requests_lost),
        (1, 1, 0, 0)
    );
    let bytes = memory.0.lock().unwrap().get_ref().clone();
    let (left, _) = read_wav(hound::WavReader::new(Cursor::new(bytes)).unwrap());
    assert!(left.iter().any(|&s| s != 0));
    // After the recorder is gone, a handle's requests and packets are counted, not sent.
    h.packet(id, Side::Caller, base, &packet);
    h.close(id, base);
    h.sync();
    let s = h.stats();
    assert_eq!((s.dropped, s.requests_lost), (extra as u64 + 2, 1));
}

#[test]
fn file_names_are_utc_and_safe() {
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
    assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
    assert_eq!(utc_stamp(at(1_700_000_000)), "20231114T221320Z");
    assert_eq!(utc_stamp(at(4_102_444_799)), "20991231T235959Z");
    assert_eq!(
        utc_stamp(UNIX_EPOCH - Duration::from_secs(5)),
        "19700101T000000Z"
    );
    // Day by day for 800 years against a plain calendar walk.
    let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
    for days in 0..(800 * 366) {
        assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d += 1;
        if d > len {
            (d, m) = (1, m + 1);
            if m > 12 {
                (m, y) = (1, y + 1);
            }
        }
    }
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert!(civil_from_days(i64::MAX).1 <= 12);

    let name = file_name("a b/c\\d..é@x;tag=1", at(0));
    assert_eq!(name, "19700101T000000Z_a_b_c_d..__x_tag_1");
    let long = "x".repeat(300);
    assert_eq!(
        file_name(&long, at(0)),
        format!("19700101T000000Z_{}", "x".repeat(100))
    );
    assert_eq!(file_name("", at(0)), "19700101T000000Z_");
}

#[test]
fn bad_rates_and_directories_are_refused() {
    let mut cfg = RecorderConfig::new(temp_dir("rate"));
    cfg.rate_hz = 1000;
    let e = Recorder::start(cfg.clone()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(!cfg.dir.exists());
    cfg.rate_hz = 96_000;
    assert!(
        Recorder::start_with(cfg, Box::new(|_: &Path| Err(io::Error::other("unused")))).is_err()
    );
    // A directory under a regular file cannot be made.
    let file = temp_dir("notadir");
    std::fs::write(&file, b"").unwrap();
    assert!(Recorder::start(RecorderConfig::new(file.join("calls"))).is_err());
    std::fs::remove_file(&file).unwrap();
    assert_eq!(RecorderConfig::default().rate_hz, 16_000);
}

/// A recording whose close never comes (lost in a full queue, or a call that ended unseen) is
/// finished once it got no packet for the idle timeout; one that keeps getting packets is not.
#[test]
fn an_idle_recording_is_finished_without_its_close() {
    let top = temp_dir("idle");
    let recorder = Recorder::start(RecorderConfig {
        idle_timeout: ms(300),
        ..RecorderConfig::new(&top)
    })
    .unwrap();
    let h = recorder.handle();
    let base = Instant::now();
    let id = h.open("idle@test", SystemTime::now(), base);
    feed_call(&h, id, base, 1);
    // No close: the thread finishes it by itself, within a few drain intervals after 300 ms
    // without packets (bounded wait, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.stats().finished == 0 && Instant::now() < deadline {
        std::thread::sleep(ms(50));
        h.sync();
    }
    assert_eq!(h.stats().finished, 1, "{:?}", h.stats());
    // The control: a close after that finds nothing to close, and nothing failed.
    h.close(id, Instant::now());
    drop(recorder);
    assert_eq!(
        h.stats(),
        RecorderStats {
            opened: 1,
            finished: 1,
            ..RecorderStats::default()
        }
    );
    std::fs::remove_dir_all(&top).unwrap();
}
