//! Every setting of the agent, in one place: the flag, its `GOR_*` environment twin, its
//! default and its doc line (clap derive), then one validation pass that reports every
//! invalid value at once, with the setting's name, the value and what is accepted.
//! `main` exits with 64 (EX_USAGE) on any of them, before anything touches the kernel.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::reassembly;

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

/// What happens to messages after they are framed, the same for capture and `replay`.
#[derive(Debug, Args)]
pub struct SharedArgs {
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    #[command(flatten)]
    pub middleware: MiddlewareArgs,
    #[command(flatten)]
    pub logging: LogArgs,
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
    Check(CheckCli),
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

/// Reading saved traffic.
#[derive(Debug, Args)]
pub struct InputFileArgs {
    /// Files to replay: a path or a pattern with `*`/`?` in the file name, e.g.
    /// `/var/lib/gor/requests-*.gor.gz`; records of all files are merged in timestamp
    /// order. GoReplay's `FILE|200%` form sets the speed too.
    #[arg(long, env = "GOR_INPUT_FILE", value_name = "PATTERN")]
    pub input_file: Option<String>,
    /// Replay speed relative to the recording: `100%` keeps the original pacing, `200%`
    /// halves every gap, `50%` doubles it. `max`: no pacing, as fast as staging takes
    /// the requests (the replay waits for staging instead of dropping).
    #[arg(long, env = "GOR_SPEED", default_value = "100%")]
    pub speed: String,
    /// Start again from the first record after the last one, until stopped.
    #[arg(long = "loop", alias = "input-file-loop", env = "GOR_INPUT_FILE_LOOP", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub looping: bool,
    /// Longest wait between two records (longer gaps in the recording are shortened to
    /// this), e.g. `1s`. Empty: gaps are kept as recorded (scaled by the speed).
    #[arg(
        long,
        alias = "input-file-max-wait",
        env = "GOR_INPUT_FILE_MAX_WAIT",
        default_value = ""
    )]
    pub max_wait: String,
}

/// A GoReplay-compatible middleware program between framing and the outputs.
#[derive(Debug, Args)]
pub struct MiddlewareArgs {
    /// Program and arguments (run directly, no shell) that receives every message as a
    /// hex line on stdin and writes back, as hex lines, the messages that continue.
    #[arg(long, env = "GOR_MIDDLEWARE", value_name = "CMD ARGS")]
    pub middleware: Option<String>,
    /// Messages waiting for the middleware at most; beyond that they are dropped and counted.
    #[arg(long, env = "GOR_MIDDLEWARE_QUEUE", default_value = "1000")]
    pub middleware_queue: String,
}

/// What to capture, and the bounds of capture.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// TCP ports to capture, comma-separated (required), e.g. `80,8080`.
    #[arg(long, env = "GOR_PORTS", value_name = "PORTS")]
    pub ports: Option<String>,
    /// Interfaces to watch, comma-separated. Default: every interface that is up, `lo` included.
    #[arg(long, env = "GOR_INTERFACES", value_name = "IFACES")]
    pub interfaces: Option<String>,
    /// Size of the kernel ring buffer (power of two, at least one page), e.g. `32MiB`.
    #[arg(long, env = "GOR_RING_BUFFER", default_value = "32MiB")]
    pub ring_buffer: String,
    /// Connections tracked at once; the least recently active is evicted beyond that.
    #[arg(long, env = "GOR_MAX_CONNECTIONS", default_value = "100000")]
    pub max_connections: String,
    /// Out-of-order bytes held per connection direction before a hole is given up.
    #[arg(long, env = "GOR_CONN_BUFFER", default_value = "4MiB")]
    pub conn_buffer: String,
    /// Out-of-order bytes held for all connections together.
    #[arg(long, env = "GOR_TOTAL_BUFFER", default_value = "256MiB")]
    pub total_buffer: String,
    /// A connection with no packet for this long is ended.
    #[arg(long, env = "GOR_IDLE_TIMEOUT", default_value = "120s")]
    pub idle_timeout: String,
    /// A hole in a stream with later bytes waiting behind it is reported lost after this long.
    #[arg(long, env = "GOR_HOLE_TIMEOUT", default_value = "2s")]
    pub hole_timeout: String,
    /// Read packets from this pcap or pcapng file instead of capturing live (no root needed).
    #[arg(long, env = "GOR_INPUT_PCAP", value_name = "FILE")]
    pub input_pcap: Option<PathBuf>,
    /// Largest HTTP head (start line and headers); a larger message is counted, not emitted.
    #[arg(long, env = "GOR_HTTP_MAX_HEAD", default_value = "64KiB")]
    pub http_max_head: String,
    /// Largest HTTP body; a larger message is counted, not emitted, and the connection goes on.
    #[arg(long, env = "GOR_HTTP_MAX_BODY", default_value = "16MiB")]
    pub http_max_body: String,
}

