//! The exchanges waiting for their other half: a mirrored request with production's
//! response and staging's answers per target, keyed by the request's id, in whatever
//! order they arrive. Bounded in count and bytes; the oldest go first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::envelope::MessageId;
use crate::http::HttpMessage;
use crate::mirror::{Accepted, StagingResult};

/// Bytes counted for an exchange besides the messages it holds.
const OVERHEAD: usize = 256;

/// A request that was mirrored, as staging received it.
pub(super) struct Request {
    pub endpoint: Arc<str>,
    pub message: HttpMessage,
}

/// One request's three sides, as far as they have arrived.
pub(super) struct Exchange {
    pub since: Instant,
    seq: u64,
    pub request: Option<Request>,
    /// The targets whose answer is still to come.
    pub expected: Accepted,
    pub production: Option<HttpMessage>,
    /// Staging's answers that arrived before production's response.
    pub staging: Vec<StagingResult>,
    bytes: usize,
}

impl Exchange {
    fn size(&self) -> usize {
        let staging: usize = self
            .staging
            .iter()
            .map(|r| match &r.outcome {
                crate::mirror::Outcome::Response(resp) => resp.message.raw.len(),
                crate::mirror::Outcome::Failure(_) => 0,
            })
            .sum();
        OVERHEAD
            + self.request.as_ref().map_or(0, |r| r.message.raw.len())
            + self.production.as_ref().map_or(0, |m| m.raw.len())
            + staging
    }

    /// Nothing more can arrive that would be compared.
    pub fn is_done(&self) -> bool {
        self.request.is_some() && !self.expected.any() && self.staging.is_empty()
    }
}

pub(super) struct Pending {
    by_id: HashMap<MessageId, Exchange>,
    /// Insertion order (oldest first), for expiry and eviction.
    order: BTreeMap<u64, MessageId>,
    next_seq: u64,
    bytes: usize,
    max: usize,
    max_bytes: usize,
}

impl Pending {
    pub fn new(max: usize, max_bytes: usize) -> Pending {
        Pending {
            by_id: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            max: max.max(1),
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &MessageId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Changes the exchange of `id` (a new one if `create` and there is none), keeping
    /// the byte count; `None` if there is none and `create` is false.
    pub fn update<R>(
        &mut self,
        id: &MessageId,
        now: Instant,
        create: bool,
        f: impl FnOnce(&mut Exchange) -> R,
    ) -> Option<R> {
        if !self.by_id.contains_key(id) {
            if !create {
                return None;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.order.insert(seq, id.clone());
            self.by_id.insert(
                id.clone(),
                Exchange {
                    since: now,
                    seq,
                    request: None,
                    expected: Accepted::NONE,
                    production: None,
                    staging: Vec::new(),
                    bytes: 0,
                },
            );
        }
        let ex = self.by_id.get_mut(id)?;
        let r = f(ex);
        let size = ex.size();
        self.bytes = self.bytes - ex.bytes + size;
        ex.bytes = size;
        Some(r)
    }

    pub fn get_mut(&mut self, id: &MessageId) -> Option<&mut Exchange> {
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: &MessageId) -> Option<Exchange> {
        let ex = self.by_id.remove(id)?;
        self.order.remove(&ex.seq);
        self.bytes -= ex.bytes;
        Some(ex)
    }

    /// The oldest exchange, if it is older than `deadline` allows (`since <= deadline`).
    pub fn pop_older(&mut self, deadline: Instant) -> Option<Exchange> {
        let (_, id) = self.order.first_key_value()?;
        if self.by_id.get(id).is_some_and(|ex| ex.since <= deadline) {
            let id = id.clone();
            self.remove(&id)
        } else {
            None
        }
    }

    /// The oldest exchange while there are more, or more bytes, than the limits allow.
    pub fn pop_over_limits(&mut self) -> Option<Exchange> {
        if self.by_id.len() <= self.max && self.bytes <= self.max_bytes {
            return None;
        }
        let id = self.order.first_key_value()?.1.clone();
        self.remove(&id)
    }

    /// Every exchange, oldest first (at the end).
    pub fn drain(&mut self) -> Vec<Exchange> {
        let ids: Vec<MessageId> = std::mem::take(&mut self.order).into_values().collect();
        let out = ids.iter().filter_map(|id| self.by_id.remove(id)).collect();
        self.by_id.clear();
        self.bytes = 0;
        out
    }
}
