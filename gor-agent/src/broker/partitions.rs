//! Sharing the stream's partitions among the replay servers of a fleet: each partition
//! is consumed by at most one replay server at a time (so the requests of one client
//! connection, which all land in one partition, are never split across servers), the
//! partitions are shared out fairly among the live servers, and the partitions of a
//! server that died are taken over by the others once its lease ran out.
//!
//! The state lives in a JetStream key-value bucket whose `max_age` is the lease
//! (`<stream>_claims`, made by [`connect::bucket`](super::connect::bucket)): nats-server
//! 2.9 has no per-key TTL, so a key lives as long as its owner rewrites it more often
//! than once a lease, and vanishes (so that `create` succeeds again) when it stops.
//!
//! ```text
//!  key                   value       written by                  gone when
//!  member.<server-id>    server-id   put, every lease/5          expired (killed) or deleted (stop)
//!  claim.<p>             server-id   create (free) then          expired (killed), deleted
//!                                    update(rev) every lease/5   (handed over, stop)
//!
//!  every lease/5, one round:
//!   1. put member.<me>; update every claim of mine with its revision; delete the ones
//!      the consumer said are drained          (mismatch -> LOST: not owned, at once)
//!   2. list the keys: live members M, claimed partitions C
//!      share = ceil(partitions / |M|)
//!   3. under my share: create claim.<p> for free p (not in C), starting at my rank's
//!      slice of 0..partitions so that servers joining together collide less
//!   4. over my share: put the highest partitions into `to_release`
//!
//!  giving a partition up (B joined, A is over its share):
//!   A: to_release += {p} ─> consumer stops taking p, settles what is in flight
//!      ─> drained(p) ─> A: owned -= {p} ─> delete claim.<p> (expected revision)
//!   B: next round sees p free ─> create claim.<p> ─> owned += {p}
//! ```
//!
//! A claim counts as owned only while its last successful write was sent less than
//! `lease - lease/5` ago: the server stamps the write after we sent it, so it expires no
//! earlier than `sent + lease`, and the consumer is told to stop a fifth of a lease
//! before anyone else can take the partition. So when NATS is unreachable, `owned`
//! becomes empty within the lease; a claim whose refresh succeeds later (its revision
//! unchanged, so nobody took it) is owned again.
//!
//! How a replay server uses it:
//!
//! ```text
//!  let parts = Partitions::start(store, server_id(agent_id), cfg.partitions, cfg.lease);
//!  parts.owned()        watch: consume exactly these partitions, no others
//!  parts.to_release()   watch: take nothing new from these; once nothing of p is in
//!                       flight, parts.drained(p)
//!  parts.stop().await   after the consumer settled what it took: hands over at once
//!  drop(parts)          without stop, as a kill: the claims expire after the lease
//!  parts.stats()        won, taken over, lost, released, lapsed, errors
//! ```
//!
//! Server ids must be unique among live servers ([`server_id`] is host and
//! pid): a claim whose latest value is this server's id is taken to be this server's
//! (that is how an answer lost to a timeout is recovered).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

const MEMBER: &str = "member.";
const CLAIM: &str = "claim.";

/// What the claimer did since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionStats {
    /// Free partitions claimed.
    pub won: u64,
    /// Of those, partitions another server held and let expire (it died).
    pub taken_over: u64,
    /// Claims found to be someone else's (or gone) at a refresh.
    pub lost: u64,
    /// Claims given up after the consumer drained them (over the share, or at stop).
    pub released: u64,
    /// Times a claim stopped being owned because no refresh succeeded in time.
    pub lapsed: u64,
    /// Failed requests to NATS (retried at the next round).
    pub errors: u64,
}

/// This process's claimer: a tokio task that keeps the claims in the bucket.
pub struct Partitions {
    owned: watch::Receiver<BTreeSet<u32>>,
    to_release: watch::Receiver<BTreeSet<u32>>,
    drained: mpsc::UnboundedSender<u32>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Mutex<PartitionStats>>,
}

