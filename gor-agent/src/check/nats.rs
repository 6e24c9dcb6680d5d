//! The check's lines for NATS JetStream (`GOR_NATS_URL`): the server answers with
//! JetStream, and the stream is there with the settings' limits (or will be made).

use std::time::Duration;

use async_nats::jetstream;

use super::Line;
use crate::broker::{connect, NatsConfig};

/// What was read of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    Missing,
    Present {
        messages: u64,
        bytes: u64,
        subjects: Vec<String>,
        max_bytes: i64,
        max_age: Duration,
        discard_new: bool,
    },
    /// JetStream did not answer (not enabled, or no permission).
    Unavailable(String),
}

/// Connects once and reads the stream; runs its own small runtime (the check has none).
pub fn check(cfg: &NatsConfig) -> Vec<Line> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![Line::fail(format!("nats: no runtime: {e}"), "report a bug")],
    };
    rt.block_on(async {
        let client = match tokio::time::timeout(
            Duration::from_secs(5),
            connect::connect_once(cfg, "gor check"),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return vec![server_line(cfg, Err(format!("{e:#}")))],
            Err(_) => return vec![server_line(cfg, Err("no answer in 5 s".into()))],
        };
        let info = client.server_info();
        let server = server_line(cfg, Ok((info.version.clone(), info.max_payload)));
        let js = connect::jetstream(client);
        let state = read_stream(&js, &cfg.stream.name).await;
        vec![server, stream_line(cfg, &state)]
    })
}

async fn read_stream(js: &jetstream::Context, name: &str) -> StreamState {
    match js.get_stream(name).await {
        Ok(mut s) => match s.info().await {
            Ok(i) => StreamState::Present {
                messages: i.state.messages,
                bytes: i.state.bytes,
                subjects: i.config.subjects.clone(),
                max_bytes: i.config.max_bytes,
                max_age: i.config.max_age,
                discard_new: i.config.discard == jetstream::stream::DiscardPolicy::New,
            },
            Err(e) => StreamState::Unavailable(e.to_string()),
        },
        Err(e) if connect::stream_not_found(&e) => StreamState::Missing,
        Err(e) => StreamState::Unavailable(e.to_string()),
    }
}

/// The server's line: its version and `max_payload`, or why it could not be reached.
pub fn server_line(cfg: &NatsConfig, server: Result<(String, usize), String>) -> Line {
    let urls = cfg.servers.join(",");
    match server {
        Ok((version, max_payload)) => Line::ok(format!(
            "nats: {urls} answers (nats-server {version}); messages over its max_payload of \
             {} KiB are counted as too_large, not published",
            max_payload / 1024
        )),
        Err(e) => Line::fail(
            format!("nats: cannot connect to {urls}: {e}"),
            "start nats-server with JetStream (`nats-server -js -sd DIR`), or correct \
             GOR_NATS_URL and the credentials; a listener would still start, capture and count \
             what it cannot publish",
        ),
    }
}

/// The stream's line.
pub fn stream_line(cfg: &NatsConfig, state: &StreamState) -> Line {
    let s = &cfg.stream;
    match state {
        StreamState::Missing => Line::ok(format!(
            "nats stream {}: not there yet; created at start with max {} MiB, max age {} s, \
             discard {}",
            s.name,
            s.max_bytes >> 20,
            s.max_age.as_secs(),
            if s.discard_new { "new" } else { "old" }
        )),
        StreamState::Present {
            messages,
            bytes,
            subjects,
            max_bytes,
            max_age,
            discard_new,
        } => {
            let want = format!("{}.>", s.subject);
            if subjects.iter().all(|x| *x != want) {
                return Line::fail(
                    format!(
                        "nats stream {}: takes subjects {subjects:?}, not {want}: it is another's",
                        s.name
                    ),
                    "set GOR_NATS_STREAM to another name, or GOR_NATS_SUBJECT to its subjects",
                );
            }
            let text = format!(
                "nats stream {}: {messages} messages, {} MiB of max {} MiB, max age {} s, \
                 discard {}",
                s.name,
                bytes >> 20,
                max_bytes >> 20,
                max_age.as_secs(),
                if *discard_new { "new" } else { "old" }
            );
            if *max_bytes != s.max_bytes || *max_age != s.max_age || *discard_new != s.discard_new {
                Line::warn(format!(
                    "{text}; the settings' limits differ and will be applied at start"
                ))
            } else {
                Line::ok(text)
            }
        }
        StreamState::Unavailable(e) => Line::fail(
            format!("nats stream {}: JetStream does not answer: {e}", s.name),
            "run nats-server with JetStream enabled (`-js` and a store directory `-sd DIR`), \
             and give this user JetStream permissions",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::NatsServer;
    use crate::check::Status;

    #[test]
    fn a_server_without_the_stream_then_with_it() {
        let server = NatsServer::start();
        let cfg = server.config();
        let lines = check(&cfg);
        assert_eq!(lines[0].status, Status::Ok, "{}", lines[0]);
        assert!(
            lines[0].text.contains("answers (nats-server 2."),
            "{}",
            lines[0]
        );
        assert!(lines[1].text.contains("created at start"), "{}", lines[1]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let js = connect::jetstream(connect::connect(&cfg, "t").await.unwrap());
            connect::ensure_stream(&js, &cfg.stream).await.unwrap();
        });
        let lines = check(&cfg);
        assert_eq!(lines[1].status, Status::Ok, "{}", lines[1]);
        assert!(lines[1].text.contains("0 messages"), "{}", lines[1]);
        let mut other = cfg.clone();
        other.stream.max_bytes *= 2;
        assert_eq!(check(&other)[1].status, Status::Warn);
    }

    #[test]
    fn no_server_fails_with_a_fix() {
        let mut server = NatsServer::start();
        let cfg = server.config();
        server.kill();
        let lines = check(&cfg);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].status, Status::Fail);
        assert!(
            lines[0].to_string().contains("GOR_NATS_URL"),
            "{}",
            lines[0]
        );
    }
}
