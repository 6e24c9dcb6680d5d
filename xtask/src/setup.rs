//! `cargo xtask setup`: installs, idempotently, everything the build and the tests need on
//! a Debian/Ubuntu machine, as root. A second run that finds everything takes seconds.
use std::process::Command;

use anyhow::{bail, Result};

use crate::util;

/// Debian packages: the eBPF toolchain (rustc/cargo 1.96 with a prebuilt `core` for BPF,
/// LLVM 22 for bpf-linker) and the real programs the tests use (chromium: headless, it
/// opens the page of `gor-agent report` in the tests of that page; nats-server: the
/// JetStream server between listeners and replay servers).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "bpftool",
    "nginx",
    "curl",
    "wrk",
    "tcpdump",
    "python3",
    "python3-requests",
    "openssl",
    "systemd",
    "chromium",
    "nats-server",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        if !util::is_root() {
            bail!("missing Debian packages {missing:?}; run `cargo xtask setup` as root to install them");
        }
        println!("xtask setup: installing {missing:?}");
        util::run(Command::new("apt-get").arg("update").arg("-q"))?;
        util::run(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing),
        )?;
        // The tests start their own nginx; the one the package enabled is not needed.
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "nginx"])
            .output();
    }
    let linker = util::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        println!("xtask setup: installing bpf-linker {BPF_LINKER_VERSION}");
        // Without LLVM_PREFIX its build script finds an older LLVM and fails with -lLLVM.
        util::run(
            Command::new("cargo")
                .env("LLVM_PREFIX", "/usr/lib/llvm-22")
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"]),
        )?;
    }
    println!("xtask setup: everything is in place");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}