/// Where captured traffic goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print each connection's bytes as they become ordered (for watching what is captured).
    #[arg(long, env = "GOR_OUTPUT_STDOUT", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_stdout: bool,
    /// Write each connection's two byte streams to files in this directory
    /// (`<id>.c2s`, `<id>.s2c`, and `connections.jsonl` with one line per closed connection).
    #[arg(long, env = "GOR_OUTPUT_STREAMS", value_name = "DIR")]
    pub output_streams: Option<PathBuf>,
    /// Write every framed HTTP message as a JSON line (with its raw bytes in base64) to this file.
    #[arg(long, env = "GOR_OUTPUT_MESSAGES", value_name = "FILE")]
    pub output_messages: Option<PathBuf>,
    /// Save traffic to this file in GoReplay's format (`.gz`: compressed; `%Y-%m-%d-%H`
    /// and the like: one file per period, UTC). Files are created with mode 0600.
    #[arg(long, env = "GOR_OUTPUT_FILE", value_name = "PATTERN")]
    pub output_file: Option<String>,
    /// Start a new file (`name_1.gor`, ...) before one would grow past this size.
    #[arg(long, env = "GOR_OUTPUT_FILE_SIZE_LIMIT", default_value = "256MiB")]
    pub output_file_size_limit: String,
    /// Also save the original responses (type 2) in the output file.
    #[arg(long, env = "GOR_TRACK_RESPONSES", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub track_responses: bool,
    /// Write the counters as JSON to this file every stats interval and at exit.
    #[arg(long, env = "GOR_STATS_FILE", value_name = "FILE")]
    pub stats_file: Option<PathBuf>,
    /// How often counters are logged (and written to the stats file).
    #[arg(long, env = "GOR_STATS_INTERVAL", default_value = "10s")]
    pub stats_interval: String,
}

/// Mirroring to staging.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Staging base URLs, comma-separated (`http://host:port[/base]` or `https://...`);
    /// every mirrored request goes to each. Empty: nothing is mirrored.
    #[arg(long, env = "GOR_TARGET", value_name = "URLS")]
    pub target: Option<String>,
    /// `100`: at most 100 requests/s per target (excess dropped and counted); `10%`: a
    /// random 10% of requests; empty: all.
    #[arg(long, env = "GOR_RATE", default_value = "")]
    pub rate: String,
    /// Time limit for each step with staging: connecting, sending, each response.
    #[arg(long, env = "GOR_TIMEOUT", default_value = "5s")]
    pub timeout: String,
    /// Staging connections per target at most (client connections mirrored concurrently).
    #[arg(long, env = "GOR_WORKERS", default_value = "64")]
    pub workers: String,
    /// Requests a staging connection may carry before their responses are read (HTTP/1.1
    /// pipelining of requests already waiting, idempotent ones only); 1: one at a time.
    #[arg(long, env = "GOR_PIPELINE", default_value = "16")]
    pub pipeline: String,
    /// Requests waiting per target at most; beyond that they are dropped and counted.
    #[arg(long, env = "GOR_QUEUE", default_value = "10000")]
    pub queue: String,
    /// Keep the client's Host header (by default Host becomes the target's host).
    #[arg(long, env = "GOR_ORIGINAL_HOST", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub original_host: bool,
    /// Headers to add or replace on mirrored requests, `Name: value`, separated by `;`.
    #[arg(long, env = "GOR_SET_HEADER", value_name = "HEADERS")]
    pub set_header: Option<String>,
    /// PEM file of CA certificates trusted for https targets, besides the system roots.
    #[arg(long, env = "GOR_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// On SIGINT/SIGTERM, how long in-flight mirrored requests may take to finish.
    #[arg(long, env = "GOR_SHUTDOWN_GRACE", default_value = "5s")]
    pub shutdown_grace: String,
}

