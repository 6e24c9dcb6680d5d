//! One `GOR_RATE` for the whole fleet: replay servers on different machines mirror to the
//! same staging targets, and `GOR_RATE=100` means 100 requests per second to each target
//! in total, not per process. The budget of each target and wall-clock second lives in a
//! JetStream key-value bucket; every replay server leases small blocks of it and hands
//! them out locally, so the capture path never waits for NATS.
//!
//! ```text
//!  bucket <stream>_rate                 replay server                      mirror
//!  rate.<target>.<unix second> = used   [SharedRate] lease task ──> local tokens ──> try_take
//!          ^   compare-and-set of           (ahead, in blocks)       of this second   (RateGate)
//!          └── used + block <= rate ────────┘
//! ```
//!
//! Why it holds the limit:
//! - every lease is a compare-and-set on the slot's revision (`create` for the first one
//!   of a second, `update` with the revision read afterwards), and one is only written
//!   while `used + n <= rate`, so all servers together never get more than `rate` tokens
//!   of a second (a slot whose value cannot be read counts as used up: fail closed);
//! - a token is only good during the second it was leased for: what is left at the end
//!   of a second is thrown away (counted as `unused`), never carried over.
//!
//! What it costs: blocks are `max(1, rate/20)` tokens, so a second's budget is about 20
//! leases for the whole fleet whatever its size; a lease is one write to NATS when no
//! other server wrote the slot since this one did, plus a read and a write per race lost
//! (counted as `conflicts`). A server leases only when it was asked for tokens in this or
//! the previous second, so idle servers hold none of the budget. Tokens a server leased but did not use are lost
//! to the fleet for that second (at most about a block and a half per server).
//!
//! Caveat: slots are wall-clock seconds, so the servers' clocks must agree (NTP): with
//! clocks apart by `d`, two slots are in use at once during `d` of every second.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::filters::sample::fnv1a32;
use crate::mirror::RateGate;

/// How long a slot stays in the bucket: long enough to outlive its second on every
/// server (clock differences included), short enough that the bucket stays small.
pub const SLOT_MAX_AGE: Duration = Duration::from_secs(60);

/// Compare-and-set attempts of one lease before it counts as an error (and backs off):
/// losing this many races in a row means the slot is fought over by many servers.
const CAS_TRIES: usize = 16;

/// First pause after a failed lease; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The rate bucket of a stream (`<stream>_rate`), created if missing.
pub async fn bucket(js: &jetstream::Context, stream: &str) -> Result<kv::Store> {
    super::connect::bucket(js, stream, "rate", SLOT_MAX_AGE).await
}

/// A subject-safe token for a target's slots: the target's name (`scheme://host:port`)
/// hashed, as hex, so any name gives a valid key and every server derives the same one.
pub fn target_key(target: &str) -> String {
    format!("{:08x}", fnv1a32(target.as_bytes()))
}

/// What a [`SharedRate`] did, since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SharedRateStats {
    /// Tokens leased from the fleet's budget.
    pub leased: u64,
    /// Tokens handed out by `try_take`.
    pub taken: u64,
    /// `try_take` calls that found no token.
    pub refused: u64,
    /// Leases that failed (NATS unreachable, timeouts, a slot fought over too long).
    pub lease_errors: u64,
    /// Compare-and-set races lost to other servers (retried).
    pub conflicts: u64,
    /// Leased tokens left over when their second ended.
    pub unused: u64,
}

/// A target's share of the fleet-wide per-second budget, for this process; see the
/// module documentation. Dropping it stops its lease task.
pub struct SharedRate {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

/// What `try_take` and the lease task share: atomics only, so `try_take` never waits.
struct Inner {
    per_second: u32,
    block: u32,
    /// `second << 32 | tokens left`: the tokens of one second and that second in one
    /// word, so a token cannot be taken from a second other than the one it was leased
    /// for. Only the lease task changes the second.
    local: AtomicU64,
    /// The second in which the fleet's budget ran out: nothing to lease until the next.
    exhausted: AtomicU32,
    /// The last second a token was asked for: leases follow demand.
    wanted: AtomicU32,
    /// Tells the lease task a token was wanted and there are few or none.
    wake: Notify,
    leased: AtomicU64,
    taken: AtomicU64,
    refused: AtomicU64,
    lease_errors: AtomicU64,
    conflicts: AtomicU64,
    unused: AtomicU64,
}

fn pack(second: u32, tokens: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(tokens)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The wall-clock second (Unix time): the same slot on every server of the fleet. A u32
/// lasts until 2106.
fn unix_second() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Until just past the start of the next wall-clock second.
fn until_next_second() -> Duration {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Duration::ZERO, |d| {
            Duration::from_nanos(u64::from(d.subsec_nanos()))
        });
    Duration::from_secs(1) - into + Duration::from_millis(1)
}

impl SharedRate {
    /// Starts the lease task on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`). `target_key` is [`target_key`] of the target; `per_second` the
    /// fleet's rate for it (0 leases nothing).
    pub fn start(store: kv::Store, target_key: &str, per_second: u32) -> Arc<SharedRate> {
        let inner = Arc::new(Inner {
            per_second,
            block: (per_second / 20).max(1),
            local: AtomicU64::new(pack(unix_second(), 0)),
            exhausted: AtomicU32::new(0),
            wanted: AtomicU32::new(0),
            wake: Notify::new(),
            leased: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            lease_errors: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            unused: AtomicU64::new(0),
        });
        let prefix = format!("rate.{target_key}.");
        let task = tokio::spawn(lease_task(store, prefix, inner.clone()));
        Arc::new(SharedRate { inner, task })
    }

