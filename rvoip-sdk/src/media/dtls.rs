//! DTLS-SRTP keying (RFC 5763, RFC 5764) for one audio stream, sans-IO, over the `rtc-dtls`
//! DTLS 1.2 endpoint on the ring backend.
//!
//! The SDP carries `a=setup` ([`Setup`], RFC 4145 §4, RFC 5763 §5), which decides who runs the
//! DTLS client ([`DtlsRole`]), and `a=fingerprint` ([`Fingerprint`], RFC 8122 §5), the hash of
//! the peer's self-signed certificate. [`DtlsSrtp`] runs the handshake over the RTP 5-tuple
//! (RFC 5764 §5.1.2: demultiplexed with [`is_dtls`], RFC 7983 §7): both sides present a
//! certificate ([`DtlsIdentity`], ECDSA P-256), the peer's is checked against the SDP fingerprint
//! (no CA chain), the `use_srtp` extension picks a profile (RFC 5764 §4.1.2) and the SRTP master
//! keys come out of the exporter "EXTRACTOR-dtls_srtp" (RFC 5764 §4.2) as an [`SrtpSession`].
//!
//! Nothing here owns a socket or reads the clock: datagrams and `now` are inputs, datagrams and
//! a timer are outputs. A malformed datagram is ignored; a protocol error, a fingerprint
//! mismatch or a silent peer ends in [`DtlsState::Failed`], never in a panic.

mod attributes;
#[cfg(test)]
mod tests;

pub use attributes::{DtlsRole, Fingerprint, FingerprintHash, Setup};

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, VerifyPeerCertificateFn,
};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::{RTCCryptoProvider, SignatureScheme};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_shared::error::Error as RtcError;
use rustls_pki_types::CertificateDer;

use super::sdes::CryptoSuite;
use super::srtp::SrtpSession;

/// The exporter label of DTLS-SRTP (RFC 5764 §4.2).
pub const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// How long a handshake may take from [`DtlsSrtp::new`] before it fails (simulated or real
/// time). The client also gives up on its own after 7 unanswered retransmissions, 1 s apart.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest DTLS datagram we send, in bytes (handshake messages are fragmented to fit).
pub const MTU: usize = 1200;

/// The peer as `rtc-dtls` sees it: one association per stream, so any fixed address will do
/// (the driver sends to the stream's real RTP address).
const PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9));
/// Our own address as `rtc-dtls` sees it (only stamped on its transmits).
const LOCAL: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 9));

/// RFC 7983 §7 demultiplexing of a datagram on the RTP port: true for DTLS (first byte 20..=63),
/// false for RTP/RTCP (128..=191), STUN (0..=3), anything else or an empty datagram.
pub fn is_dtls(packet: &[u8]) -> bool {
    matches!(packet.first(), Some(20..=63))
}

/// Why a DTLS identity or endpoint could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The certificate or its key could not be generated or loaded.
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    /// `rtc-dtls` refused the configuration or could not start the handshake (e.g. no
    /// randomness).
    #[error("DTLS configuration: {0}")]
    Config(String),
}

struct IdentityInner {
    certificate: Certificate,
    fingerprint: Fingerprint,
    provider: Arc<dyn RTCCryptoProvider>,
}

/// Our DTLS certificate: a fresh self-signed ECDSA P-256 certificate (rcgen), made once per
/// endpoint and shared by all its streams (RFC 5763 §5: its `sha-256` fingerprint goes in every
/// `a=fingerprint` we write). Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct DtlsIdentity {
    inner: Arc<IdentityInner>,
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.inner.fingerprint)
            .finish()
    }
}

impl DtlsIdentity {
    /// Generates a key pair and a self-signed certificate (CN and SAN `rvoip`, valid from 1975
    /// to 4096 as rcgen makes them). Errors: [`DtlsError::Certificate`].
    pub fn generate() -> Result<DtlsIdentity, DtlsError> {
        let cert_err = |e: &dyn fmt::Display| DtlsError::Certificate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| cert_err(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec!["rvoip".to_string()]).map_err(|e| cert_err(&e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rvoip");
        let cert = params.self_signed(&key).map_err(|e| cert_err(&e))?;
        let der: CertificateDer<'static> = cert.der().clone();
        let provider = rtc_dtls::crypto_provider::default_provider().map_err(|e| cert_err(&e))?;
        let signing_key = provider
            .crypto()
            .import_signing_key(SignatureScheme::EcdsaP256Sha256, &key.serialize_der())
            .map_err(|e| cert_err(&e))?;
        let fingerprint = Fingerprint::of_certificate(FingerprintHash::Sha256, &der);
        Ok(DtlsIdentity {
            inner: Arc::new(IdentityInner {
                certificate: Certificate::from_signing_key(vec![der], signing_key),
                fingerprint,
                provider,
            }),
        })
    }

    /// The `sha-256` fingerprint of our certificate, for `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// Our certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        self.inner
            .certificate
            .certificate
            .first()
            .map_or(&[][..], |c| c.as_ref())
    }
}

/// Where one stream's DTLS handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsState {
    /// The handshake is running.
    Connecting,
    /// The handshake completed, the peer's certificate matched its fingerprint and SRTP is
    /// keyed ([`DtlsSrtp::take_srtp`]).
    Connected,
    /// After [`DtlsState::Connected`], the association was closed (by [`DtlsSrtp::close`], a
    /// close_notify or a fatal alert from the peer). SRTP keys already taken stay valid.
    Closed,
    /// The handshake failed (the reason, for logs): a fingerprint mismatch, no common
    /// `use_srtp` profile, a fatal alert either way, or no answer within
    /// [`HANDSHAKE_TIMEOUT`]. No SRTP keys exist; the call's media must not flow.
    Failed(String),
}

