//! The check's lines for HTTPS capture (`GOR_TLS=openssl`): the socket offsets from the
//! kernel's BTF, and each OpenSSL library the probes would go on, with the functions it
//! has and the processes that use it now.

use super::Line;
use crate::capture::settings::TlsCapture;
use crate::capture::tls::{btf, libs, libs::Library};

/// The functions the probes need, then the ones they use when present.
const NEEDED: [&str; 2] = ["SSL_read", "SSL_write"];
const OPTIONAL: [&str; 2] = ["SSL_read_ex", "SSL_write_ex"];

/// Reads the host and returns the lines.
pub fn check(tls: &TlsCapture) -> Vec<Line> {
    let offsets = btf::running_kernel().map_err(|e| format!("{e:#}"));
    let found: Vec<(Library, Vec<&'static str>)> = libs::find()
        .into_iter()
        .map(|l| {
            let f = functions(&l.path);
            (l, f)
        })
        .collect();
    let mut out = lines(tls, offsets.map(|_| ()), &found, &comm);
    out.insert(1, tracepoints_line(&missing_tracepoints()));
    out
}

/// The socket tracepoints the probes tie connections with (Linux >= 6.3 has them).
const TRACEPOINTS: [&str; 3] = [
    "sock_send_length",
    "sock_recv_length",
    "inet_sock_set_state",
];

/// The tracepoints of [`TRACEPOINTS`] this kernel lacks, from tracefs (or debugfs).
fn missing_tracepoints() -> Vec<&'static str> {
    let roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let listed: String = roots
        .iter()
        .find_map(|r| std::fs::read_to_string(format!("{r}/available_events")).ok())
        .unwrap_or_default();
    if listed.is_empty() {
        // tracefs not mounted: the kernel's own list says the same.
        return Vec::new();
    }
    TRACEPOINTS
        .iter()
        .copied()
        .filter(|t| !listed.lines().any(|l| l == format!("sock:{t}")))
        .collect()
}

/// The line for the socket tracepoints.
pub fn tracepoints_line(missing: &[&str]) -> Line {
    if missing.is_empty() {
        Line::ok("tls: the socket tracepoints sock_send_length, sock_recv_length and inet_sock_set_state are there")
    } else {
        Line::fail(
            format!(
                "tls: this kernel has no {} tracepoint (they came in Linux 6.3): the agent cannot tie TLS calls to connections",
                missing.join(", ")
            ),
            "run Linux >= 6.3, or set GOR_TLS=off",
        )
    }
}

/// The lines, from what was read: the offsets' outcome, the libraries with their
/// functions, and a way to name a process.
pub fn lines(
    tls: &TlsCapture,
    offsets: Result<(), String>,
    found: &[(Library, Vec<&'static str>)],
    comm: &dyn Fn(u32) -> Option<String>,
) -> Vec<Line> {
    let ports: Vec<String> = tls.ports.iter().map(u16::to_string).collect();
    let mut out = vec![match offsets {
        Ok(()) => Line::ok(format!(
            "tls: ports {} captured as plaintext from OpenSSL (GOR_TLS=openssl); the TC programs leave them alone; socket fields from the kernel's BTF",
            ports.join(",")
        )),
        Err(e) => Line::fail(
            format!("tls: cannot read the socket fields from the kernel's BTF: {e}"),
            "run a kernel with BTF (CONFIG_DEBUG_INFO_BTF), or set GOR_TLS=off",
        ),
    }];
    let mut usable = 0;
    for (lib, functions) in found {
        let users: Vec<String> = lib
            .pids
            .iter()
            .map(|&p| match comm(p) {
                Some(name) => format!("{name} ({p})"),
                None => p.to_string(),
            })
            .collect();
        let users = if users.is_empty() {
            "no process uses it now (new ones are covered)".to_string()
        } else {
            format!("used by {}", users.join(", "))
        };
        if NEEDED.iter().all(|f| functions.contains(f)) {
            usable += 1;
            out.push(Line::ok(format!(
                "tls: OpenSSL {} ({}): {users}",
                lib.shown,
                functions.join(", ")
            )));
        } else {
            out.push(Line::warn(format!(
                "tls: {} has no SSL_read/SSL_write symbols (a stripped or static build?): not probed; {users}",
                lib.shown
            )));
        }
    }
    if usable == 0 {
        out.push(Line::warn(
            "tls: no OpenSSL library (libssl.so*) found on this host: nothing to capture until a process loads one (the agent looks again every 10 s)",
        ));
    }
    out
}

/// The probed functions a library exports: names found in its dynamic string table,
/// whole (between NUL bytes). Enough for a check; the probes resolve symbols properly.
fn functions(path: &std::path::Path) -> Vec<&'static str> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    NEEDED
        .iter()
        .chain(&OPTIONAL)
        .copied()
        .filter(|f| {
            let needle = [b"\0", f.as_bytes(), b"\0"].concat();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    fn lib(shown: &str, pids: Vec<u32>) -> Library {
        Library {
            path: shown.into(),
            shown: shown.into(),
            dev: 1,
            ino: 2,
            pids,
        }
    }

    fn tls() -> TlsCapture {
        TlsCapture {
            ports: vec![443],
            ring_bytes: 8 << 20,
        }
    }

    #[test]
    fn names_the_libraries_and_their_users() {
        let found = vec![(
            lib("/usr/lib/x86_64-linux-gnu/libssl.so.3", vec![10, 11]),
            vec!["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"],
        )];
        let comm = |p: u32| (p == 10).then(|| "nginx".to_string());
        let l = lines(&tls(), Ok(()), &found, &comm);
        assert_eq!(l.len(), 2, "{l:?}");
        assert!(l.iter().all(|l| l.status == Status::Ok), "{l:?}");
        assert!(l[0].text.contains("ports 443"), "{}", l[0]);
        assert_eq!(
            l[1].text,
            "tls: OpenSSL /usr/lib/x86_64-linux-gnu/libssl.so.3 (SSL_read, SSL_write, SSL_read_ex, SSL_write_ex): used by nginx (10), 11"
        );
    }

    #[test]
    fn no_library_or_no_btf_is_said() {
        let l = lines(&tls(), Err("no file".into()), &[], &|_| None);
        assert_eq!(l[0].status, Status::Fail);
        assert_eq!(l[1].status, Status::Warn);
        let stripped = vec![(lib("/opt/libssl.so.1.1", vec![]), vec![])];
        let l = lines(&tls(), Ok(()), &stripped, &|_| None);
        assert_eq!(l[1].status, Status::Warn);
        assert!(l[1].text.contains("not probed"), "{}", l[1]);
    }

    #[test]
    fn a_kernel_without_the_socket_tracepoints_fails() {
        assert_eq!(tracepoints_line(&[]).status, Status::Ok);
        let l = tracepoints_line(&["sock_send_length", "sock_recv_length"]);
        assert_eq!(l.status, Status::Fail);
        assert!(l.to_string().contains("6.3"), "{l}");
        // This machine's kernel has them.
        assert!(missing_tracepoints().is_empty());
    }

    #[test]
    fn debians_libssl_has_all_four_functions() {
        assert_eq!(
            functions(std::path::Path::new(
                "/usr/lib/x86_64-linux-gnu/libssl.so.3"
            )),
            ["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"]
        );
    }
}
