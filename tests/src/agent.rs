//! The agent under test, as a separate process: the real binary, configured through its
//! `GOR_*` environment, with its streams written to a temporary directory.

use std::{
    collections::HashMap,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Path of the agent binary: `GOR_AGENT_BIN`, or the workspace's release build (what
/// production runs; `cargo xtask test` builds it before the kernel tests).
pub fn agent_bin() -> PathBuf {
    std::env::var_os("GOR_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/gor-agent")
        })
}

/// The agent binary, behind `wrapper` (a program and its arguments, e.g. `ip netns exec
/// NS`) if any, with an empty environment but for a metrics endpoint on any free port
/// (tests may run an agent and a replay at once).
pub(crate) fn agent_command(wrapper: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(agent_bin());
            c
        }
        None => Command::new(agent_bin()),
    };
    cmd.env_clear().env("GOR_METRICS_ADDR", "127.0.0.1:0");
    cmd
}

/// A fresh, empty directory for one test, under `$TMPDIR/gor-tests` (which
/// `cargo xtask test` empties before a run; what a failed test leaves stays for a look).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("gor-tests")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

pub struct Agent {
    child: Option<Child>,
    dir: PathBuf,
}

/// One connection as the agent reconstructed it.
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: u64,
    pub client: String,
    pub server: String,
    pub midstream: bool,
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    pub gaps: Vec<Value>,
}

/// One HTTP message the agent framed.
#[derive(Debug, Clone)]
pub struct Message {
    /// `request`, `response`, or `staging_response` (GOR_TRACK_STAGING_RESPONSES).
    pub kind: String,
    pub id: String,
    pub client: String,
    pub is_request: bool,
    pub start_line: String,
    pub status: u16,
    pub raw: Vec<u8>,
    pub latency_ns: Option<u64>,
}

/// What the agent left behind when it stopped.
pub struct Captured {
    pub conns: Vec<Conn>,
    pub messages: Vec<Message>,
    pub stats: Value,
    pub stderr: String,
}

impl Captured {
    /// The connection whose client address is `client` (as `ip:port`).
    pub fn by_client(&self, client: &str) -> &Conn {
        self.conns
            .iter()
            .find(|c| c.client == client)
            .unwrap_or_else(|| {
                panic!(
                    "no connection from {client}; captured: {:?}",
                    self.clients()
                )
            })
    }

    pub fn clients(&self) -> Vec<&str> {
        self.conns.iter().map(|c| c.client.as_str()).collect()
    }

