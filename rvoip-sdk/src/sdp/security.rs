//! SRTP in offer/answer: which profile an offer uses, and which keying an answer agrees on.
//!
//! Two key exchanges are supported: SDES (RFC 4568, `a=crypto` with the keys in the SDP, so it
//! is only safe when the signalling is encrypted) and DTLS-SRTP (RFC 5763/5764, `a=fingerprint`
//! and `a=setup`; keys come from a DTLS handshake on the media path). An account has a
//! [`SrtpPolicy`]:
//! - **off**: plain RTP only; an SRTP offer is refused (488), never answered in plaintext.
//! - **optional**: SRTP when the peer offers it; our offers are `RTP/AVP` carrying `a=crypto`
//!   when SDES may be used ("best effort", as PJSIP's and baresip's optional modes).
//! - **mandatory**: our offers are `RTP/SAVP` (SDES) or `UDP/TLS/RTP/SAVP` (DTLS-SRTP); an offer
//!   or answer without usable SRTP fails the call.

use crate::media::dtls::{DtlsRole, Fingerprint, Setup};
use crate::media::sdes::{CryptoAttribute, CryptoSuite};

use super::SdpError;

/// SDP attributes to add to an `m=` section, as (name, value).
pub(super) type Attributes = Vec<(String, String)>;

/// Whether a call's media must, may or must not be SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP only: SRTP offers are refused with 488.
    Off,
    /// Answer SRTP offers with SRTP; offer `RTP/AVP` with `a=crypto` when SDES may be used.
    #[default]
    Optional,
    /// SRTP or no call: offers use a secure profile, a plain offer is refused with 488, and a
    /// plain answer ends the call.
    Mandatory,
}

impl SrtpPolicy {
    /// `off`, `optional` or `mandatory`.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Mandatory => "mandatory",
        }
    }
}

/// Which key exchange our offers use when SRTP is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpKeying {
    /// SDES when the signalling path is encrypted (TLS/WSS) or SDES over plaintext is allowed,
    /// else DTLS-SRTP.
    #[default]
    Auto,
    /// SDES only (a mandatory offer on insecure signalling fails unless allowed).
    Sdes,
    /// DTLS-SRTP only.
    Dtls,
}

/// SRTP settings of an account (or of calls without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SrtpConfig {
    /// Off, optional (default) or mandatory.
    pub policy: SrtpPolicy,
    /// The key exchange our offers use. Answers accept either kind the offer uses.
    pub keying: SrtpKeying,
    /// Allow `a=crypto` keys in SDP carried over UDP/TCP/WS signalling, where anyone on the path
    /// can read them. Default false: SDES only over TLS/WSS (RFC 4568 §8.3).
    pub sdes_over_insecure: bool,
}

impl SrtpConfig {
    /// Our side of a call's security: fresh SDES keys (one attribute per suite, tags 1..) when
    /// SDES may be used on this signalling path (`secure_signalling`: TLS or WSS), and the DTLS
    /// certificate fingerprint when `dtls` is given.
    pub fn local(&self, secure_signalling: bool, dtls: Option<Fingerprint>) -> LocalSecurity {
        let sdes_allowed = self.policy != SrtpPolicy::Off
            && self.keying != SrtpKeying::Dtls
            && (secure_signalling || self.sdes_over_insecure);
        let crypto = if sdes_allowed {
            CryptoSuite::ALL
                .iter()
                .enumerate()
                .map(|(i, s)| CryptoAttribute::generate(i as u32 + 1, *s))
                .collect()
        } else {
            Vec::new()
        };
        LocalSecurity {
            policy: self.policy,
            crypto,
            dtls: if self.policy == SrtpPolicy::Off || self.keying == SrtpKeying::Sdes {
                None
            } else {
                dtls
            },
            prefer_dtls: self.keying == SrtpKeying::Dtls,
        }
    }
}

/// Our side of a call's media security, built once per call (the keys stay for re-offers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalSecurity {
    /// The policy.
    pub policy: SrtpPolicy,
    /// Our SDES attributes, one per suite in preference order; empty when SDES may not be used.
    pub crypto: Vec<CryptoAttribute>,
    /// Our DTLS certificate's fingerprint, when DTLS-SRTP may be used.
    pub dtls: Option<Fingerprint>,
    /// Offer DTLS-SRTP rather than SDES when both may be used.
    pub prefer_dtls: bool,
}

impl LocalSecurity {
    /// Plain RTP only (policy off).
    pub fn plain() -> LocalSecurity {
        LocalSecurity {
            policy: SrtpPolicy::Off,
            ..LocalSecurity::default()
        }
    }
}

