//! The sans-IO ng control core: datagrams in, reply datagrams out, media contexts created and
//! released on a [`RelayControl`]. No sockets, no clock of its own: the driver passes `now`
//! (monotonic, for timers and the reply cache) and the wall-clock time (for the `created` and
//! `last signal` fields, Unix seconds).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::bencode::{Limits, Value};
use super::cache::ReplyCache;
use super::request::{Command, MediaFlags, NgError, Request, split_cookie};
use crate::media::relay::{LegStats, MediaId, MediaStats, RelayEvent, Side};
use crate::server::relay::codecs::Format;
use crate::server::relay::sdp::{Sdp, Stream};
use crate::server::relay::{CallRecorder, RelayControl};

/// Limits and addresses of the ng control. Build with `NgConfig::new(advertise)`.
#[derive(Debug, Clone)]
pub struct NgConfig {
    /// The address written into rewritten SDP (`c=`, `o=`, `a=rtcp`).
    pub advertise: IpAddr,
    /// How long a reply stays cached for retransmissions. Default 30 s.
    pub reply_ttl: Duration,
    /// Most cached replies. Default 8192.
    pub reply_cache_entries: usize,
    /// Most bytes of cached replies and cookies. Default 16 MiB.
    pub reply_cache_bytes: usize,
    /// Most live calls (a call may hold no port, e.g. an offer without RTP streams). Default
    /// 100 000.
    pub max_calls: usize,
    /// A call offered but not answered this long after its last offer is deleted (its delete
    /// was lost, or never sent): longer than any ringing (RFC 3261 Timer C is > 3 min).
    /// Default 300 s.
    pub setup_timeout: Duration,
    /// Bounds on the bencode decoder (nesting depth, values per message).
    pub limits: Limits,
}

impl NgConfig {
    /// Defaults, writing `advertise` into SDP.
    pub fn new(advertise: IpAddr) -> NgConfig {
        NgConfig {
            advertise,
            reply_ttl: Duration::from_secs(30),
            reply_cache_entries: 8192,
            reply_cache_bytes: 16 << 20,
            max_calls: 100_000,
            setup_timeout: Duration::from_secs(300),
            limits: Limits::default(),
        }
    }
}

/// Counters of the ng control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NgStats {
    /// Requests answered (not from the cache).
    pub requests: u64,
    /// Of those, answered with `result: error`.
    pub errors: u64,
    /// Retransmissions answered from the reply cache.
    pub replayed: u64,
    /// Datagrams without a cookie, not answered.
    pub unanswerable: u64,
    /// Calls deleted because no media flowed (the relay's media timeout).
    pub media_timeouts: u64,
    /// Calls deleted because they were never answered within `setup_timeout`.
    pub setup_timeouts: u64,
}

/// One call as the ng control knows it.
#[derive(Debug)]
struct NgCall {
    /// Unix time of the first offer, in µs.
    created_us: u64,
    /// Unix time of the last offer/answer, in s.
    last_signal: u64,
    /// The last offer/answer, monotonic (for `setup_timeout`).
    last_signal_at: Instant,
    /// An answer was seen.
    answered: bool,
    /// Contexts whose media timed out; the call ends when all have.
    timed_out: Vec<MediaId>,
    /// The tag of the party that sent the first offer ([`Side::Caller`]) and of the answerer.
    tags: [String; 2],
    /// (m-line index, context).
    streams: Vec<(usize, MediaId)>,
    /// The transport protocol of each side's last SDP, per m-line index.
    protos: [Vec<(usize, String)>; 2],
    /// Last `o=` version received from each party and the version written toward the other.
    versions: [Option<(u64, u64)>; 2],
    /// `record-call` was asked for.
    record: bool,
    /// The call's recording, once answered.
    recording: Option<u64>,
    /// Each party's payload formats of the first audio stream (what a recording decodes).
    formats: [Vec<Format>; 2],
    /// That stream's m-line index, and whether either party made it SRTP (not recorded).
    audio_index: Option<usize>,
    secure_audio: bool,
}

/// The ng control core over a relay `R`.
pub struct NgControl<R: RelayControl> {
    relay: R,
    cfg: NgConfig,
    calls: HashMap<String, NgCall>,
    by_media: HashMap<MediaId, String>,
    cache: ReplyCache,
    stats: NgStats,
    /// Where `record-call` calls are recorded; `None`: recording off.
    recorder: Option<Box<dyn CallRecorder>>,
}

