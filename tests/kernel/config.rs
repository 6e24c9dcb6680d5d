//! Invalid configuration: exit 64 with a message naming the setting and the value, and
//! nothing attached.

use gor_tests::{agent::run_to_exit, host::HostState};

#[test]
fn a_port_list_that_is_not_ports_exits_64_naming_it() {
    let host = HostState::snapshot();
    let (code, stderr) = run_to_exit(&[("GOR_PORTS", "80,http")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("GOR_PORTS") && stderr.contains("80,http"),
        "{stderr}"
    );
    host.assert_clean();
}

#[test]
fn an_interface_that_does_not_exist_exits_64_naming_it() {
    let host = HostState::snapshot();
    let (code, stderr) = run_to_exit(&[("GOR_PORTS", "80"), ("GOR_INTERFACES", "lo,gor-nosuch0")]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("GOR_INTERFACES") && stderr.contains("gor-nosuch0"),
        "{stderr}"
    );
    host.assert_clean();
}

#[test]
fn every_invalid_value_is_reported_at_once() {
    let (code, stderr) = run_to_exit(&[
        ("GOR_PORTS", "0"),
        ("GOR_RING_BUFFER", "3MiB"),
        ("GOR_IDLE_TIMEOUT", "later"),
    ]);
    assert_eq!(code, 64, "{stderr}");
    for name in ["GOR_PORTS", "GOR_RING_BUFFER", "GOR_IDLE_TIMEOUT"] {
        assert!(stderr.contains(name), "{name} missing from:\n{stderr}");
    }
}

#[test]
fn each_invalid_mirror_setting_exits_64_naming_it() {
    let cases = [
        ("GOR_TARGET", "ftp://staging"),
        ("GOR_RATE", "lots"),
        ("GOR_RATE", "150%"),
        ("GOR_TIMEOUT", "0s"),
        ("GOR_WORKERS", "none"),
        ("GOR_QUEUE", "-5"),
        ("GOR_SET_HEADER", "no colon here"),
        ("GOR_SHUTDOWN_GRACE", "soon"),
        ("GOR_HTTP_MAX_BODY", "big"),
        ("GOR_INPUT_PCAP", "/nonexistent/file.pcap"),
        ("GOR_OUTPUT_FILE_SIZE_LIMIT", "huge"),
        ("GOR_HTTP_ALLOW_URL", "([unclosed"),
        ("GOR_HTTP_HEADER_LIMITER", "X-Session: 150%"),
        ("GOR_MIDDLEWARE", "/nonexistent/middleware.py --flag"),
        ("GOR_MIDDLEWARE", "python3 'unclosed"),
        ("GOR_MIDDLEWARE_QUEUE", "0"),
        ("GOR_METRICS_ADDR", "localhost:9091"),
        ("GOR_METRICS_ADDR", "127.0.0.1"),
        ("GOR_THREADS", "0"),
        ("GOR_LOG_FORMAT", "xml"),
    ];
    for (name, value) in cases {
        let (code, stderr) = run_to_exit(&[("GOR_PORTS", "80"), (name, value)]);
        assert_eq!(code, 64, "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(value),
            "{name}={value} not named in:\n{stderr}"
        );
    }
}

#[test]
fn replay_settings_that_are_invalid_exit_64_naming_them() {
    let dir = gor_tests::agent::temp_dir("config-replay");
    let file = dir.join("t.gor");
    std::fs::write(&file, b"").expect("write");
    let file = file.to_str().expect("utf-8");
    let cases = [
        ("GOR_INPUT_FILE", "/nonexistent/*.gor"),
        ("GOR_SPEED", "fast"),
        ("GOR_INPUT_FILE_MAX_WAIT", "forever"),
        ("GOR_TARGET", "ftp://staging"),
        ("GOR_HTTP_ALLOW_URL", "([unclosed"),
    ];
    for (name, value) in cases {
        let env = [("GOR_INPUT_FILE", file), (name, value)];
        let out = std::process::Command::new(gor_tests::agent::agent_bin())
            .arg("replay")
            .env_clear()
            .envs(env)
            .output()
            .expect("run gor-agent replay");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(value),
            "{name}={value} not named in:\n{stderr}"
        );
    }
}

#[test]
fn nats_settings_that_are_invalid_exit_64_naming_them() {
    // On the agent (a listener) and on the replay server alike.
    let cases = [
        ("GOR_NATS_URL", "http://nats:4222"),
        ("GOR_NATS_URL", "nats://user:secret@nats:4222"),
        ("GOR_NATS_STREAM_DISCARD", "sometimes"),
        ("GOR_NATS_STREAM_MAX_AGE", "forever"),
        ("GOR_NATS_PARTITIONS", "0"),
        ("GOR_NATS_SUBJECT", "gor.*"),
        ("GOR_NATS_LEASE", "1s"),
    ];
    for (name, value) in cases {
        let mut env = vec![("GOR_NATS_URL", "nats://127.0.0.1:4222"), (name, value)];
        if name == "GOR_NATS_URL" {
            env.remove(0);
        }
        let (code, stderr) = run_to_exit(&[&[("GOR_PORTS", "80")][..], &env].concat());
        assert_eq!(code, 64, "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(value),
            "{name}={value} not named in:\n{stderr}"
        );
        let out = std::process::Command::new(gor_tests::agent::agent_bin())
            .arg("replay-server")
            .env_clear()
            .envs(env.iter().copied())
            .env("GOR_TARGET", "http://127.0.0.1:9")
            .output()
            .expect("run gor-agent replay-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(value),
            "replay-server: {name}={value} not named in:\n{stderr}"
        );
    }
    // The replay server needs NATS and a target.
    let out = std::process::Command::new(gor_tests::agent::agent_bin())
        .arg("replay-server")
        .env_clear()
        .output()
        .expect("run gor-agent replay-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("GOR_NATS_URL") && stderr.contains("GOR_TARGET"),
        "{stderr}"
    );
}
