//! Network namespaces that a test creates, joined by a veth pair, and deleted when the
//! value is dropped, also when the test fails.

use std::{fs::File, os::fd::AsRawFd, process::Command};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `a` and `b`, with veth `va` (10.77.0.1/24, fd77::1/64) in `a` and
/// `vb` (10.77.0.2/24, fd77::2/64) in `b`.
pub struct Pair {
    pub a: String,
    pub b: String,
}

impl Pair {
    pub const A_ADDR: &'static str = "10.77.0.1";
    pub const B_ADDR: &'static str = "10.77.0.2";

    pub fn new(tag: &str) -> Pair {
        let id = std::process::id() % 100_000;
        let pair = Pair {
            a: format!("gor-{tag}-{id}-a"),
            b: format!("gor-{tag}-{id}-b"),
        };
        // Delete leftovers of an earlier run with the same names.
        let _ = Command::new("ip").args(["netns", "del", &pair.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &pair.b]).output();
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", "va", "netns", &pair.a, "type", "veth", "peer", "name", "vb", "netns",
            &pair.b,
        ]);
        for (ns, dev, addr) in [(&pair.a, "va", Self::A_ADDR), (&pair.b, "vb", Self::B_ADDR)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// Runs `f` on a new thread that has joined network namespace `ns`; sockets created there
/// stay in that namespace when they are used from other threads.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace panicked")
}
