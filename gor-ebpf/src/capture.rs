//! Copies one packet's TCP payload into the ring buffer, in chunks of at most
//! `CHUNK_DATA_LEN` bytes, each tagged with its flow and the sequence number of its first
//! byte, so the agent can put a stream together whatever order the chunks come in.

use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA, helpers::bpf_ktime_get_ns, programs::TcContext, EbpfContext,
};
use aya_log_ebpf::warn;
use gor_common::{
    counter, direction, tcp_flags, ExcludeKey, CHUNK_DATA_LEN, CHUNK_HEADER_LEN, MAX_CHUNKS_PER_SKB,
};

use crate::{
    headers::{self, Skip},
    maps::{count, excluded, peak, port_captured, response_snap, CHUNKS, SCRATCH},
    wakeup::{wakeup_flags, RING_CHUNKS},
};

/// Where a program runs, which says which packets are a captured server's.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Arriving packets: those for a captured port are a client's.
    Ingress,
    /// Leaving packets: those from a captured port are a server's.
    Egress,
    /// A loopback interface's egress, which every packet on it passes once: a client's if
    /// it goes to a captured port, else a server's if it comes from one.
    Loopback,
}

/// Observes one packet. Whatever happens here, the caller lets the packet through.
#[inline(always)]
pub fn packet(ctx: &TcContext, hook: Hook) {
    let tcp = match headers::parse(ctx) {
        Ok(tcp) => tcp,
        Err(Skip::NotOurs | Skip::NotLinear) => return,
        Err(Skip::Fragment) => return count(counter::FRAGMENTS, 1),
        Err(Skip::Malformed) => return count(counter::MALFORMED, 1),
    };
    let dir = match hook {
        Hook::Ingress if port_captured(tcp.dport) => direction::TO_SERVER,
        Hook::Egress if port_captured(tcp.sport) => direction::TO_CLIENT,
        Hook::Loopback if port_captured(tcp.dport) => direction::TO_SERVER,
        Hook::Loopback if port_captured(tcp.sport) => direction::TO_CLIENT,
        _ => return,
    };
    let key = if dir == direction::TO_SERVER {
        ExcludeKey {
            server_addr: tcp.daddr,
            server_port: tcp.dport,
            client_port: tcp.sport,
            family: tcp.family,
            _pad: [0; 3],
        }
    } else {
        ExcludeKey {
            server_addr: tcp.saddr,
            server_port: tcp.sport,
            client_port: tcp.dport,
            family: tcp.family,
            _pad: [0; 3],
        }
    };
    if excluded(&key) {
        return count(counter::EXCLUDED, 1);
    }
    count(counter::PACKETS_MATCHED, 1);
    // Pure ACKs carry nothing the agent needs; SYN/FIN/RST mark connection start and end.
    if tcp.payload_len == 0 && tcp.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0 {
        return;
    }

    let Some(chunk) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch value lives as long as the program runs, and TC programs
    // are not re-entered on the same CPU.
    let chunk = unsafe { &mut *chunk };
    // A server's bytes past the snap are not needed (the agent frames only response
    // heads): left out on purpose, and marked so, not lost.
    let snap = if dir == direction::TO_CLIENT {
        response_snap()
    } else {
        u32::MAX
    };
    let snapped = tcp.payload_len > snap;
    let max = if snapped {
        snap
    } else {
        (MAX_CHUNKS_PER_SKB * CHUNK_DATA_LEN) as u32
    };
    let truncated = tcp.payload_len.saturating_sub(max);
    if snapped {
        count(counter::SNAPPED_BYTES, truncated as u64);
    } else if truncated > 0 {
        count(counter::TRUNCATED_PACKETS, 1);
        count(counter::TRUNCATED_BYTES, truncated as u64);
        warn!(
            ctx,
            "gor: {} payload bytes of a packet beyond the copy limit", truncated
        );
    }

    let h = &mut chunk.header;
    // SAFETY: the helper only reads the monotonic clock.
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.saddr = tcp.saddr;
    h.daddr = tcp.daddr;
    h.ack = tcp.ack;
    h.sport = tcp.sport;
    h.dport = tcp.dport;
    h.flags = tcp.flags;
    h.family = tcp.family;
    h.direction = dir;
    h.snapped = snapped as u8;
    h._pad = 0;
    // SAFETY: reads a field of the program's own context.
    h.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    h.payload_len = tcp.payload_len;
    h.truncated = truncated;

    if tcp.payload_len == 0 {
        h.seq = tcp.seq;
        h.len = 0;
        h.chunk_index = 0;
        emit(chunk, 0);
        return;
    }

    let copied = tcp.payload_len - truncated;
    for i in 0..MAX_CHUNKS_PER_SKB as u32 {
        let off = i * CHUNK_DATA_LEN as u32;
        if off >= copied {
            break;
        }
        let left = copied - off;
        let n = if left > CHUNK_DATA_LEN as u32 {
            CHUNK_DATA_LEN as u32
        } else {
            left
        };
        // The verifier must see 0 < n <= CHUNK_DATA_LEN for the helper's length argument
        // (a zero-sized read is rejected: aya issue #1207). LLVM knows n > 0 here and would
        // drop a plain check, and the verifier cannot derive it (it lost the relation
        // between `left` and the loop bound), so hide n from the optimiser and check both.
        let n = core::hint::black_box(n);
        if n == 0 || n > CHUNK_DATA_LEN as u32 {
            break;
        }
        // SAFETY: `data` has CHUNK_DATA_LEN bytes and n is at most that.
        let ret = unsafe {
            aya_ebpf::helpers::bpf_skb_load_bytes(
                ctx.as_ptr(),
                tcp.payload_off + off,
                chunk.data.as_mut_ptr().cast(),
                n,
            )
        };
        if ret != 0 {
            count(counter::LOAD_ERRORS, 1);
            count(counter::RINGBUF_DROPPED_BYTES, n as u64);
            continue;
        }
        // A packet's SYN belongs to its first byte and its FIN/RST to its end, so
        // they go on the first and the last chunk only (none on a truncated packet: its
        // end was not copied, and the missing bytes must show as a gap before the FIN;
        // a snapped packet's end is known, so its FIN stays).
        let mut flags = tcp.flags;
        if i > 0 {
            flags &= !tcp_flags::SYN;
        }
        let whole = if snapped { copied } else { tcp.payload_len };
        if off + n < whole {
            flags &= !(tcp_flags::FIN | tcp_flags::RST);
        }
        chunk.header.flags = flags;
        chunk.header.seq = tcp.seq.wrapping_add(off);
        chunk.header.len = n as u16;
        chunk.header.chunk_index = i as u8;
        emit(chunk, n);
    }
}

/// Writes the header and the first `n` data bytes of the scratch record to the ring buffer.
#[inline(always)]
fn emit(chunk: &gor_common::Chunk, n: u32) {
    let size = CHUNK_HEADER_LEN + n as usize;
    // SAFETY: `Chunk` is repr(C): the header is followed directly by the data bytes, and
    // `size` is at most the size of the struct.
    let bytes = unsafe {
        core::slice::from_raw_parts((chunk as *const gor_common::Chunk).cast::<u8>(), size)
    };
    let waiting = CHUNKS.query(BPF_RB_AVAIL_DATA as u64);
    peak(counter::RING_PEAK_BYTES, waiting);
    match CHUNKS.output::<[u8]>(
        bytes,
        wakeup_flags(&CHUNKS, RING_CHUNKS, chunk.header.ts_ns, waiting),
    ) {
        Ok(()) => {
            count(counter::CHUNKS_EMITTED, 1);
            count(counter::BYTES_COPIED, n as u64);
        }
        Err(_) => {
            count(counter::RINGBUF_DROPS, 1);
            count(counter::RINGBUF_DROPPED_BYTES, n as u64);
        }
    }
}
