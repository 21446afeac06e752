//! Call forwarding per user (what Asterisk and Kamailio call call-forward): the rules, the
//! Diversion header (RFC 5806) that records each diversion in the forwarded INVITE, and the
//! loop guard. Sans-IO; the core applies the rules ([`crate::server::core::ServerCore`]), the
//! proxy watches the busy and no-answer outcomes of a call's branches.
//!
//! - unconditional (CFU): every call to the user goes to the target at once;
//! - busy (CFB): the user's branches ended with 486 Busy Here or 600 Busy Everywhere;
//! - no answer (CFNA): no 2xx within `no_answer_s` seconds (the ringing branches are
//!   cancelled), the branches failed with 408/480 (nothing answered at all), or the user has no
//!   binding (RFC 5806 reason `unavailable`).
//!
//! Diversion, not History-Info (RFC 7044): Diversion is what deployed PBXs and phones read to
//! show "forwarded from" (Asterisk's `REDIRECTING`, FreeSWITCH, Yealink, Polycom, Cisco), and it
//! needs no index bookkeeping across hops. Each diversion is added on top (most recent first,
//! RFC 5806 §4) with `reason` and `counter=1`.
//!
//! Loops: a chain of more than `forward_max_chain` diversions (counted from the request's
//! Diversion headers and their `counter`s) stops with 480, and a target that the request was
//! already diverted from (or the user itself) is a cycle: 482. For busy and no-answer the
//! call's own outcome (the 486, or 480) goes back instead. Every diversion also takes one from
//! Max-Forwards (483 when none is left), so a loop through other servers ends too.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::sip::msg::{ByteString, HeaderName, NameAddr, Request, Scheme, Uri};

/// Default most diversions in one request's chain.
pub const DEFAULT_MAX_CHAIN: u32 = 5;

/// Default seconds of ringing before a no-answer forward.
pub const DEFAULT_NO_ANSWER_S: u32 = 20;

/// One user's forwarding as configured (TOML `[forward.<user>]`, or
/// [`crate::api::Server::set_forwarding`]). A target is a SIP URI (`sip:carol@example.com`,
/// `sip:+15551234@gw.example.net`) or a bare user name of this domain (`carol`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Forwarding {
    /// Call forward unconditional: every call goes here instead.
    pub unconditional: Option<String>,
    /// Call forward on busy: when the user's phones answer 486 or 600.
    pub busy: Option<String>,
    /// Call forward on no answer: after `no_answer_s` seconds of ringing, when nothing
    /// answered (408/480), or when the user has no registered phone.
    pub no_answer: Option<String>,
    /// Seconds of ringing before the no-answer forward (1..=180). Default 20.
    pub no_answer_s: Option<u32>,
}

/// Why a call was diverted (RFC 5806 §2 `diversion-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DivertReason {
    /// Call forward unconditional.
    Unconditional,
    /// Call forward on busy (486, 600).
    UserBusy,
    /// Call forward on no answer.
    NoAnswer,
    /// The user has no registered phone.
    Unavailable,
}

impl DivertReason {
    /// The RFC 5806 token.
    pub fn as_str(self) -> &'static str {
        match self {
            DivertReason::Unconditional => "unconditional",
            DivertReason::UserBusy => "user-busy",
            DivertReason::NoAnswer => "no-answer",
            DivertReason::Unavailable => "unavailable",
        }
    }
}

/// A forward target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// A user of this server's domain (looked up in the location service).
    User(String),
    /// A SIP URI (this domain's users too; another domain's are forwarded like any request for
    /// that domain).
    Uri(Box<Uri>),
}

impl ForwardTarget {
    /// Parses `sip:…`/`sips:…` or a bare user name. Errors: anything else (a message).
    pub fn parse(s: &str) -> Result<ForwardTarget, String> {
        let s = s.trim();
        let bad = || format!("bad forward target {s:?}: expected sip:user@host or a user name");
        if s.is_empty() {
            return Err(bad());
        }
        if s.contains(':') {
            let uri = Uri::parse(&ByteString::from(s)).map_err(|_| bad())?;
            if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) || uri.user.is_none() {
                return Err(bad());
            }
            return Ok(ForwardTarget::Uri(Box::new(uri)));
        }
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b"@<>;,\"".contains(&b))
        {
            return Err(bad());
        }
        Ok(ForwardTarget::User(s.to_string()))
    }

    /// The target as a URI, a bare user in `domain`.
    pub fn uri(&self, domain: &str) -> Uri {
        match self {
            ForwardTarget::Uri(u) => (**u).clone(),
            ForwardTarget::User(user) => Uri {
                scheme: Scheme::Sip,
                user: Some(ByteString::from(user.as_str())),
                password: None,
                host: ByteString::from(domain),
                port: None,
                params: ByteString::new(),
                headers: None,
                opaque: None,
            },
        }
    }
}

