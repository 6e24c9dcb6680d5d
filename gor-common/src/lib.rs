//! Types shared by gor's kernel programs (`gor-ebpf`) and its agent (`gor-agent`).
//!
//! Everything here crosses the kernel/user boundary as raw bytes, so every struct is
//! `#[repr(C)]`, `Copy`, and laid out without implicit padding (padding is spelled out),
//! and the constants are the single source for map names and sizes on both sides.
#![no_std]

/// Bytes of TCP payload carried by one ring-buffer record at most.
///
/// 16 KiB, like DeepFlow's and Beyla's large-buffer path: a 64 KiB GRO/GSO skb is four
/// records, and the per-CPU scratch buffer stays far below the map value size limit.
pub const CHUNK_DATA_LEN: usize = 16 * 1024;

/// How many chunks the classifier emits for one skb at most. Bytes beyond
/// `MAX_CHUNKS_PER_SKB * CHUNK_DATA_LEN` (256 KiB, four times the default GSO maximum)
/// are counted as truncated.
pub const MAX_CHUNKS_PER_SKB: usize = 16;

/// Default size of the ring buffer (must be a power-of-two multiple of the page size).
/// It only has to hold what arrives while the agent is not reading: with wrk flat out on
/// this project's 2-core bench machine the most ever waiting was 276 KiB, so 16 MiB covers
/// a stall about 60 times that long. All of it is resident from the start.
pub const DEFAULT_RING_BYTES: u32 = 16 * 1024 * 1024;

/// When a ring-buffer record wakes the agent. Waking it for every record costs a
/// context switch per packet (most of the agent's CPU under load, and it competes with
/// production for the cores). So a record wakes it only if no record asked to in the
/// last [`wakeup::INTERVAL_NS`], or if 1/[`wakeup::FILL_DIVISOR`] of the ring is waiting
/// and none did in the last [`wakeup::FILL_INTERVAL_NS`];
/// in between, the agent polls the ring every `INTERVAL_NS` for as long as it keeps
/// finding records (and [`wakeup::POLL_IDLE_NS`] more), so nothing waits longer than that.
/// At low rates every record still wakes it at once.
pub mod wakeup {
    pub const INTERVAL_NS: u64 = 500_000;
    pub const FILL_DIVISOR: u64 = 64;
    /// While the ring is filling, the least time between two forced wake-ups: a wake-up is
    /// an interrupt, and an agent that is awake but not running (the CPUs busy with
    /// production) is not woken sooner by one per record.
    pub const FILL_INTERVAL_NS: u64 = INTERVAL_NS / 8;
    /// How long the agent goes on polling after a poll found nothing. Must be well above
    /// `INTERVAL_NS`: a record that skipped its wake-up followed one that asked less than
    /// `INTERVAL_NS` before, which the agent found, so the agent is still polling.
    pub const POLL_IDLE_NS: u64 = 100 * INTERVAL_NS;
}

/// Map names, as the agent looks them up in the loaded object.
pub const MAP_PORTS: &str = "PORTS";
pub const MAP_CHUNKS: &str = "CHUNKS";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_SCRATCH: &str = "SCRATCH";
pub const MAP_EXCLUDED: &str = "EXCLUDED";
pub const MAP_TLS_CHUNKS: &str = "TLS_CHUNKS";
pub const MAP_TLS_CONF: &str = "TLS_CONF";
pub const MAP_TC_CONF: &str = "TC_CONF";

/// Connections excluded from capture at most (the agent's own connections to staging).
pub const MAX_EXCLUDED: u32 = 65536;

/// Program names: one per TC hook, and on a loopback interface one for both directions
/// on its egress hook (every packet there passes egress, then ingress).
pub const PROG_INGRESS: &str = "gor_ingress";
pub const PROG_EGRESS: &str = "gor_egress";
pub const PROG_LOOPBACK: &str = "gor_loopback";
/// Every TC program of the object.
pub const TC_PROGRAMS: [&str; 3] = [PROG_INGRESS, PROG_EGRESS, PROG_LOOPBACK];

/// Entries in the `PORTS` array: one per TCP port, a set of [`port`] bits.
pub const PORTS_LEN: u32 = 65536;

