//! HTTP digest authentication (RFC 7616, RFC 8760) for SIP (RFC 3261 §22).
//!
//! Server side: [`Authenticator`] verifies `Authorization` / `Proxy-Authorization` values against a
//! [`UserDb`] of precomputed HA1 values and produces `WWW-Authenticate` / `Proxy-Authenticate`
//! challenges ([`Authenticator::challenges`]). Client side: [`digest_response`] and
//! [`authorization_value`] answer a challenge.
//!
//! Sans-IO: the current time (`now_secs`, seconds since the Unix epoch) is an input.
//!
//! Nonces are stateless: `hex16(timestamp) || hex32(SHA-256(secret || timestamp || realm)[..16])`,
//! where `secret` is 32 random bytes drawn once per [`Authenticator`]. The only state kept per nonce
//! is the highest nonce-count seen (replay protection, RFC 7616 §3.4), in a bounded table.

use std::collections::{HashMap, VecDeque};

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::sip::msg::{Auth, ByteString};

/// A digest algorithm (RFC 7616 §3.2, RFC 8760). `-sess` variants are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617, RFC 3261 default).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The wire name: `MD5` or `SHA-256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses a wire name (case-insensitive). Unknown or `-sess` algorithms give `None`.
    pub fn from_wire(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// `H(data)` as lower-case hex (RFC 7616 §3.4.1).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }

    /// `H(a:b:c:...)` as lower-case hex, without building the joined string.
    fn hash_parts(self, parts: &[&str]) -> String {
        fn feed<D: sha2::Digest>(mut d: D, parts: &[&str]) -> D {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            d
        }
        match self {
            Algorithm::Md5 => hex::encode(feed(Md5::new(), parts).finalize()),
            Algorithm::Sha256 => hex::encode(feed(Sha256::new(), parts).finalize()),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `HA1 = H(username:realm:password)` as lower-case hex (RFC 7616 §3.4.2, non-`-sess`).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_parts(&[username, realm, password])
}

/// Computes the digest `response` for `qop=auth` from a precomputed HA1 (RFC 7616 §3.4.1):
/// `KD(HA1, nonce:nc:cnonce:qop:HA2)` with `HA2 = H(method:digest-uri)`.
/// `nc` is the 8-hex-digit nonce-count as sent (e.g. `"00000001"`).
pub fn response_from_ha1(
    algorithm: Algorithm,
    ha1_hex: &str,
    method: &str,
    digest_uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha2 = algorithm.hash_parts(&[method, digest_uri]);
    algorithm.hash_parts(&[ha1_hex, nonce, nc, cnonce, "auth", &ha2])
}

/// Client side: the digest `response` a user agent sends for `qop=auth` (RFC 7616 §3.4.1,
/// RFC 3261 §22.4), computed from the password.
///
/// - `method`: the request method (`"REGISTER"`, `"INVITE"`…); for ACK/CANCEL use the INVITE's.
/// - `digest_uri`: the value sent in the `uri` auth-param, normally the Request-URI as a string.
/// - `nonce`: from the challenge; `nc`: the nonce-count (1 for the first use of a nonce, formatted
///   as 8 hex digits on the wire); `cnonce`: a fresh random client nonce.
///
/// Returns lower-case hex. Use [`authorization_value`] to build a whole `Authorization` value.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    digest_uri: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let ha1 = ha1(algorithm, username, realm, password);
    let nc = format!("{nc:08x}");
    response_from_ha1(algorithm, &ha1, method, digest_uri, nonce, &nc, cnonce)
}

/// Client side: answers one parsed challenge (`WWW-Authenticate` or `Proxy-Authenticate`) with a
/// complete `Authorization` / `Proxy-Authorization` value using `qop=auth`.
///
/// Returns `None` if the challenge is not `Digest`, has no realm or nonce, uses an unsupported
/// algorithm, or does not offer `qop=auth` (RFC 2069-style challenges are not answered).
/// When a server offers several challenges (RFC 8760 §2.4), pick the first one this accepts.
pub fn authorization_value(
    challenge: &Auth,
    username: &str,
    password: &str,
    method: &str,
    digest_uri: &str,
    nc: u32,
    cnonce: &str,
) -> Option<String> {
    if !challenge.scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let realm = challenge.get("realm")?;
    let nonce = challenge.get("nonce")?;
    let algorithm = match challenge.get("algorithm") {
        Some(a) => Algorithm::from_wire(a)?,
        None => Algorithm::Md5,
    };
    let qop_ok = challenge
        .get("qop")
        .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    if !qop_ok {
        return None;
    }
    let response = digest_response(
        algorithm, username, realm, password, method, digest_uri, nonce, nc, cnonce,
    );
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", \
         algorithm={}, cnonce=\"{}\", qop=auth, nc={:08x}",
        quote_escape(username),
        quote_escape(realm),
        quote_escape(nonce),
        quote_escape(digest_uri),
        response,
        algorithm,
        quote_escape(cnonce),
        nc
    );
    if let Some(opaque) = challenge.get("opaque") {
        v.push_str(&format!(", opaque=\"{}\"", quote_escape(opaque)));
    }
    Some(v)
}

