//! The header and body values a REFER usage reads and writes: the status line of a
//! `message/sipfrag` body (RFC 3420), the Event header's package and `id` (RFC 6665 §8.2.1),
//! `Subscription-State` terminated (§8.2.3), a `Replaces` value (RFC 3891 §6.1), and escaping a
//! Refer-To URI header value (RFC 3261 §25.1).

use crate::sip::msg::{HeaderName, Request};

/// The status line of a `message/sipfrag` body (RFC 3420): `SIP/2.0 180 Ringing`.
pub(in crate::sip::ua) fn sipfrag_status(body: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.parse().ok()?;
    (100..700)
        .contains(&code)
        .then(|| (code, reason.trim().to_string()))
}

/// The `id` parameter of an Event header value (`refer;id=93809824`).
pub(in crate::sip::ua) fn event_id(value: &str) -> Option<u32> {
    value.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case("id")
            .then(|| v.trim().parse().ok())?
    })
}

/// The event package of an Event header value, lower-cased (`refer`, `presence`).
pub(in crate::sip::ua) fn event_package(req: &Request) -> Option<String> {
    let v = req.headers.get(&HeaderName::Event)?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

/// Whether a Subscription-State value says `terminated` (RFC 6665 §8.2.3).
pub(in crate::sip::ua) fn terminated(req: &Request) -> bool {
    req.headers
        .get(&HeaderName::SubscriptionState)
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("terminated"))
        })
}

/// A Replaces value (RFC 3891 §6.1): `call-id;to-tag=X;from-tag=Y`.
pub(in crate::sip::ua) struct ReplacesValue {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

impl ReplacesValue {
    /// Parses a Replaces value; `None` when a part is missing.
    pub fn parse(v: &str) -> Option<ReplacesValue> {
        let mut parts = v.split(';');
        let call_id = parts.next()?.trim().to_string();
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            if let Some((n, val)) = p.split_once('=') {
                match n.trim().to_ascii_lowercase().as_str() {
                    "to-tag" => to_tag = Some(val.trim().to_string()),
                    "from-tag" => from_tag = Some(val.trim().to_string()),
                    _ => {}
                }
            }
        }
        if call_id.is_empty() {
            return None;
        }
        Some(ReplacesValue {
            call_id,
            to_tag: to_tag?,
            from_tag: from_tag?,
        })
    }
}

/// `%`-escapes what may not stand in a URI header value (RFC 3261 §25.1 hvalue).
pub(in crate::sip::ua) fn escape_hvalue(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b);
        if unreserved {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_and_event_parameters() {
        assert_eq!(
            sipfrag_status(b"SIP/2.0 180 Ringing\r\n"),
            Some((180, "Ringing".into()))
        );
        assert_eq!(sipfrag_status(b"SIP/2.0 200\r\n"), Some((200, "".into())));
        assert_eq!(sipfrag_status(b"garbage"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 99999 x"), None);
        assert_eq!(event_id("refer;id=93809824"), Some(93809824));
        assert_eq!(event_id("refer"), None);
        let r = ReplacesValue::parse("abc@h;to-tag=1;from-tag=2").unwrap();
        assert_eq!((r.call_id.as_str(), r.to_tag.as_str()), ("abc@h", "1"));
        assert!(ReplacesValue::parse("abc@h;to-tag=1").is_none());
        let esc = escape_hvalue("a@b;to-tag=1");
        assert_eq!(esc, "a%40b%3Bto-tag%3D1");
    }
}
