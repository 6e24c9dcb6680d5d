//! Connecting to NATS, and the stream and key-value buckets gor keeps there.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, ConnectOptions};

use super::settings::{Auth, NatsConfig, StreamConfig};

/// How long a JetStream API request may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that reconnects by itself: at start too, so a listener whose NATS is down
/// still starts and captures (and counts what it cannot publish).
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<Client> {
    connect_with(cfg, name, true).await
}

/// One attempt, for `gor-agent check`: an error when no server answers.
pub async fn connect_once(cfg: &NatsConfig, name: &str) -> Result<Client> {
    connect_with(cfg, name, false).await
}

async fn connect_with(cfg: &NatsConfig, name: &str, retry: bool) -> Result<Client> {
    let mut opts = match &cfg.auth {
        Auth::None => ConnectOptions::new(),
        Auth::Creds(path) => ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("reading the NATS credentials {}", path.display()))?,
        Auth::UserPassword(u, p) => ConnectOptions::with_user_and_password(u.clone(), p.clone()),
        Auth::Token(t) => ConnectOptions::with_token(t.clone()),
    };
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.servers.iter().any(|s| s.starts_with("tls://")) {
        opts = opts.require_tls(true);
    }
    if retry {
        opts = opts.retry_on_initial_connect();
    }
    let opts = opts
        .name(name)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            // 100 ms, doubling, at most 2 s: back soon after a restart of nats-server.
            Duration::from_millis(100u64 << attempts.min(5)).min(Duration::from_secs(2))
        })
        .event_callback(|ev| async move {
            match ev {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::debug!("NATS: {other}"),
            }
        });
    let servers: Vec<async_nats::ServerAddr> = cfg
        .servers
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("the NATS server URL")?;
    Ok(opts.connect(servers).await?)
}

/// The JetStream context of a connection.
pub fn jetstream(client: Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(API_TIMEOUT);
    js
}

/// The stream as the settings describe it.
pub fn stream_config(s: &StreamConfig) -> stream::Config {
    stream::Config {
        name: s.name.clone(),
        subjects: vec![format!("{}.>", s.subject)],
        max_bytes: s.max_bytes,
        max_age: s.max_age,
        discard: if s.discard_new {
            stream::DiscardPolicy::New
        } else {
            stream::DiscardPolicy::Old
        },
        duplicate_window: s.duplicate_window,
        storage: stream::StorageType::File,
        num_replicas: 1,
        description: Some("gor: captured HTTP traffic, listeners to replay servers".into()),
        ..Default::default()
    }
}

/// What [`ensure_stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// It was there with these limits already.
    Unchanged,
    /// It was there with other limits, now those of the settings.
    Updated,
}

/// Creates the stream, or checks it: a stream of that name that takes other subjects is
/// an error (it is someone else's); other limits are set to the settings' (every listener
/// and replay server of a fleet should run with the same ones).
pub async fn ensure_stream(js: &jetstream::Context, s: &StreamConfig) -> Result<Ensured> {
    let want = stream_config(s);
    match js.get_stream(&s.name).await {
        Ok(mut existing) => {
            let info = existing.info().await.context("reading the stream's info")?;
            let have = &info.config;
            if have.subjects != want.subjects {
                bail!(
                    "the NATS stream {} exists with subjects {:?}, not {:?}: set GOR_NATS_STREAM \
                     or GOR_NATS_SUBJECT to use another",
                    s.name,
                    have.subjects,
                    want.subjects
                );
            }
            let same = have.max_bytes == want.max_bytes
                && have.max_age == want.max_age
                && have.discard == want.discard
                && have.duplicate_window == want.duplicate_window;
            if same {
                return Ok(Ensured::Unchanged);
            }
            let mut update = have.clone();
            update.max_bytes = want.max_bytes;
            update.max_age = want.max_age;
            update.discard = want.discard;
            update.duplicate_window = want.duplicate_window;
            js.update_stream(update)
                .await
                .with_context(|| format!("setting the limits of the NATS stream {}", s.name))?;
            tracing::info!(stream = %s.name, "the stream's limits were changed to the settings'");
            Ok(Ensured::Updated)
        }
        Err(e) if stream_not_found(&e) => {
            js.create_stream(want)
                .await
                .with_context(|| format!("creating the NATS stream {}", s.name))?;
            tracing::info!(stream = %s.name, "created the NATS stream");
            Ok(Ensured::Created)
        }
        Err(e) => Err(e).with_context(|| format!("looking up the NATS stream {}", s.name)),
    }
}

