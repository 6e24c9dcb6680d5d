//! Header parsing: Ethernet (with up to two VLAN tags), IPv4 (options), IPv6 (extension
//! headers), TCP (options). Headers are read in place from the skb's linear part when
//! they are there (nearly always: the stack builds them there, GRO pulls them there),
//! with no helper call; otherwise through `bpf_skb_load_bytes` via `TcContext::load`, so
//! non-linear (paged) skbs are read the same way. Neither changes the packet.

use aya_ebpf::programs::TcContext;
use gor_common::{FAMILY_V4, FAMILY_V6};

const ETH_HLEN: u32 = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
/// VLAN tags we look through (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: u32 = 2;
/// IPv6 extension headers we walk before giving up on finding TCP.
const MAX_IPV6_EXT_HEADERS: u32 = 6;
/// Offsets read in place stay below this, so the verifier can bound every packet
/// pointer (Ethernet + 2 VLAN tags + IPv4 with options + TCP is 98 bytes).
const MAX_LINEAR_OFF: u32 = 512;

/// Why a packet is not captured.
pub enum Skip {
    /// Not IP/TCP, or not a port we watch: nothing to count.
    NotOurs,
    /// An IP fragment: its TCP header is in the first fragment only.
    Fragment,
    /// Headers shorter or longer than the packet.
    Malformed,
    /// Internal: a header is not in the linear part; read it with the helper instead.
    NotLinear,
}

/// Where the interesting parts of a TCP/IP packet are.
pub struct Tcp {
    pub family: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Offset of the first payload byte in the skb.
    pub payload_off: u32,
    /// TCP payload bytes (IP length, not skb length: Ethernet padding is not payload).
    pub payload_len: u32,
}

/// Reads `N` header bytes at an offset of the packet.
trait Reader {
    fn bytes<const N: usize>(&self, off: u32) -> Result<[u8; N], Skip>;
}

/// The skb's linear part, read in place.
struct Linear {
    data: usize,
    end: usize,
}

impl Reader for Linear {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: u32) -> Result<[u8; N], Skip> {
        if off >= MAX_LINEAR_OFF {
            return Err(Skip::NotLinear);
        }
        // Hidden from the optimiser: otherwise it folds `+ N` into the variable offset,
        // and the verifier only learns a packet range from a comparison of the pointer
        // plus a constant.
        let p = core::hint::black_box(self.data + off as usize);
        if p + N > self.end {
            return Err(Skip::NotLinear);
        }
        // SAFETY: [p, p + N) is inside the packet's linear data, checked just above
        // (the verifier checks it again); any alignment is fine for a byte array.
        Ok(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }
}

/// Anywhere in the skb, through `bpf_skb_load_bytes`.
struct Loaded<'a>(&'a TcContext);

impl Reader for Loaded<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: u32) -> Result<[u8; N], Skip> {
        self.0
            .load::<[u8; N]>(off as usize)
            .map_err(|_| Skip::Malformed)
    }
}

#[inline(always)]
fn load_u8(r: &impl Reader, off: u32) -> Result<u8, Skip> {
    r.bytes::<1>(off).map(|b| b[0])
}

#[inline(always)]
fn load_be16(r: &impl Reader, off: u32) -> Result<u16, Skip> {
    r.bytes::<2>(off).map(u16::from_be_bytes)
}

#[inline(always)]
fn load_be32(r: &impl Reader, off: u32) -> Result<u32, Skip> {
    r.bytes::<4>(off).map(u32::from_be_bytes)
}

#[inline(always)]
fn load_addr<const N: usize>(r: &impl Reader, off: u32) -> Result<[u8; 16], Skip> {
    let mut out = [0u8; 16];
    let part = r.bytes::<N>(off)?;
    out[..N].copy_from_slice(&part);
    Ok(out)
}

/// Parses the headers of an Ethernet frame carrying TCP over IPv4 or IPv6: in place
/// when they are in the linear part, else through the helper.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Tcp, Skip> {
    let linear = Linear {
        data: ctx.data(),
        end: ctx.data_end(),
    };
    match parse_with(&linear, ctx.len()) {
        Err(Skip::NotLinear) => parse_with(&Loaded(ctx), ctx.len()),
        r => r,
    }
}

#[inline(always)]
fn parse_with(ctx: &impl Reader, skb_len: u32) -> Result<Tcp, Skip> {
    let mut l3 = ETH_HLEN;
    let mut proto = match load_be16(ctx, 12) {
        Err(Skip::NotLinear) => return Err(Skip::NotLinear),
        r => r.map_err(|_| Skip::NotOurs)?,
    };
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = load_be16(ctx, l3 + 2)?;
        l3 += 4;
    }

    let (family, saddr, daddr, l4, l3_end) = match proto {
        ETH_P_IP => {
            let vihl = load_u8(ctx, l3)?;
            let ihl = ((vihl & 0x0f) as u32) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Skip::Malformed);
            }
            if load_u8(ctx, l3 + 9)? != IPPROTO_TCP {
                return Err(Skip::NotOurs);
            }
            // MF flag or a non-zero offset: a fragment.
            if load_be16(ctx, l3 + 6)? & 0x3fff != 0 {
                return Err(Skip::Fragment);
            }
            // tot_len is 0 in BIG TCP (> 64 KiB) super-packets: the skb length counts then.
            let tot_len = load_be16(ctx, l3 + 2)? as u32;
            let end = if tot_len == 0 { skb_len } else { l3 + tot_len };
            (
                FAMILY_V4,
                load_addr::<4>(ctx, l3 + 12)?,
                load_addr::<4>(ctx, l3 + 16)?,
                l3 + ihl,
                end,
            )
        }
        ETH_P_IPV6 => {
            if load_u8(ctx, l3)? >> 4 != 6 {
                return Err(Skip::Malformed);
            }
            let plen = load_be16(ctx, l3 + 4)? as u32;
            let end = if plen == 0 { skb_len } else { l3 + 40 + plen };
            let mut next = load_u8(ctx, l3 + 6)?;
            let mut off = l3 + 40;
            for _ in 0..MAX_IPV6_EXT_HEADERS {
                match next {
                    // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
                    0 | 43 | 60 => {
                        let len = (load_u8(ctx, off + 1)? as u32 + 1) * 8;
                        next = load_u8(ctx, off)?;
                        off += len;
                    }
                    44 => return Err(Skip::Fragment),
                    _ => break,
                }
            }
            if next != IPPROTO_TCP {
                return Err(Skip::NotOurs);
            }
            (
                FAMILY_V6,
                load_addr::<16>(ctx, l3 + 8)?,
                load_addr::<16>(ctx, l3 + 24)?,
                off,
                end,
            )
        }
        _ => return Err(Skip::NotOurs),
    };

    let sport = load_be16(ctx, l4)?;
    let dport = load_be16(ctx, l4 + 2)?;
    let seq = load_be32(ctx, l4 + 4)?;
    let ack = load_be32(ctx, l4 + 8)?;
    let doff = ((load_u8(ctx, l4 + 12)? >> 4) as u32) * 4;
    let flags = load_u8(ctx, l4 + 13)?;
    let payload_off = l4 + doff;
    if doff < 20 || payload_off > l3_end || l3_end > skb_len {
        return Err(Skip::Malformed);
    }
    Ok(Tcp {
        family,
        saddr,
        daddr,
        sport,
        dport,
        seq,
        ack,
        flags,
        payload_off,
        payload_len: l3_end - payload_off,
    })
}
