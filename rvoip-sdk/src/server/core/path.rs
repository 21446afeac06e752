//! Path between nodes sharing a store (RFC 3327, RFC 5626 flow tokens; see
//! [`crate::server::path`]): the Path vector a REGISTER stores, the targets of bindings that
//! carry one, and the relay of a request whose top Route is this node's flow URI.

use std::net::SocketAddr;
use std::time::Instant;

use super::users::binding_target;
use super::*;
use crate::server::location::Binding;
use crate::server::path::{self, Flow, OwnRoute};

impl ServerCore {
    /// The Path vector to store with the bindings of `req` (RFC 3327 §5.3), top first: this
    /// node's flow URI when `record_path` is on and the flow (`source` over `transport`) can
    /// only be reached from here (a connection, or a NAT), then the Path headers the REGISTER
    /// arrived with (edge proxies).
    pub(super) fn register_path(
        &self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Vec<ByteString> {
        let mut out = Vec::new();
        if self.record_path {
            let kind = match transport {
                Transport::Udp => Transport::Udp,
                _ => Transport::Tcp,
            };
            let nat = route::sender_behind_nat(req, source, kind);
            if path::needs_path(transport, nat) {
                let flow = Flow {
                    transport,
                    source,
                    nat,
                };
                if let Some(own) = path::own_path(&self.local, &flow, &self.nonce_secret()) {
                    out.push(own);
                }
            }
        }
        out.extend(req.headers.get_all(&HeaderName::Path).cloned());
        out
    }

    /// RFC 3327 §5.3: a 200 to a REGISTER that arrived with Path headers and `Supported: path`
    /// echoes them (the Path the edge proxies built; never this node's own flow URI).
    pub(super) fn echo_path(req: &Request, resp: &mut Response) {
        if resp.status != 200 || req.headers.get(&HeaderName::Path).is_none() {
            return;
        }
        let supported = req
            .headers
            .get_all(&HeaderName::Supported)
            .any(|v| v.trim().eq_ignore_ascii_case("path"));
        if !supported {
            return;
        }
        for v in req.headers.get_all(&HeaderName::Path) {
            resp.headers.push(HeaderName::Path, v.clone());
        }
        resp.headers.push(HeaderName::Supported, "path");
    }

    /// Where a request for binding `b` goes. Without a Path, or when its first Path entry is
    /// this node's own flow URI, down the binding's flow ([`binding_target`]; the rest of the
    /// Path, edge proxies, becomes the Route set). Otherwise to the first Path URI with the Path
    /// vector as Route set, the contact as Request-URI (RFC 3327 §5.5): through the node that
    /// holds the flow. `None` when the first Path URI cannot be resolved without DNS.
    pub(super) fn path_target(&self, b: &Binding) -> Option<Target> {
        let secret = self.nonce_secret();
        let mut path: &[ByteString] = &b.path;
        // Plain entries naming this node (its own edge Path) are skipped (§5.5 as a proxy would
        // pop its own Route).
        while let Some(first) = path.first() {
            match path::classify(first, &self.local, &secret) {
                OwnRoute::Plain => path = &path[1..],
                OwnRoute::Flow(_) => {
                    // Ours: the binding's flow is held here.
                    let mut t = binding_target(b);
                    t.route = path[1..].to_vec();
                    return Some(t);
                }
                OwnRoute::BadToken | OwnRoute::NotOurs => break,
            }
        }
        let Some(first) = path.first() else {
            return Some(binding_target(b));
        };
        let uri = path::path_uri(first)?;
        let (dest, transport) = route::resolve(&uri)?;
        Some(Target {
            uri: Some(b.contact.clone()),
            dest,
            transport,
            nat: false,
            alternates: Vec::new(),
            route: path.to_vec(),
            flow: false,
        })
    }

    /// A request whose top Route names this node with a flow token (RFC 5626 §5.3): the Route
    /// is removed and the request goes down the flow the token names, its Request-URI (the
    /// user's contact) kept. A token that does not verify gets 430 Flow Failed (RFC 5626
    /// §11.5), and nothing is relayed. Gives the request back (`Some`) when its top Route is not
    /// a flow URI of this node; `None` when it was handled here.
    pub(super) fn route_to_flow(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        mut req: Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Request> {
        let flow = match req.headers.get(&HeaderName::Route) {
            Some(top) => path::classify(top, &self.local, &self.nonce_secret()),
            None => OwnRoute::NotOurs,
        };
        let flow = match flow {
            OwnRoute::NotOurs | OwnRoute::Plain => return Some(req),
            OwnRoute::BadToken => {
                self.stats.rejected += 1;
                tracing::debug!(%source, "430: the Route's flow token does not verify");
                self.reply(now, tx, &req, 430, vec![]);
                return None;
            }
            OwnRoute::Flow(flow) => flow,
        };
        req.headers.remove_first(&HeaderName::Route);
        route::pop_own_routes(&self.local, &mut req);
        let Some(loop_hash) = self.loop_free_hash(&req) else {
            self.reply(now, tx, &req, 482, vec![]);
            return None;
        };
        if !self.admit_held(now, tx, &req, source) {
            return None;
        }
        tracing::debug!(%source, flow = %flow.source, transport = %flow.transport.as_str(), "Path: down the flow");
        let target = Target {
            uri: None,
            dest: flow.source,
            transport: flow.transport,
            nat: flow.nat,
            alternates: Vec::new(),
            route: Vec::new(),
            flow: true,
        };
        let (proxy, mut io) = self.io();
        proxy.fork(
            &mut io,
            now,
            tx,
            req,
            transport,
            source,
            vec![target],
            loop_hash,
        );
        None
    }
}