/// What the `PORTS` array's value of a port asks for.
pub mod port {
    /// The TC programs copy the port's segments (plain HTTP).
    pub const TC: u8 = 1;
    /// The OpenSSL probes copy the plaintext of the port's server-side TLS connections;
    /// the TC programs leave the port alone (its segments are ciphertext).
    pub const TLS: u8 = 2;
}

/// TCP flag bits as they appear in the 14th byte of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Which way a captured segment travels, relative to the captured (server) port.
pub mod direction {
    /// Seen on ingress with the destination port captured: client -> server.
    pub const TO_SERVER: u8 = 0;
    /// Seen on egress with the source port captured: server -> client.
    pub const TO_CLIENT: u8 = 1;
}

/// Indices into the per-CPU `COUNTERS` array. The agent sums the CPUs.
pub mod counter {
    /// Packets whose port matched (with or without payload).
    pub const PACKETS_MATCHED: u32 = 0;
    /// Payload bytes copied into the ring buffer.
    pub const BYTES_COPIED: u32 = 1;
    /// Records submitted to the ring buffer.
    pub const CHUNKS_EMITTED: u32 = 2;
    /// Records that could not be written because the ring buffer was full.
    pub const RINGBUF_DROPS: u32 = 3;
    /// Payload bytes those records would have carried.
    pub const RINGBUF_DROPPED_BYTES: u32 = 4;
    /// Packets larger than `MAX_CHUNKS_PER_SKB * CHUNK_DATA_LEN` payload bytes.
    pub const TRUNCATED_PACKETS: u32 = 5;
    /// Payload bytes beyond that limit, not copied.
    pub const TRUNCATED_BYTES: u32 = 6;
    /// IPv4/IPv6 fragments on a watched interface (their TCP header cannot be read).
    pub const FRAGMENTS: u32 = 7;
    /// Packets whose headers could not be read (too short, bad lengths).
    pub const MALFORMED: u32 = 8;
    /// `bpf_skb_load_bytes` failures while copying payload (counted as lost bytes too).
    pub const LOAD_ERRORS: u32 = 9;
    /// Packets of the agent's own connections to staging, not captured.
    pub const EXCLUDED: u32 = 10;
    /// Not a count: the most bytes a record found waiting in the ring buffer for the agent
    /// (per CPU; the agent takes the largest), so how close the ring came to full.
    pub const RING_PEAK_BYTES: u32 = 11;
    /// TLS: returns of `SSL_read`/`SSL_write` (and `_ex`) with data on a captured
    /// server-side connection.
    pub const TLS_CALLS: u32 = 12;
    /// TLS: plaintext bytes copied into the TLS ring buffer.
    pub const TLS_BYTES_COPIED: u32 = 13;
    /// TLS: records submitted to the TLS ring buffer (data and close).
    pub const TLS_RECORDS: u32 = 14;
    /// TLS: records that could not be written because the TLS ring buffer was full.
    pub const TLS_RINGBUF_DROPS: u32 = 15;
    /// TLS: plaintext bytes those records (and failed reads) would have carried.
    pub const TLS_DROPPED_BYTES: u32 = 16;
    /// TLS: bytes of one call beyond `TLS_MAX_CHUNKS_PER_CALL * CHUNK_DATA_LEN`, not copied.
    pub const TLS_TRUNCATED_BYTES: u32 = 17;
    /// TLS: calls with data whose `SSL*` had not been tied to a socket yet (served from
    /// OpenSSL's buffer on a connection that was open before the agent started).
    pub const TLS_UNMAPPED_CALLS: u32 = 18;
    /// Server payload bytes left out by the response snap ([`super::TcConf`]): not
    /// needed, not lost.
    pub const SNAPPED_BYTES: u32 = 19;
    /// Number of counters.
    pub const COUNT: u32 = 20;

    /// Names, indexed like the counters, for logs and reports.
    pub const NAMES: [&str; COUNT as usize] = [
        "packets_matched",
        "bytes_copied",
        "chunks_emitted",
        "ringbuf_drops",
        "ringbuf_dropped_bytes",
        "truncated_packets",
        "truncated_bytes",
        "fragments",
        "malformed",
        "load_errors",
        "excluded",
        "ring_peak_bytes",
        "tls_calls",
        "tls_bytes_copied",
        "tls_records",
        "tls_ringbuf_drops",
        "tls_dropped_bytes",
        "tls_truncated_bytes",
        "tls_unmapped_calls",
        "snapped_bytes",
    ];
}