/// HTTP filters and rewrites, named after GoReplay's flags. Each flag may be given
/// several times; its environment twin takes several values separated by newlines.
/// They apply to requests before any output (a filtered request's response is dropped too).
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Keep only requests whose target (path and query) matches one of these regexes.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_URL",
        value_name = "REGEX",
        value_delimiter = '\n'
    )]
    pub http_allow_url: Vec<String>,
    /// Drop requests whose target matches this regex.
    #[arg(
        long,
        env = "GOR_HTTP_DISALLOW_URL",
        value_name = "REGEX",
        value_delimiter = '\n'
    )]
    pub http_disallow_url: Vec<String>,
    /// Keep only requests with one of these methods.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_METHOD",
        value_name = "METHOD",
        value_delimiter = '\n'
    )]
    pub http_allow_method: Vec<String>,
    /// Keep only requests with a header matching `Name: regex`.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_HEADER",
        value_name = "NAME: REGEX",
        value_delimiter = '\n'
    )]
    pub http_allow_header: Vec<String>,
    /// Drop requests with a header matching `Name: regex`.
    #[arg(
        long,
        env = "GOR_HTTP_DISALLOW_HEADER",
        value_name = "NAME: REGEX",
        value_delimiter = '\n'
    )]
    pub http_disallow_header: Vec<String>,
    /// Keep a consistent share of requests by hashing a header value: `Name: 10%`.
    #[arg(
        long,
        env = "GOR_HTTP_HEADER_LIMITER",
        value_name = "NAME: N%",
        value_delimiter = '\n'
    )]
    pub http_header_limiter: Vec<String>,
    /// Keep a consistent share of requests by hashing a query parameter: `name: 10%`.
    #[arg(
        long,
        env = "GOR_HTTP_PARAM_LIMITER",
        value_name = "NAME: N%",
        value_delimiter = '\n'
    )]
    pub http_param_limiter: Vec<String>,
    /// Set a header on every request (all outputs): `Name: value`.
    #[arg(
        long,
        env = "GOR_HTTP_SET_HEADER",
        value_name = "NAME: VALUE",
        value_delimiter = '\n'
    )]
    pub http_set_header: Vec<String>,
    /// Rewrite the request target: `regex:replacement` (`$1` for groups).
    #[arg(
        long,
        env = "GOR_HTTP_REWRITE_URL",
        value_name = "REGEX:REPLACEMENT",
        value_delimiter = '\n'
    )]
    pub http_rewrite_url: Vec<String>,
    /// Rewrite a header's value: `Name: regex,replacement`.
    #[arg(
        long,
        env = "GOR_HTTP_REWRITE_HEADER",
        value_name = "NAME: REGEX,REPLACEMENT",
        value_delimiter = '\n'
    )]
    pub http_rewrite_header: Vec<String>,
}

