//! The server's defence against hostile sources (sans-IO): a per-source message rate limit
//! (Kamailio's pike) and bans after failed digest attempts (what fail2ban adds to Kamailio).
//!
//! Every received message is counted against its source IP before it is parsed
//! ([`Guard::admit`]). A source that sends more than `flood_limit` messages in one
//! `flood_window` is ignored for `flood_ban`. A source with `auth_fail_limit` failed digest
//! attempts within `auth_fail_window` is ignored for `auth_ban` ([`Guard::auth_failed`]); so
//! is a source whose attempt fails on a user name that has had `auth_user_fail_limit`
//! failures from anywhere in the window (a distributed attack). Ignored means dropped
//! without an answer: an attacker sees a dead server, and pays for its own timeouts.
//! Trusted networks are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::server::config::ServerConfig;

/// Most sources and user names tracked at once; past it, expired entries are swept and, if
/// none expired, new sources go uncounted until some do (memory stays bounded under a flood
/// from spoofed addresses, which no per-source limit can stop anyway).
pub const MAX_TRACKED: usize = 100_000;

/// The limits of a [`Guard`] (see the `flood_*`, `auth_*` and `trusted_sources` keys of
/// [`ServerConfig`]).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Messages per source per `flood_window` (0: no flood limit).
    pub flood_limit: u32,
    /// The flood counting window.
    pub flood_window: Duration,
    /// How long a flooding source is ignored.
    pub flood_ban: Duration,
    /// Failed digest attempts per source within `auth_fail_window` before a ban (0: none).
    pub auth_fail_limit: u32,
    /// The window for failed digest attempts.
    pub auth_fail_window: Duration,
    /// Failed attempts on one user name within the window, past which each failing source is
    /// banned at once (0: none).
    pub auth_user_fail_limit: u32,
    /// How long a source is banned after failed digest attempts.
    pub auth_ban: Duration,
    /// Networks never limited or banned.
    pub trusted: Vec<ipnet::IpNet>,
}

impl GuardConfig {
    /// The guard settings of a server configuration.
    pub fn from_server(cfg: &ServerConfig) -> GuardConfig {
        GuardConfig {
            flood_limit: cfg.flood_limit,
            flood_window: Duration::from_millis(cfg.flood_window_ms.max(1)),
            flood_ban: Duration::from_secs(cfg.flood_ban_s),
            auth_fail_limit: cfg.auth_fail_limit,
            auth_fail_window: Duration::from_secs(cfg.auth_fail_window_s.max(1)),
            auth_user_fail_limit: cfg.auth_user_fail_limit,
            auth_ban: Duration::from_secs(cfg.auth_ban_s),
            trusted: cfg.trusted_sources.clone(),
        }
    }
}

/// Whether a message from a source is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Process it.
    Yes,
    /// The source is banned (flood or failed authentication): drop it.
    Banned,
    /// This message took the source over its flood limit: drop it; the source is now banned.
    FloodStarted,
}

/// Why a source was banned, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanReason {
    /// `count` messages within the flood window.
    Flood {
        /// Messages counted in the window.
        count: u32,
    },
    /// Failed digest attempts from this source.
    AuthFailures {
        /// Failures counted in the window.
        count: u32,
        /// The user name of the last attempt.
        user: String,
    },
    /// A failed attempt on a user name under attack from many sources.
    UserUnderAttack {
        /// The user name.
        user: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Source {
    window_start: Instant,
    count: u32,
    fail_window_start: Instant,
    fails: u32,
    banned_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct UserFails {
    window_start: Instant,
    fails: u32,
}

/// Counters of the guard, for the status line and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardStats {
    /// Messages dropped because their source was over its flood limit or banned.
    pub dropped: u64,
    /// Sources banned for flooding.
    pub flood_bans: u64,
    /// Sources banned after failed digest attempts.
    pub auth_bans: u64,
    /// Failed digest attempts seen.
    pub auth_failures: u64,
}

/// Per-source flood and brute-force state. Single-threaded, owned by the server core.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    users: HashMap<String, UserFails>,
    /// Counters.
    pub stats: GuardStats,
}

