//! A command-line softphone over `rvoip_sdk::api`: registers an account, places or answers one
//! call, plays a tone or a WAV file, records what it hears, sends DTMF, hangs up after a while,
//! and prints every event and the final statistics.
//!
//! ```sh
//! # callee (registers, answers the first call)
//! cargo run --release --features opus --example softphone -- --account sip:bob@127.0.0.1 \
//!     --password bob-secret --auto-answer --play tone:1000 --record bob.wav --duration 10
//! # caller
//! cargo run --release --features opus --example softphone -- --account sip:alice@127.0.0.1 \
//!     --password alice-secret --call sip:bob@127.0.0.1 --play tone:440 --record alice.wav \
//!     --dtmf 123# --duration 5
//! ```
//!
//! Over TLS (the server's `tls:` listener, default port 5061), trusting a CA file or pinning the
//! certificate's SHA-256 fingerprint that `rvoip-server` prints at start:
//!
//! ```sh
//! cargo run --release --features opus --example softphone -- --account sip:alice@192.0.2.10 \
//!     --password alice-secret --server 192.0.2.10:5061 --tls --tls-pin AB:CD:… --call sip:bob@192.0.2.10
//! ```
//!
//! Without `--play`/`--record` the system's default devices are used (`audio-device` feature),
//! else silence is sent and received audio is dropped. Exit status 0 when a call was connected
//! and ended normally, 1 otherwise.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

mod features;
use features::{FeatureArgs, Features};
use rvoip_sdk::api::{
    AccountOptions, AudioCodec, AudioSink, AudioSource, CallOptions, CallState, Endpoint,
    EndpointConfig, Event, RegistrationState, SrtpConfig, SrtpKeying, SrtpPolicy, TlsOptions,
    Transport,
};
use rvoip_sdk::media::audio::{SharedSink, ToneSource, WavSink, WavSource};

/// rvoip command-line softphone.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Account AOR to register, e.g. sip:alice@127.0.0.1
    #[arg(long)]
    account: Option<String>,
    /// Password of the account.
    #[arg(long, default_value = "")]
    password: String,
    /// Registrar / outbound proxy host[:port] (default: the AOR's host).
    #[arg(long)]
    server: Option<String>,
    /// Use TCP to the server (default UDP).
    #[arg(long, conflicts_with = "tls")]
    tcp: bool,
    /// Use TLS to the server (default port 5061). The server's certificate is verified against
    /// the system roots, plus --tls-ca, or accepted by its --tls-pin fingerprint.
    #[arg(long)]
    tls: bool,
    /// With --tls: a PEM file of extra trusted CA certificates.
    #[arg(long, requires = "tls")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls: the SHA-256 fingerprint of the server's certificate (AB:CD:…, as rvoip-server
    /// prints it); that certificate is accepted whatever signed it.
    #[arg(long, requires = "tls")]
    tls_pin: Option<String>,
    /// SRTP policy of the calls (RFC 3711): off, optional (default: SRTP when offered) or
    /// mandatory (SRTP or no call).
    #[arg(long, default_value = "optional")]
    srtp: String,
    /// Key exchange of our SRTP offers: auto (SDES over TLS, else DTLS-SRTP), sdes or dtls.
    #[arg(long, default_value = "auto")]
    srtp_keying: String,
    /// Allow SDES keys (a=crypto) in SDP over unencrypted signalling.
    #[arg(long)]
    sdes_insecure: bool,
    /// Check that the call's media was SRTP keyed this way (sdes, dtls) or plain (none), from
    /// the statistics before hangup, with no SRTP authentication failure; exit 1 if not.
    #[arg(long)]
    expect_srtp: Option<String>,
    /// Succeed only if the call ends with this SIP status (e.g. 488 for a refused offer) and
    /// print the reason.
    #[arg(long)]
    expect_status: Option<u16>,
    /// Call this URI, e.g. sip:bob@127.0.0.1 (through the account's server when registered).
    #[arg(long, conflicts_with = "auto_answer")]
    call: Option<String>,
    /// Answer the first incoming call.
    #[arg(long)]
    auto_answer: bool,
    /// Reject incoming calls with this status instead of answering (e.g. 486).
    #[arg(long)]
    reject: Option<u16>,
    /// Answer every instant message (RFC 3428 MESSAGE) with a MESSAGE back to its sender,
    /// carrying `echo: ` and the text received (needs --account).
    #[arg(long, requires = "account")]
    echo_messages: bool,
    /// What to send: tone:HZ or a WAV file path.
    #[arg(long)]
    play: Option<String>,
    /// Record what we receive to this WAV file (16 kHz mono).
    #[arg(long)]
    record: Option<String>,
    /// Check at the end that what we received carries this tone (≥ 90 % of the energy of the
    /// last half of the call at HZ, Goertzel per 20 ms block, so a jitter-buffer phase jump does
    /// not count); exit 1 if not.
    #[arg(long)]
    expect_tone: Option<f64>,
    /// Minimum energy share for --expect-tone (0..1).
    #[arg(long, default_value_t = 0.9)]
    expect_share: f64,
    /// DTMF digits to send once connected (RFC 4733), e.g. 123#.
    #[arg(long)]
    dtmf: Option<String>,
    /// Hang up this many seconds after the call is connected.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Give up if nothing happens for this many seconds (registration, answer).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Local SIP address (UDP and TCP), e.g. 0.0.0.0:5062; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Codecs in preference order: opus,g722,pcmu,pcma.
    #[arg(long, value_delimiter = ',')]
    codecs: Vec<String>,
    /// Receive loss emulation in percent (testing concealment and statistics).
    #[arg(long, default_value_t = 0.0)]
    rx_loss: f32,
    /// List audio devices and exit (audio-device feature).
    #[arg(long)]
    list_devices: bool,
    /// Input device id (audio-device feature; see --list-devices).
    #[arg(long)]
    input_device: Option<String>,
    /// Output device id (audio-device feature; see --list-devices).
    #[arg(long)]
    output_device: Option<String>,
    #[command(flatten)]
    features: FeatureArgs,
}

