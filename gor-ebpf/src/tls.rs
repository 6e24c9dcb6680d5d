//! TLS plaintext from OpenSSL: probes on `SSL_read`/`SSL_write` (and their `_ex` forms)
//! copy what the call read or wrote, and the socket tracepoints that fire inside the call
//! tell which connection the `SSL*` belongs to.
//!
//! ```text
//! uprobe SSL_read/_write(ssl, buf, n) ─> TLS_CALLS[thread] = (ssl, buf, direction)
//!   raw_tp sock_recv_length/sock_send_length(sk) on the same thread
//!       ─> TLS_CONNS[(process, ssl)] = socket, addresses, positions (a new generation
//!          when the socket changed); TLS_SOCKS[sk] = (process, ssl) on captured ports
//! uretprobe ─> bytes done ─> TLS_CHUNKS records at the direction's stream position
//! raw_tp inet_sock_set_state(sk, old, new)
//!       SYN_RECV -> ESTABLISHED on a TLS port ─> TLS_FRESH[sk] (streams start at byte 0)
//!       -> CLOSE of a captured socket ─> a close record with the final positions
//! ```
//!
//! Only server-side connections whose local port is a TLS port are kept: a client's
//! `SSL*` (curl on the same host) is tied to its socket once and ignored from then on.
//! Positions advance whether or not the bytes reach the ring, so a full ring, a failed
//! read or a truncated call shows up in the agent as a gap, never as joined bytes.

use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use gor_common::{
    counter, direction, tls_kind, TlsChunk, TlsConf, TlsHeader, CHUNK_DATA_LEN, FAMILY_V4,
    FAMILY_V6, TLS_MAX_CHUNKS_PER_CALL,
};

use crate::{
    maps::{
        count, peak, tls_port, TLS_CALLS, TLS_CHUNKS, TLS_CONF, TLS_CONNS, TLS_FRESH, TLS_SOCKS,
    },
    wakeup::{wakeup_flags, RING_TLS},
};

/// An `SSL_read`/`SSL_write` call in progress on a thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// `_ex` calls: where the call stores the byte count (`size_t *`); 0 otherwise.
    pub done_ptr: u64,
    pub direction: u8,
    pub _pad: [u8; 7],
}

/// An `SSL*` of a process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslKey {
    pub ssl: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// What an `SSL*` is tied to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslConn {
    pub sk: u64,
    pub generation: u64,
    /// Next stream position, indexed by `direction`.
    pub pos: [u64; 2],
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub family: u8,
    /// 1: a server-side connection on a TLS port (captured); 0: ignored.
    pub ours: u8,
    pub fresh: u8,
    pub _pad: u8,
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;

/// Record sizes the plaintext is reserved in (one copy: read straight into the ring).
const SMALL: usize = 1024;
const MEDIUM: usize = 4096;

#[inline(always)]
fn conf() -> Option<&'static TlsConf> {
    match TLS_CONF.get(0) {
        Some(c) if c.enabled != 0 => Some(c),
        _ => None,
    }
}

/// Entry of a read or write: remembers the call for its return and for the socket
/// tracepoints inside it.
#[inline(always)]
pub fn enter(ctx: &ProbeContext, dir: u8, ex: bool) {
    if conf().is_none() {
        return;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return;
    };
    let done_ptr = if ex {
        match ctx.arg::<u64>(3) {
            Some(p) => p,
            None => return,
        }
    } else {
        0
    };
    let call = TlsCall {
        ssl,
        buf,
        done_ptr,
        direction: dir,
        _pad: [0; 7],
    };
    let _ = TLS_CALLS.insert(&bpf_get_current_pid_tgid(), &call, 0);
}

