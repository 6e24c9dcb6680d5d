//! The host's side of capture: the kernel's version and BTF, the kernel object embedded
//! in this binary, a real ring buffer of the configured size, and the process's
//! capabilities.

use std::{io, os::fd::FromRawFd};

use aya_obj::generated::{bpf_cmd, bpf_map_type};

use super::Line;
use crate::capture::tc::{self, EmbeddedObject};

/// The oldest kernel gor runs on: the `CHUNKS` ring buffer (BPF_MAP_TYPE_RINGBUF) and
/// CAP_BPF/CAP_PERFMON came with 5.8.
pub const MIN_KERNEL: (u32, u32) = (5, 8);

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The running kernel's release, e.g. `6.1.0-28-amd64`.
pub fn read_kernel() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading /proc/sys/kernel/osrelease: {e}"))
}

/// `6.1.0-28-amd64` -> (6, 1, 0); `5.10` -> (5, 10, 0). Only the leading numbers count.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let numbers = release
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or(release, |end| &release[..end]);
    let mut parts = numbers.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
}

fn at_least((major, minor, _): (u32, u32, u32), min: (u32, u32)) -> bool {
    (major, minor) >= min
}

/// The kernel's line; `tcx`: the agent attaches tcx links here
/// ([`tc::attaches_with_tcx`]).
pub fn kernel_line(release: &Result<String, String>, tcx: bool) -> Line {
    let release = match release {
        Ok(r) => r,
        Err(e) => {
            return Line::warn(format!(
                "kernel: version unknown ({e}); the ring buffer line below tells whether BPF works"
            ))
        }
    };
    let Some(v) = parse_release(release) else {
        return Line::warn(format!(
            "kernel {release}: cannot read a version in it; the ring buffer line below tells whether BPF works"
        ));
    };
    let (min, tcx_from) = (MIN_KERNEL, tc::TCX_KERNEL);
    if !at_least(v, min) {
        return Line::fail(
            format!(
                "kernel {release}: gor needs >= {}.{} (BPF ring buffer, CAP_BPF)",
                min.0, min.1
            ),
            format!(
                "run a kernel >= {}.{} (>= {}.{} attaches with tcx)",
                min.0, min.1, tcx_from.0, tcx_from.1
            ),
        );
    }
    if tcx {
        Line::ok(format!(
            "kernel {release} (>= {}.{}: ring buffer; >= {}.{}: tcx links)",
            min.0, min.1, tcx_from.0, tcx_from.1
        ))
    } else {
        Line::ok(format!(
            "kernel {release} (>= {}.{}: ring buffer; before {}.{}: cls_bpf on a clsact qdisc, not tcx)",
            min.0, min.1, tcx_from.0, tcx_from.1
        ))
    }
}

pub fn vmlinux_btf_present() -> bool {
    std::path::Path::new(VMLINUX_BTF).exists()
}

/// The embedded object, or why it is not usable.
pub fn read_object() -> Result<Option<EmbeddedObject>, String> {
    tc::embedded_object().map_err(|e| format!("{e:#}"))
}

/// The kernel's BTF is needed only for CO-RE relocations; the object says whether it
/// has any (gor's programs read packets through helpers and have none today).
pub fn btf_line(present: bool, object: &Result<Option<EmbeddedObject>, String>) -> Line {
    let needs = matches!(object, Ok(Some(o)) if o.needs_kernel_btf);
    match (present, needs) {
        (true, _) => Line::ok(format!("BTF: {VMLINUX_BTF} present")),
        (false, true) => Line::fail(
            format!("BTF: {VMLINUX_BTF} missing, and the eBPF object has CO-RE relocations that need it"),
            "run a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels >= 5.8 are)",
        ),
        (false, false) => Line::warn(format!(
            "BTF: {VMLINUX_BTF} missing; gor's programs have no CO-RE relocations and load without it"
        ))
        .with_fix("a kernel built with CONFIG_DEBUG_INFO_BTF=y, for future programs that need it"),
    }
}

pub fn object_line(object: &Result<Option<EmbeddedObject>, String>) -> Line {
    match object {
        Ok(Some(o)) => Line::ok(format!(
            "eBPF object: embedded ({} KiB, {} CO-RE relocations)",
            o.bytes.div_ceil(1024),
            if o.needs_kernel_btf { "with" } else { "no" }
        )),
        Ok(None) => Line::fail(
            "eBPF object: this gor-agent was built without its kernel object",
            "run `cargo xtask build-ebpf`, then build gor-agent again",
        ),
        Err(e) => Line::fail(
            format!("eBPF object: unreadable ({e})"),
            "rebuild: `cargo xtask build-ebpf`, then build gor-agent again",
        ),
    }
}

