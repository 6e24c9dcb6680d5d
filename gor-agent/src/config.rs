//! The agent's settings, composed from the stages that declare them. Each stage owns its
//! settings in its own module: a clap `Args` struct (every flag with its `GOR_*`
//! environment twin, default and doc line), a typed config, and a pure `validate` that
//! reports every invalid value into the shared collector ([`crate::settings`]):
//!
//! | settings | declared in |
//! | --- | --- |
//! | ports, interfaces, ring buffer, pcap input | [`crate::capture::settings`] |
//! | reassembly limits | [`crate::reassembly::settings`] |
//! | HTTP framing limits | [`crate::http::settings`] |
//! | mirroring (targets, rate, timeouts, workers, queues, headers, TLS CA) | [`crate::mirror::settings`] |
//! | filters and rewrites | [`crate::filters::settings`] |
//! | middleware | [`crate::middleware::settings`] |
//! | outputs and the stats file | [`crate::output::settings`] |
//! | saved-traffic input of `gor-agent replay` | [`crate::gorfile::settings`] |
//! | logs, metrics endpoint, threads | [`crate::logging`] |
//! | the host's identity in message ids | [`crate::envelope`] |
//! | NATS JetStream: the listener's publishing, the replay server's consuming | [`crate::broker::settings`] |
//! | GoReplay's TCP protocol: `--output-tcp`, `--input-tcp` | [`crate::goreplay_tcp::settings`] |
//!
//! This module only composes them: the command line ([`Cli`], its commands) and the
//! [`Config`] that the pipeline reads. Settings are checked in two steps, each reporting
//! every error it finds at once, with the setting's name, the value and what is accepted:
//! [`Cli::validate`] reads the values without touching the host, then [`resolve`] asks
//! the host what only it can tell (the interfaces exist, the pcap and saved-traffic files
//! can be read, the CA file parses, the middleware program can be run). `resolve` needs
//! a configuration whose values all validated, so the host's answers come once the
//! values are right. `main` exits with 64 (EX_USAGE) on either, before anything touches
//! the kernel; `gor-agent check` runs the same steps, with a missing interface left to
//! its own findings.
//!
//! A new stage declares its `Args` and `validate` in its own module and is flattened
//! into [`SharedArgs`] (or [`CaptureArgs`]) and assembled in [`Cli::validate`]; stage
//! modules never import this one, so the configuration is free of import cycles.

mod probe;

use clap::{Args, Parser, Subcommand};

pub use crate::capture::settings::{parse_interface_names, parse_ports, CaptureSource};
pub use crate::envelope::IdentityArgs;
pub use crate::filters::settings::FilterArgs;
pub use crate::gorfile::settings::{parse_speed, FileInputConfig, InputFileArgs};
pub use crate::logging::{LogArgs, LogConfig};
pub use crate::middleware::settings::MiddlewareArgs;
pub use crate::mirror::settings::{
    parse_rate, parse_set_headers, parse_targets, MirrorArgs, MirrorConfig,
};
pub use crate::output::settings::{OutputArgs, OutputConfig};
pub use crate::settings::{parse_duration, parse_size, ConfigError};
pub use probe::{parse_interfaces, resolve, Interfaces};

use crate::settings::Problems;

/// Exit code for invalid configuration (sysexits.h EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "gor-agent",
    version,
    about = "Mirror production HTTP traffic to staging, captured with eBPF"
)]
pub struct Cli {
    /// Without a command the agent captures live traffic (or reads `--input-pcap`).
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// What to capture, and the bounds of capture: the byte source, reassembly and framing.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub source: crate::capture::settings::SourceArgs,
    #[command(flatten)]
    pub reassembly: crate::reassembly::settings::ReassemblyArgs,
    #[command(flatten)]
    pub pcap: crate::capture::settings::PcapArgs,
    #[command(flatten)]
    pub http: crate::http::settings::HttpArgs,
    /// GoReplay's TCP protocol instead of capture (a replay server).
    #[command(flatten)]
    pub tcp_input: crate::goreplay_tcp::settings::TcpInputArgs,
}

