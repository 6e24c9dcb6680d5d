//! Embeds the kernel object built by `cargo xtask build-ebpf`, so the agent binary is all a
//! production host needs.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = std::env::var_os("GOR_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../gor-ebpf/target/bpfel-unknown-none/release/gor"));
    println!("cargo:rerun-if-env-changed=GOR_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("gor.bpf.o");
    if object.exists() {
        std::fs::copy(&object, &out).expect("copy the eBPF object into OUT_DIR");
    } else {
        // Userspace-only work (unit tests, clippy) still builds; loading then fails with a
        // message that says how to build the object.
        println!(
            "cargo:warning=eBPF object {} not found: run `cargo xtask build-ebpf` (this build cannot capture)",
            object.display()
        );
        std::fs::write(&out, b"").expect("write an empty placeholder");
    }
}
