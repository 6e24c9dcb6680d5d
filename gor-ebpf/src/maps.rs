//! Every map of the kernel programs, in one place.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use gor_common::{
    counter, port, Chunk, ExcludeKey, TcConf, TlsConf, DEFAULT_RING_BYTES, DEFAULT_TLS_RING_BYTES,
    MAX_EXCLUDED, PORTS_LEN,
};

use crate::tls::{SslConn, SslKey, TlsCall};

/// Captured TCP ports: index = port, value = `gor_common::port` bits. Written by the agent before it
/// attaches. An array rather than a hash map: one bounds check, no hashing per packet.
#[map(name = "PORTS")]
pub static PORTS: Array<u8> = Array::with_max_entries(PORTS_LEN, 0);

/// Chunk records (`ChunkHeader` + payload) for the agent. The agent may resize it at load.
#[map(name = "CHUNKS")]
pub static CHUNKS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// When a record last asked to wake the agent (`bpf_ktime_get_ns`), for the policy in
/// `gor_common::wakeup`: slot 0 for `CHUNKS`, slot 1 for `TLS_CHUNKS`. One slot per ring
/// for all CPUs: a race only costs an extra wake-up.
#[map(name = "WAKEUP")]
pub static WAKEUP: Array<u64> = Array::with_max_entries(2, 0);

/// TLS plaintext records (`TlsHeader` + bytes) for the agent. The agent sizes it at load
/// (one page when TLS capture is off).
#[map(name = "TLS_CHUNKS")]
pub static TLS_CHUNKS: RingBuf = RingBuf::with_byte_size(DEFAULT_TLS_RING_BYTES, 0);

/// The TLS programs' switch and `struct sock_common`'s field offsets, from the agent.
#[map(name = "TLS_CONF")]
pub static TLS_CONF: Array<TlsConf> = Array::with_max_entries(1, 0);

/// The `SSL_read`/`SSL_write` call each thread is in (key: pid_tgid), from entry to return.
/// LRU: a thread that never returns (killed) cannot fill it.
#[map(name = "TLS_CALLS")]
pub static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// Each `SSL*` (per process) that touched a socket, with its connection and positions.
#[map(name = "TLS_CONNS")]
pub static TLS_CONNS: LruHashMap<SslKey, SslConn> = LruHashMap::with_max_entries(65536, 0);

/// Captured sockets (`struct sock *`) and the `SSL*` tied to them, to end the connection
/// when the socket closes.
#[map(name = "TLS_SOCKS")]
pub static TLS_SOCKS: LruHashMap<u64, SslKey> = LruHashMap::with_max_entries(65536, 0);

/// Sockets on TLS ports seen being established since the programs were attached: their
/// streams start at the first byte. Taken out when the `SSL*` is tied to the socket.
#[map(name = "TLS_FRESH")]
pub static TLS_FRESH: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// The TC programs' settings (`TcConf`), from the agent; all zero (copy everything)
/// until it writes them.
#[map(name = "TC_CONF")]
pub static TC_CONF: Array<TcConf> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `gor_common::counter`.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU scratch space where a record is assembled: a 16 KiB chunk does not fit on the
/// 512-byte BPF stack.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Chunk> = PerCpuArray::with_max_entries(1, 0);

/// The agent's own connections to staging (see `ExcludeKey`): never captured.
#[map(name = "EXCLUDED")]
pub static EXCLUDED: HashMap<ExcludeKey, u8> = HashMap::with_max_entries(MAX_EXCLUDED, 0);

/// `true` if the packet belongs to one of the agent's own connections (looked up only
/// while the agent says it has any).
#[inline(always)]
pub fn excluded(key: &ExcludeKey) -> bool {
    if !matches!(TC_CONF.get(0), Some(c) if c.exclusions != 0) {
        return false;
    }
    // SAFETY: the value is only tested for presence, never held across a map update.
    unsafe { EXCLUDED.get(key) }.is_some()
}

/// Adds `n` to counter `idx` of this CPU.
#[inline(always)]
pub fn count(idx: u32, n: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU value; TC programs run with migration disabled, so no other
        // program touches this CPU's slot concurrently.
        unsafe { *c += n };
    }
}

/// Raises slot `idx` of this CPU to `v` if `v` is larger.
#[inline(always)]
pub fn peak(idx: u32, v: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: as in `count`.
        unsafe {
            if v > *c {
                *c = v;
            }
        }
    }
}

/// How many payload bytes of a server's packet to copy: all (`u32::MAX`) unless the
/// agent set a response snap.
#[inline(always)]
pub fn response_snap() -> u32 {
    match TC_CONF.get(0) {
        Some(c) if c.response_snap > 0 => c.response_snap,
        _ => u32::MAX,
    }
}

/// `true` if `p`'s segments are captured by the TC programs.
#[inline(always)]
pub fn port_captured(p: u16) -> bool {
    matches!(PORTS.get(p as u32), Some(v) if *v & port::TC != 0)
}

/// `true` if `p`'s TLS connections are captured by the OpenSSL probes.
#[inline(always)]
pub fn tls_port(p: u16) -> bool {
    matches!(PORTS.get(p as u32), Some(v) if *v & port::TLS != 0)
}
