//! The interfaces to watch: that each exists (up, with Ethernet framing), and what else
//! is attached to its TC hooks, told apart from gor's own programs.
//!
//! What counts: gor's programs run first on each hook (a tcx link in front of the others
//! from kernel 6.6; before, a cls_bpf filter whose automatic priority puts it ahead of
//! existing filters) and pass every packet on unchanged. So another program on the hook
//! is a `warn`: gor still sees every packet and the other program still runs, but the
//! operator should know they share the hook. It names the programs (a gor-agent that is
//! already running shows up as gor's own, not as another program), and says when one
//! runs *before* gor's, where its verdict can hide packets from gor. A hook's one `FAIL`
//! is a hook gor cannot use: before 6.6, an `ingress` qdisc where gor needs `clsact`.
//! An interface fails when it does not exist, or when it is named in GOR_INTERFACES but
//! carries no Ethernet frames (tun, WireGuard), which gor cannot decode.

use std::{ffi::CString, fmt, io};

use aya::programs::{ProgramError, SchedClassifier, TcAttachType};
use gor_common::TC_PROGRAMS;

use super::{
    netlink::{self, Filter, Link, Qdisc},
    Line,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Ingress,
    Egress,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        })
    }
}

/// A program on a tcx hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prog {
    pub id: u32,
    pub name: String,
}

/// What is attached to one hook of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// tcx programs in the order they run (none before kernel 6.6).
    pub tcx: Result<Vec<Prog>, String>,
    /// The qdisc in the clsact slot: `clsact`, `ingress`, or none.
    pub qdisc: Option<String>,
    /// Classic filters on this hook (under that qdisc).
    pub filters: Result<Vec<Filter>, String>,
}

fn is_gor(name: &str) -> bool {
    TC_PROGRAMS.contains(&name)
}

fn describe_prog(p: &Prog) -> String {
    match p.name.as_str() {
        "" => format!("tcx program (id {})", p.id),
        name => format!("tcx program \"{name}\" (id {})", p.id),
    }
}

fn describe_filter(f: &Filter) -> String {
    match (f.kind.as_str(), &f.name) {
        ("bpf", Some(name)) => format!("cls_bpf filter \"{name}\" (pref {})", f.pref),
        ("bpf", None) => format!("cls_bpf filter (pref {})", f.pref),
        (kind, _) => format!("{kind} filter (pref {})", f.pref),
    }
}

fn is_gor_filter(f: &Filter) -> bool {
    f.kind == "bpf" && f.name.as_deref().is_some_and(is_gor)
}

/// The line for one hook. `tcx`: this kernel attaches with tcx (>= 6.6).
pub fn hook_line(iface: &str, hook: Hook, tcx: bool, seen: &Seen) -> Line {
    let at = format!("{iface} {hook}");
    if !tcx && hook == Hook::Egress && seen.qdisc.as_deref() == Some("ingress") {
        return Line::fail(
            format!(
                "{at}: an `ingress` qdisc is installed, not `clsact`; before kernel 6.6 gor needs \
                 clsact's egress hook (on `ingress`, its egress program would see incoming \
                 packets, and no response would be captured)"
            ),
            format!(
                "replace it with clsact (`tc qdisc del dev {iface} ingress; tc qdisc add dev \
                 {iface} clsact`, then add its filters again), or run a kernel >= 6.6"
            ),
        );
    }
    let progs: &[Prog] = seen.tcx.as_deref().unwrap_or_default();
    let filters: &[Filter] = seen.filters.as_deref().unwrap_or_default();

    let mut own = Vec::new();
    let mut others = Vec::new();
    // Programs that run before gor's (only when gor's are attached now).
    let mut ahead = Vec::new();
    let first_own_tcx = progs.iter().position(|p| is_gor(&p.name));
    for (i, p) in progs.iter().enumerate() {
        if is_gor(&p.name) {
            own.push(describe_prog(p));
        } else {
            others.push(describe_prog(p));
            if first_own_tcx.is_some_and(|first| i < first) {
                ahead.push(describe_prog(p));
            }
        }
    }
    // Before tcx, filters run by priority, lowest first. With tcx, classic filters run
    // after every tcx program, so they are never ahead of gor's link.
    let own_pref = filters
        .iter()
        .filter(|f| is_gor_filter(f))
        .map(|f| f.pref)
        .min();
    for f in filters {
        if is_gor_filter(f) {
            own.push(describe_filter(f));
        } else {
            others.push(describe_filter(f));
            if !tcx && own_pref.is_some_and(|own| f.pref < own) {
                ahead.push(describe_filter(f));
            }
        }
    }

    let listed = seen.tcx.is_ok() && seen.filters.is_ok();
    let mut parts = Vec::new();
    if others.is_empty() {
        if listed {
            parts.push("no other TC program".to_string());
        }
    } else {
        parts.push(format!("other programs: {}", others.join(", ")));
        parts.push(if !ahead.is_empty() {
            format!(
                "{} {} before gor's, so packets dropped, redirected or passed with TC_ACT_OK \
                 there never reach gor",
                ahead.join(", "),
                if ahead.len() == 1 { "runs" } else { "run" }
            )
        } else if tcx {
            "gor attaches its tcx link in front of every other program and passes each packet \
             on (TCX_NEXT): it sees every packet, and these keep running after it"
                .to_string()
        } else {
            "gor's cls_bpf filter gets a priority ahead of existing filters and passes each \
             packet on (TC_ACT_UNSPEC): it sees every packet, and these keep running after it"
                .to_string()
        });
    }
    if !own.is_empty() {
        parts.push(format!(
            "gor's own {} attached: a gor-agent is capturing here",
            own.join(", ")
        ));
    }
    if let Err(e) = &seen.tcx {
        parts.push(format!("tcx programs could not be listed ({e})"));
    }
    if let Err(e) = &seen.filters {
        parts.push(format!("classic filters could not be listed ({e})"));
    }
    let text = format!("{at}: {}", parts.join("; "));
    if others.is_empty() && listed {
        Line::ok(text)
    } else {
        Line::warn(text)
    }
}

