//! The shared store: bindings in Redis, so that several rvoip-server nodes serve one domain
//! (Kamailio's usrloc in DB-only mode with a Redis backend, plus DMQ-like replication).
//!
//! - Each binding is a key `rvoip:b:<aor NUL contact>` holding its record
//!   ([`super::record`]) and expiring with it (`SET … EXAT expires_at`), so Redis itself drops
//!   bindings nobody refreshed, even when every node is down.
//! - Every batch of changes is also published on the channel `rvoip:changes` (one message,
//!   one change per line, tagged with the writing node's id); the other nodes apply them to
//!   their replica of the location ([`crate::server::location::Location::apply_remote`]), so a
//!   call arriving at node B finds a user registered at node A without a Redis round trip.
//! - The digest nonce secret is `rvoip:nonce_secret` (set once with NX), so nonces made by one
//!   node are valid on every node.
//! - A subscriber thread keeps the subscription; after it (re)connects it loads every binding
//!   again, so a node catches up with what it missed during an outage.

use std::time::Duration;

use redis::{Client, Connection};

use super::{BindingStore, StoreError, record};
use crate::server::location::{Binding, BindingChange, ChangeKind};

/// The key prefix of bindings.
const PREFIX: &str = "rvoip:b:";
/// The channel changes are published on.
const CHANNEL: &str = "rvoip:changes";
/// The key of the shared nonce secret.
const SECRET_KEY: &str = "rvoip:nonce_secret";
/// Connect, read and write timeout: an unreachable Redis is noticed within this time.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

fn err(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "redis",
        what,
        reason: e.to_string(),
    }
}

fn connect(client: &Client) -> Result<Connection, StoreError> {
    let con = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| err("connect", e))?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| err("connect", e))?;
    con.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| err("connect", e))?;
    Ok(con)
}