/// Client side: answers a challenge that offers no `qop` (RFC 2617 §3.2.2.1, the RFC 2069
/// compatible form many SIP servers still send): `response = KD(HA1, nonce:HA2)`, no cnonce or
/// nonce-count. Returns `None` if the challenge is not `Digest`, lacks realm or nonce, uses an
/// unsupported algorithm, or does offer a `qop` (answer those with [`authorization_value`]).
pub fn authorization_value_without_qop(
    challenge: &Auth,
    username: &str,
    password: &str,
    method: &str,
    digest_uri: &str,
) -> Option<String> {
    if !challenge.scheme.eq_ignore_ascii_case("Digest") || challenge.get("qop").is_some() {
        return None;
    }
    let realm = challenge.get("realm")?;
    let nonce = challenge.get("nonce")?;
    let algorithm = match challenge.get("algorithm") {
        Some(a) => Algorithm::from_wire(a)?,
        None => Algorithm::Md5,
    };
    let ha1 = ha1(algorithm, username, realm, password);
    let ha2 = algorithm.hash_parts(&[method, digest_uri]);
    let response = algorithm.hash_parts(&[&ha1, nonce, &ha2]);
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", \
         algorithm={}",
        quote_escape(username),
        quote_escape(realm),
        quote_escape(nonce),
        quote_escape(digest_uri),
        response,
        algorithm,
    );
    if let Some(opaque) = challenge.get("opaque") {
        v.push_str(&format!(", opaque=\"{}\"", quote_escape(opaque)));
    }
    Some(v)
}

/// Escapes `"` and `\` for a quoted-string.
fn quote_escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['"', '\\']) {
        let mut out = String::with_capacity(s.len() + 2);
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.into()
    } else {
        s.into()
    }
}

/// A fixed-size key for the nonce-count table: truncated SHA-256 of (nonce, username, cnonce),
/// so memory per entry is bounded whatever the client sends.
type NcKey = [u8; 16];

fn nc_key(nonce: &str, user: &str, cnonce: &str) -> NcKey {
    let mut h = Sha256::new();
    for part in [nonce, user, cnonce] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Constant-time equality of two byte strings (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Errors from loading credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A line of a `user:password` file is malformed (1-based line number).
    #[error("line {line}: {what}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The same user appears twice.
    #[error("line {line}: duplicate user {user:?}")]
    Duplicate {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The user name.
        user: String,
    },
}

/// One user's precomputed secrets for one realm: HA1 for each algorithm, lower-case hex.
/// The password itself is not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `MD5(user:realm:password)`, hex.
    pub ha1_md5: String,
    /// `SHA-256(user:realm:password)`, hex.
    pub ha1_sha256: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Precomputes both HA1 values.
    pub fn new(username: &str, realm: &str, password: &str) -> Credentials {
        Credentials {
            ha1_md5: ha1(Algorithm::Md5, username, realm, password),
            ha1_sha256: ha1(Algorithm::Sha256, username, realm, password),
        }
    }

    /// The HA1 for `algorithm`.
    pub fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// User name -> [`Credentials`] for one realm. User names are case-sensitive.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    realm: String,
    users: HashMap<String, Credentials>,
}

impl UserDb {
    /// An empty database for `realm`.
    pub fn new(realm: &str) -> UserDb {
        UserDb {
            realm: realm.to_owned(),
            users: HashMap::new(),
        }
    }

