//! Device tests on an ALSA null/file device (no sound card needed), and the pure parts.
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