/// Counters of one DTLS endpoint (datagrams).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DtlsCounters {
    /// Datagrams handed to [`DtlsSrtp::handle_datagram`] while the association was live.
    pub received: u64,
    /// Of those, ignored: not DTLS, or not parsable as DTLS records.
    pub ignored: u64,
    /// Datagrams given out by [`DtlsSrtp::poll_transmit`] (queued).
    pub sent: u64,
    /// Retransmission timers that fired (RFC 6347 §4.2.4).
    pub timeouts: u64,
}

/// The sans-IO DTLS-SRTP endpoint of one stream (RFC 5764): feed it the DTLS datagrams that
/// arrive on the RTP port, send what [`DtlsSrtp::poll_transmit`] gives to the peer's RTP
/// address, call [`DtlsSrtp::handle_timeout`] at [`DtlsSrtp::poll_timeout`]; once
/// [`DtlsState::Connected`], [`DtlsSrtp::take_srtp`] gives the keyed SRTP session.
pub struct DtlsSrtp {
    endpoint: Endpoint,
    role: DtlsRole,
    remote: Fingerprint,
    state: DtlsState,
    suite: Option<CryptoSuite>,
    srtp: Option<SrtpSession>,
    transmits: VecDeque<Bytes>,
    deadline: Instant,
    counters: DtlsCounters,
}

impl fmt::Debug for DtlsSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSrtp")
            .field("role", &self.role)
            .field("remote", &self.remote)
            .field("state", &self.state)
            .field("suite", &self.suite)
            .field("counters", &self.counters)
            .finish()
    }
}

/// The `use_srtp` profile of a suite (RFC 5764 §4.1.2, RFC 7714 §14.2).
fn profile(suite: CryptoSuite) -> SrtpProtectionProfile {
    match suite {
        CryptoSuite::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        CryptoSuite::AesCm128HmacSha1_80 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
    }
}

/// Runs a call into `rtc-dtls`, turning a panic of its own into `None` (belt and braces: the
/// DESIGN forbids panics on network input, and the association is then failed).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// Splits the exporter output `client_write_key | server_write_key | client_salt | server_salt`
/// (RFC 5764 §4.2) into our master (key||salt) and the peer's; `None` if the length is wrong.
fn split_keying_material(
    suite: CryptoSuite,
    role: DtlsRole,
    km: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (k, s) = (suite.key_len(), suite.salt_len());
    if km.len() != 2 * (k + s) {
        return None;
    }
    let (keys, salts) = km.split_at(2 * k);
    let (client_key, server_key) = keys.split_at(k);
    let (client_salt, server_salt) = salts.split_at(s);
    let client = [client_key, client_salt].concat();
    let server = [server_key, server_salt].concat();
    Some(match role {
        DtlsRole::Client => (client, server),
        DtlsRole::Server => (server, client),
    })
}

/// Whether one of our datagrams carries a plaintext fatal alert (epoch 0, level 2): we are
/// aborting the handshake (RFC 5246 §7.2).
fn carries_fatal_alert(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while let (Some(&[ct, _, _, e0, e1]), Some(&[l0, l1])) = (rest.get(..5), rest.get(11..13)) {
        let end = 13 + usize::from(u16::from_be_bytes([l0, l1]));
        let Some(body) = rest.get(13..end) else {
            return false;
        };
        if ct == 21 && [e0, e1] == [0, 0] && body.first() == Some(&2) {
            return true;
        }
        rest = rest.get(end..).unwrap_or_default();
    }
    false
}

