//! The live byte source: loads the embedded kernel object, writes the captured ports,
//! attaches the classifiers to the watched interfaces, and hands out the ring buffer and
//! the kernel's counters. Dropping [`TcCapture`] detaches everything.
//!
//! On kernels >= 6.6 the programs are attached as tcx links: no qdisc is created, and the
//! kernel removes the links when the agent's process ends, whatever the way it ends.
//! Older kernels use cls_bpf on a `clsact` qdisc; the agent removes a qdisc it added.
//! Either way gor's programs run before other programs on the same hook.

use std::process::Command;

use anyhow::{bail, Context, Result};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        LinkOrder, RawTracePoint, SchedClassifier, TcAttachType, UProbe,
    },
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use gor_common::{
    counter, port, ExcludeKey, TcConf, FAMILY_V4, FAMILY_V6, MAP_CHUNKS, MAP_COUNTERS,
    MAP_EXCLUDED, MAP_PORTS, MAP_TC_CONF, MAP_TLS_CHUNKS, PROG_EGRESS, PROG_INGRESS, PROG_LOOPBACK,
    PROG_SOCK_RECV, PROG_SOCK_SEND, PROG_SOCK_STATE, PROG_SSL_READ, PROG_SSL_READ_EX,
    PROG_SSL_RETURN, PROG_SSL_WRITE, PROG_SSL_WRITE_EX, TC_PROGRAMS,
};

use super::settings::TlsCapture;
use super::tls::{btf, ProbedLibrary, TlsProbes};
use tracing::{debug, info, warn};

/// The kernel object, built by `cargo xtask build-ebpf` and embedded by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gor.bpf.o"));

/// The kernel's counters, summed over CPUs, indexed like `gor_common::counter`
/// (`RING_PEAK_BYTES`, a peak, is the largest over CPUs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters(pub [u64; counter::COUNT as usize]);

impl KernelCounters {
    pub fn get(&self, idx: u32) -> u64 {
        self.0[idx as usize]
    }
}

