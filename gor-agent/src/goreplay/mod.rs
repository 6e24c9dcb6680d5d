//! GoReplay's command lines, before anything else reads the arguments: `main` hands the
//! process's arguments to [`translate`], which recognises a GoReplay command line
//! (`gor --input-raw :80 --output-http "http://staging|10"`) and rewrites it into the
//! gor command line that means the same, which clap then parses and validates as usual.
//! A GoReplay flag gor does not implement is [`Refused`] with a message that names it
//! and says what gor offers instead (`main` exits 64), never silently ignored.
//!
//! Detection: a command line is GoReplay's when, before its first positional argument
//! (gor's subcommands; GoReplay has none) and before `--`, one argument is a GoReplay
//! flag ([`flags::FLAGS`]) that is either spelled with one dash (`-input-raw`; gor has
//! no one-dash long flags) or is not also a flag of gor's top-level command line
//! (`--input-raw`, `--output-http`, `--input-file`). Values of gor's own flags are
//! skipped, so a value is never taken for a flag. Every other command line is returned
//! unchanged.
//!
//! In a GoReplay command line, the flags GoReplay and gor share (`--middleware`,
//! `--output-file`, `--output-stdout`, the filters) mean what GoReplay means; gor's own
//! flags (`--compare`, `--log`...) may be added and pass through as given.
use std::{ffi::OsString, net::IpAddr};

pub mod flags;
#[cfg(test)]
mod tests;

use flags::{Arity, Fate};

/// A GoReplay command line gor cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The flag as given (`--output-tcp`), or the argument.
    pub flag: String,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GoReplay's {}: {}", self.flag, self.message)
    }
}

impl std::error::Error for Refused {}

/// The gor command line that means what `args` (the process's, program name first)
/// means; `args` unchanged when they are not a GoReplay command line.
pub fn translate(args: Vec<OsString>) -> Result<Vec<OsString>, Refused> {
    translate_with(args, &interface_holding)
}

/// [`translate`], with `lookup` telling which interface holds an address.
fn translate_with(
    args: Vec<OsString>,
    lookup: &dyn Fn(IpAddr) -> Option<String>,
) -> Result<Vec<OsString>, Refused> {
    let gor = GorFlags::read();
    // Arguments that are not UTF-8 are never GoReplay flags; such a command line is gor's.
    let Some(strs) = args
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(args);
    };
    if !is_goreplay(&strs[1.min(strs.len())..], &gor) {
        return Ok(args);
    }
    let mut t = Translation::default();
    t.run(&strs[1..], &gor, lookup)?;
    let program = strs.first().cloned().unwrap_or_else(|| "gor-agent".into());
    Ok(t.finish(program)?.into_iter().map(OsString::from).collect())
}

/// gor's long flags (and aliases) of the top-level command line and of `replay`, and
/// whether each takes a value, read from clap so that they cannot drift.
struct GorFlags {
    top: Vec<(String, bool)>,
    replay: Vec<(String, bool)>,
}

impl GorFlags {
    fn read() -> Self {
        use clap::CommandFactory;
        fn longs(cmd: &clap::Command) -> Vec<(String, bool)> {
            let mut out = Vec::new();
            for a in cmd.get_arguments() {
                let takes = a.get_action().takes_values();
                for name in a
                    .get_long()
                    .into_iter()
                    .chain(a.get_all_aliases().into_iter().flatten())
                {
                    out.push((name.to_string(), takes));
                }
            }
            out
        }
        let cli = crate::config::Cli::command();
        let replay = cli.find_subcommand("replay").map(longs).unwrap_or_default();
        GorFlags {
            top: longs(&cli),
            replay,
        }
    }

    /// Whether gor's top-level command line has `--name`, and if so whether it takes a value.
    fn top(&self, name: &str) -> Option<bool> {
        self.top.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    fn any(&self, name: &str) -> Option<bool> {
        self.top(name)
            .or_else(|| self.replay.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
    }
}

/// A flag argument split: its dashes, its name and its `=value`.
struct FlagArg<'a> {
    dashes: usize,
    name: &'a str,
    value: Option<&'a str>,
}

fn split_flag(arg: &str) -> Option<FlagArg<'_>> {
    let (dashes, rest) = if let Some(r) = arg.strip_prefix("--") {
        (2, r)
    } else if let Some(r) = arg.strip_prefix('-') {
        (1, r)
    } else {
        return None;
    };
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let (name, value) = match rest.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (rest, None),
    };
    Some(FlagArg {
        dashes,
        name,
        value,
    })
}

