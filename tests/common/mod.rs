//! Shared by the SDK's real-socket test files (`mod common;`): one endpoint's events as they
//! arrive, with waits for the ones a test expects, and the one-at-a-time guard for real-time media;
//! [`dns`]: a private dnsmasq serving a test's NAPTR/SRV/A records.

#![allow(dead_code)]

pub mod dns;

use std::time::{Duration, Instant};

use rvoip_sdk::api::{
    Account, AccountOptions, Call, CallState, Endpoint, EndpointConfig, Event, RegistrationState,
    Server, ServerConfig, Transport,
};
use rvoip_sdk::server::config::ListenSpec;

/// A registrar + proxy for `domain` (users alice/apw and bob/bpw) on the `listen` specs (port 0
/// picks), relay off, with `tweak` applied to its configuration; started. Returns it with its
/// bound sockets.
pub fn start_server(
    domain: &str,
    listen: &[&str],
    tweak: impl FnOnce(&mut ServerConfig),
) -> (Server, Ports) {
    let mut cfg = ServerConfig {
        listen: listen
            .iter()
            .map(|l| l.parse::<ListenSpec>().unwrap())
            .collect(),
        domain: Some(domain.into()),
        relay: "off".parse().unwrap(),
        ..ServerConfig::default()
    };
    cfg.users.insert("alice".into(), "apw".into());
    cfg.users.insert("bob".into(), "bpw".into());
    tweak(&mut cfg);
    let s = Server::new(cfg);
    s.start().expect("server starts");
    let ports = Ports(s.local_addrs());
    (s, ports)
}

/// A server's bound sockets.
pub struct Ports(pub Vec<(Transport, std::net::SocketAddr)>);

impl Ports {
    /// The port bound for `t` (panics if none).
    pub fn port(&self, t: Transport) -> u16 {
        self.0
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, a)| a.port())
            .unwrap()
    }
}

/// How long a test waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// These tests run real-time media; on a 2-core CI machine running them all at once starves
/// the media clocks. One at a time (a failed test poisons nothing: the guard is re-taken).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the one-test-at-a-time guard.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Events seen so far on one endpoint, and waiting for more.
pub struct Party {
    /// The endpoint.
    pub ep: Endpoint,
    /// Every event seen so far, in order.
    pub seen: Vec<Event>,
}

impl Party {
    /// An endpoint with `cfg`.
    pub fn with_config(cfg: EndpointConfig) -> Party {
        Party {
            ep: Endpoint::new(cfg).expect("endpoint"),
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred` (looking at already-seen events first).
    pub fn wait<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        if let Some(t) = self.seen.iter().find_map(&mut pred) {
            return t;
        }
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if let Some(ev) = self.ep.next_event(Duration::from_millis(50)) {
                let hit = pred(&ev);
                self.seen.push(ev);
                if let Some(t) = hit {
                    return t;
                }
            }
        }
        panic!("timed out waiting for {what}; saw {:#?}", self.seen);
    }

    /// Takes in the events already queued.
    pub fn drain(&mut self) {
        while let Some(ev) = self.ep.next_event(Duration::from_millis(1)) {
            self.seen.push(ev);
        }
    }

    /// Registers `user` with `pw` at `server` (`IP:port`) and waits until it is registered.
    pub fn register_at(&mut self, server: &str, user: &str, pw: &str) -> Account {
        let mut o = AccountOptions::new(&format!("sip:{user}@127.0.0.1"), pw);
        o.server = Some(server.to_string());
        o.expires_s = 300;
        self.register_with(o)
    }

    /// Adds the account `o`, registers it and waits until it is registered.
    pub fn register_with(&mut self, o: AccountOptions) -> Account {
        let acc = self.ep.add_account(o).unwrap();
        acc.register().unwrap();
        let id = acc.id();
        self.wait("registered", |e| match e {
            Event::RegistrationState {
                account,
                state: RegistrationState::Registered { .. },
            } if *account == id => Some(()),
            _ => None,
        });
        acc
    }

    /// The first incoming call seen.
    pub fn incoming(&mut self) -> Call {
        let id = self.wait("incoming call", |e| match e {
            Event::IncomingCall { call, .. } => Some(*call),
            _ => None,
        });
        self.ep.call(id).unwrap()
    }

    /// Waits until `call` reaches a state `want` accepts.
    pub fn state(
        &mut self,
        call: &Call,
        what: &str,
        want: impl Fn(&CallState) -> bool,
    ) -> CallState {
        let id = call.id();
        self.wait(what, |e| match e {
            Event::CallState { call, state } if *call == id && want(state) => Some(state.clone()),
            _ => None,
        })
    }
}