fn index(side: Side) -> usize {
    match side {
        Side::Caller => 0,
        Side::Callee => 1,
    }
}

/// Most bytes of call-ids in a `list` reply (a UDP datagram carries at most 65 507).
const MAX_LIST_BYTES: usize = 60_000;

fn dict(items: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        items
            .into_iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v))
            .collect(),
    )
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn error_reply(e: &NgError) -> Value {
    dict(vec![
        ("result", Value::text("error")),
        ("error-reason", Value::text(&e.to_string())),
    ])
}

fn unix(wall: SystemTime) -> Duration {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl<R: RelayControl> NgControl<R> {
    /// A control with no call over `relay`.
    pub fn new(relay: R, cfg: NgConfig) -> NgControl<R> {
        NgControl {
            cache: ReplyCache::new(
                cfg.reply_ttl,
                cfg.reply_cache_entries,
                cfg.reply_cache_bytes,
            ),
            relay,
            cfg,
            calls: HashMap::new(),
            by_media: HashMap::new(),
            stats: NgStats::default(),
            recorder: None,
        }
    }

    /// Records the calls whose offer or answer carries the `record-call` flag into `recorder`
    /// (one stereo recording per call, its first audio stream: caller left, callee right; from
    /// the answer until `delete` or the call's end). Without a recorder the flag is logged only.
    pub fn with_recorder(mut self, recorder: Box<dyn CallRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Starts or updates the recording of `call_id` (see [`NgControl::with_recorder`]).
    fn update_recording(&mut self, now: Instant, call_id: &str) {
        let (Some(call), Some(recorder)) = (self.calls.get_mut(call_id), self.recorder.as_mut())
        else {
            return;
        };
        if !call.record || !call.answered {
            return;
        }
        if call.secure_audio {
            if call.recording.is_none() {
                tracing::info!(%call_id, "ng: an SRTP call is not recorded (no keys at the relay)");
                call.record = false;
            }
            return;
        }
        let Some(&(_, id)) = call
            .streams
            .iter()
            .find(|(i, _)| Some(*i) == call.audio_index)
        else {
            return;
        };
        let rec = match call.recording {
            Some(rec) => rec,
            None => {
                let rec = recorder.open(call_id, now);
                let _ = self.relay.set_recording(id, Some(rec));
                call.recording = Some(rec);
                tracing::info!(%call_id, recording = rec, "ng: recording the call");
                rec
            }
        };
        for side in [Side::Caller, Side::Callee] {
            let codecs = call.formats[index(side)]
                .iter()
                .filter_map(|f| f.codec().map(|c| (f.pt, c)))
                .collect();
            recorder.set_codecs(rec, side, codecs);
        }
    }

    /// Handles one datagram `cookie SP bencoded-dictionary` from `from`, received at `now`
    /// (monotonic) and `wall` (wall clock), and returns the reply datagram (`cookie SP
    /// dictionary`), or `None` for a datagram without a usable cookie (nothing to match a reply
    /// by; rtpengine stays silent too). A retransmission (same client, same cookie, within
    /// `reply_ttl`) gets the cached reply byte for byte and changes nothing. Every fault is an
    /// error reply with an `error-reason`. Never panics, whatever the bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        let Some((cookie, body)) = split_cookie(datagram) else {
            self.stats.unanswerable += 1;
            return None;
        };
        if let Some(cached) = self.cache.get(now, from, cookie, body) {
            self.stats.replayed += 1;
            return Some(cached.to_vec());
        }
        self.stats.requests += 1;
        let reply = match Request::decode(body, &self.cfg.limits) {
            Ok(req) => self.execute(now, wall, req),
            Err(e) => Err(e),
        };
        let value = reply.unwrap_or_else(|e| {
            self.stats.errors += 1;
            tracing::debug!(%from, error = %e, "ng: error reply");
            error_reply(&e)
        });
        let mut out = Vec::with_capacity(cookie.len() + 64);
        out.extend_from_slice(cookie);
        out.push(b' ');
        value.encode_into(&mut out);
        self.cache.insert(now, from, cookie, body, &out);
        Some(out)
    }

    fn execute(&mut self, now: Instant, wall: SystemTime, req: Request) -> Result<Value, NgError> {
        match req.command {
            Command::Ping => Ok(dict(vec![("result", Value::text("pong"))])),
            Command::Offer | Command::Answer => self.offer_answer(now, wall, &req),
            Command::Delete => {
                let call_id = req.call_id.as_deref().unwrap_or_default();
                let call = self.calls.remove(call_id).ok_or(NgError::UnknownCall)?;
                if let (Some(rec), Some(recorder)) = (call.recording, self.recorder.as_mut()) {
                    recorder.close(rec, now);
                }
                let mut stats = Vec::with_capacity(call.streams.len());
                for (_, id) in &call.streams {
                    self.by_media.remove(id);
                    stats.push(self.relay.release(*id).unwrap_or_default());
                }
                tracing::debug!(%call_id, "ng: call deleted");
                Ok(self.call_report(&call, &stats))
            }
            Command::Query => {
                let call_id = req.call_id.as_deref().unwrap_or_default();
                let call = self.calls.get(call_id).ok_or(NgError::UnknownCall)?;
                let stats: Vec<MediaStats> = call
                    .streams
                    .iter()
                    .map(|(_, id)| self.relay.media_stats(*id).unwrap_or_default())
                    .collect();
                Ok(self.call_report(call, &stats))
            }
            Command::List => {
                // At most `limit` call-ids, and no more than fit in one UDP reply.
                let mut size = 0;
                let calls = self
                    .calls
                    .keys()
                    .take(req.limit)
                    .take_while(|c| {
                        size += c.len() + 8;
                        size <= MAX_LIST_BYTES
                    })
                    .map(|c| Value::text(c))
                    .collect();
                Ok(dict(vec![
                    ("result", Value::text("ok")),
                    ("calls", Value::List(calls)),
                ]))
            }
        }
    }

    /// Offer (the SDP of the `from-tag` party) or answer (the SDP of the `to-tag` party):
    /// records where that party receives, and returns its SDP rewritten for the other party:
    /// the relay's address and the ports of the legs facing the other party (where it must
    /// send).
    fn offer_answer(
        &mut self,
        now: Instant,
        wall: SystemTime,
        req: &Request,
    ) -> Result<Value, NgError> {
        let call_id = req.call_id.clone().unwrap_or_default();
        let from_tag = req.from_tag.clone().unwrap_or_default();
        let body = req.sdp.clone().unwrap_or_default();
        let sdp = Sdp::parse(&body).map_err(NgError::BadSdp)?;
        let t = unix(wall);
        // Which party sent this SDP.
        let sender = match (req.command, self.calls.get(&call_id)) {
            (Command::Offer, None) => Side::Caller,
            (Command::Offer, Some(c)) if c.tags[1] == from_tag && c.tags[0] != from_tag => {
                Side::Callee
            }
            (Command::Offer, Some(_)) => Side::Caller,
            (Command::Answer, None) => return Err(NgError::UnknownCall),
            (Command::Answer, Some(c)) if c.tags[0] == from_tag => Side::Callee,
            (Command::Answer, Some(c)) if c.tags[1] == from_tag => Side::Caller,
            (Command::Answer, Some(_)) => return Err(NgError::UnknownTag),
            _ => return Err(NgError::UnknownCommand),
        };
        if let Some(to) = &req.flags.transport_protocol {
            for s in &sdp.streams {
                if !s.proto.eq_ignore_ascii_case(to) {
                    return Err(NgError::TransportConversion {
                        from: s.proto.clone(),
                        to: to.clone(),
                    });
                }
            }
        }
        if req.flags.record_call && self.recorder.is_none() {
            tracing::info!(%call_id, "ng: record-call asked, but recording is off (--recording-dir)");
        }
        let fresh = !self.calls.contains_key(&call_id);
        if fresh {
            if self.calls.len() >= self.cfg.max_calls {
                return Err(NgError::CallLimit);
            }
            self.calls.insert(
                call_id.clone(),
                NgCall {
                    created_us: u64::try_from(t.as_micros()).unwrap_or(u64::MAX),
                    last_signal: t.as_secs(),
                    last_signal_at: now,
                    answered: false,
                    timed_out: Vec::new(),
                    tags: [from_tag.clone(), String::new()],
                    streams: Vec::new(),
                    protos: [Vec::new(), Vec::new()],
                    versions: [None, None],
                    record: false,
                    recording: None,
                    formats: [Vec::new(), Vec::new()],
                    audio_index: None,
                    secure_audio: false,
                },
            );
        }
        let toward = sender.other();
        let mut created = Vec::new();
        let mut ports = Vec::with_capacity(sdp.streams.len());
        for s in &sdp.streams {
            let existing = self.calls.get(&call_id).and_then(|c| {
                c.streams
                    .iter()
                    .find(|(i, _)| *i == s.index)
                    .map(|(_, id)| *id)
            });
            let id = match existing {
                Some(id) => id,
                None => match self.relay.create(now) {
                    Ok(id) => {
                        created.push((s.index, id));
                        id
                    }
                    Err(e) => {
                        tracing::warn!(%call_id, error = %e, "ng: cannot allocate relay ports");
                        for (_, id) in created {
                            self.relay.release(id);
                        }
                        if fresh {
                            self.calls.remove(&call_id);
                        }
                        return Err(NgError::NoPorts);
                    }
                },
            };
            let stream = self.effective_stream(s, &req.flags, req.received_from);
            let _ = self.relay.set_remote(id, sender, &stream);
            let _ = self.relay.set_latching(id, sender, req.flags.latching);
            if let Some(port) = self.relay.local_port(id, toward) {
                ports.push((s.index, port));
            }
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err(NgError::UnknownCall);
        };
        for (i, id) in created {
            call.streams.push((i, id));
            self.by_media.insert(id, call_id.clone());
        }
        call.last_signal = t.as_secs();
        call.last_signal_at = now;
        match (req.command, sender) {
            (Command::Answer, Side::Callee) => {
                call.tags[1] = req.to_tag.clone().unwrap_or_default();
            }
            (Command::Offer, Side::Caller) if call.tags[0].is_empty() => {
                call.tags[0] = from_tag;
            }
            _ => {}
        }
        call.protos[index(sender)] = sdp
            .streams
            .iter()
            .map(|s| (s.index, s.proto.clone()))
            .collect();
        if req.command == Command::Answer {
            call.answered = true;
            for (_, id) in &call.streams {
                self.relay.confirm(now, *id);
            }
        }
        call.record |= req.flags.record_call;
        if let Some(first) = sdp.streams.iter().find(|s| sdp.is_audio(s.index)) {
            call.formats[index(sender)] = sdp.formats(first.index);
            call.audio_index = Some(first.index);
            call.secure_audio |= first.secure;
        }
        let in_version = sdp.version();
        let slot = &mut call.versions[index(sender)];
        let out_version = match *slot {
            Some((last_in, last_out)) if last_in == in_version => last_out,
            Some((_, last_out)) => last_out.saturating_add(1),
            None => in_version,
        };
        *slot = Some((in_version, out_version));
        let origin = req.flags.replace_origin.then_some(out_version);
        let out = sdp.rewrite(self.cfg.advertise, &ports, origin);
        self.update_recording(now, &call_id);
        Ok(dict(vec![
            ("result", Value::text("ok")),
            ("sdp", Value::Bytes(Bytes::from(out))),
        ]))
    }

    /// The stream as the relay must use it: with `SIP-source-address`, at the `received-from`
    /// address (the SIP source) instead of the SDP's.
    fn effective_stream(
        &self,
        s: &Stream,
        flags: &MediaFlags,
        received_from: Option<IpAddr>,
    ) -> Stream {
        let mut s = s.clone();
        if flags.sip_source_address
            && let Some(ip) = received_from
            && !ip.is_unspecified()
        {
            s.rtp.set_ip(ip);
            if let Some(r) = s.rtcp.as_mut() {
                r.set_ip(ip);
            }
        }
        s
    }

    /// The reply of query and delete: `created`, `last signal`, per-tag details and `totals`
    /// (packets and bytes that entered the relay, RTP and RTCP, over every stream and party).
    fn call_report(&self, call: &NgCall, stats: &[MediaStats]) -> Value {
        let mut total = LegStats::default();
        let mut rtcp_bytes = 0u64;
        for m in stats {
            for l in [&m.caller, &m.callee] {
                total.packets += l.packets;
                total.bytes += l.bytes;
                total.rtcp_packets += l.rtcp_packets;
                total.dropped_foreign += l.dropped_foreign;
                rtcp_bytes += l.rtcp_bytes;
            }
        }
        let created_s = call.created_us / 1_000_000;
        let mut tags = Vec::new();
        for side in [Side::Caller, Side::Callee] {
            let tag = &call.tags[index(side)];
            if tag.is_empty() || (side == Side::Callee && *tag == call.tags[0]) {
                continue;
            }
            let medias = call
                .streams
                .iter()
                .zip(stats)
                .map(|((i, id), m)| {
                    let leg = if side == Side::Caller {
                        &m.caller
                    } else {
                        &m.callee
                    };
                    let proto = call.protos[index(side)]
                        .iter()
                        .find(|(j, _)| j == i)
                        .map(|(_, p)| p.as_str())
                        .unwrap_or("RTP/AVP");
                    let port = self.relay.local_port(*id, side).unwrap_or(0);
                    let mut stream = vec![
                        ("local port", int(u64::from(port))),
                        (
                            "stats",
                            dict(vec![
                                ("packets", int(leg.packets)),
                                ("bytes", int(leg.bytes)),
                                ("errors", int(leg.dropped_foreign)),
                            ]),
                        ),
                    ];
                    if let Some(a) = leg.latched {
                        stream.push((
                            "endpoint",
                            dict(vec![
                                (
                                    "family",
                                    Value::text(if a.is_ipv4() { "IPv4" } else { "IPv6" }),
                                ),
                                ("address", Value::text(&a.ip().to_string())),
                                ("port", int(u64::from(a.port()))),
                            ]),
                        ));
                    }
                    dict(vec![
                        ("index", int(*i as u64 + 1)),
                        ("type", Value::text("audio")),
                        ("protocol", Value::text(proto)),
                        ("streams", Value::List(vec![dict(stream)])),
                    ])
                })
                .collect();
            let other = &call.tags[index(side.other())];
            let mut t = vec![
                ("tag", Value::text(tag)),
                ("created", int(created_s)),
                ("medias", Value::List(medias)),
            ];
            if !other.is_empty() {
                t.push(("in dialogue with", Value::text(other)));
            }
            tags.push((Bytes::copy_from_slice(tag.as_bytes()), dict(t)));
        }
        let counts = |packets: u64, bytes: u64, errors: u64| {
            dict(vec![
                ("packets", int(packets)),
                ("bytes", int(bytes)),
                ("errors", int(errors)),
            ])
        };
        dict(vec![
            ("result", Value::text("ok")),
            ("created", int(created_s)),
            ("created_us", int(call.created_us % 1_000_000)),
            ("last signal", int(call.last_signal)),
            ("tags", Value::Dict(tags)),
            (
                "totals",
                dict(vec![
                    (
                        "RTP",
                        counts(total.packets, total.bytes, total.dropped_foreign),
                    ),
                    ("RTCP", counts(total.rtcp_packets, rtcp_bytes, 0)),
                ]),
            ),
        ])
    }

    /// When [`NgControl::handle_timeout`] must run (the relay's timers, when it runs none of
    /// its own; the driver also calls it every second to collect media timeouts).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.relay.poll_timeout()
    }

    /// Runs the relay's timers and deletes, as rtpengine does, every call whose streams all
    /// timed out (no packet in either direction for the relay's `media_timeout` after the
    /// answer), and every call not answered within `setup_timeout` of its last offer. Returns
    /// the call-ids deleted. The driver calls it about once a second.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<String> {
        self.relay.handle_timeout(now);
        let mut ended = Vec::new();
        while let Some(ev) = self.relay.poll_event() {
            let RelayEvent::MediaTimeout { id } = ev else {
                continue;
            };
            let Some(call_id) = self.by_media.get(&id).cloned() else {
                continue;
            };
            let all_silent = self.calls.get_mut(&call_id).is_some_and(|c| {
                if !c.timed_out.contains(&id) {
                    c.timed_out.push(id);
                }
                c.streams.iter().all(|(_, s)| c.timed_out.contains(s))
            });
            if all_silent {
                self.stats.media_timeouts += 1;
                tracing::info!(%call_id, "ng: call deleted after its media timed out");
                self.remove_call(&call_id);
                ended.push(call_id);
            }
        }
        let limit = self.cfg.setup_timeout;
        let stale: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                !c.answered && now.saturating_duration_since(c.last_signal_at) >= limit
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in stale {
            self.stats.setup_timeouts += 1;
            tracing::info!(%call_id, "ng: call deleted: offered but never answered");
            self.remove_call(&call_id);
            ended.push(call_id);
        }
        ended
    }

    /// Forgets `call_id` and frees its relay contexts.
    fn remove_call(&mut self, call_id: &str) {
        if let Some(call) = self.calls.remove(call_id) {
            if let (Some(rec), Some(recorder)) = (call.recording, self.recorder.as_mut()) {
                recorder.close(rec, call.last_signal_at);
            }
            for (_, id) in &call.streams {
                self.by_media.remove(id);
                self.relay.release(*id);
            }
        }
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The counters.
    pub fn stats(&self) -> NgStats {
        self.stats
    }

    /// The relay under this control (ports in use, statistics).
    pub fn relay(&mut self) -> &mut R {
        &mut self.relay
    }
}
