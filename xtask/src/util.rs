//! Process helpers for the commands.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Runs the workspace's cargo (the one that runs xtask) in the workspace root.
pub fn cargo(args: &[&str], release: bool) -> Result<()> {
    let mut cmd = cargo_command(args);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

/// The workspace's cargo with `args`, in the workspace root, as [`cargo`] runs it.
pub fn cargo_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root()).args(args);
    // `cargo run` gave xtask its package's variables (CARGO_MANIFEST_DIR, CARGO_PKG_NAME,
    // ...); ring's build script tracks some of them, so builds from here and from a shell
    // would rebuild ring, rustls and the agent over each other (minutes each time).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// Replaces this process with `bin args` (keeps the environment).
pub fn exec(bin: &Path, args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = Command::new(bin).args(args).exec();
    bail!("starting {}: {err}", bin.display())
}

/// Output of a command, or None when it cannot be run.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
