//! `--input-tcp`: a replay server for GoReplay's TCP protocol, as a [`Source`] of whole
//! messages. It listens, accepts any number of listeners (gor's or GoReplay's
//! `--output-tcp`), splits each connection's bytes into messages with
//! [`Decoder`](crate::goreplay_tcp::frame::Decoder), and hands them to the pipeline: the
//! same middleware, filters, mirroring and outputs as captured traffic.
//!
//! ```text
//! accept ─> one task per connection: [TLS] ─> Decoder ─┐ bounded channel: a full
//! accept ─> one task per connection: [TLS] ─> Decoder ─┴─> pipeline stops the reading
//!                                               │         (TCP pushes back to the sender,
//!                                               │          whose queue drops and counts)
//!                                               └─ not a message: skipped, counted
//! ```
//!
//! Messages carry wall-clock times (the listeners'); a message whose id gor wrote keeps
//! its client connection, so mirroring keeps that connection's order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::clock::Clock;
use crate::driver::{Level, Ready, Source, Waits};
use crate::goreplay_tcp::{frame::Decoder, settings::TcpInputConfig, stats::TcpInputStats, tls};
use crate::gorfile::{Record, RecordType};
use crate::http::Kind;
use crate::metrics::report::Report;
use crate::pipeline::Pipeline;

/// Messages read and not yet delivered, from every connection together.
const CHANNEL: usize = 1024;

/// Bytes read from a connection at once.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    open_connections: AtomicU64,
    bytes: AtomicU64,
    messages: AtomicU64,
    malformed: AtomicU64,
    connection_errors: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// See the module documentation.
pub struct TcpInput {
    rx: mpsc::Receiver<Record>,
    next: Option<Record>,
    counters: Arc<Counters>,
    /// Counted as messages are delivered.
    delivered: TcpInputStats,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    local: std::net::SocketAddr,
}

impl TcpInput {
    /// Loads the certificate (for TLS), binds the address (an address in use fails the
    /// start) and starts accepting.
    pub async fn start(cfg: &TcpInputConfig) -> Result<TcpInput> {
        let acceptor = match &cfg.tls {
            Some((cert, key)) => Some(TlsAcceptor::from(
                tls::server_config(cert, key).context("GOR_INPUT_TCP_SECURE")?,
            )),
            None => None,
        };
        let listener = TcpListener::bind(cfg.listen.as_str())
            .await
            .with_context(|| format!("listening on {} (GOR_INPUT_TCP)", cfg.listen))?;
        let local = listener.local_addr()?;
        tracing::info!(address = %local, secure = acceptor.is_some(), "TCP input (GoReplay's protocol) listening on {local}");
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            acceptor,
            tx,
            stop_rx,
            counters.clone(),
        ));
        Ok(TcpInput {
            rx,
            next: None,
            counters,
            delivered: TcpInputStats::default(),
            stop,
            accept,
            local,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }

    pub fn stats(&self) -> TcpInputStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        TcpInputStats {
            connections: g(&c.connections),
            open_connections: g(&c.open_connections),
            bytes: g(&c.bytes),
            messages: g(&c.messages),
            malformed: g(&c.malformed),
            connection_errors: g(&c.connection_errors),
            ..self.delivered.clone()
        }
    }

    fn deliver_one(&mut self, rec: Record, pipeline: &mut Pipeline) {
        if rec.kind == RecordType::ReplayedResponse {
            self.delivered.staging_responses += 1;
            return;
        }
        match rec.to_message() {
            Ok(msg) => {
                match msg.kind {
                    Kind::Request { .. } => self.delivered.requests += 1,
                    Kind::Response { .. } => self.delivered.responses += 1,
                }
                pipeline.message(msg);
            }
            Err(e) => {
                self.delivered.invalid += 1;
                tracing::debug!(id = %rec.id, "TCP input: skipping a message that is not valid HTTP: {e}");
            }
        }
    }
}

impl Drop for TcpInput {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
    }
}

