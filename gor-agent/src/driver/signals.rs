//! SIGTERM and SIGINT, the two ways an operator (or systemd) stops the agent, and
//! `GOR_EXIT_AFTER` (GoReplay's `--exit-after`), which stops it the same way after a
//! while.

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;
use tracing::info;

pub struct StopSignals {
    term: Signal,
    int: Signal,
    /// When `GOR_EXIT_AFTER` is up.
    deadline: Option<Instant>,
}

impl StopSignals {
    /// The signals, and a deadline `exit_after` from now.
    pub fn new(exit_after: Option<Duration>) -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            deadline: exit_after.map(|d| Instant::now() + d),
        })
    }

    /// Resolves at the next of them (or the deadline), logged. Cancel-safe.
    pub async fn recv(&mut self) {
        let at = self.deadline;
        let deadline = async move {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM: stopping"),
            _ = self.int.recv() => info!("SIGINT: stopping"),
            _ = deadline => info!("exit-after: stopping"),
        }
    }
}
