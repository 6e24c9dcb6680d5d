//! The broker's settings: where NATS is and how to log in, the stream and its limits,
//! the listener's publish queue, and the replay server's consumption.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::settings::{parse_count, parse_duration, parse_size, Problems};

/// NATS JetStream: listeners publish to it, replay servers consume from it.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// NATS server(s), comma-separated (`nats://host:4222`, `tls://host:4222`). On the
    /// agent: publish every framed request to JetStream (a listener). Required by
    /// `gor-agent replay-server`.
    #[arg(long, env = "GOR_NATS_URL")]
    pub nats_url: Option<String>,
    /// A NATS credentials file (JWT and NKey seed), as `nsc` writes it.
    #[arg(long, env = "GOR_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// User name, with GOR_NATS_PASSWORD.
    #[arg(long, env = "GOR_NATS_USER")]
    pub nats_user: Option<String>,
    #[arg(long, env = "GOR_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// A token for the server's `authorization { token }`.
    #[arg(long, env = "GOR_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// CA certificates (PEM) to trust for `tls://` servers, besides the system roots.
    #[arg(long, env = "GOR_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), with GOR_NATS_TLS_KEY, for servers that verify clients.
    #[arg(long, env = "GOR_NATS_TLS_CERT", value_name = "FILE")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, env = "GOR_NATS_TLS_KEY", value_name = "FILE")]
    pub nats_tls_key: Option<PathBuf>,
    /// The JetStream stream; created at start if missing, its limits checked if present.
    #[arg(long, env = "GOR_NATS_STREAM", default_value = "GOR")]
    pub nats_stream: String,
    /// Subject prefix: messages go to `PREFIX.<partition>.<host>`, the stream takes
    /// `PREFIX.>`.
    #[arg(long, env = "GOR_NATS_SUBJECT", default_value = "gor")]
    pub nats_subject: String,
    /// Partitions: each client connection lands in one (hashed from its id), and each
    /// partition is consumed by one replay server at a time. More partitions than
    /// replay servers, so that they can be shared out. The same on every listener and
    /// replay server.
    #[arg(long, env = "GOR_NATS_PARTITIONS", default_value = "16")]
    pub nats_partitions: String,
    /// The stream's size limit (bytes on the server's disk).
    #[arg(long, env = "GOR_NATS_STREAM_MAX_BYTES", default_value = "1GiB")]
    pub nats_stream_max_bytes: String,
    /// How long a message stays in the stream at most.
    #[arg(long, env = "GOR_NATS_STREAM_MAX_AGE", default_value = "1h")]
    pub nats_stream_max_age: String,
    /// What a full stream does: `old` drops its oldest messages, `new` refuses new ones
    /// (the listener counts them as refused).
    #[arg(long, env = "GOR_NATS_STREAM_DISCARD", default_value = "old")]
    pub nats_stream_discard: String,
    /// The window in which a message published twice (same `Nats-Msg-Id`, e.g. a retry
    /// after a lost ack) is stored once.
    #[arg(long, env = "GOR_NATS_DUPLICATE_WINDOW", default_value = "2m")]
    pub nats_duplicate_window: String,
    /// Listener: messages waiting to be published at most; capture never waits, what
    /// does not fit is dropped and counted.
    #[arg(long, env = "GOR_NATS_QUEUE", default_value = "10000")]
    pub nats_queue: String,
    /// Listener: bytes waiting to be published at most.
    #[arg(long, env = "GOR_NATS_QUEUE_BYTES", default_value = "64MiB")]
    pub nats_queue_bytes: String,
    /// Replay server: the durable consumers' name prefix (`NAME-p<partition>`); replay
    /// servers with the same name share the partitions.
    #[arg(long, env = "GOR_NATS_CONSUMER", default_value = "gor-replay")]
    pub nats_consumer: String,
    /// Replay server: how long the server waits for a delivered message's ack before it
    /// delivers it again (to this or another replay server).
    #[arg(long, env = "GOR_NATS_ACK_WAIT", default_value = "30s")]
    pub nats_ack_wait: String,
    /// Replay server: messages taken from the stream and not yet settled (sent, or
    /// dropped on purpose), at most.
    #[arg(long, env = "GOR_NATS_MAX_INFLIGHT", default_value = "1024")]
    pub nats_max_inflight: String,
    /// Replay server: how long a partition stays claimed by a replay server that stopped
    /// renewing its claim (killed); then another one takes it over.
    #[arg(long, env = "GOR_NATS_LEASE", default_value = "10s")]
    pub nats_lease: String,
}

