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
    /// Sockets as `udp:IP:PORT` / `tcp:IP:PORT` (port 0 picks a free one); empty for
    /// `udp:0.0.0.0:5060` and `tcp:0.0.0.0:5060`.
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
}

/// A local socket: its transport and `IP:port`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LocalAddress {
    /// UDP or TCP.
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
    inner: sdk::Server,
}

#[uniffi::export]
impl Server {
    /// A stopped server with `options`. Errors: `InvalidArgument` (a listen spec, an empty
    /// user name).
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

    /// Binds the sockets and starts serving. Errors: `InvalidState` (running), `Network`
    /// (bind), `InvalidArgument` (users file).
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
}
