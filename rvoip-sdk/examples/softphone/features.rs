//! The softphone's call-feature options: blind transfer and accepting a transfer (RFC 3515),
//! DTMF by SIP INFO and a check of the keys received, instant messages (RFC 3428), presence and
//! busy-lamp subscriptions (RFC 3856, RFC 4235), publishing presence (RFC 3903). Each `--expect-*`
//! option makes the run fail unless what it names was seen.

use rvoip_sdk::api::{Account, Call, Endpoint, Event, EventPackage};

/// Feature options (flattened into the softphone's arguments).
#[derive(clap::Args, Debug, Default)]
pub struct FeatureArgs {
    /// Once the call is up for --transfer-after seconds, transfer the peer to this URI (blind
    /// transfer, REFER); succeed only if the transfer's final status is 200.
    #[arg(long)]
    pub transfer_to: Option<String>,
    /// Seconds after connect before --transfer-to.
    #[arg(long, default_value_t = 1.5)]
    pub transfer_after: f64,
    /// Accept a transfer request (REFER) from the peer: place the new call with the same audio
    /// options and follow it (its tone is the one --expect-tone checks).
    #[arg(long)]
    pub accept_transfer: bool,
    /// Send DTMF (--dtmf) by SIP INFO (application/dtmf-relay) instead of RFC 4733.
    #[arg(long)]
    pub dtmf_info: bool,
    /// Succeed only if these DTMF keys arrived (RFC 4733 or INFO), in order.
    #[arg(long)]
    pub expect_dtmf: Option<String>,
    /// Send this text as an instant message to --message-to once registered; succeed only if it
    /// is accepted (200 or 202).
    #[arg(long, requires = "message_to")]
    pub message: Option<String>,
    /// Where --message goes (a SIP URI).
    #[arg(long, requires = "message")]
    pub message_to: Option<String>,
    /// Succeed only once an instant message containing this text arrived.
    #[arg(long)]
    pub expect_message: Option<String>,
    /// Subscribe to this URI's presence once registered.
    #[arg(long)]
    pub subscribe: Option<String>,
    /// Succeed only once the buddy's presence matched: `open`, `closed`, or an RPID activity
    /// (`away`, `busy`, ...).
    #[arg(long, requires = "subscribe")]
    pub expect_presence: Option<String>,
    /// Subscribe to this URI's dialogs (busy-lamp field) once registered.
    #[arg(long)]
    pub blf: Option<String>,
    /// Succeed only once the line went through these states in order (idle, ringing, in-call),
    /// e.g. `ringing,in-call`.
    #[arg(long, value_delimiter = ',', requires = "blf")]
    pub expect_line: Vec<String>,
    /// Let incoming calls ring, never answering them (for no-answer forwarding); the run lasts
    /// --timeout seconds.
    #[arg(long)]
    pub ring_only: bool,
    /// Publish our presence once registered: online with this RPID activity (e.g. `away`, with
    /// the note `Away`), or `closed`; succeed only if the server accepts it.
    #[arg(long)]
    pub publish: Option<String>,
}

/// What the features saw so far.
#[derive(Default)]
pub struct Features {
    transferred: bool,
    /// Set when our transfer succeeded: hang up the transferred call (as pjsua's app does).
    hangup_now: bool,
    transfer_final: Option<u16>,
    dtmf: String,
    message_ok: bool,
    message_seen: bool,
    presence_seen: bool,
    lines: Vec<String>,
    published: bool,
}

impl Features {
    /// Whether our transfer just succeeded (once): the transferred call should end now.
    pub fn take_hangup(&mut self) -> bool {
        std::mem::take(&mut self.hangup_now)
    }

    /// Whether any option asks for work outside a call (so a run without --call waits).
    pub fn wants_session(a: &FeatureArgs) -> bool {
        a.message.is_some()
            || a.expect_message.is_some()
            || a.subscribe.is_some()
            || a.blf.is_some()
            || a.publish.is_some()
            || a.ring_only
    }

    /// Starts what runs once registered: the message, the subscriptions, the publication.
    pub fn start(&mut self, a: &FeatureArgs, acc: &Account, say: &dyn Fn(&str)) {
        if let (Some(text), Some(to)) = (&a.message, &a.message_to) {
            match acc.send_message(to, "text/plain;charset=utf-8", text.as_bytes()) {
                Ok(id) => say(&format!("message {id:?} sent to {to}")),
                Err(e) => say(&format!("message to {to} not sent: {e}")),
            }
        }
        if let Some(to) = &a.subscribe {
            match acc.subscribe(to, EventPackage::Presence) {
                Ok(id) => say(&format!("presence subscription {id:?} to {to}")),
                Err(e) => say(&format!("presence subscription to {to} failed: {e}")),
            }
        }
        if let Some(to) = &a.blf {
            match acc.subscribe(to, EventPackage::Dialog) {
                Ok(id) => say(&format!("dialog subscription {id:?} to {to}")),
                Err(e) => say(&format!("dialog subscription to {to} failed: {e}")),
            }
        }
        if let Some(p) = &a.publish {
            let r = if p == "closed" {
                acc.publish_presence(false, None, None)
            } else {
                let note = capitalized(p);
                acc.publish_presence(true, Some(&note), Some(p))
            };
            if let Err(e) = r {
                say(&format!("publish failed: {e}"));
            }
        }
    }

