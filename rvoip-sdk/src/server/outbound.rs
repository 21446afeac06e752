//! SIP Outbound (RFC 5626) at the registrar and the proxy: which Contacts register a flow,
//! how a flow's binding is identified, and which flow of a user agent instance a request takes.
//!
//! - A Contact registers a flow when it carries `+sip.instance` and `reg-id`, the REGISTER
//!   says `Supported: outbound`, and the registrar is the first hop (one Via) or the edge
//!   proxy marked its Path URI with `ob` (§6). Otherwise a `reg-id` asks for outbound from a
//!   first hop that lacks it: 439 (First Hop Lacks Outbound Support).
//! - A flow's binding is identified by the AOR, instance-id and reg-id, not by the Contact URI
//!   (§6): a phone that moved to another address replaces its binding instead of leaving a
//!   stale one beside the new one.
//! - Requests reach a flow's binding over the flow it registered on (its source address, and
//!   for TCP and TLS its connection), and each user agent instance is reached over one flow:
//!   the one refreshed last (§5.3).
//!
//! The instance-id and reg-id live in the binding's stored Contact value (its header
//! parameters), so the stores keep them without a change of format.

use crate::server::location::Binding;
use crate::sip::msg::{HeaderName, NameAddr, Params, Request};

/// The option tag of SIP Outbound (RFC 5626 §11.4).
pub const OPTION_TAG: &str = "outbound";

/// What identifies a flow's binding within an AOR (RFC 5626 §6): the instance-id (the
/// `+sip.instance` value, quotes removed) and the reg-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKey {
    /// The instance-id URN, e.g. `<urn:uuid:00000000-0000-1000-8000-000A95A0E128>`.
    pub instance: String,
    /// The reg-id (1 and up).
    pub reg_id: u32,
}

/// The flow key of a Contact's header parameters: `None` unless both `+sip.instance` and a
/// numeric `reg-id` are present.
pub fn flow_key(params: &Params) -> Option<FlowKey> {
    let instance = params.get("+sip.instance").flatten()?;
    let reg_id = params.get("reg-id").flatten()?.trim().parse().ok()?;
    let instance = instance.trim().trim_matches('"').to_string();
    (!instance.is_empty()).then_some(FlowKey { instance, reg_id })
}

/// The header parameters of a stored binding's Contact value.
fn stored_params(b: &Binding) -> Option<Params> {
    // The value is `<uri>;params`: a URI holds no `>`, so the first one ends it.
    let end = b.contact_value.find('>')?;
    Some(Params(
        b.contact_value.slice_ref(&b.contact_value[end + 1..]),
    ))
}

/// The flow key of a stored binding (from its Contact value), if it has one.
pub fn binding_flow_key(b: &Binding) -> Option<FlowKey> {
    if !b.contact_value.contains("reg-id") {
        return None;
    }
    flow_key(&stored_params(b)?)
}

/// Whether the REGISTER says `Supported: outbound`.
pub fn supported(req: &Request) -> bool {
    req.headers
        .get_all(&HeaderName::Supported)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(OPTION_TAG))
}

/// Whether this registrar is the first hop of `req` for outbound purposes (RFC 5626 §6): it
/// came with one Via, or the top Path URI (the edge proxy's) carries `ob`.
pub fn first_hop(req: &Request, path: &[bytestring::ByteString]) -> bool {
    if req.headers.get_all(&HeaderName::Via).count() <= 1 {
        return true;
    }
    path.first()
        .and_then(|p| NameAddr::parse(p).ok())
        .is_some_and(|n| n.uri.param("ob").is_some())
}

