//! Where record payloads are copied out of a ring buffer: consecutive small payloads share
//! one block, so a record costs no allocation of its own (a block, and its shared header,
//! are allocated once per [`BLOCK`] bytes). The bytes must leave the ring: the kernel
//! reuses its space once the agent has moved past a record.
//!
//! A payload holds its whole block alive, as it held its own copy before: while a message
//! waits for its next segment, or sits in an output's queue, its block stays. A block is
//! no bigger than the largest record (`CHUNK_DATA_LEN`), so what one held payload can keep
//! alive is bounded as before; payloads over [`OWN_ABOVE`] bytes get their own copy, so a
//! big one never keeps small neighbours' memory.

use bytes::{Bytes, BytesMut};

/// Bytes per shared block.
pub const BLOCK: usize = 16 * 1024;
/// Payloads longer than this are copied alone.
pub const OWN_ABOVE: usize = 4 * 1024;

/// The block being filled.
#[derive(Default)]
pub struct Slab {
    block: BytesMut,
}

impl Slab {
    /// A copy of `payload` that shares a block with its neighbours.
    pub fn copy(&mut self, payload: &[u8]) -> Bytes {
        if payload.is_empty() {
            return Bytes::new();
        }
        if payload.len() > OWN_ABOVE {
            return Bytes::copy_from_slice(payload);
        }
        if self.block.capacity() - self.block.len() < payload.len() {
            // The previous block lives on in the payloads that share it.
            self.block = BytesMut::with_capacity(BLOCK);
        }
        self.block.extend_from_slice(payload);
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_share_a_block_and_keep_their_bytes() {
        let mut slab = Slab::default();
        let a = slab.copy(b"GET / HTTP/1.1\r\n\r\n");
        let b = slab.copy(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(&a[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(&b[..], b"HTTP/1.1 200 OK\r\n\r\n");
        // Side by side in one block.
        assert_eq!(a.as_ptr() as usize + a.len(), b.as_ptr() as usize);
        assert!(slab.copy(b"").is_empty());

        // A full block is left to its payloads; the next one starts afresh.
        let fill = vec![b'x'; OWN_ABOVE];
        let mut held = vec![a.clone()];
        for _ in 0..BLOCK / OWN_ABOVE + 1 {
            held.push(slab.copy(&fill));
        }
        assert!(held.iter().skip(1).all(|p| p[..] == fill[..]));
        assert_eq!(&a[..], b"GET / HTTP/1.1\r\n\r\n");

        // Big payloads are their own.
        let big = vec![b'y'; OWN_ABOVE + 1];
        let c = slab.copy(&big);
        let d = slab.copy(b"z");
        assert_eq!(&c[..], &big[..]);
        assert_ne!(c.as_ptr() as usize + c.len(), d.as_ptr() as usize);
    }
}