/// One field per counter, named by `gor_common::counter::NAMES` (the report's `kernel`).
impl serde::Serialize for KernelCounters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in counter::NAMES.iter().zip(self.0) {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

pub struct TcCapture {
    bpf: Ebpf,
    /// The OpenSSL probes, with `GOR_TLS=openssl`.
    tls: Option<TlsProbes>,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    /// Interfaces where this agent added the `clsact` qdisc (pre-tcx kernels only).
    added_qdiscs: Vec<String>,
    interfaces: Vec<String>,
    detached: bool,
}

impl TcCapture {
    /// Loads the programs, sets the ports, and attaches to `interfaces` (empty: all up);
    /// with `tls`, its ports are left to the OpenSSL probes, which are attached too. The
    /// TC programs are not attached when every port is a TLS port. `response_snap`: see
    /// `gor_common::TcConf` (0: servers' packets are copied whole).
    pub fn start(
        ports: &[u16],
        tls: Option<&TlsCapture>,
        interfaces: &[String],
        ring_bytes: u32,
        response_snap: u32,
    ) -> Result<Self> {
        if EBPF_OBJECT.is_empty() {
            bail!("this gor-agent was built without its eBPF object: run `cargo xtask build-ebpf`, then build again");
        }
        raise_memlock();
        let tls_ports = tls.map(|t| t.ports.as_slice()).unwrap_or(&[]);
        let tc_ports: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| !tls_ports.contains(p))
            .collect();
        // Without TLS capture its ring is one page: nothing is written to it.
        let tls_ring = tls.map(|t| t.ring_bytes).unwrap_or(4096);
        let mut bpf = EbpfLoader::new()
            .map_max_entries(MAP_CHUNKS, ring_bytes)
            .map_max_entries(MAP_TLS_CHUNKS, tls_ring)
            .load(EBPF_OBJECT)
            .context(
                "loading the eBPF object (needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)",
            )?;
        let logger = match EbpfLogger::init(&mut bpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!("eBPF log records will not be shown: {e}");
                None
            }
        };
        {
            let mut map: Array<_, u8> = Array::try_from(
                bpf.map_mut(MAP_PORTS)
                    .context("map PORTS missing from the object")?,
            )?;
            for &p in ports {
                let bits = if tls_ports.contains(&p) {
                    port::TLS
                } else {
                    port::TC
                };
                map.set(u32::from(p), bits, 0)
                    .with_context(|| format!("writing port {p} to the PORTS map"))?;
            }
        }
        {
            let mut map: Array<_, TcConf> = Array::try_from(
                bpf.map_mut(MAP_TC_CONF)
                    .context("map TC_CONF missing from the object")?,
            )?;
            let conf = TcConf {
                response_snap,
                exclusions: 0,
            };
            map.set(0, conf, 0).context("writing TC_CONF")?;
        }
        let tls = match tls {
            Some(_) => Some(TlsProbes::attach(&mut bpf, btf::running_kernel()?)?),
            None => None,
        };
        let interfaces = if tc_ports.is_empty() {
            Vec::new()
        } else if interfaces.is_empty() {
            interfaces_up()?
        } else {
            interfaces.to_vec()
        };
        let mut this = TcCapture {
            bpf,
            tls,
            logger,
            added_qdiscs: Vec::new(),
            interfaces: Vec::new(),
            detached: false,
        };
        let tcx = attaches_with_tcx();
        for name in TC_PROGRAMS {
            let prog: &mut SchedClassifier = this
                .bpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading {name} (the verifier's log is above)"))?;
        }
        for iface in &interfaces {
            if !tcx {
                match tc::qdisc_add_clsact(iface) {
                    Ok(()) => this.added_qdiscs.push(iface.clone()),
                    Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("adding the clsact qdisc to {iface}"))
                    }
                }
            }
            for &(name, attach) in hooks_of(iface) {
                let prog: &mut SchedClassifier = this
                    .bpf
                    .program_mut(name)
                    .expect("checked above")
                    .try_into()?;
                prog.attach_with_options(iface, attach, attach_options(tcx))
                    .with_context(|| format!("attaching {name} to {iface}"))?;
            }
            this.interfaces.push(iface.clone());
        }
        info!(interfaces = ?this.interfaces, ports = ?tc_ports, ?tls_ports, tcx, "capturing");
        Ok(this)
    }

    /// The TLS plaintext ring (can be taken once); `None` without TLS capture.
    pub fn take_tls_ring(&mut self) -> Result<Option<RingBuf<MapData>>> {
        if self.tls.is_none() {
            return Ok(None);
        }
        let map = self
            .bpf
            .take_map(MAP_TLS_CHUNKS)
            .context("map TLS_CHUNKS missing or already taken")?;
        Ok(Some(RingBuf::try_from(map)?))
    }

    /// Probes OpenSSL libraries that appeared since the last look (new containers).
    pub fn rescan_tls(&mut self) {
        if self.detached {
            return;
        }
        if let Some(t) = self.tls.as_mut() {
            t.rescan(&mut self.bpf);
        }
    }

    /// The OpenSSL libraries probed; `None` without TLS capture.
    pub fn tls_libraries(&self) -> Option<&[ProbedLibrary]> {
        self.tls.as_ref().map(|t| t.libraries())
    }

    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// The ring buffer of chunk records (can be taken once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .bpf
            .take_map(MAP_CHUNKS)
            .context("map CHUNKS missing or already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The handle through which the agent's own connections to staging are kept out of
    /// capture (can be taken once); `captured`: the TC programs' ports.
    pub fn take_exclusions(&mut self, captured: Vec<u16>) -> Result<Exclusions> {
        let entries = self
            .bpf
            .take_map(MAP_EXCLUDED)
            .context("map EXCLUDED missing or already taken")?;
        let conf = self
            .bpf
            .take_map(MAP_TC_CONF)
            .context("map TC_CONF missing or already taken")?;
        let map = KernelExclusions {
            entries: HashMap::try_from(entries)?,
            conf: Array::try_from(conf)?,
            held: 0,
        };
        Ok(Exclusions::new(map, captured))
    }

    /// The eBPF logger, to be polled by the caller; it owns the log map's fd, so the
    /// caller keeps it for as long as the programs run.
    pub fn take_logger(&mut self) -> Option<EbpfLogger<&'static dyn log::Log>> {
        self.logger.take()
    }

    /// Reads the kernel's counters, summed over CPUs (the ring buffer's peak: the
    /// largest of the CPUs').
    pub fn counters(&self) -> Result<KernelCounters> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.bpf.map(MAP_COUNTERS).context("map COUNTERS missing")?)?;
        let mut out = KernelCounters::default();
        for (i, slot) in out.0.iter_mut().enumerate() {
            let per_cpu = map.get(&(i as u32), 0)?;
            *slot = match i as u32 {
                counter::RING_PEAK_BYTES => per_cpu.iter().copied().max().unwrap_or(0),
                _ => per_cpu.iter().sum(),
            };
        }
        Ok(out)
    }

    /// Detaches the programs from every interface; the maps stay readable.
    pub fn detach(&mut self) {
        if std::mem::replace(&mut self.detached, true) {
            return;
        }
        for name in TC_PROGRAMS {
            if let Some(Ok(prog)) = self
                .bpf
                .program_mut(name)
                .map(<&mut SchedClassifier>::try_from)
            {
                // Unloading drops every link of the program.
                if let Err(e) = prog.unload() {
                    warn!("detaching {name}: {e}");
                }
            }
        }
        if self.tls.is_some() {
            for name in [
                PROG_SSL_READ,
                PROG_SSL_READ_EX,
                PROG_SSL_WRITE,
                PROG_SSL_WRITE_EX,
                PROG_SSL_RETURN,
            ] {
                if let Some(Ok(prog)) = self.bpf.program_mut(name).map(<&mut UProbe>::try_from) {
                    if let Err(e) = prog.unload() {
                        warn!("detaching {name}: {e}");
                    }
                }
            }
            for name in [PROG_SOCK_SEND, PROG_SOCK_RECV, PROG_SOCK_STATE] {
                if let Some(Ok(prog)) = self
                    .bpf
                    .program_mut(name)
                    .map(<&mut RawTracePoint>::try_from)
                {
                    if let Err(e) = prog.unload() {
                        warn!("detaching {name}: {e}");
                    }
                }
            }
        }
        for iface in self.added_qdiscs.drain(..) {
            // aya has no call to delete a qdisc; iproute2's tc does it.
            match Command::new("tc")
                .args(["qdisc", "del", "dev", &iface, "clsact"])
                .status()
            {
                Ok(s) if s.success() => debug!("removed the clsact qdisc we added to {iface}"),
                other => warn!("could not remove the clsact qdisc we added to {iface}: {other:?}"),
            }
        }
    }
}

