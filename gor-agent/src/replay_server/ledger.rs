//! What the replay server owes the stream: every message it took is acknowledged once it
//! was sent to staging or dropped on purpose, and given back (nak) when staging failed or
//! nothing was heard of it in time, so the stream delivers it again.
//!
//! ```text
//! delivered ──> pending ──submitted(none)──────────────> ack  (filtered, over the rate, sampled out)
//!                  │──submitted(targets)──answered(all)─> ack  (sent) │ nak, 1 s (staging failed)
//!                  └──older than the settle timeout─────> nak  (no answer: the lane dropped it)
//!                                                         ack  (with a middleware that never returned it)
//! ```
//!
//! Requests this server sent are remembered (a bounded set), so one delivered again (an
//! ack that did not arrive) is acknowledged without being sent twice; one sent again
//! after another server died holding it is counted as `redelivered_sent`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::Acker;
use async_nats::jetstream::AckKind;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::{
    broker::stats::ConsumeStats,
    dispatch::Receipts,
    envelope::MessageId,
    mirror::{Accepted, StagingResult},
};

/// Ids of requests sent, remembered to skip their redeliveries.
const RECENT: usize = 65_536;

/// How long a message staging failed waits before the stream delivers it again.
const NAK_DELAY: Duration = Duration::from_secs(1);

/// An acknowledgement (or nak) to send; sent in order by one task.
pub type AckOp = (Acker, AckKind);

struct Pending {
    acker: Acker,
    partition: u32,
    /// Targets that queued it and have not answered yet.
    waiting: Accepted,
    /// Whether mirroring took it (after the middleware, if any).
    submitted: bool,
    /// Whether a target failed.
    failed: bool,
    /// Whether a target answered.
    answered: bool,
    redelivered: bool,
    since: Instant,
    /// Its place in the in-flight window, given back when it is settled.
    _permit: OwnedSemaphorePermit,
}

/// See the module documentation. Shared between the source (deliveries, expiry) and
/// dispatch (receipts), both on the driver's task.
pub struct Ledger {
    pending: HashMap<MessageId, Pending>,
    /// Deliveries in order, for expiry (entries settled meanwhile are skipped).
    order: VecDeque<(Instant, MessageId)>,
    per_partition: HashMap<u32, usize>,
    recent: HashSet<MessageId>,
    recent_order: VecDeque<MessageId>,
    acks: mpsc::UnboundedSender<AckOp>,
    settle_timeout: Duration,
    middleware: bool,
    pub stats: ConsumeStats,
}

/// A delivered message, as the ledger takes it.
pub struct Delivered {
    pub id: MessageId,
    pub acker: Acker,
    pub partition: u32,
    pub redelivered: bool,
    pub permit: OwnedSemaphorePermit,
}

impl Ledger {
    /// `settle_timeout`: how long a message may go without an answer; `middleware`:
    /// whether one is configured (what it does not return was dropped by it, on purpose).
    pub fn new(
        acks: mpsc::UnboundedSender<AckOp>,
        settle_timeout: Duration,
        middleware: bool,
    ) -> Ledger {
        Ledger {
            pending: HashMap::new(),
            order: VecDeque::new(),
            per_partition: HashMap::new(),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            acks,
            settle_timeout,
            middleware,
            stats: ConsumeStats::default(),
        }
    }

    /// Takes a delivered request; false when it must not go on (sent already, or in
    /// flight already: a redelivery).
    pub fn request(&mut self, d: Delivered) -> bool {
        self.stats.received += 1;
        if d.redelivered {
            self.stats.redelivered += 1;
        }
        if self.recent.contains(&d.id) {
            self.stats.duplicates_skipped += 1;
            self.ack(d.acker, AckKind::Ack);
            return false;
        }
        if self.pending.contains_key(&d.id) {
            // The same message again while its first delivery is in flight (its ack wait
            // ran out): the first delivery's settlement settles it.
            self.stats.duplicates_skipped += 1;
            return false;
        }
        *self.per_partition.entry(d.partition).or_default() += 1;
        let now = Instant::now();
        self.order.push_back((now, d.id.clone()));
        self.pending.insert(
            d.id,
            Pending {
                acker: d.acker,
                partition: d.partition,
                waiting: Accepted::NONE,
                submitted: false,
                failed: false,
                answered: false,
                redelivered: d.redelivered,
                since: now,
                _permit: d.permit,
            },
        );
        true
    }

    /// Takes a delivered message that is not a request (production's response, for the
    /// comparison), or one that could not be read: acknowledged at once.
    pub fn other(&mut self, acker: Acker, redelivered: bool, undecodable: bool) {
        self.stats.received += 1;
        if redelivered {
            self.stats.redelivered += 1;
        }
        if undecodable {
            self.stats.decode_errors += 1;
        } else {
            self.stats.acked_dropped += 1;
        }
        self.ack(acker, AckKind::Ack);
    }

