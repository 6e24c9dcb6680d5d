//! Reassembly + HTTP framing throughput on a realistic mix (small GETs, JSON POSTs,
//! chunked responses), on one core, against a baseline measured in the same run: copying
//! the same payload bytes once (the least any capture path must do).
//!
//! `cargo xtask bench` (or `cargo bench -p gor-agent --bench framing`). Criterion prints
//! time per iteration and throughput; the ratio framing/baseline is the figure to track.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gor_agent::{
    http::{HttpFramer, Limits},
    reassembly::{self, Reassembler},
};

#[path = "support/traffic_mix.rs"]
mod traffic_mix;

const CONNECTIONS: usize = 200;
const EXCHANGES_PER_CONN: usize = 20;

fn bench(c: &mut Criterion) {
    let (segments, bytes, messages) = traffic_mix::workload(CONNECTIONS, EXCHANGES_PER_CONN);
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("baseline_copy_payload", |b| {
        b.iter_batched(
            || segments.clone(),
            |segs| {
                let mut out = Vec::with_capacity(bytes);
                for s in segs {
                    out.extend_from_slice(&s.payload);
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("reassembly_and_framing", |b| {
        b.iter_batched(
            || segments.clone(),
            |segs| {
                let mut r = Reassembler::new(reassembly::Limits::default());
                let mut f = HttpFramer::new(Limits::default());
                let (mut events, mut msgs) = (Vec::new(), Vec::new());
                let mut n = 0;
                for s in segs {
                    r.push(s, &mut events);
                    for ev in events.drain(..) {
                        f.on_event(&ev, &mut msgs);
                    }
                    n += msgs.len();
                    msgs.clear();
                }
                assert_eq!(n, messages);
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    println!(
        "workload: {} segments, {bytes} payload bytes, {messages} messages per iteration",
        segments.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
