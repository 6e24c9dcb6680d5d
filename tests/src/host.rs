//! Checks on the host: after an agent exits, no program of ours is attached anywhere and
//! the qdiscs are as they were.

use std::process::Command;

/// Runs `cmd args`, panicking with its stderr unless it succeeds; returns its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The qdiscs of every interface, as `tc` shows them.
pub fn qdiscs() -> String {
    run("tc", &["qdisc", "show"])
}

/// Names of gor programs still attached to a network hook (tcx, tc, xdp) in this namespace.
pub fn attached_gor_programs() -> Vec<String> {
    let json = run("bpftool", &["-j", "net", "show"]);
    let mut found = Vec::new();
    // bpftool lists attached programs with their names; ours start with "gor_".
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
    collect_names(&v, &mut found);
    found.retain(|n| n.starts_with("gor_"));
    found
}

fn collect_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                if k == "name" {
                    if let Some(s) = val.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_names(val, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_names(x, out)),
        _ => {}
    }
}

/// Snapshot before a test; `assert_clean` after the agent exited.
pub struct HostState {
    qdiscs: String,
}

impl HostState {
    pub fn snapshot() -> Self {
        HostState { qdiscs: qdiscs() }
    }

    pub fn assert_clean(&self) {
        assert_eq!(
            attached_gor_programs(),
            Vec::<String>::new(),
            "gor programs left attached"
        );
        assert_eq!(qdiscs(), self.qdiscs, "qdiscs changed");
    }
}