    /// Requests from `client`, in the order they completed.
    pub fn requests_from(&self, client: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.is_request && m.client == client)
            .collect()
    }

    /// The response paired with request `id`.
    pub fn response_to(&self, id: &str) -> Option<&Message> {
        self.messages.iter().find(|m| !m.is_request && m.id == id)
    }

    pub fn http(&self, name: &str) -> u64 {
        self.stats["http"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no http counter {name}: {}", self.stats))
    }

    pub fn kernel(&self, name: &str) -> u64 {
        self.stats["kernel"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no kernel counter {name}: {}", self.stats))
    }

    pub fn reassembly(&self, name: &str) -> u64 {
        self.stats["reassembly"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name}: {}", self.stats))
    }

    /// Nothing dropped, truncated or lost anywhere between the kernel and the streams.
    pub fn assert_nothing_lost(&self) {
        for k in [
            "ringbuf_drops",
            "ringbuf_dropped_bytes",
            "truncated_packets",
            "truncated_bytes",
            "load_errors",
        ] {
            assert_eq!(
                self.kernel(k),
                0,
                "kernel counter {k} is not zero: {}",
                self.stats
            );
        }
        for k in [
            "gaps",
            "gap_bytes",
            "buffer_overflows",
            "connections_evicted",
        ] {
            assert_eq!(
                self.reassembly(k),
                0,
                "reassembly counter {k} is not zero: {}",
                self.stats
            );
        }
        assert_eq!(self.stats["records"]["decode_errors"], 0, "{}", self.stats);
    }
}

impl Agent {
    /// Starts the agent for `ports` on `interfaces` and waits for its READY=1.
    pub fn start(name: &str, ports: &[u16], interfaces: &[&str]) -> Agent {
        Self::start_with(name, ports, interfaces, None, &[])
    }

    /// Like `start`, optionally inside network namespace `netns`, with extra environment.
    pub fn start_with(
        name: &str,
        ports: &[u16],
        interfaces: &[&str],
        netns: Option<&str>,
        env: &[(&str, &str)],
    ) -> Agent {
        Self::launch(name, ports, interfaces, netns, env, &[], true)
    }

    /// The agent with a command line (`args`, e.g. GoReplay's, which it translates) and
    /// `env`; no GOR_PORTS or GOR_INTERFACES beyond what the arguments say.
    pub fn start_args(name: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::launch(name, &[], &[], None, env, args, true)
    }

    /// The agent as production runs it, for benchmarks: only the stats file, no stream or
    /// message outputs (those write every byte to disk, which production need not pay for).
    pub fn start_bare(
        name: &str,
        ports: &[u16],
        interfaces: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        Self::launch(name, ports, interfaces, None, env, &[], false)
    }

    fn launch(
        name: &str,
        ports: &[u16],
        interfaces: &[&str],
        netns: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
        outputs: bool,
    ) -> Agent {
        let dir = temp_dir(name);
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the readiness socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set a timeout");
        let mut cmd = match netns {
            Some(ns) => agent_command(&["ip", "netns", "exec", ns]),
            None => agent_command(&[]),
        };
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        if args.is_empty() {
            cmd.env("GOR_PORTS", ports.join(","))
                .env("GOR_INTERFACES", interfaces.join(","));
        }
        cmd.args(args)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GOR_STATS_FILE", dir.join("stats.json"))
            .env("GOR_LOG", "info")
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("create the stderr file"));
        if outputs {
            cmd.env("GOR_OUTPUT_STREAMS", dir.join("streams"))
                .env("GOR_OUTPUT_MESSAGES", dir.join("messages.jsonl"));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", agent_bin().display()));
        let agent = Agent {
            child: Some(child),
            dir,
        };
        let mut buf = [0u8; 256];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if &buf[..n] == b"READY=1" => return agent,
                Ok(_) => continue,
                Err(e) => {
                    let stderr = agent.stderr();
                    panic!("the agent did not report READY=1 ({e}); its stderr:\n{stderr}");
                }
            }
        }
    }

    /// The agent's directory (its stats file, outputs, stderr).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent's process id (for memory readings).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the agent, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS")
    }

    /// The most resident memory the agent has had so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM")
    }

    /// What the agent logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The address of the agent's metrics endpoint, from its log (it binds, logs the
    /// address, then reports ready).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let log = self.stderr();
        log.lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in the agent's log:\n{log}"))
    }

    /// The counters the agent last wrote to its stats file.
    pub fn stats_now(&self) -> Value {
        std::fs::read(self.dir.join("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Stops the agent with SIGTERM, checks it exited 0, and reads what it captured.
    pub fn stop(mut self) -> Captured {
        let mut child = self.child.take().expect("running");
        let stderr = terminate(&mut child, "the agent", || self.stderr());
        read_captured(&self.dir, stderr)
    }
}

/// Stops `child` (`what`, for messages) with SIGTERM and checks that it exited 0 within
/// 30 s; returns its stderr, read by `stderr` once it has exited.
pub(crate) fn terminate(child: &mut Child, what: &str, stderr: impl Fn() -> String) -> String {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let waited = wait_with_timeout(child, Duration::from_secs(30), Duration::from_millis(20));
    let Some(status) = waited.unwrap_or_else(|e| panic!("waiting for {what}: {e}")) else {
        let _ = child.kill();
        panic!("{what} did not exit within 30 s of SIGTERM:\n{}", stderr());
    };
    let stderr = stderr();
    assert!(
        status.success(),
        "{what} exited with {status}; its stderr:\n{stderr}"
    );
    stderr
}

/// A `kB` field of `/proc/<pid>/status` (0 if the process or the field is gone).
/// A counter from the agent's stats JSON (`path` of keys), 0 if absent.
pub fn counter(stats: &Value, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Waits for `child` to exit, polling every `poll` (std has no wait with a timeout);
/// `None` if it still runs after `limit`.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
    poll: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(poll);
    }
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn read_captured(dir: &Path, stderr: String) -> Captured {
    let streams = dir.join("streams");
    let stats: Value = serde_json::from_slice(
        &std::fs::read(dir.join("stats.json")).expect("stats file written at exit"),
    )
    .expect("stats file is JSON");
    let index = std::fs::read_to_string(streams.join("connections.jsonl")).unwrap_or_default();
    let mut conns = Vec::new();
    for line in index.lines() {
        let v: Value = serde_json::from_str(line).expect("connections.jsonl lines are JSON");
        let id = v["id"].as_u64().expect("id");
        let read =
            |ext: &str| std::fs::read(streams.join(format!("{id}.{ext}"))).unwrap_or_default();
        conns.push(Conn {
            id,
            client: v["client"].as_str().unwrap_or_default().to_string(),
            server: v["server"].as_str().unwrap_or_default().to_string(),
            midstream: v["midstream"].as_bool().unwrap_or_default(),
            c2s: read("c2s"),
            s2c: read("s2c"),
            gaps: v["gaps"].as_array().cloned().unwrap_or_default(),
        });
    }
    Captured {
        conns,
        messages: read_messages(&dir.join("messages.jsonl")),
        stats,
        stderr,
    }
}

/// Reads a messages file written by `GOR_OUTPUT_MESSAGES`.
pub fn read_messages(path: &Path) -> Vec<Message> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("message lines are JSON");
            let is_request = v["type"] == "request";
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            let start_line = if is_request {
                format!("{} {} {}", s("method"), s("target"), s("version"))
            } else {
                format!("{} {}", s("version"), v["status"])
            };
            Message {
                kind: s("type"),
                id: v["id"].as_str().expect("id").to_string(),
                client: s("client"),
                is_request,
                start_line,
                status: v["status"].as_u64().unwrap_or(0) as u16,
                raw: base64::engine::general_purpose::STANDARD
                    .decode(s("raw"))
                    .expect("base64"),
                latency_ns: v["latency_ns"].as_u64(),
            }
        })
        .collect()
}