/// Validated broker settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub servers: Vec<String>,
    pub auth: Auth,
    pub tls_ca: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub stream: StreamConfig,
    pub partitions: u32,
    pub queue: usize,
    pub queue_bytes: usize,
    pub consumer: String,
    pub ack_wait: Duration,
    pub max_inflight: usize,
    pub lease: Duration,
}

/// How to log in.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Creds(PathBuf),
    UserPassword(String, String),
    Token(String),
}

impl std::fmt::Debug for Auth {
    /// Never the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Creds(p) => write!(f, "Creds({})", p.display()),
            Auth::UserPassword(u, _) => write!(f, "UserPassword({u}, ***)"),
            Auth::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// The stream's name, subjects and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    /// The subject prefix (without `.>`).
    pub subject: String,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub discard_new: bool,
    pub duplicate_window: Duration,
}

impl NatsArgs {
    /// Whether a NATS server is configured at all.
    pub fn enabled(&self) -> bool {
        self.nats_url
            .as_deref()
            .is_some_and(|u| !u.trim().is_empty())
    }

    /// The settings, `None` inside when no server is configured.
    pub fn validate(&self, p: &mut Problems) -> Option<Option<NatsConfig>> {
        let mut c = p.of::<Self>();
        let Some(url) = self.nats_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Some(None);
        };
        let servers = c.parse("nats_url", url, parse_servers);
        let auth = c.field("nats_user", "", self.auth());
        let tls_client = match (&self.nats_tls_cert, &self.nats_tls_key) {
            (Some(cert), Some(key)) => Some(Some((cert.clone(), key.clone()))),
            (None, None) => Some(None),
            (Some(cert), None) => c.field(
                "nats_tls_cert",
                &cert.display().to_string(),
                Err("a certificate with its key: set GOR_NATS_TLS_KEY too".into()),
            ),
            (None, Some(key)) => c.field(
                "nats_tls_key",
                &key.display().to_string(),
                Err("a key with its certificate: set GOR_NATS_TLS_CERT too".into()),
            ),
        };
        let name = c.parse("nats_stream", &self.nats_stream, parse_stream_name);
        let subject = c.parse("nats_subject", &self.nats_subject, parse_subject_prefix);
        let partitions = c.parse("nats_partitions", &self.nats_partitions, |s| {
            parse_count(s).and_then(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 1024)
                    .ok_or_else(|| "a whole number from 1 to 1024".to_string())
            })
        });
        let max_bytes = c.parse(
            "nats_stream_max_bytes",
            &self.nats_stream_max_bytes,
            parse_size,
        );
        let max_age = c.parse(
            "nats_stream_max_age",
            &self.nats_stream_max_age,
            parse_duration,
        );
        let discard_new = c.parse(
            "nats_stream_discard",
            &self.nats_stream_discard,
            |s| match s.trim() {
                "old" => Ok(false),
                "new" => Ok(true),
                _ => Err("`old` (drop the oldest messages) or `new` (refuse new ones)".into()),
            },
        );
        let duplicate_window = c.parse(
            "nats_duplicate_window",
            &self.nats_duplicate_window,
            parse_duration,
        );
        let queue = c.parse("nats_queue", &self.nats_queue, parse_count);
        let queue_bytes = c.parse("nats_queue_bytes", &self.nats_queue_bytes, parse_size);
        let consumer = c.parse("nats_consumer", &self.nats_consumer, parse_stream_name);
        let ack_wait = c.parse("nats_ack_wait", &self.nats_ack_wait, parse_duration);
        let max_inflight = c.parse("nats_max_inflight", &self.nats_max_inflight, parse_count);
        let lease = c.parse("nats_lease", &self.nats_lease, |s| {
            parse_duration(s).and_then(|d| {
                if d >= Duration::from_secs(2) {
                    Ok(d)
                } else {
                    Err("a duration of at least `2s`".into())
                }
            })
        });
        if let (Some(max_age), Some(window)) = (max_age, duplicate_window) {
            if window > max_age {
                c.field::<()>(
                    "nats_duplicate_window",
                    &self.nats_duplicate_window,
                    Err("a window no longer than GOR_NATS_STREAM_MAX_AGE".into()),
                );
            }
        }
        Some(Some(NatsConfig {
            servers: servers?,
            auth: auth?,
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: tls_client?,
            stream: StreamConfig {
                name: name?,
                subject: subject?,
                max_bytes: i64::try_from(max_bytes?).unwrap_or(i64::MAX),
                max_age: max_age?,
                discard_new: discard_new?,
                duplicate_window: duplicate_window?,
            },
            partitions: partitions?,
            queue: queue?,
            queue_bytes: queue_bytes?,
            consumer: consumer?,
            ack_wait: ack_wait?,
            max_inflight: max_inflight?,
            lease: lease?,
        }))
    }

    fn auth(&self) -> Result<Auth, String> {
        let given = [
            self.nats_creds.is_some(),
            self.nats_user.is_some() || self.nats_password.is_some(),
            self.nats_token.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err("one way to log in: GOR_NATS_CREDS, GOR_NATS_USER with \
                        GOR_NATS_PASSWORD, or GOR_NATS_TOKEN"
                .into());
        }
        Ok(
            match (
                &self.nats_creds,
                &self.nats_user,
                &self.nats_password,
                &self.nats_token,
            ) {
                (Some(creds), ..) => Auth::Creds(creds.clone()),
                (_, Some(u), Some(pw), _) => Auth::UserPassword(u.clone(), pw.clone()),
                (_, Some(_), None, _) | (_, None, Some(_), _) => {
                    return Err("GOR_NATS_USER and GOR_NATS_PASSWORD together".into())
                }
                (.., Some(t)) => Auth::Token(t.clone()),
                _ => Auth::None,
            },
        )
    }
}

