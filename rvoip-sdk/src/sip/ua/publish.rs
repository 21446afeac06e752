//! Publishing an account's own presence (RFC 3903 PUBLISH of a PIDF document, RFC 3863): the
//! first PUBLISH carries the document, the presence server answers with a `SIP-ETag`; refreshes
//! go before expiry without a body and with `SIP-If-Match`; a change is a new document with
//! `SIP-If-Match`; 412 (the entity tag is gone) starts over with the full document; removal is
//! `Expires: 0`.

use std::time::{Duration, Instant};

use super::build;
use super::{AccountId, Owner, UaError, UaEvent, UserAgent};
use crate::sip::msg::{HeaderName, Method, Request, Response};
use crate::sip::presence;

/// Refresh this long before the publication expires (or at half its lifetime when shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(15);

/// An account's presence publication.
pub(super) struct Publication {
    /// The entity tag the server gave the last accepted PUBLISH (RFC 3903 §11.3.1).
    etag: Option<String>,
    /// The document, for a restart after 412.
    document: String,
    /// Requested lifetime (s).
    expires_s: u32,
    /// The PUBLISH as last sent.
    req: Request,
    /// When to refresh.
    refresh_at: Option<Instant>,
    /// The Call-ID of the account's PUBLISHes, and our CSeq.
    call_id: String,
    seq: u32,
    /// Whether the last PUBLISH removes the publication.
    removing: bool,
    /// Whether the last PUBLISH is a silent refresh (its success is not reported).
    refresh: bool,
    /// A PUBLISH awaits its final response.
    in_flight: bool,
    /// What the app asked for while a PUBLISH was in flight, sent once it is answered (a
    /// second PUBLISH without the entity tag would leave a stray publication at the server).
    next: Option<Next>,
}

/// A change waiting for the PUBLISH in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Publish the current document.
    Modify,
    /// Remove the publication.
    Remove,
}

impl UserAgent {
    /// Publishes the account's presence (RFC 3903) through its server: `open` (reachable) or
    /// closed, with an optional `note` (e.g. `Away`) and RPID `activity` (`away`, `busy`,
    /// `on-the-phone`, ...), for `expires_s` seconds, refreshed until
    /// [`UserAgent::unpublish`]. The result arrives as [`UaEvent::PublishResult`].
    /// Errors: [`UaError::NotFound`] (account), [`UaError::InvalidArgument`] (an activity that
    /// is not a token).
    pub fn publish(
        &mut self,
        now: Instant,
        account: AccountId,
        open: bool,
        note: Option<&str>,
        activity: Option<&str>,
        expires_s: u32,
    ) -> Result<(), UaError> {
        if activity.is_some_and(|a| {
            a.is_empty()
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }) {
            return Err(UaError::InvalidArgument("activity must be a token"));
        }
        let reg = self.accounts.get(&account.0).ok_or(UaError::NotFound)?;
        let entity = reg.cfg.aor.to_string();
        let document = presence::pidf(&entity, open, note, activity);
        if let Some(p) = self
            .publications
            .get_mut(&account.0)
            .filter(|p| p.in_flight)
        {
            // Sent with the entity tag once the PUBLISH in flight is answered.
            p.document = document;
            p.expires_s = expires_s.max(60);
            p.next = Some(Next::Modify);
            return Ok(());
        }
        let (etag, call_id, seq) = match self.publications.remove(&account.0) {
            Some(p) => (p.etag, p.call_id, p.seq),
            None => (None, build::token(), 0),
        };
        let mut p = Publication {
            etag,
            document,
            expires_s: expires_s.max(60),
            req: Request {
                method: Method::Publish,
                uri: reg.cfg.aor.clone(),
                headers: Default::default(),
                body: Default::default(),
            },
            refresh_at: None,
            call_id,
            seq,
            removing: false,
            refresh: false,
            in_flight: false,
            next: None,
        };
        self.send_publish(now, account.0, &mut p, true);
        self.publications.insert(account.0, p);
        Ok(())
    }

    /// Removes the account's published presence (PUBLISH with `Expires: 0`, RFC 3903 §4.5) and
    /// stops refreshing it; while a PUBLISH is in flight, the removal follows its answer.
    /// Errors: [`UaError::NotFound`] (nothing published).
    pub fn unpublish(&mut self, now: Instant, account: AccountId) -> Result<(), UaError> {
        let mut p = self
            .publications
            .remove(&account.0)
            .ok_or(UaError::NotFound)?;
        if p.in_flight {
            p.next = Some(Next::Remove);
            p.refresh_at = None;
            self.publications.insert(account.0, p);
            return Ok(());
        }
        if p.etag.is_some() {
            p.removing = true;
            p.expires_s = 0;
            self.send_publish(now, account.0, &mut p, false);
            p.refresh_at = None;
            self.publications.insert(account.0, p);
        }
        Ok(())
    }

