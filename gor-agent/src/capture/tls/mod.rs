//! The TLS probes: the socket tracepoints, and entry and return probes on `SSL_read`,
//! `SSL_read_ex`, `SSL_write` and `SSL_write_ex` in every OpenSSL library on the host
//! ([`libs`]), attached from the same kernel object as the TC programs (they share its
//! `PORTS` and `COUNTERS` maps). A library that appears later (a new container) is
//! probed at the next [`TlsProbes::rescan`].
//!
//! The kernel side (`gor-ebpf/src/tls.rs`) writes plaintext records into `TLS_CHUNKS`
//! ([`record`]); the `tls_streams` module turns them into ordered streams.

pub mod btf;
pub mod libs;
pub mod record;

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use aya::{
    maps::Array,
    programs::{
        uprobe::{UProbeLinkId, UProbeScope},
        RawTracePoint, UProbe,
    },
    Ebpf,
};
use gor_common::{
    TlsConf, MAP_TLS_CONF, PROG_SOCK_RECV, PROG_SOCK_SEND, PROG_SOCK_STATE, PROG_SSL_READ,
    PROG_SSL_READ_EX, PROG_SSL_RETURN, PROG_SSL_WRITE, PROG_SSL_WRITE_EX,
};
use tracing::{info, warn};

pub use libs::Library;

/// OpenSSL functions and their entry programs. The `_ex` forms exist from OpenSSL 1.1.1.
const FUNCTIONS: [(&str, &str); 4] = [
    ("SSL_read", PROG_SSL_READ),
    ("SSL_read_ex", PROG_SSL_READ_EX),
    ("SSL_write", PROG_SSL_WRITE),
    ("SSL_write_ex", PROG_SSL_WRITE_EX),
];

/// A library the probes are on.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbedLibrary {
    pub path: String,
    /// The file (device, inode): the same path in two containers is two libraries.
    #[serde(skip)]
    pub file: (u64, u64),
    /// The functions probed (a library without the `_ex` forms has two).
    pub functions: Vec<&'static str>,
    /// Processes that mapped it when it was last scanned.
    pub pids: Vec<u32>,
}

/// What is attached, and to which files.
#[derive(Default)]
pub struct TlsProbes {
    files: BTreeSet<(u64, u64)>,
    libraries: Vec<ProbedLibrary>,
    scanner: libs::Scanner,
    /// Libraries that could not be probed (no symbols, unreadable), by path, with why.
    pub failed: Vec<(String, String)>,
}

impl TlsProbes {
    /// Writes the socket offsets, loads the programs, attaches the tracepoints, and probes
    /// every OpenSSL library found.
    pub fn attach(bpf: &mut Ebpf, mut conf: TlsConf) -> Result<TlsProbes> {
        conf.enabled = 1;
        {
            let mut map: Array<_, TlsConf> = Array::try_from(
                bpf.map_mut(MAP_TLS_CONF)
                    .context("map TLS_CONF missing from the object")?,
            )?;
            map.set(0, conf, 0).context("writing TLS_CONF")?;
        }
        for (_, name) in FUNCTIONS {
            load_uprobe(bpf, name)?;
        }
        load_uprobe(bpf, PROG_SSL_RETURN)?;
        for (prog, tp) in [
            (PROG_SOCK_SEND, "sock_send_length"),
            (PROG_SOCK_RECV, "sock_recv_length"),
            (PROG_SOCK_STATE, "inet_sock_set_state"),
        ] {
            let p: &mut RawTracePoint = bpf
                .program_mut(prog)
                .with_context(|| format!("program {prog} missing from the object"))?
                .try_into()?;
            p.load()
                .with_context(|| format!("loading {prog} (the verifier's log is above)"))?;
            p.attach(tp)
                .with_context(|| format!("attaching {prog} to the raw tracepoint {tp}"))?;
        }
        let mut this = TlsProbes::default();
        this.rescan(bpf);
        if this.libraries.is_empty() {
            warn!("TLS capture: no OpenSSL library (libssl.so*) found on this host yet");
        }
        Ok(this)
    }

    /// Probes the OpenSSL libraries that appeared since the last scan (told apart by
    /// device and inode: a container's library at the host's path is another file).
    pub fn rescan(&mut self, bpf: &mut Ebpf) {
        let found = self.scanner.scan();
        for l in &mut self.libraries {
            l.pids.retain(|&p| self.scanner.live(p));
        }
        for lib in found {
            let file = (lib.dev, lib.ino);
            if let Some(known) = self.libraries.iter_mut().find(|l| l.file == file) {
                for p in lib.pids {
                    if !known.pids.contains(&p) {
                        known.pids.push(p);
                    }
                }
                continue;
            }
            if !self.files.insert(file) {
                continue;
            }
            match probe(bpf, &lib) {
                Ok(functions) => {
                    info!(library = %lib.shown, ?functions, processes = lib.pids.len(), "TLS capture: probing OpenSSL");
                    self.libraries.push(ProbedLibrary {
                        path: lib.shown,
                        file,
                        functions,
                        pids: lib.pids,
                    });
                }
                Err(e) => {
                    warn!(library = %lib.shown, "TLS capture: cannot probe this library: {e:#}");
                    self.failed.push((lib.shown, format!("{e:#}")));
                }
            }
        }
    }

    pub fn libraries(&self) -> &[ProbedLibrary] {
        &self.libraries
    }
}

fn load_uprobe(bpf: &mut Ebpf, name: &str) -> Result<()> {
    let p: &mut UProbe = bpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("loading {name} (the verifier's log is above)"))
}

/// Attaches the entry and return probes of every function `lib` has; the functions
/// probed. On an error nothing stays attached to `lib`: a half-probed library would cost
/// its processes the traps for nothing, or capture one direction only.
fn probe(bpf: &mut Ebpf, lib: &Library) -> Result<Vec<&'static str>> {
    let mut done = Vec::new();
    let mut links: Vec<(&'static str, UProbeLinkId)> = Vec::new();
    let mut last_error = None;
    for (function, prog) in FUNCTIONS {
        let entry: &mut UProbe = bpf.program_mut(prog).expect("loaded").try_into()?;
        match entry.attach(function, &lib.path, UProbeScope::AllProcesses) {
            Ok(id) => links.push((prog, id)),
            Err(e) => {
                last_error =
                    Some(anyhow::Error::new(e).context(format!("attaching to {function}")));
                continue;
            }
        }
        let ret: &mut UProbe = bpf
            .program_mut(PROG_SSL_RETURN)
            .expect("loaded")
            .try_into()?;
        match ret.attach(function, &lib.path, UProbeScope::AllProcesses) {
            Ok(id) => links.push((PROG_SSL_RETURN, id)),
            Err(e) => {
                last_error = Some(
                    anyhow::Error::new(e)
                        .context(format!("attaching the return probe to {function}")),
                );
                break;
            }
        }
        done.push(function);
    }
    // Without SSL_read and SSL_write (and every return probe) it is not an OpenSSL the
    // probes understand.
    let complete =
        done.contains(&"SSL_read") && done.contains(&"SSL_write") && links.len() == 2 * done.len();
    if !complete {
        for (prog, id) in links {
            if let Ok(p) = <&mut UProbe>::try_from(bpf.program_mut(prog).expect("loaded")) {
                let _ = p.detach(id);
            }
        }
        return Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no SSL_read/SSL_write")));
    }
    Ok(done)
}
