//! Presence documents: PIDF (RFC 3863) with the RPID activities and note (RFC 4480) that
//! softphones show, and the dialog event package's `dialog-info` (RFC 4235) that busy-lamp
//! fields read. Building and tolerant reading (namespace prefixes ignored, unknown elements
//! skipped); reading never panics and gives `None` for a document it cannot use.

use quick_xml::Reader;
use quick_xml::escape::escape;
use quick_xml::events::Event;

/// The Content-Type of a PIDF document (RFC 3863 §4).
pub const PIDF_TYPE: &str = "application/pidf+xml";
/// The Content-Type of a dialog-info document (RFC 4235 §4).
pub const DIALOG_INFO_TYPE: &str = "application/dialog-info+xml";
/// Largest document we read (bytes); larger bodies are refused.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// What a presentity says about itself (RFC 3863 §4.1.4, RFC 4480).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The presentity's URI (`entity` attribute), e.g. `sip:alice@example.com`.
    pub entity: String,
    /// `basic` open (reachable) or closed (offline) of the first tuple.
    pub open: bool,
    /// The first `note`, if any (e.g. `Away`, `In a meeting`).
    pub note: Option<String>,
    /// The first RPID activity, if any (`away`, `busy`, `on-the-phone`, `meeting`, ...).
    pub activity: Option<String>,
}

/// The state of a line as a busy-lamp field shows it, from the dialogs of a dialog-info
/// document (RFC 4235 §4.1.1): any confirmed dialog is in call, else any early/proceeding/trying
/// one is ringing, else idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// No dialog, or only terminated ones.
    Idle,
    /// A dialog is being set up (trying, proceeding, early).
    Ringing,
    /// A dialog is confirmed.
    InCall,
}

impl LineState {
    /// The name used in events and logs: `idle`, `ringing`, `in-call`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LineState::Idle => "idle",
            LineState::Ringing => "ringing",
            LineState::InCall => "in-call",
        }
    }
}

/// A dialog-info document read (RFC 4235 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// The monitored URI (`entity` attribute).
    pub entity: String,
    /// The document's version (§4.1, increases by one per NOTIFY).
    pub version: u64,
    /// `full` or `partial` state.
    pub full: bool,
    /// The line's state from the dialogs listed.
    pub line: LineState,
}

/// One dialog of a dialog-info document we build (RFC 4235 §4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogEntry {
    /// The dialog's `id` attribute (any token unique in the document).
    pub id: String,
    /// The Call-ID.
    pub call_id: String,
    /// `initiator` (the monitored user called) or `recipient` (was called).
    pub initiator: bool,
    /// `trying`, `proceeding`, `early`, `confirmed` or `terminated`.
    pub state: &'static str,
}

/// A PIDF document for `entity` (RFC 3863 §4) with one tuple, its basic status, and an RPID
/// person with `activity` (RFC 4480 §3.2) and `note`, as PJSIP and linphone publish them.
pub fn pidf(entity: &str, open: bool, note: Option<&str>, activity: Option<&str>) -> String {
    let basic = if open { "open" } else { "closed" };
    let mut s = String::with_capacity(512);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    s.push_str(
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"",
    );
    s.push_str(&escape(entity));
    s.push_str("\">\r\n <tuple id=\"t1\"><status><basic>");
    s.push_str(basic);
    s.push_str("</basic></status>");
    if let Some(n) = note {
        s.push_str("<note>");
        s.push_str(&escape(n));
        s.push_str("</note>");
    }
    s.push_str("</tuple>\r\n");
    if activity.is_some() || note.is_some() {
        s.push_str(" <dm:person id=\"p1\">");
        if let Some(a) = activity.filter(|a| is_token(a)) {
            s.push_str("<rpid:activities><rpid:");
            s.push_str(a);
            s.push_str("/></rpid:activities>");
        }
        if let Some(n) = note {
            s.push_str("<dm:note>");
            s.push_str(&escape(n));
            s.push_str("</dm:note>");
        }
        s.push_str("</dm:person>\r\n");
    }
    s.push_str("</presence>\r\n");
    s
}

/// A dialog-info document (RFC 4235 §4.1) for `entity` with `version` and `dialogs` (full state).
pub fn dialog_info(entity: &str, version: u64, dialogs: &[DialogEntry]) -> String {
    let mut s = String::with_capacity(256 + 160 * dialogs.len());
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    s.push_str("<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"");
    s.push_str(&version.to_string());
    s.push_str("\" state=\"full\" entity=\"");
    s.push_str(&escape(entity));
    s.push_str("\">\r\n");
    for d in dialogs {
        s.push_str(" <dialog id=\"");
        s.push_str(&escape(&d.id));
        s.push_str("\" call-id=\"");
        s.push_str(&escape(&d.call_id));
        s.push_str("\" direction=\"");
        s.push_str(if d.initiator {
            "initiator"
        } else {
            "recipient"
        });
        s.push_str("\"><state>");
        s.push_str(d.state);
        s.push_str("</state></dialog>\r\n");
    }
    s.push_str("</dialog-info>\r\n");
    s
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The local part of an element or attribute name (`rpid:away` → `away`).
fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &[u8]) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (local(a.key.as_ref()) == name)
            .then(|| a.unescape_value().ok().map(|v| v.into_owned()))
            .flatten()
    })
}