impl FilterArgs {
    fn validate(&self, c: &mut Check) -> Option<Vec<crate::filters::Rule>> {
        let flags: [(&'static str, &'static str, &Vec<String>); 10] = [
            ("http-allow-url", "GOR_HTTP_ALLOW_URL", &self.http_allow_url),
            (
                "http-disallow-url",
                "GOR_HTTP_DISALLOW_URL",
                &self.http_disallow_url,
            ),
            (
                "http-allow-method",
                "GOR_HTTP_ALLOW_METHOD",
                &self.http_allow_method,
            ),
            (
                "http-allow-header",
                "GOR_HTTP_ALLOW_HEADER",
                &self.http_allow_header,
            ),
            (
                "http-disallow-header",
                "GOR_HTTP_DISALLOW_HEADER",
                &self.http_disallow_header,
            ),
            (
                "http-header-limiter",
                "GOR_HTTP_HEADER_LIMITER",
                &self.http_header_limiter,
            ),
            (
                "http-param-limiter",
                "GOR_HTTP_PARAM_LIMITER",
                &self.http_param_limiter,
            ),
            (
                "http-set-header",
                "GOR_HTTP_SET_HEADER",
                &self.http_set_header,
            ),
            (
                "http-rewrite-url",
                "GOR_HTTP_REWRITE_URL",
                &self.http_rewrite_url,
            ),
            (
                "http-rewrite-header",
                "GOR_HTTP_REWRITE_HEADER",
                &self.http_rewrite_header,
            ),
        ];
        let mut rules = Vec::new();
        let mut ok = true;
        for (flag, setting, values) in flags {
            for v in values.iter().filter(|v| !v.trim().is_empty()) {
                match c.field(setting, v, crate::filters::parse_rule(flag, v)) {
                    Some(rule) => rules.push(rule),
                    None => ok = false,
                }
            }
        }
        ok.then_some(rules)
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `gor_agent=debug`.
    #[arg(long, env = "GOR_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `plain` or `json`.
    #[arg(long, env = "GOR_LOG_FORMAT", default_value = "plain")]
    pub log_format: String,
    /// Where to serve Prometheus metrics (`GET /metrics`), e.g. `127.0.0.1:9091` or
    /// `[::1]:9091`; port 0 picks a free port (logged). Empty: no metrics endpoint.
    #[arg(long, env = "GOR_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    pub metrics_addr: String,
    /// Threads that run the agent's work (draining, framing, mirroring): at most this
    /// many cores. One keeps the agent off all but one of production's cores.
    #[arg(long, env = "GOR_THREADS", default_value = "1")]
    pub threads: String,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub capture: CaptureConfig,
    pub outputs: OutputConfig,
    pub mirror: MirrorConfig,
    /// HTTP filters and rewrites, in the order given per kind.
    pub filters: Vec<crate::filters::Rule>,
    /// The middleware program, if any.
    pub middleware: Option<crate::middleware::MiddlewareConfig>,
    /// Set for `gor-agent replay`: traffic comes from saved files instead of capture.
    pub input_file: Option<FileInputConfig>,
    pub log: LogConfig,
}

/// Replaying saved traffic.
#[derive(Debug, Clone)]
pub struct FileInputConfig {
    pub pattern: String,
    /// 2.0 replays twice as fast as recorded.
    pub speed: f64,
    pub looping: bool,
    /// Gaps between records are cut to this.
    pub max_wait: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub ports: Vec<u16>,
    /// Empty: every interface that is up.
    pub interfaces: Vec<String>,
    pub ring_bytes: u32,
    pub reassembly: reassembly::Limits,
    /// Read this capture file instead of attaching to interfaces.
    pub input_pcap: Option<PathBuf>,
    pub http: crate::http::Limits,
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub stdout: bool,
    pub streams_dir: Option<PathBuf>,
    pub messages_file: Option<PathBuf>,
    /// GoReplay-format traffic file.
    pub gor_file: Option<crate::gorfile::FileOutputConfig>,
    /// Original responses go to the saved-traffic file and to the middleware.
    pub track_responses: bool,
    pub stats_file: Option<PathBuf>,
    pub stats_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Empty: nothing is mirrored.
    pub targets: Vec<crate::replay::Target>,
    pub rate: crate::replay::Rate,
    pub timeout: Duration,
    pub workers: usize,
    pub pipeline: usize,
    pub queue: usize,
    pub original_host: bool,
    pub set_headers: Vec<(String, String)>,
    /// Extra CA certificates for https targets (`GOR_TLS_CA`).
    pub tls_ca: Vec<crate::replay::CaCert>,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
    /// The metrics endpoint's address, if any.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Worker threads of the runtime.
    pub threads: usize,
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is invalid: expected {}",
            self.setting, self.value, self.expected
        )
    }
}

/// Collects every error of one validation pass.
#[derive(Default)]
struct Check {
    errors: Vec<ConfigError>,
}

impl Check {
    /// Parses `value` with `parse`, recording the error under `setting`.
    fn parse<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.field(setting, value, parse(value))
    }

    fn field<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        parsed: Result<T, String>,
    ) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(expected) => {
                self.errors.push(ConfigError {
                    setting,
                    value: value.to_string(),
                    expected,
                });
                None
            }
        }
    }
}

impl Cli {
    /// Validates every setting of the command given; all errors at once.
    pub fn validate(&self) -> Result<Config, Vec<ConfigError>> {
        match &self.command {
            None => validate(&self.capture, &self.shared, Mode::Capture),
            // Capture settings do not apply to replaying a file; their defaults are used.
            Some(Command::Replay(r)) => validate(&self.capture, &r.shared, Mode::Replay(&r.input)),
            Some(Command::Check(k)) => validate(&k.capture, &k.shared, Mode::Check),
        }
    }

    /// `gor-agent check`: report on the host instead of running.
    pub fn is_check(&self) -> bool {
        matches!(self.command, Some(Command::Check(_)))
    }
}