/// Bindings in Redis, shared by every node that uses the same server.
pub struct RedisStore {
    client: Client,
    con: Option<Connection>,
    /// This node's id in published changes (random per process).
    node: u64,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`). Errors: a malformed URL or an unreachable
    /// server (within 1 s).
    pub fn open(url: &str, node: u64) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(|e| err("open", e))?;
        let con = connect(&client)?;
        Ok(RedisStore {
            client,
            con: Some(con),
            node,
        })
    }

    fn con(&mut self) -> Result<&mut Connection, StoreError> {
        if self.con.is_none() {
            self.con = Some(connect(&self.client)?);
        }
        self.con
            .as_mut()
            .ok_or_else(|| err("connect", "no connection"))
    }

    /// Runs `f` on the connection; an error drops the connection (made again next time).
    fn with_con<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let con = self.con()?;
        match f(con) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.con = None;
                Err(err(what, e))
            }
        }
    }

    /// Starts the subscriber thread: every change another node publishes, and after each
    /// (re)connection every stored binding (as `Added`), is sent on `out` in batches. The thread
    /// ends when `out` is closed. Errors: the thread cannot be spawned.
    pub fn subscribe(
        &self,
        out: tokio::sync::mpsc::UnboundedSender<Vec<BindingChange>>,
    ) -> Result<(), StoreError> {
        let client = self.client.clone();
        let node = self.node;
        std::thread::Builder::new()
            .name("rvoip-store-sub".into())
            .spawn(move || subscriber(client, node, out))
            .map(|_| ())
            .map_err(|e| err("subscribe", e))
    }
}

/// One published change: `{"o":node,"k":"a|r|d|e","a":aor,"r":record}`.
fn publication(node: u64, c: &BindingChange) -> Vec<u8> {
    let kind = match c.kind {
        ChangeKind::Added => "a",
        ChangeKind::Refreshed => "r",
        ChangeKind::Removed => "d",
        ChangeKind::Expired => "e",
    };
    let aor = serde_json::to_string(&*c.aor).unwrap_or_default();
    let rec = String::from_utf8(record::encode(&c.binding)).unwrap_or_default();
    format!("{{\"o\":{node},\"k\":\"{kind}\",\"a\":{aor},\"r\":{rec}}}").into_bytes()
}

/// Decodes a publication: `None` when it is ours or unreadable.
/// The changes of one publication (one change per line), without parsing a batch this node
/// published itself (every line of a batch has the same origin, so the first line's prefix
/// `{"o":NODE,` tells).
fn parse_batch(node: u64, bytes: &[u8]) -> Vec<BindingChange> {
    if bytes.starts_with(format!("{{\"o\":{node},").as_bytes()) {
        return Vec::new();
    }
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| parse_publication(node, line))
        .collect()
}

fn parse_publication(node: u64, bytes: &[u8]) -> Option<BindingChange> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("o")?.as_u64()? == node {
        return None;
    }
    let kind = match v.get("k")?.as_str()? {
        "a" => ChangeKind::Added,
        "r" => ChangeKind::Refreshed,
        "d" => ChangeKind::Removed,
        "e" => ChangeKind::Expired,
        _ => return None,
    };
    let aor = v.get("a")?.as_str()?;
    let binding = record::decode(v.get("r")?.to_string().as_bytes()).ok()?;
    Some(BindingChange {
        kind,
        aor: aor.into(),
        binding,
    })
}

fn load_all(con: &mut Connection, now: u64) -> redis::RedisResult<Vec<(String, Binding)>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}*"))
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        if !keys.is_empty() {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(con)?;
            for (k, v) in keys.iter().zip(values) {
                let Some(v) = v else { continue };
                let key = String::from_utf8_lossy(k);
                let Some(aor) = key.strip_prefix(PREFIX).and_then(record::aor_of_key) else {
                    continue;
                };
                match record::decode(&v) {
                    Ok(b) if b.is_live(now) => out.push((aor.to_string(), b)),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(key = %key.escape_debug(), error = %e, "unreadable binding record skipped")
                    }
                }
            }
        }
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

fn unix_now() -> u64 {
    crate::server::core::ServerCore::system_unix_secs()
}

fn subscriber(
    client: Client,
    node: u64,
    out: tokio::sync::mpsc::UnboundedSender<Vec<BindingChange>>,
) {
    let mut down_logged = false;
    while !out.is_closed() {
        let run = || -> Result<(), StoreError> {
            let mut con = connect(&client)?;
            let mut pubsub = con.as_pubsub();
            pubsub.subscribe(CHANNEL).map_err(|e| err("subscribe", e))?;
            pubsub
                .set_read_timeout(Some(IO_TIMEOUT))
                .map_err(|e| err("subscribe", e))?;
            // (Dropping `pubsub` would unsubscribe: it lives through the loop below.)
            // Catch up with everything stored (what other nodes wrote while we were away).
            let mut con2 = connect(&client)?;
            let all = load_all(&mut con2, unix_now()).map_err(|e| err("load", e))?;
            drop(con2);
            let n = all.len();
            let batch: Vec<BindingChange> = all
                .into_iter()
                .map(|(aor, binding)| BindingChange {
                    kind: ChangeKind::Added,
                    aor: aor.into(),
                    binding,
                })
                .collect();
            if out.send(batch).is_err() {
                return Ok(());
            }
            tracing::info!(bindings = n, "redis: subscribed to binding changes");
            loop {
                match pubsub.get_message() {
                    Ok(msg) => {
                        let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                        let batch = parse_batch(node, &payload);
                        if !batch.is_empty() && out.send(batch).is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        if out.is_closed() {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(err("subscribe", e)),
                }
            }
        };
        match run() {
            Ok(()) => return,
            Err(e) => {
                if !down_logged {
                    tracing::warn!(error = %e, "redis subscription lost: retrying");
                    down_logged = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if down_logged && connect(&client).is_ok() {
            down_logged = false;
        }
    }
}

impl BindingStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn load(&mut self, now: u64) -> Result<Vec<(String, Binding)>, StoreError> {
        self.with_con("load", |con| load_all(con, now))
    }

    fn apply(&mut self, changes: &[BindingChange]) -> Result<(), StoreError> {
        let node = self.node;
        let now = unix_now();
        self.with_con("write", |con| {
            let mut p = redis::pipe();
            p.atomic();
            for c in changes {
                let key = format!("{PREFIX}{}", record::key(&c.aor, &c.binding.contact));
                match c.kind {
                    ChangeKind::Added | ChangeKind::Refreshed if c.binding.expires_at > now => {
                        p.cmd("SET")
                            .arg(key)
                            .arg(record::encode(&c.binding))
                            .arg("EXAT")
                            .arg(c.binding.expires_at)
                            .ignore();
                    }
                    _ => {
                        p.cmd("DEL").arg(key).ignore();
                    }
                }
            }
            // One publication per batch: the changes, one per line.
            let mut all = Vec::with_capacity(changes.len() * 200);
            for c in changes {
                if !all.is_empty() {
                    all.push(b'\n');
                }
                all.extend_from_slice(&publication(node, c));
            }
            p.cmd("PUBLISH").arg(CHANNEL).arg(all).ignore();
            p.query::<()>(con)
        })
    }

    fn nonce_secret(&mut self) -> Result<[u8; 32], StoreError> {
        let fresh: [u8; 32] = rand::random();
        let stored: Vec<u8> = self.with_con("nonce secret", |con| {
            redis::cmd("SET")
                .arg(SECRET_KEY)
                .arg(&fresh[..])
                .arg("NX")
                .query::<()>(con)?;
            redis::cmd("GET").arg(SECRET_KEY).query(con)
        })?;
        stored
            .try_into()
            .map_err(|_| err("nonce secret", "stored secret is not 32 bytes"))
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.with_con("ping", |con| redis::cmd("PING").query::<String>(con))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::location::Transport;
    use crate::sip::msg::NameAddr;

    #[test]
    fn publications_round_trip_and_our_own_are_ignored() {
        let v: crate::sip::msg::ByteString = "<sip:a@192.0.2.1:5060>".into();
        let c = BindingChange {
            kind: ChangeKind::Refreshed,
            aor: "al\"ice".into(),
            binding: Binding {
                contact: NameAddr::parse(&v).unwrap().uri,
                contact_value: v,
                q: 1000,
                expires_at: 1_700_000_000,
                call_id: "c".into(),
                cseq: 2,
                source: "192.0.2.1:5060".parse().unwrap(),
                transport: Transport::Udp,
                behind_nat: false,
                path: Vec::new(),
            },
        };
        let p = publication(7, &c);
        assert_eq!(parse_publication(8, &p), Some(c.clone()));
        assert_eq!(parse_publication(7, &p), None, "our own change");
        assert_eq!(parse_publication(8, b"{\"o\":1}"), None);
        assert_eq!(parse_publication(8, b"\xff"), None);
        let mut two = publication(7, &c);
        two.push(b'\n');
        two.extend_from_slice(&publication(7, &c));
        assert_eq!(parse_batch(8, &two), vec![c.clone(), c]);
        assert!(parse_batch(7, &two).is_empty(), "our own batch");
    }
}
