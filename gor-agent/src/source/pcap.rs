//! A pcap file as a [`Source`]: read on a thread of its own (file IO never blocks the
//! runtime), its segments handed over in batches through a bounded channel (the reader
//! waits for the pipeline, so nothing is dropped), entering as TCP segments stamped with
//! the packets' own wall-clock times. Idle connections and stale holes expire as the
//! file's clock advances (see [`Pipeline::segment`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::warn;

use crate::capture::{pcap, Segment};
use crate::clock::Clock;
use crate::driver::{Level, Ready, Source};
use crate::metrics::report::{KernelReport, RecordsReport, Report};
use crate::pipeline::Pipeline;

/// Segments per batch, and batches read ahead.
const BATCH: usize = 256;
const AHEAD: usize = 16;

/// See the module documentation.
pub struct PcapFile {
    rx: mpsc::Receiver<Vec<Segment>>,
    reading: Option<std::thread::JoinHandle<pcap::PcapStats>>,
    stats: pcap::PcapStats,
    taken: Vec<Segment>,
    last_ts: u64,
}

impl PcapFile {
    /// Starts reading `path`, keeping the segments of `ports`.
    pub fn open(path: &Path, ports: &[u16]) -> Result<PcapFile> {
        let (tx, rx) = mpsc::channel(AHEAD);
        let path: PathBuf = path.to_owned();
        let ports = ports.to_vec();
        let reading = std::thread::Builder::new()
            .name("gor-pcap".into())
            .spawn(move || read(&path, &ports, &tx))
            .context("starting the pcap reader thread")?;
        Ok(PcapFile {
            rx,
            reading: Some(reading),
            stats: pcap::PcapStats::default(),
            taken: Vec::new(),
            last_ts: 0,
        })
    }
}

/// The reading thread: every segment of the file, in file order, in batches.
fn read(path: &Path, ports: &[u16], tx: &mpsc::Sender<Vec<Segment>>) -> pcap::PcapStats {
    let mut stats = pcap::PcapStats::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut gone = false;
    let read = pcap::read_segments(path, ports, &mut stats, |seg| {
        if gone {
            return;
        }
        batch.push(seg);
        if batch.len() >= BATCH {
            gone = tx.blocking_send(std::mem::take(&mut batch)).is_err();
        }
    });
    // What was read before damage in the file has been delivered; the damage is reported.
    if let Err(e) = read {
        warn!("reading {}: {e}", path.display());
    }
    if !gone && !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    stats
}

impl Source for PcapFile {
    fn name(&self) -> &'static str {
        "pcap file"
    }

    fn level(&self) -> Level {
        Level::Segments
    }

    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    async fn ready(&mut self) -> Result<Ready> {
        if !self.taken.is_empty() {
            return Ok(Ready::Input);
        }
        Ok(match self.rx.recv().await {
            Some(batch) => {
                self.taken = batch;
                Ready::Input
            }
            None => Ready::Done,
        })
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        for seg in self.taken.drain(..) {
            self.last_ts = self.last_ts.max(seg.ts_ns);
            pipeline.segment(seg);
        }
        pipeline.flush();
    }

    /// The file's time: the latest packet's.
    fn now_ns(&self) -> u64 {
        self.last_ts
    }

    fn stop(&mut self, pipeline: &mut Pipeline) {
        self.rx.close();
        while let Ok(batch) = self.rx.try_recv() {
            self.taken = batch;
            self.deliver(pipeline);
        }
        if let Some(reading) = self.reading.take() {
            match reading.join() {
                Ok(stats) => self.stats = stats,
                Err(_) => warn!("the pcap reader thread panicked"),
            }
        }
    }

    /// The reader's counters stand where the kernel's would; no ring-buffer records.
    fn report(&self, report: &mut Report) {
        report.kernel = Some(KernelReport::Pcap {
            pcap: self.stats.clone(),
        });
        report.records = Some(RecordsReport::default());
    }
}