impl Partitions {
    /// Starts claiming partitions `0..partitions` in `store` (a bucket whose `max_age` is
    /// `lease`). Must be called within a tokio runtime.
    pub fn start(
        store: kv::Store,
        server_id: String,
        partitions: u32,
        lease: Duration,
    ) -> Partitions {
        let (owned_tx, owned) = watch::channel(BTreeSet::new());
        let (release_tx, to_release) = watch::channel(BTreeSet::new());
        let (drained, drained_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let stats = Arc::new(Mutex::new(PartitionStats::default()));
        let claimer = Claimer {
            store,
            me: Arc::from(key_token(&server_id)),
            partitions,
            lease,
            held: BTreeMap::new(),
            releasing: BTreeSet::new(),
            others: BTreeSet::new(),
            owned_tx,
            release_tx,
            stats: stats.clone(),
        };
        let task = tokio::spawn(claimer.run(drained_rx, stop_rx));
        Partitions {
            owned,
            to_release,
            drained,
            stop: Some(stop),
            task: Some(task),
            stats,
        }
    }

    /// The partitions this server owns now: consume these and no other.
    pub fn owned(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.owned.clone()
    }

    /// Owned partitions the claimer wants to give up (it holds more than its share): the
    /// consumer takes no new messages from them and calls [`Partitions::drained`] once
    /// nothing of the partition is in flight. Always a subset of [`Partitions::owned`].
    pub fn to_release(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.to_release.clone()
    }

    /// Nothing of `p` (one of [`Partitions::to_release`]) is in flight any more: it stops
    /// being owned at once and its claim is deleted so that another server takes it.
    pub fn drained(&self, p: u32) {
        // Fails only when the task ended, and then nothing is owned anyway.
        let _ = self.drained.send(p);
    }

    /// Graceful stop, once the consumer settled what it took: owned becomes empty, then
    /// the claims and the membership are deleted so that the others take over at once.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// What the claimer did so far.
    pub fn stats(&self) -> PartitionStats {
        lock(&self.stats).clone()
    }
}

impl Drop for Partitions {
    /// Without [`Partitions::stop`], as a kill would: the claims are left to expire.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// This process's id among the replay servers: `<host>-<pid>` as a key token, the host
/// being `host_id` (`GOR_AGENT_ID`) if set, else the kernel's host name.
pub fn server_id(host_id: Option<&str>) -> String {
    key_token(&format!(
        "{}-{}",
        crate::envelope::host_name(host_id),
        std::process::id()
    ))
}

/// The share of each of `members` servers: everyone taking this many leaves none free.
fn share(partitions: u32, members: usize) -> usize {
    (partitions as usize).div_ceil(members.max(1))
}

/// Letters, digits, `-`, `_` and `=`: one token of a key (no `.`, which separates them).
fn key_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "replay".into()
    } else {
        t
    }
}

fn claim_key(p: u32) -> String {
    format!("{CLAIM}{p}")
}

fn lock(stats: &Mutex<PartitionStats>) -> std::sync::MutexGuard<'_, PartitionStats> {
    // Counters only: one left half-updated by a panic is still worth reading.
    stats.lock().unwrap_or_else(|e| e.into_inner())
}

/// One claim of this server's.
#[derive(Debug)]
struct Held {
    revision: u64,
    /// Owned until then, unless refreshed.
    valid_until: Instant,
    /// Counted in `lapsed` already.
    lapsed: bool,
    /// The consumer drained it: not owned, to be deleted.
    drained: bool,
}

/// What a round learned, sent as it happens so that a slow request does not hold up the
/// others' results.
#[derive(Debug)]
enum Event {
    Refreshed {
        p: u32,
        revision: u64,
        sent_at: Instant,
    },
    Won {
        p: u32,
        revision: u64,
        sent_at: Instant,
        taken_over: bool,
    },
    Lost {
        p: u32,
    },
    Released {
        p: u32,
    },
    Scanned {
        members: usize,
        claimed: BTreeSet<u32>,
    },
    Error {
        what: &'static str,
        error: String,
    },
}

