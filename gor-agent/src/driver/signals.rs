//! SIGTERM and SIGINT, the two ways an operator (or systemd) stops the agent.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub fn new() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next of them, logged.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM: stopping"),
            _ = self.int.recv() => info!("SIGINT: stopping"),
        }
    }
}
