//! Every flag of GoReplay 1.3 (its `settings.go`), with what gor does with it: translated
//! by [`super::translate`], not implemented yet, or never. One table, so that the
//! translation, its tests and the README's migration table cannot drift apart.

/// Whether a GoReplay flag takes a value. Go's `flag` package gives a boolean flag its
/// value only as `-flag=false`; every other flag takes the next argument (or `=value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Bool,
    Value,
    /// `--verbose`: a level in 1.3 (`--verbose 1`), a boolean before; both are accepted.
    OptionalLevel,
}

/// What gor does with a GoReplay flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Rewritten into gor's flags (see `super::Translation::flag`).
    Translated,
    /// Refused for now: what is missing, and what gor offers meanwhile.
    NotYet(&'static str),
    /// Refused for good: why, and what to use instead.
    Never(&'static str),
}

pub struct Flag {
    pub name: &'static str,
    pub arity: Arity,
    pub fate: Fate,
}

const fn f(name: &'static str, arity: Arity, fate: Fate) -> Flag {
    Flag { name, arity, fate }
}

use Arity::{Bool, OptionalLevel, Value};
use Fate::{Never, Translated};

const KAFKA: &str = "gor has no Kafka input or output; save traffic with --output-file \
                     or mirror with --output-http";
const BINARY: &str = "gor captures and mirrors HTTP/1.x only; binary protocols are out of \
                      its scope";
const PCAP_TUNING: &str = "gor captures with eBPF at TC, not with libpcap: there is no \
                           pcap buffer, snaplen or timestamp to tune; remove the flag \
                           (gor's own bound is GOR_RING_BUFFER, --ring-buffer)";

/// GoReplay 1.3's flags. Deprecated spellings that 1.3 still accepts are listed too.
pub const FLAGS: &[Flag] = &[
    // Inputs.
    f("input-raw", Value, Translated),
    f("input-raw-track-response", Bool, Translated),
    f("input-raw-engine", Value, Translated),
    f(
        "input-raw-bpf-filter",
        Value,
        Never(
            "gor picks the packets itself with eBPF (TCP to and from the ports of \
             --input-raw); there is no BPF expression to give: remove the flag",
        ),
    ),
    f("input-raw-realip-header", Value, Translated),
    f(
        "input-raw-expire",
        Value,
        Never(
            "gor ends a message by its HTTP framing (Content-Length, chunked), not by a \
             packet timeout; remove the flag (lost segments wait --hole-timeout)",
        ),
    ),
    f("input-raw-protocol", Value, Never(BINARY)),
    f(
        "input-raw-vxlan-port",
        Value,
        Never("gor captures on the host's interfaces with eBPF, not VXLAN mirrors"),
    ),
    f(
        "input-raw-vxlan-vni",
        Value,
        Never("gor captures on the host's interfaces with eBPF, not VXLAN mirrors"),
    ),
    f("input-raw-timestamp-type", Value, Never(PCAP_TUNING)),
    f("input-raw-override-snaplen", Bool, Never(PCAP_TUNING)),
    f("input-raw-immediate-mode", Bool, Never(PCAP_TUNING)),
    f("input-raw-buffer-size", Value, Never(PCAP_TUNING)),
    f("input-raw-buffer-timeout", Value, Never(PCAP_TUNING)),
    f("input-raw-promisc", Bool, Never(PCAP_TUNING)),
    f("input-raw-monitor", Bool, Never(PCAP_TUNING)),
    f(
        "input-raw-stats",
        Bool,
        Never("gor's capture counters are always on: its summary log line and /metrics"),
    ),
    f(
        "input-raw-allow-incomplete",
        Bool,
        Never(
            "gor never emits a message with missing bytes (it counts it instead); \
             remove the flag",
        ),
    ),
    f(
        "copy-buffer-size",
        Value,
        Never("gor's bound on one message is --http-max-body (GOR_HTTP_MAX_BODY)"),
    ),
    f("input-file", Value, Translated),
    f("input-file-loop", Bool, Translated),
    f("input-file-max-wait", Value, Translated),
    f(
        "input-file-read-depth",
        Value,
        Never(
            "gor merges the records of all files in timestamp order without a read-ahead \
             window; remove the flag",
        ),
    ),
    f("input-file-dry-run", Bool, Translated),
    f("input-tcp", Value, Translated),
    f("input-tcp-secure", Bool, Translated),
    f("input-tcp-certificate", Value, Translated),
    f("input-tcp-certificate-key", Value, Translated),
    f(
        "input-http",
        Value,
        Never("GoReplay itself disabled --input-http; capture with --input-raw"),
    ),
    f(
        "input-dummy",
        Value,
        Never("for testing outputs, replay a small saved file with --input-file"),
    ),
    f("input-kafka-host", Value, Never(KAFKA)),
    f("input-kafka-topic", Value, Never(KAFKA)),
    f("input-kafka-json-format", Bool, Never(KAFKA)),
    // Outputs.
    f("output-http", Value, Translated),
    f("output-http-workers", Value, Translated),
    f("output-http-timeout", Value, Translated),
    f("output-http-track-response", Bool, Translated),
    f("output-http-queue-len", Value, Translated),
    f("output-http-stats", Bool, Translated),
    f("output-http-stats-ms", Value, Translated),
    f(
        "output-http-workers-min",
        Value,
        Never("gor opens staging connections as client connections need them, up to --workers"),
    ),
    f(
        "output-http-worker-timeout",
        Value,
        Never("gor closes a staging connection when its client connection closes"),
    ),
    f("output-http-redirects", Value, Translated),
    f("output-http-skip-verify", Bool, Translated),
    f("output-http-response-buffer", Value, Translated),
    f(
        "output-http-compatibility-mode",
        Bool,
        Never("gor has one HTTP client, which sends the captured bytes as they were"),
    ),
    f("output-http-debug", Bool, Translated),
    f(
        "output-http-elasticsearch",
        Value,
        Never(
            "gor has no ElasticSearch output; it compares staging with production itself \
             (--compare, --output-diffs) and serves Prometheus metrics",
        ),
    ),
    f("http-original-host", Bool, Translated),
    f("split-output", Bool, Translated),
    f("output-stdout", Bool, Translated),
    f("output-null", Bool, Translated),
    f("output-dummy", Value, Translated),
    f("output-file", Value, Translated),
    f("output-file-size-limit", Value, Translated),
    f("output-file-append", Bool, Translated),
    f("output-file-max-size-limit", Value, Translated),
    f("output-file-flush-interval", Value, Translated),
    f("output-file-queue-limit", Value, Translated),
    f(
        "output-file-buffer",
        Value,
        Never("gor writes local files only (no s3://), so it needs no buffer directory"),
    ),
    f("output-tcp", Value, Translated),
    f("output-tcp-secure", Bool, Translated),
    f("output-tcp-skip-verify", Bool, Translated),
    f("output-tcp-sticky", Bool, Translated),
    f("output-tcp-workers", Value, Translated),
    f("output-tcp-stats", Bool, Translated),
    f("output-binary", Value, Never(BINARY)),
    f("output-binary-workers", Value, Never(BINARY)),
    f("output-binary-timeout", Value, Never(BINARY)),
    f("output-binary-track-response", Bool, Never(BINARY)),
    f("output-binary-debug", Bool, Never(BINARY)),
    f("output-tcp-response-buffer", Value, Never(BINARY)),
    f("input-binary", Value, Never(BINARY)),
    f("output-kafka-host", Value, Never(KAFKA)),
    f("output-kafka-topic", Value, Never(KAFKA)),
    f("output-kafka-json-format", Bool, Never(KAFKA)),
    f("kafka-tls-ca-cert", Value, Never(KAFKA)),
    f("kafka-tls-client-cert", Value, Never(KAFKA)),
    f("kafka-tls-client-key", Value, Never(KAFKA)),
    // Middleware, filters and rewrites.
    f("middleware", Value, Translated),
    f("http-allow-url", Value, Translated),
    f("http-disallow-url", Value, Translated),
    f("http-allow-method", Value, Translated),
    f("http-allow-header", Value, Translated),
    f("http-disallow-header", Value, Translated),
    f("http-header-limiter", Value, Translated),
    f("http-param-limiter", Value, Translated),
    f("http-set-header", Value, Translated),
    f("http-rewrite-url", Value, Translated),
    f("http-rewrite-header", Value, Translated),
    f("output-http-header", Value, Translated),
    f("output-http-method", Value, Translated),
    f("output-http-url-regexp", Value, Translated),
    f("output-http-header-filter", Value, Translated),
    f("output-http-header-hash-filter", Value, Translated),
    f("output-http-rewrite-url", Value, Translated),
    f("http-set-param", Value, Translated),
    f("http-basic-auth-filter", Value, Translated),
    f("prettify-http", Bool, Translated),
    // The process.
    f("verbose", OptionalLevel, Translated),
    f("debug", Bool, Translated),
    f("stats", Bool, Translated),
    f("exit-after", Value, Translated),
    f(
        "http-pprof",
        Value,
        Never("gor serves Prometheus metrics instead (--metrics-addr, GOR_METRICS_ADDR)"),
    ),
    f(
        "recognize-tcp-sessions",
        Bool,
        Never(
            "a GoReplay PRO flag; gor always keeps a client connection on one staging \
             connection",
        ),
    ),
];

/// The flag named `name` (without dashes).
pub fn find(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// GoReplay's deprecated spellings of the filters, and the name gor knows them by.
pub fn filter_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "http-allow-url" | "output-http-url-regexp" => "http-allow-url",
        "http-disallow-url" => "http-disallow-url",
        "http-allow-method" | "output-http-method" => "http-allow-method",
        "http-allow-header" | "output-http-header-filter" => "http-allow-header",
        "http-disallow-header" => "http-disallow-header",
        "http-header-limiter" | "output-http-header-hash-filter" => "http-header-limiter",
        "http-param-limiter" => "http-param-limiter",
        "http-set-header" | "output-http-header" => "http-set-header",
        "http-rewrite-url" | "output-http-rewrite-url" => "http-rewrite-url",
        "http-rewrite-header" => "http-rewrite-header",
        "http-set-param" => "http-set-param",
        "http-basic-auth-filter" => "http-basic-auth-filter",
        "input-raw-realip-header" => "http-realip-header",
        _ => return None,
    })
}
