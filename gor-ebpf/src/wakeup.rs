//! When a ring-buffer record wakes the agent (the policy of `gor_common::wakeup`), for
//! both rings: TC segments and TLS plaintext.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    maps::RingBuf,
};
use gor_common::wakeup;

use crate::maps::WAKEUP;

/// `WAKEUP` slot of the `CHUNKS` ring.
pub const RING_CHUNKS: u32 = 0;
/// `WAKEUP` slot of the `TLS_CHUNKS` ring.
pub const RING_TLS: u32 = 1;

/// The submit flags for a record of `ring` seen at `now_ns`, with `waiting` bytes unread
/// ahead of it: a forced wake-up when no record of this ring asked for one in the last
/// interval, or the ring is filling up and none did in the last `FILL_INTERVAL_NS`; else
/// none (the agent is polling). Forced, not the default "wake if the agent waits for this
/// very record": while an earlier record that skipped its wake-up is still unread, the
/// default would not wake the agent either, and the record would wait for the agent's
/// next poll.
#[inline(always)]
pub fn wakeup_flags(ring: &RingBuf, slot: u32, now_ns: u64, waiting: u64) -> u64 {
    let Some(last) = WAKEUP.get_ptr_mut(slot) else {
        return 0;
    };
    // SAFETY: a plain u64 slot; concurrent writers on other CPUs at worst cause one more
    // wake-up or one fewer skipped.
    let last_ns = unsafe { *last };
    let filling = waiting >= ring.query(BPF_RB_RING_SIZE as u64) / wakeup::FILL_DIVISOR;
    let since = now_ns.wrapping_sub(last_ns);
    if since >= wakeup::INTERVAL_NS || (filling && since >= wakeup::FILL_INTERVAL_NS) {
        // SAFETY: as above.
        unsafe { *last = now_ns };
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
