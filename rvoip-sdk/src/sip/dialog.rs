//! SIP dialogs (RFC 3261 §12): the peer-to-peer relationship an INVITE sets up, identified by
//! Call-ID, local tag and remote tag, with the route set, remote target and CSeq counters that
//! every request inside it uses. Sans-IO: built from messages, builds requests.

use bytes::Bytes;
use bytestring::ByteString;

use crate::sip::msg::{HeaderName, Headers, Method, NameAddr, Request, Response, Uri};

/// Dialog state (§12): confirmed by a 2xx, early by a 1xx with a To tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag (§12.1).
    Early,
    /// Created or confirmed by a 2xx (§12.1).
    Confirmed,
}

/// One dialog's state (§12.1.1 for the UAS, §12.1.2 for the UAC).
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: ByteString,
    /// Our tag (From tag as UAC, To tag as UAS).
    pub local_tag: ByteString,
    /// The peer's tag.
    pub remote_tag: ByteString,
    /// Our last CSeq number used in a request we sent (§12.2.1.1 increments it).
    pub local_seq: u32,
    /// The peer's last CSeq number, if it has sent a request in the dialog (§12.2.2).
    pub remote_seq: Option<u32>,
    /// Our URI (From of our requests), with display name.
    pub local_uri: NameAddr,
    /// The peer's URI (To of our requests).
    pub remote_uri: NameAddr,
    /// The peer's Contact: the Request-URI of our requests (§12.2.1.1).
    pub remote_target: Uri,
    /// Route set (Record-Route values, in the order our requests carry them as Route).
    pub route_set: Vec<ByteString>,
    /// Early or confirmed.
    pub state: DialogState,
}

/// Why a dialog could not be formed from a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// A header the dialog needs (From, To with tag, Call-ID, CSeq, Contact) is missing or bad.
    #[error("missing or malformed {0}")]
    Header(&'static str),
}

fn contact_uri(headers: &Headers) -> Result<Uri, DialogError> {
    let c = headers
        .get(&HeaderName::Contact)
        .ok_or(DialogError::Header("Contact"))?;
    NameAddr::parse(c)
        .map(|n| n.uri)
        .map_err(|_| DialogError::Header("Contact"))
}

