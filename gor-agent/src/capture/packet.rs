//! Userspace parsing of captured link-layer frames into TCP [`Segment`]s.
//!
//! The kernel path parses packets in `gor-ebpf` and hands the agent ready-made records;
//! frames read from a pcap/pcapng file (see [`super::pcap`]) come here instead: link
//! layer (Ethernet with VLAN tags, BSD loopback, raw IP, Linux cooked v1/v2), then IPv4
//! or IPv6 (with extension headers), then TCP. The result is the same [`Segment`] the
//! reassembler gets from the kernel. Anything we cannot turn into a *complete* segment
//! on a captured port is reported as [`Skipped`] with the reason, so the caller can count
//! it; a partial payload is never delivered, since the reassembler would take it as the
//! whole segment and splice a hole into the stream silently.
//!
//! Checksums are not verified: on the capturing host, checksum offload leaves them
//! unfilled in outgoing packets, so they would reject good traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use crate::capture::{flow_of, Segment};
use crate::stream::Direction;

/// Link-layer types we understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): Ethernet II, with up to two VLAN tags.
    Ethernet,
    /// LINKTYPE_NULL (0, host byte order) and LINKTYPE_LOOP (108, network byte order):
    /// a 4-byte address family, then the IP packet.
    Null,
    /// LINKTYPE_RAW (101), the DLT_RAW values 12 and 14 some writers put in files,
    /// LINKTYPE_IPV4 (228) and LINKTYPE_IPV6 (229): the IP packet itself.
    Raw,
    /// LINKTYPE_LINUX_SLL (113): Linux "cooked" capture v1, 16-byte header (`tcpdump -i any`).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux "cooked" capture v2, 20-byte header.
    LinuxSll2,
}

impl LinkType {
    /// The link type of a pcap header's or pcapng IDB's link-type code, if we parse it.
    pub fn from_pcap(code: u32) -> Option<Self> {
        match code {
            0 | 108 => Some(Self::Null),
            1 => Some(Self::Ethernet),
            12 | 14 | 101 | 228 | 229 => Some(Self::Raw),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            _ => None,
        }
    }
}

/// Why a frame produced no segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Not IPv4/IPv6 (ARP, LLDP, 802.3 frames, a third VLAN tag, other loopback families).
    NotIp,
    /// IP, but not TCP (or an IPv6 header chain we do not walk, such as AH or ESP).
    NotTcp,
    /// An IP fragment: the reassembler works on whole TCP segments and we do not defragment.
    Fragment,
    /// The capture holds fewer bytes than the packet's headers say it has (snaplen cut).
    Truncated,
    /// Header fields contradict each other (bad version, header lengths out of range).
    Malformed,
    /// A TCP segment, but neither port is a captured port.
    OtherPort,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;

/// IP version announced by the link layer (or by the version nibble for raw IP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IpVersion {
    V4,
    V6,
}

/// What the IP layer hands to TCP.
struct IpPacket<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The captured bytes of the TCP segment, at most `tcp_len` of them.
    tcp: &'a [u8],
    /// The TCP segment's length according to the IP header.
    tcp_len: usize,
}

