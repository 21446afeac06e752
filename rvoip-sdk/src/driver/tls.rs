//! SIP over TLS (RFC 3261 §26, RFC 5630), with rustls on the ring backend: the server's
//! certificate (PEM files, or a self-signed one made once in a data directory for a zero-config
//! start), the client's verification of a server (system roots, an optional CA file, or a
//! pinned SHA-256 fingerprint), and the accept/connect tasks that hand the decrypted stream to
//! the same Content-Length framing as TCP ([`super::tcp::serve`]).
//!
//! A TLS target never falls back to plaintext: a handshake or verification failure ends the
//! connection attempt, and the requests waiting on it fail at once with a 503 whose reason
//! phrase says why (RFC 3261 §8.1.3.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::conn::Conns;
use super::{Inbound, tcp};
use crate::sip::transaction::Transport;

/// How long a TLS handshake may take before the connection is dropped (a peer that stalls
/// the handshake holds nothing longer than this).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File names of the self-signed certificate and key in the data directory.
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";
/// See [`SELF_SIGNED_CERT`].
pub const SELF_SIGNED_KEY: &str = "tls-key.pem";

/// Errors of TLS set-up (files, keys, certificates).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{0}: no PEM private key in it")]
    NoKey(PathBuf),
    /// A pinned fingerprint is not 32 bytes of hex (colons allowed).
    #[error("not a SHA-256 fingerprint (64 hex digits, colons allowed): {0}")]
    BadFingerprint(String),
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS: {0}")]
    Rustls(String),
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// The crypto provider every TLS configuration here uses (ring).
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The SHA-256 fingerprint of a DER certificate, as upper-case hex pairs joined by colons
/// (`AB:CD:…`, the form of SDP `a=fingerprint` and of browsers' certificate viewers).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses a fingerprint written as [`fingerprint_sha256`] does (case and colons free).
/// Errors: [`TlsError::BadFingerprint`].
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let hex_digits: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let v = hex::decode(&hex_digits).map_err(|_| TlsError::BadFingerprint(s.into()))?;
    v.try_into().map_err(|_| TlsError::BadFingerprint(s.into()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(io)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
/// Errors: [`TlsError::Io`], [`TlsError::NoCertificate`].
pub fn file_fingerprint(cert: &Path) -> Result<String, TlsError> {
    let certs = read_certs(cert)?;
    Ok(certs
        .first()
        .map(|c| fingerprint_sha256(c))
        .unwrap_or_default())
}

/// A server configuration from a PEM certificate chain and its PEM private key.
/// Errors: [`TlsError::Io`], [`TlsError::NoCertificate`], [`TlsError::NoKey`],
/// [`TlsError::Rustls`] (the key does not match, unsupported key type).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert)?;
    let pem = std::fs::read(key).map_err(|source| TlsError::Io {
        path: key.to_path_buf(),
        source,
    })?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// The self-signed certificate and key of a zero-config start: `dir/tls-cert.pem` and
/// `dir/tls-key.pem`, made (ECDSA P-256, subject alternative names `names`: host names and IP
/// addresses) the first time and reused afterwards, so that a pinned fingerprint stays valid
/// across restarts. Returns the two paths. Errors: [`TlsError::Io`] (directory or files),
/// [`TlsError::Generate`].
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&key, ck.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert, ck.cert.pem()).map_err(|source| TlsError::Io {
        path: cert.clone(),
        source,
    })?;
    Ok((cert, key))
}

/// Writes a file readable by its owner only (a private key).
fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(io)?.write_all(data).map_err(io)
}

/// The system's trusted roots (loaded once; unreadable entries are skipped).
fn system_roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = store.add(c);
        }
        Arc::new(store)
    })
    .clone()
}

/// How a client verifies a server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsOptions {
    /// A PEM file of extra trusted CA certificates (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 fingerprint of the server's certificate ([`fingerprint_sha256`] form): a
    /// certificate with this fingerprint is accepted whatever signed it and whatever names it
    /// carries (a self-signed server); any other is verified as usual.
    pub pin_sha256: Option<String>,
}