/// Creates a BPF_MAP_TYPE_RINGBUF map of `bytes` (as the agent will, after raising
/// RLIMIT_MEMLOCK as it does) and closes it again.
pub fn create_ring_buffer(bytes: u32) -> io::Result<()> {
    /// The leading fields of `union bpf_attr` for BPF_MAP_CREATE. The kernel copies the
    /// `size` bytes it is given and treats the rest of the union as zero.
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    }
    let attr = MapCreate {
        map_type: bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
        // A ring buffer has no keys or values; max_entries is its size in bytes.
        key_size: 0,
        value_size: 0,
        max_entries: bytes,
        map_flags: 0,
    };
    tc::raise_memlock();
    // SAFETY: bpf(2) reads `size_of::<MapCreate>()` bytes from a live, initialised struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_MAP_CREATE as libc::c_long,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns; dropping the
    // OwnedFd closes it, which frees the map.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

fn size(bytes: u32) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

pub fn ring_buffer_line(bytes: u32, created: io::Result<()>) -> Line {
    let size = size(bytes);
    let err = match created {
        Ok(()) => {
            return Line::ok(format!(
                "BPF ring buffer: created and closed a {size} BPF_MAP_TYPE_RINGBUF map (GOR_RING_BUFFER)"
            ))
        }
        Err(e) => e,
    };
    let text =
        format!("BPF ring buffer: creating a {size} BPF_MAP_TYPE_RINGBUF map failed ({err})");
    match err.raw_os_error() {
        Some(libc::EPERM) => Line::fail(
            text,
            "grant CAP_BPF (see the capabilities line), or run as root",
        ),
        Some(libc::EINVAL) => Line::fail(
            format!("{text}: this kernel has no BPF ring buffer"),
            format!("run a kernel >= {}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
        ),
        Some(libc::ENOMEM) => Line::fail(
            text,
            "lower GOR_RING_BUFFER, or raise the memory limits (MemoryMax= in the unit; LimitMEMLOCK= before kernel 5.11)",
        ),
        Some(libc::ENOSYS) => Line::fail(
            format!("{text}: this kernel has no bpf(2) syscall"),
            "run a kernel built with CONFIG_BPF_SYSCALL=y",
        ),
        _ => Line::fail(text, "see the kernel log (`dmesg`) for why bpf(2) refused it"),
    }
}

/// Capability bits (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the systemd unit grants (gor-agent/deploy/gor-agent.service).
const UNIT_CAPS: &str = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON";

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub fn read_cap_eff() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    parse_cap_eff(&status).ok_or_else(|| "no CapEff line in /proc/self/status".to_string())
}

/// The capabilities capture needs that `eff` lacks. CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON (as it did before they existed); attaching to a TC hook
/// needs CAP_NET_ADMIN whatever else is there.
pub fn missing_caps(eff: u64) -> Vec<&'static str> {
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    missing
}

