//! The server's presence agent (sans-IO parts): the event state compositor of RFC 3903 for
//! `Event: presence` ([`store`]: publications per AOR with entity tags and expiry), the notifier
//! of RFC 6665 for the presence (RFC 3856, PIDF RFC 3863) and dialog (RFC 4235) packages
//! ([`agent`]: subscriptions as dialogs the server forms as UAS, the NOTIFYs it sends in them),
//! and the dialog state of the calls the proxy routes ([`dialogs`]).
//!
//! The composite presence of an AOR is its most recent live publication (the one last created
//! or modified); an AOR without one is shown offline (PIDF `basic` closed). The requests are
//! taken in by the server core (`server/core/presence.rs`), which also drives the timers.

pub mod agent;
pub mod dialogs;
pub mod store;

use crate::server::config::ServerConfig;
use crate::sip::presence::{DIALOG_INFO_TYPE, PIDF_TYPE};

/// An event package the presence agent serves (RFC 6665 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// `presence` (RFC 3856): PIDF documents.
    Presence,
    /// `dialog` (RFC 4235): dialog-info documents (busy-lamp fields).
    Dialog,
}

impl Package {
    /// The package of an `Event` header value (RFC 6665 §8.2.1: the token before any
    /// parameter, case-insensitive); `None` for any other package (e.g. `presence.winfo`).
    pub fn from_event(value: &str) -> Option<Package> {
        let token = value.split(';').next().unwrap_or("").trim();
        if token.eq_ignore_ascii_case("presence") {
            Some(Package::Presence)
        } else if token.eq_ignore_ascii_case("dialog") {
            Some(Package::Dialog)
        } else {
            None
        }
    }

    /// The Content-Type of the package's documents.
    pub fn content_type(self) -> &'static str {
        match self {
            Package::Presence => PIDF_TYPE,
            Package::Dialog => DIALOG_INFO_TYPE,
        }
    }
}

/// Lifetimes and limits of the presence agent (from [`ServerConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Shortest accepted lifetime, seconds (shorter: 423 with Min-Expires).
    pub min_expires_s: u32,
    /// Longest granted lifetime, seconds; also the lifetime when a request names none.
    pub max_expires_s: u32,
    /// Largest published document, bytes (413).
    pub max_body_bytes: usize,
    /// Most live publications per AOR.
    pub max_publications: usize,
    /// Most subscriptions per subscribing user.
    pub max_subscriptions_per_user: usize,
    /// Most subscriptions in all.
    pub max_subscriptions: usize,
}

impl PresenceLimits {
    /// The limits configured in `cfg`.
    pub fn from_server(cfg: &ServerConfig) -> PresenceLimits {
        PresenceLimits {
            min_expires_s: cfg.presence_min_expires_s,
            max_expires_s: cfg.presence_max_expires_s.max(cfg.presence_min_expires_s),
            max_body_bytes: cfg.presence_max_body_bytes,
            max_publications: cfg.presence_max_publications,
            max_subscriptions_per_user: cfg.presence_max_subscriptions_per_user,
            max_subscriptions: cfg.presence_max_subscriptions,
        }
    }

    /// The lifetime (seconds) granted for a requested `Expires` (RFC 3903 §6 step 5, RFC 6665
    /// §4.2.1.1): none asked → the maximum; 0 stays 0 (removal, un-subscription, fetch);
    /// longer than the maximum → the maximum. Errors: `Err(min)` when shorter than the minimum
    /// (answer 423 with `Min-Expires: min`).
    pub fn grant(&self, requested: Option<u32>) -> Result<u32, u32> {
        match requested {
            None => Ok(self.max_expires_s),
            Some(0) => Ok(0),
            Some(s) if s < self.min_expires_s => Err(self.min_expires_s),
            Some(s) => Ok(s.min(self.max_expires_s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_grants() {
        assert_eq!(Package::from_event("Presence"), Some(Package::Presence));
        assert_eq!(Package::from_event("dialog;id=7"), Some(Package::Dialog));
        assert_eq!(Package::from_event("presence.winfo"), None);
        assert_eq!(Package::from_event("message-summary"), None);
        let l = PresenceLimits::from_server(&ServerConfig::default());
        assert_eq!(l.grant(None), Ok(3600));
        assert_eq!(l.grant(Some(0)), Ok(0));
        assert_eq!(l.grant(Some(30)), Err(60));
        assert_eq!(l.grant(Some(600)), Ok(600));
        assert_eq!(l.grant(Some(90_000)), Ok(3600));
    }
}
