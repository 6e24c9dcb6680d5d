//! Every map of the kernel programs, in one place.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use gor_common::{counter, Chunk, ExcludeKey, DEFAULT_RING_BYTES, MAX_EXCLUDED, PORTS_LEN};

/// Captured TCP ports: index = port, non-zero = capture. Written by the agent before it
/// attaches. An array rather than a hash map: one bounds check, no hashing per packet.
#[map(name = "PORTS")]
pub static PORTS: Array<u8> = Array::with_max_entries(PORTS_LEN, 0);

/// Chunk records (`ChunkHeader` + payload) for the agent. The agent may resize it at load.
#[map(name = "CHUNKS")]
pub static CHUNKS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// When a record last asked to wake the agent (`bpf_ktime_get_ns`), for the policy in
/// `gor_common::wakeup`. One slot for all CPUs: a race only costs an extra wake-up.
#[map(name = "WAKEUP")]
pub static WAKEUP: Array<u64> = Array::with_max_entries(1, 0);

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

/// `true` if the packet belongs to one of the agent's own connections.
#[inline(always)]
pub fn excluded(key: &ExcludeKey) -> bool {
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

/// `true` if `port` is captured.
#[inline(always)]
pub fn port_captured(port: u16) -> bool {
    matches!(PORTS.get(port as u32), Some(v) if *v != 0)
}
