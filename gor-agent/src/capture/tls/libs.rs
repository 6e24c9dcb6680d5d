//! Where OpenSSL is on this host: every distinct `libssl.so*` file that a process maps
//! (containers included, through `/proc/PID/root`), plus the ones in the system's library
//! directories, so that a server started after the agent is covered too. Files are told
//! apart by device and inode: the same library seen through two paths is probed once.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Library directories searched even when no process maps OpenSSL yet.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
];

/// One OpenSSL library file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// A path the agent can open (`/proc/PID/root/...` for another mount namespace).
    pub path: PathBuf,
    /// The path as its users see it.
    pub shown: String,
    pub dev: u64,
    pub ino: u64,
    /// Processes that map it now.
    pub pids: Vec<u32>,
}

/// `libssl.so`, `libssl.so.3`, `libssl.so.1.1`: OpenSSL's. Not NSS's `libssl3.so`.
pub fn is_openssl(name: &str) -> bool {
    name == "libssl.so" || name.starts_with("libssl.so.")
}

/// The OpenSSL libraries on the host now, in a stable order (every process's maps read).
pub fn find() -> Vec<Library> {
    Scanner::default().scan()
}

/// Repeated looks at the host that read the maps of new processes only: a process's
/// libraries were read when it was first seen, so a rescan costs a listing of `/proc`,
/// not a read of every process's maps (which takes each process's mmap lock).
#[derive(Default)]
pub struct Scanner {
    seen: std::collections::HashSet<u32>,
}

impl Scanner {
    /// The libraries in the system's directories, and those mapped by processes not seen
    /// before (with those processes); [`Scanner::live`] tells which processes remain.
    pub fn scan(&mut self) -> Vec<Library> {
        let mut by_file: BTreeMap<(u64, u64), Library> = BTreeMap::new();
        for dir in SYSTEM_DIRS {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !is_openssl(&name) {
                    continue;
                }
                // Named by the real file: `libssl.so` is a link to `libssl.so.3`.
                let Ok(path) = std::fs::canonicalize(Path::new(dir).join(&name)) else {
                    continue;
                };
                add(&mut by_file, &path, path.display().to_string(), None);
            }
        }
        let live = live_pids();
        self.seen.retain(|p| live.contains(p));
        for pid in live {
            if !self.seen.insert(pid) {
                continue;
            }
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            for shown in mapped_libraries(&maps) {
                let path = PathBuf::from(format!("/proc/{pid}/root{shown}"));
                add(&mut by_file, &path, shown, Some(pid));
            }
        }
        by_file.into_values().collect()
    }

    /// Whether process `pid` was alive at the last scan.
    pub fn live(&self, pid: u32) -> bool {
        self.seen.contains(&pid)
    }
}

fn live_pids() -> std::collections::HashSet<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|p| p.file_name().to_string_lossy().parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn add(by_file: &mut BTreeMap<(u64, u64), Library>, path: &Path, shown: String, pid: Option<u32>) {
    // The real file: a symlink (libssl.so -> libssl.so.3) is the same library.
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let lib = by_file
        .entry((meta.dev(), meta.ino()))
        .or_insert_with(|| Library {
            path: path.to_path_buf(),
            shown,
            dev: meta.dev(),
            ino: meta.ino(),
            pids: Vec::new(),
        });
    if let Some(pid) = pid {
        if !lib.pids.contains(&pid) {
            lib.pids.push(pid);
        }
    }
}

/// The OpenSSL paths in a `/proc/PID/maps` text, each once.
fn mapped_libraries(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if path.starts_with('/') && is_openssl(name) && !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_names_and_not_nss() {
        assert!(is_openssl("libssl.so.3"));
        assert!(is_openssl("libssl.so.1.1"));
        assert!(is_openssl("libssl.so"));
        assert!(!is_openssl("libssl3.so"));
        assert!(!is_openssl("libssl.a"));
        assert!(!is_openssl("libcrypto.so.3"));
    }

    #[test]
    fn reads_mapped_libraries_once() {
        let maps = "\
7f00-7f10 r--p 00000000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f10-7f20 r-xp 00010000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f20-7f30 r--p 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libssl3.so
7f30-7f40 rw-p 00000000 00:00 0
7f40-7f50 r-xp 00000000 fd:01 55 /opt/app/lib/libssl.so.1.1
";
        assert_eq!(
            mapped_libraries(maps),
            [
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                "/opt/app/lib/libssl.so.1.1"
            ]
        );
    }

    /// A rescan reads only new processes: a process seen before brings no pids again.
    #[test]
    fn a_rescan_reads_new_processes_only() {
        let mut s = Scanner::default();
        let first = s.scan();
        assert!(s.live(std::process::id()));
        let again = s.scan();
        assert_eq!(
            first.len(),
            again.len(),
            "the system's libraries are always there"
        );
        assert!(again.iter().all(|l| !l.pids.contains(&std::process::id())));
    }

    /// This machine has Debian's libssl3: found once, however many paths lead to it.
    #[test]
    fn finds_the_system_library_once() {
        let meta = std::fs::metadata("/usr/lib/x86_64-linux-gnu/libssl.so.3").unwrap();
        let libs = find();
        let system: Vec<_> = libs.iter().filter(|l| l.ino == meta.ino()).collect();
        assert_eq!(system.len(), 1, "{libs:?}");
        assert!(system[0].shown.ends_with("libssl.so.3"), "{libs:?}");
    }
}