impl Guard {
    /// A guard with no state.
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            cfg,
            sources: HashMap::new(),
            users: HashMap::new(),
            stats: GuardStats::default(),
        }
    }

    /// Replaces the limits (a reload), keeping the counts and bans in progress: a ban ends
    /// when it was due to, the new limits apply from the next message.
    pub fn set_config(&mut self, cfg: GuardConfig) {
        self.cfg = cfg;
    }

    /// Whether `ip` is in a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.cfg.trusted.is_empty() && self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    fn source(&mut self, now: Instant, ip: IpAddr) -> Option<&mut Source> {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_TRACKED {
            self.sweep(now);
            if self.sources.len() >= MAX_TRACKED {
                return None;
            }
        }
        Some(self.sources.entry(ip).or_insert(Source {
            window_start: now,
            count: 0,
            fail_window_start: now,
            fails: 0,
            banned_until: None,
        }))
    }

    /// Counts one received message from `ip` (before parsing) and says whether to process it.
    pub fn admit(&mut self, now: Instant, ip: IpAddr) -> Admit {
        let limit = self.cfg.flood_limit;
        let (window, ban) = (self.cfg.flood_window, self.cfg.flood_ban);
        if self.is_trusted(ip) {
            return Admit::Yes;
        }
        if limit == 0 {
            // No flood counting: only bans after failed authentication apply.
            if self.is_banned(now, ip) {
                self.stats.dropped += 1;
                return Admit::Banned;
            }
            return Admit::Yes;
        }
        let Some(s) = self.source(now, ip) else {
            return Admit::Yes;
        };
        if let Some(until) = s.banned_until {
            if now < until {
                self.stats.dropped += 1;
                return Admit::Banned;
            }
            s.banned_until = None;
            s.window_start = now;
            s.count = 0;
        }
        if now.saturating_duration_since(s.window_start) >= window {
            s.window_start = now;
            s.count = 0;
        }
        s.count += 1;
        if s.count > limit {
            let count = s.count;
            s.banned_until = Some(now + ban);
            self.stats.dropped += 1;
            self.stats.flood_bans += 1;
            tracing::warn!(
                source = %ip,
                reason = ?BanReason::Flood { count },
                ban_s = ban.as_secs(),
                "banned source: over the flood limit (messages dropped)"
            );
            return Admit::FloodStarted;
        }
        Admit::Yes
    }

    /// Records a failed digest attempt from `ip` for `user` (the digest username). Returns the
    /// reason when this failure gets the source banned (it is logged here).
    pub fn auth_failed(&mut self, now: Instant, ip: IpAddr, user: &str) -> Option<BanReason> {
        self.stats.auth_failures += 1;
        if self.is_trusted(ip) {
            return None;
        }
        let window = self.cfg.auth_fail_window;
        let user_limit = self.cfg.auth_user_fail_limit;
        let mut under_attack = false;
        if user_limit > 0 {
            if !self.users.contains_key(user) && self.users.len() >= MAX_TRACKED {
                self.sweep(now);
            }
            if self.users.contains_key(user) || self.users.len() < MAX_TRACKED {
                let u = self.users.entry(user.to_string()).or_insert(UserFails {
                    window_start: now,
                    fails: 0,
                });
                if now.saturating_duration_since(u.window_start) >= window {
                    u.window_start = now;
                    u.fails = 0;
                }
                u.fails += 1;
                under_attack = u.fails > user_limit;
            }
        }
        let limit = self.cfg.auth_fail_limit;
        let ban = self.cfg.auth_ban;
        let s = self.source(now, ip)?;
        if now.saturating_duration_since(s.fail_window_start) >= window {
            s.fail_window_start = now;
            s.fails = 0;
        }
        s.fails += 1;
        let reason = if limit > 0 && s.fails >= limit {
            BanReason::AuthFailures {
                count: s.fails,
                user: user.to_string(),
            }
        } else if under_attack {
            BanReason::UserUnderAttack {
                user: user.to_string(),
            }
        } else {
            return None;
        };
        s.banned_until = Some(now + ban);
        s.fails = 0;
        self.stats.auth_bans += 1;
        tracing::warn!(
            source = %ip,
            reason = ?reason,
            ban_s = ban.as_secs(),
            "banned source: failed digest authentication (messages dropped)"
        );
        Some(reason)
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| now < t)
    }

    /// Forgets sources and users whose windows and bans are over.
    pub fn sweep(&mut self, now: Instant) {
        let flood = self.cfg.flood_window;
        let auth = self.cfg.auth_fail_window;
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| now < t)
                || now.saturating_duration_since(s.window_start) < flood
                || (s.fails > 0 && now.saturating_duration_since(s.fail_window_start) < auth)
        });
        self.users
            .retain(|_, u| now.saturating_duration_since(u.window_start) < auth);
    }

    /// Sources and user names currently tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.users.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuardConfig {
        GuardConfig::from_server(&ServerConfig::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flood_limit_bans_the_source_for_the_ban_time_only() {
        let mut g = Guard::new(GuardConfig {
            flood_limit: 5,
            ..cfg()
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(g.admit(t0, a), Admit::Yes);
        }
        assert_eq!(g.admit(t0, a), Admit::FloodStarted);
        assert_eq!(g.admit(t0, a), Admit::Banned);
        // Another source is unaffected.
        assert_eq!(g.admit(t0, ip("192.0.2.2")), Admit::Yes);
        // A new window does not lift the ban; the ban time does.
        assert_eq!(g.admit(t0 + Duration::from_secs(5), a), Admit::Banned);
        assert_eq!(g.admit(t0 + Duration::from_secs(11), a), Admit::Yes);
        assert_eq!(g.stats.flood_bans, 1);
        // Steady traffic under the limit is never banned.
        let b = ip("192.0.2.3");
        for i in 0..100u64 {
            let t = t0 + Duration::from_millis(250 * i);
            assert_eq!(g.admit(t, b), Admit::Yes);
        }
    }

    #[test]
    fn trusted_networks_are_never_limited() {
        let mut g = Guard::new(GuardConfig {
            flood_limit: 2,
            auth_fail_limit: 1,
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            ..cfg()
        });
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(g.admit(t0, ip("10.1.2.3")), Admit::Yes);
        }
        assert_eq!(g.auth_failed(t0, ip("10.1.2.3"), "alice"), None);
        assert_eq!(g.admit(t0, ip("10.1.2.3")), Admit::Yes);
    }

    #[test]
    fn failed_digests_ban_the_source_not_the_user() {
        let mut g = Guard::new(cfg());
        let t0 = Instant::now();
        let attacker = ip("198.51.100.7");
        for i in 1..10 {
            assert_eq!(g.auth_failed(t0, attacker, "1234"), None, "failure {i}");
        }
        assert!(matches!(
            g.auth_failed(t0, attacker, "1234"),
            Some(BanReason::AuthFailures { count: 10, .. })
        ));
        assert!(g.is_banned(t0, attacker));
        assert_eq!(g.admit(t0, attacker), Admit::Banned);
        // The user from another address is not banned.
        assert_eq!(g.admit(t0, ip("203.0.113.5")), Admit::Yes);
        assert!(!g.is_banned(t0 + Duration::from_secs(301), attacker));
    }

    #[test]
    fn failures_spread_over_sources_on_one_user_ban_each_source() {
        let mut g = Guard::new(cfg());
        let t0 = Instant::now();
        for i in 0..20u8 {
            let src = IpAddr::from([198, 51, 100, i]);
            assert_eq!(g.auth_failed(t0, src, "bob"), None);
        }
        let next = IpAddr::from([198, 51, 100, 200]);
        assert!(matches!(
            g.auth_failed(t0, next, "bob"),
            Some(BanReason::UserUnderAttack { .. })
        ));
        // Another user's first failure from a fresh source is not a ban.
        assert_eq!(g.auth_failed(t0, ip("198.51.100.201"), "carol"), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut g = Guard::new(cfg());
        let t0 = Instant::now();
        let a = ip("192.0.2.9");
        for i in 0..30u64 {
            let t = t0 + Duration::from_secs(61 * (i / 5));
            assert_eq!(g.auth_failed(t, a, &format!("u{i}")), None);
        }
    }

    #[test]
    fn tracking_is_bounded_under_a_spoofed_flood() {
        let mut g = Guard::new(GuardConfig {
            flood_limit: 1,
            ..cfg()
        });
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 1000) {
            let _ = g.admit(t0, IpAddr::from(i.to_be_bytes()));
        }
        assert!(g.tracked().0 <= MAX_TRACKED);
        g.sweep(t0 + Duration::from_secs(2));
        assert_eq!(g.tracked().0, 0);
    }
}
