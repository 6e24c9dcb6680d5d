//! gor's kernel side: TC classifiers that copy the TCP payload of chosen ports into a
//! ring buffer, and never touch the packets they see; and, for ports where this host's
//! processes terminate TLS with OpenSSL, probes that copy the plaintext (see [`tls`]).
//!
//! ```text
//! ingress (dst port captured) ──┐
//! egress  (src port captured) ──┼─ capture::packet ─> CHUNKS ring buffer ─> gor-agent
//! lo egress (either, once) ─────┘        │
//!                                        └─> COUNTERS (per CPU)
//! SSL_read/SSL_write (+ _ex) ───┐
//! sock_{send,recv}_length ──────┼─ tls ─> TLS_CHUNKS ring buffer ─> gor-agent
//! inet_sock_set_state ──────────┘
//! ```
#![no_std]
#![no_main]

mod capture;
mod headers;
mod maps;
mod tls;
mod wakeup;

use aya_ebpf::{
    macros::{classifier, raw_tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext, TcContext},
};
use gor_common::direction;

use crate::capture::Hook;

/// What every program returns: "no opinion", so the packet continues unchanged.
///
/// `TC_ACT_UNSPEC` (-1) is `TCX_NEXT` on tcx links (kernel >= 6.6) and "continue with the
/// next filter" for cls_bpf in direct-action mode. `TC_ACT_OK` (0) would instead end the
/// chain and skip the programs of other tools attached after ours.
const TC_ACT_UNSPEC: i32 = -1;

/// Client -> server: segments arriving for a captured port.
#[classifier]
pub fn gor_ingress(ctx: TcContext) -> i32 {
    capture::packet(&ctx, Hook::Ingress);
    TC_ACT_UNSPEC
}

/// Server -> client: segments leaving from a captured port.
#[classifier]
pub fn gor_egress(ctx: TcContext) -> i32 {
    capture::packet(&ctx, Hook::Egress);
    TC_ACT_UNSPEC
}

/// Both directions on a loopback interface, where every packet leaves through egress and
/// comes back through ingress: one run per packet instead of two (half of them turning
/// the packet away).
#[classifier]
pub fn gor_loopback(ctx: TcContext) -> i32 {
    capture::packet(&ctx, Hook::Loopback);
    TC_ACT_UNSPEC
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`: plaintext client -> server.
#[uprobe]
pub fn gor_ssl_read(ctx: ProbeContext) -> u32 {
    tls::enter(&ctx, direction::TO_SERVER, false);
    0
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`.
#[uprobe]
pub fn gor_ssl_read_ex(ctx: ProbeContext) -> u32 {
    tls::enter(&ctx, direction::TO_SERVER, true);
    0
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`: plaintext server -> client.
#[uprobe]
pub fn gor_ssl_write(ctx: ProbeContext) -> u32 {
    tls::enter(&ctx, direction::TO_CLIENT, false);
    0
}

/// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn gor_ssl_write_ex(ctx: ProbeContext) -> u32 {
    tls::enter(&ctx, direction::TO_CLIENT, true);
    0
}

/// The return of any of the four.
#[uretprobe]
pub fn gor_ssl_return(ctx: RetProbeContext) -> u32 {
    tls::leave(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn gor_sock_send(ctx: RawTracePointContext) -> u32 {
    tls::sock_io(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn gor_sock_recv(ctx: RawTracePointContext) -> u32 {
    tls::sock_io(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn gor_sock_state(ctx: RawTracePointContext) -> u32 {
    tls::sock_state(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