    /// Once the call has been up `up_s` seconds: the blind transfer.
    pub fn on_connected_tick(
        &mut self,
        a: &FeatureArgs,
        call: &Call,
        up_s: f64,
        say: &dyn Fn(&str),
    ) {
        if let Some(to) = &a.transfer_to {
            if !self.transferred && up_s >= a.transfer_after {
                self.transferred = true;
                match call.transfer(to) {
                    Ok(()) => say(&format!("transferring to {to}")),
                    Err(e) => say(&format!("transfer not sent: {e}")),
                }
            }
        }
    }

    /// Looks at one event; returns a new call to follow (an accepted transfer's).
    pub fn on_event(
        &mut self,
        a: &FeatureArgs,
        ep: &Endpoint,
        ev: &Event,
        opts: impl FnOnce() -> rvoip_sdk::api::CallOptions,
        say: &dyn Fn(&str),
    ) -> Option<Call> {
        match ev {
            Event::TransferStatus {
                status,
                is_final: true,
                ..
            } => {
                self.transfer_final = Some(*status);
                self.hangup_now = *status == 200;
            }
            Event::DtmfReceived { digit, .. } => self.dtmf.push(*digit),
            Event::MessageResult { status, .. } if (200..300).contains(status) => {
                self.message_ok = true
            }
            Event::MessageReceived { body, .. } => {
                let text = String::from_utf8_lossy(body);
                if a.expect_message
                    .as_ref()
                    .is_some_and(|m| text.contains(m.as_str()))
                {
                    self.message_seen = true;
                }
            }
            Event::BuddyPresence {
                online, activity, ..
            } => {
                let want = a.expect_presence.as_deref().unwrap_or("");
                let hit = match want {
                    "open" => *online,
                    "closed" => !*online,
                    w => activity.as_deref() == Some(w),
                };
                self.presence_seen |= hit;
            }
            Event::LineState { line, .. } => {
                let name = line.as_str().to_string();
                if self.lines.last() != Some(&name) {
                    self.lines.push(name);
                }
            }
            Event::PublishResult { status, .. } if (200..300).contains(status) => {
                self.published = true
            }
            Event::TransferRequested {
                transfer, target, ..
            } if a.accept_transfer => match ep.accept_transfer(*transfer, opts()) {
                Ok(c) => {
                    say(&format!("accepted transfer to {target}: {:?}", c.id()));
                    return Some(c);
                }
                Err(e) => say(&format!("transfer to {target} not accepted: {e}")),
            },
            Event::TransferRequested { transfer, .. } => {
                let _ = ep.reject_transfer(*transfer, 603);
            }
            _ => {}
        }
        None
    }

    /// Whether every session expectation (outside calls) is met.
    pub fn session_done(&self, a: &FeatureArgs) -> bool {
        !a.ring_only
            && (a.message.is_none() || self.message_ok)
            && (a.expect_message.is_none() || self.message_seen)
            && (a.expect_presence.is_none() || self.presence_seen)
            && (a.expect_line.is_empty() || self.line_ok(a))
            && (a.publish.is_none() || self.published)
    }

    fn line_ok(&self, a: &FeatureArgs) -> bool {
        // The expected states appear in order (others may come between).
        let mut it = self.lines.iter();
        a.expect_line.iter().all(|want| it.any(|got| got == want))
    }

    /// The final verdict of the feature options, printed; true when all passed.
    pub fn check(&self, a: &FeatureArgs, say: &dyn Fn(&str)) -> bool {
        let mut ok = self.session_done(a);
        if a.transfer_to.is_some() {
            let pass = self.transfer_final == Some(200);
            say(&format!(
                "transfer check: final status {:?}: {}",
                self.transfer_final,
                verdict(pass)
            ));
            ok &= pass;
        }
        if let Some(want) = &a.expect_dtmf {
            let pass = self.dtmf == *want;
            say(&format!(
                "dtmf check: received {:?}: {}",
                self.dtmf,
                verdict(pass)
            ));
            ok &= pass;
        }
        if !a.expect_line.is_empty() {
            say(&format!(
                "line check: saw {:?}: {}",
                self.lines,
                verdict(self.line_ok(a))
            ));
        }
        if a.expect_presence.is_some() {
            say(&format!("presence check: {}", verdict(self.presence_seen)));
        }
        if a.expect_message.is_some() {
            say(&format!("message check: {}", verdict(self.message_seen)));
        }
        ok
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "ok" } else { "FAILED" }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