/// Which command the settings are for.
enum Mode<'a> {
    /// Live capture (or a pcap file): the agent itself.
    Capture,
    /// `replay`: traffic from saved files, no capture.
    Replay(&'a InputFileArgs),
    /// `check`: the live agent's settings, except that an interface that does not exist
    /// is one of the findings (a FAIL line), not a usage error.
    Check,
}

/// Validates one command's settings.
fn validate(a: &CaptureArgs, g: &SharedArgs, mode: Mode) -> Result<Config, Vec<ConfigError>> {
    let mut c = Check::default();
    let ports = match &a.ports {
        None if matches!(mode, Mode::Replay(_)) => Some(Vec::new()),
        None => c.field(
            "GOR_PORTS",
            "",
            Err::<Vec<u16>, _>(
                "a comma-separated list of TCP ports (1-65535); it is required".into(),
            ),
        ),
        Some(p) => c.parse("GOR_PORTS", p, parse_ports),
    };
    let interfaces = match (&a.interfaces, &mode) {
        (None, _) => Some(Vec::new()),
        (Some(v), Mode::Check) => c.parse("GOR_INTERFACES", v, parse_interface_names),
        (Some(v), _) => c.parse("GOR_INTERFACES", v, parse_interfaces),
    };
    let ring = c.parse("GOR_RING_BUFFER", &a.ring_buffer, parse_ring_size);
    let max_conns = c.parse("GOR_MAX_CONNECTIONS", &a.max_connections, parse_count);
    let conn_buf = c.parse("GOR_CONN_BUFFER", &a.conn_buffer, parse_size);
    let total_buf = c.parse("GOR_TOTAL_BUFFER", &a.total_buffer, parse_size);
    let idle = c.parse("GOR_IDLE_TIMEOUT", &a.idle_timeout, parse_duration);
    let hole = c.parse("GOR_HOLE_TIMEOUT", &a.hole_timeout, parse_duration);
    let max_head = c.parse("GOR_HTTP_MAX_HEAD", &a.http_max_head, parse_size);
    let max_body = c.parse("GOR_HTTP_MAX_BODY", &a.http_max_body, parse_size);
    if let Some(p) = &a.input_pcap {
        if !p.is_file() {
            c.errors.push(ConfigError {
                setting: "GOR_INPUT_PCAP",
                value: p.display().to_string(),
                expected: "a readable pcap or pcapng file".into(),
            });
        }
    }
    let mirror = g.replay.validate(&mut c);
    let filters = g.filters.validate(&mut c);
    let middleware = g.middleware.validate(&mut c);
    let input_file = match mode {
        Mode::Replay(i) => i.validate(&mut c).map(Some),
        Mode::Capture | Mode::Check => Some(None),
    };
    let o = &g.outputs;
    let file_limit = c.parse(
        "GOR_OUTPUT_FILE_SIZE_LIMIT",
        &o.output_file_size_limit,
        parse_size,
    );
    let interval = c.parse("GOR_STATS_INTERVAL", &o.stats_interval, parse_duration);
    let metrics_addr = c.parse(
        "GOR_METRICS_ADDR",
        &g.logging.metrics_addr,
        parse_metrics_addr,
    );
    let threads = c.parse("GOR_THREADS", &g.logging.threads, |v| {
        match v.trim().parse() {
            Ok(n @ 1..=256) => Ok(n),
            _ => Err("a number of threads from 1 to 256".to_string()),
        }
    });
    let json = c.field(
        "GOR_LOG_FORMAT",
        &g.logging.log_format,
        match g.logging.log_format.as_str() {
            "plain" => Ok(false),
            "json" => Ok(true),
            _ => Err("`plain` or `json`".to_string()),
        },
    );
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&g.logging.log) {
        c.errors.push(ConfigError {
            setting: "GOR_LOG",
            value: g.logging.log.clone(),
            expected: format!("a tracing filter such as `info` or `gor_agent=debug` ({e})"),
        });
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    // Every field parsed, so every Option is Some.
    let (
        Some(ports),
        Some(interfaces),
        Some(ring_bytes),
        Some(max_connections),
        Some(max_conn_buffer),
        Some(max_total_buffer),
        Some(idle),
        Some(hole),
        Some(stats_interval),
        Some(json),
        Some(max_head),
        Some(max_body),
        Some(mirror),
        Some(filters),
        Some(middleware),
        Some(input_file),
        Some(metrics_addr),
        Some(threads),
    ) = (
        ports,
        interfaces,
        ring,
        max_conns,
        conn_buf,
        total_buf,
        idle,
        hole,
        interval,
        json,
        max_head,
        max_body,
        mirror,
        filters,
        middleware,
        input_file,
        metrics_addr,
        threads,
    )
    else {
        unreachable!("validation reported no error but a value is missing")
    };
    Ok(Config {
        capture: CaptureConfig {
            ports,
            interfaces,
            ring_bytes,
            reassembly: reassembly::Limits {
                max_conn_buffer,
                max_total_buffer,
                max_connections,
                idle_timeout_ns: idle.as_nanos() as u64,
                hole_timeout_ns: hole.as_nanos() as u64,
            },
            input_pcap: a.input_pcap.clone(),
            http: crate::http::Limits {
                max_head,
                max_body: max_body as u64,
            },
        },
        outputs: OutputConfig {
            stdout: o.output_stdout,
            streams_dir: o.output_streams.clone(),
            messages_file: o.output_messages.clone(),
            gor_file: o
                .output_file
                .clone()
                .map(|pattern| crate::gorfile::FileOutputConfig {
                    pattern,
                    max_size: file_limit.map(|n| n as u64),
                    track_responses: o.track_responses,
                }),
            track_responses: o.track_responses,
            stats_file: o.stats_file.clone(),
            stats_interval,
        },
        mirror,
        filters,
        middleware,
        input_file,
        log: LogConfig {
            filter: g.logging.log.clone(),
            json,
            metrics_addr,
            threads,
        },
    })
}

