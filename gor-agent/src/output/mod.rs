//! Outputs: where ordered streams (and, later, HTTP messages) go.
//!
//! An output takes events one at a time; it must not block the capture path for long
//! (the debug outputs here write to local files or a terminal).
pub mod messages;
pub mod settings;
pub mod stdout;
pub mod streams_dir;

use crate::stream::StreamEvent;

/// A consumer of ordered byte streams.
pub trait StreamOutput: Send {
    fn event(&mut self, ev: &StreamEvent) -> std::io::Result<()>;
    /// Called once when the source has ended.
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