/// The bindings a request for the AOR goes to, from `bindings` (in lookup order): each user
/// agent instance that registered flows is reached over one of them, the one that expires
/// last (refreshed last, §5.3); other bindings are all kept.
pub fn one_flow_per_instance(bindings: Vec<&Binding>) -> Vec<&Binding> {
    let keys: Vec<Option<FlowKey>> = bindings.iter().map(|b| binding_flow_key(b)).collect();
    if keys.iter().all(Option::is_none) {
        return bindings;
    }
    bindings
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            let Some(k) = &keys[*i] else {
                return true;
            };
            // Kept unless another flow of the same instance expires later (or as late and
            // comes first).
            !bindings.iter().enumerate().any(|(j, o)| {
                j != *i
                    && keys[j].as_ref().is_some_and(|kj| kj.instance == k.instance)
                    && (o.expires_at > b.expires_at || (o.expires_at == b.expires_at && j < *i))
            })
        })
        .map(|(_, b)| *b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::location::Transport;
    use crate::server::registrar::Registrar;
    use crate::sip::msg::{Limits, Message, Response};
    use bytes::Bytes;

    const T0: u64 = 1_700_000_000;

    /// A REGISTER for alice with `contact` (a Contact header value) and `extra` headers.
    fn register(cseq: u32, vias: usize, contact: &str, extra: &str) -> Request {
        let mut via = String::new();
        for i in 0..vias {
            via.push_str(&format!(
                "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bKob{cseq}x{i}\r\n",
                10 + i
            ));
        }
        let text = format!(
            "REGISTER sip:example.com SIP/2.0\r\n{via}Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: ob-1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text), &Limits::default()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn send(r: &mut Registrar, now: u64, req: &Request) -> Response {
        r.handle_register(now, req, "192.0.2.10:5060".parse().unwrap(), Transport::Udp)
    }

    fn flow(host: &str, instance: &str, reg_id: u32) -> String {
        format!("<sip:alice@{host}>;+sip.instance=\"<urn:uuid:{instance}>\";reg-id={reg_id}")
    }

    const OB: &str = "Supported: path, outbound\r\n";

    #[test]
    fn a_flow_binding_is_replaced_by_instance_and_reg_id() {
        let mut r = Registrar::default();
        let resp = send(
            &mut r,
            T0,
            &register(1, 1, &flow("192.0.2.10:5060", "a", 1), OB),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.headers.get(&HeaderName::Require).map(|v| &**v),
            Some("outbound")
        );
        let b = r.location.bindings("alice");
        assert_eq!(b.len(), 1);
        assert!(b[0].behind_nat, "reached over the flow it registered on");
        assert_eq!(
            binding_flow_key(&b[0]),
            Some(FlowKey {
                instance: "<urn:uuid:a>".into(),
                reg_id: 1
            })
        );
        // The phone moved: same instance and reg-id from another address replaces the binding.
        let resp = send(
            &mut r,
            T0 + 5,
            &register(2, 1, &flow("198.51.100.7:6000", "a", 1), OB),
        );
        assert_eq!(resp.status, 200);
        let b = r.location.bindings("alice");
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(&*b[0].contact.host, "198.51.100.7");
        // Expires=0 for the flow removes it, whatever the URI.
        let gone = format!("{};expires=0", flow("203.0.113.1", "a", 1));
        assert_eq!(send(&mut r, T0 + 6, &register(3, 1, &gone, OB)).status, 200);
        assert!(r.location.lookup("alice", T0 + 6).is_empty());
    }

    #[test]
    fn without_supported_outbound_the_reg_id_is_ignored() {
        let mut r = Registrar::default();
        let resp = send(
            &mut r,
            T0,
            &register(1, 1, &flow("192.0.2.10:5060", "a", 1), ""),
        );
        assert_eq!(resp.status, 200);
        assert!(resp.headers.get(&HeaderName::Require).is_none());
        send(
            &mut r,
            T0 + 5,
            &register(2, 1, &flow("198.51.100.7:6000", "a", 1), ""),
        );
        assert_eq!(
            r.location.bindings("alice").len(),
            2,
            "keyed by URI, as RFC 3261"
        );
    }

    #[test]
    fn a_first_hop_without_outbound_gets_439() {
        let mut r = Registrar::default();
        let c = flow("192.0.2.10:5060", "a", 1);
        assert_eq!(send(&mut r, T0, &register(1, 2, &c, OB)).status, 439);
        assert!(r.location.bindings("alice").is_empty());
        // The edge proxy marked its Path URI with `ob`: accepted.
        let path = "Path: <sip:edge.example.com;lr;ob>\r\n";
        let resp = r.handle_register_path(
            T0,
            &register(2, 2, &c, &format!("{OB}{path}")),
            "alice",
            "192.0.2.10:5060".parse().unwrap(),
            Transport::Udp,
            &["<sip:edge.example.com;lr;ob>".into()],
        );
        assert_eq!(resp.status, 200, "{resp:?}");
    }

    #[test]
    fn each_instance_is_reached_over_its_latest_flow() {
        let mut r = Registrar::default();
        send(
            &mut r,
            T0,
            &register(1, 1, &flow("192.0.2.10:5060", "a", 1), OB),
        );
        send(
            &mut r,
            T0 + 10,
            &register(2, 1, &flow("192.0.2.10:5062", "a", 2), OB),
        );
        send(
            &mut r,
            T0 + 1,
            &register(3, 1, &flow("192.0.2.20:5060", "b", 1), OB),
        );
        send(
            &mut r,
            T0 + 2,
            &register(4, 1, "<sip:alice@192.0.2.30:5060>", ""),
        );
        let all = r.location.lookup("alice", T0 + 20);
        assert_eq!(all.len(), 4);
        let chosen: Vec<String> = one_flow_per_instance(all)
            .iter()
            .map(|b| b.contact.to_string())
            .collect();
        assert_eq!(
            chosen,
            [
                "sip:alice@192.0.2.10:5062",
                "sip:alice@192.0.2.20:5060",
                "sip:alice@192.0.2.30:5060"
            ]
        );
    }
}