    /// Takes a token of the current second if this process holds one. Never waits: when
    /// it has none (the fleet's budget of the second is used up, or NATS cannot be
    /// reached) the answer is no, and the lease task is told.
    pub fn try_take(&self) -> bool {
        self.take().is_some()
    }

    /// [`SharedRate::try_take`], telling the second the token was of.
    fn take(&self) -> Option<u32> {
        let i = &*self.inner;
        let now = unix_second();
        if i.wanted.load(Ordering::Relaxed) != now {
            i.wanted.store(now, Ordering::Relaxed);
        }
        let mut cur = i.local.load(Ordering::Acquire);
        loop {
            let (second, left) = unpack(cur);
            if second != now || left == 0 {
                inc(&i.refused, 1);
                if i.exhausted.load(Ordering::Relaxed) != now {
                    i.wake.notify_one();
                }
                return None;
            }
            match i.local.compare_exchange_weak(
                cur,
                pack(second, left - 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    inc(&i.taken, 1);
                    // Crossing below half a block: lease the next one ahead.
                    if i.low(left - 1) && !i.low(left) {
                        i.wake.notify_one();
                    }
                    return Some(second);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SharedRateStats {
        let i = &*self.inner;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SharedRateStats {
            leased: get(&i.leased),
            taken: get(&i.taken),
            refused: get(&i.refused),
            lease_errors: get(&i.lease_errors),
            conflicts: get(&i.conflicts),
            unused: get(&i.unused),
        }
    }
}

impl Drop for SharedRate {
    /// A lease cut short may have taken tokens from the slot that nobody uses: that only
    /// lowers the fleet's rate for one second.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RateGate for SharedRate {
    fn try_take(&self) -> bool {
        SharedRate::try_take(self)
    }
}

impl Inner {
    /// Fewer than half a block left: time to lease the next.
    fn low(&self, left: u32) -> bool {
        u64::from(left) * 2 < u64::from(self.block)
    }

    /// Starts the local tokens of `now` at zero, counting what the last second left.
    fn roll_to(&self, now: u32) {
        let (second, _) = unpack(self.local.load(Ordering::Acquire));
        if second != now {
            let (_, left) = unpack(self.local.swap(pack(now, 0), Ordering::AcqRel));
            inc(&self.unused, u64::from(left));
        }
    }

    /// Adds `n` tokens leased for the local second. Only the lease task changes that
    /// second, so it is still the one they were leased for, even if it is over by now
    /// (then `try_take` refuses them and the next roll counts them unused).
    fn add(&self, n: u32) {
        // Tokens left never exceed those leased for the second, at most `per_second`, so
        // the low half cannot overflow into the second.
        self.local.fetch_add(u64::from(n), Ordering::AcqRel);
        inc(&self.leased, u64::from(n));
    }
}

/// Keeps the local tokens of the current second topped up while they are wanted. Sleeps
/// when there is nothing to do (enough tokens, no demand, or the fleet's budget of the
/// second used up) until told or until the next second, and backs off after errors.
async fn lease_task(store: kv::Store, prefix: String, inner: Arc<Inner>) {
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    let mut seen: Option<Seen> = None;
    loop {
        let now = unix_second();
        inner.roll_to(now);
        let (_, left) = unpack(inner.local.load(Ordering::Acquire));
        let wanted = inner.wanted.load(Ordering::Relaxed);
        // Wanted in the previous second too: lease at the start of this one before the
        // first request has to be refused.
        let demand = wanted == now || wanted.wrapping_add(1) == now;
        if inner.per_second == 0 || inner.exhausted.load(Ordering::Relaxed) == now {
            tokio::time::sleep(until_next_second()).await;
            continue;
        }
        if !demand || !inner.low(left) {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(until_next_second()) => {}
            }
            continue;
        }
        let key = format!("{prefix}{now}");
        let seen_now = seen.filter(|s| s.second == now);
        match lease(&store, &key, &inner, seen_now.map(|s| (s.used, s.revision))).await {
            Ok((0, _)) => inner.exhausted.store(now, Ordering::Relaxed),
            Ok((n, (used, revision))) => {
                inner.add(n);
                seen = Some(Seen {
                    second: now,
                    used,
                    revision,
                });
            }
            Err(e) => {
                inc(&inner.lease_errors, 1);
                seen = None;
                // Once per outage at warn: a dead NATS would otherwise log every backoff.
                if failing {
                    tracing::debug!(key, error = %e, "rate lease failed again");
                } else {
                    tracing::warn!(key, error = %e, "cannot lease from the fleet's rate budget; mirroring to this target stops until NATS answers again");
                }
                failing = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if failing {
            tracing::info!(key, "leasing from the fleet's rate budget again");
        }
        failing = false;
        backoff = MIN_BACKOFF;
    }
}

/// The slot as this server last wrote it: the next lease of the same second tries an
/// update at that revision first instead of reading the slot.
#[derive(Clone, Copy)]
struct Seen {
    second: u32,
    used: u64,
    revision: u64,
}

#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error("reading the rate slot: {0}")]
    Read(#[from] kv::EntryError),
    #[error("creating the rate slot: {0}")]
    Create(#[from] kv::CreateError),
    #[error("updating the rate slot: {0}")]
    Update(#[from] kv::UpdateError),
    #[error("the rate slot changed under every one of {CAS_TRIES} attempts")]
    Contended,
}

/// Leases up to a block of the slot `key`: the tokens got (0 when the slot is used up)
/// and the slot as written (used, revision). `known` is the slot as this server last
/// wrote it, if it did in this second.
async fn lease(
    store: &kv::Store,
    key: &str,
    inner: &Inner,
    mut known: Option<(u64, u64)>,
) -> Result<(u32, (u64, u64)), LeaseError> {
    let rate = u64::from(inner.per_second);
    for _ in 0..CAS_TRIES {
        match known {
            None => {
                let n = u64::from(inner.block).min(rate);
                match store.create(key, Bytes::from(n.to_string())).await {
                    Ok(revision) => return Ok((n as u32, (n, revision))),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some((used, revision)) => {
                if used >= rate {
                    return Ok((0, (used, revision)));
                }
                // A partial block when fewer than a block remain.
                let n = u64::from(inner.block).min(rate - used);
                let value = Bytes::from((used + n).to_string());
                match store.update(key, value, revision).await {
                    Ok(revision) => return Ok((n as u32, (used + n, revision))),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        inc(&inner.conflicts, 1);
        known = read(store, key).await?;
    }
    Err(LeaseError::Contended)
}

/// The slot's (used, revision), `None` if it does not exist (or was deleted). A value
/// that is not a number counts as the whole budget used: never hand out more than the
/// rate because of a slot somebody else wrote.
async fn read(store: &kv::Store, key: &str) -> Result<Option<(u64, u64)>, LeaseError> {
    let Some(entry) = store.entry(key).await? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let used = std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Ok(Some(match used {
        Some(used) => (used, entry.revision),
        None => {
            tracing::warn!(key, "the rate slot holds no number; taking it as used up");
            (u64::MAX, entry.revision)
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::broker::connect;
    use crate::broker::testing::NatsServer;
    use crate::broker::NatsConfig;

    /// Upper bound for any single wait in these tests.
    const WAIT: Duration = Duration::from_secs(30);

    /// A bucket on a connection of its own, as each replay server has.
    async fn store(cfg: &NatsConfig, name: &str) -> kv::Store {
        let js = connect::jetstream(connect::connect(cfg, name).await.expect("connect"));
        bucket(&js, &cfg.stream.name).await.expect("bucket")
    }

    /// Takes as fast as a busy capture path would (a request every millisecond or so)
    /// until the wall clock reaches second `until`; the tokens got, by their second.
    async fn drain(rate: Arc<SharedRate>, until: u32) -> BTreeMap<u32, u64> {
        let mut got = BTreeMap::new();
        while unix_second() < until {
            if let Some(second) = rate.take() {
                *got.entry(second).or_default() += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        got
    }

    /// Calls `try_take` every millisecond until it gives a token, failing after [`WAIT`].
    async fn until_a_token(rate: &SharedRate) {
        let deadline = Instant::now() + WAIT;
        while !rate.try_take() {
            assert!(Instant::now() < deadline, "no token: {:?}", rate.stats());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_servers_share_one_budget() {
        let server = NatsServer::start();
        let cfg = server.config();
        let key = target_key("http://staging:8080");
        let a = SharedRate::start(store(&cfg, "a").await, &key, 100);
        let b = SharedRate::start(store(&cfg, "b").await, &key, 100);
        // Pacing, not synchronisation: begin at a second so the run has whole seconds.
        tokio::time::sleep(until_next_second()).await;
        let first = unix_second();
        let until = first + 4;
        let (ga, gb) = tokio::join!(
            tokio::spawn(drain(a.clone(), until)),
            tokio::spawn(drain(b.clone(), until))
        );
        let (ga, gb) = (ga.expect("drain a"), gb.expect("drain b"));
        let mut total = BTreeMap::<u32, u64>::new();
        for (s, n) in ga.iter().chain(gb.iter()) {
            *total.entry(*s).or_default() += n;
        }
        for (s, n) in &total {
            assert!(*n <= 100, "second {s}: {n} tokens: {total:?}");
        }
        // The three seconds after the first (which has the start-up in it) are whole
        // and busy: the fleet's budget of each is almost all used.
        let middle: u64 = (first + 1..until)
            .map(|s| total.get(&s).copied().unwrap_or(0))
            .sum();
        assert!(middle >= 270, "{middle} tokens in 3 s: {total:?}");
        assert!(
            ga.values().sum::<u64>() > 0 && gb.values().sum::<u64>() > 0,
            "{ga:?} {gb:?}"
        );
        // The slots agree: never more than the rate handed out, by anyone.
        let kv = store(&cfg, "check").await;
        for s in first..until {
            let used = read(&kv, &format!("rate.{key}.{s}"))
                .await
                .expect("read")
                .map_or(0, |(used, _)| used);
            assert!(used <= 100, "slot {s}: {used}");
            assert!(used >= total.get(&s).copied().unwrap_or(0));
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(sa.taken + sb.taken, total.values().sum::<u64>());
        assert_eq!((sa.lease_errors, sb.lease_errors), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_rate_gives_at_most_that_many_a_second() {
        let server = NatsServer::start();
        let cfg = server.config();
        let rate = SharedRate::start(store(&cfg, "a").await, &target_key("t"), 5);
        tokio::time::sleep(until_next_second()).await;
        let first = unix_second();
        let got = drain(rate.clone(), first + 3).await;
        for (s, n) in &got {
            assert!(*n <= 5, "second {s}: {n}: {got:?}");
        }
        assert!(got.values().sum::<u64>() >= 5, "{got:?}");
        let s = rate.stats();
        assert!(s.refused > 0, "{s:?}");
        assert_eq!(s.taken, got.values().sum::<u64>());
        // The slots agree (the next one may have its first lease already).
        let kv = store(&cfg, "check").await;
        for second in first..=first + 3 {
            let used = read(&kv, &format!("rate.{}.{second}", target_key("t")))
                .await
                .expect("read")
                .map_or(0, |(used, _)| used);
            assert!(used <= 5, "slot {second}: {used}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_tokens_while_nats_is_down_and_tokens_again_after() {
        let mut server = NatsServer::start();
        let cfg = server.config();
        let rate = SharedRate::start(store(&cfg, "a").await, &target_key("t"), 1000);
        until_a_token(&rate).await;
        server.kill();
        // A lease fails once the JetStream request times out; meanwhile whatever was
        // leased before the kill belongs to a second that is over.
        let deadline = Instant::now() + WAIT;
        while rate.stats().lease_errors == 0 {
            assert!(
                Instant::now() < deadline,
                "no lease error: {:?}",
                rate.stats()
            );
            rate.try_take();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(until_next_second()).await;
        let taken = rate.stats().taken;
        for _ in 0..200 {
            assert!(
                !rate.try_take(),
                "a token with NATS down: {:?}",
                rate.stats()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(rate.stats().taken, taken);
        server.restart();
        until_a_token(&rate).await;
        let s = rate.stats();
        assert!(s.lease_errors >= 1 && s.leased > 0, "{s:?}");
    }

    #[tokio::test]
    async fn dropping_it_stops_the_lease_task() {
        let server = NatsServer::start();
        let cfg = server.config();
        let rate = SharedRate::start(store(&cfg, "a").await, &target_key("t"), 10);
        let task = rate.inner.clone();
        drop(rate);
        // The task held the only other reference to the shared state.
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(&task) > 1 {
            assert!(Instant::now() < deadline, "the lease task is still running");
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn target_keys_are_subject_tokens() {
        let k = target_key("https://staging.example:8443");
        assert_eq!(k.len(), 8);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(k, target_key("https://staging.example:8443"));
    }
}