/// The media security offer/answer agreed on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MediaSecurity {
    /// Plain RTP.
    #[default]
    Plain,
    /// SRTP keyed by SDES: `local` keys what we send, `remote` what we receive (RFC 4568 §6.1).
    Sdes {
        /// Our attribute (the suite agreed on).
        local: CryptoAttribute,
        /// The peer's attribute.
        remote: CryptoAttribute,
    },
    /// SRTP keyed by a DTLS handshake on the RTP port (RFC 5764), we in `role`, the peer's
    /// certificate checked against `remote`.
    Dtls {
        /// Client (`setup:active`) or server (`setup:passive`).
        role: DtlsRole,
        /// The fingerprint the peer's certificate must match (RFC 8122).
        remote: Fingerprint,
    },
}

impl MediaSecurity {
    /// What it is, for events and logs: `none`, `SDES <suite>` or `DTLS-SRTP`.
    pub fn describe(&self) -> String {
        match self {
            MediaSecurity::Plain => "none".into(),
            MediaSecurity::Sdes { local, .. } => format!("SDES {}", local.suite.name()),
            MediaSecurity::Dtls { .. } => "DTLS-SRTP".into(),
        }
    }

    /// Whether the media is encrypted.
    pub fn is_secure(&self) -> bool {
        !matches!(self, MediaSecurity::Plain)
    }
}

/// The transport profile of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Profile {
    /// RTP/AVP or RTP/AVPF.
    Avp,
    /// RTP/SAVP or RTP/SAVPF (SDES).
    Savp,
    /// UDP/TLS/RTP/SAVP or UDP/TLS/RTP/SAVPF (DTLS-SRTP).
    DtlsSavp,
}

impl Profile {
    /// The profile of an `m=` line's protocol fields, if it is an RTP one.
    pub(super) fn of(protos: &[String]) -> Option<Profile> {
        let p: Vec<String> = protos.iter().map(|p| p.to_ascii_uppercase()).collect();
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["RTP", "AVP"] | ["RTP", "AVPF"] => Some(Profile::Avp),
            ["RTP", "SAVP"] | ["RTP", "SAVPF"] => Some(Profile::Savp),
            ["UDP", "TLS", "RTP", "SAVP"] | ["UDP", "TLS", "RTP", "SAVPF"] => {
                Some(Profile::DtlsSavp)
            }
            _ => None,
        }
    }
}

/// What the remote audio section says about security.
#[derive(Debug, Clone, Default)]
pub(super) struct RemoteSecurity {
    /// Its `a=crypto` attributes that parse and that we can honour, in its order.
    pub(super) crypto: Vec<CryptoAttribute>,
    /// Whether it had `a=crypto` lines at all (usable or not).
    pub(super) crypto_lines: bool,
    /// `a=fingerprint` (media level, else session level).
    pub(super) fingerprint: Option<Fingerprint>,
    /// `a=setup`.
    pub(super) setup: Option<Setup>,
}

/// The profile, attributes and agreed security of our offer. Errors:
/// [`SdpError::NoKeyExchange`] (mandatory, but neither SDES nor DTLS-SRTP may be used here).
pub(super) fn offer(local: &LocalSecurity) -> Result<(&'static str, Attributes), SdpError> {
    let crypto_attrs = || {
        local
            .crypto
            .iter()
            .map(|c| ("crypto".to_string(), c.to_string()))
            .collect::<Vec<_>>()
    };
    let dtls_attrs = |fp: &Fingerprint| {
        vec![
            ("fingerprint".to_string(), fp.to_string()),
            ("setup".to_string(), Setup::ActPass.as_str().to_string()),
        ]
    };
    let sdes = !local.crypto.is_empty();
    let use_dtls = local.dtls.as_ref().filter(|_| local.prefer_dtls || !sdes);
    match local.policy {
        SrtpPolicy::Off => Ok(("RTP/AVP", Vec::new())),
        SrtpPolicy::Optional if sdes && use_dtls.is_none() => Ok(("RTP/AVP", crypto_attrs())),
        SrtpPolicy::Optional => Ok(("RTP/AVP", Vec::new())),
        SrtpPolicy::Mandatory => match use_dtls {
            Some(fp) => Ok(("UDP/TLS/RTP/SAVP", dtls_attrs(fp))),
            None if sdes => Ok(("RTP/SAVP", crypto_attrs())),
            None => Err(SdpError::NoKeyExchange),
        },
    }
}