impl InputFileArgs {
    fn validate(&self, c: &mut Check) -> Option<FileInputConfig> {
        let (pattern, speed_suffix) = match self.input_file.as_deref().map(str::trim) {
            None | Some("") => {
                c.errors.push(ConfigError {
                    setting: "GOR_INPUT_FILE",
                    value: String::new(),
                    expected: "a file or pattern of saved traffic; it is required".into(),
                });
                return None;
            }
            // GoReplay's `requests.gor|200%`.
            Some(v) => match v.rsplit_once('|') {
                Some((p, speed)) => (p.trim(), Some(speed.trim())),
                None => (v, None),
            },
        };
        let speed_text = speed_suffix.unwrap_or(&self.speed);
        let speed = c.parse("GOR_SPEED", speed_text, parse_speed);
        let max_wait = match self.max_wait.trim() {
            "" => Some(None),
            v => c.field("GOR_INPUT_FILE_MAX_WAIT", v, parse_duration(v).map(Some)),
        };
        let readable = c.field(
            "GOR_INPUT_FILE",
            pattern,
            crate::gorfile::GorReader::open(pattern)
                .map(|_| ())
                .map_err(|e| format!("readable saved-traffic files ({e})")),
        );
        readable?;
        Some(FileInputConfig {
            pattern: pattern.to_string(),
            speed: speed?,
            looping: self.looping,
            max_wait: max_wait?,
        })
    }
}

impl MiddlewareArgs {
    fn validate(&self, c: &mut Check) -> Option<Option<crate::middleware::MiddlewareConfig>> {
        let queue = c.parse("GOR_MIDDLEWARE_QUEUE", &self.middleware_queue, parse_count);
        let command = match self.middleware.as_deref().map(str::trim) {
            None | Some("") => return queue.map(|_| None),
            Some(v) => c.field(
                "GOR_MIDDLEWARE",
                v,
                crate::middleware::parse_command(v).and_then(|(program, args)| {
                    crate::middleware::check_program(&program).map(|()| (program, args))
                }),
            ),
        };
        let (program, args) = command?;
        Some(Some(crate::middleware::MiddlewareConfig {
            queue: queue?,
            ..crate::middleware::MiddlewareConfig::new(program, args)
        }))
    }
}

/// `host:port` (an IP address: the endpoint must not depend on DNS), or empty for none.
fn parse_metrics_addr(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match s.trim() {
        "" => Ok(None),
        v => v.parse().map(Some).map_err(|_| {
            "an IP address and port such as `127.0.0.1:9091` or `[::1]:9091`, or empty for \
             no metrics"
                .to_string()
        }),
    }
}