/// What happens to messages after they are framed, the same for capture and `replay`.
#[derive(Debug, Args)]
pub struct SharedArgs {
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    #[command(flatten)]
    pub compare: crate::compare::settings::CompareArgs,
    #[command(flatten)]
    pub middleware: MiddlewareArgs,
    #[command(flatten)]
    pub logging: LogArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub nats: crate::broker::NatsArgs,
    #[command(flatten)]
    pub tcp_output: crate::goreplay_tcp::settings::TcpOutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay saved traffic (GoReplay's `.gor` format, plain or gzip) to `GOR_TARGET`, with
    /// the original pacing, through the same rate limit, filters, middleware and outputs as
    /// live capture. Needs no privileges.
    Replay(FileReplayCli),
    /// Preflight: check, one line each, what live capture needs on this host with these
    /// settings (kernel, BTF, ring buffer, capabilities, interfaces, other TC programs,
    /// staging). Exit 0 when nothing fails, 1 when something does, 64 on invalid settings.
    Check(Box<CheckCli>),
    /// Report on diffs files (`GOR_OUTPUT_DIFFS`): how staging's responses differed.
    ///
    /// Reads the files that comparing staging's responses with production's wrote: totals,
    /// the endpoints that differ and how, examples side by side, latency. A short summary
    /// on stdout, or with `--html` one self-contained page. Needs no privileges and reads
    /// no other setting. Exit 0, 64 when a file cannot be read, 1 when the output cannot be
    /// written.
    Report(ReportCli),
    /// Consume what listeners (agents with GOR_NATS_URL) published to NATS JetStream and
    /// mirror it to GOR_TARGET: filters, rewrites, middleware, comparison, per-connection
    /// order, and GOR_RATE as one rate for every replay server together. Replay servers
    /// share the stream's partitions; each partition is consumed by one at a time. Needs
    /// no privileges.
    ReplayServer(ReplayServerCli),
}

/// The settings of `gor-agent replay-server`: NATS (in the shared settings), and the same
/// mirroring, filter, middleware, comparison, output and log settings as the agent.
#[derive(Debug, Args)]
pub struct ReplayServerCli {
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// The arguments of `gor-agent report`: only files, no `GOR_*` settings (it runs no
/// pipeline).
#[derive(Debug, Args)]
pub struct ReportCli {
    /// Diffs files (JSON lines); several are read as one report, their summaries added up.
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<std::path::PathBuf>,
    /// Write the report as one self-contained HTML page to this file, instead of the text
    /// summary on stdout.
    #[arg(long, env = "GOR_REPORT_HTML")]
    pub html: Option<std::path::PathBuf>,
}

/// The settings of `gor-agent check`: the same capture and shared settings as the live
/// agent, read from the same `GOR_*` variables.
#[derive(Debug, Args)]
pub struct CheckCli {
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// The settings of `gor-agent replay`: where to read, how fast, and the same output,
/// mirroring, filter, middleware and log settings as the live agent.
#[derive(Debug, Args)]
pub struct FileReplayCli {
    #[command(flatten)]
    pub input: InputFileArgs,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub capture: CaptureConfig,
    pub outputs: OutputConfig,
    pub mirror: MirrorConfig,
    /// HTTP filters and rewrites, in the order given per kind.
    pub filters: Vec<crate::filters::Rule>,
    /// Production against staging, if on.
    pub compare: Option<crate::compare::CompareConfig>,
    /// The middleware program, if any.
    pub middleware: Option<crate::middleware::MiddlewareConfig>,
    /// Set for `gor-agent replay`: traffic comes from saved files instead of capture.
    pub input_file: Option<FileInputConfig>,
    pub log: LogConfig,
    /// This host's identity in message ids (`GOR_AGENT_ID`); `None`: the machine id.
    pub agent_id: Option<String>,
    /// NATS JetStream (`GOR_NATS_URL`): the agent publishes to it (a listener), `gor-agent
    /// replay-server` consumes from it.
    pub nats: Option<crate::broker::NatsConfig>,
    /// Set for `gor-agent replay-server`: traffic comes from NATS instead of capture.
    pub replay_server: bool,
    /// `--output-tcp`: messages go to a replay server in GoReplay's TCP protocol.
    pub tcp_output: Option<crate::goreplay_tcp::settings::TcpOutputConfig>,
    /// `--input-tcp`: traffic comes from GoReplay's TCP protocol instead of capture.
    pub tcp_input: Option<crate::goreplay_tcp::settings::TcpInputConfig>,
}

/// The capture stage's settings with the bounds of the stages right behind it.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub ports: Vec<u16>,
    /// Empty: every interface that is up.
    pub interfaces: Vec<String>,
    pub ring_bytes: u32,
    /// What the kernel copies of each server packet (`GOR_RESPONSE_SNAP`), 0: all of it;
    /// always 0 when something needs whole responses ([`Config::needs_responses`]).
    pub response_snap: u32,
    pub reassembly: crate::reassembly::Limits,
    /// Read this capture file instead of attaching to interfaces.
    pub input_pcap: Option<std::path::PathBuf>,
    pub http: crate::http::Limits,
    /// HTTPS plaintext from OpenSSL (`GOR_TLS=openssl`).
    pub tls: Option<crate::capture::settings::TlsCapture>,
}

impl Config {
    /// Whether a stage takes production's responses (or whole streams): the comparison,
    /// tracked responses (files, stdout records, middleware, NATS, TCP output), the
    /// messages file, the stream outputs. Otherwise responses are only framed, and the
    /// kernel copies only their heads (`GOR_RESPONSE_SNAP`).
    pub fn needs_responses(&self) -> bool {
        let o = &self.outputs;
        self.compare.is_some()
            || o.track_responses
            || o.gor_file.as_ref().is_some_and(|f| f.track_responses)
            || o.messages_file.is_some()
            || o.stdout
            || o.streams_dir.is_some()
    }
}

impl CaptureConfig {
    /// The ports the TC programs capture: those that are not TLS ports.
    pub fn tc_ports(&self) -> Vec<u16> {
        let tls = self.tls.as_ref().map(|t| t.ports.as_slice()).unwrap_or(&[]);
        self.ports
            .iter()
            .copied()
            .filter(|p| !tls.contains(p))
            .collect()
    }
}

impl Cli {
    /// Validates every setting of the command given, without asking the host anything;
    /// all errors at once. [`Cli::resolve`] is the step after.
    pub fn validate(&self) -> Result<Config, Vec<ConfigError>> {
        match &self.command {
            None => validate(&self.capture, &self.shared, None, false),
            // Capture settings do not apply to replaying a file; their defaults are used.
            Some(Command::Replay(r)) => validate(&self.capture, &r.shared, Some(&r.input), false),
            Some(Command::Check(k)) => validate(&k.capture, &k.shared, None, false),
            // Nor to consuming a stream.
            Some(Command::ReplayServer(r)) => validate(&self.capture, &r.shared, None, true),
            // `report` has no agent configuration to validate; `main` runs it before this
            // step (see [`Cli::report`]). Saying so beats validating settings it ignores.
            Some(Command::Report(_)) => Err(vec![ConfigError {
                setting: "command",
                value: "report".into(),
                expected: "a command that runs the agent (none, `replay` or `check`); \
                           `report` reads diffs files and has no agent settings"
                    .into(),
            }]),
        }
    }

