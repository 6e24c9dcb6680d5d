//! gor's kernel side: two TC classifiers that copy the TCP payload of chosen ports into a
//! ring buffer, and never touch the packets they see.
//!
//! ```text
//! ingress (dst port captured) ─┐
//!                               ├─ capture::packet ─> CHUNKS ring buffer ─> gor-agent
//! egress  (src port captured) ─┘        │
//!                                       └─> COUNTERS (per CPU)
//! ```
#![no_std]
#![no_main]

mod capture;
mod headers;
mod maps;

use aya_ebpf::{macros::classifier, programs::TcContext};
use gor_common::direction;

/// What every program returns: "no opinion", so the packet continues unchanged.
///
/// `TC_ACT_UNSPEC` (-1) is `TCX_NEXT` on tcx links (kernel >= 6.6) and "continue with the
/// next filter" for cls_bpf in direct-action mode. `TC_ACT_OK` (0) would instead end the
/// chain and skip the programs of other tools attached after ours.
const TC_ACT_UNSPEC: i32 = -1;

/// Client -> server: segments arriving for a captured port.
#[classifier]
pub fn gor_ingress(ctx: TcContext) -> i32 {
    capture::packet(&ctx, direction::TO_SERVER);
    TC_ACT_UNSPEC
}

/// Server -> client: segments leaving from a captured port.
#[classifier]
pub fn gor_egress(ctx: TcContext) -> i32 {
    capture::packet(&ctx, direction::TO_CLIENT);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