/// `200%` (twice as fast as recorded), `50%`, `2x`, or `max` (infinite: no pacing).
pub fn parse_speed(s: &str) -> Result<f64, String> {
    const EXPECTED: &str =
        "a speed such as `100%` (as recorded), `200%` (twice as fast), `2x` or `max`";
    let s = s.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(f64::INFINITY);
    }
    let factor = if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().ok().map(|p| p / 100.0)
    } else if let Some(x) = s.strip_suffix('x') {
        x.trim().parse::<f64>().ok()
    } else {
        None
    };
    match factor {
        Some(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(EXPECTED.into()),
    }
}

impl ReplayArgs {
    fn validate(&self, c: &mut Check) -> Option<MirrorConfig> {
        let targets = match self.target.as_deref().map(str::trim) {
            None | Some("") => Some(Vec::new()),
            Some(v) => c.parse("GOR_TARGET", v, parse_targets),
        };
        let rate = c.parse("GOR_RATE", &self.rate, parse_rate);
        let timeout = c.parse("GOR_TIMEOUT", &self.timeout, parse_duration);
        let workers = c.parse("GOR_WORKERS", &self.workers, parse_count);
        let pipeline = c.parse("GOR_PIPELINE", &self.pipeline, parse_count);
        let queue = c.parse("GOR_QUEUE", &self.queue, parse_count);
        let set_headers = match &self.set_header {
            None => Some(Vec::new()),
            Some(v) => c.parse("GOR_SET_HEADER", v, parse_set_headers),
        };
        let tls_ca = match &self.tls_ca {
            None => Some(Vec::new()),
            Some(p) => c.field(
                "GOR_TLS_CA",
                &p.display().to_string(),
                crate::replay::load_ca_file(p),
            ),
        };
        let grace = c.parse("GOR_SHUTDOWN_GRACE", &self.shutdown_grace, parse_duration);
        Some(MirrorConfig {
            targets: targets?,
            rate: rate?,
            timeout: timeout?,
            workers: workers?,
            pipeline: pipeline?,
            queue: queue?,
            original_host: self.original_host,
            set_headers: set_headers?,
            tls_ca: tls_ca?,
            shutdown_grace: grace?,
        })
    }
}

/// `http://staging:8080,http://staging2/base`.
pub fn parse_targets(s: &str) -> Result<Vec<crate::replay::Target>, String> {
    s.split(',')
        .map(str::trim)
        .map(|u| {
            crate::replay::Target::parse(u).map_err(|e| {
                format!("comma-separated `http(s)://host[:port][/base]` URLs (`{u}`: {e})")
            })
        })
        .collect()
}

/// `100` (requests/s per target), `10%` (a random share), or empty (all).
pub fn parse_rate(s: &str) -> Result<crate::replay::Rate, String> {
    const EXPECTED: &str =
        "`100` (at most 100 requests/s per target), `10%` (a random 10%), or empty (all)";
    let s = s.trim();
    if s.is_empty() {
        return Ok(crate::replay::Rate::All);
    }
    if let Some(p) = s.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(crate::replay::Rate::Percent(p)),
            _ => Err(EXPECTED.into()),
        };
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(crate::replay::Rate::PerSecond(n)),
        _ => Err(EXPECTED.into()),
    }
}

/// `X-Mirrored: 1; X-Env: staging`.
pub fn parse_set_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    const EXPECTED: &str =
        "`Name: value` pairs separated by `;`, e.g. `X-Mirrored: 1; X-Env: staging`";
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once(':').ok_or_else(|| EXPECTED.to_string())?;
        let (name, value) = (name.trim(), value.trim());
        // The same check as the replayer's, so a header accepted here is always sent.
        if crate::http::validate::set_header(name, value).is_err() {
            return Err(EXPECTED.into());
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `80,8080`: a non-empty list of distinct ports 1-65535.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    const EXPECTED: &str = "a comma-separated list of TCP ports 1-65535, e.g. `80,8080`";
    let mut ports = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        match part.parse::<u16>() {
            Ok(p) if p != 0 => {
                ports.insert(p);
            }
            _ => return Err(format!("{EXPECTED} (`{part}` is not a port)")),
        }
    }
    Ok(ports.into_iter().collect())
}