/// A client configuration verifying servers as `opts` says (RFC 5922 §7: the certificate must
/// name the host the request was for, and chain to a trusted root, unless pinned).
/// Errors: [`TlsError::Io`]/[`TlsError::NoCertificate`] (CA file), [`TlsError::BadFingerprint`],
/// [`TlsError::Rustls`].
pub fn client_config(opts: &ClientTlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = (*system_roots()).clone();
    if let Some(ca) = &opts.ca_file {
        for c in read_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
        }
    }
    let pin = opts
        .pin_sha256
        .as_deref()
        .map(parse_fingerprint)
        .transpose()?;
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?,
        )
    };
    let verifier = Arc::new(Verifier {
        pin,
        webpki,
        provider: provider(),
    });
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A pinned fingerprint, else the WebPKI verification against the trusted roots.
#[derive(Debug)]
struct Verifier {
    pin: Option<[u8; 32]>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            if Sha256::digest(end_entity.as_ref()).as_slice() == pin.as_slice() {
                return Ok(ServerCertVerified::assertion());
            }
        }
        match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Counters of the TLS listeners (hostile or broken peers).
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Handshakes that failed (garbage instead of a ClientHello, bad versions, …).
    pub handshake_failures: AtomicU64,
    /// Handshakes that did not finish within [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeouts: AtomicU64,
    /// Handshakes completed.
    pub accepted: AtomicU64,
}

/// Accepts TLS connections until the listener fails for good; each handshake runs in its own
/// task with [`HANDSHAKE_TIMEOUT`], so a stalled peer blocks nobody.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
    counters: Arc<TlsCounters>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = conns.admit(peer) else {
                    tracing::debug!(%peer, "tls connection refused: connection limit");
                    drop(stream);
                    continue;
                };
                let conns = conns.clone();
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let inbound = inbound.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            counters.accepted.fetch_add(1, Ordering::Relaxed);
                            let (tx, rx) = super::conn::write_queue();
                            if inbound.send(Inbound::TcpOpened { peer, tx }).await.is_ok() {
                                tcp::serve(
                                    tls,
                                    peer,
                                    Transport::Tls,
                                    rx,
                                    inbound,
                                    conns,
                                    Some(slot),
                                )
                                .await;
                            }
                        }
                        Ok(Err(e)) => {
                            counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                        }
                        Err(_) => {
                            counters.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "tls handshake timed out");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "tls accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Opens a TLS connection to `peer`, verifying its certificate for `name`, and serves it;
/// messages queued in `rx` are written once the handshake is done. A failure (connect,
/// handshake, verification) is reported as [`Inbound::ConnectFailed`] with its reason.
pub(crate) async fn connect(
    peer: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    rx: super::conn::ConnRx,
    inbound: mpsc::Sender<Inbound>,
    conns: Arc<Conns>,
) {
    let attempt = async {
        let tcp = TcpStream::connect(peer)
            .await
            .map_err(|e| format!("TLS connect to {peer}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(config)
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {peer} ({}): {e}", name.to_str()))
    };
    let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("TLS handshake with {peer} timed out")));
    match r {
        Ok(tls) => tcp::serve(tls, peer, Transport::Tls, rx, inbound, conns, None).await,
        Err(reason) => {
            tracing::warn!(%peer, %reason, "tls connection failed");
            let _ = inbound
                .send(Inbound::ConnectFailed {
                    peer,
                    transport: Transport::Tls,
                    reason,
                })
                .await;
        }
    }
}

/// The default data directory (the zero-config certificate lives there): `$RVOIP_DATA_DIR`,
/// else `$XDG_DATA_HOME/rvoip`, else `$HOME/.local/share/rvoip`, else `./rvoip-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RVOIP_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("rvoip");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/rvoip");
    }
    PathBuf::from("rvoip-data")
}