/// Runs the agent over a capture file (no kernel) and reads what it framed.
pub fn run_pcap(name: &str, file: &Path, ports: &[u16]) -> Captured {
    run_pcap_with(name, file, ports, &[])
}

/// [`run_pcap`] with extra settings.
pub fn run_pcap_with(name: &str, file: &Path, ports: &[u16], env: &[(&str, &str)]) -> Captured {
    let dir = temp_dir(name);
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let out = agent_command(&[])
        .env("GOR_PORTS", ports.join(","))
        .env("GOR_INPUT_PCAP", file)
        .env("GOR_OUTPUT_STREAMS", dir.join("streams"))
        .env("GOR_OUTPUT_MESSAGES", dir.join("messages.jsonl"))
        .env("GOR_STATS_FILE", dir.join("stats.json"))
        .envs(env.iter().copied())
        .output()
        .expect("run the agent on a pcap file");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the agent failed on {}: {stderr}",
        file.display()
    );
    read_captured(&dir, stderr)
}

/// Groups connections by client address, for tests with many.
pub fn by_client(conns: &[Conn]) -> HashMap<String, &Conn> {
    conns.iter().map(|c| (c.client.clone(), c)).collect()
}

/// Runs the agent binary with `env` and no readiness wait; returns (exit code, stderr).
pub fn run_to_exit(env: &[(&str, &str)]) -> (i32, String) {
    let out = agent_command(&[])
        .envs(env.iter().copied())
        .output()
        .expect("run the agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `gor-agent check` printed, and its exit code.
pub struct Checked {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Checked {
    /// The line that contains `needle` (the whole output in the panic if none does).
    pub fn line(&self, needle: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{self}"))
    }
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `gor-agent check` with `env` only (and PATH), started through `wrapper` when it
/// is not empty (`ip netns exec NS`, `setpriv ...`).
pub fn run_check(wrapper: &[&str], env: &[(&str, &str)]) -> Checked {
    let out = agent_command(wrapper)
        .arg("check")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run gor-agent check");
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What `gor-agent replay` left behind.
pub struct Replayed {
    pub status: i32,
    pub stats: Value,
    pub stderr: String,
    pub messages: Vec<Message>,
}

/// Runs `gor-agent replay ARGS` with `env` (plus a stats file and a messages file in a
/// fresh directory) until it exits by itself.
pub fn run_replay(name: &str, args: &[&str], env: &[(&str, &str)]) -> Replayed {
    let dir = temp_dir(name);
    let out = replay_command(&dir, args, env)
        .output()
        .expect("run gor-agent replay");
    replayed(&dir, out.status.code().unwrap_or(-1), &out.stderr)
}

/// `gor-agent replay ARGS` configured like [`run_replay`], not started yet.
pub fn replay_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = replay_command_bare(dir, args, env);
    cmd.env("GOR_OUTPUT_MESSAGES", dir.join("messages.jsonl"));
    cmd
}

/// `gor-agent replay ARGS` with only the stats file (no messages file), for benchmarks.
pub fn replay_command_bare(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = agent_command(&[]);
    cmd.arg("replay")
        .args(args)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GOR_STATS_FILE", dir.join("stats.json"))
        .env("GOR_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// `gor-agent replay-server` with only the stats file in `dir` and `env`, not started
/// yet (the caller adds a readiness socket if it waits for one).
pub fn replay_server_command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = agent_command(&[]);
    cmd.arg("replay-server")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GOR_STATS_FILE", dir.join("stats.json"))
        .env("GOR_LOG", "info")
        .envs(env.iter().copied());
    cmd
}

/// Reads what a replay run left in `dir`.
pub fn replayed(dir: &Path, status: i32, stderr: &[u8]) -> Replayed {
    Replayed {
        status,
        stats: std::fs::read(dir.join("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(stderr).into_owned(),
        messages: read_messages(&dir.join("messages.jsonl")),
    }
}
