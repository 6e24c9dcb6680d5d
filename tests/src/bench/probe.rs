//! Readings from the machine: a process's CPU time, the facts BENCHMARKS.md records
//! (kernel, cores, tool versions, commit, date).

use std::{path::Path, process::Command};

/// CPU time of a process, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

impl Cpu {
    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// CPU time process `pid` has used so far (all its threads), from `/proc/<pid>/stat`;
/// None once it is gone.
pub fn cpu(pid: u32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user, system) = stat_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Cpu {
        user: user as f64 / per_sec,
        system: system as f64 / per_sec,
    })
}

/// (utime, stime): fields 14 and 15 of a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so the fields are counted after its last `)`.
fn stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// CPU time used by a process between `start` and now.
pub struct CpuMeter {
    pid: u32,
    start: Cpu,
}

impl CpuMeter {
    pub fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            start: cpu(pid).unwrap_or_default(),
        }
    }

    /// Time since `start` (read before the process exits).
    pub fn used(&self) -> Cpu {
        let now = cpu(self.pid).unwrap_or(self.start);
        Cpu {
            user: now.user - self.start.user,
            system: now.system - self.start.system,
        }
    }
}

/// Resident KiB of the process's mappings whose name contains `name` (from
/// `/proc/<pid>/smaps`), e.g. `bpf-map`: the BPF ring buffer mapped into the agent.
pub fn mapped_rss_kib(pid: u32, name: &str) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode [name]".
            inside = line.contains(name);
        } else if let (true, Some(v)) = (inside, line.strip_prefix("Rss:")) {
            kib += v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    kib
}

/// The first line a command prints (stdout, else stderr: `nginx -v` writes there).
fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("({cmd} not found)"))
}

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`): how busy the machine
/// was besides the benchmark.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// (what, value) rows for the report's machine table; `load_at_start` from
/// [`load_average`] before the run.
pub fn machine(repo: &Path, load_at_start: &str) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    vec![
        ("os".into(), os),
        ("kernel".into(), first_line("uname", &["-r"])),
        ("cpu".into(), format!("{cores} cores, {model}")),
        ("memory".into(), format!("{mem_gib:.1} GiB")),
        ("nginx".into(), first_line("nginx", &["-v"])),
        ("wrk".into(), first_line("wrk", &["-v"])),
        ("tcpdump".into(), first_line("tcpdump", &["--version"])),
        ("gor commit".into(), commit(repo)),
        (
            "load average 1 / 5 / 15 min, at start".into(),
            load_at_start.into(),
        ),
        ("load average, at end".into(), load_average()),
        (
            "gor-agent".into(),
            "release build (`target/release/gor-agent`)".into(),
        ),
    ]
}

/// The checked-out commit, `-dirty` when the tree has changes.
fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["log", "-1", "--format=%h (%cs)"]) else {
        return "(not a git checkout)".into();
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (with uncommitted changes)")
    } else {
        head
    }
}

/// Now, UTC, as `2025-01-02 03:04 UTC`.
pub fn now_utc() -> String {
    first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_after_a_command_name_with_spaces() {
        let stat = "1234 (gor (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 5 0";
        assert_eq!(stat_ticks(stat), Some((250, 40)));
        assert_eq!(stat_ticks("1 (short) S 1"), None);
    }
}
