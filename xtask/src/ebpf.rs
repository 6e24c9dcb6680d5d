//! Building the kernel object.
//!
//! Two routes (see ../shared/docs/ebpf-toolchain.md):
//! - Debian's `rustc-web` with `libstd-rust-web-dev-bpf`, which ships a prebuilt `core`
//!   for `bpfel-unknown-none` (no build-std); its stable rustc accepts aya-ebpf's unstable
//!   BPF asm with `RUSTC_BOOTSTRAP=1`. This is what `cargo xtask setup` installs.
//! - a rustup `nightly` with `rust-src`, the usual aya set-up, with `-Z build-std=core`.
use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::util;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none";

pub fn build() -> Result<()> {
    let dir = util::root().join("gor-ebpf");
    let mut cmd;
    if Path::new(DEBIAN_RUSTC).exists() && Path::new(DEBIAN_BPF_CORE).exists() {
        cmd = Command::new(DEBIAN_CARGO);
        cmd.env("RUSTC_BOOTSTRAP", "1").env("RUSTC", DEBIAN_RUSTC);
        cmd.args(["build", "--release", "--target", "bpfel-unknown-none"]);
    } else if nightly_with_rust_src() {
        cmd = Command::new("cargo");
        cmd.args([
            "+nightly",
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ]);
    } else {
        bail!(
            "no Rust toolchain that can build for bpfel-unknown-none: run `cargo xtask setup` \
             (installs Debian's rustc-web and libstd-rust-web-dev-bpf), or install a rustup \
             nightly with rust-src"
        );
    }
    if util::output(Command::new("bpf-linker").arg("--version")).is_none() {
        bail!("bpf-linker not found on PATH: run `cargo xtask setup`");
    }
    cmd.current_dir(&dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", "bpf-linker")
        // BTF, so the loader can relocate and show source lines in verifier logs.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\u{1f}-Clink-arg=--btf\u{1f}-Dwarnings",
        );
    util::run(&mut cmd)
}

fn nightly_with_rust_src() -> bool {
    util::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .is_some_and(|s| s.lines().any(|l| l.starts_with("rust-src")))
}
