//! Where this kernel keeps a socket's addresses and ports: the offsets of
//! `struct sock_common`'s fields, read from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//! The TLS programs have no CO-RE relocations; the agent hands them these offsets.
//!
//! Only what that needs of the BTF format is read: the header, the string section, and
//! the type section walked kind by kind to find struct and union members by name,
//! through the anonymous structs and unions `sock_common` is made of.

use anyhow::{bail, Context, Result};
use gor_common::TlsConf;

const MAGIC: u16 = 0xeb9f;

/// Kinds whose trailing data this reader must know the size of (`include/uapi/linux/btf.h`).
mod kind {
    pub const INT: u32 = 1;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const DECL_TAG: u32 = 17;
    pub const ENUM64: u32 = 19;
}

struct Member {
    name: u32,
    ty: u32,
    /// Bit offset (the low 24 bits when the struct has bitfields).
    bits: u32,
}

struct Type {
    name: u32,
    kind: u32,
    members: Vec<Member>,
}

/// The parsed type section: types by id (id 0 is `void`).
struct Btf<'a> {
    strings: &'a [u8],
    types: Vec<Type>,
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let u16_at = |o: usize| -> Result<u16> {
            Ok(u16::from_le_bytes(
                data.get(o..o + 2).context("BTF truncated")?.try_into()?,
            ))
        };
        let u32_at = |o: usize| -> Result<u32> {
            Ok(u32::from_le_bytes(
                data.get(o..o + 4).context("BTF truncated")?.try_into()?,
            ))
        };
        if u16_at(0)? != MAGIC {
            bail!("not little-endian BTF (bad magic)");
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let types_at = hdr_len + type_off;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("BTF string section out of bounds")?;
        let end = types_at + type_len;
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            members: Vec::new(),
        }];
        let mut o = types_at;
        while o < end {
            let name = u32_at(o)?;
            let info = u32_at(o + 4)?;
            o += 12;
            let k = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match k {
                kind::INT | kind::VAR | kind::DECL_TAG => o += 4,
                kind::ARRAY => o += 12,
                kind::STRUCT | kind::UNION => {
                    for _ in 0..vlen {
                        let off = u32_at(o + 8)?;
                        members.push(Member {
                            name: u32_at(o)?,
                            ty: u32_at(o + 4)?,
                            bits: if kind_flag { off & 0xff_ffff } else { off },
                        });
                        o += 12;
                    }
                }
                kind::ENUM | kind::FUNC_PROTO => o += 8 * vlen,
                kind::DATASEC | kind::ENUM64 => o += 12 * vlen,
                _ => {}
            }
            types.push(Type {
                name,
                kind: k,
                members,
            });
        }
        Ok(Btf { strings, types })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    fn strukt(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind == kind::STRUCT && self.name(t.name) == name.as_bytes())
            .map(|i| i as u32)
    }

    /// Byte offset of member `name` in type `id`, looking into anonymous members.
    fn offset(&self, id: u32, name: &str) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            if self.name(m.name) == name.as_bytes() {
                return Some(m.bits / 8);
            }
            if m.name == 0 {
                if let Some(o) = self.offset(m.ty, name) {
                    return Some(m.bits / 8 + o);
                }
            }
        }
        None
    }
}

/// The offsets of `struct sock`'s address and port fields (inside `__sk_common`), from
/// BTF bytes.
pub fn sock_offsets(data: &[u8]) -> Result<TlsConf> {
    let btf = Btf::parse(data)?;
    let sock = btf
        .strukt("sock")
        .context("no `struct sock` in the kernel's BTF")?;
    let common = btf
        .offset(sock, "__sk_common")
        .context("no `__sk_common` in `struct sock`")?;
    let sc = btf
        .strukt("sock_common")
        .context("no `struct sock_common` in the kernel's BTF")?;
    let field = |name: &str| -> Result<u32> {
        btf.offset(sc, name)
            .map(|o| common + o)
            .with_context(|| format!("no `{name}` in `struct sock_common`"))
    };
    Ok(TlsConf {
        enabled: 1,
        off_daddr: field("skc_daddr")?,
        off_rcv_saddr: field("skc_rcv_saddr")?,
        off_dport: field("skc_dport")?,
        off_num: field("skc_num")?,
        off_family: field("skc_family")?,
        off_v6_daddr: field("skc_v6_daddr")?,
        off_v6_rcv_saddr: field("skc_v6_rcv_saddr")?,
    })
}

/// [`sock_offsets`] of the running kernel.
pub fn running_kernel() -> Result<TlsConf> {
    const PATH: &str = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(PATH).with_context(|| {
        format!("reading {PATH}: TLS capture needs a kernel with BTF (CONFIG_DEBUG_INFO_BTF)")
    })?;
    sock_offsets(&data).with_context(|| format!("reading socket field offsets from {PATH}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's layout (x86_64 and arm64 have had this one for years): the
    /// address pair first, the port pair at 12, the family after it.
    #[test]
    fn finds_the_socket_fields_in_the_running_kernel() {
        let c = running_kernel().unwrap();
        assert_eq!(
            (
                c.off_daddr,
                c.off_rcv_saddr,
                c.off_dport,
                c.off_num,
                c.off_family
            ),
            (0, 4, 12, 14, 16)
        );
        assert!(c.off_v6_daddr >= 24 && c.off_v6_rcv_saddr == c.off_v6_daddr + 16);
    }

    #[test]
    fn bad_btf_is_an_error() {
        assert!(sock_offsets(b"nope").is_err());
        assert!(sock_offsets(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
    }
}