/// What a round starts from.
struct Snapshot {
    refresh: Vec<(u32, u64)>,
    delete: Vec<(u32, u64)>,
    /// Claimed by other servers at the last scan.
    others: BTreeSet<u32>,
}

struct Round {
    handle: JoinHandle<()>,
    deadline: Instant,
}

impl Drop for Round {
    /// A round outlives neither its deadline nor the claimer (aborted, as by a kill).
    fn drop(&mut self) {
        self.handle.abort();
    }
}

struct Claimer {
    store: kv::Store,
    me: Arc<str>,
    partitions: u32,
    lease: Duration,
    held: BTreeMap<u32, Held>,
    /// Held, not drained, to be given up.
    releasing: BTreeSet<u32>,
    others: BTreeSet<u32>,
    owned_tx: watch::Sender<BTreeSet<u32>>,
    release_tx: watch::Sender<BTreeSet<u32>>,
    stats: Arc<Mutex<PartitionStats>>,
}

impl Claimer {
    fn every(&self) -> Duration {
        self.lease / 5
    }

    /// How long after a successful write is sent the claim counts as owned.
    fn validity(&self) -> Duration {
        self.lease - self.lease / 5
    }

    async fn run(
        mut self,
        mut drained_rx: mpsc::UnboundedReceiver<u32>,
        mut stop_rx: oneshot::Receiver<()>,
    ) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(self.every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: Option<Round> = None;
        let mut wanted = false;
        let mut stoppable = true;
        loop {
            let lapse = self.next_lapse();
            tokio::select! {
                r = &mut stop_rx, if stoppable => {
                    if r.is_ok() {
                        break;
                    }
                    // Dropped without stop (and this task is being aborted): no
                    // goodbye, the claims are left to expire, as after a kill.
                    stoppable = false;
                }
                _ = tick.tick() => wanted = true,
                Some(p) = drained_rx.recv() => {
                    self.drained(p);
                    // Hand it over now rather than at the next tick.
                    wanted = true;
                }
                Some(ev) = ev_rx.recv() => self.apply(ev),
                _ = tokio::time::sleep_until(lapse.unwrap_or_else(Instant::now)), if lapse.is_some() => {}
                _ = finished(&mut round), if round.is_some() => {
                    if let Some(r) = round.take() {
                        if !r.handle.is_finished() {
                            r.handle.abort();
                            self.error("round", "took longer than the lease, cut short".into());
                        }
                    }
                }
            }
            if round.is_none() && wanted {
                // The finished round's results first, so that the revisions are current.
                while let Ok(ev) = ev_rx.try_recv() {
                    self.apply(ev);
                }
                wanted = false;
                round = Some(Round {
                    handle: tokio::spawn(run_round(
                        self.store.clone(),
                        self.me.clone(),
                        self.partitions,
                        self.snapshot(),
                        ev_tx.clone(),
                    )),
                    deadline: Instant::now() + self.lease,
                });
            }
            self.publish();
        }
        self.shut_down(round, ev_rx).await;
    }

