//! Just enough rtnetlink for `gor-agent check`: dumps of the links (index, type, flags),
//! of the qdiscs, and of the classic TC filters on one hook (aya 0.14 can add a filter
//! but not list them). Dumps need no privilege. Building requests and reading answers
//! are plain functions over bytes, tested without a socket.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const NLMSG_HDRLEN: usize = 16;
/// `struct tcmsg`: family, two pad bytes... ifindex, handle, parent, info.
const TCMSG_LEN: usize = 20;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
/// Attribute types carry the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags in their top bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// `TCA_BPF_NAME` (include/uapi/linux/pkt_cls.h): the name a cls_bpf filter was given.
const TCA_BPF_NAME: u16 = 7;

/// Parent of the `clsact` (or `ingress`) qdisc: `TC_H_CLSACT` == `TC_H_INGRESS`.
pub const TC_H_CLSACT: u32 = 0xffff_fff1;
/// The hooks of a clsact qdisc: `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / _EGRESS)`.
pub const PARENT_INGRESS: u32 = 0xffff_fff2;
pub const PARENT_EGRESS: u32 = 0xffff_fff3;

/// One network interface, from a link dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// `ARPHRD_*`: 1 Ethernet, 772 loopback, 65534 none (tun, WireGuard).
    pub link_type: u16,
    /// `IFF_*` flags.
    pub flags: u32,
}

/// One qdisc, from a qdisc dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub ifindex: u32,
    pub parent: u32,
    pub kind: String,
}

/// One classic TC filter (or a part of one that the dump lists on its own line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub kind: String,
    /// Priority: lower runs first.
    pub pref: u16,
    /// For cls_bpf: the name given at attach (aya gives the program's name).
    pub name: Option<String>,
}

pub fn links() -> io::Result<Vec<Link>> {
    let answers = dump(libc::RTM_GETLINK, &[0; IFINFOMSG_LEN])?;
    Ok(answers.iter().filter_map(|a| parse_link(a)).collect())
}

pub fn qdiscs() -> io::Result<Vec<Qdisc>> {
    let answers = dump(libc::RTM_GETQDISC, &tcmsg(0, 0))?;
    Ok(answers.iter().filter_map(|a| parse_qdisc(a)).collect())
}

/// The filters on hook `parent` of interface `ifindex`, one per (kind, priority, name):
/// the dump also lists each priority's head and, for u32, its hash tables.
pub fn filters(ifindex: u32, parent: u32) -> io::Result<Vec<Filter>> {
    let answers = dump(libc::RTM_GETTFILTER, &tcmsg(ifindex, parent))?;
    Ok(unique_filters(answers.iter().map(Vec::as_slice)))
}

