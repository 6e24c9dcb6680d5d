//! The counters of both ends, here (not beside the tasks that count) so that the report
//! can carry them without depending on the pipeline.

/// What `--output-tcp` did with the messages it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpOutputStats {
    /// Taken into a connection's queue.
    pub queued: u64,
    /// Written to a connection (TCP has no acknowledgement of its own: what a connection
    /// that then failed had taken may be lost).
    pub sent: u64,
    pub bytes_sent: u64,
    /// Not taken: the queue was full (the other end slow or away for longer than it holds).
    pub dropped_queue_full: u64,
    /// Connections made after a failed or lost one.
    pub reconnects: u64,
    /// Attempts to connect that failed (refused, TLS handshake).
    pub connect_errors: u64,
    /// Gauge: in the queues now (at exit: never sent).
    pub pending: u64,
    /// Gauge: connections up now.
    pub connected: u64,
}

/// What `--input-tcp` read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpInputStats {
    /// Connections accepted.
    pub connections: u64,
    /// Gauge: connections open now.
    pub open_connections: u64,
    pub bytes: u64,
    /// Messages read, of every type.
    pub messages: u64,
    pub requests: u64,
    /// Original responses (type 2).
    pub responses: u64,
    /// Staging's responses (type 3): counted, not replayed.
    pub staging_responses: u64,
    /// Messages whose payload is not a valid HTTP message: skipped.
    pub invalid: u64,
    /// Stretches of the stream that were not a message (no meta line, too large, a
    /// connection closed inside one): skipped.
    pub malformed: u64,
    /// TLS handshakes that failed, and read errors.
    pub connection_errors: u64,
}
