//! nginx from Debian as the production server: started on a free loopback port with a
//! configuration of the test's own, in the test's directory, stopped when dropped. Its
//! access log records, for each request, the client's address and port, the request line,
//! the request length in bytes, the status and the bytes sent: the server's account of
//! the traffic, to compare with what the agent framed.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::traffic::{free_port, pattern};

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub client: String,
    pub request_line: String,
    pub request_length: usize,
    pub status: u16,
    pub bytes_sent: usize,
}

/// Size of `big.bin` in the document root.
pub const BIG_FILE: usize = 3 << 20;

impl Nginx {
    pub fn start(dir: PathBuf) -> Nginx {
        Nginx::with_keepalive_requests(dir, 100_000)
    }

    /// Closes each connection after `n` requests (the last response says
    /// `Connection: close`), as nginx does by default after 1,000.
    pub fn with_keepalive_requests(dir: PathBuf, n: usize) -> Nginx {
        Nginx::launch(dir, n, "127.0.0.1", free_port(), free_port(), None)
    }

    /// nginx serving HTTPS (HTTP/1.1, no http2) with `cert` and `key` (PEM), on a free
    /// loopback port; the same locations as [`Nginx::start`].
    pub fn with_tls(dir: PathBuf, cert: &std::path::Path, key: &std::path::Path) -> Nginx {
        Nginx::with_tls_on(dir, cert, key, free_port())
    }

    /// [`Nginx::with_tls`] on loopback port `port` (chosen by the test beforehand, so that
    /// something can watch the port before nginx starts).
    pub fn with_tls_on(
        dir: PathBuf,
        cert: &std::path::Path,
        key: &std::path::Path,
        port: u16,
    ) -> Nginx {
        Nginx::launch(
            dir,
            100_000,
            "127.0.0.1",
            port,
            free_port(),
            Some((cert, key)),
        )
    }

    /// nginx listening on `ip` (an address of the root namespace, e.g. the root end of
    /// a veth whose other end is in a test's namespace), on a free port.
    pub fn on_address(dir: PathBuf, ip: &str) -> Nginx {
        let free = |ip: &str| {
            TcpListener::bind((ip, 0))
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("a free port on {ip}: {e}"))
                .port()
        };
        Nginx::launch(dir, 100_000, ip, free(ip), free("127.0.0.1"), None)
    }

    fn launch(
        dir: PathBuf,
        n: usize,
        ip: &str,
        port: u16,
        upstream: u16,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Nginx {
        let (ssl, certs) = match tls {
            Some((cert, key)) => (
                " ssl",
                format!(
                    "ssl_certificate {};\n        ssl_certificate_key {};",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("", String::new()),
        };
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("www");
        std::fs::write(
            www.join("index.html"),
            b"<html><body>gor test page</body></html>\n",
        )
        .expect("index");
        std::fs::write(
            www.join("data.json"),
            br#"{"items":[1,2,3],"name":"gor"}"#.repeat(200),
        )
        .expect("json");
        std::fs::write(www.join("big.bin"), pattern(7, BIG_FILE)).expect("big");
        let d = dir.display();
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format gor '$remote_addr:$remote_port|$request|$request_length|$status|$bytes_sent';
    access_log {d}/access.log gor;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests {n};
    client_max_body_size 64m;
    # Responses of unknown length (gzip on the fly) go out chunked.
    gzip on;
    gzip_types application/json text/plain;
    gzip_min_length 0;
    types {{ text/html html; application/json json; application/octet-stream bin; }}
    server {{
        listen {ip}:{port}{ssl};
        {certs}
        root {d}/www;
        location / {{ }}
        location /echo {{
            # Proxying makes nginx read the whole request body first, so $request_length
            # counts it; the upstream (another server here, on a port not captured) answers 201.
            proxy_pass http://127.0.0.1:{upstream}/done;
        }}
    }}
    server {{
        listen 127.0.0.1:{upstream};
        access_log off;
        location / {{ return 201 "created\n"; }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx (installed by `cargo xtask setup`)");
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
        // Ready when it accepts a connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Nginx { child, addr, dir }
    }

    /// nginx's process id (one process: `master_process off`, one worker in it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many requests with exactly this request line (`GET /x HTTP/1.1`) were logged.
    pub fn served(&self, request_line: &str) -> usize {
        // Read often while requests arrive, so without building every line's record.
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter(|l| l.split('|').nth(1) == Some(request_line))
            .count()
    }

    /// The access log so far (nginx writes each line when the request completes).
    pub fn access_log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 5).then(|| Logged {
                    client: f[0].to_string(),
                    request_line: f[1].to_string(),
                    request_length: f[2].parse().unwrap_or(0),
                    status: f[3].parse().unwrap_or(0),
                    bytes_sent: f[4].parse().unwrap_or(0),
                })
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