    /// Messages of `partition` not settled yet.
    pub fn inflight(&self, partition: u32) -> usize {
        self.per_partition.get(&partition).copied().unwrap_or(0)
    }

    /// Settles what waited longer than the settle timeout.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.settle_timeout {
                break;
            }
            let Some((at, id)) = self.order.pop_front() else {
                break;
            };
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            if p.since != at {
                continue;
            }
            let p = self.remove(&id).expect("looked up above");
            if self.middleware && !p.submitted {
                // The middleware did not give it back: it dropped it.
                self.stats.acked_dropped += 1;
                self.ack(p.acker, AckKind::Ack);
            } else {
                self.stats.unsettled += 1;
                self.stats.nacked += 1;
                self.ack(p.acker, AckKind::Nak(None));
            }
        }
    }

    /// Gives everything still pending back to the stream (at shutdown).
    pub fn abandon_all(&mut self) {
        let ids: Vec<MessageId> = self.pending.keys().cloned().collect();
        for id in ids {
            if let Some(p) = self.remove(&id) {
                self.stats.nacked += 1;
                self.ack(p.acker, AckKind::Nak(None));
            }
        }
        self.order.clear();
    }

    /// Gives back a message that was taken from the stream but never delivered.
    pub fn give_back(&mut self, acker: Acker) {
        self.stats.received += 1;
        self.stats.nacked += 1;
        self.ack(acker, AckKind::Nak(None));
    }

    /// Lets the ack task end once it has sent what it was given: nothing more is sent.
    pub fn close(&mut self) {
        self.acks = mpsc::unbounded_channel().0;
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, id: &MessageId) -> Option<Pending> {
        let p = self.pending.remove(id)?;
        if let Some(n) = self.per_partition.get_mut(&p.partition) {
            *n -= 1;
            if *n == 0 {
                self.per_partition.remove(&p.partition);
            }
        }
        Some(p)
    }

    fn ack(&self, acker: Acker, kind: AckKind) {
        // The ack task lives as long as the source; a send can only fail after it ended.
        let _ = self.acks.send((acker, kind));
    }

    fn remember(&mut self, id: MessageId) {
        if self.recent.insert(id.clone()) {
            self.recent_order.push_back(id);
            if self.recent_order.len() > RECENT {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    fn settle(&mut self, id: &MessageId) {
        let Some(p) = self.remove(id) else { return };
        if p.failed && !p.answered {
            self.stats.nacked += 1;
            self.ack(p.acker, AckKind::Nak(Some(NAK_DELAY)));
        } else {
            self.stats.acked_sent += 1;
            if p.redelivered {
                self.stats.redelivered_sent += 1;
            }
            self.remember(id.clone());
            self.ack(p.acker, AckKind::Ack);
        }
    }
}

impl Receipts for Ledger {
    fn submitted(&mut self, id: &MessageId, accepted: Accepted) {
        let Some(p) = self.pending.get_mut(id) else {
            return;
        };
        if !accepted.any() {
            let p = self.remove(id).expect("looked up above");
            self.stats.acked_dropped += 1;
            self.ack(p.acker, AckKind::Ack);
            return;
        }
        p.submitted = true;
        p.waiting = accepted;
    }

    fn answered(&mut self, r: &StagingResult) {
        let Some(p) = self.pending.get_mut(&r.id) else {
            self.stats.late_answers += 1;
            if r.status().is_some() {
                // Sent after all: its redelivery need not be.
                self.remember(r.id.clone());
            }
            return;
        };
        p.waiting = p.waiting.without(r.target);
        match r.status() {
            Some(_) => p.answered = true,
            None => p.failed = true,
        }
        if !p.waiting.any() {
            let id = r.id.clone();
            self.settle(&id);
        }
    }
}

/// The ledger as dispatch holds it.
pub struct Shared(pub Arc<Mutex<Ledger>>);

impl Receipts for Shared {
    fn submitted(&mut self, id: &MessageId, accepted: Accepted) {
        lock(&self.0).submitted(id, accepted);
    }

    fn answered(&mut self, r: &StagingResult) {
        lock(&self.0).answered(r);
    }
}

pub fn lock(l: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the acknowledgements in order until the ledger is gone; counts the failures.
pub async fn send_acks(mut rx: mpsc::UnboundedReceiver<AckOp>, errors: Arc<AtomicU64>) {
    while let Some((acker, kind)) = rx.recv().await {
        if acker.ack_with(kind).await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
