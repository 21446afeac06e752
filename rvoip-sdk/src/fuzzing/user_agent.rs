//! The `user_agent` fuzz target: the SDK's user agent core with an established call and a
//! pending presence subscription, fed hostile requests and responses from its peers.
//!
//! Setup (the same every run): alice's UA (one account, server 192.0.2.1:5060) calls bob's UA
//! directly; bob answers; alice subscribes to a buddy's presence through her server. Then the
//! input is NUL-separated records, each a control byte (taken modulo 4, so that the separator
//! is never needed as one) and a payload:
//! - `0`: a datagram to alice from bob (`1`: from the server); seeds write 4 and 5. In the payload, `$CID`, `$LT` and
//!   `$RT` become the call's Call-ID, alice's tag and bob's tag, `$SCID` and `$ST` the
//!   subscription's Call-ID and alice's tag in it, so that mutations reach the in-dialog code
//!   (REFER, NOTIFY with sipfrag or PIDF, INFO, re-INVITE, BYE, Replaces).
//! - `2`: simulated time passes (the next byte × 100 ms).
//! - `3`: an API call chosen by the next byte (transfer, accept or refuse a transfer, DTMF by
//!   INFO, hold, hang up, unsubscribe, publish).
//!
//! Invariants: nothing panics, and the calls stay few (no request makes calls multiply).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sdp::{AudioCodec, Direction, LocalMedia, LocalSecurity};
use crate::sip::msg::{Limits, Message, Uri};
use crate::sip::transaction::Transport;
use crate::sip::ua::{
    AccountConfig, CallId, Credentials, EventPackage, TransferId, UaConfig, UaEvent, UserAgent,
};

const ALICE: &str = "192.0.2.10:5060";
const BOB: &str = "192.0.2.20:5060";
const SERVER: &str = "192.0.2.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 5060)))
}

fn media(port: u16) -> LocalMedia {
    LocalMedia {
        addr: addr(ALICE).ip(),
        port,
        codecs: vec![AudioCodec::PCMU, AudioCodec::PCMA],
        dtmf: true,
        direction: Direction::SendRecv,
        security: LocalSecurity::plain(),
    }
}

/// The first header line `name: value` of a message's text.
fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