impl DtlsSrtp {
    /// A DTLS-SRTP endpoint in `role` presenting `identity`, accepting only a peer whose
    /// certificate has the SDP fingerprint `remote`, offering every SRTP suite
    /// ([`CryptoSuite::ALL`]: GCM, then AES-CM with 80- and 32-bit tags). A client queues its
    /// ClientHello at once; a server waits. `now` starts the [`HANDSHAKE_TIMEOUT`].
    /// Errors: [`DtlsError::Config`].
    pub fn new(
        identity: &DtlsIdentity,
        role: DtlsRole,
        remote: Fingerprint,
        now: Instant,
    ) -> Result<DtlsSrtp, DtlsError> {
        DtlsSrtp::with_suites(identity, role, remote, &CryptoSuite::ALL, now)
    }

    /// As [`DtlsSrtp::new`], offering (as client) or accepting (as server) only `suites`, in
    /// that order of preference (the server takes the client's first that it supports,
    /// RFC 5764 §4.1.1). Errors: [`DtlsError::Config`] (also for an empty `suites`).
    pub fn with_suites(
        identity: &DtlsIdentity,
        role: DtlsRole,
        remote: Fingerprint,
        suites: &[CryptoSuite],
        now: Instant,
    ) -> Result<DtlsSrtp, DtlsError> {
        if suites.is_empty() {
            return Err(DtlsError::Config("no SRTP suite".into()));
        }
        let expected = remote.clone();
        let verify: VerifyPeerCertificateFn = Arc::new(
            move |certs: &[Vec<u8>], _: &[CertificateDer<'static>]| match certs.first() {
                Some(der) if expected.matches(der) => Ok(()),
                Some(_) => Err(RtcError::Other(
                    "the peer certificate does not match the SDP fingerprint".into(),
                )),
                None => Err(RtcError::Other("the peer sent no certificate".into())),
            },
        );
        let is_client = role == DtlsRole::Client;
        // Self-signed certificates: no CA chain, the fingerprint callback is the check. The
        // server requests the client's certificate (RFC 5763 §5: both sides present one).
        let config = ConfigBuilder::default()
            .with_crypto_provider(identity.inner.provider.clone())
            .with_certificates(vec![identity.inner.certificate.clone()])
            .with_srtp_protection_profiles(suites.iter().copied().map(profile).collect())
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_extended_master_secret(ExtendedMasterSecretType::Request)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_server_name("rvoip".into())
            .with_mtu(MTU)
            .build(is_client, None)
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        let config = Arc::new(config);
        let server_config = (!is_client).then(|| config.clone());
        let mut endpoint = Endpoint::new(LOCAL, TransportProtocol::UDP, server_config);
        if is_client {
            guarded(|| endpoint.connect(now, PEER, config, None))
                .ok_or_else(|| {
                    DtlsError::Config("rtc-dtls panicked starting the handshake".into())
                })?
                .map_err(|e| DtlsError::Config(e.to_string()))?;
        }
        let mut dtls = DtlsSrtp {
            endpoint,
            role,
            remote,
            state: DtlsState::Connecting,
            suite: None,
            srtp: None,
            transmits: VecDeque::new(),
            deadline: now + HANDSHAKE_TIMEOUT,
            counters: DtlsCounters::default(),
        };
        dtls.drain();
        Ok(dtls)
    }

