//! The embedded SIP server (registrar with digest auth, stateful proxy, media relay): the same
//! engine as `rvoip-server`, inside an app or a test.

use std::collections::HashMap;
use std::sync::Arc;

use rvoip_sdk::api as sdk;
use rvoip_sdk::server::config::ListenSpec;

use crate::RvoipError;
use crate::account::Transport;

/// Settings of an embedded [`Server`]; every field has a default.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ServerOptions {
    /// Sockets as `udp:IP:PORT` / `tcp:IP:PORT` / `tls:IP:PORT` (SIP over TLS, RFC 3261 §26.2,
    /// RFC 5630) / `ws:IP:PORT` / `wss:IP:PORT` (SIP over WebSocket, plain or over TLS with the
    /// TLS certificate, RFC 7118) (port 0 picks a free one); empty for `udp:0.0.0.0:5060`,
    /// `tcp:0.0.0.0:5060` and `tls:0.0.0.0:5061`.
    #[uniffi(default)]
    pub listen: Vec<String>,
    /// The SIP domain served (and digest realm); `None` for the first bound non-wildcard IP,
    /// else this host's address.
    #[uniffi(default)]
    pub domain: Option<String>,
    /// Accounts as user name → password; `None` for the demo users (`alice`, `bob`).
    #[uniffi(default)]
    pub users: Option<HashMap<String, String>>,
    /// A `user:password` file (one per line, `#` comments) to load as well.
    #[uniffi(default)]
    pub users_file: Option<String>,
    /// Challenge (407) INVITEs whose From is a local user.
    #[uniffi(default = true)]
    pub invite_auth: bool,
    /// One credential may register and call as any AOR of the domain.
    #[uniffi(default = false)]
    pub lax_auth_user: bool,
    /// The TLS listeners' certificate chain, a PEM file (with `tls_key`). `None`: a self-signed
    /// certificate is made once in `data_dir` and reused; clients then pin its fingerprint
    /// (`Server.tls_fingerprint()`).
    #[uniffi(default)]
    pub tls_cert: Option<String>,
    /// The private key of `tls_cert`, a PEM file (PKCS#8, PKCS#1 or SEC1). Give both or
    /// neither (one alone: `InvalidArgument`).
    #[uniffi(default)]
    pub tls_key: Option<String>,
    /// Where the server keeps state it makes itself (the self-signed TLS certificate). `None`:
    /// `$RVOIP_DATA_DIR`, else `$XDG_DATA_HOME/rvoip`, else `~/.local/share/rvoip`.
    #[uniffi(default)]
    pub data_dir: Option<String>,
}

/// A local socket: its transport and `IP:port`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LocalAddress {
    /// UDP, TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// `IP:port`.
    pub address: String,
}

pub(crate) fn addresses(list: &[(sdk::Transport, std::net::SocketAddr)]) -> Vec<LocalAddress> {
    list.iter()
        .map(|(t, a)| LocalAddress {
            transport: Transport::of(*t),
            address: a.to_string(),
        })
        .collect()
}

pub(crate) fn port_of(
    list: &[(sdk::Transport, std::net::SocketAddr)],
    t: Transport,
) -> Option<u16> {
    let want = sdk::Transport::from(t);
    list.iter().find(|(k, _)| *k == want).map(|(_, a)| a.port())
}

/// An embedded SIP server: created stopped, then `start()`.
#[derive(uniffi::Object)]
pub struct Server {
    pub(crate) inner: sdk::Server,
}