impl Drop for TcCapture {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The first kernel whose programs are attached as tcx links (major, minor).
pub const TCX_KERNEL: (u8, u8) = (6, 6);

/// Whether this kernel gets tcx links (else cls_bpf on a `clsact` qdisc); `gor-agent
/// check` judges the hooks by the same answer.
pub fn attaches_with_tcx() -> bool {
    KernelVersion::current()
        .map(|v| v >= KernelVersion::new(TCX_KERNEL.0, TCX_KERNEL.1, 0))
        .unwrap_or(false)
}

/// Where the programs go among other programs on the same hook: first, so that no other
/// program's verdict (drop, redirect, or `TC_ACT_OK`, which ends a tcx chain) can hide a
/// packet from gor; gor returns `TCX_NEXT`/`TC_ACT_UNSPEC`, so the others still run after
/// it. tcx links go in front explicitly (aya's default is behind the others); a cls_bpf
/// filter with an automatic priority (0) gets a lower number than every existing filter,
/// so it already runs first.
fn attach_options(tcx: bool) -> TcAttachOptions {
    if tcx {
        TcAttachOptions::TcxOrder(LinkOrder::first())
    } else {
        TcAttachOptions::Netlink(NlOptions::default())
    }
}

/// The kernel object embedded in this binary, as `gor-agent check` reports it.
pub struct EmbeddedObject {
    pub bytes: usize,
    /// Has CO-RE relocations: loading it needs the kernel's BTF (`/sys/kernel/btf/vmlinux`).
    pub needs_kernel_btf: bool,
}

/// The embedded kernel object; `Ok(None)` when this binary was built without it.
pub fn embedded_object() -> Result<Option<EmbeddedObject>> {
    if EBPF_OBJECT.is_empty() {
        return Ok(None);
    }
    let obj = aya_obj::Object::parse(EBPF_OBJECT).context("parsing the embedded eBPF object")?;
    Ok(Some(EmbeddedObject {
        bytes: EBPF_OBJECT.len(),
        needs_kernel_btf: obj.has_btf_relocations(),
    }))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
pub(crate) fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; failure is harmless on newer kernels.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

/// Every interface that is up (IFF_UP), `lo` included.
/// Which program goes on which hook of `iface`. A loopback interface's packets pass its
/// egress and then its ingress, so one program on egress sees each once, both directions.
fn hooks_of(iface: &str) -> &'static [(&'static str, TcAttachType)] {
    if interface_flags(iface) & libc::IFF_LOOPBACK as u32 != 0 {
        &[(PROG_LOOPBACK, TcAttachType::Egress)]
    } else {
        &[
            (PROG_INGRESS, TcAttachType::Ingress),
            (PROG_EGRESS, TcAttachType::Egress),
        ]
    }
}