    /// Feeds one datagram from the peer (a DTLS record, first byte 20..=63, RFC 7983 §7).
    /// Anything else, or records that do not parse, are ignored and counted; a protocol error
    /// during the handshake makes the state [`DtlsState::Failed`]. Ignored once the association
    /// is closed or failed.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if !matches!(self.state, DtlsState::Connecting | DtlsState::Connected) {
            return;
        }
        self.counters.received += 1;
        if !is_dtls(data) {
            self.counters.ignored += 1;
            return;
        }
        let connecting = self.state == DtlsState::Connecting;
        let read = guarded(|| self.endpoint.read(now, PEER, None, BytesMut::from(data)));
        self.drain();
        match read {
            None => self.fail("rtc-dtls panicked on a datagram".into()),
            Some(Err(RtcError::ErrInvalidPacketLength)) => self.counters.ignored += 1,
            Some(Err(e)) if connecting => self.fail(format!("handshake: {e}")),
            Some(Err(RtcError::ErrAlertFatalOrClose)) => self.state = DtlsState::Closed,
            Some(Err(_)) => self.counters.ignored += 1,
            Some(Ok(events)) => {
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => self.on_complete(),
                        EndpointEvent::PeerClosed if self.state == DtlsState::Connected => {
                            self.state = DtlsState::Closed
                        }
                        EndpointEvent::PeerClosed => {
                            self.fail("the peer closed the association".into())
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The next datagram to send to the peer's RTP address (each at most [`MTU`] bytes, save
    /// a single handshake record that cannot be split), if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    /// When [`DtlsSrtp::handle_timeout`] is next due: the retransmission timer (RFC 6347
    /// §4.2.4, 1 s) or the [`HANDSHAKE_TIMEOUT`] deadline; `None` once connected, closed or
    /// failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != DtlsState::Connecting {
            return None;
        }
        let retransmit = self.endpoint.poll_timeout(&PEER);
        Some(retransmit.map_or(self.deadline, |t| t.min(self.deadline)))
    }

    /// Advances the timers to `now`: retransmits the last flight if its timer expired, and
    /// fails the handshake past its deadline or once the retransmissions are spent.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != DtlsState::Connecting {
            return;
        }
        if now >= self.deadline {
            self.fail(format!(
                "no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
            return;
        }
        if self.endpoint.poll_timeout(&PEER).is_none_or(|t| now < t) {
            return;
        }
        self.counters.timeouts += 1;
        let r = guarded(|| self.endpoint.handle_timeout(PEER, now));
        self.drain();
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => self.fail(format!("handshake retransmissions spent: {e}")),
            None => self.fail("rtc-dtls panicked on a timeout".into()),
        }
    }

    /// Ends the association: queues a close_notify alert (RFC 5246 §7.2.1) for
    /// [`DtlsSrtp::poll_transmit`]; the state becomes [`DtlsState::Closed`] (or stays failed).
    pub fn close(&mut self, now: Instant) {
        if matches!(self.state, DtlsState::Connecting | DtlsState::Connected) {
            let _ = guarded(|| self.endpoint.stop(now, PEER));
            self.drain();
            self.state = DtlsState::Closed;
        }
    }

    /// The state (a copy).
    pub fn state(&self) -> DtlsState {
        self.state.clone()
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// The fingerprint the peer's certificate must have.
    pub fn remote_fingerprint(&self) -> &Fingerprint {
        &self.remote
    }

    /// The SRTP suite negotiated through `use_srtp`, once connected.
    pub fn srtp_suite(&self) -> Option<CryptoSuite> {
        self.suite
    }

    /// The counters so far.
    pub fn counters(&self) -> DtlsCounters {
        self.counters
    }

    /// Once [`DtlsState::Connected`], the SRTP session keyed from the exporter (RFC 5764 §4.2):
    /// the client protects with `client_write_key|client_salt` and the server with the
    /// server's, each unprotects with the other's. `Some` exactly once.
    pub fn take_srtp(&mut self) -> Option<SrtpSession> {
        self.srtp.take()
    }

    fn fail(&mut self, reason: String) {
        tracing::debug!(role = ?self.role, %reason, "DTLS-SRTP handshake failed");
        self.srtp = None;
        self.state = DtlsState::Failed(reason);
    }

    /// Moves what `rtc-dtls` queued into our transmits; a fatal alert of ours ends a handshake.
    fn drain(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            if self.state == DtlsState::Connecting && carries_fatal_alert(&t.message) {
                self.fail("we aborted the handshake with a fatal alert".into());
            }
            self.counters.sent += 1;
            self.transmits.push_back(t.message.freeze());
        }
    }

    /// The handshake completed: check the peer again and export the SRTP keys.
    fn on_complete(&mut self) {
        if self.state != DtlsState::Connecting {
            return;
        }
        match self.key_srtp() {
            Ok((suite, session)) => {
                self.suite = Some(suite);
                self.srtp = Some(session);
                self.state = DtlsState::Connected;
            }
            Err(reason) => self.fail(reason),
        }
    }

    fn key_srtp(&self) -> Result<(CryptoSuite, SrtpSession), String> {
        let state = self
            .endpoint
            .get_connection_state(PEER)
            .ok_or("the association vanished")?;
        // The callback checked it already; a completed handshake without it must not key SRTP.
        if !state
            .peer_certificates
            .first()
            .is_some_and(|der| self.remote.matches(der))
        {
            return Err("the peer certificate does not match the SDP fingerprint".into());
        }
        let negotiated = state.srtp_protection_profile();
        let suite = CryptoSuite::ALL
            .into_iter()
            .find(|&s| profile(s) == negotiated)
            .ok_or_else(|| format!("no usable use_srtp profile negotiated ({negotiated:?})"))?;
        let km = state
            .export_keying_material(EXPORTER_LABEL, &[], 2 * suite.master_len())
            .map_err(|e| format!("exporter: {e}"))?;
        let (local, remote) = split_keying_material(suite, self.role, km.as_ref())
            .ok_or("exporter gave the wrong length")?;
        let session = SrtpSession::new(suite, &local, &remote).map_err(|e| e.to_string())?;
        Ok((suite, session))
    }
}
