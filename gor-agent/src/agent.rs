//! The composition root: picks the source the settings ask for, builds the pipeline for
//! it, and hands both to the [`Driver`].
//!
//! | settings | source | enters as | clock |
//! | --- | --- | --- | --- |
//! | (default) | [`LiveCapture`]: TC programs, ring buffer | TCP segments | monotonic |
//! | `GOR_INPUT_PCAP` | [`PcapFile`] | TCP segments | the packets' (wall clock) |
//! | `gor-agent replay` | [`SavedTraffic`]: `.gor` files | HTTP messages | the records' (wall clock) |
//! | `gor-agent replay --dry-run` | [`crate::replay::dry_run`]: counts, sends nothing | | |
//! | `gor-agent replay-server` | [`ReplayServer`]: NATS JetStream | HTTP messages | the listeners' (wall clock) |
//! | `GOR_INPUT_TCP` | [`TcpInput`]: GoReplay's TCP protocol | HTTP messages | the senders' (wall clock) |

use anyhow::Result;

use crate::{
    config::Config,
    driver::{Driver, Source},
    envelope::Origin,
    pipeline::Pipeline,
    replay::SavedTraffic,
    replay_server::ReplayServer,
    source::{live::LiveCapture, pcap::PcapFile, tcp::TcpInput},
};

/// Runs the agent: replaying saved traffic, reading a pcap file, or live.
pub async fn run(cfg: Config) -> Result<()> {
    let origin = Origin::of_this_run(cfg.agent_id.as_deref());
    // The first 16 hex digits of every message id this run writes: what ties an id seen
    // in a file, a middleware or on another machine back to this host and run.
    tracing::info!(
        origin = format_args!("{:016x}", origin.0),
        "message ids of this run"
    );
    if cfg.replay_server {
        let driver = Driver::start(&cfg).await?;
        let (source, hooks) = ReplayServer::start(&cfg).await?;
        let pipeline = Pipeline::with_hooks(&cfg, source.clock(), origin, None, hooks)?;
        return driver.run(source, pipeline).await;
    }
    if let Some(input) = cfg.input_file.as_ref().filter(|i| i.dry_run) {
        // Counting only: no pipeline, nothing sent, nothing written.
        for run in crate::replay::dry_run(input)? {
            print!("{run}");
        }
        return Ok(());
    }
    if let Some(tcp) = &cfg.tcp_input {
        let driver = Driver::start(&cfg).await?;
        let source = TcpInput::start(tcp).await?;
        let pipeline = Pipeline::new(&cfg, source.clock(), origin, None)?;
        return driver.run(source, pipeline).await;
    }
    if let Some(input) = &cfg.input_file {
        let driver = Driver::start(&cfg).await?;
        let source = SavedTraffic::open(input, cfg.outputs.stats_interval)?;
        let pipeline = Pipeline::new(&cfg, source.clock(), origin, None)?;
        return driver.run(source, pipeline).await;
    }
    if let Some(path) = &cfg.capture.input_pcap {
        // A file is read in seconds: no metrics endpoint, the summary at the end.
        let driver = Driver::offline(&cfg);
        let source = PcapFile::open(path, &cfg.capture.ports)?;
        let pipeline = Pipeline::new(&cfg, source.clock(), origin, None)?;
        return driver.run(source, pipeline).await;
    }
    // Before anything is attached: a metrics address that is taken fails the start.
    let driver = Driver::start(&cfg).await?;
    let (source, exclusions) = LiveCapture::start(&cfg.capture)?;
    let pipeline = Pipeline::new(&cfg, source.clock(), origin, Some(exclusions))?;
    driver.run(source, pipeline).await
}
