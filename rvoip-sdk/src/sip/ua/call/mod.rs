//! One INVITE session (RFC 3261 §13–§15) as UAC or UAS: the initial INVITE with digest auth
//! retries, provisional responses and early media, 2xx/ACK (with the UAS's 2xx retransmission,
//! §13.3.1.4), CANCEL (§9), re-INVITE for hold/resume (RFC 3264 §8.4), BYE.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod extras;
mod uac;
mod uas;

use super::build::{self, Credentials};
use super::dialogs::{Dialogs, PeerPath};
use super::{CallState, UaConfig, UaError, UaEvent};
use crate::sdp::{self, Direction, LocalMedia, Negotiated, SrtpConfig};
use crate::sip::dialog::Dialog;
use crate::sip::msg::{HeaderName, Method, Request, Response, Uri};
use crate::sip::transaction::{ClientTxId, ServerTxId, TransactionLayer, Transport};

/// What a call's methods work on besides the call: the transaction layer and the user agent's
/// dialog table (the call's dialog lives there, shared with its other usages, RFC 5057).
pub(in crate::sip::ua) struct Cx<'a> {
    /// The transaction layer.
    pub tl: &'a mut TransactionLayer,
    /// The dialogs.
    pub dialogs: &'a mut Dialogs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// UAC: INVITE sent, no final response.
    Outgoing,
    /// UAS: INVITE received, not answered.
    Incoming,
    /// UAS: 200 sent, waiting for the ACK.
    WaitAck,
    /// Up.
    Established,
    /// BYE sent, waiting for its final response (auth retries still possible).
    Terminating,
    /// Over; the call is forgotten.
    Done,
}