/// One user's forwarding, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRule {
    /// Call forward unconditional.
    pub unconditional: Option<ForwardTarget>,
    /// Call forward on busy.
    pub busy: Option<ForwardTarget>,
    /// Call forward on no answer (and when unavailable).
    pub no_answer: Option<ForwardTarget>,
    /// Ringing time before the no-answer forward.
    pub no_answer_after: Duration,
}

impl Forwarding {
    /// Checks the targets and the ringing time. Errors: a bad target, `no_answer_s` outside
    /// 1..=180 (Timer C cancels at 181 s).
    pub fn rule(&self) -> Result<ForwardRule, String> {
        let target = |t: &Option<String>| t.as_deref().map(ForwardTarget::parse).transpose();
        let secs = self.no_answer_s.unwrap_or(DEFAULT_NO_ANSWER_S);
        if !(1..=180).contains(&secs) {
            return Err(format!("no_answer_s = {secs}: expected 1..=180 seconds"));
        }
        Ok(ForwardRule {
            unconditional: target(&self.unconditional)?,
            busy: target(&self.busy)?,
            no_answer: target(&self.no_answer)?,
            no_answer_after: Duration::from_secs(u64::from(secs)),
        })
    }
}

/// The users' forwarding rules.
#[derive(Debug, Clone, Default)]
pub struct ForwardTable {
    rules: HashMap<String, ForwardRule>,
}

impl ForwardTable {
    /// The rule of `user` (the Request-URI user part), if any.
    pub fn get(&self, user: &str) -> Option<&ForwardRule> {
        self.rules.get(user)
    }

    /// Sets (`Some`) or clears (`None`) the rule of `user`.
    pub fn set(&mut self, user: &str, rule: Option<ForwardRule>) {
        match rule {
            Some(r) => {
                self.rules.insert(user.to_string(), r);
            }
            None => {
                self.rules.remove(user);
            }
        }
    }

    /// How many users have a rule.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no user has a rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether a diversion may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCheck {
    /// Yes.
    Ok,
    /// The target was already diverted from (or is the diverting user): 482.
    Cycle,
    /// The chain would exceed the limit: 480.
    TooLong,
}