/// Parses one captured frame. `ports`: the captured (server) ports: a segment whose
/// destination port is in `ports` is ClientToServer, else whose source port is in it is
/// ServerToClient, else `Skipped::OtherPort` (so an empty `ports` skips everything).
pub fn parse(link: LinkType, frame: &[u8], ts_ns: u64, ports: &[u16]) -> Result<Segment, Skipped> {
    let (version, packet) = link_layer(link, frame)?;
    let ip = match version {
        IpVersion::V4 => ipv4(packet)?,
        IpVersion::V6 => ipv6(packet)?,
    };
    tcp(ip, ts_ns, ports)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Strips the link-layer header; returns the IP version and the IP packet.
fn link_layer(link: LinkType, frame: &[u8]) -> Result<(IpVersion, &[u8]), Skipped> {
    match link {
        LinkType::Ethernet => {
            let ethertype = be16(frame, 12).ok_or(Skipped::Truncated)?;
            ethertype_payload(ethertype, &frame[14..])
        }
        LinkType::LinuxSll => {
            // 16 bytes: packet type, ARPHRD type, address length, 8 address bytes, protocol.
            let protocol = be16(frame, 14).ok_or(Skipped::Truncated)?;
            ethertype_payload(protocol, &frame[16..])
        }
        LinkType::LinuxSll2 => {
            // 20 bytes, protocol first: protocol, reserved, ifindex, ARPHRD, type, addr.
            let protocol = be16(frame, 0).ok_or(Skipped::Truncated)?;
            let rest = frame.get(20..).ok_or(Skipped::Truncated)?;
            ethertype_payload(protocol, rest)
        }
        LinkType::Null => null_payload(frame),
        LinkType::Raw => match frame.first().map(|b| b >> 4) {
            Some(4) => Ok((IpVersion::V4, frame)),
            Some(6) => Ok((IpVersion::V6, frame)),
            Some(_) => Err(Skipped::Malformed),
            None => Err(Skipped::Truncated),
        },
    }
}

/// Dispatches on an EtherType, stepping over up to two VLAN tags (802.1Q, and 802.1ad
/// outer tags for QinQ). Each tag is 2 bytes of TCI followed by the next EtherType.
fn ethertype_payload(mut ethertype: u16, mut rest: &[u8]) -> Result<(IpVersion, &[u8]), Skipped> {
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = be16(rest, 2).ok_or(Skipped::Truncated)?;
        rest = &rest[4..];
    }
    match ethertype {
        ETHERTYPE_IPV4 => Ok((IpVersion::V4, rest)),
        ETHERTYPE_IPV6 => Ok((IpVersion::V6, rest)),
        _ => Err(Skipped::NotIp),
    }
}

/// BSD loopback: a 4-byte address family in the *writer's* byte order (LINKTYPE_NULL) or
/// in network order (LINKTYPE_LOOP). Families fit in 16 bits, so a value above that
/// means the other byte order. AF_INET6 differs between systems: 10 (Linux), 24
/// (NetBSD, OpenBSD), 28 (FreeBSD), 30 (macOS).
fn null_payload(frame: &[u8]) -> Result<(IpVersion, &[u8]), Skipped> {
    let raw = frame.get(..4).ok_or(Skipped::Truncated)?;
    let raw = [raw[0], raw[1], raw[2], raw[3]];
    let mut family = u32::from_le_bytes(raw);
    if family > 0xffff {
        family = u32::from_be_bytes(raw);
    }
    match family {
        2 => Ok((IpVersion::V4, &frame[4..])),
        10 | 24 | 28 | 30 => Ok((IpVersion::V6, &frame[4..])),
        _ => Err(Skipped::NotIp),
    }
}

fn ipv4(p: &[u8]) -> Result<IpPacket<'_>, Skipped> {
    if p.len() < 20 {
        return Err(Skipped::Truncated);
    }
    if p[0] >> 4 != 4 {
        return Err(Skipped::Malformed);
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    // Total length 0 is what a capture of a TSO/GSO super-packet shows before the
    // hardware splits it (the real length does not fit 16 bits): trust the frame.
    let total = match be16(p, 2) {
        Some(0) | None => p.len(),
        Some(n) => usize::from(n),
    };
    if ihl < 20 || total < ihl {
        return Err(Skipped::Malformed);
    }
    if p[9] != IPPROTO_TCP {
        return Err(Skipped::NotTcp);
    }
    // MF flag (0x2000) or a fragment offset (low 13 bits): part of a fragmented packet.
    if be16(p, 6).is_some_and(|f| f & 0x3fff != 0) {
        return Err(Skipped::Fragment);
    }
    if p.len() < ihl {
        return Err(Skipped::Truncated);
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    // Bound by the IP total length, not the frame: Ethernet pads short frames to 60
    // bytes and some captures keep the FCS, and neither belongs to the payload.
    let tcp = &p[ihl..total.min(p.len())];
    Ok(IpPacket {
        src: src.into(),
        dst: dst.into(),
        tcp,
        tcp_len: total - ihl,
    })
}

fn ipv6(p: &[u8]) -> Result<IpPacket<'_>, Skipped> {
    if p.len() < 40 {
        return Err(Skipped::Truncated);
    }
    if p[0] >> 4 != 6 {
        return Err(Skipped::Malformed);
    }
    let avail = &p[40..];
    // Payload length 0: a jumbogram or a TSO/GSO capture; as for IPv4, trust the frame.
    let declared = match be16(p, 4) {
        Some(0) | None => avail.len(),
        Some(n) => usize::from(n),
    };
    let off = tcp_offset_v6(p[6], avail, declared)?;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&p[8..24]);
    dst.copy_from_slice(&p[24..40]);
    let end = declared.min(avail.len());
    Ok(IpPacket {
        src: Ipv6Addr::from(src).into(),
        dst: Ipv6Addr::from(dst).into(),
        tcp: avail.get(off..end).unwrap_or_default(),
        tcp_len: declared - off,
    })
}

