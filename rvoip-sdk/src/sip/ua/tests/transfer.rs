//! Call transfer between three user agents on simulated time (RFC 3515, RFC 3891, RFC 5589):
//! blind transfer with NOTIFY progress up to 200, attended transfer with Replaces, a refused
//! REFER, an undecided REFER answered 480, a Replaces that matches nothing answered 481.

use super::*;

pub(super) const CAROL: &str = "127.0.0.1:5090";

/// User agents (and server cores) wired in memory by address.
pub(super) struct World {
    pub now: Instant,
    pub uas: Vec<(SocketAddr, UserAgent, Vec<UaEvent>)>,
    pub servers: Vec<(SocketAddr, ServerCore)>,
    pub wire: Vec<String>,
}

impl World {
    /// User agents at `addrs`, no server.
    pub fn new(addrs: &[&str]) -> World {
        let uas = addrs
            .iter()
            .map(|a| (addr(a), UserAgent::new(UaConfig::default()), Vec::new()))
            .collect();
        World {
            now: Instant::now(),
            uas,
            servers: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// Alice, bob and carol.
    fn trio() -> World {
        World::new(&[ALICE, BOB, CAROL])
    }

    /// Adds a server core at `at` (domain = its IP) with `users` (name, password).
    pub fn add_server(&mut self, at: &str, users: &[(&str, &str)]) {
        let a = addr(at);
        let ip = a.ip().to_string();
        let local = LocalIdentity::new(&[(Transport::Udp, a)], &ip, &ip, &[]);
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        let core = ServerCore::new(
            &ServerConfig::default(),
            local,
            &users,
            self.now,
            1_700_000_000,
        );
        self.servers.push((a, core));
    }

    pub fn ua(&mut self, i: usize) -> &mut UserAgent {
        &mut self.uas[i].1
    }

    pub fn events(&self, i: usize) -> &[UaEvent] {
        &self.uas[i].2
    }

    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let mut queue = Vec::new();
            for (a, ua, evs) in self.uas.iter_mut() {
                while let Some(t) = ua.poll_transmit() {
                    queue.push((*a, t.dest, t.bytes));
                }
                while let Some(e) = ua.poll_event() {
                    evs.push(e);
                }
            }
            for (a, s) in self.servers.iter_mut() {
                while let Some(t) = s.poll_transmit() {
                    queue.push((*a, t.dest, t.bytes));
                }
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, bytes) in queue {
                self.wire.push(String::from_utf8_lossy(&bytes).into_owned());
                let now = self.now;
                if let Some((a, ua, _)) = self.uas.iter_mut().find(|(a, _, _)| *a == to) {
                    let local = *a;
                    ua.handle_datagram(now, bytes, from, Transport::Udp, local);
                } else if let Some((_, s)) = self.servers.iter_mut().find(|(a, _)| *a == to) {
                    s.handle_datagram(now, bytes, from, Transport::Udp);
                }
            }
        }
        panic!("network did not settle");
    }

    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let next = self
                .uas
                .iter()
                .filter_map(|(_, ua, _)| ua.poll_timeout())
                .chain(self.servers.iter().filter_map(|(_, s)| s.poll_timeout()))
                .fold(end, |n, t| n.min(t.max(self.now)));
            self.now = next;
            let now = self.now;
            for (_, ua, _) in self.uas.iter_mut() {
                ua.handle_timeout(now);
            }
            for (_, s) in self.servers.iter_mut() {
                s.handle_timeout(now);
            }
            self.settle();
            if self.now >= end {
                return;
            }
        }
    }

    /// `from` calls `to` directly; `to` answers. Returns (caller's call, callee's call).
    pub fn call(&mut self, from: usize, to: usize, port: u16) -> (CallId, CallId) {
        let c = self.dial(from, to, port);
        let incoming = self.incoming(to).unwrap();
        let now = self.now;
        self.ua(to)
            .answer(now, incoming, local_media(port + 1000))
            .unwrap();
        self.settle();
        assert_eq!(self.ua(from).call_state(c).unwrap(), CallState::Connected);
        (c, incoming)
    }

    /// UA `from` calls UA `to` (alice, bob, carol) directly, offering media on `port`; the
    /// network settles (the callee rings).
    pub fn dial(&mut self, from: usize, to: usize, port: u16) -> CallId {
        let (name, target) = [("alice", ALICE), ("bob", BOB), ("carol", CAROL)][to];
        let local = self.uas[from].0;
        let now = self.now;
        let c = self.uas[from]
            .1
            .make_call(
                now,
                None,
                uri(&format!("sip:{name}@{target}")),
                addr(target),
                Transport::Udp,
                local,
                local_media(port),
            )
            .unwrap();
        self.settle();
        c
    }

    /// The last incoming call of UA `i`.
    pub fn incoming(&self, i: usize) -> Option<CallId> {
        self.events(i).iter().rev().find_map(|e| match e {
            UaEvent::IncomingCall { call, .. } => Some(*call),
            _ => None,
        })
    }

    pub fn transfer_request(&self, i: usize) -> Option<(CallId, TransferId, String)> {
        self.events(i).iter().rev().find_map(|e| match e {
            UaEvent::TransferRequested {
                call,
                transfer,
                target,
                ..
            } => Some((*call, *transfer, target.clone())),
            _ => None,
        })
    }

    pub fn statuses(&self, i: usize) -> Vec<(u16, bool)> {
        self.events(i)
            .iter()
            .filter_map(|e| match e {
                UaEvent::TransferStatus {
                    status, is_final, ..
                } => Some((*status, *is_final)),
                _ => None,
            })
            .collect()
    }

    /// UA `i` accepts the REFER and calls the target directly.
    pub fn accept(&mut self, i: usize, transfer: TransferId, port: u16) -> CallId {
        let (target, _) = self.ua(i).transfer_target(transfer).unwrap();
        let dest = crate::sip::ua::build::uri_addr(&target).unwrap();
        let local = self.uas[i].0;
        let now = self.now;
        self.ua(i)
            .accept_transfer(
                now,
                transfer,
                dest,
                Transport::Udp,
                local,
                local_media(port),
            )
            .unwrap()
    }
}