/// The detection rule of the module's documentation.
fn is_goreplay(args: &[String], gor: &GorFlags) -> bool {
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            return false;
        }
        let Some(fl) = split_flag(arg) else {
            // A positional argument: gor's subcommand (GoReplay has none).
            return false;
        };
        let gor_takes = if fl.dashes == 2 {
            gor.top(fl.name)
        } else {
            None
        };
        if flags::find(fl.name).is_some() && gor_takes.is_none() {
            return true;
        }
        if gor_takes == Some(true) && fl.value.is_none() {
            i += 1;
        }
    }
    false
}

fn refuse(flag: &str, message: impl Into<String>) -> Refused {
    Refused {
        flag: flag.to_string(),
        message: message.into(),
    }
}

/// A GoReplay command line being rewritten.
#[derive(Default)]
struct Translation {
    /// `--input-raw`: (interface, `None` for all; port), as given.
    raw: Vec<(Option<String>, u16)>,
    input_files: Vec<String>,
    /// `--output-http`: (URL, its `|N` or `|N%` limit).
    targets: Vec<(String, Option<String>)>,
    output_files: Vec<String>,
    /// `--output-stdout` (or `--output-dummy`), given once or more.
    stdout: bool,
    /// `--input-tcp`: addresses, as given.
    input_tcp: Vec<String>,
    /// `--output-tcp`: addresses, as given.
    output_tcp: Vec<String>,
    /// gor's flags, in the order given, after the input and the targets.
    rest: Vec<String>,
}

