//! Header parsing: Ethernet (with up to two VLAN tags), IPv4 (options), IPv6 (extension
//! headers), TCP (options). All reads go through `bpf_skb_load_bytes` via `TcContext::load`,
//! so non-linear (paged, GRO/GSO) skbs are read the same way as linear ones.

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

/// Why a packet is not captured.
pub enum Skip {
    /// Not IP/TCP, or not a port we watch: nothing to count.
    NotOurs,
    /// An IP fragment: its TCP header is in the first fragment only.
    Fragment,
    /// Headers shorter or longer than the packet.
    Malformed,
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

#[inline(always)]
fn load_u8(ctx: &TcContext, off: u32) -> Result<u8, Skip> {
    ctx.load::<u8>(off as usize).map_err(|_| Skip::Malformed)
}

#[inline(always)]
fn load_be16(ctx: &TcContext, off: u32) -> Result<u16, Skip> {
    ctx.load::<u16>(off as usize)
        .map(u16::from_be)
        .map_err(|_| Skip::Malformed)
}

#[inline(always)]
fn load_be32(ctx: &TcContext, off: u32) -> Result<u32, Skip> {
    ctx.load::<u32>(off as usize)
        .map(u32::from_be)
        .map_err(|_| Skip::Malformed)
}

#[inline(always)]
fn load_addr<const N: usize>(ctx: &TcContext, off: u32) -> Result<[u8; 16], Skip> {
    let mut out = [0u8; 16];
    let part = ctx
        .load::<[u8; N]>(off as usize)
        .map_err(|_| Skip::Malformed)?;
    out[..N].copy_from_slice(&part);
    Ok(out)
}

/// Parses the headers of an Ethernet frame carrying TCP over IPv4 or IPv6.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Tcp, Skip> {
    let skb_len = ctx.len();
    let mut l3 = ETH_HLEN;
    let mut proto = load_be16(ctx, 12).map_err(|_| Skip::NotOurs)?;
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