const RECORD_RATE: u32 = 16_000;

/// The URI of a From/To header value: `"Name" <sip:a@b>;tag=x` or `sip:a@b;tag=x` → `sip:a@b`.
fn uri_of(name_addr: &str) -> &str {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if a < b => &name_addr[a + 1..b],
        _ => name_addr.split(';').next().unwrap_or(name_addr).trim(),
    }
}

fn codec(name: &str) -> Option<AudioCodec> {
    match name.to_ascii_lowercase().as_str() {
        "pcmu" | "g711u" | "ulaw" => Some(AudioCodec::PCMU),
        "pcma" | "g711a" | "alaw" => Some(AudioCodec::PCMA),
        "g722" => Some(AudioCodec::G722),
        "opus" => Some(AudioCodec::OPUS),
        _ => None,
    }
}

fn source(args: &Args) -> Result<Option<Box<dyn AudioSource>>, String> {
    match &args.play {
        Some(p) if p.starts_with("tone:") => {
            let hz: f64 = p[5..].parse().map_err(|_| format!("bad tone {p}"))?;
            Ok(Some(Box::new(ToneSource::new(hz, RECORD_RATE, 10_000))))
        }
        Some(p) => {
            let w = WavSource::open(std::path::Path::new(p)).map_err(|e| format!("{p}: {e}"))?;
            Ok(Some(Box::new(w)))
        }
        None => device_source(args),
    }
}

fn sink(args: &Args, capture: &SharedSink) -> Result<Option<Box<dyn AudioSink>>, String> {
    if args.expect_tone.is_some() {
        // Captured in memory for the check; --record is written from it at the end.
        return Ok(Some(Box::new(capture.clone())));
    }
    match &args.record {
        Some(p) => {
            let w = WavSink::create(std::path::Path::new(p), RECORD_RATE)
                .map_err(|e| format!("{p}: {e}"))?;
            Ok(Some(Box::new(w)))
        }
        None => device_sink(args),
    }
}

