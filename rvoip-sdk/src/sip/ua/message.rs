//! Instant messages outside a dialog (RFC 3428, "pager mode"): sending a MESSAGE through an
//! account's server, answering one digest challenge (§22.2), and reporting the final status;
//! receiving a MESSAGE, answering it 200 OK and handing it to the app.
//!
//! A MESSAGE is a non-INVITE transaction: its result is the final response, or a synthesized
//! 408 (Timer F) or 503 (transport error, RFC 3261 §8.1.3.1).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::build::{self, Credentials};
use super::{AccountId, MessageId, Owner, UaError, UaEvent, UserAgent};
use crate::sip::msg::{HeaderName, Method, Request, Response, Uri};
use crate::sip::transaction::{ServerTxId, Transport};

/// Largest body of a MESSAGE we send (RFC 3428 §7: a MESSAGE over UDP should stay well under
/// the path MTU; larger content needs a session such as MSRP). Bytes.
pub const MAX_MESSAGE_BODY: usize = 1300;

/// One MESSAGE in flight.
pub(super) struct Outgoing {
    /// The request as last sent (a challenge is answered from it).
    req: Request,
    dest: SocketAddr,
    transport: Transport,
    local: SocketAddr,
    creds: Option<Credentials>,
}

impl UserAgent {
    /// Sends a MESSAGE (RFC 3428 §4) with `content_type` (e.g. `text/plain;charset=utf-8`) and
    /// `body` to `target`, through `dest` (the account's server when `account` is given, else
    /// the target's own address), from the account's AOR or `sip:<contact_user>@<local>`.
    /// `local` is our address facing `dest`. The result arrives as [`UaEvent::MessageResult`].
    /// Errors: [`UaError::NotFound`] (account), [`UaError::InvalidUri`] (not a SIP URI),
    /// [`UaError::InvalidArgument`] (empty or bad content type, body over
    /// [`MAX_MESSAGE_BODY`] bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn send_message(
        &mut self,
        now: Instant,
        account: Option<AccountId>,
        target: Uri,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        content_type: &str,
        body: Bytes,
    ) -> Result<MessageId, UaError> {
        if !target.is_sip() {
            return Err(UaError::InvalidUri(target.to_string()));
        }
        let ct = content_type.trim();
        if ct.is_empty() || !ct.contains('/') || ct.contains(['\r', '\n']) {
            return Err(UaError::InvalidArgument(
                "content type must be type/subtype",
            ));
        }
        if body.len() > MAX_MESSAGE_BODY {
            return Err(UaError::InvalidArgument(
                "MESSAGE body too large for pager mode (RFC 3428 §7)",
            ));
        }
        let (from, creds) = match account {
            Some(a) => {
                let reg = self.accounts.get(&a.0).ok_or(UaError::NotFound)?;
                (reg.cfg.aor.to_string(), Some(reg.cfg.credentials.clone()))
            }
            None => (
                build::contact_uri(&self.cfg.contact_user, local, Transport::Udp),
                None,
            ),
        };
        let target_s = target.to_string();
        let call_id = format!("{}@{}", build::token(), build::host_of(local.ip()));
        let mut req = build::new_request(
            Method::Message,
            target,
            &from,
            &build::token(),
            &target_s,
            &call_id,
            1,
        );
        req.headers.push(HeaderName::ContentType, ct.to_string());
        req.body = body;
        build::finish_request(&mut req, local, transport);
        let tx = self.tl.send_request(now, req.clone(), dest, transport);
        let id = self.alloc();
        self.owners.insert(tx, Owner::Message(id));
        self.messages.insert(
            id,
            Outgoing {
                req,
                dest,
                transport,
                local,
                creds,
            },
        );
        Ok(MessageId(id))
    }

    /// A final response (or a synthesized 408/503) to one of our MESSAGEs: answers a first
    /// 401/407 with credentials, else reports the result.
    pub(super) fn on_message_response(&mut self, now: Instant, id: u64, resp: &Response) {
        if resp.status < 200 {
            return; // provisional: the transaction stays ours
        }
        let Some(out) = self.messages.get_mut(&id) else {
            return;
        };
        if matches!(resp.status, 401 | 407) {
            let retry = out.creds.as_ref().and_then(|c| {
                if build::is_rejected_credential(&out.req, resp) {
                    None
                } else {
                    build::authorize(&out.req, resp, c, out.local, out.transport)
                }
            });
            if let Some(req) = retry {
                let tx = self
                    .tl
                    .send_request(now, req.clone(), out.dest, out.transport);
                out.req = req;
                self.owners.insert(tx, Owner::Message(id));
                return;
            }
        }
        self.messages.remove(&id);
        self.events.push_back(UaEvent::MessageResult {
            message: MessageId(id),
            status: resp.status,
            reason: resp.reason.to_string(),
        });
    }

    /// A MESSAGE ended without any response to hand over (its request is gone): reported with
    /// `status` and `reason`.
    pub(super) fn on_message_failure(&mut self, id: u64, status: u16, reason: &str) {
        if self.messages.remove(&id).is_some() {
            self.events.push_back(UaEvent::MessageResult {
                message: MessageId(id),
                status,
                reason: reason.to_string(),
            });
        }
    }

    /// An incoming MESSAGE outside a dialog (RFC 3428 §7): 415 without a body type, else
    /// 200 OK and [`UaEvent::MessageReceived`].
    pub(super) fn on_message_request(&mut self, now: Instant, tx: ServerTxId, req: &Request) {
        let Some(content_type) = req.headers.content_type().map(|c| c.trim().to_string()) else {
            let mut resp = build::response(req, 415, Some(&build::token()), None);
            resp.headers.push(HeaderName::Accept, "text/plain");
            self.tl.respond(now, tx, resp);
            return;
        };
        let resp = build::response(req, 200, Some(&build::token()), None);
        self.tl.respond(now, tx, resp);
        let header = |n: HeaderName| {
            req.headers
                .get(&n)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        self.events.push_back(UaEvent::MessageReceived {
            account: self.account_for(req).map(AccountId),
            from: header(HeaderName::From),
            to: header(HeaderName::To),
            content_type,
            body: req.body.clone(),
        });
    }
}
