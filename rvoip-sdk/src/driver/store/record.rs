//! How a binding is written in a store: a key per binding and a small JSON record.
//!
//! The key is `aor NUL contact`, where the contact is normalised the way
//! [`crate::server::location::contact_uri_eq`] compares (scheme, user, password and port as
//! written, host lower-case, and the `transport`, `user` and `maddr` parameters lower-case), so
//! that a refresh that spells the contact differently overwrites the same key.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::server::location::{Binding, Transport};
use crate::sip::msg::{ByteString, NameAddr, Uri};

/// The stored form of a [`Binding`] (field names kept short: one record per binding).
#[derive(Debug, Serialize, Deserialize)]
struct Record<'a> {
    /// The Contact header value echoed in 200s (`<uri>;params`); the contact URI is parsed back
    /// from it.
    #[serde(borrow)]
    c: Cow<'a, str>,
    /// `q * 1000`.
    q: u16,
    /// Expiry, Unix seconds.
    e: u64,
    /// Call-ID of the REGISTER.
    #[serde(borrow)]
    i: Cow<'a, str>,
    /// Its CSeq number.
    s: u32,
    /// The flow: source address.
    a: std::net::SocketAddr,
    /// The transport (`udp`, `tcp`, `tls`, `ws`, `wss`).
    #[serde(borrow)]
    t: Cow<'a, str>,
    /// Behind a NAT.
    n: bool,
    /// The Path vector (RFC 3327), top first; left out when empty, and absent in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    p: Vec<Cow<'a, str>>,
}

/// The store key of `binding` under `aor`.
pub fn key(aor: &str, contact: &Uri) -> String {
    let mut k = String::with_capacity(aor.len() + 48);
    k.push_str(aor);
    k.push('\0');
    if let Some(opaque) = &contact.opaque {
        k.push_str(contact.scheme.as_str());
        k.push(':');
        k.push_str(opaque);
        return k;
    }
    k.push_str(contact.scheme.as_str());
    k.push(':');
    if let Some(u) = &contact.user {
        k.push_str(u);
        if let Some(p) = &contact.password {
            k.push(':');
            k.push_str(p);
        }
        k.push('@');
    }
    k.push_str(&contact.host.to_ascii_lowercase());
    if let Some(p) = contact.port {
        k.push(':');
        k.push_str(&p.to_string());
    }
    for name in ["transport", "user", "maddr"] {
        if let Some(v) = param(&contact.params, name) {
            k.push(';');
            k.push_str(name);
            k.push('=');
            k.push_str(&v.to_ascii_lowercase());
        }
    }
    k
}

fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The AOR part of a store key (`None` for a key without the separator).
pub fn aor_of_key(key: &str) -> Option<&str> {
    key.split_once('\0').map(|(aor, _)| aor)
}

/// Encodes `binding` as its stored record (JSON).
pub fn encode(binding: &Binding) -> Vec<u8> {
    let r = Record {
        c: Cow::Borrowed(&binding.contact_value),
        q: binding.q,
        e: binding.expires_at,
        i: Cow::Borrowed(&binding.call_id),
        s: binding.cseq,
        a: binding.source,
        t: Cow::Borrowed(binding.transport.as_str()),
        n: binding.behind_nat,
        p: binding.path.iter().map(|v| Cow::Borrowed(&**v)).collect(),
    };
    // Serialising this struct of plain fields cannot fail; an empty record is refused on load.
    serde_json::to_vec(&r).unwrap_or_default()
}

/// Decodes a stored record. Errors (a damaged or foreign record) are described as text.
pub fn decode(bytes: &[u8]) -> Result<Binding, String> {
    let r: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let value = ByteString::from(&*r.c);
    let addr = NameAddr::parse(&value).map_err(|e| format!("contact {:?}: {e:?}", r.c))?;
    let transport =
        Transport::from_name(&r.t).ok_or_else(|| format!("unknown transport {:?}", r.t))?;
    Ok(Binding {
        contact: addr.uri,
        contact_value: value,
        q: r.q.min(1000),
        expires_at: r.e,
        call_id: ByteString::from(&*r.i),
        cseq: r.s,
        source: r.a,
        transport,
        behind_nat: r.n,
        path: r.p.iter().map(|v| ByteString::from(&**v)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str) -> Binding {
        let addr = NameAddr::parse(&ByteString::from(contact)).unwrap();
        Binding {
            contact: addr.uri,
            contact_value: contact.into(),
            q: 500,
            expires_at: 1_700_000_060,
            call_id: "c\"1".into(),
            cseq: 7,
            source: "192.0.2.1:5070".parse().unwrap(),
            transport: Transport::Tls,
            behind_nat: true,
            path: vec!["<sip:0abc@192.0.2.9:5060;transport=udp;lr;ob>".into()],
        }
    }

    #[test]
    fn a_record_round_trips() {
        let b = binding("<sip:alice@192.0.2.1:5070;transport=tls>;+sip.instance=\"<urn:x>\"");
        assert_eq!(decode(&encode(&b)).unwrap(), b);
    }

    #[test]
    fn records_without_a_path_still_decode() {
        let old = br#"{"c":"<sip:a@192.0.2.1>","q":1000,"e":1,"i":"x","s":1,"a":"192.0.2.1:5060","t":"tcp","n":false}"#;
        let b = decode(old).unwrap();
        assert!(b.path.is_empty());
        let text = String::from_utf8(encode(&b)).unwrap();
        assert!(!text.contains("\"p\""), "an empty Path is left out: {text}");
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"c\":\"<nope\",\"q\":1,\"e\":1,\"i\":\"x\",\"s\":1,\"a\":\"1.2.3.4:5\",\"t\":\"udp\",\"n\":false}",
            b"{\"c\":\"<sip:a@b>\",\"q\":1,\"e\":1,\"i\":\"x\",\"s\":1,\"a\":\"1.2.3.4:5\",\"t\":\"sctp\",\"n\":false}",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn keys_follow_contact_equality() {
        let a = binding("<sip:alice@Host.Example:5070;transport=TCP;foo=1>");
        let b = binding("<sip:alice@host.example:5070;transport=tcp>");
        let c = binding("<sip:alice@host.example;transport=tcp>");
        assert_eq!(key("alice", &a.contact), key("alice", &b.contact));
        assert_ne!(key("alice", &a.contact), key("alice", &c.contact));
        assert_ne!(key("alice", &a.contact), key("bob", &a.contact));
        assert_eq!(aor_of_key(&key("al ice", &a.contact)), Some("al ice"));
    }
}