pub fn caps_line(eff: Result<u64, String>) -> Line {
    let eff = match eff {
        Ok(eff) => eff,
        Err(e) => {
            return Line::warn(format!(
                "capabilities: unknown ({e}); the ring buffer line tells whether BPF is allowed"
            ))
        }
    };
    let missing = missing_caps(eff);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let present: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|&(bit, _)| has(bit))
    .map(|(_, name)| name)
    .collect();
    let present = if present.is_empty() {
        "none of them".to_string()
    } else {
        present.join(" ")
    };
    if missing.is_empty() {
        return Line::ok(format!("capabilities: {present} effective"));
    }
    Line::fail(
        format!(
            "capabilities: missing {} (effective: {present})",
            missing.join(" ")
        ),
        format!(
            "grant {}: run as root, or in the systemd unit `AmbientCapabilities={UNIT_CAPS}` \
             with the same in CapabilityBoundingSet= (as gor-agent/deploy/gor-agent.service has)",
            missing.join(" ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    #[test]
    fn releases_parse_to_their_leading_numbers() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18, 44)));
        assert_eq!(parse_release("6.1.0-28-amd64"), Some((6, 1, 0)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_release("5.10"), Some((5, 10, 0)));
        assert_eq!(parse_release("4.19.0+"), Some((4, 19, 0)));
        assert_eq!(parse_release("6.6.0-rc3"), Some((6, 6, 0)));
        for bad in ["", "6", "linux", "x.y.z", ".5.8"] {
            assert_eq!(parse_release(bad), None, "{bad}");
        }
    }

    #[test]
    fn kernel_versions_compare_by_major_then_minor() {
        let line = |r: &str| kernel_line(&Ok(r.to_string()), false);
        assert_eq!(line("5.7.19").status, Status::Fail);
        assert!(line("5.7.19").fix.unwrap().contains(">= 5.8"));
        assert_eq!(line("4.19.0").status, Status::Fail);
        assert_eq!(line("5.8.0").status, Status::Ok);
        // 5.10 is newer than 5.8 (numbers, not text).
        assert_eq!(line("5.10.0-30-amd64").status, Status::Ok);
        assert!(line("5.10.0").text.contains("cls_bpf"));
        assert!(kernel_line(&Ok("6.18.44".into()), true)
            .text
            .contains("tcx links"));
        assert_eq!(line("weird").status, Status::Warn);
        assert_eq!(kernel_line(&Err("no".into()), false).status, Status::Warn);
    }

    #[test]
    fn btf_is_needed_only_for_co_re_relocations() {
        let object = |needs| {
            Ok(Some(EmbeddedObject {
                bytes: 1024,
                needs_kernel_btf: needs,
            }))
        };
        assert_eq!(btf_line(true, &object(true)).status, Status::Ok);
        assert_eq!(btf_line(false, &object(false)).status, Status::Warn);
        let line = btf_line(false, &object(true));
        assert_eq!(line.status, Status::Fail);
        assert!(line.fix.unwrap().contains("CONFIG_DEBUG_INFO_BTF"));
        assert_eq!(object_line(&Ok(None)).status, Status::Fail);
        assert!(object_line(&Ok(None))
            .fix
            .unwrap()
            .contains("cargo xtask build-ebpf"));
    }

    #[test]
    fn ring_buffer_errors_say_what_to_do() {
        let line = |errno| ring_buffer_line(32 << 20, Err(io::Error::from_raw_os_error(errno)));
        assert_eq!(ring_buffer_line(32 << 20, Ok(())).status, Status::Ok);
        assert!(ring_buffer_line(32 << 20, Ok(())).text.contains("32 MiB"));
        assert!(ring_buffer_line(64 << 10, Ok(())).text.contains("64 KiB"));
        assert!(line(libc::EPERM).fix.unwrap().contains("CAP_BPF"));
        assert!(line(libc::EINVAL).fix.unwrap().contains(">= 5.8"));
        assert!(line(libc::ENOMEM).fix.unwrap().contains("GOR_RING_BUFFER"));
        assert_eq!(line(libc::EBADF).status, Status::Fail);
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tgor-agent\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t000000c000001000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0xc0_0000_1000));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
    }

    #[test]
    fn caps_needed_are_bpf_net_admin_perfmon_or_sys_admin_for_two_of_them() {
        let bits = |caps: &[u32]| caps.iter().fold(0u64, |m, &b| m | 1 << b);
        assert!(missing_caps(bits(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON])).is_empty());
        assert!(missing_caps(bits(&[CAP_SYS_ADMIN, CAP_NET_ADMIN])).is_empty());
        assert!(missing_caps(u64::MAX).is_empty());
        assert_eq!(
            missing_caps(0),
            vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]
        );
        assert_eq!(missing_caps(bits(&[CAP_SYS_ADMIN])), vec!["CAP_NET_ADMIN"]);
        assert_eq!(
            missing_caps(bits(&[CAP_BPF, CAP_NET_ADMIN])),
            vec!["CAP_PERFMON"]
        );

        let ok = caps_line(Ok(bits(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON])));
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(
            ok.text,
            "capabilities: CAP_BPF CAP_NET_ADMIN CAP_PERFMON effective"
        );
        let fail = caps_line(Ok(bits(&[CAP_NET_ADMIN])));
        assert_eq!(fail.status, Status::Fail);
        assert!(
            fail.text.contains("missing CAP_BPF CAP_PERFMON"),
            "{}",
            fail.text
        );
        let fix = fail.fix.unwrap();
        assert!(fix.contains("grant CAP_BPF CAP_PERFMON"), "{fix}");
        assert!(
            fix.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"),
            "{fix}"
        );
        assert!(caps_line(Ok(0)).text.contains("none of them"));
    }
}
