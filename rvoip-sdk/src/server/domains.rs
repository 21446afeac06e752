//! Virtual hosting: the domains one server serves, each with its own users, digest realm and
//! registrar settings (Kamailio's `domain` module with per-domain `subscriber` tables).
//!
//! The TOML file names them under `[domains."<name>"]`:
//!
//! ```toml
//! [domains."a.example"]
//! users_file = "a-users.txt"       # user:password lines, as the top-level users_file
//! realm = "a.example"              # default: the domain name
//! aliases = ["sip.a.example"]      # other host names of this domain
//! invite_auth = true               # default: the top-level setting
//! max_bindings_per_aor = 5         # default: the top-level setting
//! min_expires_s = 60               # likewise max_expires_s, default_expires_s
//! [domains."a.example".users]
//! alice = "a-secret"
//! ```
//!
//! The top-level settings (`domain`, `realm`, `users_file`, `[users]`, …) are the *default
//! domain*, which also answers for the server's own addresses (its IPs, the advertised address,
//! `localhost`, `aliases`). With no `[domains]`, that is all there is: the zero-configuration
//! server. A configured domain never falls back to the demo users.
//!
//! Each domain's bindings are kept apart in the location service by their key
//! ([`aor_key`]): the bare user name in the default domain, `user@domain` in the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::server::config::{ConfigError, ServerConfig};

/// One served domain as written in `[domains."<name>"]`. Unset settings take the top-level
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainConfig {
    /// Other host names (or IPs) that mean this domain in Request-URI, To and From hosts.
    pub aliases: Vec<String>,
    /// The digest realm of the domain's challenges (RFC 7616 §3.3). Default: the domain name.
    pub realm: Option<String>,
    /// A `user:password` file for this domain (one per line, `#` comments).
    pub users_file: Option<PathBuf>,
    /// Users given inline: `[domains."a.example".users] alice = "secret"`.
    pub users: BTreeMap<String, String>,
    /// Challenge (407) INVITE, MESSAGE and SUBSCRIBE from this domain's users.
    pub invite_auth: Option<bool>,
    /// Registrar: most bindings kept for one AOR of this domain.
    pub max_bindings_per_aor: Option<usize>,
    /// Registrar: shortest accepted registration in seconds (shorter gets 423).
    pub min_expires_s: Option<u32>,
    /// Registrar: longest granted registration in seconds.
    pub max_expires_s: Option<u32>,
    /// Registrar: expiry when the REGISTER names none, in seconds.
    pub default_expires_s: Option<u32>,
}

/// The registrar settings one domain applies to its REGISTERs (RFC 3261 §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Shortest accepted non-zero expiry in seconds.
    pub min_expires: u32,
    /// Longest granted expiry in seconds.
    pub max_expires: u32,
    /// Expiry when the request gives none, in seconds.
    pub default_expires: u32,
    /// Most bindings per AOR.
    pub max_bindings_per_aor: usize,
}

impl RegistrarPolicy {
    /// The top-level registrar settings of `cfg`.
    pub fn from_server(cfg: &ServerConfig) -> RegistrarPolicy {
        RegistrarPolicy {
            min_expires: cfg.min_expires_s,
            max_expires: cfg.max_expires_s,
            default_expires: cfg.default_expires_s,
            max_bindings_per_aor: cfg.max_bindings_per_aor,
        }
    }
}

/// One configured domain with its files read and its settings resolved: what the core serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSettings {
    /// The domain name (lower-cased).
    pub name: String,
    /// Its other host names (lower-cased).
    pub aliases: Vec<String>,
    /// Its digest realm.
    pub realm: String,
    /// Its accounts: (user, password).
    pub users: Vec<(String, String)>,
    /// Whether INVITE, MESSAGE and SUBSCRIBE from its users are challenged.
    pub invite_auth: bool,
    /// Its registrar settings.
    pub registrar: RegistrarPolicy,
}

/// The location-service key of `user` in a domain: the user itself in the default domain
/// (`domain == None`), `user@domain` in a configured one. Keys of different domains never
/// collide, since a SIP user part carries no unescaped `@` (RFC 3261 §25.1).
pub fn aor_key(user: &str, domain: Option<&str>) -> String {
    match domain {
        None => user.to_string(),
        Some(d) => format!("{user}@{d}"),
    }
}

/// Reads a `user:password` file (one per line, blank lines and `#` comments skipped).
/// Errors: [`ConfigError::Io`] (unreadable), [`ConfigError::Users`] (a bad line, with its
/// number).
pub fn read_users_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, p)) if !u.is_empty() && !u.contains(char::is_whitespace) => {
                out.push((u.to_string(), p.to_string()))
            }
            _ => {
                return Err(ConfigError::Users {
                    path: path.to_path_buf(),
                    msg: format!("line {}: expected user:password", i + 1),
                });
            }
        }
    }
    Ok(out)
}

