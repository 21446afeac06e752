//! Reloading the configuration into a running core (`rvoip-server` on SIGHUP,
//! [`crate::api::Server::reload`]): users, domains, forwarding, registrar and guard limits,
//! the held-request limits and the recording policy change at once; calls in progress,
//! transactions, bindings, subscriptions and digest nonces are kept.
//!
//! Settings the core cannot change while running (sockets, the relay, TLS, timers…) are
//! listed by [`restart_needed`] so the caller can log them. Nothing here reads a file: the
//! caller reads and checks them first ([`LoadedConfig::load`]), so a bad file never reaches
//! the core.

use super::domains::{DEFAULT_DOMAIN, user_db, verifier};
use super::{ServerCore, forward};
use crate::server::config::{ConfigError, ServerConfig};
use crate::server::domains::{LoadedConfig, RegistrarPolicy};
use crate::server::guard::GuardConfig;

/// What [`ServerCore::reload`] applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Accounts of the default domain.
    pub users: usize,
    /// Domains served besides the default one.
    pub domains: usize,
    /// Users with call forwarding.
    pub forwarding_rules: usize,
}

/// The settings that differ between `old` and `new` but take effect only after a restart (the
/// TOML key names), in a fixed order. Empty when a reload applies everything.
pub fn restart_needed(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! fields {
        ($($f:ident),* $(,)?) => { $( if old.$f != new.$f { out.push(stringify!($f)); } )* };
    }
    fields!(
        listen,
        domain,
        advertise,
        max_message_bytes,
        max_headers,
        t1_ms,
        t2_ms,
        t4_ms,
        relay,
        relay_ports,
        relay_timeout_s,
        relay_strict_source,
        relay_rewrite_ssrc,
        relay_transcode,
        relay_advertise,
        relay_bind,
        recording_dir,
        tls_cert,
        tls_key,
        data_dir,
        store,
        redis_url,
        record_path,
        http_listen,
        dns_server,
        presence,
        presence_min_expires_s,
        presence_max_expires_s,
        presence_max_body_bytes,
        presence_max_publications,
        presence_max_subscriptions_per_user,
        presence_max_subscriptions,
        offline_messages,
        offline_max_messages,
        offline_max_bytes,
        offline_ttl_s,
        conference_prefix,
        conference_max_members,
        conference_max_rooms,
        max_connections,
        max_connections_per_source,
        connection_idle_timeout_s,
        message_timeout_s,
        udp_receive_buffer_bytes,
    );
    // The recorder is started only when some recording is configured at start.
    let records = |c: &ServerConfig| c.record_calls || !c.record_users.is_empty();
    if records(new) && !records(old) {
        out.push("record_calls/record_users (recorder not running)");
    }
    out
}

impl ServerCore {
    /// Applies `new` (read and checked by [`LoadedConfig::load`]) to the running core: the
    /// default domain's users, realm, `lax_auth_user`, `nonce_lifetime_s`, `invite_auth` and
    /// registrar limits (`min_expires_s`, `max_expires_s`, `default_expires_s`,
    /// `max_bindings_per_aor`), `digest_algorithms`, `aliases`, `[domains]`, `[forward]`,
    /// `forward_max_chain`, `redirect`, the guard's `flood_*`, `auth_*` and
    /// `trusted_sources`, `max_transactions*`, `max_held_bytes*`, `max_forward_body_bytes`,
    /// `record_calls` and `record_users`. Calls, transactions, bindings and subscriptions are
    /// kept; digest nonces stay valid in every domain whose realm did not change. Settings
    /// that need a restart are left as they are ([`restart_needed`]).
    ///
    /// Errors: [`ConfigError::Invalid`] for a bad forwarding rule; then nothing was changed.
    pub fn reload(&mut self, new: &LoadedConfig) -> Result<ReloadSummary, ConfigError> {
        let cfg = &new.cfg;
        let rules = cfg.forward_rules()?;
        // The default domain: a new realm needs a new verifier (HA1 depends on it); else the
        // users are swapped and the nonce state kept.
        let realm = cfg
            .realm
            .clone()
            .unwrap_or_else(|| self.local.domain.clone());
        let secret = self.domains.secret();
        let default = self.domains.get_mut(DEFAULT_DOMAIN);
        if default.auth.realm() == realm {
            default.auth.set_users(user_db(&realm, &new.users));
        } else {
            default.auth = verifier(&realm, &new.users, false, 0, secret);
        }
        default.auth.lax = cfg.lax_auth_user;
        default.auth.nonce_lifetime = cfg.nonce_lifetime_s;
        default.invite_auth = cfg.invite_auth;
        default.registrar = RegistrarPolicy::from_server(cfg);
        self.set_domains(&new.domains);
        self.domains
            .set_base_aliases(&mut self.local, Some(&cfg.aliases));
        self.digest_algorithms = if cfg.digest_algorithms.is_empty() {
            vec![crate::auth::Algorithm::Md5]
        } else {
            cfg.digest_algorithms.clone()
        };
        let mut table = forward::forward_table(&ServerConfig::default());
        for (user, rule) in &rules {
            table.set(user, Some(rule.clone()));
        }
        self.forwarding = table;
        self.forward_max_chain = cfg.forward_max_chain;
        self.redirect = cfg.redirect;
        self.guard.set_config(GuardConfig::from_server(cfg));
        self.max_transactions = cfg.max_transactions;
        self.max_transactions_per_source = cfg.max_transactions_per_source;
        self.max_held_bytes = cfg.max_held_bytes;
        self.max_held_bytes_per_source = cfg.max_held_bytes_per_source;
        self.max_forward_body_bytes = cfg.max_forward_body_bytes;
        self.record_all = cfg.record_calls;
        self.record_users = cfg.record_users.iter().cloned().collect();
        Ok(ReloadSummary {
            users: new.users.len(),
            domains: new.domains.len(),
            forwarding_rules: rules.len(),
        })
    }
}
