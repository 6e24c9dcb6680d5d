//! `gor-agent check`, the preflight: the real binary on this host, on `lo` and on a veth
//! in a namespace the test creates, with other programs on the hooks, with capabilities
//! dropped, and with staging up and down. One line per requirement; exit 0 only when no
//! line is `FAIL`.

use std::net::TcpListener;

use gor_tests::{
    agent::{run_check, Agent, Checked},
    host::HostState,
    netns::{in_netns, Pair},
    tcx::{OtherTcx, Place},
};

/// Every line starts with its status, padded to one width.
fn assert_no_fail(c: &Checked) {
    assert!(!c.stdout.is_empty(), "no output:\n{c}");
    for line in c.stdout.lines() {
        assert!(
            line.starts_with("ok    ") || line.starts_with("warn  "),
            "not ok/warn: {line:?} in:\n{c}"
        );
    }
}

/// `gor-agent check` on `lo`, mirroring to `target`.
fn check_lo_with_target(target: &str) -> Checked {
    run_check(
        &[],
        &[
            ("GOR_PORTS", "80"),
            ("GOR_INTERFACES", "lo"),
            ("GOR_TARGET", target),
        ],
    )
}

#[test]
fn passes_as_root_on_lo_with_staging_listening_and_attaches_nothing() {
    let host = HostState::snapshot();
    let staging = TcpListener::bind("127.0.0.1:0").expect("bind a staging socket");
    let target = format!("http://127.0.0.1:{}", staging.local_addr().unwrap().port());
    let c = check_lo_with_target(&target);
    assert_eq!(c.code, 0, "{c}");
    assert_no_fail(&c);
    for needle in [
        "kernel ",
        "eBPF object:",
        "BTF:",
        "BPF ring buffer:",
        "capabilities:",
        "interface lo:",
        "lo ingress:",
        "lo egress:",
    ] {
        c.line(needle);
    }
    assert!(
        c.line(&format!("target {target}"))
            .starts_with("ok    target"),
        "{c}"
    );
    // The check really connected to staging.
    staging.set_nonblocking(true).unwrap();
    assert!(staging.accept().is_ok(), "the check did not connect: {c}");
    host.assert_clean();
}

#[test]
fn a_missing_interface_fails_naming_it_and_everything_else_is_still_checked() {
    let c = run_check(
        &[],
        &[("GOR_PORTS", "80"), ("GOR_INTERFACES", "lo,gor-nosuch0")],
    );
    assert_eq!(c.code, 1, "{c}");
    let line = c.line("gor-nosuch0");
    assert!(
        line.starts_with("FAIL  interface gor-nosuch0: not found — fix: "),
        "{c}"
    );
    assert!(
        line.contains("GOR_INTERFACES") && line.contains("ip -br link"),
        "{c}"
    );
    for needle in ["kernel ", "capabilities:", "lo ingress:", "mirroring: off"] {
        c.line(needle);
    }
    assert_eq!(c.stdout.matches("FAIL").count(), 1, "{c}");
}

#[test]
fn invalid_settings_exit_64_before_any_check() {
    let c = run_check(
        &[],
        &[("GOR_PORTS", "80,http"), ("GOR_RING_BUFFER", "3MiB")],
    );
    assert_eq!(c.code, 64, "{c}");
    assert!(c.stdout.is_empty(), "{c}");
    assert!(
        c.stderr.contains("GOR_PORTS") && c.stderr.contains("GOR_RING_BUFFER"),
        "{c}"
    );
}

#[test]
fn staging_with_nothing_listening_fails_the_target_line() {
    // A port that was free a moment ago: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}/base");
    let c = check_lo_with_target(&target);
    assert_eq!(c.code, 1, "{c}");
    let line = c.line(&format!("target {target}"));
    assert!(line.starts_with("FAIL  "), "{c}");
    assert!(
        line.contains("unreachable") && line.contains("refused") && line.contains("fix: "),
        "{c}"
    );
    assert_eq!(c.stdout.matches("FAIL").count(), 1, "{c}");
}

#[test]
fn a_taken_metrics_address_fails_its_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let c = run_check(
        &[],
        &[
            ("GOR_PORTS", "80"),
            ("GOR_INTERFACES", "lo"),
            ("GOR_METRICS_ADDR", &addr),
        ],
    );
    assert_eq!(c.code, 1, "{c}");
    let line = c.line(&format!("metrics: cannot listen on {addr}"));
    assert!(
        line.starts_with("FAIL  ") && line.contains("GOR_METRICS_ADDR"),
        "{c}"
    );
    assert_eq!(c.stdout.matches("FAIL").count(), 1, "{c}");
}

fn tc(ns: &str, args: &[&str]) {
    let cmd = [&["netns", "exec", ns, "tc"], args].concat();
    gor_tests::host::run("ip", &cmd);
}