/// Return of a read or write: copies the bytes it moved, if its `SSL*` is ours.
#[inline(always)]
pub fn leave(ctx: &RetProbeContext) {
    if conf().is_none() {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the entry is removed.
    let Some(call) = (unsafe { TLS_CALLS.get(&id) }).copied() else {
        return;
    };
    let _ = TLS_CALLS.remove(&id);
    // Both forms return an int; the upper half of the register is not part of it.
    let ret: i32 = ctx.ret();
    let n: u64 = if call.done_ptr != 0 {
        if ret != 1 {
            return;
        }
        // SAFETY: reads the caller's size_t through the probe helper, which fails safely.
        match unsafe { aya_ebpf::helpers::bpf_probe_read_user(call.done_ptr as *const u64) } {
            Ok(n) => n,
            Err(_) => return,
        }
    } else if ret > 0 {
        ret as u64
    } else {
        return;
    };
    if n == 0 {
        return;
    }
    let key = SslKey {
        ssl: call.ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    let Some(conn) = TLS_CONNS.get_ptr_mut(&key) else {
        count(counter::TLS_UNMAPPED_CALLS, 1);
        return;
    };
    // SAFETY: the map value stays valid while the program runs; the only writer of a
    // connection's positions is the thread in the call (an `SSL*` is used by one thread
    // at a time), and a race with a new generation at worst misplaces one record, which
    // the agent sees as a gap.
    let conn = unsafe { &mut *conn };
    if conn.ours == 0 {
        return;
    }
    let d = if call.direction == direction::TO_SERVER {
        0
    } else {
        1
    };
    count(counter::TLS_CALLS, 1);
    let start = conn.pos[d];
    conn.pos[d] = start + n;

    let mut h = header(&key, conn, tls_kind::DATA, call.direction);
    h.pos = start;
    let max = (TLS_MAX_CHUNKS_PER_CALL * CHUNK_DATA_LEN) as u64;
    let copied = if n > max { max } else { n };
    if n > max {
        count(counter::TLS_TRUNCATED_BYTES, n - max);
    }
    for i in 0..TLS_MAX_CHUNKS_PER_CALL as u64 {
        let off = i * CHUNK_DATA_LEN as u64;
        if off >= copied {
            break;
        }
        let left = copied - off;
        let m = if left > CHUNK_DATA_LEN as u64 {
            CHUNK_DATA_LEN as u32
        } else {
            left as u32
        };
        // As in `capture::packet`: the verifier must see 0 < m <= the room it is read into.
        let m = core::hint::black_box(m);
        if m == 0 || m > CHUNK_DATA_LEN as u32 {
            break;
        }
        h.pos = start + off;
        h.len = m;
        let src = (call.buf + off) as *const u8;
        if m as usize <= SMALL {
            emit::<SMALL>(&h, src, m);
        } else if m as usize <= MEDIUM {
            emit::<MEDIUM>(&h, src, m);
        } else {
            emit::<CHUNK_DATA_LEN>(&h, src, m);
        }
    }
}

/// A record header for connection `conn` of `key`, stamped now (positions and length 0).
#[inline(always)]
fn header(key: &SslKey, conn: &SslConn, kind: u8, dir: u8) -> TlsHeader {
    TlsHeader {
        // SAFETY: the helper only reads the monotonic clock.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ssl: key.ssl,
        generation: conn.generation,
        pos: 0,
        aux: 0,
        client_addr: conn.client_addr,
        server_addr: conn.server_addr,
        tgid: key.tgid,
        len: 0,
        client_port: conn.client_port,
        server_port: conn.server_port,
        kind,
        direction: dir,
        family: conn.family,
        fresh: conn.fresh,
    }
}

/// Reserves a record with `N` bytes of room, reads `m` (<= N) plaintext bytes from the
/// process into it, and submits it; counts what could not be kept.
#[inline(always)]
fn emit<const N: usize>(h: &TlsHeader, src: *const u8, m: u32) {
    let waiting = TLS_CHUNKS.query(BPF_RB_AVAIL_DATA as u64);
    peak(counter::RING_PEAK_BYTES, waiting);
    let flags = wakeup_flags(&TLS_CHUNKS, RING_TLS, h.ts_ns, waiting);
    let Some(mut entry) = TLS_CHUNKS.reserve::<TlsChunk<N>>(0) else {
        count(counter::TLS_RINGBUF_DROPS, 1);
        count(counter::TLS_DROPPED_BYTES, m as u64);
        return;
    };
    let m = core::hint::black_box(m);
    if m == 0 || m as usize > N {
        entry.discard(0);
        return;
    }
    // 1 <= m <= N and N is a power of two, so this is m; but in a form whose bounds the
    // verifier follows (a plain comparison may be compiled into one it cannot).
    let m = ((m - 1) & (N as u32 - 1)) + 1;
    let rec = entry.as_mut_ptr();
    // SAFETY: the reservation has room for a `TlsChunk<N>`; `m` is at most `N`; the
    // helper fails safely on an unreadable user address.
    let ret = unsafe {
        core::ptr::addr_of_mut!((*rec).header).write(*h);
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            core::ptr::addr_of_mut!((*rec).data).cast(),
            m,
            src.cast(),
        )
    };
    if ret != 0 {
        entry.discard(0);
        count(counter::TLS_DROPPED_BYTES, m as u64);
        return;
    }
    entry.submit(flags);
    count(counter::TLS_RECORDS, 1);
    count(counter::TLS_BYTES_COPIED, m as u64);
}

/// `sock_send_length`/`sock_recv_length`: inside an SSL call, ties the call's `SSL*` to
/// the socket (once per socket: the fast path is one lookup).
#[inline(always)]
pub fn sock_io(ctx: &RawTracePointContext) {
    let Some(conf) = conf() else {
        return;
    };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let Some(call) = (unsafe { TLS_CALLS.get(&id) }).copied() else {
        return;
    };
    let sk: u64 = ctx.arg(0);
    let key = SslKey {
        ssl: call.ssl,
        tgid: (id >> 32) as u32,
        _pad: 0,
    };
    // SAFETY: read at once.
    if let Some(c) = unsafe { TLS_CONNS.get(&key) } {
        if c.sk == sk {
            return;
        }
    }
    let mut conn = SslConn {
        sk,
        // SAFETY: the helper only reads the monotonic clock.
        generation: unsafe { bpf_ktime_get_ns() },
        pos: [0; 2],
        client_addr: [0; 16],
        server_addr: [0; 16],
        client_port: 0,
        server_port: 0,
        family: 0,
        ours: 0,
        fresh: 0,
        _pad: 0,
    };
    if read_sock(conf, sk, &mut conn).is_some() {
        if tls_port(conn.server_port) {
            conn.ours = 1;
            // SAFETY: only tested for presence.
            if unsafe { TLS_FRESH.get(&sk) }.is_some() {
                conn.fresh = 1;
                let _ = TLS_FRESH.remove(&sk);
            }
        }
    }
    let _ = TLS_CONNS.insert(&key, &conn, 0);
    if conn.ours != 0 {
        let _ = TLS_SOCKS.insert(&sk, &key, 0);
    }
}

/// Reads the socket's addresses and ports (offsets from the agent).
#[inline(always)]
fn read_sock(conf: &TlsConf, sk: u64, conn: &mut SslConn) -> Option<()> {
    // SAFETY (every read): kernel reads through the probe helper, which fails safely.
    let family: u16 =
        unsafe { bpf_probe_read_kernel((sk + conf.off_family as u64) as *const u16) }.ok()?;
    let num: u16 =
        unsafe { bpf_probe_read_kernel((sk + conf.off_num as u64) as *const u16) }.ok()?;
    let dport: u16 =
        unsafe { bpf_probe_read_kernel((sk + conf.off_dport as u64) as *const u16) }.ok()?;
    conn.server_port = num;
    conn.client_port = u16::from_be(dport);
    if family == AF_INET {
        conn.family = FAMILY_V4;
        let d: [u8; 4] =
            unsafe { bpf_probe_read_kernel((sk + conf.off_daddr as u64) as *const [u8; 4]) }
                .ok()?;
        let s: [u8; 4] =
            unsafe { bpf_probe_read_kernel((sk + conf.off_rcv_saddr as u64) as *const [u8; 4]) }
                .ok()?;
        conn.client_addr[..4].copy_from_slice(&d);
        conn.server_addr[..4].copy_from_slice(&s);
    } else if family == AF_INET6 {
        conn.family = FAMILY_V6;
        conn.client_addr =
            unsafe { bpf_probe_read_kernel((sk + conf.off_v6_daddr as u64) as *const [u8; 16]) }
                .ok()?;
        conn.server_addr = unsafe {
            bpf_probe_read_kernel((sk + conf.off_v6_rcv_saddr as u64) as *const [u8; 16])
        }
        .ok()?;
    } else {
        return None;
    }
    Some(())
}

/// `inet_sock_set_state`: notes sockets established on TLS ports, and ends the connection
/// of a captured socket that closed.
#[inline(always)]
pub fn sock_state(ctx: &RawTracePointContext) {
    let Some(conf) = conf() else {
        return;
    };
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if new == TCP_ESTABLISHED && old == TCP_SYN_RECV {
        // SAFETY: a kernel read through the probe helper.
        let Ok(num) = (unsafe { bpf_probe_read_kernel((sk + conf.off_num as u64) as *const u16) })
        else {
            return;
        };
        if tls_port(num) {
            let _ = TLS_FRESH.insert(&sk, &1, 0);
        }
        return;
    }
    if new != TCP_CLOSE {
        return;
    }
    // A socket that closed without ever doing TLS (a health check) leaves nothing behind.
    let _ = TLS_FRESH.remove(&sk);
    // SAFETY: copied out at once.
    let Some(key) = (unsafe { TLS_SOCKS.get(&sk) }).copied() else {
        return;
    };
    let _ = TLS_SOCKS.remove(&sk);
    // SAFETY: copied out at once.
    let Some(conn) = (unsafe { TLS_CONNS.get(&key) }).copied() else {
        return;
    };
    if conn.sk != sk {
        return;
    }
    let _ = TLS_CONNS.remove(&key);
    let mut h = header(&key, &conn, tls_kind::CLOSE, 0);
    h.pos = conn.pos[0];
    h.aux = conn.pos[1];
    let waiting = TLS_CHUNKS.query(BPF_RB_AVAIL_DATA as u64);
    match TLS_CHUNKS.output::<TlsHeader>(h, wakeup_flags(&TLS_CHUNKS, RING_TLS, h.ts_ns, waiting)) {
        Ok(()) => count(counter::TLS_RECORDS, 1),
        Err(_) => count(counter::TLS_RINGBUF_DROPS, 1),
    }
}