/// [`ensure_stream`] again and again (100 ms, doubling to 2 s) until NATS answers: a
/// listener and a replay server both start without NATS and wait for it.
pub async fn await_stream(js: &jetstream::Context, s: &StreamConfig) {
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = ensure_stream(js, s).await {
        tracing::warn!("NATS stream {}: {e:#}; trying again", s.name);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Whether looking a stream up failed only because there is none of that name.
pub fn stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// A key-value bucket of gor's (`<stream>_<what>`), created if missing: entries older
/// than `max_age` disappear, which is what makes a claim or a rate slot expire.
///
/// The bucket's stream is created here as `create_key_value` would (same name, subjects
/// and limits), because that call first reads the account's info, whose reply from
/// nats-server before 2.10 (Debian's 2.9) lacks fields async-nats requires, so it fails
/// there. Creating a stream that exists with the same settings succeeds, so servers
/// starting together do not race.
pub async fn bucket(
    js: &jetstream::Context,
    stream: &str,
    what: &str,
    max_age: Duration,
) -> Result<kv::Store> {
    let name = format!("{stream}_{what}");
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        description: Some(format!("gor: key-value bucket {name}")),
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the NATS key-value bucket {name}"))?;
    js.get_key_value(&name)
        .await
        .with_context(|| format!("opening the NATS key-value bucket {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::NatsServer;

    #[tokio::test]
    async fn a_bucket_is_created_then_opened_and_its_keys_expire() {
        let server = NatsServer::start();
        let cfg = server.config();
        let js = jetstream(connect(&cfg, "test").await.unwrap());
        let age = Duration::from_secs(1);
        let store = bucket(&js, "GOR", "claims", age).await.unwrap();
        store.create("k", "v".into()).await.unwrap();
        let again = bucket(&js, "GOR", "claims", age).await.unwrap();
        assert_eq!(again.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert!(again.create("k", "w".into()).await.is_err(), "taken");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.get("k").await.unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the key did not expire"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.create("k", "w".into()).await.unwrap();
    }

    #[tokio::test]
    async fn a_server_with_a_password_takes_the_right_one_only() {
        let server = NatsServer::start_with(&["--user", "gor", "--pass", "s3cret"]);
        let mut cfg = server.config();
        cfg.auth = Auth::UserPassword("gor".into(), "s3cret".into());
        let js = jetstream(connect_once(&cfg, "test").await.unwrap());
        assert_eq!(
            ensure_stream(&js, &cfg.stream).await.unwrap(),
            Ensured::Created
        );
        cfg.auth = Auth::UserPassword("gor".into(), "wrong".into());
        let err = connect_once(&cfg, "test").await.unwrap_err();
        assert!(format!("{err:#}").contains("authorization"), "{err:#}");
        cfg.auth = Auth::None;
        assert!(connect_once(&cfg, "test").await.is_err());
    }

    #[tokio::test]
    async fn a_tls_server_is_trusted_through_the_ca_setting_only() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let server = NatsServer::start_with(&[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ]);
        let mut cfg = server.config();
        cfg.servers = vec![format!("tls://localhost:{}", server.port)];
        // Not signed by anyone the system trusts.
        assert!(connect_once(&cfg, "test").await.is_err());
        cfg.tls_ca = Some(cert.clone());
        let js = jetstream(connect_once(&cfg, "test").await.unwrap());
        assert_eq!(
            ensure_stream(&js, &cfg.stream).await.unwrap(),
            Ensured::Created
        );
    }

    #[tokio::test]
    async fn a_server_with_a_token() {
        let server = NatsServer::start_with(&["--auth", "t0ken"]);
        let mut cfg = server.config();
        cfg.auth = Auth::Token("t0ken".into());
        let js = jetstream(connect_once(&cfg, "test").await.unwrap());
        assert_eq!(
            ensure_stream(&js, &cfg.stream).await.unwrap(),
            Ensured::Created
        );
        cfg.auth = Auth::Token("other".into());
        assert!(connect_once(&cfg, "test").await.is_err());
    }

    #[tokio::test]
    async fn the_stream_is_created_then_checked_then_updated() {
        let server = NatsServer::start();
        let cfg = server.config();
        let js = jetstream(connect(&cfg, "test").await.unwrap());
        assert_eq!(
            ensure_stream(&js, &cfg.stream).await.unwrap(),
            Ensured::Created
        );
        assert_eq!(
            ensure_stream(&js, &cfg.stream).await.unwrap(),
            Ensured::Unchanged
        );
        let mut bigger = cfg.stream.clone();
        bigger.max_bytes *= 2;
        assert_eq!(ensure_stream(&js, &bigger).await.unwrap(), Ensured::Updated);
        let info = js
            .get_stream("GOR")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.max_bytes, bigger.max_bytes);
        let mut other = cfg.stream.clone();
        other.subject = "elsewhere".into();
        let err = ensure_stream(&js, &other).await.unwrap_err().to_string();
        assert!(err.contains("exists with subjects"), "{err}");
    }

    #[tokio::test]
    async fn a_bucket_is_created_then_opened() {
        let server = NatsServer::start();
        let js = jetstream(connect(&server.config(), "test").await.unwrap());
        let kv = bucket(&js, "GOR", "test", Duration::from_secs(60))
            .await
            .unwrap();
        kv.create("k", "1".into()).await.unwrap();
        let again = bucket(&js, "GOR", "test", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(again.get("k").await.unwrap().as_deref(), Some(&b"1"[..]));
    }
}