    /// `gor-agent report`: read diffs files instead of running the agent. It needs none
    /// of the agent's settings, so `main` runs it before [`Cli::validate`].
    pub fn report(&self) -> Option<&ReportCli> {
        match &self.command {
            Some(Command::Report(r)) => Some(r),
            _ => None,
        }
    }

    /// [`resolve`]s a configuration that [`Cli::validate`] returned, as this command
    /// needs: `check` reports a missing interface as one of its findings (a FAIL line),
    /// not as a usage error.
    pub fn resolve(&self, cfg: Config) -> Result<Config, Vec<ConfigError>> {
        let interfaces = if self.is_check() {
            Interfaces::Named
        } else {
            Interfaces::MustExist
        };
        resolve(cfg, interfaces)
    }

    /// `gor-agent check`: report on the host instead of running.
    pub fn is_check(&self) -> bool {
        matches!(self.command, Some(Command::Check(_)))
    }
}

/// Validates one command's settings; `input` is set for `replay`, `replay_server` for
/// `replay-server`: neither captures, so neither needs ports.
fn validate(
    a: &CaptureArgs,
    g: &SharedArgs,
    input: Option<&InputFileArgs>,
    replay_server: bool,
) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();
    let tcp_input = a.tcp_input.validate(&mut p).flatten();
    let source = a.source.validate(
        &a.pcap,
        &mut p,
        input.is_none() && !replay_server && a.tcp_input.input_tcp.is_none(),
    );
    let reassembly = a.reassembly.validate(&mut p);
    let http = a.http.validate(&mut p);
    let mirror = g.mirror.validate(&mut p);
    let filters = g.filters.validate(&mut p);
    let middleware = g.middleware.validate(&mut p);
    let mirroring = g
        .mirror
        .target
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty());
    let compare = g.compare.validate(&mut p, mirroring);
    if g.outputs.track_staging_responses && !mirroring {
        p.of::<OutputArgs>().field::<()>(
            "track_staging_responses",
            "true",
            Err("staging's responses come from mirroring: set GOR_TARGET".into()),
        );
    }
    let input_file = input.map(|i| i.validate(&mut p));
    let outputs = g.outputs.validate(&mut p);
    let log = g.logging.validate(&mut p);
    let nats = g.nats.validate(&mut p);
    let tcp_output = g.tcp_output.validate(&mut p);
    if tcp_input.is_some() {
        use crate::goreplay_tcp::settings::TcpInputArgs;
        let other = if input.is_some() {
            Some("`gor-agent replay` reads files")
        } else if replay_server {
            Some("`gor-agent replay-server` reads NATS")
        } else if a.pcap.input_pcap.is_some() {
            Some("GOR_INPUT_PCAP reads a capture file")
        } else {
            None
        };
        if let Some(other) = other {
            p.of::<TcpInputArgs>().field::<()>(
                "input_tcp",
                a.tcp_input.input_tcp.as_deref().unwrap_or_default(),
                Err(format!("one input at a time: {other}")),
            );
        }
    }
    if replay_server {
        use crate::broker::NatsArgs;
        if !g.nats.enabled() {
            p.of::<NatsArgs>().field::<()>(
                "nats_url",
                "",
                Err(
                    "the NATS server the listeners publish to (`nats://host:4222`): \
                     the replay server consumes from it"
                        .into(),
                ),
            );
        }
        if !mirroring {
            p.of::<MirrorArgs>().field::<()>(
                "target",
                "",
                Err("staging's address: the replay server mirrors to it".into()),
            );
        }
    }
    p.finish()?;
    // No error was reported, so every stage returned its config.
    const MISSING: &str = "validation reported no error but a value is missing";
    let source = source.expect(MISSING);
    let mut cfg = Config {
        capture: CaptureConfig {
            ports: source.ports,
            interfaces: source.interfaces,
            ring_bytes: source.ring_bytes,
            response_snap: source.response_snap,
            reassembly: reassembly.expect(MISSING),
            input_pcap: source.input_pcap,
            http: http.expect(MISSING),
            tls: source.tls,
        },
        outputs: outputs.expect(MISSING),
        mirror: mirror.expect(MISSING),
        filters: filters.expect(MISSING),
        compare: compare.expect(MISSING),
        middleware: middleware.expect(MISSING),
        input_file: input_file.map(|i| i.expect(MISSING)),
        log: log.expect(MISSING),
        agent_id: g.identity.agent_id(),
        nats: nats.expect(MISSING),
        replay_server,
        tcp_output: tcp_output.expect(MISSING),
        tcp_input,
    };
    if cfg.needs_responses() {
        cfg.capture.response_snap = 0;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("gor-agent").chain(args.iter().copied())).unwrap()
    }

    /// What `main` does: validation, then the resolve step.
    fn checked(args: &[&str]) -> Result<Config, Vec<ConfigError>> {
        let cli = cli(args);
        cli.validate().and_then(|cfg| cli.resolve(cfg))
    }

    #[test]
    fn report_parses_without_agent_settings() {
        let c = cli(&["report", "a.jsonl", "b.jsonl", "--html", "r.html"]);
        let r = c.report().expect("the report command");
        assert_eq!(
            r.files,
            ["a.jsonl", "b.jsonl"].map(std::path::PathBuf::from)
        );
        assert_eq!(r.html.as_deref(), Some(std::path::Path::new("r.html")));
        // No file: a usage error from clap.
        assert!(Cli::try_parse_from(["gor-agent", "report"]).is_err());
        // It is not validated as an agent configuration.
        let errs = c.validate().unwrap_err();
        assert_eq!(errs[0].setting, "command");
        assert!(cli(&["check"]).report().is_none());
    }

    #[test]
    fn valid_settings_parse() {
        let c = cli(&[
            "--ports",
            "8080, 80,80",
            "--interfaces",
            "lo",
            "--idle-timeout",
            "5m",
        ])
        .validate()
        .unwrap();
        assert_eq!(c.capture.ports, vec![80, 8080]);
        assert_eq!(c.capture.interfaces, vec!["lo"]);
        assert_eq!(c.capture.reassembly.idle_timeout_ns, 300_000_000_000);
        assert_eq!(c.capture.ring_bytes, 16 << 20);
    }

    #[test]
    fn tls_ports_are_all_ports_or_the_ones_named_and_only_with_openssl() {
        let c = cli(&["--ports", "80,443", "--tls", "openssl"])
            .validate()
            .unwrap();
        let tls = c.capture.tls.as_ref().unwrap();
        assert_eq!(tls.ports, [80, 443]);
        assert_eq!(tls.ring_bytes, 8 << 20);
        assert!(c.capture.tc_ports().is_empty());
        let c = cli(&[
            "--ports",
            "80,443",
            "--tls",
            "openssl",
            "--tls-ports",
            "443",
        ])
        .validate()
        .unwrap();
        assert_eq!(c.capture.tls.as_ref().unwrap().ports, [443]);
        assert_eq!(c.capture.tc_ports(), [80]);
        assert!(cli(&["--ports", "80"])
            .validate()
            .unwrap()
            .capture
            .tls
            .is_none());
        let setting = |args: &[&str]| -> Vec<&'static str> {
            cli(args)
                .validate()
                .unwrap_err()
                .iter()
                .map(|e| e.setting)
                .collect()
        };
        assert_eq!(setting(&["--ports", "443", "--tls", "gnutls"]), ["GOR_TLS"]);
        assert_eq!(
            setting(&["--ports", "443", "--tls-ports", "443"]),
            ["GOR_TLS_PORTS"]
        );
        assert_eq!(
            setting(&["--ports", "80", "--tls", "openssl", "--tls-ports", "443"]),
            ["GOR_TLS_PORTS"]
        );
        assert_eq!(
            setting(&[
                "--ports",
                "443",
                "--tls",
                "openssl",
                "--tls-ring-buffer",
                "3MiB"
            ]),
            ["GOR_TLS_RING_BUFFER"]
        );
        assert_eq!(
            setting(&[
                "--ports",
                "443",
                "--tls",
                "openssl",
                "--input-pcap",
                "x.pcap"
            ]),
            ["GOR_TLS"]
        );
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let errs = checked(&[
            "--ports",
            "80,http",
            "--interfaces",
            "lo,nosuchif0",
            "--ring-buffer",
            "3MiB",
            "--hole-timeout",
            "soon",
        ])
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        // A missing interface is the host's answer: asked once every value is well formed.
        assert_eq!(
            names,
            vec!["GOR_PORTS", "GOR_RING_BUFFER", "GOR_HOLE_TIMEOUT"]
        );
        assert!(
            errs[0].to_string().contains("`http` is not a port"),
            "{}",
            errs[0]
        );
        let errs = checked(&["--ports", "80", "--interfaces", "lo,nosuchif0"]).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_INTERFACES"]);
        assert!(errs[0].to_string().contains("nosuchif0"), "{}", errs[0]);
    }

    #[test]
    fn validation_asks_the_host_nothing_and_resolve_asks_it_everything_at_once() {
        let args = [
            "--ports",
            "80",
            "--interfaces",
            "nosuchif0",
            "--input-pcap",
            "/nonexistent/x.pcap",
            "--tls-ca",
            "/nonexistent/ca.pem",
            "--middleware",
            "/nonexistent/mw --flag 'a b'",
        ];
        let c = cli(&args).validate().expect("well-formed values");
        assert!(c.mirror.tls_ca.is_empty(), "read only when resolved");
        let errs = checked(&args).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            [
                "GOR_INTERFACES",
                "GOR_INPUT_PCAP",
                "GOR_TLS_CA",
                "GOR_MIDDLEWARE"
            ]
        );
        // Named with the value as given.
        assert_eq!(errs[3].value, "/nonexistent/mw --flag 'a b'");
    }

    #[test]
    fn comparison_settings_need_what_they_compare() {
        let errs = cli(&[
            "--ports",
            "80",
            "--compare",
            "--output-diffs",
            "/tmp/d.jsonl",
            "--output-http-track-response",
        ])
        .validate()
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_COMPARE", "GOR_TRACK_STAGING_RESPONSES"]);
        assert!(errs[0].to_string().contains("GOR_TARGET"), "{}", errs[0]);
        let errs = cli(&["--ports", "80", "--output-diffs", "/tmp/d.jsonl"])
            .validate()
            .unwrap_err();
        assert_eq!(errs[0].setting, "GOR_OUTPUT_DIFFS");
        assert!(errs[0].to_string().contains("GOR_COMPARE=1"), "{}", errs[0]);
        let errs = cli(&[
            "--ports",
            "80",
            "--target",
            "http://s:1",
            "--compare",
            "--compare-ignore-json",
            "$.a[",
        ])
        .validate()
        .unwrap_err();
        assert_eq!(errs[0].setting, "GOR_COMPARE_IGNORE_JSON");
        let c = cli(&[
            "--ports",
            "80",
            "--target",
            "http://s:1",
            "--compare",
            "--compare-ignore-headers",
            "default,X-Trace",
            "--staging-response-max-body",
            "2MiB",
        ])
        .validate()
        .unwrap();
        let compare = c.compare.expect("on");
        assert!(compare.rules.ignore_headers.contains("x-trace"));
        assert!(compare.rules.ignore_headers.contains("date"));
        assert_eq!(compare.timeout, Duration::from_secs(30));
        assert_eq!(c.mirror.result_body_limit, 2 << 20);
        assert!(cli(&["--ports", "80"])
            .validate()
            .unwrap()
            .compare
            .is_none());
    }

    #[test]
    fn ports_are_required() {
        let errs = cli(&[]).validate().unwrap_err();
        assert_eq!(errs[0].setting, "GOR_PORTS");
    }

    #[test]
    fn mirror_settings() {
        let c = cli(&[
            "--ports",
            "80",
            "--target",
            "http://127.0.0.1:9000/base",
            "--rate",
            "10%",
            "--set-header",
            "X-Mirrored: 1; X-Env: staging",
        ])
        .validate()
        .unwrap();
        assert_eq!(c.mirror.targets.len(), 1);
        assert!(matches!(c.mirror.rate, crate::mirror::Rate::Percent(p) if p == 10.0));
        assert_eq!(
            c.mirror.set_headers,
            vec![
                ("X-Mirrored".into(), "1".into()),
                ("X-Env".into(), "staging".into())
            ]
        );
        let errs = cli(&[
            "--ports",
            "80",
            "--target",
            "ftp://x",
            "--rate",
            "fast",
            "--set-header",
            "bad header",
            "--workers",
            "0",
            "--pipeline",
            "none",
        ])
        .validate()
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            vec![
                "GOR_TARGET",
                "GOR_RATE",
                "GOR_WORKERS",
                "GOR_PIPELINE",
                "GOR_SET_HEADER"
            ]
        );
    }

    #[test]
    fn tls_ca_setting() {
        let dir = std::env::temp_dir().join(format!("gor-config-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ck.cert.pem()).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let with = |ca: &std::path::Path| {
            checked(&[
                "--ports",
                "80",
                "--target",
                "https://localhost:8443",
                "--tls-ca",
                ca.to_str().unwrap(),
            ])
        };
        let c = with(&good).unwrap();
        assert_eq!(c.mirror.tls_ca, vec![ck.cert.der().clone()]);
        assert!(c.mirror.targets[0].tls);
        for ca in [&empty, &bad, &dir.join("missing.pem")] {
            let errs = with(ca).unwrap_err();
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].setting, "GOR_TLS_CA");
            assert!(errs[0].to_string().contains("PEM"), "{}", errs[0]);
        }
        assert!(checked(&["--ports", "80"])
            .unwrap()
            .mirror
            .tls_ca
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert!(parse_size("-1").is_err());
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("65536").is_err());
        assert!(parse_ports("").is_err());
    }

    #[test]
    fn replay_command() {
        let dir = std::env::temp_dir().join(format!("gor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.gor");
        std::fs::write(&file, b"").unwrap();
        let path = file.to_str().unwrap();
        let c = checked(&["replay", "--input-file", path, "--speed", "200%", "--loop"]).unwrap();
        let input = c.input_file.unwrap();
        assert_eq!((input.inputs[0].speed, input.looping), (2.0, true));
        assert!(c.capture.ports.is_empty(), "no ports needed to replay");
        // GoReplay's `FILE|SPEED` form.
        let piped = format!("{path}|50%");
        let c = checked(&["replay", "--input-file", &piped]).unwrap();
        assert_eq!(c.input_file.unwrap().inputs[0].speed, 0.5);
        let errs = checked(&[
            "replay",
            "--input-file",
            "/nonexistent/*.gor",
            "--speed",
            "fast",
            "--max-wait",
            "x",
        ])
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        // Whether the files can be read is asked once the values are well formed.
        assert_eq!(names, ["GOR_SPEED", "GOR_INPUT_FILE_MAX_WAIT"]);
        let errs = checked(&["replay", "--input-file", "/nonexistent/*.gor"]).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_INPUT_FILE"]);
        let errs = cli(&["replay"]).validate().unwrap_err();
        assert_eq!(errs[0].setting, "GOR_INPUT_FILE");
        // Several inputs, each with its own speed (or `--speed`'s), and a dry run.
        let other = format!("{path}|200%");
        let c = checked(&[
            "replay",
            "--input-file",
            path,
            "--input-file",
            &other,
            "--speed",
            "50%",
            "--dry-run",
        ])
        .unwrap();
        let input = c.input_file.unwrap();
        let speeds: Vec<f64> = input.inputs.iter().map(|i| i.speed).collect();
        assert_eq!(speeds, [0.5, 2.0]);
        assert!(input.dry_run);
        let bad = format!("{path}|fast");
        let errs = cli(&["replay", "--input-file", path, "--input-file", &bad])
            .validate()
            .unwrap_err();
        assert_eq!(errs[0].setting, "GOR_INPUT_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_command_takes_the_agents_settings_but_not_its_interface_existence_test() {
        let c = checked(&["check", "--ports", "80", "--interfaces", "lo,nosuchif0"]).unwrap();
        assert_eq!(c.capture.interfaces, vec!["lo", "nosuchif0"]);
        assert!(cli(&["check", "--ports", "80"]).is_check());
        assert!(!cli(&["--ports", "80"]).is_check());
        let errs =
            checked(&["check", "--interfaces", "lo,,eth0", "--ring-buffer", "3MiB"]).unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_PORTS", "GOR_INTERFACES", "GOR_RING_BUFFER"]);
    }

    #[test]
    fn every_flag_has_a_gor_environment_twin() {
        use clap::CommandFactory;
        let mut cmds = vec![Cli::command()];
        while let Some(cmd) = cmds.pop() {
            for arg in cmd.get_arguments().filter(|a| a.get_long().is_some()) {
                let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
                assert!(
                    env.starts_with("GOR_"),
                    "--{:?} has no GOR_ twin",
                    arg.get_id()
                );
            }
            cmds.extend(cmd.get_subcommands().cloned());
        }
    }

    #[test]
    fn filter_errors_are_named_by_the_flag_that_has_them() {
        let errs = cli(&[
            "--ports",
            "80",
            "--http-allow-url",
            "([unclosed",
            "--http-header-limiter",
            "X-Session: 150%",
        ])
        .validate()
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_HTTP_ALLOW_URL", "GOR_HTTP_HEADER_LIMITER"]);
        assert!(
            errs[0].to_string().contains("--http-allow-url"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("200%"), Ok(2.0));
        assert_eq!(parse_speed("2x"), Ok(2.0));
        assert_eq!(parse_speed(" 25 %"), Ok(0.25));
        assert_eq!(parse_speed("max"), Ok(f64::INFINITY));
        for bad in ["0%", "-1x", "fast", "", "NaNx", "200"] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
    }
}
