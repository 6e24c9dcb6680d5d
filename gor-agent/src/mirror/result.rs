//! Staging's answers as data: one [`StagingResult`] per mirrored exchange (a request
//! written to one target, or given up on after a failure), for a later stage to compare
//! with production's response or to record.
//!
//! Results exist only for a subscriber ([`super::Mirror::subscribe`]). Without one the
//! lanes keep nothing of a response but its status, as before. With one, the final
//! response's head and the first [`super::MirrorOptions::result_body_limit`] bytes of its
//! body are kept as they were on the wire, framed by the capture framer's own head parser
//! and body framing, and handed over as a [`crate::http::HttpMessage`] of kind
//! `Response`, like a captured response. The channel is bounded and never waited on: a
//! result that does not fit is dropped and counted (`results_dropped`), so a slow
//! subscriber never slows mirroring.
//!
//! Requests dropped before they reach a connection (queue full, rate limit, backoff,
//! shutdown) and requests whose head could not be rewritten are not exchanges: they stay
//! counters only. A request sent again on a new connection (staging closed the one it was
//! written on) yields one result, for its final attempt.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::stats::inc;
use crate::envelope::MessageId;
use crate::http::HttpMessage;

/// The outcome of one mirrored request on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingResult {
    /// The id of the captured request ([`HttpMessage::id`]).
    pub id: MessageId,
    /// The target's index in [`super::MirrorOptions::targets`].
    pub target: usize,
    /// The target as displayed in the stats (`http://host:port/base`).
    pub target_name: String,
    /// When the request was written to staging (for a failure before any write, when
    /// the attempt began).
    pub sent_at: SystemTime,
    /// From the request written to its response complete; for a failure, from the
    /// request written (or the attempt begun, if nothing was written) to the failure.
    pub latency: Duration,
    pub outcome: Outcome,
}

impl StagingResult {
    /// The response's status code, if staging answered.
    pub fn status(&self) -> Option<u16> {
        match &self.outcome {
            Outcome::Response(r) => Some(r.status),
            Outcome::Failure(_) => None,
        }
    }
}

/// What staging did with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Boxed: a response is large, a failure is a byte.
    Response(Box<StagingResponse>),
    Failure(FailureKind),
}

/// A final response from staging (interim 1xx responses are skipped, 101 is final).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingResponse {
    pub status: u16,
    /// The response as a framed message: kind `Response`, the id and connection of the
    /// request, `raw` the head and the body as on the wire (chunk framing included) up to
    /// the body limit, `latency_ns` the result's latency. Timestamps are the
    /// `CLOCK_MONOTONIC` time the response was complete; the flow is unknown (unspecified
    /// addresses), as for saved traffic.
    pub message: HttpMessage,
    /// The length of the whole body on the wire, of which `message` may hold less.
    pub body_len: u64,
}

impl StagingResponse {
    /// The head: status line, headers, empty line.
    pub fn head(&self) -> Bytes {
        let m = &self.message;
        m.raw.slice(..m.body_offset.min(m.raw.len()))
    }

    /// The body bytes kept (all of it unless [`Self::body_truncated`]).
    pub fn body(&self) -> Bytes {
        self.message.body()
    }

    /// Whether the body was longer than the limit and is cut in `message`.
    pub fn body_truncated(&self) -> bool {
        (self.body().len() as u64) < self.body_len
    }
}

/// Why a request got no response; each kind is also counted in the target's stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The TCP connection could not be opened (`connect_errors`).
    Connect,
    /// The TLS handshake with an `https://` target failed (`connect_errors`).
    Tls,
    /// Connect, write and read took longer than the timeout (`timeouts`).
    Timeout,
    /// Writing the request failed (`resets`).
    Write,
    /// The connection was reset or closed before a full response (`resets`).
    Closed,
    /// The response could not be parsed or exceeded the framer's limits
    /// (`bad_responses`).
    BadResponse,
}

/// The subscriber's end of the results, shared by every target's lanes.
pub(crate) struct Results {
    tx: RwLock<Option<mpsc::Sender<StagingResult>>>,
    /// Most body bytes kept per response.
    pub body_limit: usize,
}

impl Results {
    pub fn new(body_limit: usize) -> Arc<Results> {
        Arc::new(Results {
            tx: RwLock::new(None),
            body_limit,
        })
    }

    /// Replaces the subscriber with a new one, whose receiver is returned.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<StagingResult> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        *self.tx.write().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// The subscriber, if there is one still listening: results are only built for it.
    pub fn sink(&self) -> Option<Sink> {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        tx.as_ref().filter(|tx| !tx.is_closed()).map(|tx| Sink {
            tx: tx.clone(),
            body_limit: self.body_limit,
        })
    }
}

/// A lane's handle on the subscriber for one batch.
pub(crate) struct Sink {
    tx: mpsc::Sender<StagingResult>,
    pub body_limit: usize,
}

impl Sink {
    /// Hands a result over without waiting; one that does not fit is counted in
    /// `dropped`. (One for a subscriber that has gone is dropped silently.)
    pub fn send(&self, result: StagingResult, dropped: &AtomicU64) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(result) {
            inc(dropped);
        }
    }
}