/// Reads a PIDF document: the entity, the first tuple's basic status, the first note and the
/// first RPID activity. `None` when it is not PIDF or has no basic status.
pub fn parse_pidf(body: &[u8]) -> Option<Presence> {
    if body.len() > MAX_DOCUMENT {
        return None;
    }
    let mut r = Reader::from_reader(body);
    r.config_mut().trim_text(true);
    let mut entity = None;
    let mut open = None;
    let mut note = None;
    let mut activity = None;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                let name = local(e.name().as_ref()).to_vec();
                if name == b"presence" {
                    entity = attr(&e, b"entity");
                }
                path.push(name);
                if path.len() > 32 {
                    return None;
                }
            }
            Event::Empty(e) => {
                let name = local(e.name().as_ref()).to_vec();
                if path.last().is_some_and(|p| p == b"activities") && activity.is_none() {
                    activity = Some(String::from_utf8_lossy(&name).into_owned());
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let text = t.unescape().ok()?.into_owned();
                match path.last().map(Vec::as_slice) {
                    Some(b"basic") if open.is_none() => {
                        open = Some(text.trim().eq_ignore_ascii_case("open"));
                    }
                    Some(b"note") if note.is_none() => note = Some(text.trim().to_string()),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Some(Presence {
        entity: entity.unwrap_or_default(),
        open: open?,
        note,
        activity,
    })
}

/// The attributes of a `dialog-info` element; the line state is filled in later.
fn dialog_info_head(e: &quick_xml::events::BytesStart<'_>) -> DialogInfo {
    DialogInfo {
        entity: attr(e, b"entity").unwrap_or_default(),
        version: attr(e, b"version")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        full: attr(e, b"state").is_none_or(|s| s == "full"),
        line: LineState::Idle,
    }
}

/// Reads a dialog-info document: its entity, version, full/partial, and the line state from
/// its dialogs. `None` when it is not dialog-info.
pub fn parse_dialog_info(body: &[u8]) -> Option<DialogInfo> {
    if body.len() > MAX_DOCUMENT {
        return None;
    }
    let mut r = Reader::from_reader(body);
    r.config_mut().trim_text(true);
    let mut info: Option<DialogInfo> = None;
    let (mut ringing, mut in_call) = (false, false);
    let mut in_state = 0usize;
    let mut depth = 0usize;
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                depth += 1;
                if depth > 32 {
                    return None;
                }
                let name = local(e.name().as_ref()).to_vec();
                if name == b"dialog-info" {
                    info = Some(dialog_info_head(&e));
                } else if name == b"state" && depth == 3 {
                    in_state = depth;
                }
            }
            Event::Empty(e) if local(e.name().as_ref()) == b"dialog-info" => {
                info = Some(dialog_info_head(&e));
            }
            Event::End(_) => {
                if depth == in_state {
                    in_state = 0;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if in_state != 0 => {
                let text = t.unescape().ok()?;
                match text.trim().to_ascii_lowercase().as_str() {
                    "confirmed" => in_call = true,
                    "trying" | "proceeding" | "early" => ringing = true,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut info = info?;
    info.line = if in_call {
        LineState::InCall
    } else if ringing {
        LineState::Ringing
    } else {
        LineState::Idle
    };
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidf_round_trip_and_pjsip_style_away() {
        let doc = pidf(
            "sip:a&b@example.com",
            true,
            Some("Away <now>"),
            Some("away"),
        );
        let p = parse_pidf(doc.as_bytes()).unwrap();
        assert_eq!(p.entity, "sip:a&b@example.com");
        assert!(p.open);
        assert_eq!(p.note.as_deref(), Some("Away <now>"));
        assert_eq!(p.activity.as_deref(), Some("away"));
        let closed = parse_pidf(pidf("sip:x@y", false, None, None).as_bytes()).unwrap();
        assert!(!closed.open && closed.note.is_none() && closed.activity.is_none());
        // As PJSIP 2.x publishes "away".
        let pj = br#"<?xml version="1.0" encoding="UTF-8"?>
<presence entity="sip:bob@127.0.0.1" xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid">
 <tuple id="pj1"><status><basic>open</basic></status><timestamp>2026-12-06T10:00:00Z</timestamp><note>Away</note></tuple>
 <dm:person id="pj2"><rpid:activities><rpid:away/></rpid:activities><dm:note>Away</dm:note></dm:person>
</presence>"#;
        let p = parse_pidf(pj).unwrap();
        assert_eq!(
            (p.open, p.note.as_deref(), p.activity.as_deref()),
            (true, Some("Away"), Some("away"))
        );
    }

    #[test]
    fn dialog_info_states() {
        let d = |state: &'static str| DialogEntry {
            id: "d1".into(),
            call_id: "c@h".into(),
            initiator: false,
            state,
        };
        for (state, line) in [
            ("early", LineState::Ringing),
            ("confirmed", LineState::InCall),
            ("terminated", LineState::Idle),
        ] {
            let doc = dialog_info("sip:bob@h", 3, &[d(state)]);
            let i = parse_dialog_info(doc.as_bytes()).unwrap();
            assert_eq!((i.line, i.version, i.full), (line, 3, true), "{state}");
            assert_eq!(i.entity, "sip:bob@h");
        }
        let empty = dialog_info("sip:bob@h", 0, &[]);
        assert_eq!(
            parse_dialog_info(empty.as_bytes()).unwrap().line,
            LineState::Idle
        );
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        for doc in [
            &b""[..],
            b"<presence>",
            b"<<<>>>",
            b"\xff\xfe\x00",
            b"<presence><tuple><status><basic>open",
            b"<dialog-info><dialog><state>confirmed</state>",
        ] {
            let _ = parse_pidf(doc);
            let _ = parse_dialog_info(doc);
        }
        let deep = "<a>".repeat(10_000);
        assert!(parse_pidf(deep.as_bytes()).is_none());
        assert!(parse_dialog_info(deep.as_bytes()).is_none());
        assert!(parse_pidf(&vec![b' '; MAX_DOCUMENT + 1]).is_none());
    }
}