#[uniffi::export]
impl Server {
    /// A stopped server with `options`. Errors: `InvalidArgument` (a listen spec, an empty
    /// user name, `tls_cert` without `tls_key` or the reverse).
    #[uniffi::constructor]
    pub fn new(options: ServerOptions) -> Result<Arc<Self>, RvoipError> {
        let mut cfg = sdk::ServerConfig::default();
        if !options.listen.is_empty() {
            cfg.listen = options
                .listen
                .iter()
                .map(|s| {
                    s.trim()
                        .parse::<ListenSpec>()
                        .map_err(|e| RvoipError::invalid(format!("listen {s:?}: {e}")))
                })
                .collect::<Result<_, _>>()?;
        }
        cfg.domain = options.domain;
        if let Some(users) = options.users {
            cfg.users.clear();
            for (user, password) in users {
                if user.is_empty() || user.contains(':') {
                    return Err(RvoipError::invalid(format!("user name {user:?}")));
                }
                cfg.users.insert(user, password);
            }
        }
        cfg.users_file = options.users_file.map(Into::into);
        cfg.invite_auth = options.invite_auth;
        cfg.lax_auth_user = options.lax_auth_user;
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let (tls_cert, tls_key) = (nonempty(options.tls_cert), nonempty(options.tls_key));
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(RvoipError::invalid(
                "tls_cert and tls_key go together (give both or neither)",
            ));
        }
        cfg.tls_cert = tls_cert.map(Into::into);
        cfg.tls_key = tls_key.map(Into::into);
        cfg.data_dir = nonempty(options.data_dir).map(Into::into);
        Ok(Arc::new(Server {
            inner: sdk::Server::new(cfg),
        }))
    }

    /// A stopped server from a TOML file in the `rvoip-server --config` format. Errors:
    /// `InvalidArgument` (unreadable or invalid file).
    #[uniffi::constructor]
    pub fn from_toml(path: String) -> Result<Arc<Self>, RvoipError> {
        let inner = sdk::Server::from_toml_file(std::path::Path::new(&path))?;
        Ok(Arc::new(Server { inner }))
    }

    /// Reloads the settings from a TOML file in the `rvoip-server --config` format, as
    /// `rvoip-server` does on SIGHUP: users, domains, forwarding and dispatch routes, limits and
    /// digest settings apply to the next message; calls, bindings and transactions are kept.
    /// Returns the names of changed settings that need a restart (they keep their running
    /// values); a stopped server keeps the settings for its next start. Errors:
    /// `InvalidArgument` (unreadable or invalid file, bad users file, domain or route: nothing
    /// changes), `InvalidState` (stopping).
    pub fn reload(&self, path: String) -> Result<Vec<String>, RvoipError> {
        let cfg = sdk::ServerConfig::from_toml_file(std::path::Path::new(&path)).map_err(|e| {
            RvoipError::InvalidArgument {
                detail: e.to_string(),
            }
        })?;
        Ok(self
            .inner
            .reload(cfg)?
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    /// Binds the sockets and starts serving. With a `tls:` listener and no `tls_cert`, makes the
    /// self-signed certificate in the data directory first (once; later starts reuse it).
    /// Errors: `InvalidState` (running), `Network` (bind; TLS certificate or key unreadable or
    /// not matching, or the data directory not writable), `InvalidArgument` (users file).
    pub fn start(&self) -> Result<(), RvoipError> {
        Ok(self.inner.start()?)
    }

    /// Stops serving (a no-op when stopped).
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Whether it is serving.
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// The bound sockets (empty when stopped).
    pub fn local_addresses(&self) -> Vec<LocalAddress> {
        addresses(&self.inner.local_addrs())
    }

    /// The port it listens on for `transport`, if any (None when stopped).
    pub fn port(&self, transport: Transport) -> Option<u16> {
        port_of(&self.inner.local_addrs(), transport)
    }

    /// The SIP domain it serves (AORs are `sip:user@<domain>`).
    pub fn domain(&self) -> String {
        self.inner.domain()
    }

    /// The SHA-256 fingerprint of its TLS certificate as 32 upper-case hex pairs joined by
    /// colons (`AB:CD:…`, RFC 4572 form), for clients to pin a self-signed certificate
    /// (`AccountOptions.tls_pin_sha256`; RFC 3261 §26.2, RFC 5630). `None` when stopped or not
    /// listening on TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.inner.tls_fingerprint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_is_reported_with_its_own_transport() {
        let list = [
            (sdk::Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
            (sdk::Transport::Tcp, "127.0.0.1:5062".parse().unwrap()),
            (sdk::Transport::Tls, "127.0.0.1:5061".parse().unwrap()),
            (sdk::Transport::Ws, "127.0.0.1:8080".parse().unwrap()),
            (sdk::Transport::Wss, "127.0.0.1:8443".parse().unwrap()),
        ];
        let kinds: Vec<_> = addresses(&list).iter().map(|a| a.transport).collect();
        assert_eq!(
            kinds,
            [
                Transport::Udp,
                Transport::Tcp,
                Transport::Tls,
                Transport::Ws,
                Transport::Wss
            ]
        );
        assert_eq!(port_of(&list, Transport::Tls), Some(5061));
        assert_eq!(port_of(&list, Transport::Tcp), Some(5062));
        assert_eq!(port_of(&list, Transport::Ws), Some(8080));
        assert_eq!(port_of(&list, Transport::Wss), Some(8443));
        assert_eq!(port_of(&list[..2], Transport::Tls), None);
        assert_eq!(port_of(&list[..3], Transport::Ws), None);
        for t in sdk::Transport::ALL {
            assert_eq!(sdk::Transport::from(Transport::of(t)), t);
        }
    }

    #[test]
    fn a_tls_certificate_needs_its_key() {
        let options = |cert: Option<&str>, key: Option<&str>| ServerOptions {
            listen: vec!["tls:127.0.0.1:0".into()],
            domain: None,
            users: None,
            users_file: None,
            invite_auth: true,
            lax_auth_user: false,
            tls_cert: cert.map(Into::into),
            tls_key: key.map(Into::into),
            data_dir: None,
        };
        assert!(matches!(
            Server::new(options(Some("cert.pem"), None)),
            Err(RvoipError::InvalidArgument { .. })
        ));
        assert!(matches!(
            Server::new(options(None, Some("key.pem"))),
            Err(RvoipError::InvalidArgument { .. })
        ));
        assert!(Server::new(options(Some("cert.pem"), Some("key.pem"))).is_ok());
        assert!(Server::new(options(None, None)).is_ok());
    }
}
