//! TEMPORARY stub, replaced by the real module.
use std::time::Duration;

use crate::gorfile::Record;

#[derive(Clone, Debug)]
pub struct MiddlewareConfig {
    pub program: String,
    pub args: Vec<String>,
    pub queue: usize,
    pub max_queue_bytes: u64,
}

impl Default for MiddlewareConfig {
    fn default() -> Self {
        MiddlewareConfig {
            program: String::new(),
            args: Vec::new(),
            queue: 1000,
            max_queue_bytes: 64 << 20,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MiddlewareStats {
    pub sent: u64,
}

pub struct Middleware;

impl Middleware {
    pub fn start(_cfg: MiddlewareConfig) -> (Middleware, tokio::sync::mpsc::Receiver<Record>) {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        (Middleware, rx)
    }
    pub fn send(&self, _rec: &Record) {}
    pub fn stats(&self) -> MiddlewareStats {
        MiddlewareStats::default()
    }
    pub async fn shutdown(self, _grace: Duration) -> MiddlewareStats {
        MiddlewareStats::default()
    }
}

pub fn parse_command(s: &str) -> Result<(String, Vec<String>), String> {
    let mut it = s.split_whitespace().map(str::to_string);
    let p = it.next().ok_or("empty")?;
    Ok((p, it.collect()))
}

pub fn check_program(_program: &str) -> Result<(), String> {
    Ok(())
}
