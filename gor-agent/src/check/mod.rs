//! `gor-agent check`: a preflight for live capture. It reads the same settings as the
//! agent and tells, one line per requirement, whether this host can capture and mirror
//! with them: the kernel's version and BTF, the embedded object, a real ring buffer, the
//! capabilities, each interface, other programs on each interface's TC hooks, each
//! staging target, NATS JetStream (the server and the stream) when GOR_NATS_URL is set, and
//! the OpenSSL libraries with `GOR_TLS=openssl`.
//!
//! Each line is `ok`, `warn` (works; the line says what to know) or `FAIL` (the agent
//! would not start, or would not see or deliver traffic), and a failing line says what to
//! do. Exit code 0 when no line fails, 1 when one does; invalid settings exit 64 before
//! any check, as the agent does: `main` validates and resolves them (`config::resolve`)
//! for `check` as for the agent, except that a missing interface is a FAIL line here.
//!
//! The decisions are plain functions of what was read ([`host`], [`hooks`], [`targets`]),
//! tested without a kernel; reading the host is left to thin functions beside them.

pub mod hooks;
pub mod host;
pub mod nats;
pub mod netlink;
pub mod targets;
pub mod tls;

use std::fmt;

use crate::config::Config;

/// Exit code of `gor-agent check` when a requirement fails.
pub const EXIT_FAILED: i32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Capture works, with something the operator should know.
    Warn,
    /// The agent would not start, or would not see or deliver traffic.
    Fail,
}

/// One finding: what was checked and how it went, with the fix when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    pub text: String,
    pub fix: Option<String>,
}

impl Line {
    pub fn ok(text: impl Into<String>) -> Line {
        Line {
            status: Status::Ok,
            text: text.into(),
            fix: None,
        }
    }

    pub fn warn(text: impl Into<String>) -> Line {
        Line {
            status: Status::Warn,
            ..Line::ok(text)
        }
    }

    pub fn fail(text: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Line::ok(text)
        }
    }

    pub fn with_fix(self, fix: impl Into<String>) -> Line {
        Line {
            fix: Some(fix.into()),
            ..self
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{status:<5} {}", self.text)?;
        match &self.fix {
            Some(fix) => write!(f, " — fix: {fix}"),
            None => Ok(()),
        }
    }
}

/// Runs every check for `cfg`, printing each line as soon as it is known (a target may
/// take its connect timeout); returns the exit code.
pub fn run(cfg: &Config) -> i32 {
    let mut failed = false;
    let mut emit = |line: Line| {
        failed |= line.status == Status::Fail;
        println!("{line}");
    };
    match &cfg.capture.input_pcap {
        Some(file) => emit(Line::ok(format!(
            "capture: reads {} (GOR_INPUT_PCAP): no kernel support, capability or interface is needed",
            file.display()
        ))),
        None => {
            let tcx = crate::capture::tc::attaches_with_tcx();
            emit(host::kernel_line(&host::read_kernel(), tcx));
            let object = host::read_object();
            emit(host::object_line(&object));
            emit(host::btf_line(host::vmlinux_btf_present(), &object));
            emit(host::ring_buffer_line(
                cfg.capture.ring_bytes,
                host::create_ring_buffer(cfg.capture.ring_bytes),
            ));
            emit(host::caps_line(host::read_cap_eff()));
            hooks::check_interfaces(
                &cfg.capture.interfaces,
                tcx,
                &mut emit,
            );
            if let Some(t) = &cfg.capture.tls {
                for line in tls::check(t) {
                    emit(line);
                }
            }
        }
    }
    if cfg.mirror.targets.is_empty() {
        emit(Line::ok(
            "mirroring: off (GOR_TARGET is not set): nothing is sent to staging",
        ));
    }
    for target in &cfg.mirror.targets {
        emit(targets::check(target));
    }
    if let Some(n) = &cfg.nats {
        for line in nats::check(n) {
            emit(line);
        }
    }
    emit(metrics_line(
        cfg.log.metrics_addr,
        cfg.log
            .metrics_addr
            .map(|a| std::net::TcpListener::bind(a).map(drop)),
    ));
    if failed {
        EXIT_FAILED
    } else {
        0
    }
}

/// Whether the metrics endpoint's address can be bound (`bound`: the result of trying).
fn metrics_line(addr: Option<std::net::SocketAddr>, bound: Option<std::io::Result<()>>) -> Line {
    match (addr, bound) {
        (Some(a), Some(Ok(()))) => Line::ok(format!(
            "metrics: {a} is free for the metrics endpoint (GOR_METRICS_ADDR)"
        )),
        (Some(a), Some(Err(e))) => Line::fail(
            format!("metrics: cannot listen on {a}: {e}; the agent would not start"),
            "stop what listens there (another gor-agent?), or set GOR_METRICS_ADDR to a free \
             address, or to an empty value for no metrics",
        ),
        _ => Line::ok("metrics: off (GOR_METRICS_ADDR is empty)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_address_lines() {
        let a: std::net::SocketAddr = "127.0.0.1:9091".parse().unwrap();
        assert_eq!(metrics_line(None, None).status, Status::Ok);
        assert_eq!(metrics_line(Some(a), Some(Ok(()))).status, Status::Ok);
        let taken = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let line = metrics_line(Some(a), Some(Err(taken)));
        assert_eq!(line.status, Status::Fail);
        assert!(line.to_string().contains("GOR_METRICS_ADDR"), "{line}");
    }

    #[test]
    fn lines_are_aligned_and_a_fix_follows_the_text() {
        assert_eq!(Line::ok("kernel 6.18.0").to_string(), "ok    kernel 6.18.0");
        assert_eq!(Line::warn("lo ingress").to_string(), "warn  lo ingress");
        assert_eq!(
            Line::fail("interface eth9: not found", "set GOR_INTERFACES").to_string(),
            "FAIL  interface eth9: not found — fix: set GOR_INTERFACES"
        );
    }
}