    /// Loads a `user:password` text file: one user per line, split at the first `:` (the password
    /// may contain `:`); surrounding whitespace is trimmed; blank lines and lines starting with `#`
    /// are ignored. An empty user or password, a missing `:` or a duplicate user is an error
    /// that names the line.
    pub fn from_file_text(text: &str, realm: &str) -> Result<UserDb, AuthError> {
        let mut db = UserDb::new(realm);
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(AuthError::BadLine {
                    line: line_no,
                    what: "expected user:password",
                });
            };
            let user = user.trim();
            if user.is_empty() {
                return Err(AuthError::BadLine {
                    line: line_no,
                    what: "empty user",
                });
            }
            if password.is_empty() {
                return Err(AuthError::BadLine {
                    line: line_no,
                    what: "empty password",
                });
            }
            if user.chars().any(|c| c.is_control() || c == '"') {
                return Err(AuthError::BadLine {
                    line: line_no,
                    what: "invalid character in user",
                });
            }
            if db.users.contains_key(user) {
                return Err(AuthError::Duplicate {
                    line: line_no,
                    user: user.to_owned(),
                });
            }
            db.add(user, password);
        }
        Ok(db)
    }

    /// Adds (or replaces) a user, precomputing its HA1 values.
    pub fn add(&mut self, username: &str, password: &str) {
        let c = Credentials::new(username, &self.realm, password);
        self.users.insert(username.to_owned(), c);
    }

    /// Adds (or replaces) a user from HA1 values computed elsewhere (lower-case hex).
    pub fn add_ha1(&mut self, username: &str, credentials: Credentials) {
        self.users.insert(username.to_owned(), credentials);
    }

    /// The credentials of `username`.
    pub fn get(&self, username: &str) -> Option<&Credentials> {
        self.users.get(username)
    }

    /// The realm the HA1 values were computed for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The result of checking a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Minted by us and within its lifetime.
    Valid,
    /// Minted by us but expired: challenge again with `stale=true` (if the digest was right).
    Stale,
    /// Malformed, forged, for another realm, or from the future.
    Invalid,
}

/// Length of a nonce: 16 hex digits of timestamp + 32 hex digits of MAC.
const NONCE_LEN: usize = 64;
/// Allowed clock skew for nonces from the "future" (several server processes, clock steps).
const NONCE_FUTURE_SKEW: u64 = 5;

/// The outcome of [`Authenticator::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The credentials are valid for `user`.
    Authorized {
        /// The authenticated user name.
        user: String,
    },
    /// Answer 401/407 with [`Authenticator::challenges`]`(now, stale)`.
    Challenge {
        /// Whether to set `stale=true`: the digest was right but the nonce expired (or its
        /// nonce-count was already used), so the client may retry without asking the user.
        stale: bool,
    },
    /// Credentials for our realm with a valid nonce that are wrong: an unknown user, a wrong
    /// password, or (unless lax) a username that is not the AOR's. Answer exactly as
    /// `Challenge { stale: false }`, so that the sender cannot tell these cases apart (no user
    /// enumeration), and count a failed attempt for `user` (brute-force defence).
    Failed {
        /// The digest username that was tried.
        user: String,
    },
}

/// Server-side digest verifier for one realm.
#[derive(Debug)]
pub struct Authenticator {
    realm: String,
    users: UserDb,
    /// When true, the digest username need not match the AOR user (To for REGISTER, From else).
    pub lax: bool,
    /// Nonce lifetime in seconds (default 300).
    pub nonce_lifetime: u64,
    /// Maximum number of nonces whose nonce-count is remembered (default 100 000). When full the
    /// oldest entry is dropped (its nonce could then be replayed with a higher-than-remembered nc
    /// until it expires; at the default size that takes > 300 new nonces per second).
    pub max_nonces: usize,
    secret: [u8; 32],
    /// Counter mixed into every nonce, so that no two challenges share a nonce (two clients that
    /// pick the same cnonce, as unseeded SIPp processes do, must not look like a replay).
    nonce_counter: std::sync::atomic::AtomicU64,
    /// Client-nonce key (see [`NcKey`]) -> highest nc accepted and the request it came with.
    nc_seen: HashMap<NcKey, (u32, Option<u64>)>,
    /// Insertion order of `nc_seen` with each nonce's timestamp, for expiry and the cap.
    nc_order: VecDeque<(NcKey, u64)>,
}

