//! NATS JetStream between the two parts of a fleet: listeners on the production hosts
//! publish what they frame, replay servers elsewhere consume it and mirror it to staging
//! at one rate for the whole fleet.
//!
//! ```text
//!  production host                      NATS JetStream                    replay servers
//!  capture ─> framing ─> dispatch ─> [Publisher] ──> stream GOR ──> partition p ─> [ReplayServer] ─> dispatch ─> staging
//!                         (filters,   bounded queue,  gor.<p>.<host>   one consumer     (a Source:       (mirror, compare,
//!                          middleware) dropped+counted  file storage    at a time        whole messages)    rate from the KV)
//! ```
//!
//! - [`wire`], one HTTP message as one JetStream message (subject, `Nats-Msg-Id`,
//!   headers, payload);
//! - [`connect`], the connection, the stream and the key-value buckets;
//! - [`partitions`], which replay server consumes which partition (claims with a lease);
//! - [`rate`], the fleet's per-second budget of each staging target, in a bucket;
//! - [`settings`], `GOR_NATS_*`.

pub mod connect;
pub mod partitions;
pub mod publish;
pub mod rate;
pub mod settings;
pub mod stats;
pub mod wire;

#[cfg(test)]
pub(crate) mod testing;

pub use settings::{NatsArgs, NatsConfig};
