//! Transaction matching keys (RFC 3261 §17.1.3, §17.2.3) and the RFC 2543 fallback rules.

use bytestring::ByteString;

use crate::sip::msg::{BRANCH_MAGIC, HeaderName, Method, NameAddr, Request, Uri, Via};

/// Client transaction matching key (§17.1.3): top Via branch and CSeq method.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey {
    pub(super) branch: ByteString,
    pub(super) method: Method,
}

impl ClientKey {
    /// A copy that owns its strings, so a stored key does not keep a whole message alive.
    pub(super) fn detached(&self) -> ClientKey {
        ClientKey {
            branch: ByteString::from(&*self.branch),
            method: self.method.clone(),
        }
    }
}

/// Server transaction matching key for RFC 3261 branches (§17.2.3): branch, sent-by, and method
/// (ACK counted as INVITE).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ServerKey {
    pub(super) branch: ByteString,
    pub(super) host: ByteString,
    pub(super) port: Option<u16>,
    pub(super) method: Method,
}

impl ServerKey {
    /// A copy that owns its strings, so a stored key does not keep a whole message alive.
    pub(super) fn detached(&self) -> ServerKey {
        ServerKey {
            branch: ByteString::from(&*self.branch),
            host: ByteString::from(&*self.host),
            port: self.port,
            method: self.method.clone(),
        }
    }
}

/// The fields RFC 2543 matching compares (§17.2.3), for requests without a magic-cookie branch.
#[derive(Clone, Debug)]
pub(super) struct LegacyKey {
    pub(super) call_id: ByteString,
    pub(super) uri: Uri,
    pub(super) to_tag: Option<ByteString>,
    pub(super) from_tag: Option<ByteString>,
    pub(super) cseq_seq: Option<u32>,
    /// The raw CSeq value (compared when it does not parse).
    pub(super) cseq_raw: Option<ByteString>,
    /// The raw top Via value.
    pub(super) via: Option<ByteString>,
    pub(super) method: Method,
}

/// What an RFC 2543 comparison is looking for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum LegacyMatch {
    /// A retransmission of the same request (same method).
    Same,
    /// An ACK for an INVITE (To tag compared with the tag of the response sent).
    Ack,
    /// The INVITE a CANCEL cancels.
    Cancel,
}

impl LegacyKey {
    pub(super) fn of(req: &Request) -> LegacyKey {
        let h = &req.headers;
        LegacyKey {
            call_id: h.call_id().cloned().unwrap_or_default(),
            uri: req.uri.clone(),
            to_tag: h.to().ok().and_then(|n| tag_of(&n)),
            from_tag: h.from().ok().and_then(|n| tag_of(&n)),
            cseq_seq: h.cseq().ok().map(|c| c.seq),
            cseq_raw: h.get(&HeaderName::CSeq).cloned(),
            via: h.get(&HeaderName::Via).cloned(),
            method: req.method.clone(),
        }
    }

    /// Whether `self` (of an incoming request) matches `tx` (of the request that created a server
    /// transaction whose response carried `resp_to_tag`).
    pub(super) fn matches(
        &self,
        tx: &LegacyKey,
        resp_to_tag: Option<&ByteString>,
        how: LegacyMatch,
    ) -> bool {
        let cseq_eq = match (self.cseq_seq, tx.cseq_seq) {
            (Some(a), Some(b)) => a == b,
            _ => self.cseq_raw == tx.cseq_raw,
        };
        let common = self.call_id == tx.call_id
            && self.uri == tx.uri
            && self.from_tag == tx.from_tag
            && self.via == tx.via
            && cseq_eq;
        if !common {
            return false;
        }
        match how {
            LegacyMatch::Same => self.method == tx.method && self.to_tag == tx.to_tag,
            LegacyMatch::Cancel => tx.method == Method::Invite && self.to_tag == tx.to_tag,
            LegacyMatch::Ack => {
                tx.method == Method::Invite
                    && (self.to_tag.as_ref() == resp_to_tag || self.to_tag == tx.to_tag)
            }
        }
    }
}

/// A `ByteString` for `s`, sharing `owner`'s buffer when `s` points into it.
pub(super) fn share(owner: &ByteString, s: &str) -> ByteString {
    let base = owner.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    if p >= base && p + s.len() <= base + owner.len() {
        owner.slice_ref(s)
    } else {
        ByteString::from(s)
    }
}

/// The branch parameter of a Via, if any.
pub(super) fn branch_of(via: &Via) -> Option<ByteString> {
    let b = via.branch()?;
    Some(share(&via.params.0, b))
}

/// The tag parameter of a From/To value, if any.
pub(super) fn tag_of(n: &NameAddr) -> Option<ByteString> {
    let t = n.tag()?;
    Some(share(&n.params.0, t))
}

/// Whether a branch is an RFC 3261 one: the magic cookie followed by something (RFC 4475
/// badbranch: the bare cookie is treated as an RFC 2543 transaction).
pub(super) fn is_rfc3261_branch(b: &str) -> bool {
    b.len() > BRANCH_MAGIC.len() && b.starts_with(BRANCH_MAGIC)
}

/// The RFC 3261 server key of a request whose top Via is `via`, if its branch has the cookie.
pub(super) fn server_key(via: &Via, method: &Method) -> Option<ServerKey> {
    let branch = branch_of(via)?;
    if !is_rfc3261_branch(&branch) {
        return None;
    }
    let method = if *method == Method::Ack {
        Method::Invite
    } else {
        method.clone()
    };
    Some(ServerKey {
        branch,
        host: via.host.clone(),
        port: via.port,
        method,
    })
}
