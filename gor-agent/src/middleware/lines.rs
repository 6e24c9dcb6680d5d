//! Splits a child's output into lines with a bound on the line length, without IO so it
//! can be tested on any chunking. A child that never writes a newline must not make us
//! buffer without limit: past the bound the line is reported once as too long and the
//! rest of it, up to the next newline, is skipped.

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A whole line, without its `\n` (a `\r` before it is left to the caller).
    Complete(&'a [u8]),
    /// A line longer than the bound: its beginning (at most the bound), for logging.
    TooLong(&'a [u8]),
}

pub(crate) struct LineSplitter {
    max: usize,
    /// The beginning of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// Inside a line already reported as too long.
    skipping: bool,
}

/// A partial buffer grown larger than this by one long line is freed afterwards, so one
/// huge message does not pin its memory for the life of the child.
const KEEP_CAPACITY: usize = 1 << 20;

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            partial: Vec::new(),
            skipping: false,
        }
    }

    /// Feeds a chunk of output; `f` is called for every line it completes.
    pub fn feed(&mut self, mut chunk: &[u8], f: &mut impl FnMut(Line<'_>)) {
        while !chunk.is_empty() {
            let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
                self.extend(chunk, f);
                return;
            };
            let head = &chunk[..nl];
            chunk = &chunk[nl + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                // The common case: the whole line is in the chunk, no copy.
                if head.len() > self.max {
                    f(Line::TooLong(&head[..self.max]));
                } else {
                    f(Line::Complete(head));
                }
            } else if self.partial.len() + head.len() > self.max {
                let room = self.max - self.partial.len();
                self.partial.extend_from_slice(&head[..room]);
                f(Line::TooLong(&self.partial));
            } else {
                self.partial.extend_from_slice(head);
                f(Line::Complete(&self.partial));
            }
            self.clear();
        }
    }

    /// The output ended: a last line without a newline still counts.
    pub fn finish(&mut self, f: &mut impl FnMut(Line<'_>)) {
        if !self.skipping && !self.partial.is_empty() {
            f(Line::Complete(&self.partial));
        }
        self.skipping = false;
        self.clear();
    }

    /// Keeps a chunk that holds no newline.
    fn extend(&mut self, chunk: &[u8], f: &mut impl FnMut(Line<'_>)) {
        if self.skipping {
            return;
        }
        if self.partial.len() + chunk.len() > self.max {
            let room = self.max - self.partial.len();
            self.partial.extend_from_slice(&chunk[..room]);
            f(Line::TooLong(&self.partial));
            self.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    fn clear(&mut self) {
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}
