//! A real `nats-server` (Debian's, JetStream with file storage) for the broker's own
//! tests: started on a free loopback port with a store directory of its own, stopped
//! when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::settings::{Auth, NatsConfig, StreamConfig};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: tempfile::TempDir,
    /// More of nats-server's arguments (`--user`, `--pass`).
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts one and waits until it accepts connections. Panics (failing the test) when
    /// `nats-server` is missing: `cargo xtask setup` installs it.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// [`NatsServer::start`] with more arguments.
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut s = NatsServer {
            child: None,
            port,
            store: tempfile::tempdir().expect("a store directory"),
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.restart();
        s
    }

    /// Starts it again (after [`NatsServer::kill`]) on the same port and store.
    pub fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (installed by `cargo xtask setup`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Broker settings for this server, with the defaults of the settings otherwise.
    pub fn config(&self) -> NatsConfig {
        NatsConfig {
            servers: vec![self.url()],
            auth: Auth::None,
            tls_ca: None,
            tls_client: None,
            stream: StreamConfig {
                name: "GOR".into(),
                subject: "gor".into(),
                max_bytes: 64 << 20,
                max_age: Duration::from_secs(3600),
                discard_new: false,
                duplicate_window: Duration::from_secs(120),
            },
            partitions: 16,
            queue: 10_000,
            queue_bytes: 64 << 20,
            consumer: "gor-replay".into(),
            ack_wait: Duration::from_secs(30),
            max_inflight: 1024,
            lease: Duration::from_secs(10),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
