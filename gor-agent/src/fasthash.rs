//! The hasher of the hot path's connection tables (the reassembler's flows, the framer's
//! connections): a profile of the agent under load showed std's SipHash at 3% of its CPU,
//! for keys of a few words looked up once or twice per segment.
//!
//! The reassembler's keys come from the network: an attacker chooses addresses and ports
//! and could try to make them collide (hash flooding). So this is not an unkeyed FxHash:
//! every table starts from a random seed (drawn from std's `RandomState`, itself seeded by
//! the OS), and each word is mixed with a folded 64x64->128-bit multiplication by a
//! seed-derived factor (the mixing of foldhash, hashbrown's default hasher, and wyhash).
//! Without the seed, colliding keys cannot be computed offline. It is not a cryptographic
//! PRF; it makes the same trade-off as foldhash, and the tables are bounded anyway
//! (`max_connections`, the closed-connection memory).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Odd constant (the golden ratio's fraction), so a zero seed still mixes.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds [`FoldHasher`]s with the seed of one table.
#[derive(Clone, Copy, Debug)]
pub struct SeededState {
    seed: u64,
    factor: u64,
}

impl Default for SeededState {
    fn default() -> Self {
        let seed = RandomState::new().hash_one(K);
        SeededState {
            seed,
            factor: seed.rotate_left(32) ^ K,
        }
    }
}

impl BuildHasher for SeededState {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            acc: self.seed,
            factor: self.factor,
        }
    }
}

/// A hash map keyed by [`SeededState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, SeededState>;

/// See the module documentation.
pub struct FoldHasher {
    acc: u64,
    factor: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.acc
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            // The length in the unused top byte: "a" and "a\0" differ.
            b[7] = rest.len() as u8;
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.acc = folded_multiply(self.acc ^ n, self.factor);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::stream::Flow;

    fn flow(port: u16) -> Flow {
        Flow {
            client: SocketAddr::from(([10, 0, 0, 1], port)),
            server: SocketAddr::from(([10, 1, 0, 1], 80)),
        }
    }

    #[test]
    fn equal_keys_hash_equal_and_neighbours_spread() {
        let s = SeededState::default();
        assert_eq!(s.hash_one(flow(1)), s.hash_one(flow(1)));
        // Neighbouring ports (what a client's connections look like) must not share the
        // bits hashbrown uses: the top 7 for control bytes, the low ones for the bucket.
        let hashes: Vec<u64> = (0..1024).map(|p| s.hash_one(flow(p))).collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0x3ff).collect();
        let top: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 500, "{} distinct buckets of 1024", low.len());
        assert!(
            top.len() > 110,
            "{} distinct control bytes of 128",
            top.len()
        );
    }

    #[test]
    fn tables_have_their_own_seeds() {
        let (a, b) = (SeededState::default(), SeededState::default());
        assert_ne!(a.hash_one(flow(1)), b.hash_one(flow(1)));
    }

    #[test]
    fn short_byte_strings_differ_by_length() {
        let s = SeededState::default();
        let hash = |b: &[u8]| {
            let mut h = s.build_hasher();
            h.write(b);
            h.finish()
        };
        assert_ne!(hash(b"a"), hash(b"a\0"));
    }
}