#[test]
fn other_programs_on_the_hooks_are_named_and_gors_own_are_told_apart() {
    // Everything here lives in the pair's namespaces and goes when `pair` is dropped.
    let pair = Pair::new("check");
    // A classic filter (u32: built into every kernel that has TC) and another tool's tcx
    // program on va's ingress; nothing on its egress.
    tc(&pair.a, &["qdisc", "add", "dev", "va", "clsact"]);
    tc(
        &pair.a,
        &[
            "filter", "add", "dev", "va", "ingress", "u32", "match", "u32", "0", "0", "classid",
            "1:1",
        ],
    );
    let _other = in_netns(&pair.a, || {
        OtherTcx::attach("other_tcx", "va", false, Place::Last)
    });
    let ns_exec = ["ip", "netns", "exec", pair.a.as_str()];
    let env = [("GOR_PORTS", "80"), ("GOR_INTERFACES", "va")];

    let c = run_check(&ns_exec, &env);
    assert_eq!(
        c.code, 0,
        "other programs are a warning, not a failure: {c}"
    );
    let ingress = c.line("va ingress:");
    assert!(ingress.starts_with("warn  "), "{c}");
    assert!(
        ingress.contains("other programs: tcx program \"other_tcx\" (id ")
            && ingress.contains("u32 filter (pref "),
        "{c}"
    );
    assert!(ingress.contains("it sees every packet"), "{c}");
    assert_eq!(
        c.line("va egress:"),
        "ok    va egress: no other TC program",
        "{c}"
    );

    // With a gor-agent capturing on va, its programs are gor's own: in front of the
    // other tcx program, and not listed among the others.
    let agent = Agent::start_with("check-own", &[80], &["va"], Some(&pair.a), &[]);
    let c = run_check(&ns_exec, &env);
    assert_eq!(c.code, 0, "{c}");
    let ingress = c.line("va ingress:");
    assert!(ingress.starts_with("warn  "), "{c}");
    let (others, own) = ingress
        .split_once("gor's own ")
        .unwrap_or_else(|| panic!("gor's programs not recognised: {c}"));
    assert!(
        others.contains("\"other_tcx\"") && others.contains("u32 filter"),
        "{c}"
    );
    assert!(
        !others.contains("gor_"),
        "gor's program listed as another's: {c}"
    );
    assert!(own.starts_with("tcx program \"gor_ingress\" (id "), "{c}");
    assert!(!ingress.contains("before gor's"), "gor is not first: {c}");
    let egress = c.line("va egress:");
    assert!(
        egress.starts_with(
            "ok    va egress: no other TC program; gor's own tcx program \"gor_egress\""
        ),
        "{c}"
    );

    // A program put in front of gor's afterwards is named as one that runs before it.
    let _first = in_netns(&pair.a, || {
        OtherTcx::attach("other_first", "va", false, Place::First)
    });
    let c = run_check(&ns_exec, &env);
    let ahead = c
        .line("va ingress:")
        .split("; ")
        .find(|part| part.contains("before gor's"))
        .unwrap_or_else(|| panic!("no program named as running before gor's: {c}"));
    assert!(
        ahead.starts_with("tcx program \"other_first\" (id ") && ahead.contains(") runs before"),
        "only other_first runs before gor's: {c}"
    );
    agent.stop();
}

/// `gor-agent check` on `lo` as root without `caps` (setpriv's names: `bpf`, `perfmon`):
/// root keeps only what its bounding set allows across exec.
fn check_lo_without(caps: &[&str]) -> Checked {
    let drop: Vec<String> = caps.iter().map(|c| format!("-{c}")).collect();
    let bounding = format!("--bounding-set={}", drop.join(","));
    run_check(
        &["setpriv", &bounding, "--"],
        &[("GOR_PORTS", "80"), ("GOR_INTERFACES", "lo")],
    )
}

#[test]
fn dropped_capabilities_fail_naming_the_missing_ones() {
    let c = check_lo_without(&["bpf", "net_admin", "perfmon", "sys_admin"]);
    assert_eq!(c.code, 1, "{c}");
    let caps = c.line("capabilities:");
    assert!(
        caps.starts_with("FAIL  capabilities: missing CAP_BPF CAP_NET_ADMIN CAP_PERFMON"),
        "{c}"
    );
    assert!(
        caps.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"),
        "{c}"
    );
    // Without CAP_BPF the ring buffer cannot be created either, and says why.
    assert!(c.line("BPF ring buffer:").starts_with("FAIL  "), "{c}");
    assert!(c.line("BPF ring buffer:").contains("CAP_BPF"), "{c}");

    // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, never for CAP_NET_ADMIN.
    let c = check_lo_without(&["bpf", "net_admin", "perfmon"]);
    assert!(
        c.line("capabilities:")
            .starts_with("FAIL  capabilities: missing CAP_NET_ADMIN (effective: CAP_SYS_ADMIN)"),
        "{c}"
    );
    let c = check_lo_without(&["perfmon", "sys_admin"]);
    assert!(
        c.line("capabilities:")
            .starts_with("FAIL  capabilities: missing CAP_PERFMON "),
        "{c}"
    );
}

#[test]
fn nats_lines_name_the_server_and_the_stream_and_fail_when_it_is_down() {
    let mut nats = gor_tests::nats::NatsServer::start("check-nats");
    let url = nats.url();
    let env = [
        ("GOR_PORTS", "80"),
        ("GOR_INTERFACES", "lo"),
        ("GOR_NATS_URL", url.as_str()),
    ];
    let c = run_check(&[], &env);
    assert_eq!(c.code, 0, "{c}");
    assert!(c.line("nats: ").starts_with("ok"), "{c}");
    assert!(c.line("nats: ").contains("nats-server 2."), "{c}");
    let stream = c.line("nats stream GOR");
    assert!(
        stream.starts_with("ok") && stream.contains("created at start"),
        "{c}"
    );
    nats.kill();
    let c = run_check(&[], &env);
    assert_eq!(c.code, 1, "{c}");
    let line = c.line("nats: ");
    assert!(
        line.starts_with("FAIL") && line.contains("GOR_NATS_URL"),
        "{c}"
    );
}