/// An interface's `IFF_*` flags (0 if it cannot be read).
fn interface_flags(name: &str) -> u32 {
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).unwrap_or_default();
    u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0)
}

pub fn interfaces_up() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if interface_flags(&name) & libc::IFF_UP as u32 != 0 {
            out.push(name);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no network interface is up");
    }
    Ok(out)
}

/// The map behind [`Exclusions`]: the kernel's `MAP_EXCLUDED` in the agent, a plain map
/// in tests (so the locking around it is tested without a kernel).
pub trait ExcludeMap: Send {
    fn insert(&mut self, key: ExcludeKey) -> Result<(), String>;
    fn remove(&mut self, key: &ExcludeKey);
}

/// The kernel's `EXCLUDED` map, and the `TC_CONF` switch that tells the programs
/// whether to look packets up in it at all (a hash lookup per packet saved while it is
/// empty, which it is unless staging listens on a captured port).
pub struct KernelExclusions {
    entries: HashMap<MapData, ExcludeKey, u8>,
    conf: Array<MapData, TcConf>,
    /// Entries in `entries`.
    held: usize,
}

impl KernelExclusions {
    fn switch(&mut self, on: bool) -> Result<(), String> {
        let mut conf = self.conf.get(&0, 0).map_err(|e| e.to_string())?;
        conf.exclusions = u32::from(on);
        self.conf.set(0, conf, 0).map_err(|e| e.to_string())
    }
}

impl ExcludeMap for KernelExclusions {
    fn insert(&mut self, key: ExcludeKey) -> Result<(), String> {
        HashMap::insert(&mut self.entries, key, 1, 0).map_err(|e| e.to_string())?;
        self.held += 1;
        // The entry is there before the switch is on, and both before the connection
        // sends its first packet.
        if self.held == 1 {
            self.switch(true)?;
        }
        Ok(())
    }

    fn remove(&mut self, key: &ExcludeKey) {
        if HashMap::remove(&mut self.entries, key).is_ok() {
            self.held = self.held.saturating_sub(1);
            if self.held == 0 {
                if let Err(e) = self.switch(false) {
                    warn!("turning the kernel's exclusion lookups off: {e}");
                }
            }
        }
    }
}

/// The kernel's list of connections not to capture: the agent's own connections to
/// staging on a captured port (a connection to another port is not captured anyway).
/// Cheap to clone; entries are added before a connection is opened and removed after it
/// is closed.
pub struct Exclusions<M = KernelExclusions> {
    map: Arc<Mutex<M>>,
    captured: Arc<[u16]>,
}

impl<M> Clone for Exclusions<M> {
    fn clone(&self) -> Self {
        Exclusions {
            map: Arc::clone(&self.map),
            captured: Arc::clone(&self.captured),
        }
    }
}

impl<M: ExcludeMap> Exclusions<M> {
    pub fn new(map: M, captured: Vec<u16>) -> Self {
        Exclusions {
            map: Arc::new(Mutex::new(map)),
            captured: captured.into(),
        }
    }