    async fn shut_down(mut self, round: Option<Round>, mut ev_rx: mpsc::UnboundedReceiver<Event>) {
        // Let a round finish, so that no claim it made is left unknown to expire later.
        if let Some(mut r) = round {
            let _ = tokio::time::timeout_at(r.deadline, &mut r.handle).await;
        }
        while let Ok(ev) = ev_rx.try_recv() {
            self.apply(ev);
        }
        // Not owned first, then deleted: never owned here and claimable elsewhere.
        self.owned_tx.send_replace(BTreeSet::new());
        self.release_tx.send_replace(BTreeSet::new());
        let mut set = JoinSet::new();
        for (&p, h) in &self.held {
            let (store, revision) = (self.store.clone(), h.revision);
            set.spawn(async move {
                let deleted = store
                    .delete_expect_revision(claim_key(p), Some(revision))
                    .await;
                deleted.is_ok().then_some(p)
            });
        }
        let store = self.store.clone();
        let member = format!("{MEMBER}{}", self.me);
        set.spawn(async move {
            let _ = store.delete(member).await;
            None
        });
        // Bounded: with NATS away, the claims expire by themselves.
        let deadline = Instant::now() + self.lease;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            if matches!(r, Ok(Some(_))) {
                lock(&self.stats).released += 1;
            }
        }
        tracing::info!(server = %self.me, "stopped claiming partitions");
    }

    fn snapshot(&self) -> Snapshot {
        let (delete, refresh): (Vec<_>, Vec<_>) = self
            .held
            .iter()
            .map(|(&p, h)| (p, h.revision, h.drained))
            .partition(|(_, _, drained)| *drained);
        Snapshot {
            refresh: refresh.into_iter().map(|(p, r, _)| (p, r)).collect(),
            delete: delete.into_iter().map(|(p, r, _)| (p, r)).collect(),
            others: self.others.clone(),
        }
    }

    fn apply(&mut self, ev: Event) {
        let validity = self.validity();
        match ev {
            Event::Refreshed {
                p,
                revision,
                sent_at,
            } => {
                if let Some(h) = self.held.get_mut(&p) {
                    h.revision = revision;
                    h.valid_until = sent_at + validity;
                    h.lapsed = false;
                }
            }
            Event::Won {
                p,
                revision,
                sent_at,
                taken_over,
            } => {
                tracing::debug!(partition = p, taken_over, "claimed");
                self.held.insert(
                    p,
                    Held {
                        revision,
                        valid_until: sent_at + validity,
                        lapsed: false,
                        drained: false,
                    },
                );
                self.others.remove(&p);
                let mut s = lock(&self.stats);
                s.won += 1;
                s.taken_over += u64::from(taken_over);
            }
            Event::Lost { p } => {
                tracing::warn!(partition = p, "lost the claim: another server has it");
                self.held.remove(&p);
                self.releasing.remove(&p);
                lock(&self.stats).lost += 1;
            }
            Event::Released { p } => {
                tracing::debug!(partition = p, "handed over");
                self.held.remove(&p);
                lock(&self.stats).released += 1;
            }
            Event::Scanned { members, claimed } => {
                self.others = claimed
                    .into_iter()
                    .filter(|p| !self.held.contains_key(p))
                    .collect();
                self.rebalance(share(self.partitions, members));
            }
            Event::Error { what, error } => self.error(what, error),
        }
    }

    fn error(&self, what: &'static str, error: String) {
        tracing::debug!(what, %error, "partition claims: a request to NATS failed");
        lock(&self.stats).errors += 1;
    }

    /// Over the share: the highest partitions go into `to_release`; under it again (a
    /// server left): the ones not drained yet are kept after all.
    fn rebalance(&mut self, share: usize) {
        let active: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| !h.drained)
            .map(|(&p, _)| p)
            .collect();
        let over = active.len().saturating_sub(share);
        for &p in active.iter().rev() {
            if self.releasing.len() >= over {
                break;
            }
            self.releasing.insert(p);
        }
        while self.releasing.len() > over {
            self.releasing.pop_first();
        }
    }

    fn drained(&mut self, p: u32) {
        if !self.releasing.remove(&p) {
            tracing::debug!(partition = p, "drained, but it was not to be released");
            return;
        }
        if let Some(h) = self.held.get_mut(&p) {
            h.drained = true;
        }
    }

    fn next_lapse(&self) -> Option<Instant> {
        self.held
            .values()
            .filter(|h| !h.lapsed && !h.drained)
            .map(|h| h.valid_until)
            .min()
    }

    /// Publishes `owned` and `to_release` when they changed, counting lapsed claims.
    fn publish(&mut self) {
        let now = Instant::now();
        let mut lapsed = Vec::new();
        for (&p, h) in self.held.iter_mut() {
            if !h.lapsed && !h.drained && h.valid_until <= now {
                h.lapsed = true;
                lapsed.push(p);
            }
        }
        if !lapsed.is_empty() {
            tracing::warn!(
                partitions = ?lapsed,
                "no refresh of these claims reached NATS in time: not consuming them, \
                 another replay server may take them over"
            );
            lock(&self.stats).lapsed += lapsed.len() as u64;
        }
        let owned: BTreeSet<u32> = self
            .held
            .iter()
            .filter(|(_, h)| !h.drained && h.valid_until > now)
            .map(|(&p, _)| p)
            .collect();
        let to_release: BTreeSet<u32> = self.releasing.intersection(&owned).copied().collect();
        self.owned_tx.send_if_modified(|o| replace(o, owned));
        self.release_tx.send_if_modified(|r| replace(r, to_release));
    }
}

