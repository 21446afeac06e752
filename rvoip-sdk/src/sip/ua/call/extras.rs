//! What a call does beyond the basic INVITE session: following 3xx redirects (RFC 3261
//! §8.1.3.4), early media from the UAS side (183 Session Progress with the SDP answer, RFC
//! 3960 §3), and DTMF keys by SIP INFO (`application/dtmf-relay`, as PBXes and PJSIP send them).

use std::time::Instant;

use super::{Call, Cx, MAX_REDIRECTS, Phase, build};
use crate::sdp::{self, Direction, LocalMedia};
use crate::sip::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use crate::sip::transaction::ClientTxId;
use crate::sip::ua::{CallId, CallState, UaError, UaEvent};

/// Longest DTMF key we send by INFO (ms).
const MAX_INFO_DURATION_MS: u32 = 5000;

/// The key of an INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`). Returns the key and its duration (ms, 0 when not given).
pub(in crate::sip::ua) fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Option<(char, u32)> {
    let mime = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let key = |s: &str| {
        let s = s.trim();
        let mut chars = s.chars();
        let c = chars.next()?.to_ascii_uppercase();
        if chars.next().is_some() {
            // RFC 4733 event numbers: 10 is *, 11 is #.
            return match s {
                "10" => Some('*'),
                "11" => Some('#'),
                _ => None,
            };
        }
        matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
    };
    match mime.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = 0;
            for line in text.lines() {
                let Some((n, v)) = line.split_once('=') else {
                    continue;
                };
                match n.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = key(v),
                    "duration" => duration = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            digit.map(|d| (d, duration))
        }
        "application/dtmf" => key(text).map(|d| (d, 0)),
        _ => None,
    }
}