impl Dialog {
    /// The UAC side from our request and a 1xx/2xx response with a To tag (§12.1.2): the route
    /// set is the response's Record-Route in reverse. Errors: [`DialogError::Header`].
    pub fn from_uac(req: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let to = resp.headers.to().map_err(|_| DialogError::Header("To"))?;
        let remote_tag = to.tag().ok_or(DialogError::Header("To tag"))?.into();
        let from = req
            .headers
            .from()
            .map_err(|_| DialogError::Header("From"))?;
        let local_tag = from.tag().ok_or(DialogError::Header("From tag"))?.into();
        let call_id = req
            .headers
            .call_id()
            .ok_or(DialogError::Header("Call-ID"))?
            .clone();
        let cseq = req
            .headers
            .cseq()
            .map_err(|_| DialogError::Header("CSeq"))?;
        let mut route_set: Vec<ByteString> = resp
            .headers
            .get_all(&HeaderName::RecordRoute)
            .cloned()
            .collect();
        route_set.reverse();
        let remote_target = contact_uri(&resp.headers).unwrap_or_else(|_| req.uri.clone());
        Ok(Dialog {
            call_id,
            local_tag,
            remote_tag,
            local_seq: cseq.seq,
            remote_seq: None,
            local_uri: strip_tag(from),
            remote_uri: strip_tag(to),
            remote_target,
            route_set,
            state: if resp.status >= 200 {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
        })
    }

    /// The UAS side from a dialog-creating request and the To tag we chose (§12.1.1): the route
    /// set is the request's Record-Route in order. Errors: [`DialogError::Header`].
    pub fn from_uas(req: &Request, local_tag: &str) -> Result<Dialog, DialogError> {
        let from = req
            .headers
            .from()
            .map_err(|_| DialogError::Header("From"))?;
        let remote_tag = from.tag().ok_or(DialogError::Header("From tag"))?.into();
        let to = req.headers.to().map_err(|_| DialogError::Header("To"))?;
        let call_id = req
            .headers
            .call_id()
            .ok_or(DialogError::Header("Call-ID"))?
            .clone();
        let cseq = req
            .headers
            .cseq()
            .map_err(|_| DialogError::Header("CSeq"))?;
        Ok(Dialog {
            call_id,
            local_tag: local_tag.into(),
            remote_tag,
            local_seq: rand::random::<u32>() & 0x7fff,
            remote_seq: Some(cseq.seq),
            local_uri: strip_tag(to),
            remote_uri: strip_tag(from),
            remote_target: contact_uri(&req.headers)?,
            route_set: req
                .headers
                .get_all(&HeaderName::RecordRoute)
                .cloned()
                .collect(),
            state: DialogState::Confirmed,
        })
    }

    /// Whether `headers` (a request or response) belong to this dialog, seen from our side: the
    /// Call-ID matches and our tag and the peer's tag are where `incoming_request` says.
    pub fn matches(&self, headers: &Headers, incoming_request: bool) -> bool {
        if headers.call_id() != Some(&self.call_id) {
            return false;
        }
        let (Ok(from), Ok(to)) = (headers.from(), headers.to()) else {
            return false;
        };
        let (ours, theirs) = if incoming_request {
            (to.tag(), from.tag())
        } else {
            (from.tag(), to.tag())
        };
        ours == Some(&*self.local_tag) && theirs == Some(&*self.remote_tag)
    }

    /// Checks an incoming in-dialog request's CSeq (§12.2.2): lower than the last one is out of
    /// order (the UAS answers 500). Records it otherwise.
    pub fn accept_remote_seq(&mut self, seq: u32) -> bool {
        if let Some(last) = self.remote_seq {
            if seq < last {
                return false;
            }
        }
        self.remote_seq = Some(seq);
        true
    }

    /// The next in-dialog request of `method` (§12.2.1.1): Request-URI is the remote target,
    /// Route the route set (loose routing), From/To/Call-ID of the dialog, CSeq incremented
    /// (ACK and CANCEL take `cseq` explicitly via [`Dialog::request_with_cseq`]). The caller
    /// adds Via (with a fresh branch), Contact, Max-Forwards and the body.
    pub fn new_request(&mut self, method: Method) -> Request {
        self.local_seq = self.local_seq.wrapping_add(1) & 0x7fff_ffff;
        let seq = self.local_seq;
        self.request_with_cseq(method, seq)
    }

    /// Like [`Dialog::new_request`] but with a given CSeq number (ACK uses the INVITE's).
    pub fn request_with_cseq(&self, method: Method, seq: u32) -> Request {
        let mut headers = Headers::with_capacity(10);
        for r in &self.route_set {
            headers.push(HeaderName::Route, r.clone());
        }
        let mut from = self.local_uri.clone();
        from.params =
            crate::sip::msg::Params(format!("{};tag={}", from.params, self.local_tag).into());
        let mut to = self.remote_uri.clone();
        to.params =
            crate::sip::msg::Params(format!("{};tag={}", to.params, self.remote_tag).into());
        headers.push(HeaderName::From, from.to_string());
        headers.push(HeaderName::To, to.to_string());
        headers.push(HeaderName::CallId, self.call_id.clone());
        headers.push(HeaderName::CSeq, format!("{seq} {method}"));
        Request {
            method,
            uri: self.remote_target.clone(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Updates the remote target from a target-refresh request or its 2xx (§12.2.1.2, §12.2.2).
    pub fn refresh_target(&mut self, headers: &Headers) {
        if let Ok(uri) = contact_uri(headers) {
            self.remote_target = uri;
        }
    }
}

/// The URI and params of a From/To value without its tag.
fn strip_tag(mut n: NameAddr) -> NameAddr {
    let kept: Vec<&str> = n
        .params
        .0
        .split(';')
        .filter(|p| !p.is_empty() && !p.trim().to_ascii_lowercase().starts_with("tag="))
        .collect();
    let mut s = String::new();
    for p in kept {
        s.push(';');
        s.push_str(p);
    }
    n.params = crate::sip::msg::Params(s.into());
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{Limits, Message};

    fn parse(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n")), &Limits::default()).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@10.0.0.2 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
Max-Forwards: 70
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: c1@10.0.0.1
CSeq: 5 INVITE
Contact: <sip:alice@10.0.0.1:5060>
Record-Route: <sip:p1.example.com;lr>
Record-Route: <sip:p2.example.com;lr>
Content-Length: 0

";

    const OK: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
From: \"Alice\" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b2
Call-ID: c1@10.0.0.1
CSeq: 5 INVITE
Contact: <sip:bob@10.0.0.2:5070>
Record-Route: <sip:p1.example.com;lr>
Record-Route: <sip:p2.example.com;lr>
Content-Length: 0

";

    fn req(s: &str) -> Request {
        match parse(s) {
            Message::Request(r) => r,
            _ => panic!(),
        }
    }

    fn resp(s: &str) -> Response {
        match parse(s) {
            Message::Response(r) => r,
            _ => panic!(),
        }
    }

    #[test]
    fn uac_dialog_reverses_route_set_and_targets_contact() {
        let mut d = Dialog::from_uac(&req(INVITE), &resp(OK)).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(&*d.remote_tag, "b2");
        assert_eq!(d.route_set[0], "<sip:p2.example.com;lr>");
        let bye = d.new_request(Method::Bye);
        assert_eq!(bye.uri.to_string(), "sip:bob@10.0.0.2:5070");
        assert_eq!(bye.headers.cseq().unwrap().seq, 6);
        let to = bye.headers.to().unwrap();
        assert_eq!(to.tag(), Some("b2"));
        assert_eq!(bye.headers.from().unwrap().tag(), Some("a1"));
        let routes: Vec<_> = bye.headers.get_all(&HeaderName::Route).collect();
        assert_eq!(routes.len(), 2);
        assert!(d.matches(&resp(OK).headers, false));
    }

    #[test]
    fn uas_dialog_keeps_route_order_and_checks_cseq() {
        let mut d = Dialog::from_uas(&req(INVITE), "b2").unwrap();
        assert_eq!(d.route_set[0], "<sip:p1.example.com;lr>");
        assert_eq!(d.remote_target.to_string(), "sip:alice@10.0.0.1:5060");
        assert!(!d.accept_remote_seq(4));
        assert!(d.accept_remote_seq(6));
        let bye = d.new_request(Method::Bye);
        assert_eq!(bye.headers.from().unwrap().tag(), Some("b2"));
        assert_eq!(bye.headers.to().unwrap().tag(), Some("a1"));
        // An incoming request from the peer matches with the tags swapped.
        let mut incoming = req(INVITE);
        incoming
            .headers
            .set(HeaderName::To, "<sip:bob@example.com>;tag=b2");
        assert!(d.matches(&incoming.headers, true));
        assert!(!d.matches(&incoming.headers, false));
    }

    #[test]
    fn missing_contact_is_an_error_for_uas() {
        let text = INVITE.replace("Contact: <sip:alice@10.0.0.1:5060>\n", "");
        assert_eq!(
            Dialog::from_uas(&req(&text), "x").unwrap_err(),
            DialogError::Header("Contact")
        );
    }
}