/// IP family values in [`ChunkHeader::family`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// The fixed header of every ring-buffer record; `len` payload bytes follow it.
///
/// Addresses are 16 bytes; an IPv4 address uses the first 4 (network order).
/// Ports are in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the packet was seen.
    pub ts_ns: u64,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// TCP sequence number of the first byte of this chunk.
    pub seq: u32,
    /// Acknowledgement number of the packet (valid when `flags` has ACK).
    pub ack: u32,
    pub sport: u16,
    pub dport: u16,
    /// Payload bytes in this record.
    pub len: u16,
    /// TCP flags of the packet (see [`tcp_flags`]); SYN only on a packet's first chunk,
    /// FIN and RST only on its last.
    pub flags: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// See [`direction`].
    pub direction: u8,
    /// Index of this chunk within its packet.
    pub chunk_index: u8,
    /// 1 when the `truncated` bytes were left out on purpose: a server's bytes beyond
    /// [`TcConf::response_snap`], the rest of a response the agent does not need. They
    /// follow the record's bytes directly and are not lost.
    pub snapped: u8,
    pub _pad: u8,
    pub ifindex: u32,
    /// TCP payload bytes of the whole packet.
    pub payload_len: u32,
    /// Payload bytes of the whole packet that were not copied: beyond
    /// [`MAX_CHUNKS_PER_SKB`] (lost), or beyond the response snap (see `snapped`).
    pub truncated: u32,
}

/// A connection whose packets are not captured: the agent's own connection to a staging
/// target that listens on a captured port (on this host, or reached through a watched
/// interface), so mirrored requests are never captured and mirrored again.
/// The client address is left out: the agent knows its local port before it connects, and
/// the server address and port with it make the key unique on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExcludeKey {
    /// Server (staging) address; IPv4 in the first 4 bytes.
    pub server_addr: [u8; 16],
    /// Server port, host order.
    pub server_port: u16,
    /// The agent's local port, host order.
    pub client_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<ExcludeKey>() == 16 + 2 + 2 + 1 + 3);

/// A ring-buffer record as the kernel builds it in its per-CPU scratch buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Chunk {
    pub header: ChunkHeader,
    pub data: [u8; CHUNK_DATA_LEN],
}

/// The TC programs' settings, from the agent (map `TC_CONF`, one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcConf {
    /// 0: copy every payload byte. N (at most [`CHUNK_DATA_LEN`]): of a packet a server
    /// sends, copy only the first N bytes; the rest is counted as
    /// [`counter::SNAPPED_BYTES`] and marked [`ChunkHeader::snapped`]. The agent sets it
    /// when nothing it runs needs responses, only their heads (to keep the request side
    /// framed: upgrades, CONNECT).
    pub response_snap: u32,
    /// 1 while the agent holds connections in the `EXCLUDED` map; 0: the programs skip
    /// looking packets up in it.
    pub exclusions: u32,
}

/// Size of [`ChunkHeader`] in bytes.
pub const CHUNK_HEADER_LEN: usize = core::mem::size_of::<ChunkHeader>();

// No implicit padding: the size is the sum of the fields.
const _: () =
    assert!(CHUNK_HEADER_LEN == 8 + 16 + 16 + 4 + 4 + 2 + 2 + 2 + 1 + 1 + 1 + 1 + 2 + 4 + 4 + 4);
const _: () = assert!(CHUNK_HEADER_LEN.is_multiple_of(8));

/// How many ring-buffer records one `SSL_read`/`SSL_write` call gives at most; bytes
/// beyond `TLS_MAX_CHUNKS_PER_CALL * CHUNK_DATA_LEN` (512 KiB) are counted as truncated
/// and show as a gap in the stream.
pub const TLS_MAX_CHUNKS_PER_CALL: usize = 32;

/// Default size of the TLS ring buffer.
pub const DEFAULT_TLS_RING_BYTES: u32 = 8 * 1024 * 1024;