/// ARPHRD_* link types whose frames gor decodes.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// The line for one interface. `explicit`: named in GOR_INTERFACES (not the default of
/// every interface that is up). `index`: from if_nametoindex, as aya's attach looks it up.
pub fn interface_line(name: &str, explicit: bool, index: Option<u32>, link: Option<&Link>) -> Line {
    let Some(index) = index else {
        return Line::fail(
            format!("interface {name}: not found"),
            "set GOR_INTERFACES to existing interfaces (`ip -br link` lists them)",
        );
    };
    let Some(link) = link else {
        return Line::ok(format!("interface {name}: exists (index {index})"));
    };
    if link.link_type != ARPHRD_ETHER && link.link_type != ARPHRD_LOOPBACK {
        let text = format!(
            "interface {name} (index {index}): link type {} is not Ethernet; gor decodes \
             Ethernet frames only (tun, WireGuard and other L3 devices are not supported yet), \
             so nothing on it is captured",
            link.link_type
        );
        return if explicit {
            Line::fail(text, format!("leave {name} out of GOR_INTERFACES"))
        } else {
            Line::warn(text)
        };
    }
    if link.flags & libc::IFF_UP as u32 == 0 {
        return Line::warn(format!(
            "interface {name} (index {index}): down; gor attaches to it, but it carries no traffic until it is up"
        ))
        .with_fix(format!("`ip link set {name} up` if traffic should arrive there"));
    }
    Line::ok(format!("interface {name}: exists (index {index}, up)"))
}

/// Checks every interface the agent would watch, and both hooks of each.
pub fn check_interfaces(configured: &[String], tcx: bool, emit: &mut impl FnMut(Line)) {
    let (names, explicit) = if configured.is_empty() {
        match crate::capture::tc::interfaces_up() {
            Ok(up) => {
                emit(Line::ok(format!(
                    "interfaces: GOR_INTERFACES is not set: every interface that is up ({})",
                    up.join(", ")
                )));
                (up, false)
            }
            Err(e) => {
                emit(Line::fail(
                    format!("interfaces: GOR_INTERFACES is not set, and {e:#}"),
                    "bring an interface up, or set GOR_INTERFACES",
                ));
                return;
            }
        }
    } else {
        (configured.to_vec(), true)
    };
    // Read once for all interfaces; a failure leaves the details out, not the checks.
    let links = netlink::links().unwrap_or_default();
    let qdiscs = netlink::qdiscs();
    for name in &names {
        let index = if_index(name);
        let link = index.and_then(|i| links.iter().find(|l| l.index == i));
        emit(interface_line(name, explicit, index, link));
        let Some(index) = index else { continue };
        for hook in [Hook::Ingress, Hook::Egress] {
            emit(hook_line(
                name,
                hook,
                tcx,
                &read_hook(name, index, hook, tcx, &qdiscs),
            ));
        }
    }
}

