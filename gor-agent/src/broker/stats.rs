//! The replay server's consuming counters, here (not beside the consumer) so the report
//! can carry them without depending on the pipeline.

/// What a replay server did with what it took from the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsumeStats {
    /// Messages delivered from the stream.
    pub received: u64,
    /// Of them, delivered more than once (after a nak, an ack that did not arrive in
    /// time, or a replay server that died holding them).
    pub redelivered: u64,
    /// Redelivered requests sent to staging again: possible duplicates at staging.
    pub redelivered_sent: u64,
    /// Redelivered requests this server had sent already: acknowledged, not sent again.
    pub duplicates_skipped: u64,
    /// Not a message gor published: acknowledged and skipped.
    pub decode_errors: u64,
    /// Acknowledged once staging answered.
    pub acked_sent: u64,
    /// Acknowledged without sending, on purpose: filtered, over the rate, sampled out,
    /// not a request (production's responses are acknowledged once taken), dropped by
    /// the middleware.
    pub acked_dropped: u64,
    /// Given back for redelivery: staging failed, or no answer came in time.
    pub nacked: u64,
    /// Of them, for want of an answer in time.
    pub unsettled: u64,
    /// Acknowledgements that could not be sent (NATS down): redelivered later.
    pub ack_errors: u64,
    /// Answers that came after their message was given back.
    pub late_answers: u64,
    /// Gauge: delivered and not yet settled.
    pub inflight: u64,
    /// Gauge: partitions this server consumes now.
    pub partitions_owned: u64,
    /// Fetches from the stream that failed (NATS down, a consumer lost).
    pub fetch_errors: u64,
}