impl Source for TcpInput {
    fn name(&self) -> &'static str {
        "TCP input"
    }

    fn level(&self) -> Level {
        Level::Messages
    }

    /// The listeners' messages carry wall-clock times.
    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    /// Staging's pace: what waits, waits in the senders' queues (TCP pushes back).
    fn waits(&self) -> Waits {
        Waits::ForMiddlewareAndStaging
    }

    async fn ready(&mut self) -> Result<Ready> {
        if self.next.is_none() {
            self.next = self.rx.recv().await;
        }
        Ok(match self.next {
            Some(_) => Ready::Input,
            None => Ready::Done,
        })
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        if let Some(rec) = self.next.take() {
            self.deliver_one(rec, pipeline);
        }
    }

    /// Stops accepting and reading; what was read already is delivered.
    fn stop(&mut self, pipeline: &mut Pipeline) {
        let _ = self.stop.send(true);
        self.rx.close();
        if let Some(rec) = self.next.take() {
            self.deliver_one(rec, pipeline);
        }
        while let Ok(rec) = self.rx.try_recv() {
            self.deliver_one(rec, pipeline);
        }
    }

    fn report(&self, report: &mut Report) {
        report.tcp_input = Some(self.stats());
    }
}

/// Senders connected at once at most.
const MAX_SENDERS: usize = 64;

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<Record>,
    mut stop: watch::Receiver<bool>,
    c: Arc<Counters>,
) {
    // At most MAX_SENDERS connections at once (each may buffer up to a message): the
    // next sender waits in the listen backlog until one ends.
    let senders = Arc::new(tokio::sync::Semaphore::new(MAX_SENDERS));
    loop {
        let permit = tokio::select! {
            p = senders.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                inc(&c.connections);
                tracing::debug!(%peer, "TCP input: connection");
                let conn = connection(
                    tcp,
                    peer,
                    acceptor.clone(),
                    tx.clone(),
                    stop.clone(),
                    c.clone(),
                );
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: a pause, not a busy loop.
                inc(&c.connection_errors);
                tracing::warn!("TCP input: accepting: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One sender's connection, until it ends or the input stops.
async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<Record>,
    mut stop: watch::Receiver<bool>,
    c: Arc<Counters>,
) {
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn AsyncRead + Send + Unpin> = match acceptor {
        None => Box::new(tcp),
        Some(a) => {
            let handshake = tokio::select! {
                h = a.accept(tcp) => h,
                _ = stop.wait_for(|s| *s) => return,
            };
            match handshake {
                Ok(s) => Box::new(s),
                Err(e) => {
                    inc(&c.connection_errors);
                    tracing::warn!(%peer, "TCP input: TLS handshake failed: {e}");
                    return;
                }
            }
        }
    };
    c.open_connections.fetch_add(1, Ordering::Relaxed);
    read_messages(stream, peer, &tx, &mut stop, &c).await;
    c.open_connections.fetch_sub(1, Ordering::Relaxed);
}

async fn read_messages(
    mut stream: Box<dyn AsyncRead + Send + Unpin>,
    peer: std::net::SocketAddr,
    tx: &mpsc::Sender<Record>,
    stop: &mut watch::Receiver<bool>,
    c: &Counters,
) {
    let mut d = Decoder::new();
    loop {
        d.buffer().reserve(READ_CHUNK);
        let read = tokio::select! {
            r = stream.read_buf(d.buffer()) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match read {
            Ok(0) => d.finish(),
            Ok(n) => {
                c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                inc(&c.connection_errors);
                tracing::debug!(%peer, "TCP input: reading: {e}");
                d.finish();
            }
        }
        let done = d.is_finished();
        while let Some(item) = d.next_message() {
            match item {
                Ok(rec) => {
                    inc(&c.messages);
                    let sent = tokio::select! {
                        s = tx.send(rec) => s.is_ok(),
                        _ = stop.wait_for(|s| *s) => false,
                    };
                    if !sent {
                        return;
                    }
                }
                Err(why) => {
                    inc(&c.malformed);
                    tracing::debug!(%peer, "TCP input: skipped bytes: {}", why.as_str());
                }
            }
        }
        if done {
            tracing::debug!(%peer, "TCP input: connection closed");
            return;
        }
    }
}
