//! The systemd unit shipped in gor-agent/deploy passes `systemd-analyze verify` without a
//! single complaint (unknown keys are only warnings there, so stderr must be empty too).

use std::{path::Path, process::Command};

#[test]
fn systemd_unit_verifies_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("gor-agent/deploy/gor-agent.service"))
        .expect("the unit file");
    // verify checks that ExecStart exists: point it at the binary the tests use.
    let bin = gor_tests::agent::agent_bin();
    let unit = unit.replace("/usr/local/bin/gor-agent", &bin.display().to_string());
    let dir = gor_tests::agent::temp_dir("unit");
    let path = dir.join("gor-agent.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complained: {stderr}"
    );
    let example = std::fs::read_to_string(root.join("gor-agent/deploy/gor-agent.env.example"))
        .expect("the example env file");
    assert!(example.contains("GOR_PORTS=") && example.contains("GOR_TARGET="));
}