fn replace(old: &mut BTreeSet<u32>, new: BTreeSet<u32>) -> bool {
    if *old == new {
        false
    } else {
        *old = new;
        true
    }
}

/// Waits for the round to end or to overrun its deadline.
async fn finished(round: &mut Option<Round>) {
    match round {
        Some(r) => {
            let _ = tokio::time::timeout_at(r.deadline, &mut r.handle).await;
        }
        None => std::future::pending().await,
    }
}

/// How a claim fared at a refresh.
enum Kept {
    Yes,
    No,
}

async fn run_round(
    store: kv::Store,
    me: Arc<str>,
    partitions: u32,
    snap: Snapshot,
    tx: mpsc::UnboundedSender<Event>,
) {
    let value = Bytes::from(me.to_string());
    let mut mine = snap.refresh.len();
    let held: BTreeSet<u32> = snap
        .refresh
        .iter()
        .chain(&snap.delete)
        .map(|(p, _)| *p)
        .collect();

    // 1. Membership, refreshes and hand-overs, all at once.
    let mut set = JoinSet::new();
    {
        let (store, key, value, tx) = (
            store.clone(),
            format!("{MEMBER}{me}"),
            value.clone(),
            tx.clone(),
        );
        set.spawn(async move {
            if let Err(e) = store.put(key, value).await {
                send_error(&tx, "membership", e);
            }
            Kept::Yes
        });
    }
    for (p, revision) in snap.refresh {
        set.spawn(refresh(
            store.clone(),
            value.clone(),
            p,
            revision,
            tx.clone(),
        ));
    }
    for (p, revision) in snap.delete {
        let (store, tx) = (store.clone(), tx.clone());
        set.spawn(async move {
            match store
                .delete_expect_revision(claim_key(p), Some(revision))
                .await
            {
                Ok(()) => {
                    let _ = tx.send(Event::Released { p });
                }
                // Gone or someone else's already: not ours either way.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    let _ = tx.send(Event::Released { p });
                }
                Err(e) => send_error(&tx, "hand-over", e),
            }
            Kept::Yes
        });
    }
    while let Some(r) = set.join_next().await {
        if matches!(r, Ok(Kept::No)) {
            mine -= 1;
        }
    }

    // 2. Who is there, what is claimed.
    let mut keys = match store.keys().await {
        Ok(k) => k,
        Err(e) => return send_error(&tx, "listing", e),
    };
    let mut members = BTreeSet::from([me.to_string()]);
    let mut claimed = BTreeSet::new();
    while let Some(k) = keys.next().await {
        let k = match k {
            Ok(k) => k,
            Err(e) => return send_error(&tx, "listing", e),
        };
        if let Some(m) = k.strip_prefix(MEMBER) {
            members.insert(m.to_string());
        } else if let Some(p) = k.strip_prefix(CLAIM).and_then(|p| p.parse::<u32>().ok()) {
            claimed.insert(p);
        }
    }
    let n = members.len();
    let _ = tx.send(Event::Scanned {
        members: n,
        claimed: claimed.clone(),
    });

    // 3. Under the share: claim free ones, from this server's slice on.
    let want = share(partitions, n).saturating_sub(mine);
    if want == 0 || partitions == 0 {
        return;
    }
    let rank = members.iter().position(|m| **m == *me).unwrap_or(0);
    let start = (rank as u64 * u64::from(partitions) / n as u64) as u32;
    let free = (start..partitions)
        .chain(0..start)
        .filter(|p| !claimed.contains(p) && !held.contains(p))
        .take(want);
    let mut claims = JoinSet::new();
    for p in free {
        let was_others = snap.others.contains(&p);
        claims.spawn(claim(
            store.clone(),
            value.clone(),
            p,
            was_others,
            tx.clone(),
        ));
    }
    while claims.join_next().await.is_some() {}
}