/// A host name as compared: lower-case, IPv6 brackets removed.
fn host_key(h: &str) -> String {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl ServerConfig {
    /// The `[domains]` of the configuration with their users files read and unset settings
    /// taken from the top level, in name order. Errors: [`ConfigError::Io`] and
    /// [`ConfigError::Users`] (a users file), [`ConfigError::Invalid`] (an empty name, a name
    /// or alias given twice or equal to the top-level `domain`, a user name with `@`, or
    /// `min_expires_s` above `max_expires_s`).
    pub fn load_domains(&self) -> Result<Vec<DomainSettings>, ConfigError> {
        let mut seen: Vec<String> = self.domain.iter().map(|d| host_key(d)).collect();
        let mut out = Vec::with_capacity(self.domains.len());
        for (name, d) in &self.domains {
            let bad = |msg: String| ConfigError::Invalid(format!("[domains.{name:?}]: {msg}"));
            let key = host_key(name);
            if key.is_empty() || key.contains(char::is_whitespace) || key.contains('@') {
                return Err(bad("not a host name".into()));
            }
            let aliases: Vec<String> = d.aliases.iter().map(|a| host_key(a)).collect();
            for h in std::iter::once(&key).chain(&aliases) {
                if seen.contains(h) {
                    return Err(bad(format!("host {h:?} is served twice")));
                }
                seen.push(h.clone());
            }
            let mut users = match &d.users_file {
                Some(p) => read_users_file(p)?,
                None => Vec::new(),
            };
            users.extend(d.users.iter().map(|(u, p)| (u.clone(), p.clone())));
            if let Some((u, _)) = users.iter().find(|(u, _)| u.contains('@')) {
                return Err(bad(format!("user name {u:?} contains @")));
            }
            let registrar = RegistrarPolicy {
                min_expires: d.min_expires_s.unwrap_or(self.min_expires_s),
                max_expires: d.max_expires_s.unwrap_or(self.max_expires_s),
                default_expires: d.default_expires_s.unwrap_or(self.default_expires_s),
                max_bindings_per_aor: d.max_bindings_per_aor.unwrap_or(self.max_bindings_per_aor),
            };
            if registrar.min_expires > registrar.max_expires {
                return Err(bad("min_expires_s is above max_expires_s".into()));
            }
            out.push(DomainSettings {
                realm: d.realm.clone().unwrap_or_else(|| key.clone()),
                name: key,
                aliases,
                users,
                invite_auth: d.invite_auth.unwrap_or(self.invite_auth),
                registrar,
            });
        }
        Ok(out)
    }
}

/// A configuration with every file it names read and checked: what a start or a reload
/// applies ([`crate::server::core::ServerCore::reload`]).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The settings.
    pub cfg: ServerConfig,
    /// The default domain's accounts ([`ServerConfig::load_users`]).
    pub users: Vec<(String, String)>,
    /// The other domains ([`ServerConfig::load_domains`]).
    pub domains: Vec<DomainSettings>,
}

impl LoadedConfig {
    /// Reads the users files and checks the forwarding rules and domains of `cfg`. Errors:
    /// those of [`ServerConfig::load_users`], [`ServerConfig::load_domains`] and
    /// [`ServerConfig::forward_rules`]; nothing is applied anywhere.
    pub fn load(cfg: ServerConfig) -> Result<LoadedConfig, ConfigError> {
        let users = cfg.load_users()?;
        let domains = cfg.load_domains()?;
        cfg.forward_rules()?;
        Ok(LoadedConfig {
            cfg,
            users,
            domains,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_parse_inherit_and_read_their_users() {
        let dir = std::env::temp_dir().join(format!("rvoip-domains-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.txt");
        std::fs::write(&file, "# b\nalice:b-secret\n").unwrap();
        let text = format!(
            "max_bindings_per_aor = 7\ninvite_auth = false\n\
             [domains.\"A.example\"]\naliases = [\"sip.a.example\"]\nmin_expires_s = 30\n\
             [domains.\"A.example\".users]\nalice = \"a-secret\"\n\
             [domains.\"b.example\"]\nusers_file = {:?}\nrealm = \"B\"\ninvite_auth = true\n",
            file.display().to_string()
        );
        let cfg: ServerConfig = toml::from_str(&text).unwrap();
        let d = cfg.load_domains().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].name.as_str(), d[0].realm.as_str()),
            ("a.example", "a.example")
        );
        assert_eq!(d[0].aliases, vec!["sip.a.example".to_string()]);
        assert_eq!(d[0].users, vec![("alice".into(), "a-secret".into())]);
        assert_eq!(d[0].registrar.min_expires, 30);
        assert_eq!(d[0].registrar.max_bindings_per_aor, 7);
        assert!(!d[0].invite_auth);
        assert_eq!((d[1].realm.as_str(), d[1].invite_auth), ("B", true));
        assert_eq!(d[1].users, vec![("alice".into(), "b-secret".into())]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_domains_are_refused() {
        let bad = |t: &str| toml::from_str::<ServerConfig>(t).unwrap().load_domains();
        assert!(
            bad("[domains.\"a.example\"]\naliases = [\"b.example\"]\n[domains.\"b.example\"]\n")
                .is_err()
        );
        assert!(bad("domain = \"a.example\"\n[domains.\"A.EXAMPLE\"]\n").is_err());
        assert!(bad("[domains.\"a.example\"]\nmin_expires_s = 10\nmax_expires_s = 5\n").is_err());
        assert!(bad("[domains.\"a.example\".users]\n\"x@y\" = \"p\"\n").is_err());
        let missing = bad("[domains.\"a.example\"]\nusers_file = \"/nonexistent/users.txt\"\n");
        assert!(
            matches!(missing, Err(ConfigError::Io { .. })),
            "{missing:?}"
        );
        assert!(
            toml::from_str::<ServerConfig>("[domains.\"a.example\"]\nrealmm = \"x\"\n").is_err()
        );
        assert!(bad("").unwrap().is_empty());
    }

    #[test]
    fn keys_keep_domains_apart() {
        assert_eq!(aor_key("alice", None), "alice");
        assert_eq!(aor_key("alice", Some("a.example")), "alice@a.example");
        assert_ne!(
            aor_key("alice", Some("a.example")),
            aor_key("alice", Some("b.example"))
        );
    }
}