fn if_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

fn read_hook(
    name: &str,
    index: u32,
    hook: Hook,
    tcx: bool,
    qdiscs: &io::Result<Vec<Qdisc>>,
) -> Seen {
    let tcx = if tcx {
        query_tcx(name, hook)
    } else {
        Ok(Vec::new())
    };
    let qdiscs = match qdiscs {
        Ok(q) => q,
        Err(e) => {
            return Seen {
                tcx,
                qdisc: None,
                filters: Err(format!("listing qdiscs: {e}")),
            }
        }
    };
    let qdisc = qdiscs
        .iter()
        .find(|q| q.ifindex == index && q.parent == netlink::TC_H_CLSACT)
        .map(|q| q.kind.clone());
    // An `ingress` qdisc has a single block, which a dump for egress would list again.
    let parent = match (qdisc.as_deref(), hook) {
        (Some("clsact" | "ingress"), Hook::Ingress) => Some(netlink::PARENT_INGRESS),
        (Some("clsact"), Hook::Egress) => Some(netlink::PARENT_EGRESS),
        _ => None,
    };
    let filters = match parent {
        Some(parent) => {
            netlink::filters(index, parent).map_err(|e| format!("listing filters: {e}"))
        }
        None => Ok(Vec::new()),
    };
    Seen {
        tcx,
        qdisc,
        filters,
    }
}