/// Walks the IPv6 extension-header chain from `next` to the TCP header; returns its
/// offset within the payload. Hop-by-hop (0), routing (43) and destination options (60)
/// all start with (next header, length in 8-octet units not counting the first 8).
fn tcp_offset_v6(mut next: u8, avail: &[u8], declared: usize) -> Result<usize, Skipped> {
    let mut off = 0usize;
    loop {
        match next {
            IPPROTO_TCP => return Ok(off),
            0 | 43 | 60 => {
                if off + 8 > declared {
                    return Err(Skipped::Malformed);
                }
                let h = avail.get(off..off + 2).ok_or(Skipped::Truncated)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
                if off > declared {
                    return Err(Skipped::Malformed);
                }
            }
            44 => return Err(Skipped::Fragment),
            // No next header (59), AH, ESP, mobility, ...: nothing we can read as TCP.
            _ => return Err(Skipped::NotTcp),
        }
    }
}

fn tcp(ip: IpPacket<'_>, ts_ns: u64, ports: &[u16]) -> Result<Segment, Skipped> {
    if ip.tcp_len < 20 {
        return Err(Skipped::Malformed);
    }
    let t = ip.tcp;
    // Classify by port before judging truncation, so a cut packet on a port we do not
    // capture counts as OtherPort rather than as lost data.
    let (sport, dport) = match (be16(t, 0), be16(t, 2)) {
        (Some(s), Some(d)) => (s, d),
        _ => return Err(Skipped::Truncated),
    };
    let dir = if ports.contains(&dport) {
        Direction::ClientToServer
    } else if ports.contains(&sport) {
        Direction::ServerToClient
    } else {
        return Err(Skipped::OtherPort);
    };
    if t.len() < 20 {
        return Err(Skipped::Truncated);
    }
    let data_offset = usize::from(t[12] >> 4) * 4;
    if data_offset < 20 || data_offset > ip.tcp_len {
        return Err(Skipped::Malformed);
    }
    if t.len() < ip.tcp_len {
        return Err(Skipped::Truncated);
    }
    let src = SocketAddr::new(ip.src, sport);
    let dst = SocketAddr::new(ip.dst, dport);
    Ok(Segment {
        ts_ns,
        flow: flow_of(src, dst, dir),
        dir,
        seq: be32(t, 4).unwrap_or_default(),
        ack: be32(t, 8).unwrap_or_default(),
        flags: t[13],
        payload: Bytes::copy_from_slice(&t[data_offset..ip.tcp_len]),
        elided: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gor_common::tcp_flags::{ACK, PSH, SYN};

    const PORT: u16 = 8080;
    const CLIENT_PORT: u16 = 40000;

    /// A TCP header (+ options, padded to 4 bytes by the caller) and payload.
    fn tcp_seg(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&1000u32.to_be_bytes());
        t.extend_from_slice(&2000u32.to_be_bytes());
        t.push((((20 + options.len()) / 4) as u8) << 4);
        t.push(flags);
        t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
        t.extend_from_slice(options);
        t.extend_from_slice(payload);
        t
    }

    fn ipv4_pkt(proto: u8, frag: u16, options: &[u8], l4: &[u8]) -> Vec<u8> {
        let ihl = 20 + options.len();
        let mut p = vec![0x40 | (ihl / 4) as u8, 0];
        p.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(options);
        p.extend_from_slice(l4);
        p
    }

    fn ipv6_pkt(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets());
        p.extend_from_slice(&Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(l4);
        p
    }

    fn ether(vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (i, tpid) in vlans.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn v4_request(payload: &[u8]) -> Vec<u8> {
        ipv4_pkt(
            6,
            0,
            &[],
            &tcp_seg(CLIENT_PORT, PORT, PSH | ACK, &[], payload),
        )
    }

    fn client() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn server() -> SocketAddr {
        "10.0.0.2:8080".parse().unwrap()
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let frame = ether(&[], ETHERTYPE_IPV4, &v4_request(b"GET / HTTP/1.1\r\n\r\n"));
        let s = parse(LinkType::Ethernet, &frame, 42, &[PORT]).unwrap();
        assert_eq!(s.ts_ns, 42);
        assert_eq!(s.dir, Direction::ClientToServer);
        assert_eq!(s.flow.client, client());
        assert_eq!(s.flow.server, server());
        assert_eq!((s.seq, s.ack), (1000, 2000));
        assert_eq!(s.flags, PSH | ACK);
        assert_eq!(&s.payload[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn server_to_client_and_other_port() {
        let resp = ipv4_pkt(
            6,
            0,
            &[],
            &tcp_seg(PORT, CLIENT_PORT, ACK, &[], b"HTTP/1.1 200"),
        );
        let frame = ether(&[], ETHERTYPE_IPV4, &resp);
        let s = parse(LinkType::Ethernet, &frame, 0, &[PORT]).unwrap();
        assert_eq!(s.dir, Direction::ServerToClient);
        // The source (10.0.0.1:8080 here) is the server.
        assert_eq!(s.flow.server, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(s.flow.client, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(
            parse(LinkType::Ethernet, &frame, 0, &[9999]),
            Err(Skipped::OtherPort)
        );
        assert_eq!(
            parse(LinkType::Ethernet, &frame, 0, &[]),
            Err(Skipped::OtherPort)
        );
        // Both ports captured: the destination wins.
        let both = ipv4_pkt(6, 0, &[], &tcp_seg(80, 81, ACK, &[], b"x"));
        let s = parse(LinkType::Raw, &both, 0, &[80, 81]).unwrap();
        assert_eq!(s.dir, Direction::ClientToServer);
    }

    #[test]
    fn vlan_tags() {
        let ip = v4_request(b"hi");
        for vlans in [&[ETHERTYPE_VLAN][..], &[ETHERTYPE_QINQ, ETHERTYPE_VLAN]] {
            let s = parse(
                LinkType::Ethernet,
                &ether(vlans, ETHERTYPE_IPV4, &ip),
                0,
                &[PORT],
            );
            assert_eq!(&s.unwrap().payload[..], b"hi", "{vlans:x?}");
        }
        let three = ether(
            &[ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_VLAN],
            ETHERTYPE_IPV4,
            &ip,
        );
        assert_eq!(
            parse(LinkType::Ethernet, &three, 0, &[PORT]),
            Err(Skipped::NotIp)
        );
    }

    #[test]
    fn ipv4_and_tcp_options() {
        // Router alert (4 bytes) in IP; MSS + SACK-permitted, NOP-padded, in TCP.
        let tcp = tcp_seg(CLIENT_PORT, PORT, SYN, &[2, 4, 5, 0xb4, 4, 2, 1, 1], b"");
        let ip = ipv4_pkt(6, 0, &[0x94, 4, 0, 0], &tcp);
        let s = parse(LinkType::Raw, &ip, 0, &[PORT]).unwrap();
        assert!(s.has(SYN));
        assert!(s.payload.is_empty());
        let tcp = tcp_seg(
            CLIENT_PORT,
            PORT,
            ACK,
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            b"abc",
        );
        let ip = ipv4_pkt(6, 0, &[0x94, 4, 0, 0], &tcp);
        assert_eq!(
            &parse(LinkType::Raw, &ip, 0, &[PORT]).unwrap().payload[..],
            b"abc"
        );
    }

    #[test]
    fn ipv6_extension_headers() {
        let tcp = tcp_seg(CLIENT_PORT, PORT, ACK, &[], b"v6 data");
        // Hop-by-hop (8 bytes, PadN) then TCP.
        let hbh = [6, 0, 1, 4, 0, 0, 0, 0];
        let frame = ether(&[], ETHERTYPE_IPV6, &ipv6_pkt(0, &hbh, &tcp));
        let s = parse(LinkType::Ethernet, &frame, 0, &[PORT]).unwrap();
        assert_eq!(&s.payload[..], b"v6 data");
        assert_eq!(s.flow.client, "[fd00::1]:40000".parse().unwrap());
        // Hop-by-hop -> destination options (16 bytes) -> TCP.
        let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0, 6, 1, 1, 12];
        chain.extend_from_slice(&[0; 12]);
        let s = parse(LinkType::Raw, &ipv6_pkt(0, &chain, &tcp), 0, &[PORT]).unwrap();
        assert_eq!(&s.payload[..], b"v6 data");
        // Fragment header.
        let frag = [6, 0, 0, 1, 0, 0, 0, 7];
        let p = ipv6_pkt(44, &frag, &tcp);
        assert_eq!(parse(LinkType::Raw, &p, 0, &[PORT]), Err(Skipped::Fragment));
        // An extension header longer than the payload length.
        let p = ipv6_pkt(0, &[6, 200, 0, 0, 0, 0, 0, 0], &tcp);
        assert_eq!(
            parse(LinkType::Raw, &p, 0, &[PORT]),
            Err(Skipped::Malformed)
        );
        // ESP: not something we read.
        let p = ipv6_pkt(50, &[], &tcp);
        assert_eq!(parse(LinkType::Raw, &p, 0, &[PORT]), Err(Skipped::NotTcp));
    }

    #[test]
    fn ipv4_fragments() {
        let tcp = tcp_seg(CLIENT_PORT, PORT, ACK, &[], b"frag");
        for frag in [0x2000, 0x0010, 0x4000 | 0x0010] {
            let p = ipv4_pkt(6, frag, &[], &tcp);
            assert_eq!(parse(LinkType::Raw, &p, 0, &[PORT]), Err(Skipped::Fragment));
        }
        // Don't-fragment alone is a whole packet.
        let p = ipv4_pkt(6, 0x4000, &[], &tcp);
        assert!(parse(LinkType::Raw, &p, 0, &[PORT]).is_ok());
    }

    #[test]
    fn ethernet_padding_and_fcs_are_not_payload() {
        // A 1-byte payload makes a 55-byte frame; the NIC pads it to the 60-byte minimum.
        let mut frame = ether(&[], ETHERTYPE_IPV4, &v4_request(b"x"));
        frame.resize(60, 0);
        let s = parse(LinkType::Ethernet, &frame, 0, &[PORT]).unwrap();
        assert_eq!(&s.payload[..], b"x");
        // A 6-byte payload fills the 60 bytes exactly; a kept FCS adds 4 more.
        let mut frame = ether(&[], ETHERTYPE_IPV4, &v4_request(b"abcdef"));
        assert_eq!(frame.len(), 60);
        frame.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let s = parse(LinkType::Ethernet, &frame, 0, &[PORT]).unwrap();
        assert_eq!(&s.payload[..], b"abcdef");
    }

    #[test]
    fn snaplen_cut_is_truncated_never_partial() {
        let frame = ether(&[], ETHERTYPE_IPV4, &v4_request(b"0123456789"));
        for cut in 0..frame.len() {
            let r = parse(LinkType::Ethernet, &frame[..cut], 0, &[PORT]);
            assert_eq!(r, Err(Skipped::Truncated), "cut at {cut}");
        }
        // Cut inside the TCP header after the ports, on a port we do not capture.
        assert_eq!(
            parse(LinkType::Ethernet, &frame[..14 + 20 + 6], 0, &[1]),
            Err(Skipped::OtherPort)
        );
        let v6 = ipv6_pkt(6, &[], &tcp_seg(CLIENT_PORT, PORT, ACK, &[], b"0123456789"));
        for cut in 0..v6.len() {
            let r = parse(LinkType::Raw, &v6[..cut], 0, &[PORT]);
            assert_eq!(r, Err(Skipped::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn tso_total_length_zero_uses_the_frame() {
        let mut ip = v4_request(b"big segment");
        ip[2] = 0;
        ip[3] = 0;
        let s = parse(LinkType::Raw, &ip, 0, &[PORT]).unwrap();
        assert_eq!(&s.payload[..], b"big segment");
    }

    #[test]
    fn linux_cooked_null_and_raw() {
        let ip = v4_request(b"req");
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        sll[14..16].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        let mut sll2 = ETHERTYPE_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0, 1, 0]);
        sll2.extend_from_slice(&ip);
        let mut null_le = 2u32.to_le_bytes().to_vec();
        null_le.extend_from_slice(&ip);
        let mut null_be = 2u32.to_be_bytes().to_vec();
        null_be.extend_from_slice(&ip);
        let cases = [
            (LinkType::LinuxSll, sll),
            (LinkType::LinuxSll2, sll2),
            (LinkType::Null, null_le),
            (LinkType::Null, null_be),
            (LinkType::Raw, ip.clone()),
        ];
        for (link, frame) in cases {
            let s = parse(link, &frame, 0, &[PORT]);
            assert_eq!(&s.unwrap().payload[..], b"req", "{link:?}");
        }
        // macOS loopback IPv6 (AF_INET6 = 30).
        let v6 = ipv6_pkt(6, &[], &tcp_seg(CLIENT_PORT, PORT, ACK, &[], b"six"));
        let mut null6 = 30u32.to_le_bytes().to_vec();
        null6.extend_from_slice(&v6);
        assert_eq!(
            &parse(LinkType::Null, &null6, 0, &[PORT]).unwrap().payload[..],
            b"six"
        );
        let mut other = 7u32.to_le_bytes().to_vec();
        other.extend_from_slice(&ip);
        assert_eq!(
            parse(LinkType::Null, &other, 0, &[PORT]),
            Err(Skipped::NotIp)
        );
    }

    #[test]
    fn link_type_codes() {
        assert_eq!(LinkType::from_pcap(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_pcap(0), Some(LinkType::Null));
        assert_eq!(LinkType::from_pcap(101), Some(LinkType::Raw));
        assert_eq!(LinkType::from_pcap(12), Some(LinkType::Raw));
        assert_eq!(LinkType::from_pcap(14), Some(LinkType::Raw));
        assert_eq!(LinkType::from_pcap(113), Some(LinkType::LinuxSll));
        assert_eq!(LinkType::from_pcap(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_pcap(127), None); // radiotap
    }

    #[test]
    fn not_ip_not_tcp_malformed() {
        let arp = ether(&[], 0x0806, &[0; 28]);
        assert_eq!(
            parse(LinkType::Ethernet, &arp, 0, &[PORT]),
            Err(Skipped::NotIp)
        );
        let udp = ipv4_pkt(17, 0, &[], &[0; 16]);
        assert_eq!(parse(LinkType::Raw, &udp, 0, &[PORT]), Err(Skipped::NotTcp));
        let mut bad_ihl = v4_request(b"x");
        bad_ihl[0] = 0x44;
        assert_eq!(
            parse(LinkType::Raw, &bad_ihl, 0, &[PORT]),
            Err(Skipped::Malformed)
        );
        let mut bad_doff = v4_request(b"x");
        bad_doff[20 + 12] = 0x40;
        assert_eq!(
            parse(LinkType::Raw, &bad_doff, 0, &[PORT]),
            Err(Skipped::Malformed)
        );
        let mut doff_past_end = v4_request(b"x");
        doff_past_end[20 + 12] = 0xf0;
        assert_eq!(
            parse(LinkType::Raw, &doff_past_end, 0, &[PORT]),
            Err(Skipped::Malformed)
        );
        let mut v4_says_6 = v4_request(b"x");
        v4_says_6[0] = 0x65;
        let frame = ether(&[], ETHERTYPE_IPV4, &v4_says_6);
        assert_eq!(
            parse(LinkType::Ethernet, &frame, 0, &[PORT]),
            Err(Skipped::Malformed)
        );
    }

    /// Deterministic xorshift, so the no-panic sweep needs no dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn never_panics_on_mutated_frames() {
        let v6 = ipv6_pkt(
            0,
            &[6, 0, 1, 4, 0, 0, 0, 0],
            &tcp_seg(1, PORT, ACK, &[], b"abc"),
        );
        let seeds = [
            ether(&[ETHERTYPE_VLAN], ETHERTYPE_IPV4, &v4_request(b"abc")),
            v6,
        ];
        let links = [
            LinkType::Ethernet,
            LinkType::Null,
            LinkType::Raw,
            LinkType::LinuxSll,
            LinkType::LinuxSll2,
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut f = seeds[(xorshift(&mut rng) % 2) as usize].clone();
            for _ in 0..(xorshift(&mut rng) % 4 + 1) {
                let i = (xorshift(&mut rng) as usize) % f.len();
                f[i] = xorshift(&mut rng) as u8;
            }
            let len = (xorshift(&mut rng) as usize) % (f.len() + 1);
            for link in links {
                let _ = parse(link, &f[..len], 0, &[PORT, 1]);
            }
        }
    }
}