/// Kinds of TLS records ([`TlsHeader::kind`]).
pub mod tls_kind {
    /// Plaintext of one direction, at stream position `pos`.
    pub const DATA: u8 = 1;
    /// The connection's socket closed; `pos` and `aux` are the final positions of the
    /// client->server and server->client streams.
    pub const CLOSE: u8 = 2;
}

/// The fixed header of every TLS ring-buffer record; `len` plaintext bytes follow it
/// (none for a close). A connection is (`tgid`, `ssl`, `generation`): an `SSL*` is
/// reused for a later connection by some servers (nginx), and a socket change starts a
/// new generation. Client and server are the remote and the local end of the server's
/// socket; ports in host order, IPv4 addresses in the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsHeader {
    /// `bpf_ktime_get_ns()` when the call returned.
    pub ts_ns: u64,
    /// The `SSL*` in the process.
    pub ssl: u64,
    /// When the kernel tied this `SSL*` to its socket (`bpf_ktime_get_ns`).
    pub generation: u64,
    /// Stream position of the first byte (data), or the final c2s position (close).
    pub pos: u64,
    /// The final s2c position (close); 0 for data.
    pub aux: u64,
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    /// The process (thread group) that owns the `SSL*`.
    pub tgid: u32,
    /// Plaintext bytes in this record.
    pub len: u32,
    pub client_port: u16,
    pub server_port: u16,
    /// See [`tls_kind`].
    pub kind: u8,
    /// See [`direction`]: reads are client->server, writes server->client.
    pub direction: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// 1 when the kernel saw the connection being established after the programs were
    /// attached, so the streams start at their first byte; 0: joined midstream.
    pub fresh: u8,
}

/// Size of [`TlsHeader`] in bytes.
pub const TLS_HEADER_LEN: usize = core::mem::size_of::<TlsHeader>();

const _: () = assert!(TLS_HEADER_LEN == 8 * 5 + 16 + 16 + 4 + 4 + 2 + 2 + 4);
const _: () = assert!(TLS_HEADER_LEN.is_multiple_of(8));

/// A TLS record as it is reserved in the ring buffer: the header and `N` bytes of room.
/// The kernel reserves the smallest of a few sizes that fits the call's bytes and reads
/// the plaintext straight into the reservation (one copy).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsChunk<const N: usize> {
    pub header: TlsHeader,
    pub data: [u8; N],
}

/// Where the fields of `struct sock_common` are in this kernel, read from its BTF by the
/// agent (the kernel programs have no CO-RE relocations), plus the TLS programs' switch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsConf {
    /// Non-zero: the TLS programs do their work (they are only attached when it is).
    pub enabled: u32,
    pub off_daddr: u32,
    pub off_rcv_saddr: u32,
    pub off_dport: u32,
    pub off_num: u32,
    pub off_family: u32,
    pub off_v6_daddr: u32,
    pub off_v6_rcv_saddr: u32,
}

/// Program names of the TLS probes.
pub const PROG_SSL_READ: &str = "gor_ssl_read";
pub const PROG_SSL_READ_EX: &str = "gor_ssl_read_ex";
pub const PROG_SSL_WRITE: &str = "gor_ssl_write";
pub const PROG_SSL_WRITE_EX: &str = "gor_ssl_write_ex";
pub const PROG_SSL_RETURN: &str = "gor_ssl_return";
pub const PROG_SOCK_SEND: &str = "gor_sock_send";
pub const PROG_SOCK_RECV: &str = "gor_sock_recv";
pub const PROG_SOCK_STATE: &str = "gor_sock_state";

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `repr(C)`, no padding (asserted above), any bit pattern valid.
    unsafe impl aya::Pod for super::TlsHeader {}
    // SAFETY: as above: eight u32.
    unsafe impl aya::Pod for super::TlsConf {}
    // SAFETY: as above: two u32.
    unsafe impl aya::Pod for super::TcConf {}
    // SAFETY: plain-old-data, `repr(C)`, no padding (asserted above), any bit pattern valid.
    unsafe impl aya::Pod for super::ChunkHeader {}
    // SAFETY: as above (size asserted).
    unsafe impl aya::Pod for super::ExcludeKey {}
}