fn send_error(tx: &mpsc::UnboundedSender<Event>, what: &'static str, e: impl std::fmt::Display) {
    let _ = tx.send(Event::Error {
        what,
        error: e.to_string(),
    });
}

async fn refresh(
    store: kv::Store,
    value: Bytes,
    p: u32,
    revision: u64,
    tx: mpsc::UnboundedSender<Event>,
) -> Kept {
    let key = claim_key(p);
    let sent_at = Instant::now();
    match store.update(&key, value.clone(), revision).await {
        Ok(revision) => {
            let _ = tx.send(Event::Refreshed {
                p,
                revision,
                sent_at,
            });
            Kept::Yes
        }
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            // Not ours any more as far as we know: say so before anything else.
            let _ = tx.send(Event::Lost { p });
            // Unless the write that moved the revision was our own, whose answer was
            // lost (a timeout): then it is still ours, and confirmed anew.
            if adopt(&store, &key, &value, p, &tx).await {
                Kept::Yes
            } else {
                Kept::No
            }
        }
        Err(e) => {
            // Unknown: kept until its validity runs out, tried again next round.
            send_error(&tx, "refresh", e);
            Kept::Yes
        }
    }
}

async fn claim(
    store: kv::Store,
    value: Bytes,
    p: u32,
    was_others: bool,
    tx: mpsc::UnboundedSender<Event>,
) {
    let key = claim_key(p);
    // Claimed by another at the last scan and now without even a delete marker: its
    // holder stopped refreshing it (died), rather than handing it over.
    let expired = was_others && matches!(store.entry(&key).await, Ok(None));
    let sent_at = Instant::now();
    match store.create(&key, value.clone()).await {
        Ok(revision) => {
            let _ = tx.send(Event::Won {
                p,
                revision,
                sent_at,
                taken_over: expired,
            });
        }
        Err(e) => {
            if e.kind() != kv::CreateErrorKind::AlreadyExists {
                send_error(&tx, "claim", e);
            }
            // Someone was quicker, or it was our own create whose answer was lost.
            adopt(&store, &key, &value, p, &tx).await;
        }
    }
}

