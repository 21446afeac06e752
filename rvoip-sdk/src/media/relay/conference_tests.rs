//! Conference rooms on the sans-IO relay, on simulated time: SDK media sessions in G.711,
//! G.722 and Opus join one room; each hears the others (N−1 mixing) and not itself; a member
//! that leaves is heard no more; `*6` mutes and unmutes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::media::audio::{SharedSink, ToneSource};
use crate::media::session::{MediaConfig, MediaSession};
use crate::media::tone::tone_fraction_blocks;
use crate::sdp::AudioCodec;

const RELAY_IP: [u8; 4] = [192, 0, 2, 1];

struct Party {
    addr: SocketAddr,
    id: MediaId,
    session: MediaSession,
    heard: SharedSink,
    tone: f64,
    here: bool,
}

struct Room {
    relay: Relay,
    parties: Vec<Party>,
    now: Instant,
}

fn spec(codec: AudioCodec) -> TranscodeSpec {
    TranscodeSpec {
        telephone_event: Some(101),
        ..TranscodeSpec::new(codec)
    }
}

impl Room {
    fn new(members: &[(AudioCodec, f64)]) -> Room {
        let now = Instant::now();
        let mut relay = Relay::new(RelayConfig {
            port_min: 40000,
            port_max: 40099,
            ..RelayConfig::default()
        });
        let mut parties = Vec::new();
        for (i, &(codec, tone)) in members.iter().enumerate() {
            let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 4000));
            let id = relay.create(now).expect("create");
            relay
                .set_remote(id, Side::Caller, addr, None, false, codec.clock_rate)
                .expect("sdp");
            relay.join_room(now, id, 7, spec(codec)).expect("join");
            let port = relay.local_port(id, Side::Caller).expect("port");
            let mut cfg = MediaConfig::new(codec, SocketAddr::from((RELAY_IP, port)));
            cfg.telephone_event_pt = Some(101);
            let heard = SharedSink::new(8000);
            let session = MediaSession::with_seed(
                cfg,
                Box::new(ToneSource::new(tone, 8000, 6000)),
                Box::new(heard.clone()),
                now,
                i as u64 + 1,
            )
            .expect("session");
            parties.push(Party {
                addr,
                id,
                session,
                heard,
                tone,
                here: true,
            });
        }
        assert_eq!(relay.room_size(7), members.len());
        Room {
            relay,
            parties,
            now,
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let next = self
                .parties
                .iter()
                .filter(|p| p.here)
                .filter_map(|p| p.session.poll_timeout())
                .chain(self.relay.poll_timeout())
                .min()
                .unwrap_or(end);
            self.now = next.max(self.now + Duration::from_micros(100)).min(end);
            let now = self.now;
            self.relay.handle_timeout(now);
            for p in self.parties.iter_mut().filter(|p| p.here) {
                p.session.handle_timeout(now);
                while let Some(t) = p.session.poll_transmit() {
                    let port = self.relay.local_port(p.id, Side::Caller).expect("port")
                        + u16::from(t.rtcp);
                    let mut b = t.bytes.to_vec();
                    assert!(
                        self.relay
                            .handle_datagram(now, port, p.addr, &mut b)
                            .is_none()
                    );
                }
                while p.session.poll_event().is_some() {}
            }
            while let Some(t) = self.relay.poll_transmit() {
                if let Some(p) = self
                    .parties
                    .iter_mut()
                    .find(|p| p.here && p.addr.ip() == t.dest.ip())
                {
                    p.session.handle_datagram(
                        now,
                        SocketAddr::from((RELAY_IP, t.from_port)),
                        t.bytes,
                        t.from_port % 2 == 1,
                    );
                }
            }
        }
    }

    /// The share of the last `secs` that party `i` heard at `hz`.
    fn heard(&self, i: usize, hz: f64, secs: usize) -> f64 {
        let s = self.parties[i].heard.samples();
        let tail = &s[s.len().saturating_sub(8000 * secs)..];
        tone_fraction_blocks(tail, hz, 8000, 160)
    }

    fn leave(&mut self, i: usize) {
        self.parties[i].here = false;
        assert!(self.relay.leave_room(self.parties[i].id));
    }
}

fn members() -> Vec<(AudioCodec, f64)> {
    let third = if crate::media::codec::is_available(&AudioCodec::OPUS) {
        AudioCodec::OPUS
    } else {
        AudioCodec::PCMA
    };
    vec![
        (AudioCodec::PCMU, 440.0),
        (AudioCodec::G722, 660.0),
        (third, 880.0),
    ]
}

#[test]
fn three_members_hear_the_two_others_and_not_themselves() {
    let mut r = Room::new(&members());
    r.run(Duration::from_secs(3));
    for i in 0..3 {
        let own = r.parties[i].tone;
        for j in (0..3).filter(|&j| j != i) {
            let other = r.parties[j].tone;
            let share = r.heard(i, other, 2);
            assert!(share >= 0.25, "member {i} hears {other} Hz at {share:.3}");
        }
        let share = r.heard(i, own, 2);
        assert!(
            share < 0.05,
            "member {i} hears itself ({own} Hz) at {share:.3}"
        );
    }
    // One leaves: the two others still hear each other, and the leaver no more.
    r.leave(2);
    assert_eq!(r.relay.room_size(7), 2);
    r.run(Duration::from_secs(2));
    assert!(r.heard(0, 660.0, 1) >= 0.9, "{}", r.heard(0, 660.0, 1));
    assert!(r.heard(1, 440.0, 1) >= 0.9, "{}", r.heard(1, 440.0, 1));
    assert!(r.heard(0, 880.0, 1) < 0.05 && r.heard(1, 880.0, 1) < 0.05);
    // The last two leave: the room is gone, and the relay's mixing clock with it.
    r.leave(0);
    r.leave(1);
    assert_eq!(r.relay.room_size(7), 0);
}

#[test]
fn star_six_mutes_and_unmutes_a_member() {
    let mut r = Room::new(&members()[..2]);
    r.run(Duration::from_secs(2));
    assert!(r.heard(0, 660.0, 1) >= 0.9);
    r.parties[1].session.send_dtmf("*6").expect("dtmf");
    r.run(Duration::from_secs(2));
    assert_eq!(r.relay.is_muted(r.parties[1].id), Some(true));
    let ev = std::iter::from_fn(|| r.relay.poll_event()).collect::<Vec<_>>();
    assert!(
        ev.contains(&RelayEvent::MemberMuted {
            id: r.parties[1].id,
            muted: true
        }),
        "{ev:?}"
    );
    let muted = r.heard(0, 660.0, 1);
    let level: f64 = {
        let s = r.parties[0].heard.samples();
        let tail = &s[s.len() - 8000..];
        tail.iter().map(|&x| f64::from(x).abs()).sum::<f64>() / tail.len() as f64
    };
    assert!(
        level < 50.0,
        "member 0 still hears member 1 (level {level:.0}, share {muted:.2})"
    );
    // Member 1 itself still hears member 0 while muted.
    assert!(r.heard(1, 440.0, 1) >= 0.9);
    r.parties[1].session.send_dtmf("*6").expect("dtmf");
    r.run(Duration::from_secs(2));
    assert_eq!(r.relay.is_muted(r.parties[1].id), Some(false));
    assert!(r.heard(0, 660.0, 1) >= 0.9);
}
