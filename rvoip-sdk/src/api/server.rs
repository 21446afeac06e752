//! The embedded server: the same registrar and stateful proxy as the `rvoip-server` binary
//! ([`crate::driver::BoundServer`] over [`crate::server`]), run on its own tokio runtime so an
//! app (C, Swift, Kotlin, Python) can start and stop it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::ApiError;
use crate::driver::BoundServer;
use crate::driver::conn::ConnCounters;
use crate::driver::tls::TlsCounters;
use crate::driver::ws::WsCounters;
use crate::server::config::ServerConfig;
use crate::sip::transaction::Transport;

struct Running {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    bound: Vec<(Transport, SocketAddr)>,
    domain: String,
    tls_fingerprint: Option<String>,
    relay: Option<crate::driver::relay::RelayHandle>,
    tls_counters: Arc<TlsCounters>,
    ws_counters: Arc<WsCounters>,
    conn_counters: Arc<ConnCounters>,
}

/// A registrar + proxy that can be started and stopped. Thread-safe.
pub struct Server {
    cfg: ServerConfig,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.cfg.listen)
            .field("running", &self.is_running())
            .finish()
    }
}

impl Server {
    /// A stopped server with `cfg` (see the README's config section; `ServerConfig::default()`
    /// is the zero-config server: UDP+TCP on 0.0.0.0:5060, demo users).
    pub fn new(cfg: ServerConfig) -> Server {
        Server {
            cfg,
            running: Mutex::new(None),
        }
    }

    /// A stopped server from a TOML config file (the `--config` format of `rvoip-server`).
    /// Errors: [`ApiError::InvalidArgument`] (unreadable or invalid file).
    pub fn from_toml_file(path: &std::path::Path) -> Result<Server, ApiError> {
        let cfg = ServerConfig::from_toml_file(path)
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        Ok(Server::new(cfg))
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Binds the listen addresses and starts serving. Errors: [`ApiError::InvalidState`]
    /// (already running), [`ApiError::Network`] (bind failed), [`ApiError::InvalidArgument`]
    /// (users file unreadable).
    pub fn start(&self) -> Result<(), ApiError> {
        let mut running = self.running.lock().map_err(|_| ApiError::Shutdown)?;
        if running.is_some() {
            return Err(ApiError::InvalidState("server already running".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rvoip-server")
            .enable_all()
            .build()
            .map_err(|e| ApiError::Network(format!("runtime: {e}")))?;
        let server = runtime
            .block_on(BoundServer::bind(&self.cfg))
            .map_err(|e| match e {
                crate::driver::DriverError::Config(c) => ApiError::InvalidArgument(c.to_string()),
                other => ApiError::Network(other.to_string()),
            })?;
        let bound = server.bound().to_vec();
        let domain = server.domain().to_string();
        let tls_fingerprint = server.tls_fingerprint().map(str::to_string);
        let relay = server.relay();
        let (tls_counters, ws_counters) = (server.tls_counters(), server.ws_counters());
        let conn_counters = server.conn_counters();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server.run(async move {
            let _ = rx.await;
        }));
        *running = Some(Running {
            runtime,
            stop,
            bound,
            domain,
            tls_fingerprint,
            relay,
            tls_counters,
            ws_counters,
            conn_counters,
        });
        Ok(())
    }

    /// Stops serving and closes the sockets. A no-op when not running.
    pub fn stop(&self) {
        let r = self.running.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = r {
            let _ = r.stop.send(());
            if tokio::runtime::Handle::try_current().is_ok() {
                r.runtime.shutdown_background();
            } else {
                r.runtime
                    .shutdown_timeout(std::time::Duration::from_millis(500));
            }
        }
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.running.lock().map(|r| r.is_some()).unwrap_or(false)
    }

    /// The bound sockets with their real ports (empty when stopped).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.bound.clone()))
            .unwrap_or_default()
    }

    /// The domain the running server answers for (empty when stopped).
    pub fn domain(&self) -> String {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.domain.clone()))
            .unwrap_or_default()
    }
}

impl Server {
    /// The SHA-256 fingerprint (`AB:CD:…`, RFC 4572 form) of the running server's TLS
    /// certificate, for clients to pin; `None` when stopped or not listening on TLS.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.tls_fingerprint.clone()))
    }

    /// The TLS listeners' counters (handshakes accepted, failed, timed out) while running.
    pub fn tls_counters(&self) -> Option<Arc<TlsCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.tls_counters.clone()))
    }

    /// The WebSocket listeners' counters (upgrades, refusals without the `sip` subprotocol,
    /// handshake failures and timeouts, protocol errors) while running.
    pub fn ws_counters(&self) -> Option<Arc<WsCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.ws_counters.clone()))
    }

    /// The stream connections' counters (open, accepted, refused by `max_connections*`, closed
    /// idle, slow, oversized or unframable) while running.
    pub fn conn_counters(&self) -> Option<Arc<ConnCounters>> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.conn_counters.clone()))
    }

    /// The media relay's counters while running with `relay` other than `"off"`: contexts and
    /// ports in use, packets forwarded, drops by reason. `None` when stopped or off.
    pub fn relay_stats(&self) -> Option<crate::media::relay::RelayStats> {
        let relay = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.relay.clone()))?;
        Some(relay.stats())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
