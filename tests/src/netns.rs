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

/// A namespace joined to the root namespace by a veth pair: `root_dev` (10.78.`net`.1/24)
/// stays in the root namespace, `eth0` (10.78.`net`.2/24) is in the namespace. A link of
/// its own, whose traffic the root namespace sees on `root_dev` alone.
pub struct Joined {
    pub ns: String,
    pub root_dev: String,
    /// The namespace's address.
    pub addr: String,
    /// The root side's address.
    pub root_addr: String,
}

impl Joined {
    /// `tag` (a few letters) and `net` make the names and the subnet: unique per test.
    pub fn new(tag: &str, net: u8) -> Joined {
        let id = std::process::id() % 100_000;
        let j = Joined {
            ns: format!("gor-{tag}{net}-{id}"),
            // Interface names have 15 bytes at most.
            root_dev: format!("gj{tag}{net}"),
            addr: format!("10.78.{net}.2"),
            root_addr: format!("10.78.{net}.1"),
        };
        assert!(j.root_dev.len() <= 15, "{} is too long a name", j.root_dev);
        // Leftovers of an earlier run with the same names.
        let _ = Command::new("ip").args(["netns", "del", &j.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &j.root_dev])
            .output();
        ip(&["netns", "add", &j.ns]);
        ip(&[
            "link",
            "add",
            &j.root_dev,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &j.ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", j.root_addr),
            "dev",
            &j.root_dev,
        ]);
        ip(&["link", "set", &j.root_dev, "up"]);
        ip(&[
            "-n",
            &j.ns,
            "addr",
            "add",
            &format!("{}/24", j.addr),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &j.ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &j.ns, "link", "set", "lo", "up"]);
        j
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the root end.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_dev])
            .output();
    }
}
