//! Another tool's program on a tcx hook, for tests that need one next to gor's: two
//! instructions (`return TCX_NEXT`) loaded and linked with bpf(2) directly, so no object
//! file is needed. Dropping it closes the link, which detaches the program.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

// From include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// With no program named: in front of every program on the hook.
const BPF_F_BEFORE: u32 = 1 << 3;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The leading fields of `union bpf_attr` for BPF_LINK_CREATE with a tcx target.
#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// A program linked to a tcx hook until dropped.
pub struct OtherTcx {
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// Where on the hook.
pub enum Place {
    /// After the programs already there (the kernel's default).
    Last,
    /// In front of them.
    First,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) reads `size_of::<T>()` bytes from a live, initialised attr struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl OtherTcx {
    /// Loads a program called `name` (at most 15 bytes) and links it to `iface`'s ingress
    /// (or egress) tcx hook, in the calling thread's network namespace.
    pub fn attach(name: &str, iface: &str, egress: bool, place: Place) -> OtherTcx {
        // r0 = -1 (TC_ACT_UNSPEC, TCX_NEXT: "no opinion"); exit.
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut prog_name = [0u8; 16];
        assert!(
            name.len() < prog_name.len(),
            "program name {name:?} too long"
        );
        prog_name[..name.len()].copy_from_slice(name.as_bytes());
        let prog = bpf(
            BPF_PROG_LOAD,
            &ProgLoad {
                prog_type: BPF_PROG_TYPE_SCHED_CLS,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: 0,
                log_size: 0,
                log_buf: 0,
                kern_version: 0,
                prog_flags: 0,
                prog_name,
            },
        )
        .unwrap_or_else(|e| panic!("loading test program {name}: {e}"));
        let iface_c = CString::new(iface).expect("interface name");
        // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(iface_c.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {iface} here");
        let link = bpf(
            BPF_LINK_CREATE,
            &LinkCreate {
                prog_fd: prog.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: if egress {
                    BPF_TCX_EGRESS
                } else {
                    BPF_TCX_INGRESS
                },
                flags: match place {
                    Place::Last => 0,
                    Place::First => BPF_F_BEFORE,
                },
                relative_fd: 0,
                _pad: 0,
                expected_revision: 0,
            },
        )
        .unwrap_or_else(|e| panic!("linking test program {name} to {iface}: {e}"));
        OtherTcx {
            _link: link,
            _prog: prog,
        }
    }
}
