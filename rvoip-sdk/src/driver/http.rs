//! The operator's HTTP listener (`http_listen`): `GET /metrics` (Prometheus text),
//! `GET /healthz` (liveness and store reachability) and `GET /status` (bindings and calls,
//! JSON). HTTP/1.1 only (hyper), on the server's runtime; every answer comes from a question
//! to the event task ([`QueryHandle`]), which never waits on this task.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::health::Health;
use super::metrics;
use super::query::{QueryError, QueryHandle};

/// How long a request waits for the event loop before `/healthz` says it is stuck (and
/// `/metrics`, `/status` answer 503).
pub const LOOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Bindings and calls listed by `/status` when no `limit` is asked for.
pub const STATUS_DEFAULT_LIMIT: usize = 1000;

/// Most bindings and calls `/status?limit=N` lists.
pub const STATUS_MAX_LIMIT: usize = 10_000;

/// Most HTTP connections served at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 32;

/// How long a client may take to send a request's header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub(crate) struct HttpContext {
    pub(crate) queries: QueryHandle,
    pub(crate) health: Health,
}

/// Serves HTTP on `listener` until the task is aborted. Errors of one connection are logged
/// at debug level and never stop the listener.
pub(crate) async fn serve(listener: TcpListener, cx: HttpContext) {
    let cx = Arc::new(cx);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let cx = cx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let cx = cx.clone();
                async move { Ok::<_, Infallible>(handle(&cx, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{value}\n"))
}

fn loop_error(e: QueryError) -> Response<Full<Bytes>> {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "status": "unavailable", "error": e.to_string() }),
    )
}

/// The `limit` of a `/status?limit=N` query: default 1000, at most 10,000; `None` when the
/// query is malformed.
pub(crate) fn status_limit(query: Option<&str>) -> Option<usize> {
    let Some(q) = query else {
        return Some(STATUS_DEFAULT_LIMIT);
    };
    let mut limit = STATUS_DEFAULT_LIMIT;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", v)) => limit = v.parse::<usize>().ok()?.min(STATUS_MAX_LIMIT),
            _ => return None,
        }
    }
    Some(limit)
}

async fn handle(cx: &HttpContext, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/status");
    if !known {
        return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match path {
        "/metrics" => match cx.queries.stats(LOOP_TIMEOUT).await {
            Ok(stats) => match metrics::render(&stats) {
                Ok(text) => reply(StatusCode::OK, metrics::CONTENT_TYPE, text),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            },
            Err(e) => loop_error(e),
        },
        "/status" => {
            let Some(limit) = status_limit(req.uri().query()) else {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "query must be limit=N" }),
                );
            };
            match cx.queries.status(limit, LOOP_TIMEOUT).await {
                Ok(report) => match serde_json::to_value(&report) {
                    Ok(v) => json(StatusCode::OK, &v),
                    Err(e) => json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({ "error": e.to_string() }),
                    ),
                },
                Err(e) => loop_error(e),
            }
        }
        _ => healthz(cx).await,
    }
}

/// `/healthz`: 200 when the event loop answered within [`LOOP_TIMEOUT`] and every store is
/// reachable, else 503; the body says which part failed.
async fn healthz(cx: &HttpContext) -> Response<Full<Bytes>> {
    let ping = cx.queries.ping(LOOP_TIMEOUT).await;
    let stores = cx.health.report();
    let healthy = ping.is_ok() && stores.iter().all(|s| s.reachable);
    let event_loop = match ping {
        Ok(d) => serde_json::json!({ "alive": true, "answered_ms": d.as_secs_f64() * 1000.0 }),
        Err(e) => serde_json::json!({ "alive": false, "error": e.to_string() }),
    };
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "event_loop": event_loop,
        "stores": stores,
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::ServerConfig;

    /// One HTTP/1.0 request to `addr`: (status code, body).
    fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (code, body.to_string())
    }

    /// Through the real driver: /healthz is 200 while the location store is reachable and 503
    /// (naming the store and why) while it is not; /metrics and /status answer; other paths
    /// and methods are refused.
    #[test]
    fn healthz_follows_store_reachability() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = ServerConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            relay: crate::server::proxy::anchor::RelayMode::Off,
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerConfig::default()
        };
        let server = rt.block_on(super::super::BoundServer::bind(&cfg)).unwrap();
        let addr = server.http_addr().unwrap();
        let health = server.health();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let (code, body) = request(addr, "GET", "/healthz");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["event_loop"]["alive"], true);
        let location = health.store("location").unwrap();
        location.set_unreachable("connection refused");
        let (code, body) = request(addr, "GET", "/healthz");
        assert_eq!(code, 503, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unavailable");
        assert_eq!(v["stores"][0]["error"], "connection refused");
        location.set_reachable();
        assert_eq!(request(addr, "GET", "/healthz").0, 200);
        let (code, body) = request(addr, "GET", "/metrics");
        assert_eq!(code, 200);
        assert!(body.contains("# TYPE rvoip_sip_requests counter"), "{body}");
        assert_eq!(request(addr, "GET", "/status?limit=3").0, 200);
        assert_eq!(request(addr, "GET", "/status?limit=x").0, 400);
        assert_eq!(request(addr, "POST", "/metrics").0, 405);
        assert_eq!(request(addr, "GET", "/").0, 404);
        let _ = stop.send(());
        rt.shutdown_timeout(Duration::from_secs(1));
    }

    /// With two workers every question goes to both loops: /healthz, /metrics and /status
    /// answer, and a blocking stats() question (`Server::stats()`) gets the merged snapshot.
    #[test]
    fn two_workers_answer_every_question() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = ServerConfig {
            listen: vec!["udp:127.0.0.1:0".parse().unwrap()],
            relay: crate::server::proxy::anchor::RelayMode::Off,
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            workers: Some(2),
            presence: false,
            offline_messages: false,
            conference_prefix: String::new(),
            ..ServerConfig::default()
        };
        let server = rt.block_on(super::super::BoundServer::bind(&cfg)).unwrap();
        assert_eq!(server.worker_count(), 2);
        let addr = server.http_addr().unwrap();
        let queries = server.queries();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let (code, body) = request(addr, "GET", "/healthz");
        assert_eq!(code, 200, "{body}");
        let (code, body) = request(addr, "GET", "/metrics");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("rvoip_bindings 0"), "{body}");
        assert_eq!(request(addr, "GET", "/status").0, 200);
        let stats = queries.stats_blocking(LOOP_TIMEOUT).unwrap();
        assert_eq!((stats.bindings, stats.calls), (0, 0));
        let _ = stop.send(());
        rt.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn status_limit_defaults_caps_and_rejects() {
        assert_eq!(status_limit(None), Some(STATUS_DEFAULT_LIMIT));
        assert_eq!(status_limit(Some("")), Some(STATUS_DEFAULT_LIMIT));
        assert_eq!(status_limit(Some("limit=5")), Some(5));
        assert_eq!(status_limit(Some("limit=99999999")), Some(STATUS_MAX_LIMIT));
        assert_eq!(status_limit(Some("limit=-1")), None);
        assert_eq!(status_limit(Some("limit=x")), None);
        assert_eq!(status_limit(Some("foo=1")), None);
    }
}