fn query_tcx(name: &str, hook: Hook) -> Result<Vec<Prog>, String> {
    let attach = match hook {
        Hook::Ingress => TcAttachType::Ingress,
        Hook::Egress => TcAttachType::Egress,
    };
    match SchedClassifier::query_tcx(name, attach) {
        Ok((_, infos)) => Ok(infos
            .iter()
            .map(|p| Prog {
                id: p.id(),
                name: p.name_as_str().unwrap_or_default().to_string(),
            })
            .collect()),
        // Listing needs CAP_NET_ADMIN; reading each program's name, CAP_SYS_ADMIN.
        Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EPERM) => {
            Err(format!(
                "{}: permission denied; run `gor-agent check` as root to see them",
                e.call
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    fn prog(id: u32, name: &str) -> Prog {
        Prog {
            id,
            name: name.into(),
        }
    }

    fn filter(kind: &str, pref: u16, name: Option<&str>) -> Filter {
        Filter {
            kind: kind.into(),
            pref,
            name: name.map(Into::into),
        }
    }

    fn seen(tcx: Vec<Prog>, qdisc: Option<&str>, filters: Vec<Filter>) -> Seen {
        Seen {
            tcx: Ok(tcx),
            qdisc: qdisc.map(Into::into),
            filters: Ok(filters),
        }
    }

    /// The line for eth0's ingress with these tcx programs, or (`tcx` false: before
    /// kernel 6.6) these filters on a clsact qdisc.
    fn eth0_ingress(tcx: bool, progs: Vec<Prog>, filters: Vec<Filter>) -> Line {
        let qdisc = (!filters.is_empty()).then_some("clsact");
        hook_line("eth0", Hook::Ingress, tcx, &seen(progs, qdisc, filters))
    }

    #[test]
    fn an_empty_hook_is_ok() {
        let line = hook_line("lo", Hook::Ingress, true, &seen(vec![], None, vec![]));
        assert_eq!(line.status, Status::Ok);
        assert_eq!(line.text, "lo ingress: no other TC program");
    }

    #[test]
    fn gors_own_programs_are_not_other_programs() {
        let line = hook_line(
            "eth0",
            Hook::Egress,
            true,
            &seen(vec![prog(41, "gor_egress")], None, vec![]),
        );
        assert_eq!(line.status, Status::Ok, "{}", line.text);
        assert!(line.text.contains("no other TC program"), "{}", line.text);
        assert!(
            line.text
                .contains("gor's own tcx program \"gor_egress\" (id 41) attached"),
            "{}",
            line.text
        );
        // Before tcx, as a cls_bpf filter named by aya after the program.
        let line = eth0_ingress(
            false,
            vec![],
            vec![filter("bpf", 49151, Some("gor_ingress"))],
        );
        assert_eq!(line.status, Status::Ok, "{}", line.text);
    }

    #[test]
    fn other_programs_warn_and_say_gor_still_sees_every_packet() {
        let line = eth0_ingress(
            true,
            vec![prog(7, "cil_from_netdev")],
            vec![filter("u32", 49152, None), filter("bpf", 1, None)],
        );
        assert_eq!(line.status, Status::Warn);
        assert!(
            line.text.starts_with(
                "eth0 ingress: other programs: tcx program \"cil_from_netdev\" (id 7), \
             u32 filter (pref 49152), cls_bpf filter (pref 1); gor attaches its tcx link in front"
            ),
            "{}",
            line.text
        );
        assert!(line.fix.is_none());
        let legacy = eth0_ingress(false, vec![], vec![filter("bpf", 49152, Some("x.o:[tc]"))]);
        assert_eq!(legacy.status, Status::Warn);
        assert!(legacy
            .text
            .contains("cls_bpf filter \"x.o:[tc]\" (pref 49152)"));
        assert!(legacy.text.contains("priority ahead"), "{}", legacy.text);
    }

    #[test]
    fn a_program_running_before_gors_is_named() {
        // tcx: order is run order.
        let line = eth0_ingress(
            true,
            vec![prog(7, "first"), prog(41, "gor_ingress"), prog(9, "after")],
            vec![],
        );
        assert_eq!(line.status, Status::Warn);
        assert!(
            line.text
                .contains("tcx program \"first\" (id 7) runs before gor's"),
            "{}",
            line.text
        );
        assert!(!line.text.contains("\"after\" (id 9) run"), "{}", line.text);
        // Before tcx: a lower priority number runs first.
        let line = eth0_ingress(
            false,
            vec![],
            vec![
                filter("u32", 100, None),
                filter("bpf", 49151, Some("gor_ingress")),
                filter("u32", 49152, None),
            ],
        );
        assert!(
            line.text
                .contains("u32 filter (pref 100) runs before gor's"),
            "{}",
            line.text
        );
        assert!(!line.text.contains("(pref 49152) run"), "{}", line.text);
    }

    #[test]
    fn an_ingress_qdisc_fails_egress_before_tcx_only() {
        let s = seen(vec![], Some("ingress"), vec![]);
        let line = hook_line("eth0", Hook::Egress, false, &s);
        assert_eq!(line.status, Status::Fail);
        assert!(line.fix.unwrap().contains("tc qdisc add dev eth0 clsact"));
        assert_eq!(
            hook_line("eth0", Hook::Ingress, false, &s).status,
            Status::Ok
        );
        assert_eq!(hook_line("eth0", Hook::Egress, true, &s).status, Status::Ok);
    }

    #[test]
    fn programs_that_could_not_be_listed_warn() {
        let s = Seen {
            tcx: Err("bpf_prog_get_fd_by_id: permission denied; run `gor-agent check` as root to see them".into()),
            qdisc: None,
            filters: Ok(vec![]),
        };
        let line = hook_line("lo", Hook::Ingress, true, &s);
        assert_eq!(line.status, Status::Warn);
        assert_eq!(
            line.text,
            "lo ingress: tcx programs could not be listed (bpf_prog_get_fd_by_id: permission \
             denied; run `gor-agent check` as root to see them)"
        );
        assert!(line.text.contains("as root"), "{}", line.text);
    }

    #[test]
    fn interfaces_must_exist_and_carry_ethernet_frames() {
        let up = libc::IFF_UP as u32;
        let missing = interface_line("eth9", true, None, None);
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(missing.text, "interface eth9: not found");
        assert!(missing.fix.unwrap().contains("ip -br link"));
        let link = |link_type, flags| Link {
            index: 2,
            link_type,
            flags,
        };
        let ok = interface_line("eth0", true, Some(2), Some(&link(1, up)));
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.text, "interface eth0: exists (index 2, up)");
        assert_eq!(
            interface_line("lo", true, Some(1), Some(&link(772, up))).status,
            Status::Ok
        );
        assert_eq!(
            interface_line("eth0", true, Some(2), Some(&link(1, 0))).status,
            Status::Warn
        );
        // A tun device: named explicitly it fails, among "all that are up" it warns.
        assert_eq!(
            interface_line("tun0", true, Some(2), Some(&link(65534, up))).status,
            Status::Fail
        );
        assert_eq!(
            interface_line("tun0", false, Some(2), Some(&link(65534, up))).status,
            Status::Warn
        );
        assert_eq!(
            interface_line("eth0", true, Some(2), None).status,
            Status::Ok
        );
    }
}
