//! The broker between listeners and replay servers, for the fleet tests: a real
//! `nats-server` (Debian's, JetStream on file storage in the test's directory) on free
//! loopback ports, that a test can crash (SIGKILL) and start again on the same port and
//! store; and `gor-agent replay-server`, started and stopped like the agent (its
//! readiness signal, its stats file, SIGTERM).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::agent::{agent_bin, replay_server_command, temp_dir, terminate};
use crate::traffic::free_port;

/// A plain HTTP/1.0 GET to `addr` (the server closes after its answer); the status and
/// the body, or `None` if nothing answered.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&answer[..head_end])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, answer[head_end + 4..].to_vec()))
}

/// A JetStream-enabled nats-server of the test's own.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    /// The monitoring endpoint's port (`/healthz`, `/jsz`).
    pub monitor: u16,
    pub dir: PathBuf,
}

impl NatsServer {
    /// Starts one in a fresh directory named after `name` and waits until JetStream is up.
    /// Panics (failing the test) when `nats-server` is missing: `cargo xtask setup`
    /// installs it.
    pub fn start(name: &str) -> NatsServer {
        NatsServer::start_in(temp_dir(name))
    }

    /// [`NatsServer::start`] with its store and log in `dir` (created if missing).
    pub fn start_in(dir: PathBuf) -> NatsServer {
        std::fs::create_dir_all(&dir).expect("create the nats-server directory");
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            monitor: free_port(),
            dir,
        };
        s.restart();
        s
    }

    /// Starts it (again, after [`NatsServer::kill`]) on the same ports and store, and waits
    /// until its health check says JetStream is enabled: a port that accepts connections
    /// is not enough, JetStream recovers its store after that.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats-server.log"))
            .expect("the nats-server log");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (installed by `cargo xtask setup`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = http_get(self.monitor_addr(), "/healthz?js-enabled-only=true") {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                panic!("nats-server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server's JetStream not healthy within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its process id (0 while it is down).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The URL for `GOR_NATS_URL`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor))
    }

    /// What the server logged (stderr, over all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }

    /// `/jsz?streams=true&consumers=true`: JetStream's account of its streams.
    pub fn jsz(&self) -> Value {
        let (status, body) = http_get(self.monitor_addr(), "/jsz?streams=true&consumers=true")
            .expect("nats-server's monitoring endpoint answers");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("/jsz is JSON")
    }

    /// The state of stream `name` (`messages`, `bytes`, `first_seq`, `last_seq`, ...), or
    /// `Value::Null` when there is no such stream.
    pub fn stream_state(&self, name: &str) -> Value {
        let jsz = self.jsz();
        jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .find(|s| s["name"] == name)
            .map(|s| s["state"].clone())
            .unwrap_or(Value::Null)
    }

    /// How many messages stream `name` holds (0 if there is no such stream).
    pub fn stream_messages(&self, name: &str) -> u64 {
        self.stream_state(name)["messages"].as_u64().unwrap_or(0)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `gor-agent replay-server`: consumes the stream, mirrors to `GOR_TARGET`.
pub struct ReplayServer {
    child: Option<Child>,
    dir: PathBuf,
}

/// What a replay server left when it stopped.
pub struct ReplayStopped {
    pub stats: Value,
    pub stderr: String,
}

impl ReplayServer {
    /// Starts one with `env` (GOR_NATS_URL, GOR_TARGET, ...) and waits for its READY=1.
    pub fn start(name: &str, env: &[(&str, &str)]) -> ReplayServer {
        ReplayServer::start_in(temp_dir(name), env)
    }

    /// [`ReplayServer::start`] with its files in `dir` (created if missing).
    pub fn start_in(dir: PathBuf, env: &[(&str, &str)]) -> ReplayServer {
        std::fs::create_dir_all(&dir).expect("create the replay server's directory");
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the readiness socket");
        // Short reads, to notice a replay server that exits instead of getting ready.
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a timeout");
        let child = replay_server_command(&dir, env)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).expect("create the stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} replay-server: {e}", agent_bin().display()));
        let mut server = ReplayServer {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 256];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) if &buf[..n] == b"READY=1" => return server,
                Ok(_) => continue,
                Err(e) => {
                    let exited = server.child.as_mut().and_then(|c| c.try_wait().ok()?);
                    if let Some(status) = exited {
                        panic!(
                            "the replay server exited with {status} before it was ready; \
                             its stderr:\n{}",
                            server.stderr()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the replay server did not report READY=1 within 30 s ({e}); its \
                         stderr:\n{}",
                        server.stderr()
                    );
                }
            }
        }
    }

    /// Its directory (stats file, stderr).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The counters it last wrote to its stats file (`Value::Null` before the first).
    pub fn stats_now(&self) -> Value {
        std::fs::read(self.dir.join("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// SIGKILL, as a crash would; returns the counters it had written last.
    pub fn kill(mut self) -> Value {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stats_now()
    }

    /// Stops it with SIGTERM, checks it exited 0, and reads its final counters.
    pub fn stop(mut self) -> ReplayStopped {
        let mut child = self.child.take().expect("running");
        let stderr = terminate(&mut child, "the replay server", || self.stderr());
        let stats = serde_json::from_slice(
            &std::fs::read(self.dir.join("stats.json")).expect("stats file written at exit"),
        )
        .expect("stats file is JSON");
        ReplayStopped { stats, stderr }
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_server_comes_back_on_the_same_port_and_store() {
        let mut nats = NatsServer::start("nats-helper");
        let port = nats.port;
        assert!(nats.jsz()["config"]["store_dir"].is_string());
        assert!(nats.stream_state("GOR").is_null());
        nats.kill();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        nats.restart();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert_eq!(nats.stream_messages("GOR"), 0);
    }
}