impl Authenticator {
    /// A verifier for `realm` over `users` with a fresh random secret. The realm of `users` should
    /// be `realm` (the HA1 values depend on it).
    pub fn new(realm: &str, users: UserDb, lax: bool) -> Authenticator {
        let secret: [u8; 32] = rand::random();
        Authenticator::with_secret(realm, users, lax, secret)
    }

    /// Like [`Authenticator::new`] with a given secret (tests, or several processes sharing nonces).
    pub fn with_secret(realm: &str, users: UserDb, lax: bool, secret: [u8; 32]) -> Authenticator {
        Authenticator {
            realm: realm.to_owned(),
            users,
            lax,
            nonce_lifetime: 300,
            max_nonces: 100_000,
            nonce_counter: std::sync::atomic::AtomicU64::new(u64::from(secret[0]) << 56),
            secret,
            nc_seen: HashMap::new(),
            nc_order: VecDeque::new(),
        }
    }

    /// Replaces the nonce secret: nonces made with the old one become invalid (the client is
    /// challenged again), nonces made with `secret` elsewhere (another node, an earlier run)
    /// become valid here.
    pub fn set_secret(&mut self, secret: [u8; 32]) {
        self.secret = secret;
    }

    /// The nonce secret (to give the same one to several workers or nodes).
    pub fn secret(&self) -> [u8; 32] {
        self.secret
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The user database.
    pub fn users(&self) -> &UserDb {
        &self.users
    }

    /// Replaces the user database (a reload), keeping the secret and the nonce-counts seen, so
    /// nonces already handed out stay valid. The realm of `users` should be this realm.
    pub fn set_users(&mut self, users: UserDb) {
        self.users = users;
    }

    /// Number of (nonce, user, cnonce) entries whose nonce-count is currently remembered.
    pub fn tracked_nonces(&self) -> usize {
        self.nc_seen.len()
    }

    fn nonce_mac(&self, ts: u64, counter: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(ts.to_be_bytes());
        h.update(counter.to_be_bytes());
        h.update(self.realm.as_bytes());
        let d = h.finalize();
        hex::encode(&d[..16])
    }

    /// Mints a fresh nonce for time `now_secs`: hex time stamp, hex counter (unique per
    /// challenge), and a truncated SHA-256 MAC over both with the server secret — 64 hex chars.
    pub fn make_nonce(&self, now_secs: u64) -> String {
        let counter = self
            .nonce_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{now_secs:016x}{counter:016x}{}",
            self.nonce_mac(now_secs, counter)
        )
    }

    /// Checks that `nonce` is ours and fresh at `now_secs`.
    pub fn verify_nonce(&self, now_secs: u64, nonce: &str) -> NonceStatus {
        if nonce.len() != NONCE_LEN || !nonce.is_ascii() {
            return NonceStatus::Invalid;
        }
        let (ts_hex, rest) = nonce.split_at(16);
        let (counter_hex, mac) = rest.split_at(16);
        let (Ok(ts), Ok(counter)) = (
            u64::from_str_radix(ts_hex, 16),
            u64::from_str_radix(counter_hex, 16),
        ) else {
            return NonceStatus::Invalid;
        };
        if !ct_eq(mac.as_bytes(), self.nonce_mac(ts, counter).as_bytes()) {
            return NonceStatus::Invalid;
        }
        if ts > now_secs.saturating_add(NONCE_FUTURE_SKEW) {
            return NonceStatus::Invalid;
        }
        if now_secs.saturating_sub(ts) > self.nonce_lifetime {
            return NonceStatus::Stale;
        }
        NonceStatus::Valid
    }

    /// The two challenge values for WWW-Authenticate / Proxy-Authenticate, SHA-256 first then MD5
    /// (RFC 8760 §2.4), sharing one fresh nonce:
    /// `Digest realm="r", nonce="...", algorithm=SHA-256, qop="auth"[, stale=true]`.
    pub fn challenges(&self, now_secs: u64, stale: bool) -> [String; 2] {
        let mut v = self
            .challenges_for(now_secs, stale, &[Algorithm::Sha256, Algorithm::Md5])
            .into_iter();
        [v.next().unwrap_or_default(), v.next().unwrap_or_default()]
    }

