//! Two small HTTP applications served by hyper, for the comparison tests and the demo:
//! `production` and a `staging` build of the same application with planted differences,
//! plus a token service for GoReplay's token-mapping pattern.
//!
//! Every response carries noise that differs on every call (Date from hyper, ETag,
//! X-Request-Id, a Set-Cookie value, a `timestamp` field in JSON bodies); the planted
//! differences are:
//!
//! | endpoint | staging answers |
//! | --- | --- |
//! | `GET /users/{n}` | the same (a match) |
//! | `GET /orders/{n}` | `"status": "shipped"` instead of `"pending"` (a JSON body difference at `$.status`) |
//! | `GET /fail` | 500 instead of 200 |
//! | `GET /extra` | an extra header `X-Debug: 1` |
//! | `GET /gzip` | the same body gzip-encoded (a match: bodies are compared decoded) |
//! | `GET /slow` | the same, 150 ms later (a match, with a higher latency) |
//! | `GET /static` | the same text (a match) |
//!
//! The token service: `POST /login` answers `{"token": "<side>-<n>"}`; `GET /me` answers
//! 200 if the `Authorization: Bearer` token is one this side issued, 401 otherwise.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A request mix that meets every planted difference: 22 paths, in order.
pub fn planted_requests() -> Vec<String> {
    let mut paths = Vec::new();
    paths.extend((1..=6).map(|i| format!("/users/{i}")));
    paths.extend((1..=4).map(|i| format!("/orders/{}", 1000 + i)));
    paths.extend(["/fail"; 3].map(String::from));
    paths.extend(["/extra"; 2].map(String::from));
    paths.extend(["/gzip"; 3].map(String::from));
    paths.extend(["/slow"; 2].map(String::from));
    paths.extend(["/static/page.html"; 2].map(String::from));
    paths
}

/// Which build of the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Production,
    Staging,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Production => "prod",
            Side::Staging => "stage",
        }
    }
}

/// A running application; stops with the process (its thread serves until then).
pub struct App {
    pub addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    served: AtomicU64,
    counter: AtomicU64,
    tokens: Mutex<HashSet<String>>,
    /// `Authorization` values of the `/me` requests, in order.
    me_auth: Mutex<Vec<String>>,
}

impl App {
    /// Serves `side` on an ephemeral loopback port.
    pub fn start(side: Side) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let s = state.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = ready_tx.send(());
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let s = s.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let s = s.clone();
                            async move { Ok::<_, Infallible>(answer(side, &s, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
        });
        ready_rx.recv().expect("the application started");
        App { addr, state }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` requests were answered; returns how many were.
    pub fn wait_served(&self, n: u64, limit: Duration) -> u64 {
        let deadline = std::time::Instant::now() + limit;
        while self.served() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.served()
    }

    /// The `Authorization` headers `/me` received, in order.
    pub fn me_authorizations(&self) -> Vec<String> {
        self.state.me_auth.lock().expect("lock").clone()
    }
}

async fn answer(
    side: Side,
    s: &State,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let n = s.counter.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = req.into_body().collect().await;
    let noise = |b: hyper::http::response::Builder| {
        b.header("x-request-id", format!("{}-{n}", side.name()))
            .header("etag", format!("\"{}{n}\"", side.name()))
            .header("set-cookie", format!("session={}{n}; Path=/", side.name()))
            .header("server", format!("app-{}", side.name()))
    };
    let json = |v: serde_json::Value| {
        let mut v = v;
        v["timestamp"] = format!("{}-{n}", side.name()).into();
        v.to_string()
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = noise(Response::builder().status(200));
    let resp = match (method.as_str(), segs.as_slice()) {
        ("GET", ["users", id]) => ok.header("content-type", "application/json").body(json(
            serde_json::json!({"id": id, "name": format!("user {id}")}),
        )),
        ("GET", ["orders", id]) => {
            let status = if side == Side::Staging {
                "shipped"
            } else {
                "pending"
            };
            ok.header("content-type", "application/json").body(json(
                serde_json::json!({"id": id, "status": status, "items": [1, 2]}),
            ))
        }
        ("GET", ["fail"]) if side == Side::Staging => noise(Response::builder().status(500))
            .header("content-type", "text/plain")
            .body("internal error\n".to_string()),
        ("GET", ["fail"]) => ok
            .header("content-type", "text/plain")
            .body("fine\n".to_string()),
        ("GET", ["extra"]) => {
            let b = if side == Side::Staging {
                ok.header("x-debug", "1")
            } else {
                ok
            };
            b.header("content-type", "text/plain")
                .body("extra\n".to_string())
        }
        ("GET", ["gzip"]) => {
            let text = "the same words, compressed or not\n".repeat(20);
            let b = ok.header("content-type", "text/plain");
            if side == Side::Staging {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(text.as_bytes()).expect("gzip");
                let body = enc.finish().expect("gzip");
                let resp = b
                    .header("content-encoding", "gzip")
                    .body(Full::new(Bytes::from(body)));
                s.served.fetch_add(1, Ordering::SeqCst);
                return resp.expect("response");
            }
            b.body(text)
        }
        ("GET", ["slow"]) => {
            if side == Side::Staging {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            ok.header("content-type", "text/plain")
                .body("slow\n".to_string())
        }
        ("POST", ["login"]) => {
            let token = format!("{}-{n}", side.name());
            s.tokens.lock().expect("lock").insert(token.clone());
            ok.header("content-type", "application/json")
                .body(serde_json::json!({"token": token}).to_string())
        }
        ("GET", ["me"]) => {
            let auth = auth.unwrap_or_default();
            s.me_auth.lock().expect("lock").push(auth.clone());
            let token = auth.strip_prefix("Bearer ").unwrap_or("");
            let known = s.tokens.lock().expect("lock").contains(token);
            noise(Response::builder().status(if known { 200 } else { 401 }))
                .header("content-type", "text/plain")
                .body(if known { "you\n" } else { "who?\n" }.to_string())
        }
        _ => ok
            .header("content-type", "text/plain")
            .body("static page\n".to_string()),
    };
    s.served.fetch_add(1, Ordering::SeqCst);
    resp.map(|r| r.map(|b| Full::new(Bytes::from(b))))
        .expect("response")
}