/// Whether the claim's latest value is ours; then confirmed with a fresh write.
async fn adopt(
    store: &kv::Store,
    key: &str,
    value: &Bytes,
    p: u32,
    tx: &mpsc::UnboundedSender<Event>,
) -> bool {
    let entry = match store.entry(key).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put && e.value == *value => e,
        Ok(_) => return false,
        Err(e) => {
            send_error(tx, "reading a claim", e);
            return false;
        }
    };
    let sent_at = Instant::now();
    match store.update(key, value.clone(), entry.revision).await {
        Ok(revision) => {
            let _ = tx.send(Event::Won {
                p,
                revision,
                sent_at,
                taken_over: false,
            });
            true
        }
        Err(e) => {
            if e.kind() != kv::UpdateErrorKind::WrongLastRevision {
                send_error(tx, "refresh", e);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::connect;
    use crate::broker::testing::NatsServer;

    fn all() -> BTreeSet<u32> {
        (0..16).collect()
    }

    /// A replay server's own connection and its view of the bucket.
    async fn store(server: &NatsServer, lease: Duration) -> kv::Store {
        let cfg = server.config();
        let js = connect::jetstream(connect::connect(&cfg, "test").await.unwrap());
        connect::bucket(&js, &cfg.stream.name, "claims", lease)
            .await
            .unwrap()
    }

    async fn start(server: &NatsServer, id: &str, lease: Duration) -> Partitions {
        Partitions::start(store(server, lease).await, id.into(), 16, lease)
    }

    async fn wait_owned(
        p: &Partitions,
        within: Duration,
        what: &str,
        f: impl Fn(&BTreeSet<u32>) -> bool,
    ) -> BTreeSet<u32> {
        let mut rx = p.owned();
        let reached = tokio::time::timeout(within, async {
            rx.wait_for(|s| f(s)).await.map(|s| s.clone())
        })
        .await;
        match reached {
            Ok(Ok(s)) => s,
            _ => panic!("{what} not within {within:?}: owned {:?}", *rx.borrow()),
        }
    }

    /// Plays the consumer of both until they hold 8 each: drains what they give up a
    /// little later (as if requests were in flight), and checks at every moment that no
    /// partition is owned by both and that `a` gave up only what it was told was drained.
    async fn converge(a: &Partitions, b: &Partitions) -> (BTreeSet<u32>, BTreeSet<u32>) {
        const IN_FLIGHT: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut asked: [BTreeMap<u32, Instant>; 2] = Default::default();
        let mut drained: [BTreeSet<u32>; 2] = Default::default();
        loop {
            // a, b, a: a partition in both a's and b's is one a held across b's reading.
            let a1 = a.owned().borrow().clone();
            let b1 = b.owned().borrow().clone();
            let a2 = a.owned().borrow().clone();
            let both: Vec<_> = a1.intersection(&b1).filter(|p| a2.contains(p)).collect();
            assert!(
                both.is_empty(),
                "owned by both: {both:?} (a {a2:?}, b {b1:?})"
            );
            for p in all().difference(&a2) {
                assert!(drained[0].contains(p), "a dropped {p} undrained: {a2:?}");
            }
            for (i, x) in [a, b].into_iter().enumerate() {
                let release = x.to_release().borrow().clone();
                let owned = x.owned().borrow().clone();
                assert!(release.is_subset(&owned), "{release:?} not in {owned:?}");
                for p in release {
                    let since = *asked[i].entry(p).or_insert_with(Instant::now);
                    if since.elapsed() >= IN_FLIGHT && drained[i].insert(p) {
                        x.drained(p);
                    }
                }
            }
            if a1.len() == 8 && b1.len() == 8 && a1 == a2 {
                assert_eq!(&a1 | &b1, all());
                assert_eq!(
                    drained[0],
                    &all() - &a1,
                    "a gave up exactly what it drained"
                );
                assert!(drained[1].is_empty(), "b had nothing to give up");
                return (a1, b1);
            }
            assert!(
                Instant::now() < deadline,
                "no 8 and 8: a {a1:?}, b {b1:?}, a {:?}, b {:?}",
                a.stats(),
                b.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn shares_leave_none_free() {
        assert_eq!(share(16, 1), 16);
        assert_eq!(share(16, 2), 8);
        assert_eq!(share(16, 3), 6);
        assert_eq!(share(16, 17), 1);
        assert_eq!(share(16, 0), 16);
        assert_eq!(key_token("host.a b-1"), "host_a_b-1");
        assert_eq!(key_token(""), "replay");
        assert!(!server_id(None).contains('.'));
        assert!(server_id(Some("web 1.a")).starts_with("web_1_a-"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_server_alone_gets_all() {
        let server = NatsServer::start();
        let lease = Duration::from_secs(3);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        assert!(a.to_release().borrow().is_empty());
        // The bucket says so too.
        let store = store(&server, lease).await;
        for p in 0..16 {
            let v = store.get(claim_key(p)).await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"a"[..]), "claim of {p}");
        }
        // Refreshed across several leases, not re-won.
        tokio::time::sleep(lease * 2).await;
        assert_eq!(*a.owned().borrow(), all());
        let s = a.stats();
        assert_eq!(
            (s.won, s.lost, s.lapsed, s.taken_over),
            (16, 0, 0, 0),
            "{s:?}"
        );
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_overwritten_by_another_is_lost_at_once_then_taken_back_after_expiry() {
        let server = NatsServer::start();
        let lease = Duration::from_secs(3);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        // Another server (which then dies) writes over claim 3.
        let intruder = store(&server, lease).await;
        intruder.put(claim_key(3), "x".into()).await.unwrap();
        let written = Instant::now();
        // At the next refresh, well before the claim would lapse.
        wait_owned(&a, lease / 2, "3 lost", |s| {
            !s.contains(&3) && s.len() == 15
        })
        .await;
        assert!(written.elapsed() < lease / 2, "{:?}", written.elapsed());
        // Its claim expires (nobody refreshes it) and a takes 3 back.
        wait_owned(&a, lease + Duration::from_secs(6), "3 back", |s| {
            *s == all()
        })
        .await;
        let s = a.stats();
        assert_eq!((s.lost, s.taken_over, s.won), (1, 1, 17), "{s:?}");
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_joins_gets_its_share_through_drained() {
        let server = NatsServer::start();
        let lease = Duration::from_secs(3);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        let b = start(&server, "b", lease).await;
        converge(&a, &b).await;
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.won, sa.released, sa.lost), (16, 8, 0), "{sa:?}");
        assert_eq!((sb.won, sb.lost, sb.taken_over), (8, 0, 0), "{sb:?}");
        a.stop().await;
        b.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_servers_partitions_are_taken_over_after_the_lease() {
        let server = NatsServer::start();
        let lease = Duration::from_secs(3);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        let b = start(&server, "b", lease).await;
        converge(&a, &b).await;
        let killed = Instant::now();
        drop(a);
        wait_owned(&b, lease + Duration::from_secs(6), "all 16 on b", |s| {
            *s == all()
        })
        .await;
        // Through the expiry of a's claims, not earlier.
        assert!(killed.elapsed() >= lease / 2, "{:?}", killed.elapsed());
        let s = b.stats();
        assert_eq!((s.taken_over, s.lost), (8, 0), "{s:?}");
        b.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_hands_over_at_once() {
        let server = NatsServer::start();
        // Long, so that a hand-over through expiry could not pass for one through stop.
        let lease = Duration::from_secs(8);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        let b = start(&server, "b", lease).await;
        converge(&a, &b).await;
        let a_stats = a.stats.clone();
        let stopped = Instant::now();
        a.stop().await;
        wait_owned(&b, lease / 2, "all 16 on b", |s| *s == all()).await;
        let elapsed = stopped.elapsed();
        assert!(elapsed < lease / 2, "{elapsed:?}");
        assert_eq!(lock(&a_stats).released, 16);
        assert_eq!(b.stats().taken_over, 0, "handed over, not expired");
        b.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_nats_nothing_is_owned_within_the_lease_and_claims_come_back() {
        let mut server = NatsServer::start();
        let lease = Duration::from_secs(4);
        let a = start(&server, "a", lease).await;
        wait_owned(&a, Duration::from_secs(15), "all 16", |s| *s == all()).await;
        let killed = Instant::now();
        server.kill();
        wait_owned(&a, lease, "nothing owned", BTreeSet::is_empty).await;
        assert!(killed.elapsed() < lease, "{:?}", killed.elapsed());
        assert_eq!(a.stats().lapsed, 16);
        server.restart();
        wait_owned(&a, Duration::from_secs(30), "all 16 again", |s| *s == all()).await;
        a.stop().await;
    }
}