/// `lo,eth0`: names of interfaces that exist now.
pub fn parse_interfaces(s: &str) -> Result<Vec<String>, String> {
    let names = parse_interface_names(s)?;
    match names.iter().find(|n| !interface_exists(n)) {
        Some(name) => Err(format!(
            "a comma-separated list of existing network interfaces (`{name}` does not exist)"
        )),
        None => Ok(names),
    }
}

/// `lo,eth0`: names that could be interfaces, whether they exist now or not.
pub fn parse_interface_names(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .map(|name| {
            if name.is_empty() || name.contains('/') {
                Err(format!(
                    "a comma-separated list of network interface names (`{name}` is not one)"
                ))
            } else {
                Ok(name.to_string())
            }
        })
        .collect()
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// `120s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration such as `500ms`, `2s`, `1m` or `1h`";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| EXPECTED.to_string())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(EXPECTED.into()),
    };
    if d.is_zero() {
        return Err(format!("{EXPECTED}, greater than zero"));
    }
    Ok(d)
}

/// `1024`, `64KiB`, `4MiB`, `1GiB` (also `K`, `M`, `G`, binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    const EXPECTED: &str = "a size such as `65536`, `64KiB`, `4MiB` or `1GiB`";
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| EXPECTED.to_string())?;
    let mult: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(EXPECTED.into()),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| EXPECTED.to_string())
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "a positive whole number".to_string())
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let expected = "a power of two between 64KiB and 1GiB, e.g. `32MiB`";
    let n = parse_size(s).map_err(|_| expected.to_string())?;
    if !n.is_power_of_two() || !(64 << 10..=1 << 30).contains(&n) {
        return Err(expected.into());
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("gor-agent").chain(args.iter().copied())).unwrap()
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
        assert_eq!(c.capture.ring_bytes, 32 << 20);
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let errs = cli(&[
            "--ports",
            "80,http",
            "--interfaces",
            "lo,nosuchif0",
            "--ring-buffer",
            "3MiB",
            "--hole-timeout",
            "soon",
        ])
        .validate()
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            vec![
                "GOR_PORTS",
                "GOR_INTERFACES",
                "GOR_RING_BUFFER",
                "GOR_HOLE_TIMEOUT"
            ]
        );
        assert!(
            errs[0].to_string().contains("`http` is not a port"),
            "{}",
            errs[0]
        );
        assert!(errs[1].to_string().contains("nosuchif0"), "{}", errs[1]);
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
        assert!(matches!(c.mirror.rate, crate::replay::Rate::Percent(p) if p == 10.0));
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
            cli(&[
                "--ports",
                "80",
                "--target",
                "https://localhost:8443",
                "--tls-ca",
                ca.to_str().unwrap(),
            ])
            .validate()
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
        assert!(cli(&["--ports", "80"])
            .validate()
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
        let c = cli(&["replay", "--input-file", path, "--speed", "200%", "--loop"])
            .validate()
            .unwrap();
        let input = c.input_file.unwrap();
        assert_eq!((input.speed, input.looping), (2.0, true));
        assert!(c.capture.ports.is_empty(), "no ports needed to replay");
        // GoReplay's `FILE|SPEED` form.
        let piped = format!("{path}|50%");
        let c = cli(&["replay", "--input-file", &piped]).validate().unwrap();
        assert_eq!(c.input_file.unwrap().speed, 0.5);
        let errs = cli(&[
            "replay",
            "--input-file",
            "/nonexistent/*.gor",
            "--speed",
            "fast",
            "--max-wait",
            "x",
        ])
        .validate()
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            ["GOR_SPEED", "GOR_INPUT_FILE_MAX_WAIT", "GOR_INPUT_FILE"]
        );
        let errs = cli(&["replay"]).validate().unwrap_err();
        assert_eq!(errs[0].setting, "GOR_INPUT_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_command_takes_the_agents_settings_but_not_its_interface_existence_test() {
        let c = cli(&["check", "--ports", "80", "--interfaces", "lo,nosuchif0"])
            .validate()
            .unwrap();
        assert_eq!(c.capture.interfaces, vec!["lo", "nosuchif0"]);
        assert!(cli(&["check", "--ports", "80"]).is_check());
        assert!(!cli(&["--ports", "80"]).is_check());
        let errs = cli(&["check", "--interfaces", "lo,,eth0", "--ring-buffer", "3MiB"])
            .validate()
            .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(names, ["GOR_PORTS", "GOR_INTERFACES", "GOR_RING_BUFFER"]);
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
