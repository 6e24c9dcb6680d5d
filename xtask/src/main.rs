//! Developer commands. `cargo xtask <command>`:
//!
//! - `setup`: installs what the build and the tests need (idempotent; seconds when done)
//! - `build-ebpf`: builds the kernel object that `gor-agent` embeds
//! - `build`: the kernel object, then the workspace
//! - `test`: setup, build, fmt + clippy, unit tests, kernel tests
//! - `run`: builds and starts the agent with the `GOR_*` environment
//! - `bench`: the benchmarks, with their baselines measured in the same run, into
//!   BENCHMARKS.md (`--quick` for development)
mod ebpf;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain pieces and test programs (apt packages, bpf-linker).
    Setup,
    /// Build the eBPF object (gor-ebpf) for bpfel-unknown-none.
    BuildEbpf,
    /// Build the eBPF object and the workspace.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every check and test: setup, build, fmt, clippy, unit tests, kernel tests.
    Test {
        /// Skip the kernel tests (for machines where BPF cannot be loaded, e.g. without root).
        /// CI never uses this.
        #[arg(long)]
        no_kernel: bool,
        /// Skip `setup` (when you know everything is installed).
        #[arg(long)]
        no_setup: bool,
        /// Only run tests whose name contains this filter.
        filter: Option<String>,
    },
    /// Build (release) and start the agent; configuration comes from GOR_* variables.
    Run {
        /// Arguments passed to gor-agent.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks and write BENCHMARKS.md (root: they load BPF programs).
    Bench {
        /// Shorter durations, for development only (BENCHMARKS.md says so).
        #[arg(long)]
        quick: bool,
    },
    /// A local production, a recording staging, traffic and the agent: watch gor work.
    Demo,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::BuildEbpf => ebpf::build(),
        Cmd::Build { release } => {
            ebpf::build()?;
            util::cargo(&["build", "--workspace"], release)
        }
        Cmd::Test {
            no_kernel,
            no_setup,
            filter,
        } => test(no_kernel, no_setup, filter),
        Cmd::Run { args } => {
            ebpf::build()?;
            util::cargo(&["build", "-p", "gor-agent"], true)?;
            let bin = util::root().join("target/release/gor-agent");
            util::exec(&bin, &args)
        }
        Cmd::Bench { quick } => bench(quick),
        Cmd::Demo => {
            if !util::is_root() {
                anyhow::bail!("the demo loads BPF programs: run it as root");
            }
            setup::run()?;
            util::exec(&release_tool("gor-demo")?, &[])
        }
    }
}

/// Builds the kernel object, the release agent and the tests crate's program `bin`, which
/// starts that agent; returns the program's path.
fn release_tool(bin: &str) -> Result<std::path::PathBuf> {
    ebpf::build()?;
    let args = [
        "build",
        "-p",
        "gor-agent",
        "-p",
        "gor-tests",
        "--bin",
        "gor-agent",
        "--bin",
        bin,
    ];
    util::cargo(&args, true)?;
    Ok(util::root().join("target/release").join(bin))
}

/// The criterion framing benchmark, then `gor-bench`, which runs the mirroring
/// experiments and writes BENCHMARKS.md with both.
fn bench(quick: bool) -> Result<()> {
    if !util::is_root() {
        anyhow::bail!(
            "the benchmarks load BPF programs and attach them to lo, which needs root: run \
             `sudo cargo xtask bench` (nothing was run)"
        );
    }
    setup::run()?;
    let started = std::time::Instant::now();
    let mut criterion = vec!["bench", "-p", "gor-agent", "--bench", "framing"];
    if quick {
        criterion.extend(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
    }
    util::cargo(&criterion, false)?;
    // The counting-allocator test's figures, for the report.
    let allocations = util::root().join("target/allocations.txt");
    let out = util::cargo_command(&[
        "test",
        "--release",
        "-p",
        "gor-agent",
        "--test",
        "allocations",
        "--",
        "--nocapture",
    ])
    .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "the allocation test failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    std::fs::write(&allocations, &out.stdout)?;
    let mut cmd = std::process::Command::new(release_tool("gor-bench")?);
    cmd.arg("--out")
        .arg(util::root().join("BENCHMARKS.md"))
        .arg("--criterion")
        .arg(util::root().join("target/criterion"))
        .arg("--allocations")
        .arg(&allocations);
    if quick {
        cmd.arg("--quick");
    }
    util::run(&mut cmd)?;
    println!(
        "xtask bench: done in {} s; BENCHMARKS.md written",
        started.elapsed().as_secs()
    );
    Ok(())
}

fn test(no_kernel: bool, no_setup: bool, filter: Option<String>) -> Result<()> {
    if !no_kernel && !util::is_root() {
        anyhow::bail!(
            "the kernel tests load BPF programs and create network namespaces, which needs root \
             (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON + CAP_SYS_ADMIN). Run as root, or pass \
             --no-kernel to run only the tests that need no kernel (CI never does)."
        );
    }
    if !no_setup {
        setup::run()?;
    }
    ebpf::build()?;
    util::cargo(&["fmt", "--all", "--check"], false)?;
    util::cargo(
        &["fmt", "--check", "--manifest-path", "gor-ebpf/Cargo.toml"],
        false,
    )?;
    util::cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        false,
    )?;
    let mut unit = vec!["test", "--workspace", "--exclude", "gor-tests"];
    // The test helpers' and the benchmark harness's own unit tests (parsers of wrk's and
    // tcpdump's reports, the BENCHMARKS.md layout) and the report page's browser tests:
    // no kernel needed.
    let mut helpers = vec!["test", "-p", "gor-tests", "--lib", "--bins"];
    if let Some(f) = &filter {
        unit.push(f);
        helpers.push(f);
    }
    util::cargo(&unit, false)?;
    // The kernel tests run the release agent: the binary production runs, and fast enough
    // to keep up with wrk on two cores while tcpdump runs beside it. The helpers' tests of
    // `gor-agent report` (its page in headless Chromium) run it too, without a kernel.
    util::cargo(&["build", "-p", "gor-agent"], true)?;
    util::cargo(&helpers, false)?;
    if no_kernel {
        println!("xtask: kernel tests skipped (--no-kernel)");
        return Ok(());
    }
    // What earlier runs left for inspection (see tests/src/agent.rs `temp_dir`).
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("gor-tests"));
    // One test at a time: each starts its own agent, and the leftover checks after each
    // test look at the whole host.
    let mut kernel = vec!["test", "-p", "gor-tests", "--test", "kernel"];
    if let Some(f) = &filter {
        kernel.push(f);
    }
    kernel.extend(["--", "--test-threads=1"]);
    util::cargo(&kernel, false)
}