    /// The challenge values for `algorithms`, in the order given (RFC 8760 §2.4: the
    /// server's preference), sharing one fresh nonce; the same text as
    /// [`Authenticator::challenges`] gives for each algorithm. Empty for no algorithm.
    pub fn challenges_for(
        &self,
        now_secs: u64,
        stale: bool,
        algorithms: &[Algorithm],
    ) -> Vec<String> {
        if algorithms.is_empty() {
            return Vec::new();
        }
        let nonce = self.make_nonce(now_secs);
        let realm = quote_escape(&self.realm);
        let stale = if stale { ", stale=true" } else { "" };
        // Built by appending (this runs for every 401 and 407).
        algorithms
            .iter()
            .map(|alg| {
                let parts = [
                    "Digest realm=\"",
                    &realm,
                    "\", nonce=\"",
                    &nonce,
                    "\", algorithm=",
                    alg.as_str(),
                    ", qop=\"auth\"",
                    stale,
                ];
                let mut v = String::with_capacity(parts.iter().map(|p| p.len()).sum());
                parts.iter().for_each(|p| v.push_str(p));
                v
            })
            .collect()
    }

    /// Verifies the `Authorization` (or `Proxy-Authorization`) values of a request.
    ///
    /// - `method`: the request method token; `auth_values`: every value of the header;
    /// - `aor_user`: the user part of the To URI (REGISTER) or From URI (other requests); unless
    ///   [`Authenticator::lax`], the digest username must equal it.
    ///
    /// The first `Digest` value whose realm is ours is used; other schemes and realms are ignored
    /// (no usable value: a fresh challenge). `qop=auth`, `cnonce` and `nc` are required; the
    /// digest-uri is the `uri` auth-param (RFC 7616 §3.4.1). A missing or forged nonce gives
    /// `Challenge { stale: false }`; an unknown user, a wrong password and a username that does
    /// not match the AOR give [`AuthOutcome::Failed`] (to be answered the same way); the
    /// response is compared in constant time and an unknown user still costs one digest.
    /// A correct digest with an expired nonce, or a nonce-count not above the highest seen for that
    /// nonce (replay), gives `Challenge { stale: true }`. The nonce-count is recorded only on success.
    pub fn check<'a>(
        &mut self,
        now_secs: u64,
        method: &str,
        auth_values: impl Iterator<Item = &'a ByteString>,
        aor_user: &str,
    ) -> AuthOutcome {
        match self.pick_digest(auth_values) {
            Some(auth) => self.check_digest_request(now_secs, method, &auth, aor_user, None),
            None => AuthOutcome::Challenge { stale: false },
        }
    }

    /// [`Authenticator::check`] for one request identified by `request_id` (e.g. a hash of its
    /// top Via branch, Call-ID and CSeq). A retransmission of the same request — same nonce,
    /// cnonce and nc, same `request_id` — is authorized again instead of being taken for a nc
    /// replay, so a stateless registrar answers a retransmitted REGISTER with 200 again. A
    /// verbatim replay of a captured request can only repeat that same request.
    pub fn check_request<'a>(
        &mut self,
        now_secs: u64,
        method: &str,
        auth_values: impl Iterator<Item = &'a ByteString>,
        aor_user: &str,
        request_id: u64,
    ) -> AuthOutcome {
        match self.pick_digest(auth_values) {
            Some(auth) => {
                self.check_digest_request(now_secs, method, &auth, aor_user, Some(request_id))
            }
            None => AuthOutcome::Challenge { stale: false },
        }
    }

    /// The first parsable `Digest` credentials for our realm among `auth_values`.
    fn pick_digest<'a>(&self, auth_values: impl Iterator<Item = &'a ByteString>) -> Option<Auth> {
        auth_values
            .filter_map(|v| Auth::parse(v).ok())
            .find(|auth| {
                auth.scheme.eq_ignore_ascii_case("Digest")
                    && auth.get("realm") == Some(self.realm.as_str())
            })
    }

    /// [`Authenticator::check`] on one already parsed `Digest` value.
    pub fn check_digest(
        &mut self,
        now_secs: u64,
        method: &str,
        auth: &Auth,
        aor_user: &str,
    ) -> AuthOutcome {
        self.check_digest_request(now_secs, method, auth, aor_user, None)
    }

    fn check_digest_request(
        &mut self,
        now_secs: u64,
        method: &str,
        auth: &Auth,
        aor_user: &str,
        request_id: Option<u64>,
    ) -> AuthOutcome {
        let fresh = AuthOutcome::Challenge { stale: false };
        if !auth.scheme.eq_ignore_ascii_case("Digest")
            || auth.get("realm") != Some(self.realm.as_str())
        {
            return fresh;
        }
        let p = |n| auth.get(n);
        let (Some(username), Some(nonce), Some(uri), Some(response)) =
            (p("username"), p("nonce"), p("uri"), p("response"))
        else {
            return fresh;
        };
        let algorithm = match p("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::from_wire(a) {
                Some(a) => a,
                None => return fresh,
            },
        };
        if !p("qop").is_some_and(|q| q.eq_ignore_ascii_case("auth")) {
            return fresh;
        }
        let Some(cnonce) = p("cnonce").filter(|c| !c.is_empty()) else {
            return fresh;
        };
        let Some(nc_str) = p("nc") else { return fresh };
        let nc = match u32::from_str_radix(nc_str, 16) {
            Ok(n) if nc_str.len() == 8 && n > 0 => n,
            _ => return fresh,
        };
        let nonce_status = self.verify_nonce(now_secs, nonce);
        if nonce_status == NonceStatus::Invalid {
            return fresh;
        }

        // Same work whether or not the user exists (no enumeration by outcome or timing).
        const DUMMY_HA1: &str = "0000000000000000000000000000000000000000000000000000000000000000";
        let creds = self.users.get(username);
        let ha1_hex = match creds {
            Some(c) => c.ha1(algorithm),
            None => {
                &DUMMY_HA1[..match algorithm {
                    Algorithm::Md5 => 32,
                    Algorithm::Sha256 => 64,
                }]
            }
        };
        let expected = response_from_ha1(algorithm, ha1_hex, method, uri, nonce, nc_str, cnonce);
        let given = response.to_ascii_lowercase();
        let digest_ok = ct_eq(expected.as_bytes(), given.as_bytes()) & creds.is_some();
        if !digest_ok || (!self.lax && username != aor_user) {
            return AuthOutcome::Failed {
                user: username.to_owned(),
            };
        }
        if nonce_status == NonceStatus::Stale {
            return AuthOutcome::Challenge { stale: true };
        }
        if !self.accept_nc(now_secs, nonce, username, cnonce, nc, request_id) {
            return AuthOutcome::Challenge { stale: true };
        }
        AuthOutcome::Authorized {
            user: username.to_owned(),
        }
    }

    /// Records `nc` for `nonce` if it is above the highest seen; false for a replay.
    ///
    /// The counter is kept per (nonce, username, cnonce): nonces minted in the same second are
    /// equal, so several clients may share one, each counting from 1. A replay carries the same
    /// triple (changing any of it breaks the digest), so it is still caught.
    fn accept_nc(
        &mut self,
        now_secs: u64,
        nonce: &str,
        user: &str,
        cnonce: &str,
        nc: u32,
        request_id: Option<u64>,
    ) -> bool {
        // Forget nonces that have expired (insertion order is close to timestamp order).
        while let Some((n, ts)) = self.nc_order.front() {
            if now_secs.saturating_sub(*ts) > self.nonce_lifetime {
                self.nc_seen.remove(n);
                self.nc_order.pop_front();
            } else {
                break;
            }
        }
        let key = nc_key(nonce, user, cnonce);
        if let Some((seen, seen_req)) = self.nc_seen.get_mut(&key) {
            if nc == *seen && request_id.is_some() && request_id == *seen_req {
                return true; // a retransmission of the request already accepted
            }
            if nc <= *seen {
                return false;
            }
            *seen = nc;
            *seen_req = request_id;
            return true;
        }
        while self.nc_seen.len() >= self.max_nonces.max(1) {
            match self.nc_order.pop_front() {
                Some((n, _)) => {
                    self.nc_seen.remove(&n);
                }
                None => break,
            }
        }
        let ts = nonce
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(now_secs);
        self.nc_seen.insert(key, (nc, request_id));
        self.nc_order.push_back((key, ts));
        true
    }
}

#[cfg(test)]
mod tests;