impl Call {
    /// A 3xx to our INVITE (§8.1.3.4): sends the INVITE again to the best Contact not tried yet
    /// (by `q`, at most [`MAX_REDIRECTS`] times), through the account's server when the call
    /// has one, else to the target's own address. `None` when there is nowhere left to go.
    pub(super) fn follow_redirect(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
    ) -> Option<(Vec<UaEvent>, Option<ClientTxId>)> {
        let mut found: Vec<(f32, Uri)> = resp
            .headers
            .get_all(&HeaderName::Contact)
            .filter_map(|v| NameAddr::parse(v).ok())
            .filter(|n| n.uri.is_sip())
            .map(|n| {
                let q = n
                    .params
                    .get("q")
                    .flatten()
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q, n.uri.without_headers())
            })
            .collect();
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, u) in found {
            let s = u.to_string();
            let known = self.tried_targets.contains(&s)
                || self.redirect_targets.iter().any(|t| t.to_string() == s);
            if !known {
                self.redirect_targets.push(u);
            }
        }
        while self.tried_targets.len() <= MAX_REDIRECTS && !self.redirect_targets.is_empty() {
            let target = self.redirect_targets.remove(0);
            let hop = if self.account.is_some() {
                Some(self.dest)
            } else {
                build::uri_addr(&target)
            };
            let (Some(hop), Some(inv)) = (hop, self.invite.as_ref()) else {
                self.tried_targets.push(target.to_string());
                continue;
            };
            let mut req = inv.clone();
            req.uri = target.clone();
            req.headers.remove_all(&HeaderName::Authorization);
            req.headers.remove_all(&HeaderName::ProxyAuthorization);
            req.headers.remove_all(&HeaderName::Route);
            if let Ok(c) = inv.headers.cseq() {
                let seq = c.seq.wrapping_add(1) & 0x7fff_ffff;
                req.headers.set(HeaderName::CSeq, format!("{seq} INVITE"));
            }
            build::finish_request(&mut req, self.local, self.transport);
            let target_s = target.to_string();
            tracing::info!(call = self.id, status = resp.status, target = %target_s, "redirected");
            // A new transaction to a new target: the early dialog of the last one is gone.
            cx.dialogs.drop_invite(self.dialog.take());
            let tx = cx.tl.send_request(now, req.clone(), hop, self.transport);
            self.invite = Some(req);
            self.invite_tx = Some(tx);
            self.provisional = false;
            self.dest = hop;
            self.peer = target_s.clone();
            self.tried_targets.push(target_s.clone());
            let mut ev = vec![UaEvent::CallRedirected {
                call: CallId(self.id),
                status: resp.status,
                target: target_s,
            }];
            ev.extend(self.set_state(CallState::Calling));
            return Some((ev, Some(tx)));
        }
        None
    }

    /// Early media (RFC 3960 §3): answers the unanswered incoming call's offer in a 183
    /// Session Progress and starts the media; [`Call::answer`] later sends the same SDP in the
    /// 2xx. Errors: [`UaError::InvalidState`] (not an unanswered incoming call, no offer to
    /// answer, or already sent), [`UaError::Sdp`].
    pub(in crate::sip::ua) fn answer_early(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        mut media: LocalMedia,
    ) -> Result<Vec<UaEvent>, UaError> {
        let (tx, req) = self.unanswered_invite()?;
        if self.early_answer.is_some() {
            return Err(UaError::InvalidState("early media already started"));
        }
        let offer = build::sdp_body(&req.headers, &req.body)
            .ok_or(UaError::InvalidState("the INVITE has no offer"))?;
        media.direction = Direction::SendRecv;
        let (answer, n) = sdp::answer(offer, &media, self.sdp_id, self.sdp_version)?;
        self.remote_hold = super::uas::offer_holds(offer);
        let contact = self.contact();
        let tag = self.local_tag(cx);
        let mut progress = build::response(&req, 183, tag.as_deref(), Some(&contact));
        build::set_sdp(&mut progress.headers, &mut progress.body, &answer);
        cx.tl.respond(now, tx, progress);
        self.media = Some(media);
        self.early_answer = Some(answer);
        let mut ev = Vec::new();
        ev.extend(self.media_event(n));
        ev.extend(self.set_state(CallState::EarlyMedia));
        Ok(ev)
    }

    /// The SDP answer a 183 already carried (then the 2xx repeats it, RFC 3261 §13.2.1).
    pub(super) fn take_early_answer(&mut self) -> Option<String> {
        self.early_answer.take()
    }

    /// Queues DTMF `digits` (`0`–`9`, `*`, `#`, `A`–`D`) to send by INFO, each
    /// `duration_ms` long, one INFO transaction at a time. Returns the INFO sent now, if any.
    /// Errors: [`UaError::InvalidState`] (not established), [`UaError::InvalidArgument`]
    /// (another character, or nothing to send).
    pub(in crate::sip::ua) fn send_info_dtmf(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        digits: &str,
        duration_ms: u32,
    ) -> Result<Option<ClientTxId>, UaError> {
        if self.phase != Phase::Established {
            return Err(UaError::InvalidState("call is not established"));
        }
        let keys: Vec<char> = digits.chars().map(|c| c.to_ascii_uppercase()).collect();
        if keys.is_empty()
            || !keys
                .iter()
                .all(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D'))
        {
            return Err(UaError::InvalidArgument("DTMF keys are 0-9, *, #, A-D"));
        }
        let duration = duration_ms.clamp(40, MAX_INFO_DURATION_MS);
        self.info_queue
            .extend(keys.into_iter().map(|k| (k, duration)));
        Ok(self.next_info(now, cx))
    }

    /// Sends the next queued INFO if none is in flight.
    pub(super) fn next_info(&mut self, now: Instant, cx: &mut Cx<'_>) -> Option<ClientTxId> {
        if self.info.is_some() || self.phase != Phase::Established {
            return None;
        }
        let (key, duration) = self.info_queue.pop_front()?;
        let mut req = self.dialog_request(cx, Method::Info, None)?;
        req.headers
            .push(HeaderName::ContentType, "application/dtmf-relay");
        req.body = bytes::Bytes::from(format!("Signal={key}\r\nDuration={duration}\r\n"));
        let hop = self.next_hop(cx);
        let tx = cx.tl.send_request(now, req.clone(), hop, self.transport);
        self.info = Some((tx, req));
        Some(tx)
    }

    /// Whether `tx` is our INFO in flight.
    pub(super) fn is_info(&self, tx: ClientTxId) -> bool {
        self.info.as_ref().is_some_and(|(t, _)| *t == tx)
    }

    /// The final response to our INFO (or its timeout): answers one challenge, then sends the
    /// next key.
    pub(super) fn on_info_response(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: Option<&Response>,
    ) -> Option<ClientTxId> {
        if let Some(resp) = resp {
            if resp.status < 200 {
                return None;
            }
            if let Some((tx, req)) =
                self.retry_with_auth(now, cx, resp, |c| c.info.as_ref().map(|i| &i.1))
            {
                self.info = Some((tx, req));
                return Some(tx);
            }
            if resp.status >= 300 {
                tracing::info!(call = self.id, status = resp.status, "DTMF INFO refused");
            }
        }
        self.info = None;
        self.next_info(now, cx)
    }

    /// An INFO from the peer: a DTMF key (reported) or anything else (answered 200 and
    /// dropped, as legacy INFO usage expects, RFC 6086 §2).
    pub(super) fn on_info(&mut self, req: &Request) -> Option<UaEvent> {
        let ct = req.headers.content_type()?;
        let (digit, duration_ms) = parse_info_dtmf(ct, &req.body)?;
        Some(UaEvent::DtmfInfo {
            call: CallId(self.id),
            digit,
            duration_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_info_dtmf;

    #[test]
    fn info_dtmf_bodies() {
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some(('5', 160))
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal= #\nDuration= 250"),
            Some(('#', 250))
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf-relay", b"Signal=11\r\n"),
            Some(('#', 0))
        );
        assert_eq!(parse_info_dtmf("application/dtmf", b"*"), Some(('*', 0)));
        assert_eq!(parse_info_dtmf("application/dtmf-relay", b"Signal=X"), None);
        assert_eq!(parse_info_dtmf("text/plain", b"5"), None);
        assert_eq!(parse_info_dtmf("application/dtmf-relay", b"\xff\xfe"), None);
    }
}