    /// Sends a PUBLISH of `p` with the document (`with_body`) or as a refresh.
    fn send_publish(&mut self, now: Instant, account: u64, p: &mut Publication, with_body: bool) {
        let Some(reg) = self.accounts.get(&account) else {
            return;
        };
        let aor = reg.cfg.aor.to_string();
        p.seq = p.seq.wrapping_add(1) & 0x7fff_ffff;
        let mut req = build::new_request(
            Method::Publish,
            reg.cfg.aor.clone(),
            &aor,
            &build::token(),
            &aor,
            &p.call_id,
            p.seq,
        );
        req.headers.push(HeaderName::Event, "presence");
        req.headers
            .push(HeaderName::Expires, p.expires_s.to_string());
        if let Some(tag) = &p.etag {
            req.headers.push(HeaderName::SipIfMatch, tag.clone());
        }
        if with_body {
            req.headers
                .push(HeaderName::ContentType, presence::PIDF_TYPE);
            req.body = bytes::Bytes::from(p.document.clone());
        }
        p.refresh = !with_body && !p.removing;
        p.in_flight = true;
        build::finish_request(&mut req, reg.cfg.local, reg.cfg.transport);
        let tx = self
            .tl
            .send_request(now, req.clone(), reg.cfg.server, reg.cfg.transport);
        self.owners.insert(tx, Owner::Publish(account));
        p.req = req;
    }

    /// A response to the account's PUBLISH (or a synthesized 408/503 with `resp` None).
    pub(super) fn on_publish_response(
        &mut self,
        now: Instant,
        account: u64,
        resp: Option<&Response>,
        status: u16,
        reason: &str,
    ) {
        if status < 200 {
            return;
        }
        let Some(mut p) = self.publications.remove(&account) else {
            return;
        };
        p.in_flight = false;
        let report = |ua: &mut UserAgent, status: u16, reason: &str| {
            ua.events.push_back(UaEvent::PublishResult {
                account: AccountId(account),
                status,
                reason: reason.to_string(),
            });
        };
        if (200..300).contains(&status) {
            if p.removing {
                report(self, status, reason);
                return;
            }
            if let Some(tag) = resp.and_then(|r| r.headers.get(&HeaderName::SipETag)) {
                p.etag = Some(tag.trim().to_string());
            }
            let granted = resp
                .and_then(|r| r.headers.get(&HeaderName::Expires))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(p.expires_s)
                .max(1);
            let life = Duration::from_secs(granted as u64);
            let wait = if life > REFRESH_MARGIN * 2 {
                life - REFRESH_MARGIN
            } else {
                life / 2
            };
            p.refresh_at = Some(now + wait);
            if !p.refresh {
                report(self, status, reason);
            }
            match p.next.take() {
                Some(Next::Modify) => self.send_publish(now, account, &mut p, true),
                Some(Next::Remove) => {
                    p.removing = true;
                    p.expires_s = 0;
                    p.refresh_at = None;
                    self.send_publish(now, account, &mut p, false);
                }
                None => {}
            }
            self.publications.insert(account, p);
            return;
        }
        if let Some(r) = resp {
            if matches!(status, 401 | 407) && !build::is_rejected_credential(&p.req, r) {
                let retry = self.accounts.get(&account).and_then(|reg| {
                    build::authorize(
                        &p.req,
                        r,
                        &reg.cfg.credentials,
                        reg.cfg.local,
                        reg.cfg.transport,
                    )
                    .map(|req| (req, reg.cfg.server, reg.cfg.transport))
                });
                if let Some((req, dest, transport)) = retry {
                    if let Ok(c) = req.headers.cseq() {
                        p.seq = c.seq;
                    }
                    let tx = self.tl.send_request(now, req.clone(), dest, transport);
                    self.owners.insert(tx, Owner::Publish(account));
                    p.req = req;
                    p.in_flight = true;
                    self.publications.insert(account, p);
                    return;
                }
            }
            if status == 412 && p.etag.is_some() && !p.removing {
                // Conditional Request Failed (§6): our entity tag expired; publish afresh.
                p.etag = None;
                self.send_publish(now, account, &mut p, true);
                self.publications.insert(account, p);
                return;
            }
            if status == 423 {
                let min = r
                    .headers
                    .get(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if let Some(min) = min.filter(|m| *m > p.expires_s && *m <= 86_400) {
                    p.expires_s = min;
                    let body = p.etag.is_none() || !p.refresh;
                    self.send_publish(now, account, &mut p, body);
                    self.publications.insert(account, p);
                    return;
                }
            }
        }
        report(self, status, reason);
        if p.next == Some(Next::Modify) && !p.removing {
            // The app changed its status meanwhile: publish that afresh.
            p.next = None;
            p.etag = None;
            self.send_publish(now, account, &mut p, true);
            self.publications.insert(account, p);
        }
    }

    /// Refreshes due publications.
    pub(super) fn publication_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .publications
            .iter()
            .filter(|(_, p)| p.refresh_at.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            if let Some(mut p) = self.publications.remove(&a) {
                p.refresh_at = None;
                let body = p.etag.is_none();
                self.send_publish(now, a, &mut p, body);
                self.publications.insert(a, p);
            }
        }
    }

    /// The earliest publication refresh.
    pub(super) fn publication_poll_timeout(&self) -> Option<Instant> {
        self.publications
            .values()
            .filter_map(|p| p.refresh_at)
            .min()
    }
}