impl Translation {
    fn run(
        &mut self,
        args: &[String],
        gor: &GorFlags,
        lookup: &dyn Fn(IpAddr) -> Option<String>,
    ) -> Result<(), Refused> {
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "--" {
                return Err(refuse(
                    arg,
                    "GoReplay takes no positional arguments; remove `--` and what follows",
                ));
            }
            let Some(fl) = split_flag(arg) else {
                return Err(refuse(
                    arg,
                    "GoReplay takes no positional arguments (a boolean flag takes its \
                     value as -flag=true)",
                ));
            };
            let shown = format!("--{}", fl.name);
            if let Some(known) = flags::find(fl.name) {
                let value = match known.arity {
                    Arity::Bool => match fl.value {
                        None => None,
                        Some(v) => match go_bool(v) {
                            Some(true) => None,
                            // `-flag=false`: the flag's default, which is gor's too.
                            Some(false) => continue,
                            None => {
                                return Err(refuse(
                                    &shown,
                                    format!("`{v}` is not a boolean (true, false, 1, 0...)"),
                                ))
                            }
                        },
                    },
                    Arity::Value => match fl.value {
                        Some(v) => Some(v.to_string()),
                        None => match args.get(i) {
                            Some(v) => {
                                i += 1;
                                Some(v.clone())
                            }
                            None => return Err(refuse(&shown, "needs a value")),
                        },
                    },
                    Arity::OptionalLevel => match fl.value {
                        Some(v) => Some(v.to_string()),
                        None => match args.get(i).filter(|v| v.parse::<i64>().is_ok()) {
                            Some(v) => {
                                i += 1;
                                Some(v.clone())
                            }
                            None => None,
                        },
                    },
                };
                match known.fate {
                    Fate::Translated => self.flag(&shown, known.name, value, lookup)?,
                    Fate::NotYet(why) => {
                        return Err(refuse(
                            &shown,
                            format!(
                                "not supported by gor yet: {}",
                                why.strip_prefix("not yet; ")
                                    .or_else(|| why.strip_prefix("not yet as such; "))
                                    .unwrap_or(why)
                            ),
                        ))
                    }
                    Fate::Never(why) => {
                        return Err(refuse(&shown, format!("not supported by gor: {why}")))
                    }
                }
            } else if let Some(takes) = gor.any(fl.name) {
                // One of gor's own flags, added to a GoReplay command line.
                self.rest.push(format!("--{}", fl.name));
                match fl.value {
                    Some(v) => {
                        let last = self.rest.pop().unwrap_or_default();
                        self.rest.push(format!("{last}={v}"));
                    }
                    None if takes => match args.get(i) {
                        Some(v) => {
                            i += 1;
                            self.push_value(v);
                        }
                        None => return Err(refuse(&shown, "needs a value")),
                    },
                    None => {}
                }
            } else {
                return Err(refuse(
                    arg,
                    "neither a GoReplay 1.3 flag nor a gor flag; see `gor-agent --help` \
                     and the README's \"Coming from GoReplay\"",
                ));
            }
        }
        Ok(())
    }

    /// A value after its flag in `rest`: as its own argument, unless clap would take it
    /// for a flag.
    fn push_value(&mut self, v: &str) {
        if v.starts_with('-') {
            let last = self.rest.pop().unwrap_or_default();
            self.rest.push(format!("{last}={v}"));
        } else {
            self.rest.push(v.to_string());
        }
    }

    fn set(&mut self, flag: &str, value: &str) {
        self.rest.push(flag.to_string());
        self.push_value(value);
    }

    /// One translated flag; `value` is `None` for a boolean that is on.
    fn flag(
        &mut self,
        shown: &str,
        name: &str,
        value: Option<String>,
        lookup: &dyn Fn(IpAddr) -> Option<String>,
    ) -> Result<(), Refused> {
        let v = value.as_deref().unwrap_or_default();
        if let Some(gor_name) = flags::filter_name(name) {
            self.set(&format!("--{gor_name}"), v);
            return Ok(());
        }
        match name {
            "input-raw" => self.raw.push(input_raw(shown, v, lookup)?),
            "input-raw-track-response" => self.rest.push("--track-responses".into()),
            "input-raw-engine" => match v {
                // gor captures with eBPF whichever engine GoReplay was told to use.
                "libpcap" | "raw_socket" | "" => {}
                "pcap_file" => {
                    return Err(refuse(
                        shown,
                        "not supported by gor as such: read a capture file with \
                         `gor-agent --input-pcap FILE --ports PORT`",
                    ))
                }
                "af_packet" | "vxlan" => {
                    return Err(refuse(
                        shown,
                        format!(
                            "the `{v}` engine is not supported by gor: it captures with \
                             eBPF on the host's interfaces; remove the flag"
                        ),
                    ))
                }
                _ => return Err(refuse(shown, format!("`{v}` is not a GoReplay engine"))),
            },
            "input-file" => match v.rsplit_once('|') {
                // GoReplay's `|10` on a file input drops what is over 10 requests/s; only
                // a percentage is a speed.
                Some((_, limit)) if !limit.trim().ends_with('%') => {
                    return Err(refuse(
                        shown,
                        format!(
                            "`|{limit}` (requests per second) on a file input is not supported \
                             by gor as such: give the speed as a percentage (`|200%`), or cap \
                             the rate with --rate {limit} (GOR_RATE)",
                            limit = limit.trim()
                        ),
                    ))
                }
                _ => self.input_files.push(v.to_string()),
            },
            "input-file-loop" => self.rest.push("--loop".into()),
            "input-file-dry-run" => self.rest.push("--dry-run".into()),
            "input-file-max-wait" => {
                if let Some(d) = go_duration(shown, v)? {
                    self.set("--max-wait", &d);
                }
            }
            "output-http" => self.targets.push(output_http(v)),
            "output-http-workers" => match v.trim().parse::<i64>() {
                // GoReplay's 0: as many as needed; gor's default bounds them.
                Ok(n) if n <= 0 => {}
                _ => self.set("--workers", v),
            },
            "output-http-redirects" => match v.trim().parse::<i64>() {
                // GoReplay's 0 (and below): never follow, gor's default.
                Ok(n) if n <= 0 => {}
                Ok(n) => self.set("--redirects", &n.to_string()),
                Err(_) => return Err(refuse(shown, format!("`{v}` is not a whole number"))),
            },
            "output-http-timeout" => {
                if let Some(d) = go_duration(shown, v)? {
                    self.set("--timeout", &d);
                }
            }
            "output-http-track-response" => self.rest.push("--track-staging-responses".into()),
            "output-http-queue-len" => self.set("--queue", v),
            // gor logs its counters every GOR_STATS_INTERVAL anyway.
            "output-http-stats" | "stats" => {}
            "output-http-stats-ms" => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => self.set("--stats-interval", &format!("{ms}ms")),
                _ => {
                    return Err(refuse(
                        shown,
                        format!("`{v}` is not a number of milliseconds"),
                    ))
                }
            },
            "http-original-host" => self.rest.push("--original-host".into()),
            "prettify-http" => self.rest.push("--http-prettify".into()),
            "split-output" => self.rest.push("--split-output".into()),
            "output-http-skip-verify" => self.rest.push("--tls-skip-verify".into()),
            "output-http-response-buffer" => {
                let size = go_size(shown, v)?;
                self.set("--staging-response-max-body", &size);
            }
            "output-http-debug" => self.set("--log", "debug"),
            "middleware" => self.set("--middleware", v),
            "output-file" => self.output_files.push(output_file(shown, v)?),
            "output-file-size-limit" => {
                let size = go_size(shown, v)?;
                self.set("--output-file-size-limit", &size);
            }
            "output-file-max-size-limit" => match v.trim() {
                // GoReplay's default, -1: no cap.
                "-1" | "0" => {}
                _ => {
                    let size = go_size(shown, v)?;
                    self.set("--output-file-max-size-limit", &size);
                }
            },
            "output-file-append" => self.rest.push("--output-file-append".into()),
            "output-file-flush-interval" => {
                // GoReplay flushes every 100ms when told 0.
                let d = go_duration(shown, v)?.unwrap_or_else(|| "100ms".into());
                self.set("--output-file-flush-interval", &d);
            }
            "output-file-queue-limit" => match v.trim().parse::<i64>() {
                Ok(n) => self.set("--output-file-queue-limit", &n.max(0).to_string()),
                Err(_) => return Err(refuse(shown, format!("`{v}` is not a number of records"))),
            },
            // GoReplay prints its records on stdout for both; --output-dummy's value is
            // ignored, as GoReplay ignores it.
            "output-stdout" | "output-dummy" => self.stdout = true,
            // Messages go nowhere: gor still frames and counts them.
            "output-null" => {}
            "exit-after" => {
                if let Some(d) = go_duration(shown, v)? {
                    self.set("--exit-after", &d);
                }
            }
            "verbose" => match value.as_deref().map(str::trim) {
                None => self.set("--log", "debug"),
                Some(level) => match level.parse::<i64>() {
                    Ok(n) if n > 0 => self.set("--log", "debug"),
                    Ok(_) => {}
                    Err(_) => match go_bool(level) {
                        Some(true) => self.set("--log", "debug"),
                        Some(false) => {}
                        None => return Err(refuse(shown, format!("`{level}` is not a level"))),
                    },
                },
            },
            "debug" => self.set("--log", "debug"),
            // GoReplay's TCP protocol: the same flags in gor, one address each.
            "input-tcp" => self.input_tcp.push(v.to_string()),
            "output-tcp" => self.output_tcp.push(v.to_string()),
            "input-tcp-secure"
            | "output-tcp-secure"
            | "output-tcp-skip-verify"
            | "output-tcp-sticky"
            | "output-tcp-stats" => self.rest.push(format!("--{name}")),
            "input-tcp-certificate" | "input-tcp-certificate-key" | "output-tcp-workers" => {
                self.set(&format!("--{name}"), v)
            }
            _ => unreachable!("a flag marked Translated without a translation: {name}"),
        }
        Ok(())
    }

    fn finish(self, program: String) -> Result<Vec<String>, Refused> {
        let mut out = vec![program];
        if self.output_tcp.len() > 1 {
            return Err(refuse(
                "--output-tcp",
                "not supported by gor yet more than once: gor sends to one replay server \
                 (its --output-tcp-workers connections share the load)",
            ));
        }
        if let Some(addr) = self.input_tcp.first() {
            if self.input_tcp.len() > 1 || !self.raw.is_empty() || !self.input_files.is_empty() {
                return Err(refuse(
                    "--input-tcp",
                    "not supported by gor yet together with another input (or more than \
                     once): gor runs one input at a time",
                ));
            }
            out.push("--input-tcp".into());
            out.push(addr.clone());
        }
        if !self.input_files.is_empty() {
            if !self.raw.is_empty() {
                return Err(refuse(
                    "--input-file",
                    "not supported by gor yet together with --input-raw: gor runs one \
                     input at a time (capture, or `gor-agent replay`)",
                ));
            }
            out.push("replay".into());
            for file in &self.input_files {
                out.push("--input-file".into());
                out.push(file.clone());
            }
        } else if !self.raw.is_empty() {
            let (ports, interfaces) = capture(&self.raw)?;
            out.push("--ports".into());
            out.push(ports);
            if let Some(i) = interfaces {
                out.push("--interfaces".into());
                out.push(i);
            }
        }
        if !self.targets.is_empty() {
            // One limit for all: gor's --rate. Different ones: each target's own `|N`.
            let first = &self.targets[0].1;
            let same = self.targets.iter().all(|(_, l)| l == first);
            let urls: Vec<String> = self
                .targets
                .iter()
                .map(|(u, l)| match l {
                    Some(l) if !same => format!("{u}|{l}"),
                    _ => u.clone(),
                })
                .collect();
            out.push("--target".into());
            out.push(urls.join(","));
            if let Some(rate) = first.as_ref().filter(|_| same) {
                out.push("--rate".into());
                out.push(rate.clone());
            }
            // GoReplay's URL path or query is every request's target.
            if self.targets.iter().any(|(u, _)| has_path_or_query(u)) {
                out.push("--target-path".into());
                out.push("replace".into());
            }
        }
        match self.output_files.as_slice() {
            [] => {}
            [one] => {
                out.push("--output-file".into());
                out.push(one.clone());
            }
            _ => {
                return Err(refuse(
                    "--output-file",
                    "not supported by gor yet more than once: gor writes one file pattern",
                ))
            }
        }
        if self.stdout {
            out.push("--output-stdout-records".into());
        }
        // After the command: `replay` has the output settings of its own.
        if let Some(addr) = self.output_tcp.first() {
            out.push("--output-tcp".into());
            out.push(addr.clone());
        }
        out.extend(self.rest);
        Ok(out)
    }
}