fn ended(ua: &UserAgent, c: CallId) -> bool {
    ua.call_state(c).is_err()
}

#[test]
fn blind_transfer_reports_progress_and_moves_the_call() {
    let mut t = World::trio();
    // Alice (0) talks with bob (1), then transfers him to carol (2).
    let (a_call, b_call) = t.call(0, 1, 40000);
    let now = t.now;
    t.ua(0)
        .transfer(now, a_call, uri("sip:carol@127.0.0.1:5090"))
        .unwrap();
    t.settle();
    let (call, transfer, target) = t.transfer_request(1).expect("bob is asked");
    assert_eq!(call, b_call);
    assert_eq!(target, "sip:carol@127.0.0.1:5090");
    let b_new = t.accept(1, transfer, 42000);
    t.settle();
    // Carol rings: alice hears 100 then 180.
    let c_call = t.incoming(2).expect("carol rings");
    assert_eq!(t.statuses(0), vec![(100, false), (180, false)]);
    assert!(t.wire.iter().any(|m| m.starts_with("REFER ")
        && m.contains("Refer-To: <sip:carol@127.0.0.1:5090>")
        && m.contains("Referred-By: <sip:")));
    assert!(t.wire.iter().any(|m| m.starts_with("SIP/2.0 202")));
    let now = t.now;
    t.ua(2).answer(now, c_call, local_media(43000)).unwrap();
    t.settle();
    // Carol answered: alice hears the final 200, bob ended the old call, the new one is up.
    assert_eq!(t.statuses(0), vec![(100, false), (180, false), (200, true)]);
    assert_eq!(t.ua(1).call_state(b_new).unwrap(), CallState::Connected);
    assert!(ended(t.ua(1), b_call) && ended(t.ua(0), a_call));
    let notify = t
        .wire
        .iter()
        .rev()
        .find(|m| m.starts_with("NOTIFY "))
        .unwrap();
    assert!(notify.contains("Event: refer;id="), "{notify}");
    assert!(
        notify.contains("Subscription-State: terminated"),
        "{notify}"
    );
    assert!(notify.contains("Content-Type: message/sipfrag"), "{notify}");
    assert!(notify.ends_with("SIP/2.0 200 OK\r\n"), "{notify}");
    // Every dialog is gone once the usages ended (RFC 5057).
    assert_eq!(t.ua(0).dialog_count(), 0);
    assert_eq!(t.ua(1).dialog_count(), 1, "bob-carol");
}