/// The diversions a request already went through: the diverting URIs (most recent first) and
/// the total count (the sum of their `counter` parameters, 1 when absent).
pub fn history(req: &Request) -> (Vec<Uri>, u32) {
    let mut uris = Vec::new();
    let mut count = 0u32;
    for v in req.headers.get_all(&HeaderName::Diversion) {
        let Ok(na) = NameAddr::parse(v) else {
            count = count.saturating_add(1);
            continue;
        };
        let n = na
            .params
            .get("counter")
            .flatten()
            .and_then(|c| c.trim().parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        count = count.saturating_add(n);
        uris.push(na.uri);
    }
    (uris, count)
}

/// Whether two URIs name the same user: the same user part, and the same host (or both hosts
/// this server's, per `is_local`).
pub fn same_user(a: &Uri, b: &Uri, is_local: impl Fn(&str) -> bool) -> bool {
    a.user == b.user
        && (a.host.eq_ignore_ascii_case(&b.host) || (is_local(&a.host) && is_local(&b.host)))
}

/// Checks a diversion of `req` from `from` to `to` against the loop guard (see the module
/// docs); `max_chain` is the most diversions allowed in total.
pub fn check(
    req: &Request,
    from: &Uri,
    to: &Uri,
    max_chain: u32,
    is_local: impl Fn(&str) -> bool,
) -> ChainCheck {
    let (uris, count) = history(req);
    if same_user(from, to, &is_local) || uris.iter().any(|u| same_user(u, to, &is_local)) {
        return ChainCheck::Cycle;
    }
    if count >= max_chain {
        return ChainCheck::TooLong;
    }
    ChainCheck::Ok
}

/// The Diversion header value recording a diversion from `from` (RFC 5806 §4).
pub fn diversion_value(from: &Uri, reason: DivertReason) -> String {
    format!("<{from}>;reason={};counter=1", reason.as_str())
}

/// Records a diversion of `req` from `from` to `to`: a Diversion header on top, the new
/// Request-URI, and one less Max-Forwards (absent counts as 70). Returns false, changing
/// nothing, when Max-Forwards is used up (the caller answers 483).
pub fn divert(req: &mut Request, from: &Uri, to: &Uri, reason: DivertReason) -> bool {
    let mf = match req.headers.max_forwards() {
        Ok(Some(n)) => n,
        _ => 70,
    };
    if mf <= 1 {
        return false;
    }
    req.headers
        .set(HeaderName::MaxForwards, (mf - 1).to_string());
    req.headers
        .push_front(HeaderName::Diversion, diversion_value(from, reason));
    req.uri = to.clone();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Limits, Message};

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Max-Forwards: 3\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match Message::parse(bytes::Bytes::from(text), &Limits::default()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn uri(s: &str) -> Uri {
        Uri::parse(&ByteString::from(s)).unwrap()
    }

    fn local(h: &str) -> bool {
        h == "example.com" || h == "127.0.0.1"
    }

    #[test]
    fn targets_parse_and_bad_ones_fail() {
        assert_eq!(
            ForwardTarget::parse("carol").unwrap().uri("example.com"),
            uri("sip:carol@example.com")
        );
        assert!(matches!(
            ForwardTarget::parse("sip:+1555@gw.example.net"),
            Ok(ForwardTarget::Uri(_))
        ));
        for bad in [
            "",
            "tel:+1555",
            "sip:gw.example.net",
            "a b",
            "x@y",
            "sip:@@",
        ] {
            assert!(ForwardTarget::parse(bad).is_err(), "{bad}");
        }
        let f = Forwarding {
            no_answer_s: Some(0),
            ..Forwarding::default()
        };
        assert!(f.rule().is_err());
        let f = Forwarding {
            busy: Some("carol".into()),
            ..Forwarding::default()
        };
        assert_eq!(f.rule().unwrap().no_answer_after, Duration::from_secs(20));
    }

    #[test]
    fn divert_adds_diversion_on_top_and_takes_one_max_forwards() {
        let mut r = invite("Diversion: <sip:dave@example.com>;reason=no-answer;counter=1\r\n");
        let (from, to) = (uri("sip:bob@example.com"), uri("sip:carol@example.com"));
        assert_eq!(check(&r, &from, &to, 5, local), ChainCheck::Ok);
        assert!(divert(&mut r, &from, &to, DivertReason::UserBusy));
        assert_eq!(r.uri, to);
        assert_eq!(r.headers.max_forwards().unwrap(), Some(2));
        let d: Vec<_> = r.headers.get_all(&HeaderName::Diversion).collect();
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].as_ref() as &str,
            "<sip:bob@example.com>;reason=user-busy;counter=1"
        );
        let (uris, n) = history(&r);
        assert_eq!((uris.len(), n), (2, 2));
        // Max-Forwards 2 → 1 is allowed once more, then no more.
        assert!(divert(&mut r, &to, &from, DivertReason::NoAnswer));
        assert!(!divert(&mut r, &to, &from, DivertReason::NoAnswer));
    }

    #[test]
    fn cycles_and_long_chains_are_refused() {
        let r = invite("Diversion: <sip:carol@127.0.0.1>;reason=unconditional\r\n");
        let bob = uri("sip:bob@example.com");
        // carol was diverted from already (the same user under another local name).
        assert_eq!(
            check(&r, &bob, &uri("sip:carol@example.com"), 5, local),
            ChainCheck::Cycle
        );
        assert_eq!(check(&r, &bob, &bob, 5, local), ChainCheck::Cycle);
        // Another domain's carol is someone else.
        assert_eq!(
            check(&r, &bob, &uri("sip:carol@other.test"), 5, local),
            ChainCheck::Ok
        );
        let r = invite("Diversion: <sip:x@example.com>;counter=4\r\n");
        assert_eq!(
            check(&r, &bob, &uri("sip:carol@example.com"), 5, local),
            ChainCheck::Ok
        );
        let r = invite("Diversion: <sip:x@example.com>;counter=5\r\n");
        assert_eq!(
            check(&r, &bob, &uri("sip:carol@example.com"), 5, local),
            ChainCheck::TooLong
        );
    }
}