    fn key(local_port: u16, server: SocketAddr) -> ExcludeKey {
        let (family, server_addr) = match server {
            SocketAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.ip().octets());
                (FAMILY_V4, b)
            }
            // An IPv4-mapped peer travels as IPv4 on the wire.
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&v4.octets());
                    (FAMILY_V4, b)
                }
                None => (FAMILY_V6, a.ip().octets()),
            },
        };
        ExcludeKey {
            server_addr,
            server_port: server.port(),
            client_port: local_port,
            family,
            _pad: [0; 3],
        }
    }

    /// The map, even when a thread panicked while holding it: the map itself is always
    /// consistent (each update is one syscall), and skipping the update would let the
    /// kernel capture our own staging traffic and mirror it again, a silent loop.
    fn map(&self) -> std::sync::MutexGuard<'_, M> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, local_port: u16, server: SocketAddr) {
        if !self.captured.contains(&server.port()) {
            return;
        }
        let key = Self::key(local_port, server);
        if let Err(e) = self.map().insert(key) {
            // Full map: this connection may be captured; its traffic then shows up as
            // ordinary requests, which is visible in the counters, not silent.
            warn!("excluding our connection {local_port} -> {server} from capture: {e}");
        }
    }

    pub fn remove(&self, local_port: u16, server: SocketAddr) {
        if !self.captured.contains(&server.port()) {
            return;
        }
        let key = Self::key(local_port, server);
        self.map().remove(&key);
    }
}

impl<M: ExcludeMap> crate::mirror::PortExclusion for Exclusions<M> {
    fn add(&self, local_port: u16, remote: SocketAddr) {
        Exclusions::add(self, local_port, remote)
    }
    fn remove(&self, local_port: u16, remote: SocketAddr) {
        Exclusions::remove(self, local_port, remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gets_one_program_on_egress_other_interfaces_two() {
        assert_eq!(hooks_of("lo"), &[(PROG_LOOPBACK, TcAttachType::Egress)]);
        // No such interface: no flags, so not loopback.
        assert_eq!(
            hooks_of("gor-no-such-if"),
            &[
                (PROG_INGRESS, TcAttachType::Ingress),
                (PROG_EGRESS, TcAttachType::Egress)
            ]
        );
    }

    /// The kernel map's stand-in: the keys it holds.
    #[derive(Default)]
    struct Keys(Vec<ExcludeKey>);

    impl ExcludeMap for Keys {
        fn insert(&mut self, key: ExcludeKey) -> Result<(), String> {
            self.0.push(key);
            Ok(())
        }

        fn remove(&mut self, key: &ExcludeKey) {
            self.0.retain(|k| k != key);
        }
    }

    fn ports(e: &Exclusions<Keys>) -> Vec<u16> {
        e.map().0.iter().map(|k| k.client_port).collect()
    }

    #[test]
    fn exclusions_still_update_after_a_panic_while_the_map_was_locked() {
        let excl = Exclusions::new(Keys::default(), vec![9000]);
        let staging: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        excl.add(40000, staging);
        let holder = excl.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.map.lock().unwrap();
            panic!("poisoning the exclusion map's lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(excl.map.is_poisoned());
        excl.add(40001, staging);
        assert_eq!(
            ports(&excl),
            [40000, 40001],
            "added despite the poisoned lock"
        );
        excl.remove(40000, staging);
        assert_eq!(ports(&excl), [40001], "removed despite the poisoned lock");
    }

    #[test]
    fn ipv4_mapped_staging_addresses_are_excluded_as_ipv4() {
        let excl = Exclusions::new(Keys::default(), vec![9000]);
        excl.add(40000, "[::ffff:127.0.0.1]:9000".parse().unwrap());
        excl.add(40001, "[::1]:9000".parse().unwrap());
        let families: Vec<u8> = excl.map().0.iter().map(|k| k.family).collect();
        assert_eq!(families, [FAMILY_V4, FAMILY_V6]);
    }

    #[test]
    fn only_connections_to_a_captured_port_are_excluded() {
        let excl = Exclusions::new(Keys::default(), vec![9000]);
        excl.add(40000, "127.0.0.1:9000".parse().unwrap());
        excl.add(40001, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            ports(&excl),
            [40000],
            "port 9001 is not captured: nothing to exclude"
        );
        excl.remove(40001, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(ports(&excl), [40000]);
    }
}