#[cfg(feature = "audio-device")]
fn device_source(args: &Args) -> Result<Option<Box<dyn AudioSource>>, String> {
    match &args.input_device {
        Some(id) => rvoip_sdk::media::device::DeviceSource::open(Some(id))
            .map(|d| Some(Box::new(d) as Box<dyn AudioSource>))
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

#[cfg(not(feature = "audio-device"))]
fn device_source(args: &Args) -> Result<Option<Box<dyn AudioSource>>, String> {
    match &args.input_device {
        Some(_) => Err("built without the audio-device feature".into()),
        None => Ok(None),
    }
}

#[cfg(feature = "audio-device")]
fn device_sink(args: &Args) -> Result<Option<Box<dyn AudioSink>>, String> {
    match &args.output_device {
        Some(id) => rvoip_sdk::media::device::DeviceSink::open(Some(id))
            .map(|d| Some(Box::new(d) as Box<dyn AudioSink>))
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

#[cfg(not(feature = "audio-device"))]
fn device_sink(args: &Args) -> Result<Option<Box<dyn AudioSink>>, String> {
    match &args.output_device {
        Some(_) => Err("built without the audio-device feature".into()),
        None => Ok(None),
    }
}

#[cfg(feature = "audio-device")]
fn list_devices() -> ExitCode {
    match rvoip_sdk::media::device::list_devices() {
        Ok(list) => {
            for d in list {
                println!("{d:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("softphone: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "audio-device"))]
fn list_devices() -> ExitCode {
    eprintln!("softphone: built without the audio-device feature");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.list_devices {
        return list_devices();
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("softphone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn srtp_config(args: &Args) -> Result<SrtpConfig, String> {
    let policy = match args.srtp.as_str() {
        "off" => SrtpPolicy::Off,
        "optional" => SrtpPolicy::Optional,
        "mandatory" => SrtpPolicy::Mandatory,
        other => return Err(format!("--srtp {other}: off, optional or mandatory")),
    };
    let keying = match args.srtp_keying.as_str() {
        "auto" => SrtpKeying::Auto,
        "sdes" => SrtpKeying::Sdes,
        "dtls" => SrtpKeying::Dtls,
        other => return Err(format!("--srtp-keying {other}: auto, sdes or dtls")),
    };
    Ok(SrtpConfig {
        policy,
        keying,
        sdes_over_insecure: args.sdes_insecure,
    })
}

fn run(args: &Args) -> Result<bool, String> {
    let srtp = srtp_config(args)?;
    let mut cfg = EndpointConfig {
        udp: Some(args.listen),
        tcp: Some(args.listen),
        rx_loss_percent: args.rx_loss,
        srtp,
        ..EndpointConfig::default()
    };
    if !args.codecs.is_empty() {
        cfg.codecs = args
            .codecs
            .iter()
            .map(|c| codec(c).ok_or(format!("unknown codec {c}")))
            .collect::<Result<_, _>>()?;
    }
    let ep = Endpoint::new(cfg).map_err(|e| e.to_string())?;
    let mut capture = SharedSink::new(RECORD_RATE);
    let start = Instant::now();
    let say = |what: &str| println!("[{:7.3}] {what}", start.elapsed().as_secs_f64());
    say(&format!("listening on {:?}", ep.local_addrs()));
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));

    let account = match &args.account {
        Some(aor) => {
            let mut o = AccountOptions::new(aor, &args.password);
            o.server = args.server.clone();
            o.srtp = srtp;
            if args.features.dtmf_info {
                o.dtmf_mode = rvoip_sdk::api::DtmfMode::SipInfo;
            }
            if args.tcp {
                o.transport = Transport::Tcp;
            }
            if args.tls {
                o.transport = Transport::Tls;
                o.tls = TlsOptions {
                    ca_file: args.tls_ca.clone(),
                    pin_sha256: args.tls_pin.clone(),
                };
            }
            let acc = ep.add_account(o).map_err(|e| e.to_string())?;
            acc.register().map_err(|e| e.to_string())?;
            let end = Instant::now() + timeout;
            loop {
                let Some(ev) = ep.next_event(end.saturating_duration_since(Instant::now())) else {
                    return Err("registration timed out".into());
                };
                say(&format!("{ev:?}"));
                match ev {
                    Event::RegistrationState {
                        state: RegistrationState::Registered { .. },
                        ..
                    } => break,
                    Event::RegistrationState {
                        state: RegistrationState::Failed { status, reason, .. },
                        ..
                    } => return Err(format!("registration failed: {status} {reason}")),
                    _ => {}
                }
            }
            Some(acc)
        }
        None => None,
    };
    let mut feats = Features::default();
    if let Some(a) = &account {
        feats.start(&args.features, a, &say);
    }
    let session = Features::wants_session(&args.features);

    let mut call = match &args.call {
        Some(target) => {
            let opts = CallOptions {
                source: source(args)?,
                sink: sink(args, &capture)?,
            };
            let c = ep
                .make_call(account.as_ref(), target, opts)
                .map_err(|e| e.to_string())?;
            say(&format!("calling {target}"));
            Some(c)
        }
        None if args.auto_answer || args.reject.is_some() || session => {
            say("waiting for a call");
            None
        }
        None => {
            if let Some(a) = &account {
                let _ = a.unregister();
                std::thread::sleep(Duration::from_millis(300));
            }
            return Ok(true);
        }
    };

    let mut connected_at: Option<Instant> = None;
    let mut dtmf_sent = false;
    let mut ok = false;
    let mut last_activity = Instant::now();
    let mut hung_up = false;
    let mut hung_up_at: Option<Instant> = None;
    // The call's statistics: the periodic and final `Statistics` events, or before our hangup.
    let mut last_stats: Option<rvoip_sdk::api::CallStats> = None;
    let deadline = Instant::now() + timeout;
    loop {
        if session && call.is_none() && !args.auto_answer && feats.session_done(&args.features) {
            say("all expected events seen");
            ok = true;
            break;
        }
        if session && call.is_none() && Instant::now() > deadline {
            say("timed out");
            // Ringing until the end is what --ring-only asks for.
            ok = args.features.ring_only;
            break;
        }
        let ev = ep.next_event(Duration::from_millis(50));
        if let Some(ev) = ev {
            last_activity = Instant::now();
            let fresh = SharedSink::new(RECORD_RATE);
            let new_call = feats.on_event(
                &args.features,
                &ep,
                &ev,
                || CallOptions {
                    source: source(args).ok().flatten(),
                    sink: sink(args, &fresh).ok().flatten(),
                },
                &say,
            );
            if feats.take_hangup() {
                if let Some(c) = call.as_ref() {
                    say("transfer done: hanging up the transferred call");
                    hung_up = true;
                    let _ = c.hangup();
                }
            }
            if let Some(c) = new_call {
                // Follow the transfer's new call: its audio is what --expect-tone checks.
                capture = fresh;
                call = Some(c);
                connected_at = None;
                dtmf_sent = false;
                hung_up = false;
            }
            if let Event::Statistics { stats, .. } = &ev {
                last_stats = Some(stats.clone());
            }
            match &ev {
                Event::Statistics { stats, .. } => say(&format!(
                    "statistics: codec {} tx {} pkts/{} B, rx {} pkts/{} B, lost {} ({:.1} %), \
                     jitter {:.1} ms, rtt {}, MOS {:.2}, dtmf rx {}",
                    stats.codec,
                    stats.tx_packets,
                    stats.tx_bytes,
                    stats.rx_packets,
                    stats.rx_bytes,
                    stats.rx_lost,
                    stats.rx_loss_fraction * 100.0,
                    stats.jitter_ms,
                    stats
                        .rtt_ms
                        .map_or("n/a".to_string(), |r| format!("{r:.1} ms")),
                    stats.mos,
                    stats.dtmf_received
                )),
                other => say(&format!("{other:?}")),
            }
            match ev {
                Event::IncomingCall { call: id, .. } if args.features.ring_only => {
                    say(&format!("letting {id:?} ring"));
                }
                Event::IncomingCall { call: id, .. } if call.is_none() => {
                    let c = ep.call(id).map_err(|e| e.to_string())?;
                    if let Some(status) = args.reject {
                        c.reject(status).map_err(|e| e.to_string())?;
                        ok = true;
                    } else {
                        c.answer(CallOptions {
                            source: source(args)?,
                            sink: sink(args, &capture)?,
                        })
                        .map_err(|e| e.to_string())?;
                    }
                    call = Some(c);
                }
                Event::MessageReceived {
                    from,
                    content_type,
                    body,
                    ..
                } if args.echo_messages => {
                    if let Some(a) = &account {
                        let to = uri_of(&from);
                        let mut text = b"echo: ".to_vec();
                        text.extend_from_slice(&body);
                        match a.send_message(to, &content_type, &text) {
                            Ok(id) => say(&format!("echo {id:?} sent to {to}")),
                            Err(e) => say(&format!("echo to {to} not sent: {e}")),
                        }
                    }
                }
                Event::IncomingCall { call: id, .. } => {
                    // One call at a time.
                    if let Ok(c) = ep.call(id) {
                        let _ = c.reject(486);
                    }
                }
                Event::CallState { call: id, state }
                    if call.as_ref().is_some_and(|c| c.id() == id) =>
                {
                    match state {
                        CallState::Connected if connected_at.is_none() => {
                            connected_at = Some(Instant::now())
                        }
                        CallState::Ended { status, reason } => {
                            let normal = connected_at.is_some() && status == 200;
                            ok = match args.expect_status {
                                Some(want) => {
                                    say(&format!("call ended: {status} {reason}"));
                                    status == want
                                }
                                None => ok || normal || (args.reject == Some(status)),
                            };
                            break;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let (Some(at), Some(c)) = (connected_at, call.as_ref()) {
            feats.on_connected_tick(&args.features, c, at.elapsed().as_secs_f64(), &say);
            if !dtmf_sent && at.elapsed() >= Duration::from_millis(500) {
                if let Some(d) = &args.dtmf {
                    match c.send_dtmf(d) {
                        Ok(()) => say(&format!("sent DTMF {d}")),
                        Err(e) => say(&format!("DTMF not sent: {e}")),
                    }
                }
                dtmf_sent = true;
            }
            if !hung_up && at.elapsed() >= Duration::from_secs_f64(args.duration) {
                if let Ok(st) = c.stats() {
                    say(&format!("final statistics: {st:?}"));
                    last_stats = Some(st);
                }
                say("hanging up");
                hung_up = true;
                hung_up_at = Some(Instant::now());
                // An error means the call ended already (the peer's BYE crossed ours): its
                // Ended event is queued and ends the loop.
                let _ = c.hangup();
            }
            if hung_up_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                say("no end of call after our hangup");
                break;
            }
        } else if connected_at.is_none() && last_activity.elapsed() > timeout {
            say("timed out");
            if let Some(c) = &call {
                let _ = c.hangup();
            }
            break;
        }
    }
    // Let the last events (final statistics, BYE response) arrive, then unregister.
    let end = Instant::now() + Duration::from_millis(300);
    while let Some(ev) = ep.next_event(end.saturating_duration_since(Instant::now())) {
        say(&format!("{ev:?}"));
        let _ = feats.on_event(&args.features, &ep, &ev, CallOptions::default, &say);
    }
    if let Some(a) = &account {
        let _ = a.unregister();
        let end = Instant::now() + Duration::from_millis(500);
        while let Some(ev) = ep.next_event(end.saturating_duration_since(Instant::now())) {
            say(&format!("{ev:?}"));
            if matches!(
                ev,
                Event::RegistrationState {
                    state: RegistrationState::Unregistered,
                    ..
                }
            ) {
                break;
            }
        }
    }
    ep.shutdown();
    let feats_ok = feats.check(&args.features, &say);
    let ok = ok && feats_ok;
    let mut srtp_ok = true;
    if let Some(want) = &args.expect_srtp {
        let st = last_stats.unwrap_or_default();
        let keying = st.srtp_keying.unwrap_or("none");
        srtp_ok =
            keying.eq_ignore_ascii_case(want) && st.srtp_auth_failures == 0 && st.rx_packets > 0;
        say(&format!(
            "srtp check: {keying} {} ({} rx packets, {} auth failures, {} replays): {}",
            st.srtp_suite.unwrap_or("-"),
            st.rx_packets,
            st.srtp_auth_failures,
            st.srtp_replays,
            if srtp_ok { "ok" } else { "FAILED" }
        ));
    }
    if let Some(hz) = args.expect_tone {
        let samples = capture.samples();
        if let Some(path) = &args.record {
            let mut w = WavSink::create(std::path::Path::new(path), RECORD_RATE)
                .map_err(|e| format!("{path}: {e}"))?;
            w.write(&samples).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
        }
        let tail = samples.get(samples.len() / 2..).unwrap_or(&[]);
        if tail.len() < RECORD_RATE as usize / 2 {
            say(&format!(
                "tone check: only {} samples received",
                samples.len()
            ));
            return Ok(false);
        }
        // Per 20 ms block: one Goertzel over the whole tail cancels out on a phase jump.
        let block = RECORD_RATE as usize / 50;
        let share = rvoip_sdk::media::tone::tone_fraction_blocks(tail, hz, RECORD_RATE, block);
        let pass = share >= args.expect_share;
        // For the log only: the whole-tail measure drops when the tone's phase jumped.
        let whole = rvoip_sdk::media::tone::tone_energy_fraction(tail, hz, RECORD_RATE);
        say(&format!(
            "tone check: {:.2} % of the received energy at {hz} Hz, per 20 ms block ({}; \
             whole tail at once: {:.1} %)",
            share * 100.0,
            if pass { "ok" } else { "FAILED" },
            whole * 100.0
        ));
        return Ok(ok && pass && srtp_ok);
    }
    Ok(ok && srtp_ok)
}