/// Picks our attribute for the first of the peer's that we can serve (RFC 4568 §7.1.2:
/// the answerer takes one acceptable attribute, answering with the offer's tag).
fn pick_sdes(
    remote: &RemoteSecurity,
    local: &LocalSecurity,
) -> Option<(CryptoAttribute, CryptoAttribute)> {
    remote.crypto.iter().find_map(|r| {
        local.crypto.iter().find(|l| l.suite == r.suite).map(|l| {
            let mut ours = l.clone();
            ours.tag = r.tag;
            (ours, r.clone())
        })
    })
}

/// The security of our answer to an offer with `profile`: what we agree on and the attributes
/// of our answer. Errors (all 488 material): [`SdpError::SecureProfile`] (policy off),
/// [`SdpError::NoCommonCrypto`], [`SdpError::InsecureKeys`], [`SdpError::SrtpRequired`].
pub(super) fn answer(
    profile: Profile,
    proto: &str,
    remote: &RemoteSecurity,
    local: &LocalSecurity,
) -> Result<(MediaSecurity, Attributes), SdpError> {
    let sdes_answer = |(ours, theirs): (CryptoAttribute, CryptoAttribute)| {
        let attrs = vec![("crypto".to_string(), ours.to_string())];
        (
            MediaSecurity::Sdes {
                local: ours,
                remote: theirs,
            },
            attrs,
        )
    };
    match profile {
        Profile::Savp | Profile::DtlsSavp if local.policy == SrtpPolicy::Off => {
            Err(SdpError::SecureProfile(proto.into()))
        }
        Profile::DtlsSavp => {
            let (Some(ours), Some(theirs)) = (&local.dtls, &remote.fingerprint) else {
                return Err(SdpError::NoCommonCrypto);
            };
            let (role, setup) = DtlsRole::for_answer(remote.setup.unwrap_or(Setup::ActPass));
            Ok((
                MediaSecurity::Dtls {
                    role,
                    remote: theirs.clone(),
                },
                vec![
                    ("fingerprint".into(), ours.to_string()),
                    ("setup".into(), setup.as_str().into()),
                ],
            ))
        }
        Profile::Savp => {
            if local.crypto.is_empty() && remote.crypto_lines {
                return Err(SdpError::InsecureKeys);
            }
            pick_sdes(remote, local)
                .map(sdes_answer)
                .ok_or(SdpError::NoCommonCrypto)
        }
        Profile::Avp => {
            if local.policy != SrtpPolicy::Off {
                if let Some(pair) = pick_sdes(remote, local) {
                    return Ok(sdes_answer(pair));
                }
            }
            if local.policy == SrtpPolicy::Mandatory {
                return Err(if remote.crypto_lines && local.crypto.is_empty() {
                    SdpError::InsecureKeys
                } else {
                    SdpError::SrtpRequired
                });
            }
            Ok((MediaSecurity::Plain, Vec::new()))
        }
    }
}

/// The security an answer to our offer agreed on. Errors: [`SdpError::NoCommonCrypto`] (an
/// `a=crypto` that matches none of ours, a DTLS answer we did not offer),
/// [`SdpError::SrtpRequired`] (a plain answer while SRTP is mandatory), [`SdpError::Malformed`]
/// (a DTLS answer with `setup:actpass`).
pub(super) fn process_answer(
    profile: Profile,
    remote: &RemoteSecurity,
    local: &LocalSecurity,
) -> Result<MediaSecurity, SdpError> {
    if profile == Profile::DtlsSavp || (remote.fingerprint.is_some() && remote.crypto.is_empty()) {
        if let (Some(_), Some(theirs)) = (&local.dtls, &remote.fingerprint) {
            let role =
                DtlsRole::for_offerer(remote.setup.unwrap_or(Setup::Active)).ok_or_else(|| {
                    SdpError::Malformed("a DTLS answer must not say setup:actpass".into())
                })?;
            return Ok(MediaSecurity::Dtls {
                role,
                remote: theirs.clone(),
            });
        }
        if profile == Profile::DtlsSavp {
            return Err(SdpError::NoCommonCrypto);
        }
    }
    if let Some(theirs) = remote.crypto.first() {
        let ours = local
            .crypto
            .iter()
            .find(|l| l.tag == theirs.tag && l.suite == theirs.suite)
            .ok_or(SdpError::NoCommonCrypto)?;
        return Ok(MediaSecurity::Sdes {
            local: ours.clone(),
            remote: theirs.clone(),
        });
    }
    if remote.crypto_lines || profile == Profile::Savp {
        return Err(SdpError::NoCommonCrypto);
    }
    if local.policy == SrtpPolicy::Mandatory {
        return Err(SdpError::SrtpRequired);
    }
    Ok(MediaSecurity::Plain)
}
