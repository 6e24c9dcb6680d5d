//! The bytes of the message being framed in one direction, without copying them when
//! they can be shared.
//!
//! Most messages arrive inside one `Data` event (a segment holds whole small messages, and
//! pipelined ones side by side). While every byte of the message so far is one contiguous
//! run of a single event's bytes, the buffer is only a shared view of that event
//! (`Bytes::clone`, no allocation, no copy) and the emitted `raw` is a slice of it. Only
//! when a message continues in another event are its bytes copied into a `BytesMut` (once,
//! then appended). A view keeps its whole event alive until the message is taken: at
//! most one event's bytes per direction beyond what [`MsgBuf::len`] counts.

use std::ops::Deref;

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub(super) struct MsgBuf {
    /// From the message's first byte to the end of the event it came in (while shared).
    view: Bytes,
    /// How many bytes of `view` belong to the message.
    view_len: usize,
    /// The message's bytes once they span events; empty while `view_len` counts.
    copy: BytesMut,
}

impl MsgBuf {
    pub(super) fn len(&self) -> usize {
        self.view_len + self.copy.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the first `n` bytes of `chunk`, which continue the message.
    pub(super) fn push(&mut self, chunk: &Bytes, n: usize) {
        let n = n.min(chunk.len());
        if n == 0 {
            return;
        }
        if !self.copy.is_empty() {
            self.copy.extend_from_slice(&chunk[..n]);
        } else if self.view_len == 0 {
            self.view = chunk.clone();
            self.view_len = n;
        } else if self.view.len() >= self.view_len + n
            && self.view[self.view_len..].as_ptr() == chunk.as_ptr()
        {
            // The same memory right after the view: the bytes are already in it.
            self.view_len += n;
        } else {
            self.copy.reserve(self.view_len + n);
            self.copy.extend_from_slice(&self.view[..self.view_len]);
            self.copy.extend_from_slice(&chunk[..n]);
            self.view = Bytes::new();
            self.view_len = 0;
        }
    }

    /// Takes the message's bytes, leaving the buffer empty.
    pub(super) fn take(&mut self) -> Bytes {
        if self.view_len > 0 {
            let raw = self.view.slice(..self.view_len);
            self.view = Bytes::new();
            self.view_len = 0;
            raw
        } else if self.copy.is_empty() {
            // Nothing to take (a response framed but not kept): splitting even an empty
            // buffer would allocate its shared header.
            Bytes::new()
        } else {
            self.copy.split().freeze()
        }
    }

    /// Empties the buffer, keeping the copy's capacity for the next message.
    pub(super) fn clear(&mut self) {
        self.view = Bytes::new();
        self.view_len = 0;
        self.copy.clear();
    }

    /// Empties the buffer and frees its memory.
    pub(super) fn release(&mut self) {
        *self = MsgBuf::default();
    }
}

impl Deref for MsgBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.view_len > 0 {
            &self.view[..self.view_len]
        } else {
            &self.copy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_pushes_share_the_event() {
        let ev = Bytes::from_static(b"GET / HTTP/1.1\r\n\r\nrest");
        let mut b = MsgBuf::default();
        b.push(&ev, 4);
        b.push(&ev.slice(4..), 14);
        assert_eq!(&b[..], b"GET / HTTP/1.1\r\n\r\n");
        let raw = b.take();
        assert_eq!(raw.as_ptr(), ev.as_ptr());
        assert!(b.is_empty());
    }

    #[test]
    fn a_second_event_is_copied_after_the_first() {
        let (a, c) = (
            Bytes::from_static(b"GET / HT"),
            Bytes::from(b"TP/1.1\r\n\r\n".to_vec()),
        );
        let mut b = MsgBuf::default();
        b.push(&a, a.len());
        b.push(&c, c.len());
        b.push(&Bytes::from_static(b"xy"), 1);
        assert_eq!(b.len(), 19);
        assert_eq!(&b.take()[..], b"GET / HTTP/1.1\r\n\r\nx");
        assert!(b.is_empty());
        b.push(&a, 3);
        assert_eq!(&b[..], b"GET");
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn an_empty_buffer_takes_as_empty() {
        let mut b = MsgBuf::default();
        assert!(b.take().is_empty());
        b.push(&Bytes::from_static(b"HTTP/1.1 200 OK\r\n"), 4);
        b.release();
        assert!(b.take().is_empty());
    }
}