#[test]
fn blind_transfer_to_a_busy_target_reports_the_failure_and_keeps_the_call() {
    let mut t = World::trio();
    let (a_call, b_call) = t.call(0, 1, 40000);
    let now = t.now;
    t.ua(0)
        .transfer(now, a_call, uri("sip:carol@127.0.0.1:5090"))
        .unwrap();
    t.settle();
    let (_, transfer, _) = t.transfer_request(1).unwrap();
    t.accept(1, transfer, 42000);
    t.settle();
    let c_call = t.incoming(2).unwrap();
    let now = t.now;
    t.ua(2).reject(now, c_call, 486).unwrap();
    t.settle();
    assert_eq!(t.statuses(0).last(), Some(&(486, true)));
    // The transferred call stays up.
    assert_eq!(t.ua(1).call_state(b_call).unwrap(), CallState::Connected);
    assert_eq!(t.ua(0).call_state(a_call).unwrap(), CallState::Connected);
}

#[test]
fn a_refused_refer_and_an_undecided_one() {
    let mut t = World::trio();
    let (a_call, _) = t.call(0, 1, 40000);
    let now = t.now;
    t.ua(0)
        .transfer(now, a_call, uri("sip:carol@127.0.0.1:5090"))
        .unwrap();
    t.settle();
    let (_, transfer, _) = t.transfer_request(1).unwrap();
    let now = t.now;
    t.ua(1).reject_transfer(now, transfer, 603).unwrap();
    t.settle();
    assert_eq!(t.statuses(0), vec![(603, true)]);
    assert!(t.ua(1).transfer_target(transfer).is_err());
    // A second REFER nobody decides on is answered 480 after 8 s.
    let now = t.now;
    t.ua(0)
        .transfer(now, a_call, uri("sip:carol@127.0.0.1:5090"))
        .unwrap();
    t.advance(Duration::from_secs(10));
    assert_eq!(t.statuses(0), vec![(603, true), (480, true)]);
    assert_eq!(t.ua(0).call_state(a_call).unwrap(), CallState::Connected);
}

#[test]
fn attended_transfer_replaces_the_consultation_call() {
    let mut t = World::trio();
    // Alice talks with bob, then consults carol.
    let (a_bob, b_call) = t.call(0, 1, 40000);
    let (a_carol, c_alice) = t.call(0, 2, 40100);
    let now = t.now;
    t.ua(0).transfer_to_call(now, a_bob, a_carol).unwrap();
    t.settle();
    let (_, transfer, target) = t.transfer_request(1).unwrap();
    assert!(target.contains("?Replaces="), "{target}");
    let b_new = t.accept(1, transfer, 42000);
    t.settle();
    // Carol gets bob's INVITE naming her call with alice.
    let replaces = t.events(2).iter().rev().find_map(|e| match e {
        UaEvent::IncomingCall { call, replaces, .. } => Some((*call, *replaces)),
        _ => None,
    });
    let (c_bob, replaced) = replaces.unwrap();
    assert_eq!(replaced, Some(c_alice));
    assert!(t.wire.iter().any(|m| m.starts_with("INVITE sip:carol")
        && m.contains("Replaces: ")
        && m.contains("Referred-By: ")));
    let now = t.now;
    t.ua(2).answer(now, c_bob, local_media(43000)).unwrap();
    t.settle();
    // Bob and carol talk; both of alice's calls ended (carol BYEd the replaced one, bob the
    // transferred one); alice heard the final 200.
    assert_eq!(t.ua(1).call_state(b_new).unwrap(), CallState::Connected);
    assert_eq!(t.ua(2).call_state(c_bob).unwrap(), CallState::Connected);
    assert!(ended(t.ua(0), a_bob) && ended(t.ua(0), a_carol));
    assert!(ended(t.ua(1), b_call) && ended(t.ua(2), c_alice));
    assert_eq!(t.statuses(0).last(), Some(&(200, true)));
}

#[test]
fn replaces_that_matches_no_dialog_is_481() {
    let mut t = World::trio();
    let now = t.now;
    t.ua(1)
        .make_call_with(
            now,
            None,
            uri("sip:carol@127.0.0.1:5090"),
            addr(CAROL),
            Transport::Udp,
            addr(BOB),
            local_media(42000),
            vec![(HeaderName::Replaces, "nope@x;to-tag=1;from-tag=2".into())],
        )
        .unwrap();
    t.settle();
    assert!(t.incoming(2).is_none());
    assert!(t.wire.iter().any(|m| m.starts_with("SIP/2.0 481")));
}