/// `nats://host:port` or `tls://host:port`, comma-separated; the port defaults to 4222.
pub fn parse_servers(s: &str) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "NATS server URLs, comma-separated: `nats://host:4222` or \
                            `tls://host:4222`";
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rest = part
            .strip_prefix("nats://")
            .or_else(|| part.strip_prefix("tls://"))
            .ok_or_else(|| EXPECTED.to_string())?;
        // Credentials belong in GOR_NATS_USER/PASSWORD or a creds file, not in a URL
        // that is logged.
        if rest.is_empty() || rest.contains('@') || rest.contains('/') {
            return Err(EXPECTED.into());
        }
        out.push(part.to_string());
    }
    if out.is_empty() {
        return Err(EXPECTED.into());
    }
    Ok(out)
}

/// A stream or consumer name: letters, digits, `-` and `_`.
fn parse_stream_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s.to_string())
    } else {
        Err("a name of letters, digits, `-` and `_`, at most 64".into())
    }
}

/// Subject tokens separated by dots, without wildcards.
fn parse_subject_prefix(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(
            "subject tokens of letters, digits, `-` and `_`, separated by dots \
             (no wildcards)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn validate(args: &[&str]) -> Result<Option<NatsConfig>, Vec<crate::settings::ConfigError>> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        let mut p = Problems::default();
        let c = cli.nats.validate(&mut p);
        p.finish().map(|()| c.unwrap())
    }

    #[test]
    fn off_without_a_url() {
        assert!(validate(&[]).unwrap().is_none());
    }

    #[test]
    fn defaults() {
        let c = validate(&["--nats-url", "nats://127.0.0.1:4222"])
            .unwrap()
            .unwrap();
        assert_eq!(c.servers, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.stream.name, "GOR");
        assert_eq!(c.stream.subject, "gor");
        assert_eq!(c.partitions, 16);
        assert_eq!(c.stream.max_bytes, 1 << 30);
        assert!(!c.stream.discard_new);
        assert_eq!(c.auth, Auth::None);
    }

    #[test]
    fn bad_values_are_named() {
        let errs = validate(&[
            "--nats-url",
            "http://x:1",
            "--nats-stream-discard",
            "sometimes",
            "--nats-partitions",
            "0",
            "--nats-subject",
            "gor.*",
            "--nats-user",
            "u",
        ])
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.setting).collect();
        assert_eq!(
            names,
            [
                "GOR_NATS_URL",
                "GOR_NATS_USER",
                "GOR_NATS_SUBJECT",
                "GOR_NATS_PARTITIONS",
                "GOR_NATS_STREAM_DISCARD"
            ]
        );
        // Credentials in the URL would be logged.
        assert!(validate(&["--nats-url", "nats://u:p@h:1"]).is_err());
        assert!(validate(&["--nats-url", "nats://a:1,tls://b:2"]).is_ok());
    }
}