fn tag(value: &str) -> String {
    value
        .split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// Delivers everything `from` sends to `to` (and drops what goes elsewhere), returning the
/// texts sent.
fn deliver(
    now: Instant,
    from: &mut UserAgent,
    from_addr: &str,
    to: &mut UserAgent,
    to_addr: &str,
) -> Vec<String> {
    let mut sent = Vec::new();
    while let Some(t) = from.poll_transmit() {
        sent.push(String::from_utf8_lossy(&t.bytes).into_owned());
        if t.dest == addr(to_addr) {
            to.handle_datagram(now, t.bytes, addr(from_addr), Transport::Udp, addr(to_addr));
        }
    }
    sent
}

struct Setup {
    alice: UserAgent,
    call: CallId,
    account: crate::sip::ua::AccountId,
    subs: Vec<crate::sip::ua::SubscriptionId>,
    /// (placeholder, value)
    names: Vec<(&'static str, String)>,
}

fn setup(now: Instant) -> Option<Setup> {
    let mut alice = UserAgent::new(UaConfig::default());
    let mut bob = UserAgent::new(UaConfig::default());
    let account = alice.add_account(AccountConfig {
        aor: Uri::parse(&"sip:alice@example.com".into()).ok()?,
        credentials: Credentials {
            username: "alice".into(),
            password: "apw".into(),
        },
        server: addr(SERVER),
        transport: Transport::Udp,
        local: addr(ALICE),
        expires_s: 300,
        alternates: Vec::new(),
        srtp: Default::default(),
        dtmf_mode: Default::default(),
    });
    let call = alice
        .make_call(
            now,
            None,
            Uri::parse(&"sip:bob@192.0.2.20:5060".into()).ok()?,
            addr(BOB),
            Transport::Udp,
            addr(ALICE),
            media(40000),
        )
        .ok()?;
    let mut wire = deliver(now, &mut alice, ALICE, &mut bob, BOB);
    let incoming = std::iter::from_fn(|| bob.poll_event()).find_map(|e| match e {
        UaEvent::IncomingCall { call, .. } => Some(call),
        _ => None,
    })?;
    bob.answer(now, incoming, media(41000)).ok()?;
    wire.extend(deliver(now, &mut bob, BOB, &mut alice, ALICE));
    wire.extend(deliver(now, &mut alice, ALICE, &mut bob, BOB));
    let ok = wire.iter().find(|m| m.starts_with("SIP/2.0 200"))?;
    let sub = alice
        .subscribe(
            now,
            account,
            Uri::parse(&"sip:buddy@example.com".into()).ok()?,
            EventPackage::Presence,
            600,
        )
        .ok()?;
    let mut subscribe = String::new();
    while let Some(t) = alice.poll_transmit() {
        let text = String::from_utf8_lossy(&t.bytes).into_owned();
        if text.starts_with("SUBSCRIBE ") {
            subscribe = text;
        }
    }
    while alice.poll_event().is_some() {}
    let names = vec![
        ("$SCID", header(&subscribe, "Call-ID").to_string()),
        ("$ST", tag(header(&subscribe, "From"))),
        ("$CID", header(ok, "Call-ID").to_string()),
        ("$LT", tag(header(ok, "From"))),
        ("$RT", tag(header(ok, "To"))),
    ];
    Some(Setup {
        alice,
        call,
        account,
        subs: vec![sub],
        names,
    })
}

/// Runs one input (see the module documentation).
pub fn user_agent(data: &[u8]) {
    run(data);
}

/// Runs one input; returns the events alice produced (for the harness's own test).
fn run(data: &[u8]) -> Vec<UaEvent> {
    let mut seen = Vec::new();
    let mut now = Instant::now();
    let Some(mut s) = setup(now) else {
        return seen;
    };
    let mut transfers: Vec<TransferId> = Vec::new();
    let limits = Limits::default();
    for rec in data.split(|b| *b == 0).take(64) {
        let Some((&ctl, payload)) = rec.split_first() else {
            continue;
        };
        match ctl % 4 {
            0 | 1 => {
                let mut text = String::from_utf8_lossy(payload).into_owned();
                for (k, v) in &s.names {
                    text = text.replace(k, v);
                }
                let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
                // Content-Length is fixed up so that bodies reach the usages.
                let text = match text.split_once("\r\n\r\n") {
                    Some((head, body)) if head.contains("Content-Length: ") => {
                        let head: Vec<String> = head
                            .split("\r\n")
                            .map(|l| {
                                if l.starts_with("Content-Length:") {
                                    format!("Content-Length: {}", body.len())
                                } else {
                                    l.to_string()
                                }
                            })
                            .collect();
                        format!("{}\r\n\r\n{body}", head.join("\r\n"))
                    }
                    _ => text,
                };
                let from = if ctl % 4 == 0 { BOB } else { SERVER };
                let bytes = Bytes::from(text);
                // Both parsers see it: the UA through the transaction layer.
                let _ = Message::parse(bytes.clone(), &limits);
                s.alice
                    .handle_datagram(now, bytes, addr(from), Transport::Udp, addr(ALICE));
            }
            2 => {
                let step = payload.first().copied().unwrap_or(1);
                now += Duration::from_millis(100 * u64::from(step));
                s.alice.handle_timeout(now);
            }
            _ => {
                let op = payload.first().copied().unwrap_or(0);
                let target = || Uri::parse(&"sip:carol@192.0.2.30".into()).ok();
                let _ = match op % 8 {
                    0 => target().map(|t| s.alice.transfer(now, s.call, t).is_ok()),
                    1 => transfers.first().map(|t| {
                        s.alice
                            .accept_transfer(
                                now,
                                *t,
                                addr("192.0.2.30:5060"),
                                Transport::Udp,
                                addr(ALICE),
                                media(42000),
                            )
                            .is_ok()
                    }),
                    2 => transfers
                        .first()
                        .map(|t| s.alice.reject_transfer(now, *t, 603).is_ok()),
                    3 => Some(s.alice.send_dtmf_info(now, s.call, "1#", 100).is_ok()),
                    4 => Some(s.alice.set_hold(now, s.call, true).is_ok()),
                    5 => Some(s.alice.hangup(now, s.call).is_ok()),
                    6 => s.subs.first().map(|x| s.alice.unsubscribe(now, *x).is_ok()),
                    _ => Some(
                        s.alice
                            .publish(now, s.account, true, Some("Away"), Some("away"), 300)
                            .is_ok(),
                    ),
                };
            }
        }
        while s.alice.poll_transmit().is_some() {}
        while let Some(e) = s.alice.poll_event() {
            if let UaEvent::TransferRequested { transfer, .. } = &e {
                transfers.insert(0, *transfer);
            }
            if seen.len() < 256 {
                seen.push(e);
            }
        }
        assert!(s.alice.call_count() <= 8, "calls multiplied");
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders reach the dialog: an in-dialog REFER and a presence NOTIFY that
    /// overtakes its 2xx are taken as such (not 481).
    #[test]
    fn seeds_reach_the_usages() {
        let refer = "\x04REFER sip:alice@192.0.2.10:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKx\n\
                     Max-Forwards: 70\nFrom: <sip:bob@192.0.2.20:5060>;tag=$RT\nTo: <sip:a@192.0.2.10>;tag=$LT\n\
                     Call-ID: $CID\nCSeq: 10 REFER\nContact: <sip:bob@192.0.2.20:5060>\n\
                     Refer-To: <sip:carol@192.0.2.30>\nContent-Length: 0\n\n";
        let ev = run(refer.as_bytes());
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::TransferRequested { .. })),
            "{ev:?}"
        );
        let notify = "\x05NOTIFY sip:alice@192.0.2.10:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKy\n\
                      Max-Forwards: 70\nFrom: <sip:buddy@example.com>;tag=n1\nTo: <sip:alice@example.com>;tag=$ST\n\
                      Call-ID: $SCID\nCSeq: 1 NOTIFY\nContact: <sip:ps@192.0.2.1:5060>\nEvent: presence\n\
                      Subscription-State: active;expires=600\nContent-Type: application/pidf+xml\n\
                      Content-Length: 0\n\n<presence entity=\"sip:b@x\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>";
        let ev = run(notify.as_bytes());
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::PresenceNotify { .. })),
            "{ev:?}"
        );
    }
}