/// Retransmission of our 2xx to an INVITE until the ACK (§13.3.1.4).
struct OkRetx {
    tx: ServerTxId,
    resp: Response,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

pub(in crate::sip::ua) struct Call {
    id: u64,
    /// The account the call belongs to, if any.
    pub(in crate::sip::ua) account: Option<u64>,
    creds: Option<Credentials>,
    user: String,
    /// First hop of the initial INVITE (outgoing) or the source of the INVITE (incoming).
    pub(in crate::sip::ua) dest: SocketAddr,
    transport: Transport,
    /// Our address facing the peer.
    pub(in crate::sip::ua) local: SocketAddr,
    /// The address our Contact names: `local`, or the public address the account learned from
    /// its registrar's `received`/`rport` (RFC 3581 §4) when the call uses the same socket.
    pub(in crate::sip::ua) contact_addr: SocketAddr,
    pub(in crate::sip::ua) state: CallState,
    /// The peer's URI as text.
    pub(in crate::sip::ua) peer: String,
    phase: Phase,
    /// The key of the call's dialog in the user agent's table (early or confirmed).
    pub(in crate::sip::ua) dialog: Option<u64>,
    media: Option<LocalMedia>,
    sdp_id: u64,
    sdp_version: u64,
    negotiated: Option<Negotiated>,
    media_started: bool,
    // UAC side of the initial INVITE.
    invite: Option<Request>,
    invite_tx: Option<ClientTxId>,
    provisional: bool,
    cancel_pending: bool,
    cancelled: bool,
    cancel_deadline: Option<Instant>,
    // UAS side.
    server_tx: Option<ServerTxId>,
    remote_invite: Option<Request>,
    offerless: bool,
    ok_retx: Option<OkRetx>,
    t1: Duration,
    t2: Duration,
    // re-INVITE we sent: (transaction, request, hold wanted).
    reinvite: Option<(ClientTxId, Request, bool)>,
    /// BYE in flight.
    bye: Option<(ClientTxId, Request)>,
    local_hold: bool,
    remote_hold: bool,
    /// We hung up before the ACK for our 2xx arrived: BYE when it does (§15).
    bye_after_ack: bool,
    /// A re-INVITE refused with 491 (glare), to send again at this instant (§14.1).
    reinvite_retry: Option<(Instant, bool)>,
    /// The SRTP settings of the call's account (incoming calls: for the answer).
    pub(in crate::sip::ua) srtp: SrtpConfig,
    /// Targets learned from 3xx responses, best first, not tried yet (§8.1.3.4).
    redirect_targets: Vec<Uri>,
    /// URIs the INVITE already went to (the first target and each redirect).
    tried_targets: Vec<String>,
    /// The SDP answer we sent in a 183 (early media), reused in the 2xx.
    early_answer: Option<String>,
    /// DTMF keys waiting to go by INFO, one transaction at a time: (key, duration ms).
    info_queue: std::collections::VecDeque<(char, u32)>,
    /// The INFO in flight.
    info: Option<(ClientTxId, Request)>,
}

/// Most redirects (3xx) an outgoing call follows.
pub(in crate::sip::ua) const MAX_REDIRECTS: usize = 5;

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::sip::ua) fn new_outgoing(
        id: u64,
        account: Option<u64>,
        creds: Option<Credentials>,
        user: String,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        media: LocalMedia,
    ) -> Call {
        Call {
            creds,
            account,
            media: Some(media),
            ..Call::blank(
                id,
                user,
                dest,
                transport,
                local,
                CallState::Calling,
                Phase::Outgoing,
            )
        }
    }

    /// A call in `phase` with nothing negotiated yet.
    fn blank(
        id: u64,
        user: String,
        dest: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        state: CallState,
        phase: Phase,
    ) -> Call {
        Call {
            id,
            account: None,
            creds: None,
            user,
            dest,
            transport,
            local,
            contact_addr: local,
            state,
            peer: String::new(),
            phase,
            dialog: None,
            media: None,
            sdp_id: rand::random::<u32>() as u64,
            sdp_version: 1,
            negotiated: None,
            media_started: false,
            invite: None,
            invite_tx: None,
            provisional: false,
            cancel_pending: false,
            cancelled: false,
            cancel_deadline: None,
            server_tx: None,
            remote_invite: None,
            offerless: false,
            ok_retx: None,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            reinvite: None,
            bye: None,
            local_hold: false,
            remote_hold: false,
            bye_after_ack: false,
            reinvite_retry: None,
            srtp: SrtpConfig::default(),
            redirect_targets: Vec::new(),
            tried_targets: Vec::new(),
            early_answer: None,
            info_queue: std::collections::VecDeque::new(),
            info: None,
        }
    }

    /// Whether the call's signalling is encrypted (TLS, WSS).
    pub(in crate::sip::ua) fn transport_is_secure(&self) -> bool {
        self.transport.is_secure()
    }

    fn contact(&self) -> String {
        build::contact_uri(&self.user, self.contact_addr, self.transport)
    }

    /// Sends the initial INVITE with our offer (§13.2.1).
    pub(in crate::sip::ua) fn send_invite(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        target: &Uri,
        from: &str,
        extra: &[(HeaderName, String)],
    ) -> Result<ClientTxId, UaError> {
        let t = cx.tl.timer_config();
        self.t1 = t.t1;
        self.t2 = t.t2;
        let media = self
            .media
            .as_ref()
            .ok_or(UaError::InvalidState("no media"))?;
        let offer = sdp::create_offer(media, self.sdp_id, self.sdp_version)?;
        let target_s = target.to_string();
        self.peer = target_s.clone();
        self.tried_targets.push(target_s.clone());
        let call_id = format!("{}@{}", build::token(), build::host_of(self.local.ip()));
        let mut req = build::new_request(
            Method::Invite,
            target.clone(),
            from,
            &build::token(),
            &target_s,
            &call_id,
            1,
        );
        req.headers
            .push(HeaderName::Contact, format!("<{}>", self.contact()));
        req.headers.push(HeaderName::Allow, build::ALLOW);
        for (name, value) in extra {
            req.headers.push(name.clone(), value.clone());
        }
        build::set_sdp(&mut req.headers, &mut req.body, &offer);
        build::finish_request(&mut req, self.local, self.transport);
        let tx = cx
            .tl
            .send_request(now, req.clone(), self.dest, self.transport);
        self.invite = Some(req);
        self.invite_tx = Some(tx);
        Ok(tx)
    }

    /// A new incoming INVITE (§13.3.1): 420 for a Require we lack, 488 when no codec fits, 400
    /// for a request a dialog cannot be made from; else 180 Ringing and an incoming call.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::sip::ua) fn new_incoming(
        id: u64,
        account: Option<u64>,
        now: Instant,
        cx: &mut Cx<'_>,
        tx: ServerTxId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
        local: SocketAddr,
        contact_addr: SocketAddr,
        cfg: &UaConfig,
        srtp: SrtpConfig,
        replaces: Option<u64>,
    ) -> (Option<Call>, Vec<UaEvent>) {
        let unsupported: Vec<String> = req
            .headers
            .get_all(&HeaderName::Require)
            .flat_map(|v| v.split(','))
            .map(|o| o.trim().to_string())
            .filter(|o| {
                !o.is_empty()
                    && !build::SUPPORTED
                        .split(", ")
                        .any(|s| s.eq_ignore_ascii_case(o))
            })
            .collect();
        if !unsupported.is_empty() {
            let req_ext = unsupported.join(", ");
            let mut resp = build::response(&req, 420, Some(&build::token()), None);
            resp.headers.push(HeaderName::Unsupported, req_ext.clone());
            cx.tl.respond(now, tx, resp);
            return (None, Vec::new());
        }
        let offer = build::sdp_body(&req.headers, &req.body).map(str::to_string);
        if let Some(offer) = &offer {
            let probe = LocalMedia {
                addr: local.ip(),
                port: 9,
                codecs: cfg.codecs.clone(),
                dtmf: cfg.dtmf,
                direction: Direction::SendRecv,
                security: srtp.local(transport.is_secure(), cfg.dtls_fingerprint.clone()),
            };
            let probe = if probe.addr.is_unspecified() {
                LocalMedia {
                    addr: std::net::Ipv4Addr::LOCALHOST.into(),
                    ..probe
                }
            } else {
                probe
            };
            if let Err(e) = sdp::answer(offer, &probe, 1, 1) {
                let status = match e.status() {
                    488 => 488,
                    _ => 400,
                };
                tracing::info!(status, reason = %e, "incoming INVITE refused");
                let mut resp = build::response(&req, status, Some(&build::token()), None);
                // RFC 3261 §20.43: 305 Incompatible media format, with the reason as text.
                resp.headers.push(
                    HeaderName::Warning,
                    format!("305 rvoip \"{}\"", e.to_string().replace('"', "'")),
                );
                cx.tl.respond(now, tx, resp);
                return (None, Vec::new());
            }
        }
        let local_tag = build::token();
        let dialog = match Dialog::from_uas(&req, &local_tag) {
            Ok(d) => d,
            Err(_) => {
                let resp = build::response(&req, 400, Some(&local_tag), None);
                cx.tl.respond(now, tx, resp);
                return (None, Vec::new());
            }
        };
        let user = req.uri.user.as_deref().unwrap_or("").to_string();
        let peer = dialog.remote_uri.uri.to_string();
        let key = cx.dialogs.insert(
            dialog,
            PeerPath {
                dest: source,
                transport,
                local,
                contact_addr,
                user: user.clone(),
                creds: None,
            },
        );
        if let Some(e) = cx.dialogs.get_mut(Some(key)) {
            e.invite = Some(id);
        }
        let from = req
            .headers
            .get(&HeaderName::From)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let to = req
            .headers
            .get(&HeaderName::To)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let t = cx.tl.timer_config();
        let mut call = Call {
            account,
            peer,
            dialog: Some(key),
            server_tx: Some(tx),
            offerless: offer.is_none(),
            t1: t.t1,
            t2: t.t2,
            srtp,
            contact_addr,
            ..Call::blank(
                id,
                user,
                source,
                transport,
                local,
                CallState::Ringing,
                Phase::Incoming,
            )
        };
        let contact = call.contact();
        let ringing = build::response(&req, 180, Some(&local_tag), Some(&contact));
        cx.tl.respond(now, tx, ringing);
        call.remote_invite = Some(req);
        let ev = vec![
            UaEvent::IncomingCall {
                call: crate::sip::ua::CallId(id),
                account: account.map(crate::sip::ua::AccountId),
                from,
                to,
                replaces: replaces.map(crate::sip::ua::CallId),
            },
            UaEvent::CallState {
                call: crate::sip::ua::CallId(id),
                state: CallState::Ringing,
            },
        ];
        (Some(call), ev)
    }

    pub(in crate::sip::ua) fn server_tx(&self) -> Option<ServerTxId> {
        if self.phase == Phase::Incoming {
            self.server_tx
        } else {
            None
        }
    }

    /// Whether the call is up (2xx and ACK), so that in-dialog requests may go.
    pub(in crate::sip::ua) fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    pub(in crate::sip::ua) fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    pub(in crate::sip::ua) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ok_retx.as_ref().map(|r| r.next.min(r.give_up)),
            self.cancel_deadline,
            self.reinvite_retry.map(|r| r.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn set_state(&mut self, state: CallState) -> Option<UaEvent> {
        if self.state == state {
            return None;
        }
        self.state = state.clone();
        Some(UaEvent::CallState {
            call: crate::sip::ua::CallId(self.id),
            state,
        })
    }

    fn up_state(&self) -> CallState {
        if self.local_hold || self.remote_hold {
            CallState::Held {
                local: self.local_hold,
                remote: self.remote_hold,
            }
        } else {
            CallState::Connected
        }
    }

    /// Reports the end of the call: MediaStop (if media ran) and Ended.
    fn end(&mut self, status: u16, reason: &str, phase: Phase) -> Vec<UaEvent> {
        let mut ev = Vec::new();
        if self.media_started {
            self.media_started = false;
            ev.push(UaEvent::MediaStop {
                call: crate::sip::ua::CallId(self.id),
            });
        }
        self.ok_retx = None;
        self.cancel_deadline = None;
        self.reinvite_retry = None;
        self.phase = phase;
        ev.extend(self.set_state(CallState::Ended {
            status,
            reason: reason.to_string(),
        }));
        ev
    }

    fn media_event(&mut self, n: Negotiated) -> Option<UaEvent> {
        let call = crate::sip::ua::CallId(self.id);
        let changed = self.negotiated.as_ref() != Some(&n);
        self.negotiated = Some(n.clone());
        if !self.media_started {
            self.media_started = true;
            Some(UaEvent::MediaStart { call, media: n })
        } else if changed {
            Some(UaEvent::MediaUpdate { call, media: n })
        } else {
            None
        }
    }

    /// The next hop of an in-dialog request (§12.2.1.1, §8.1.2): the first Route, else the
    /// remote target, else where the INVITE went / came from.
    fn next_hop(&self, cx: &Cx<'_>) -> SocketAddr {
        cx.dialogs
            .get(self.dialog)
            .map_or(self.dest, |e| e.next_hop())
    }

    /// Builds an in-dialog request with a new CSeq (or `seq` for ACK), Via, Contact.
    fn dialog_request(
        &mut self,
        cx: &mut Cx<'_>,
        method: Method,
        seq: Option<u32>,
    ) -> Option<Request> {
        Some(cx.dialogs.get_mut(self.dialog)?.request(method, seq))
    }

    /// Our tag in the call's dialog.
    fn local_tag(&self, cx: &Cx<'_>) -> Option<String> {
        cx.dialogs
            .get(self.dialog)
            .map(|e| e.dialog.local_tag.to_string())
    }

    /// ACKs a 2xx (§13.2.2.4): in-dialog, CSeq of the INVITE, credentials of the INVITE (§22.1).
    pub(in crate::sip::ua) fn ack_2xx(
        &mut self,
        now: Instant,
        cx: &mut Cx<'_>,
        resp: &Response,
        _via: Option<(SocketAddr, Transport)>,
    ) {
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        let Some(mut ack) = self.dialog_request(cx, Method::Ack, Some(cseq.seq)) else {
            return;
        };
        let invite = self
            .reinvite
            .as_ref()
            .map(|(_, r, _)| r)
            .filter(|r| r.headers.cseq().is_ok_and(|c| c.seq == cseq.seq))
            .or(self.invite.as_ref());
        if let Some(inv) = invite {
            for h in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
                for v in inv.headers.get_all(&h) {
                    ack.headers.push(h.clone(), v.clone());
                }
            }
        }
        let hop = self.next_hop(cx);
        cx.tl.send_request(now, ack, hop, self.transport);
    }
}