fn unique_filters<'a>(answers: impl Iterator<Item = &'a [u8]>) -> Vec<Filter> {
    let mut out: Vec<Filter> = Vec::new();
    for f in answers.filter_map(parse_filter) {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

fn tcmsg(ifindex: u32, parent: u32) -> [u8; TCMSG_LEN] {
    let mut m = [0u8; TCMSG_LEN];
    m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m[12..16].copy_from_slice(&parent.to_ne_bytes());
    m
}

/// A dump request: the netlink header, then `body`.
fn request(msg_type: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    m.extend(((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    m.extend(msg_type.to_ne_bytes());
    m.extend(flags.to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m.extend(body);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The answers to one dump, gathered datagram by datagram.
struct Dump {
    seq: u32,
    answers: Vec<Vec<u8>>,
}

impl Dump {
    /// Takes one datagram; `Ok(true)` once the kernel said the dump is done.
    fn feed(&mut self, mut buf: &[u8]) -> io::Result<bool> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink answer");
        while buf.len() >= NLMSG_HDRLEN {
            let len = u32_at(buf, 0).ok_or_else(bad)? as usize;
            let kind = u16_at(buf, 4).ok_or_else(bad)?;
            let seq = u32_at(buf, 8).ok_or_else(bad)?;
            if len < NLMSG_HDRLEN || len > buf.len() {
                return Err(bad());
            }
            let payload = &buf[NLMSG_HDRLEN..len];
            buf = &buf[align4(len).min(buf.len())..];
            if seq != self.seq {
                continue;
            }
            match i32::from(kind) {
                libc::NLMSG_DONE | libc::NLMSG_ERROR => {
                    // Both carry an int: 0, or a negative errno for a dump that failed.
                    let errno = u32_at(payload, 0).map_or(0, |e| e as i32);
                    if errno < 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(true);
                }
                libc::NLMSG_NOOP => {}
                _ => self.answers.push(payload.to_vec()),
            }
        }
        Ok(false)
    }
}

/// Attributes (`struct rtattr`: length, type, value) of a message body.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while let (Some(len), Some(kind)) = (u16_at(buf, 0), u16_at(buf, 2)) {
        let len = usize::from(len);
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind & NLA_TYPE_MASK, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// A NUL-terminated string attribute.
fn text(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn parse_link(m: &[u8]) -> Option<Link> {
    Some(Link {
        link_type: u16_at(m, 2)?,
        index: u32_at(m, 4)?,
        flags: u32_at(m, 8)?,
    })
}

fn parse_qdisc(m: &[u8]) -> Option<Qdisc> {
    let kind = attrs(m.get(TCMSG_LEN..)?)
        .into_iter()
        .find(|&(t, _)| t == TCA_KIND)?;
    Some(Qdisc {
        ifindex: u32_at(m, 4)?,
        parent: u32_at(m, 12)?,
        kind: text(kind.1),
    })
}

/// A filter message; `None` for the head the dump sends for each priority (handle 0),
/// which is not a filter of its own.
fn parse_filter(m: &[u8]) -> Option<Filter> {
    let handle = u32_at(m, 8)?;
    // tcm_info: the priority in the top 16 bits, the protocol in the low 16.
    let pref = (u32_at(m, 16)? >> 16) as u16;
    if handle == 0 {
        return None;
    }
    let attrs = attrs(m.get(TCMSG_LEN..)?);
    let kind = text(attrs.iter().find(|&&(t, _)| t == TCA_KIND)?.1);
    let name = match (
        kind.as_str(),
        attrs.iter().find(|&&(t, _)| t == TCA_OPTIONS),
    ) {
        ("bpf", Some(&(_, options))) => self::attrs(options)
            .into_iter()
            .find(|&(t, _)| t == TCA_BPF_NAME)
            .map(|(_, v)| text(v)),
        _ => None,
    };
    Some(Filter { kind, pref, name })
}

/// Sends one dump request on a fresh rtnetlink socket and gathers the answers.
fn dump(msg_type: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    const SEQ: u32 = 1;
    let socket = Socket::open()?;
    socket.send(&request(msg_type, SEQ, body))?;
    let mut d = Dump {
        seq: SEQ,
        answers: Vec::new(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut buf)?;
        if d.feed(&buf[..n])? {
            return Ok(d.answers);
        }
    }
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        // A kernel that never answers must not hang the check.
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads a live timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    /// An unconnected netlink socket sends to the kernel (port id 0).
    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: send(2) reads `msg.len()` bytes from a live slice.
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: recv(2) writes at most `buf.len()` bytes into a live, writable slice.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend(((4 + value.len()) as u16).to_ne_bytes());
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// A netlink message as the kernel sends it.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = request(kind, seq, payload);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        m.resize(align4(m.len()), 0);
        m
    }

    fn filter_msg(handle: u32, pref: u16, kind: &str, options: &[u8]) -> Vec<u8> {
        let mut m = tcmsg(1, PARENT_INGRESS).to_vec();
        m[8..12].copy_from_slice(&handle.to_ne_bytes());
        // Priority and protocol (ETH_P_ALL, network order) in tcm_info.
        let info = (u32::from(pref) << 16) | u32::from(0x0003u16.to_be());
        m[16..20].copy_from_slice(&info.to_ne_bytes());
        m.extend(attr(TCA_KIND, format!("{kind}\0").as_bytes()));
        if !options.is_empty() {
            m.extend(attr(TCA_OPTIONS | 0x8000, options));
        }
        m
    }

    #[test]
    fn requests_are_dumps_with_the_body_after_the_header() {
        let r = request(libc::RTM_GETTFILTER, 7, &tcmsg(3, PARENT_EGRESS));
        assert_eq!(r.len(), NLMSG_HDRLEN + TCMSG_LEN);
        assert_eq!(u32_at(&r, 0), Some(36));
        assert_eq!(u16_at(&r, 4), Some(libc::RTM_GETTFILTER));
        assert_eq!(
            u16_at(&r, 6),
            Some((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16)
        );
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(u32_at(&r, NLMSG_HDRLEN + 4), Some(3));
        assert_eq!(u32_at(&r, NLMSG_HDRLEN + 12), Some(PARENT_EGRESS));
    }

    #[test]
    fn bpf_filters_are_named_and_heads_and_u32_tables_fold_into_one() {
        let bpf_options = attr(TCA_BPF_NAME, b"gor_ingress\0");
        let answers = [
            filter_msg(0, 49151, "bpf", &[]),
            filter_msg(1, 49151, "bpf", &bpf_options),
            filter_msg(0, 49152, "u32", &[]),
            filter_msg(0x8000_0000, 49152, "u32", &attr(1, &[0; 4])),
            filter_msg(0x8000_0800, 49152, "u32", &attr(1, &[0; 4])),
        ];
        let filters = unique_filters(answers.iter().map(Vec::as_slice));
        assert_eq!(
            filters,
            vec![
                Filter {
                    kind: "bpf".into(),
                    pref: 49151,
                    name: Some("gor_ingress".into())
                },
                Filter {
                    kind: "u32".into(),
                    pref: 49152,
                    name: None
                },
            ]
        );
    }

    #[test]
    fn a_dump_ends_at_done_and_fails_with_the_kernels_errno() {
        let mut d = Dump {
            seq: 5,
            answers: Vec::new(),
        };
        let qdisc = {
            let mut m = tcmsg(2, TC_H_CLSACT).to_vec();
            m.extend(attr(TCA_KIND, b"clsact\0"));
            m
        };
        let mut datagram = message(libc::RTM_NEWQDISC, 5, &qdisc);
        // An answer to another request is not ours.
        datagram.extend(message(libc::RTM_NEWQDISC, 4, &qdisc));
        assert!(!d.feed(&datagram).unwrap());
        assert!(d
            .feed(&message(libc::NLMSG_DONE as u16, 5, &0i32.to_ne_bytes()))
            .unwrap());
        assert_eq!(d.answers.len(), 1);
        assert_eq!(
            parse_qdisc(&d.answers[0]),
            Some(Qdisc {
                ifindex: 2,
                parent: TC_H_CLSACT,
                kind: "clsact".into()
            })
        );

        let mut d = Dump {
            seq: 5,
            answers: Vec::new(),
        };
        let err = d
            .feed(&message(
                libc::NLMSG_ERROR as u16,
                5,
                &(-libc::EPERM).to_ne_bytes(),
            ))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        // A length past the datagram is refused, not read.
        let mut cut = message(libc::RTM_NEWQDISC, 5, &qdisc);
        cut.truncate(20);
        assert!(d.feed(&cut).is_err());
    }

    #[test]
    fn links_give_index_type_and_flags() {
        let mut m = [0u8; IFINFOMSG_LEN];
        m[2..4].copy_from_slice(&772u16.to_ne_bytes());
        m[4..8].copy_from_slice(&1u32.to_ne_bytes());
        m[8..12].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        assert_eq!(
            parse_link(&m),
            Some(Link {
                index: 1,
                link_type: 772,
                flags: libc::IFF_UP as u32
            })
        );
        assert_eq!(parse_link(&m[..6]), None);
    }

    #[test]
    fn attributes_stop_at_a_bad_length() {
        let mut buf = attr(TCA_KIND, b"bpf\0");
        buf.extend([200, 0, 1, 0]);
        assert_eq!(attrs(&buf), vec![(TCA_KIND, &b"bpf\0"[..])]);
        assert!(attrs(&[]).is_empty());
    }
}
