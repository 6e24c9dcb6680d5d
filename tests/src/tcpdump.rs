//! tcpdump from Debian on `lo`: the packet-capture baseline the agent is compared with.
//! It writes a pcap file; when stopped it reports its own counts (packets captured, and
//! dropped by the kernel because tcpdump fell behind).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread::JoinHandle,
};

/// The flags every capture uses: whole packets (`-s 0`), a 256 MiB kernel buffer, and
/// each packet handed to tcpdump at once (`--immediate-mode`).
/// Without immediate mode, libpcap reads the kernel's buffer a block at a time; here the
/// last, partly filled block was sometimes still unread when tcpdump was stopped, and its
/// packets (the last ~40 ms of a run) were missing from the file without being counted as
/// dropped. In immediate mode every packet takes a frame of the whole snapshot length
/// (about 64 KiB on `lo`), so 64 MiB held only ~1,000 packets and a one-second wrk burst
/// overflowed it ("dropped by kernel"); 256 MiB holds ~4,000. The file is written through
/// tcpdump's buffer (no `-U`, which cost a write per packet) and flushed when it stops.
pub const FLAGS: &[&str] = &["-i", "lo", "--immediate-mode", "-s", "0", "-B", "262144"];

/// tcpdump as its users run it to record traffic (`-s 0 -w`): buffered, woken per block
/// of packets, not per packet; the capture-cost reference.
pub const PLAIN: &[&str] = &["-i", "lo", "-s", "0"];

/// tcpdump writing `tcp port PORT` to a file; `stop` ends it (SIGINT) and waits.
pub struct Tcpdump {
    child: Child,
    stderr: Option<JoinHandle<Vec<String>>>,
}

/// tcpdump's account at exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub captured: u64,
    pub received_by_filter: u64,
    pub dropped_by_kernel: u64,
}

impl Tcpdump {
    /// Starts it and waits until it says it is listening.
    pub fn start(file: &Path, port: u16) -> Tcpdump {
        Tcpdump::start_with(FLAGS, file, port)
    }

    /// As [`Tcpdump::start`], with other flags before `-w`.
    pub fn start_with(flags: &[&str], file: &Path, port: u16) -> Tcpdump {
        let mut child = Command::new("tcpdump")
            .args(flags)
            .arg("-w")
            .arg(file)
            .arg(format!("tcp port {port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump (installed by `cargo xtask setup`)");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tcpdump did not start");
                }
            }
        }
        // Keep reading its stderr so it never blocks on a full pipe; the last lines are
        // its counts.
        let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        Tcpdump {
            child,
            stderr: Some(stderr),
        }
    }

    /// tcpdump's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it (SIGINT, so it flushes the file and prints its counts) and returns them.
    pub fn stop(mut self) -> DumpStats {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait for tcpdump");
        assert!(
            status.success() || status.code().is_none(),
            "tcpdump: {status}"
        );
        let lines = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        parse_stats(&lines)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// tcpdump's closing lines: "N packets captured", "N packets received by filter",
/// "N packets dropped by kernel".
pub fn parse_stats(lines: &[String]) -> DumpStats {
    let mut s = DumpStats::default();
    for l in lines {
        let Some((n, what)) = l.trim().split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse() else { continue };
        match what {
            "packets captured" => s.captured = n,
            "packets received by filter" => s.received_by_filter = n,
            "packets dropped by kernel" => s.dropped_by_kernel = n,
            _ => {}
        }
    }
    s
}

/// How many times `needle` occurs in the file (e.g. a request line in a pcap: each
/// request's line sits whole in one packet's payload).
pub fn count_in_file(file: &Path, needle: &[u8]) -> std::io::Result<usize> {
    let bytes = std::fs::read(file)?;
    Ok(count(&bytes, needle))
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    let Some(&first) = needle.first() else {
        return 0;
    };
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_closing_counts() {
        let lines: Vec<String> = [
            "listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
            "1200 packets captured",
            "1300 packets received by filter",
            "100 packets dropped by kernel",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            parse_stats(&lines),
            DumpStats {
                captured: 1200,
                received_by_filter: 1300,
                dropped_by_kernel: 100
            }
        );
    }

    #[test]
    fn counts_occurrences_without_overlap() {
        assert_eq!(
            count(b"GET /a HTTP/1.1\r\nxxGET /a HTTP/1.1\r\n", b"GET /a "),
            2
        );
        assert_eq!(count(b"aaaa", b"aa"), 2);
        assert_eq!(count(b"abc", b""), 0);
        assert_eq!(count(b"ab", b"abc"), 0);
    }
}