/// `:80`, `0.0.0.0:80`, `127.0.0.1:80`, `lo:80`, `[::1]:80`, `eth0:8080`.
fn input_raw(
    shown: &str,
    v: &str,
    lookup: &dyn Fn(IpAddr) -> Option<String>,
) -> Result<(Option<String>, u16), Refused> {
    let bad = || {
        refuse(
            shown,
            format!("`{v}` is not `[host|interface]:port` (e.g. `:80`, `lo:8080`)"),
        )
    };
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let interface = if host.is_empty() {
        None
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_unspecified() {
            None
        } else if ip.is_loopback() {
            // Linux's `lo` holds all of 127.0.0.0/8, though it lists 127.0.0.1 only.
            Some("lo".to_string())
        } else {
            Some(lookup(ip).ok_or_else(|| {
                refuse(
                    shown,
                    format!(
                        "no interface of this host holds {ip}; give the interface's name \
                         (`eth0:{port}`)"
                    ),
                )
            })?)
        }
    } else if host == "localhost" {
        Some("lo".to_string())
    } else {
        // An interface's name; whether it exists is gor's resolve step's question.
        Some(host.to_string())
    };
    Ok((interface, port))
}

/// The ports and interfaces of every `--input-raw`. gor watches each of its ports on
/// each of its interfaces, so the inputs must be such a product to be captured exactly.
fn capture(raw: &[(Option<String>, u16)]) -> Result<(String, Option<String>), Refused> {
    let mut ports: Vec<u16> = raw.iter().map(|(_, p)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    let mut ifaces: Vec<Option<&str>> = raw.iter().map(|(i, _)| i.as_deref()).collect();
    ifaces.sort_unstable();
    ifaces.dedup();
    let exact = ifaces.iter().all(|i| {
        ports
            .iter()
            .all(|p| raw.iter().any(|(ri, rp)| ri.as_deref() == *i && rp == p))
    });
    if !exact || (ifaces.len() > 1 && ifaces.contains(&None)) {
        return Err(refuse(
            "--input-raw",
            "not supported by gor yet: different ports on different interfaces; gor \
             watches every port on every interface it watches, so give each port on the \
             same interfaces (or all of them, `:PORT`)",
        ));
    }
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let ifaces = match ifaces.as_slice() {
        [None] => None,
        named => Some(
            named
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        ),
    };
    Ok((ports, ifaces))
}

/// `http://staging|10`, `staging.env|10%`: the URL (`http://` added when there is no
/// scheme, as GoReplay does) and its limit.
fn output_http(v: &str) -> (String, Option<String>) {
    let (url, limit) = match v.rsplit_once('|') {
        Some((u, l)) => (u.trim(), Some(l.trim().to_string())),
        None => (v.trim(), None),
    };
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    (url, limit.filter(|l| !l.is_empty()))
}

/// Whether a URL has a path (`/` included, as Go's URL parser has it) or a query.
fn has_path_or_query(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.contains(['/', '?'])
}

/// GoReplay's file name, with its placeholders (`%Y %m %d %H %M %S`, `%NS`, `%r`, `%t`,
/// `%i`) and `%%`.
fn output_file(shown: &str, v: &str) -> Result<String, Refused> {
    if v.starts_with("s3://") {
        return Err(refuse(
            shown,
            "not supported by gor: it writes local files; upload them with another tool",
        ));
    }
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        let after = &rest[i + 1..];
        match after.chars().next() {
            Some('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'r' | 't' | 'i' | '%') => rest = &after[1..],
            Some('N') if after.starts_with("NS") => rest = &after[2..],
            _ => {
                let ph: String = after.chars().take(2).collect();
                return Err(refuse(
                    shown,
                    format!(
                        "`%{ph}` is not one of GoReplay's placeholders: %Y %m %d %H %M %S \
                         (UTC), %NS, %r (the record's id), %t (its type), %i (this run), %%"
                    ),
                ));
            }
        }
    }
    Ok(v.to_string())
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A Go duration (`5s`, `1m30s`, `1.5s`, `250ms`) in gor's units; `None` for zero,
/// which is GoReplay's "no limit" or "the default".
fn go_duration(shown: &str, v: &str) -> Result<Option<String>, Refused> {
    let bad = || {
        refuse(
            shown,
            format!("`{v}` is not a duration in whole milliseconds (e.g. `5s`, `1m30s`, `250ms`)"),
        )
    };
    let s = v.trim();
    if s == "0" {
        return Ok(None);
    }
    let mut ns: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        ns += n * mult;
        rest = &rest[unit_end..];
    }
    let ms = (ns / 1e6).round();
    if (ns / 1e6 - ms).abs() > 1e-6 {
        return Err(bad());
    }
    let ms = ms as u64;
    Ok(match ms {
        0 => None,
        ms if ms % 1000 == 0 => Some(format!("{}s", ms / 1000)),
        ms => Some(format!("{ms}ms")),
    })
}

/// GoReplay's sizes (`32mb`, `1gb`, `512kb`, `256m`, any case, powers of 1024; a bare
/// number is bytes) in gor's units.
fn go_size(shown: &str, v: &str) -> Result<String, Refused> {
    let bad = || {
        refuse(
            shown,
            format!("`{v}` is not a size such as `32mb`, `1gb` or `65536`"),
        )
    };
    let s = v.trim().to_ascii_lowercase().replace('_', "");
    // `32mb`, and `256m` as GoReplay's documentation writes it.
    let s = match s.strip_suffix(['k', 'm', 'g', 't']) {
        Some(_) => format!("{s}b"),
        None => s,
    };
    let (num, unit) = match s.len().checked_sub(2).map(|i| s.split_at(i)) {
        Some((n, u @ ("kb" | "mb" | "gb" | "tb"))) => (n.to_string(), u),
        _ => (s.clone(), ""),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    Ok(match unit {
        "kb" => format!("{n}KiB"),
        "mb" => format!("{n}MiB"),
        "gb" => format!("{n}GiB"),
        "tb" => format!("{}GiB", n.checked_mul(1024).ok_or_else(bad)?),
        _ => n.to_string(),
    })
}

/// The interface that holds `ip`, from `getifaddrs(3)`.
fn interface_holding(ip: IpAddr) -> Option<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocated into `head`, freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it names; the
        // casts below read the struct of that family only.
        let addr = unsafe {
            match (*ifa.ifa_addr).sa_family as i32 {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        if addr == ip {
            // SAFETY: ifa_name is a NUL-terminated string that lives as long as the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once, after its last use.
    unsafe { libc::freeifaddrs(head) };
    found
}
